"""``sigbus audit extract`` against a live hub, then ``verify-extract`` offline: the extract
for one person lists exactly their disclosures (not another person's case), and verifies."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from structlog.testing import capture_logs
from typer.testing import CliRunner

import sigbus.cli_extract  # noqa: F401  (registers the commands on audit_app)
from sigbus.agents.witnessing import WitnessRunner
from sigbus.cli_audit import audit_app
from sigbus.fixtures import birth_date_for_age, fictitious_personnummer
from sigbus.protocol.ids import MessageType
from tests.integration.conftest import LUL6, World
from tests.integration.test_flow import referral


async def test_the_extract_for_one_person_lists_exactly_theirs_and_verifies(
    world: World, nats_url: str, keys_dir: Path, tmp_path: Path
) -> None:
    person = world.youth
    case_a = await world.open_case_with_consents()
    ref_a = await world.adapters["police"].send(
        MessageType.REFERRAL, referral(world), recipients=("social",), assertion=LUL6
    )
    world.youth = other = fictitious_personnummer(
        birth_date_for_age(datetime.now(UTC).date(), 15), 985
    )
    case_b = await world.open_case_with_consents()
    await world.adapters["police"].send(
        MessageType.REFERRAL, referral(world), recipients=("social",), assertion=LUL6
    )
    await world.settle()
    await world.broker.checkpointer.publish()
    for adapter in world.adapters.values():
        await WitnessRunner(adapter).run_once()
    entries = await world.log_entries()
    expected = [
        e.index
        for e in entries
        if e.outcome.value in ("release", "deny")
        and (e.case_ref == case_a or e.message_id == ref_a)
    ]
    assert expected  # the referral about the person was released
    assert any(e.case_ref == case_b for e in entries)

    pn_file = tmp_path / "pn.txt"
    pn_file.write_text(person + "\n")
    out, pdf = tmp_path / "extract.json", tmp_path / "extract.pdf"
    hub = ["--nats", nats_url, "--keys", str(keys_dir), "--personnummer-file", str(pn_file)]
    runner = CliRunner()
    with capture_logs() as events:
        # In a thread: the command runs its own event loop, as from a shell.
        made = await asyncio.to_thread(
            runner.invoke, audit_app, ["extract", *hub, "--out", str(out)]
        )
        made_pdf = await asyncio.to_thread(
            runner.invoke, audit_app, ["extract", *hub, "--out", str(pdf), "--format", "pdf"]
        )
    assert made.exit_code == 0, made.output
    assert made_pdf.exit_code == 0, made_pdf.output
    document = json.loads(out.read_bytes())
    assert [line["entry"]["index"] for line in document["lines"]] == expected
    assert all(line["entry"]["case_ref"] != case_b for line in document["lines"])
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert f"lines={len(expected)}".encode() in pdf.read_bytes()
    for text in (made.output, repr(events), out.read_text(), pdf.read_bytes().decode("latin-1")):
        assert person not in text
        assert person.replace("-", "") not in text
    assert oct(out.stat().st_mode & 0o777) == "0o600"

    trusted = [
        "--directory",
        str(keys_dir / "directory.json"),
        "--root",
        str(keys_dir / "root.json"),
    ]
    verified = runner.invoke(audit_app, ["verify-extract", str(out), *trusted])
    assert verified.exit_code == 0, verified.output
    assert f"VERIFIED / GODKÄND: {len(expected)} lines" in verified.output

    document["lines"][0]["entry"]["recipient"] = "school"  # a line changed after the fact
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(document))
    refused = runner.invoke(audit_app, ["verify-extract", str(forged), *trusted])
    assert refused.exit_code == 1
    assert "leaf hash is not the entry's" in refused.output

    document = json.loads(out.read_bytes())
    dropped = document["lines"].pop()  # a line left out: the hub's statement lists it
    short = tmp_path / "short.json"
    short.write_text(json.dumps(document))
    incomplete = runner.invoke(audit_app, ["verify-extract", str(short), *trusted])
    assert incomplete.exit_code == 1
    assert f"not complete: the hub listed log indexes [{dropped['entry']['index']}]" in (
        incomplete.output
    )

    untrusted = runner.invoke(audit_app, ["verify-extract", str(out)])
    assert untrusted.exit_code == 2  # nothing trusted given: never a verdict

    pn_file.write_text("20100315-9802\n")  # a wrong check digit: refused, not echoed
    bad = runner.invoke(audit_app, ["extract", *hub, "--out", str(tmp_path / "x.json")])
    assert bad.exit_code == 2
    assert "9802" not in bad.output
    assert other != person
