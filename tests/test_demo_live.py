"""`sigbus demo` as issue #14's "Done when" asks of it, on the demo's own run.

- A metrics scrape during the demo shows the decision counters, with no personal data:
  the installed entry point runs ``demo --json --metrics-port P --hold-open``; the
  endpoint is scraped while the story runs and again once every step is done (the
  demo holds the hub up until its stdin gets a line), and the counters by outcome are
  the demo's own figures.
- The extract for the demo's young person lists exactly the demo's disclosures, and
  it verifies: the expected lines are derived from the exported log, the extract is
  verified with ``audit verify-extract`` against the demo's root and directory, and an
  edited extract fails.
- The schemas validate the demo's messages: an in-process run captures every body the
  hub opened, every envelope the adapters published and every decision notice, and
  each validates against docs/schemas (jsonschema, and Ajv when it is installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from sigbus.agents import runtime
from sigbus.agents.runtime import Adapter
from sigbus.broker import pipeline
from sigbus.cli import DEMO_HOLDING
from sigbus.demo import DemoReport, run_demo
from sigbus.fixtures import birth_date_for_age, fictitious_personnummer
from sigbus.protocol.contracts import SCHEMA_DIR
from sigbus.protocol.envelope import parse_body
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import MESSAGE_TYPES, SentBy
from sigbus.transport.keystore import DEV_KEYS_DIR
from tests.integration.test_metrics import _free_port, samples
from tests.integration.test_no_personnummer import forms
from tests.test_contracts import _ajv, _validator

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
#: The installed entry point beside this interpreter (`make` installs it in .venv/bin).
ENTRY_POINT = Path(sys.executable).with_name("sigbus")
DEMO_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class DemoRun:
    report: dict[str, Any]
    #: Scrapes of the hub's endpoint: while the story ran, and once every step was done.
    early: str
    held: str
    data: Path
    stderr: str


def _wait_for(condition: Any, what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    while not condition():
        assert process.poll() is None, f"the demo ended before {what}"
        assert time.monotonic() < deadline, f"no {what} in {DEMO_TIMEOUT_S} s"
        time.sleep(0.1)


def _scrape(url: str) -> str | None:
    with contextlib.suppress(httpx.TransportError):
        response = httpx.get(url, timeout=5)
        if response.status_code == 200:
            return response.text
    return None


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    # `make` installs the package into the venv: a missing entry point is a broken
    # install, not a missing machine feature, so it fails instead of skipping.
    assert ENTRY_POINT.is_file(), f"sigbus entry point not installed beside {sys.executable}"
    tmp = tmp_path_factory.mktemp("demo-live")
    data, err_file = tmp / "data", tmp / "demo.stderr"
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    command = [str(ENTRY_POINT), "demo", "--json", "--data-dir", str(data),
               "--metrics-port", str(port), "--hold-open"]  # fmt: skip
    with err_file.open("wb") as err:
        demo = subprocess.Popen(
            command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
        )
    try:
        # While the story runs: the endpoint answers once the hub serves it.
        scraped: list[str] = []

        def answered() -> bool:
            text = _scrape(url)
            if text is not None:
                scraped.append(text)
            return bool(scraped)

        _wait_for(answered, "metrics endpoint", demo)
        # Every step done, nothing stopped yet: the demo says so on stderr, then waits.
        _wait_for(lambda: DEMO_HOLDING in err_file.read_text(), "hold", demo)
        held = _scrape(url)
        assert held is not None
        out, _ = demo.communicate(b"\n", timeout=DEMO_TIMEOUT_S)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    stderr = err_file.read_text()
    assert demo.returncode == 0, stderr[-3000:]
    return DemoRun(json.loads(out), scraped[0], held, data, stderr)


def _log(run: DemoRun) -> list[dict[str, Any]]:
    """The demo's exported log: its entries (the export's first and last lines frame them)."""
    lines = Path(run.report["audit"]["export"]).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[1:-1]]


def _decisions(text: str) -> dict[tuple[str, str], float]:
    """sigbus_hub_decisions_total summed per (outcome, message type)."""
    out: dict[tuple[str, str], float] = {}
    for (name, labels), value in samples(text).items():
        if name == "sigbus_hub_decisions_total":
            got = dict(labels)
            key = (got["outcome"], got["message_type"])
            out[key] = out.get(key, 0.0) + value
    return out


def test_a_scrape_during_the_demo_shows_its_decisions_and_no_personal_data(
    demo_run: DemoRun,
) -> None:
    report, held = demo_run.report, _decisions(demo_run.held)
    by_outcome: dict[str, float] = {}
    for (outcome, _), value in held.items():
        by_outcome[outcome] = by_outcome.get(outcome, 0.0) + value
    # The demo's own figures, counted by the hub as it acked each decision (a
    # retraction is the hub's own entry on a withdrawal, not a decision: not counted).
    assert by_outcome == {
        "release": sum(report["releases_by_type"].values()),
        "deny": sum(report["denies_by_type"].values()),
        "recorded": report["recorded"],
    }
    assert all(by_outcome.values())
    released = {t: int(v) for (o, t), v in held.items() if o == "release"}
    denied = {t: int(v) for (o, t), v in held.items() if o == "deny"}
    assert (released, denied) == (report["releases_by_type"], report["denies_by_type"])
    # The story's log, and one shredded entry per key the closing retention run erased.
    logged = report["log_length"] + report["retention"]["shredded"]
    assert samples(demo_run.held)[("sigbus_hub_log_entries", ())] == logged
    # The scrape while the story ran counted no more than the final one: one counter.
    early = _decisions(demo_run.early)
    assert all(v <= held.get(k, 0.0) for k, v in early.items())
    # No personal data: the demo's young person (either date, if it ran over midnight),
    # nor any case ref, pseudonym, message or decision id of its log.
    today = datetime.now(UTC).date()
    youth = {
        fictitious_personnummer(birth_date_for_age(day, 16), 981)
        for day in (today - timedelta(days=1), today)
    }
    secrets = {f.decode() for number in youth for f in forms(number)}
    for entry in _log(demo_run):
        secrets |= {entry["message_id"], entry["decision_id"]}
        secrets |= {entry[k] for k in ("case_ref", "subject_ref") if entry.get(k)}
    for text in (demo_run.early, demo_run.held):
        found = [s for s in secrets if s in text]
        assert found == [], found
        # No number in any label value but the histogram's bounds: no pseudonym or date.
        assert not [v for (_, labels), _ in samples(text).items() for k, v in labels
                    if k != "le" and re.search(r"\d", v)]  # fmt: skip


def _verify_extract(path: Path, keys: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ENTRY_POINT), "audit", "verify-extract", str(path),
         "--directory", str(keys / "directory.json"), "--root", str(keys / "root.json")],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip


def test_the_young_persons_extract_lists_exactly_the_demos_disclosures_and_verifies(
    demo_run: DemoRun,
) -> None:
    report = demo_run.report["extract"]
    assert report["ok"] is True
    entries = _log(demo_run)
    # The demo's young person: the case social services opened, and the referral that
    # came before any case. Their disclosures: every release and deny of either.
    (case,) = {e["case_ref"] for e in entries if e["message_type"] == "case_opened"}
    expected = [
        e["index"]
        for e in entries
        if e["outcome"] in ("release", "deny")
        and (e["case_ref"] == case or (e["case_ref"] is None and e["message_type"] == "referral"))
    ]
    releases = sum(1 for e in entries if e["outcome"] == "release" and e["index"] in expected)
    assert (report["lines"], report["releases"]) == (len(expected), releases)
    assert releases == sum(demo_run.report["releases_by_type"].values())
    path = Path(report["path"])
    document = json.loads(path.read_bytes())
    assert [line["entry"]["index"] for line in document["lines"]] == expected
    # Each line is the log's entry, as exported.
    by_index = {e["index"]: e for e in entries}
    assert all(line["entry"] == by_index[line["entry"]["index"]] for line in document["lines"])
    assert oct(path.stat().st_mode & 0o777) == "0o600"

    keys = demo_run.data / "keys"  # the demo's own root and signed directory
    verified = _verify_extract(path, keys)
    assert verified.returncode == 0, verified.stderr
    assert f"VERIFIED / GODKÄND: {len(expected)} lines" in verified.stdout
    assert "police, school, social, sis" in verified.stdout

    document["lines"][0]["entry"]["recipient"] = "school"  # edited after the fact
    edited = path.with_name("edited.json")
    edited.write_text(json.dumps(document), encoding="utf-8")
    refused = _verify_extract(edited, keys)
    assert refused.returncode == 1
    assert "FAIL / UNDERKÄND" in refused.stderr + refused.stdout


# -- the schemas validate the demo's messages ------------------------------------------


@dataclass(frozen=True)
class Captured:
    #: (message type, body as the hub opened it) for every message the demo sent.
    bodies: list[tuple[str, Any]]
    #: Every envelope the adapters published, as on the wire.
    envelopes: list[Any]
    report: DemoReport


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Captured:
    bodies: list[tuple[str, Any]] = []
    envelopes: list[Any] = []
    publish_raw = Adapter.publish_raw

    def opened(message_type: MessageType, plaintext: bytes) -> Any:
        # Once per message: the hub may open one more than once (a consent withdrawal).
        if (message_type.value, json.loads(plaintext)) not in bodies:
            bodies.append((message_type.value, json.loads(plaintext)))
        return parse_body(message_type, plaintext)

    async def published(self: Adapter, subject: str, data: bytes, message_id: str) -> int:
        envelopes.append(json.loads(data))
        return await publish_raw(self, subject, data, message_id)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIGBUS_DEV", "1")
        patch.setattr(pipeline, "parse_body", opened)
        # The hub's own messages (a reminder) are opened first by their recipient.
        patch.setattr(runtime, "parse_body", opened)
        patch.setattr(Adapter, "publish_raw", published)
        data = tmp_path_factory.mktemp("demo-captured")
        report = asyncio.run(run_demo(data_dir=data, keys_dir=DEV_KEYS_DIR))
    assert report.ok
    return Captured(bodies, envelopes, report)


def _schemas() -> dict[str, dict[str, Any]]:
    """The committed files: what other systems read."""
    return {
        p.name.removesuffix(".schema.json"): json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((REPO / SCHEMA_DIR).glob("*.schema.json"))
    }


def _cases(captured: Captured) -> list[tuple[str, Any]]:
    return [*captured.bodies, *(("envelope", e) for e in captured.envelopes)]


def test_every_message_the_demo_sends_is_captured(captured: Captured) -> None:
    # Every message type the demo's log names was opened by the hub, and every
    # message was both published and opened (one body per envelope).
    logged = {e.message_type.value for e in captured.report.entries if e.message_type}
    assert {t for t, _ in captured.bodies} == logged
    sent = [x for x in captured.report.expectations if x.message_id and not x.hub_own]
    published = Counter(e["header"]["type"] for e in captured.envelopes)
    by_agencies = Counter(
        t for t, _ in captured.bodies if MESSAGE_TYPES[MessageType(t)].sent_by is not SentBy.HUB
    )
    assert published == by_agencies, captured.bodies
    assert len(captured.envelopes) == len(sent)


def test_the_schemas_validate_the_demos_messages(captured: Captured) -> None:
    schemas = _schemas()
    for name, document in _cases(captured):
        errors = [e.message for e in _validator(schemas[name]).iter_errors(document)]
        assert errors == [], (name, errors)
    # A validator that passes everything would pass the demo too: an edited body fails.
    name, body = captured.bodies[0]
    assert not jsonschema.Draft202012Validator(schemas[name]).is_valid({**body, "extra": 1})


def test_ajv_validates_the_demos_messages(captured: Captured) -> None:
    schemas = _schemas()
    cases = [(schemas[name]["$id"], document) for name, document in _cases(captured)]
    name, body = captured.bodies[0]
    verdicts = _ajv(list(schemas.values()), [*cases, (schemas[name]["$id"], {**body, "x": 1})])
    assert verdicts[:-1] == ["valid"] * len(cases), [v for v in verdicts[:-1] if v != "valid"]
    assert verdicts[-1] != "valid"


def test_the_demo_report_is_not_printed_with_personal_data(demo_run: DemoRun) -> None:
    # The demo's stdout (the report) and stderr (its logs) carry no form of the person.
    today = datetime.now(UTC).date()
    for day in (today - timedelta(days=1), today):
        number = fictitious_personnummer(birth_date_for_age(day, 16), 981)
        for form in forms(number):
            assert form.decode() not in json.dumps(demo_run.report) + demo_run.stderr
