"""The disclosure extract in the console (TestClient): the person's lines only, HTML, PDF and
JSON that verify, and the personnummer never stored or logged."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "audit"))
from audit_fixtures import LOG_KEY, fixture_trust
from extract_fixtures import (
    LINES_A,
    LINES_B,
    PERSON_A,
    PERSON_B,
    PSEUDONYM_KEY,
    SID_A,
    signed_log,
)

from sigbus.audit.extract import verify_extract
from sigbus.console.app import Console, make_app
from sigbus.console.auth import Role, Sessions, UsersFile, new_user
from sigbus.console.records import AccessLog, FileStore, FindingsLog, SignedLog
from sigbus.console.source import Snapshot
from sigbus.console.status import LogStatus
from sigbus.policy.rules import default_rules
from sigbus.protocol.signing import HybridPrivateKey

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


class LogSource:
    async def snapshot(self) -> Snapshot:
        data, note, cosigs = signed_log()
        return Snapshot(
            entries=[json.loads(b) for b in data],
            cases={},
            status=LogStatus(len(data), True, True, ("police", "school"), ("police", "school"), 2),
            agencies=("hub", "police", "school", "social"),
            note=note,
            leaves=tuple(data),
            cosignatures=tuple(cosigs),
            log_key=LOG_KEY.public_key(),
        )


@pytest.fixture
def console(tmp_path: Path) -> Console:
    return make_console(tmp_path)


#: Signs the console's records in the unit tests (the served console uses the hub's key).
SIGNER = HybridPrivateKey.generate()


def records(chain: SignedLog | None) -> list[dict[str, Any]]:
    assert chain is not None
    return asyncio.run(chain.read())


def make_console(tmp_path: Path) -> Console:
    users = UsersFile(tmp_path / "users.json")
    for name, role in (("sam", Role.COORDINATOR), ("gry", Role.COMPLIANCE), ("rev", Role.AUDITOR)):
        users.add(new_user(name, role, PASSWORD))
    return Console(
        findings=FindingsLog(FileStore(tmp_path / "findings.jsonl"), SIGNER, "hub-sign-test"),
        users=users,
        sessions=Sessions(b"k" * 32),
        source=LogSource(),
        access=AccessLog(FileStore(tmp_path / "access.jsonl"), SIGNER, "hub-sign-test"),
        rules=default_rules(),
        clock=lambda: NOW,
        pseudonym_key=PSEUDONYM_KEY,
        log_signer=LOG_KEY,
    )


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def _client(console: Console, user: str) -> TestClient:
    client = TestClient(make_app(console))
    page = client.get("/login")
    client.post("/login", data={"username": user, "password": PASSWORD, "csrf": _csrf(page.text)})
    return client


def _extract(client: TestClient, personnummer: str) -> Any:
    form = client.get("/extract")
    return client.post(
        "/extract",
        data={"personnummer": personnummer, "csrf": _csrf(form.text)},
        follow_redirects=False,
    )


def _indexes(html: str) -> list[int]:
    body = html.split('<table id="extract-rows">')[1].split("</tbody>")[0]
    return [int(x) for x in re.findall(r"<tr><td>(\d+)</td>", body)]


def test_the_extract_lists_exactly_the_persons_lines_and_its_downloads_verify(
    console: Console, tmp_path: Path
) -> None:
    client = _client(console, "gry")
    with capture_logs() as events:
        posted = _extract(client, PERSON_A)
        assert posted.status_code == 303
        page = client.get(posted.headers["location"])
        pdf = client.get(posted.headers["location"] + "/pdf?lang=en")
        data = client.get(posted.headers["location"] + "/json")
    assert page.status_code == 200
    assert _indexes(page.text) == LINES_A
    assert "vårdnadshavare" in page.text  # consent given by the guardian (the log says so)
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    assert f"lines={len(LINES_A)}".encode() in pdf.content
    assert len(re.findall(rb"\(#\d+ ", pdf.content)) == len(LINES_A)
    report = verify_extract(data.content, fixture_trust())
    assert report.lines == len(LINES_A)
    # The personnummer (either form) and the person-stable subject id are nowhere kept.
    everything = [
        (tmp_path / "access.jsonl").read_text(),
        repr(events),
        page.text,
        posted.headers["location"],
        data.text,
        pdf.content.decode("latin-1"),
    ]
    for secret in (PERSON_A, PERSON_A.replace("-", ""), SID_A):
        assert all(secret not in text for text in everything), secret
    views = [(v["user"], v["view"]) for v in records(console.access)]
    assert views == [("gry", "extract"), ("gry", "extract_pdf"), ("gry", "extract_json")]
    assert records(console.access)[0]["case_ref"] == "case-a,case-c,msg-0006"


def test_another_person_gets_only_their_own_lines(console: Console) -> None:
    client = _client(console, "gry")
    page = client.get(_extract(client, PERSON_B).headers["location"])
    assert _indexes(page.text) == LINES_B


def test_a_bad_personnummer_is_refused_and_not_echoed(console: Console) -> None:
    client = _client(console, "gry")
    with capture_logs() as events:
        response = _extract(client, "20100315-9802")
    assert response.status_code == 400
    assert "Ogiltigt personnummer" in response.text
    assert "9802" not in response.text
    assert "9802" not in repr(events)
    assert records(console.access) == []


def test_only_the_compliance_officer_may_make_or_fetch_an_extract(console: Console) -> None:
    token = _extract(_client(console, "gry"), PERSON_A).headers["location"]
    for user in ("sam", "rev"):
        client = _client(console, user)
        assert client.get("/extract").status_code == 403
        assert client.get(token).status_code == 403
    other = _client(console, "gry")  # a new session of the same officer may; a wrong token not
    assert other.get(token).status_code == 200
    assert other.get("/extract/not-a-token").status_code == 404
    assert other.get(token + "/exe").status_code == 404


def test_the_extract_help_page_is_in_both_languages(console: Console) -> None:
    client = _client(console, "rev")
    assert "verify-extract" in client.get("/extract-help").text
    assert "Så verifierar du" in client.get("/extract-help").text
    assert "How to verify" in client.get("/extract-help?lang=en").text


class TamperedSource(LogSource):
    """The hub's records differ from what its checkpoint signed (a line rewritten)."""

    async def snapshot(self) -> Snapshot:
        snap = await super().snapshot()
        leaves = list(snap.leaves)
        leaves[6] = leaves[6].replace(b'"recipient":"social"', b'"recipient":"school"')
        return Snapshot(**{**snap.__dict__, "leaves": tuple(leaves)})


def test_no_extract_when_the_log_is_not_its_checkpoints_tree(console: Console) -> None:
    console.source = TamperedSource()
    client = _client(console, "gry")
    with capture_logs() as events:
        response = _extract(client, PERSON_A)
    assert response.status_code == 503
    assert "Loggen stämmer inte med sin kontrollpunkt" in response.text
    assert [e["event"] for e in events if e["log_level"] == "error"] == ["console_extract_failed"]
    assert records(console.access) == []  # nothing shown, nothing viewed


def test_no_extract_before_the_first_checkpoint(console: Console) -> None:
    class Empty(LogSource):
        async def snapshot(self) -> Snapshot:
            snap = await super().snapshot()
            return Snapshot(**{**snap.__dict__, "note": None})

    console.source = Empty()
    response = _extract(_client(console, "gry"), PERSON_A)
    assert response.status_code == 503
    assert "ingen signerad kontrollpunkt" in response.text
