"""The adapter's durable outbox and exactly-once hand-off, on a real nats-server (issue #12)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sigbus.agents.casesystem import DirectoryCaseSystem
from sigbus.agents.outbox import MessageIdConflict, Outbox
from sigbus.agents.runtime import Delivered
from sigbus.agents.setup import agency_setup
from sigbus.audit.entry import EntryOutcome
from sigbus.protocol.codes import ReferralKind, ReferralReason
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import Referral
from tests.integration.conftest import LUL6, World

P, SO = "police", "social"


def referral(world: World, reason: ReferralReason = ReferralReason.SUSPECTED_OFFENCE) -> Referral:
    return Referral(
        kind=ReferralKind.LUL_6_NOTIFICATION,
        personnummer=world.youth,
        reasons=(reason,),
        observed_on=datetime.now(UTC).date(),
        contact_function="police_youth_unit",
    )


async def test_queued_message_survives_a_crash_and_is_delivered_once(
    world: World, tmp_path: Path, keys_dir: Path, nats_url: str
) -> None:
    path = tmp_path / "outbox-police.sqlite"
    police = world.adapters[P]
    police.outbox = Outbox(path)
    # Handed over, on disk, never published: the adapter dies here.
    queued = [
        police.queue(
            MessageType.REFERRAL,
            referral(world),
            recipients=(SO,),
            assertion=LUL6,
            message_id=f"msg-outbox-crash-{i}",
        )
        for i in range(4)
    ]
    police.outbox.close()
    # A new adapter process on the same outbox delivers them.
    restarted = await agency_setup(P, keys_dir).connect(nats_url)
    try:
        restarted.outbox = Outbox(path)
        assert await restarted.flush() == 4
        assert await restarted.flush() == 0
        # A retry by the case system with the same id and content: the same sealed
        # envelope, nothing new to publish.
        again = restarted.queue(
            MessageType.REFERRAL,
            referral(world),
            recipients=(SO,),
            assertion=LUL6,
            message_id="msg-outbox-crash-0",
        )
        assert again.envelope == queued[0].envelope
        assert again.delivered
        assert await restarted.flush() == 0
        with pytest.raises(MessageIdConflict, match="different message"):
            restarted.queue(
                MessageType.REFERRAL,
                referral(world, ReferralReason.WEAPON),
                recipients=(SO,),
                assertion=LUL6,
                message_id="msg-outbox-crash-0",
            )
        await world.settle()
        for item in queued:
            entries = await world.entries_for(item.message_id)
            assert entries[SO].outcome is EntryOutcome.RELEASE
        assert sorted(world.received_ids(SO)) == sorted(q.message_id for q in queued)
        # A republish of a delivered id (a lost ack) is de-duplicated: one decision each.
        await restarted.publish_raw(queued[1].subject, queued[1].envelope, queued[1].message_id)
        await world.settle()
        assert world.received_ids(SO).count(queued[1].message_id) == 1
        assert (
            len([e for e in await world.log_entries() if e.message_id == queued[1].message_id]) == 1
        )
    finally:
        await restarted.close()


async def test_a_redelivered_release_leaves_one_file_in_the_drop_dir(
    world: World, tmp_path: Path
) -> None:
    social = world.adapters[SO]
    social.outbox = Outbox(tmp_path / "outbox-social.sqlite")
    drop = DirectoryCaseSystem(tmp_path / "drop")
    mid = await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6
    )
    await world.broker.drain_ingress(idle_timeout=0.3)

    async def crash_after_hand_off(d: Delivered) -> None:
        await drop.deliver(d)
        raise RuntimeError("killed between the hand-off and the ack")

    await social.receive(crash_after_hand_off, timeout=1.0)
    handed: list[str] = []

    async def hand_off(d: Delivered) -> None:
        handed.append(d.header.message_id)
        await drop.deliver(d)

    for _ in range(10):  # the nak's redelivery delay
        await social.receive(hand_off, timeout=1.0)
        if handed:
            break
    files = sorted(drop.path.glob("*.json"))
    assert [json.loads(f.read_text())["header"]["message_id"] for f in files] == [mid]
    assert files[0].stat().st_mode & 0o777 == 0o600
    release_id = json.loads(files[0].read_text())["release"]["release_id"]
    assert social.outbox.is_processed(release_id)
