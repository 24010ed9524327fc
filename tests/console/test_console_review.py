"""Log review (loggkontroll) in the console: the sample and the anomalies of a period, and a
finding recorded into the hash-chained findings file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs
from test_console_extract import PERSON_A, SIGNER, _client, _csrf, make_console, records

from sigbus.audit.signed_chain import FINDING_DOMAIN, check_chain
from sigbus.console.app import Console


@pytest.fixture
def console(tmp_path: Path) -> Console:
    return make_console(tmp_path)


PERIOD = {"since": "2026-11-20", "until": "2026-11-23", "size": "10", "seed": "vecka-48"}


def _indexes(html: str, table: str) -> list[int]:
    body = html.split(f'<table id="{table}">')[1].split("</tbody>")[0]
    skip = 2 if table == "anomalies" else 0
    pattern = r"<tr><td>(?:[^<]*</td><td>){" + str(skip) + r"}(\d+)</td>"
    return [int(x) for x in re.findall(pattern, body)]


def _record(client: TestClient, **fields: str) -> object:
    page = client.get("/review", params=PERIOD)
    return client.post(
        "/review/findings",
        data={**PERIOD, "csrf": _csrf(page.text), **fields},
        follow_redirects=False,
    )


def test_the_review_shows_a_reproducible_sample_and_flags_the_statutory_releases(
    console: Console,
) -> None:
    client = _client(console, "gry")
    page = client.get("/review", params=PERIOD)
    assert page.status_code == 200
    assert _indexes(page.text, "sample") == [2, 4, 5, 6, 7, 8]  # every decision: fewer than 10
    three = [_indexes(client.get("/review", params={**PERIOD, "size": "3"}).text, "sample")]
    three.append(_indexes(client.get("/review", params={**PERIOD, "size": "3"}).text, "sample"))
    assert three[0] == three[1]  # the same seed and period: the same sample
    assert len(three[0]) == 3
    assert set(three[0]) <= {2, 4, 5, 6, 7, 8}
    statutory = re.findall(
        r"<tr><td>utlämnat med stöd av lag utan samtycke</td><td>police</td><td>(\d+)</td>",
        page.text,
    )
    assert statutory == ["6", "8"]
    assert records(console.access)[0]["view"] == "review"


def test_a_recorded_finding_is_chained_logged_and_shown(console: Console) -> None:
    client = _client(console, "gry")
    with capture_logs() as events:
        response = _record(client, index="6", verdict="follow_up", note="fråga polisen")
    assert response.status_code == 303
    page = client.get(response.headers["location"])  # type: ignore[attr-defined]
    assert "fråga polisen" in page.text
    assert console.findings is not None
    found = records(console.findings)
    assert [(r["entry_index"], r["verdict"], r["user"], r["sampled"]) for r in found] == [
        (6, "follow_up", "gry", True)
    ]
    assert found[0]["rules"] == ["statutory_release"]
    assert (
        check_chain(found, {"hub-sign-test": SIGNER.public_key()}, domain=FINDING_DOMAIN)
        in page.text
    )  # the chain head, to copy into the report
    assert [e["event"] for e in events if e["event"].startswith("console_finding")] == [
        "console_finding"
    ]
    second = _record(client, index="2", verdict="ok", note="")
    assert second.status_code == 303  # type: ignore[attr-defined]
    assert [r["seq"] for r in records(console.findings)] == [0, 1]


def test_a_finding_with_a_personnummer_or_an_unknown_entry_or_verdict_is_refused(
    console: Console,
) -> None:
    client = _client(console, "gry")
    for fields in (
        {"index": "6", "verdict": "ok", "note": f"gäller {PERSON_A}"},
        {"index": "999", "verdict": "ok", "note": ""},
        {"index": "6", "verdict": "fine", "note": ""},
        {"index": "six", "verdict": "ok", "note": ""},
    ):
        response = _record(client, **fields)
        assert response.status_code == 400, fields  # type: ignore[attr-defined]
    assert console.findings is not None
    assert records(console.findings) == []


def test_a_tampered_findings_file_is_reported_and_never_extended(
    console: Console, tmp_path: Path
) -> None:
    client = _client(console, "gry")
    _record(client, index="6", verdict="ok", note="a")
    assert console.findings is not None
    path = tmp_path / "findings.jsonl"
    path.write_text(path.read_text().replace('"verdict": "ok"', '"verdict": "violation"'))
    assert "Fyndkedjan är bruten" in client.get("/review", params=PERIOD).text
    assert _record(client, index="2", verdict="ok", note="").status_code == 409  # type: ignore[attr-defined]
    assert len(records(console.findings)) == 1


def test_only_the_compliance_officer_reviews(console: Console) -> None:
    for user in ("sam", "rev"):
        assert _client(console, user).get("/review").status_code == 403
    assert _client(console, "gry").get("/review", params={"since": "23/11"}).status_code == 400
