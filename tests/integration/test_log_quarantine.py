"""A bad record in the disclosure log, on a real server: quarantined, alarmed, stated, verified.

``SIGBUS_LOG`` denies delete and purge, so a record that is not a sound entry
(written by a hub bug, or by an operator with the hub's credentials) stays
there. The hub must still start, say so loudly, record it in the log, keep
deciding, and the export must verify only because the log names the record.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner

from sigbus.agents.witnessing import WitnessRunner, log_public_key
from sigbus.audit.checkpoint import DEFAULT_ORIGIN, make_checkpoint_body, sign_note
from sigbus.audit.entry import EntryOutcome, LogEntry, leaf_hash
from sigbus.audit.errors import ExportError
from sigbus.audit.merkle import MerkleTree
from sigbus.audit.quarantine import Fault
from sigbus.audit.trust import TrustAnchors
from sigbus.broker.service import Broker
from sigbus.broker.setup import hub_setup
from sigbus.cli import app
from sigbus.cli_audit import load_trust
from sigbus.export import export_log
from sigbus.parallel_verify import verify_export_file
from sigbus.protocol.codes import ReferralKind, ReferralReason
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import Referral
from sigbus.protocol.subjects import (
    CHECKPOINT_STREAM,
    CHECKPOINT_SUBJECT,
    LOG_ENTRY_SUBJECT,
    LOG_STREAM,
)
from sigbus.transport.bus import connect, read_stream
from tests.integration.conftest import LUL6, World


def officer_trust(keys_dir: Path) -> TrustAnchors:
    """The pinned root and the signed directory; one witness (school) cosigns here."""
    root = (keys_dir / "root.json").read_bytes()
    return load_trust(keys_dir / "directory.json", root, quorum=1)


def trusted(keys_dir: Path) -> list[str]:
    return ["--directory", str(keys_dir / "directory.json"),
            "--root", str(keys_dir / "root.json"), "--quorum", "1"]  # fmt: skip


P, S, SO = "police", "school", "social"
#: Not JSON, not UTF-8, a newline in it: what a hub bug could leave behind.
GARBAGE = b"\xff\xfe{not an entry\n\x00tail"


def referral(world: World) -> Referral:
    return Referral(
        kind=ReferralKind.LUL_6_NOTIFICATION,
        personnummer=world.youth,
        reasons=(ReferralReason.WEAPON,),
        observed_on=datetime.now(UTC).date(),
        contact_function="police_youth_unit",
    )


async def stored_records(broker: Broker) -> list[bytes]:
    return [bytes(m.data) async for m in read_stream(broker.js, LOG_STREAM, LOG_ENTRY_SUBJECT)]


async def write_as_the_hub(url: str, keys_dir: Path, record: bytes) -> None:
    """Append ``record`` to the log with the hub's own credentials (no fencing header)."""
    nc = await connect(url, name="test-operator", creds=hub_setup(keys_dir).creds)
    try:
        await nc.jetstream().publish(LOG_ENTRY_SUBJECT, record, stream=LOG_STREAM)
    finally:
        await nc.close()


async def restart(world: World, keys_dir: Path) -> tuple[Broker, list[dict[str, Any]]]:
    """Stop the world's broker, start a new one on the same bus; its start-up logs."""
    await world.broker.stop()
    with structlog.testing.capture_logs() as logs:
        broker = hub_setup(keys_dir).broker(world.broker.url)
        await broker.start()
    world.broker = broker  # settled and torn down by the fixture from now on
    return broker, logs


def quarantine_alarms(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e.get("kind") == "log_record_quarantined"]


@pytest.mark.parametrize("kind", ["garbage", "replayed_entry"])
async def test_a_bad_record_is_quarantined_and_the_hub_keeps_deciding(
    world: World, keys_dir: Path, tmp_path: Path, kind: str
) -> None:
    await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6
    )
    await world.settle()
    await world.broker.checkpointer.publish()
    witness = WitnessRunner(world.adapters[S])
    await witness.run_once()
    before = world.broker.writer.size
    assert witness.cosigned == [before]

    # A stray record: garbage, or an earlier entry stored again (parses, wrong index).
    records = await stored_records(world.broker)
    bad, fault = (
        (GARBAGE, Fault.NOT_AN_ENTRY) if kind == "garbage" else (records[0], Fault.WRONG_INDEX)
    )
    await write_as_the_hub(world.broker.url, keys_dir, bad)
    broker, logs = await restart(world, keys_dir)

    # It started, and raised the alarm: position and fault, never the bytes.
    alarms = quarantine_alarms(logs)
    assert alarms == [
        {
            "event": "security_event",
            "kind": "log_record_quarantined",
            "seq": before + 1,
            "index": before,
            "reason": fault.value,
            "log_level": "critical",
        }
    ]
    assert "not an entry" not in repr(logs)
    # The bad record keeps its index; the hub's next entry names it.
    assert broker.writer.size == before + 2
    stored = await stored_records(broker)
    assert stored[before] == bad
    named = LogEntry.model_validate_json(stored[before + 1])
    assert named.outcome is EntryOutcome.RECORDED
    assert (named.sender, named.recipient) == ("hub", "hub")
    assert named.reasons == (f"quarantined_record:{before}:{fault.value}",)
    assert named.prev_leaf_hash == leaf_hash(bad).hex()  # chains to the bad record's leaf

    # It keeps deciding: the next referral is logged and released.
    mid = await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6
    )
    await world.settle()
    assert mid in world.received_ids(SO)
    assert broker.writer.size == before + 3

    # The tree still commits to exactly what the stream holds, so a witness
    # that cosigned before moves on with a valid consistency proof.
    await broker.checkpointer.publish()
    await witness.run_once()
    assert witness.cosigned[-1] == broker.writer.size
    assert not witness.alarms

    # Offline: the export verifies and names the quarantined index.
    out = tmp_path / "log.jsonl"
    log_key = log_public_key(world.adapters[SO])
    await export_log(broker.js, out, log_key, witnesses=[S])
    report = verify_export_file(out, trust=officer_trust(keys_dir))
    assert report.quarantined == ((before, fault),)
    assert report.entries == before + 3
    lines = out.read_bytes().splitlines(keepends=True)
    if kind == "garbage":  # byte-exact, in its own line shape
        assert lines[1 + before] == b'{"raw_record":"' + base64.b64encode(GARBAGE) + b'"}\n'
    result = CliRunner().invoke(app, ["audit", "verify", "--json", str(out), *trusted(keys_dir)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["quarantined"] == [{"index": before, "fault": fault.value}]

    # Once recorded, a later start does not record it again (and does not alarm anew).
    broker, logs = await restart(world, keys_dir)
    assert broker.writer.size == before + 3
    assert quarantine_alarms(logs) == []
    assert [e["event"] for e in logs if e.get("seq") == before + 1] == [
        "log_record_quarantined_earlier"
    ]


async def test_an_unnamed_bad_record_fails_verification(
    world: World, keys_dir: Path, tmp_path: Path
) -> None:
    """A log whose bad record no entry names (as a hub without quarantine would sign)."""
    await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6
    )
    await world.settle()
    before = world.broker.writer.size
    await world.broker.stop()
    await write_as_the_hub(world.broker.url, keys_dir, GARBAGE)
    nc = await connect(world.broker.url, name="test-signer", creds=hub_setup(keys_dir).creds)
    try:
        js = nc.jetstream()
        stored = [bytes(m.data) async for m in read_stream(js, LOG_STREAM, LOG_ENTRY_SUBJECT)]
        assert len(stored) == before + 1
        # Signed with the real log key over exactly what the stream holds.
        tree = MerkleTree(leaf_hash(record) for record in stored)
        note = sign_note(
            make_checkpoint_body(DEFAULT_ORIGIN, tree.size, tree.root()),
            DEFAULT_ORIGIN,
            hub_setup(keys_dir).log_key,
        )
        await js.publish(CHECKPOINT_SUBJECT, note.encode(), stream=CHECKPOINT_STREAM)
        out = tmp_path / "log.jsonl"
        log_key = log_public_key(world.adapters[SO])
        await export_log(js, out, log_key, witnesses=[])
    finally:
        await nc.close()
    with pytest.raises(ExportError, match=f"entry {before}: a stored record that is not a log"):
        verify_export_file(out, trust=officer_trust(keys_dir))
    result = CliRunner().invoke(app, ["audit", "verify", "--json", str(out), *trusted(keys_dir)])
    assert result.exit_code == 1
    assert json.loads(result.output)["entry_index"] == before
