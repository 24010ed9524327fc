"""Retention on a real server (issue 13): after its period the hub can no longer open a
message, and says so (``content_shredded``), while the log still verifies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sigbus.agents.witnessing import WitnessRunner, log_public_key
from sigbus.audit.entry import EntryOutcome
from sigbus.broker.vault import VaultError
from sigbus.export import export_log
from sigbus.protocol.ids import MessageType
from sigbus.protocol.reasons import ReasonCode
from tests.integration.conftest import LUL6, World
from tests.integration.test_audit_log import referral, verify_cli
from tests.integration.test_bus_security import _meeting

P, S, SO = "police", "school", "social"


async def test_after_its_period_the_hub_cannot_open_a_message_and_the_log_verifies(
    world: World, tmp_path: Path, keys_dir: Path
) -> None:
    case = await world.open_case_with_consents()
    ref = await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6
    )
    meeting = await world.adapters[SO].send(
        MessageType.MEETING_NOTICE, _meeting(), case_ref=case, recipients=(P, S)
    )
    await world.settle()
    vault, broker = world.broker.vault, world.broker
    assert vault is not None
    assert world.youth.encode() in await vault.open(ref)  # the hub still holds the key
    decided = (await world.entries_for(ref))[SO].decided_at

    # The rules file: referrals 180 days, the rest 730. One second early: nothing goes.
    assert await broker.retention_pass(decided + timedelta(days=180, seconds=-1)) == []
    shredded = await broker.retention_pass(decided + timedelta(days=180, seconds=1))
    assert [(e.message_id, e.outcome, e.reasons) for e in shredded] == [
        (ref, EntryOutcome.SHREDDED, ("retention_expired",))
    ]
    logged_release = (await world.entries_for(ref))[SO]
    assert shredded[0].ciphertext_sha256 == logged_release.ciphertext_sha256
    with pytest.raises(VaultError) as info:
        await vault.open(ref)
    assert info.value.reason is ReasonCode.CONTENT_SHREDDED
    # The ciphertext stays, and is the one the log names; the meeting notice still opens.
    assert await vault.copy_digest(ref) == logged_release.ciphertext_sha256
    assert await vault.open(meeting)
    # A pass again (also after a crash between log and erase) logs nothing twice.
    size = broker.writer.size
    assert await broker.retention_pass(decided + timedelta(days=200)) == []
    assert broker.writer.size == size
    with pytest.raises(VaultError) as never:
        await vault.open("msg-never-kept")
    assert never.value.reason is ReasonCode.NOT_RETAINED

    # The log, with its shredded entry, verifies against the trusted root and directory.
    await broker.checkpointer.publish()
    for agency in (P, S, SO):
        await WitnessRunner(world.adapters[agency]).run_once(timeout=0.2)
    out = tmp_path / "log.jsonl"
    await export_log(broker.js, out, log_public_key(world.adapters[SO]), witnesses=[P, S, SO])
    result = verify_cli(out, keys_dir)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("VERIFIED / VERIFIERAD")
    assert datetime.now(UTC) > decided
