"""Hub snapshots: restart from a snapshot and the tails, never from an unverified one (issue #11).

A start from the newest snapshot that verifies must give the hub exactly what a
full replay gives: the same tree (root, size), the same duplicate-window
indexes (the inputs of every decision) and the same state. A snapshot that is
tampered with, signed by another key, or claims more log than there is, raises
``security_event kind=snapshot_rejected`` and is not used. A hub killed while
writing one starts from the one before.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.js import JetStreamContext

from sigbus.audit.checkpoint import DEFAULT_ORIGIN
from sigbus.audit.entry import EntryOutcome
from sigbus.audit.merkle import hash_leaf, verify_inclusion
from sigbus.broker.log_writer import LogWriter
from sigbus.broker.pipeline import EntryDraft
from sigbus.broker.service import Broker
from sigbus.broker.setup import hub_setup
from sigbus.broker.snapshot import CRASH_IN_SNAPSHOT_ENV, SnapshotStore
from sigbus.broker.state import HubState
from sigbus.broker.state_store import StateStore
from sigbus.protocol.codes import AgendaItem, PlaceCode
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import MeetingNotice
from sigbus.protocol.subjects import LOG_STREAM, SNAPSHOT_MANIFEST_SUBJECT, SNAPSHOT_STREAM
from sigbus.transport.bus import connect, ensure_streams
from tests.integration.conftest import LUL6, World
from tests.integration.test_audit_log import referral

P, SO, S = "police", "social", "school"


@pytest.fixture
async def js(nats_url: str, keys_dir: Path) -> AsyncIterator[JetStreamContext]:
    """An observer with the hub's credentials (the hub's own connection closes on stop)."""
    nc = await connect(nats_url, name="test-observer", creds=hub_setup(keys_dir).creds)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


def meeting() -> MeetingNotice:
    return MeetingNotice(
        meeting_at=datetime.now(UTC), place=PlaceCode.VIDEO, agenda=(AgendaItem.PLAN_REVIEW,)
    )


async def full_replay(js: JetStreamContext, keys_dir: Path) -> tuple[LogWriter, HubState]:
    writer = LogWriter(js)
    await writer.recover()
    store = StateStore(js, hub_setup(keys_dir).state_key)
    return writer, store.state_of(await store.read())


def state_view(state: HubState) -> dict[str, Any]:
    return {
        "applied": sorted(state.applied),
        "cases": {
            ref: (sorted(c.parties), [e.model_dump_json() for e in c.events])
            for ref, c in state.cases.items()
        },
    }


async def assert_same_as_full_replay(broker: Broker, keys_dir: Path) -> None:
    """The broker's view against a full replay, on the broker's (open) connection."""
    writer, state = await full_replay(broker.js, keys_dir)
    assert broker.writer.size == writer.size > 0
    assert broker.writer.tree.root() == writer.tree.root()
    assert broker.writer.last_decided_at == writer.last_decided_at
    assert [e.index for e in broker.writer.entries()] == [e.index for e in writer.entries()]
    for entry in writer.entries():
        assert broker.writer.first_seen_seq(entry.message_id) == writer.first_seen_seq(
            entry.message_id
        )
        assert broker.writer.entries_for_ingress(entry.ingress_seq) == writer.entries_for_ingress(
            entry.ingress_seq
        )
    assert state_view(broker.state) == state_view(state)
    # Proofs for any index, the first included.
    proof = broker.writer.tree.inclusion_proof(0)
    verify_inclusion(
        broker.writer.tree.leaf_hash(0), 0, writer.size, proof, writer.tree.root()
    )


async def start(world: World, keys_dir: Path) -> tuple[Broker, list[MutableMapping[str, Any]]]:
    with structlog.testing.capture_logs() as logs:
        broker = hub_setup(keys_dir).broker(world.broker.url)
        await broker.start()
    world.broker = broker  # settled and torn down by the fixture from now on
    return broker, logs


def rejections(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e.get("kind") == "snapshot_rejected"]


async def manifests(js: JetStreamContext) -> int:
    store = SnapshotStore(js, Ed25519PrivateKey.generate(), b"k" * 32, DEFAULT_ORIGIN)
    return len(await store.candidates())


async def test_restart_from_snapshot_and_tail_is_the_full_replay(
    world: World, keys_dir: Path, js: JetStreamContext
) -> None:
    case = await world.open_case_with_consents()
    await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6
    )
    await world.settle()
    decided = world.broker.writer.size
    await world.broker.stop()  # a clean stop writes a snapshot
    assert await manifests(js) >= 1

    # While the hub is down, more messages wait: the tail.
    sent = await world.adapters[SO].send(
        MessageType.MEETING_NOTICE, meeting(), case_ref=case, recipients=(S,)
    )
    broker, logs = await start(world, keys_dir)
    assert broker.started_from == "snapshot"
    assert rejections(logs) == []
    assert broker.writer.size == decided  # the tail is in ingress, not decided yet
    await assert_same_as_full_replay(broker, keys_dir)
    await world.settle()
    assert sent in world.received_ids(S)  # decided on the snapshot's state
    assert broker.writer.size > decided
    await assert_same_as_full_replay(broker, keys_dir)

    # And again, from the snapshot of the stop plus an empty tail.
    await broker.stop()
    again, logs = await start(world, keys_dir)
    assert again.started_from == "snapshot"
    await assert_same_as_full_replay(again, keys_dir)


@pytest.mark.parametrize("attack", ["tampered", "wrong_key", "rolled_forward"])
async def test_a_bad_snapshot_is_rejected_with_the_alarm(
    world: World, keys_dir: Path, js: JetStreamContext, attack: str
) -> None:
    await world.open_case_with_consents()
    await world.broker.stop()  # the good snapshot
    hub = hub_setup(keys_dir)
    if attack == "tampered":
        latest = await js.get_last_msg(SNAPSHOT_STREAM, SNAPSHOT_MANIFEST_SUBJECT)
        signed = json.loads(latest.data or b"")
        signed["manifest"]["window_start"] = 0  # any change breaks the signature
        signed["manifest"]["last_decided_at"] = "2020-01-01T00:00:00Z"
        await js.publish(
            SNAPSHOT_MANIFEST_SUBJECT, json.dumps(signed).encode(), stream=SNAPSHOT_STREAM
        )
    else:
        writer, _ = await full_replay(js, keys_dir)
        records = await StateStore(js, hub.state_key).read()
        key = Ed25519PrivateKey.generate() if attack == "wrong_key" else hub.log_key
        if attack == "rolled_forward":  # a tree longer than the log, signed by the hub
            for i in range(3):
                writer.tree.append(hash_leaf(b"not in the log %d" % i))
        forged = SnapshotStore(js, key, hub.state_key, DEFAULT_ORIGIN)
        assert await forged.write(writer, records) is not None

    broker, logs = await start(world, keys_dir)
    (alarm,) = rejections(logs)
    assert alarm["log_level"] == "critical"
    assert alarm["reason"]
    assert broker.started_from == "snapshot"  # the good one before it
    await assert_same_as_full_replay(broker, keys_dir)


async def test_only_bad_snapshots_mean_a_full_replay(
    world: World, keys_dir: Path, js: JetStreamContext
) -> None:
    await world.open_case_with_consents()
    await world.broker.stop()
    hub = hub_setup(keys_dir)
    writer, _ = await full_replay(js, keys_dir)
    store = StateStore(js, hub.state_key)
    records = await store.read()
    forged = SnapshotStore(js, Ed25519PrivateKey.generate(), hub.state_key, DEFAULT_ORIGIN)
    for _ in range(3):  # every kept manifest is forged
        await forged.write(writer, records)
        forged.last_size = 0
    broker, logs = await start(world, keys_dir)
    assert len(rejections(logs)) == 3
    assert broker.started_from == "replay"
    await assert_same_as_full_replay(broker, keys_dir)


async def test_a_hub_killed_while_writing_a_snapshot_starts_from_the_one_before(
    world: World, keys_dir: Path, nats_url: str, js: JetStreamContext
) -> None:
    case = await world.open_case_with_consents()
    await world.broker.stop()
    before = await manifests(js)
    pieces_before = (await js.stream_info(SNAPSHOT_STREAM)).state.messages
    sent = await world.adapters[SO].send(
        MessageType.MEETING_NOTICE, meeting(), case_ref=case, recipients=(S,)
    )
    size = world.broker.writer.size
    env = {**os.environ, CRASH_IN_SNAPSHOT_ENV: "1"}
    cmd = [sys.executable, "-m", "sigbus", "broker", "run", "--nats", nats_url,
           "--keys", str(keys_dir)]  # fmt: skip
    hub = subprocess.Popen(cmd, env=env)
    try:
        for _ in range(200):  # until it decided the meeting notice
            if (await js.stream_info(LOG_STREAM)).state.last_seq > size:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        hub.send_signal(signal.SIGTERM)  # a clean stop: it writes a snapshot, and dies in it
        code = await asyncio.to_thread(hub.wait, 20)
    finally:
        if hub.poll() is None:
            hub.kill()
    assert code == 71  # died by the injected fault, after the pieces, before the manifest
    assert await manifests(js) == before
    assert (await js.stream_info(SNAPSHOT_STREAM)).state.messages > pieces_before

    broker, logs = await start(world, keys_dir)
    assert rejections(logs) == []
    assert broker.started_from == "snapshot"
    assert broker.writer.size > size  # the subprocess's decisions, read as the tail
    await assert_same_as_full_replay(broker, keys_dir)
    await world.settle()
    assert sent in world.received_ids(S)


def drafts(count: int, start: datetime) -> list[EntryDraft]:
    """Hub records an hour apart: opaque ids and codes only."""
    return [
        EntryDraft(
            decision_id=f"dec-{i:012d}",
            decided_at=start + timedelta(hours=i),
            ingress_seq=i + 1,
            message_id=f"msg-{i:016d}",
            message_type=MessageType.MEETING_NOTICE,
            sender="social",
            recipient="hub",
            case_ref=None,
            rules_hash="cd" * 32,
            ciphertext_sha256=hashlib.sha256(b"%d" % i).hexdigest(),
            outcome=EntryOutcome.RECORDED,
            reasons=(),
        )
        for i in range(count)
    ]


async def test_the_writer_keeps_only_the_window_and_resumes_from_the_tail(
    nats_url: str, keys_dir: Path
) -> None:
    nc = await connect(nats_url, name="test-writer", creds=hub_setup(keys_dir).creds)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        window, keep = timedelta(hours=24), 8
        writer = LogWriter(js, window=window, keep_last=keep)
        all_drafts = drafts(300, datetime(2026, 1, 1, tzinfo=UTC))
        for draft in all_drafts[:200]:
            await writer.append(draft)
        assert writer.size == 200
        # At most the window (24 entries an hour apart, and the one on its edge).
        assert len(writer.entries()) <= 25
        assert len(writer._first_seq_of_message) <= 25
        assert len(writer._by_ingress) <= 25
        assert writer.first_seen_seq("msg-0000000000000199") == 200
        assert writer.first_seen_seq("msg-0000000000000000") is None  # out of the window
        assert writer.entries_for_ingress(1) == ()
        proof = writer.tree.inclusion_proof(0)  # yet every index is provable
        verify_inclusion(writer.tree.leaf_hash(0), 0, 200, proof, writer.tree.root())

        # Another writer appends (as an append whose ack was lost would have): the
        # first re-reads only the tail and is the same as a full replay.
        other = LogWriter(js, window=window, keep_last=keep)
        await other.recover()
        for draft in all_drafts[200:]:
            await other.append(draft)
        await writer.resume()
        assert writer.size == other.size == 300
        assert writer.tree.root() == other.tree.root()
        assert [e.index for e in writer.entries()] == [e.index for e in other.entries()]
        assert len(writer.entries()) <= 25
    finally:
        await nc.close()
