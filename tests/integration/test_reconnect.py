"""Adapters and the hub's connection ride out a nats-server restart (issue #12).

A real nats-server of the test's own is stopped and started again on the same port
and store under a running hub and two running `sigbus <agency> serve` processes.
Messages queued before, during and after the outage each reach the case system
exactly once, and every process logged ``nats_disconnected`` and ``nats_reconnected``.
An adapter started before nats-server and the hub waits for both instead of crashing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from nats.errors import Error as NatsError

from sigbus.agents.outbox import Outbox
from sigbus.agents.runtime import Adapter
from sigbus.agents.setup import agency_setup
from sigbus.audit.entry import LogEntry
from sigbus.broker.service import Broker
from sigbus.broker.setup import hub_setup
from sigbus.fixtures import birth_date_for_age, fictitious_personnummer, lul6_referral
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import Referral
from sigbus.protocol.subjects import LOG_STREAM
from sigbus.transport.bus import CONNECT_DEADLINE_S
from sigbus.transport.natsserver import EmbeddedNats
from tests.integration.conftest import LUL6
from tests.integration.test_serve import serve, stop

P, SO = "police", "social"
YOUTH = fictitious_personnummer(birth_date_for_age(datetime.now(UTC).date(), 15), 982)


@pytest.fixture
def own_nats(tmp_path: Path, keys_dir: Path) -> AsyncIterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats", server_name="sigbus-reconnect", keys_dir=keys_dir)
    server.start()
    try:
        yield server  # type: ignore[misc]
    finally:
        server.stop()


async def hub_loop(broker: Broker, stopped: asyncio.Event) -> None:
    """The hub deciding, as `sigbus broker run` does (the loop itself is issue 11's)."""
    while not stopped.is_set():
        try:
            await broker.process_batch(timeout=0.5)
        except (NatsError, TimeoutError, asyncio.TimeoutError):  # noqa: UP041
            await asyncio.sleep(0.5)


def referral() -> Referral:
    return lul6_referral(YOUTH, datetime.now(UTC).date())


def queue(police: Adapter, name: str) -> str:
    return police.queue(
        MessageType.REFERRAL, referral(), recipients=(SO,), assertion=LUL6,
        message_id=f"msg-reconnect-{name}",
    ).message_id  # fmt: skip


def dropped(drop: Path) -> list[str]:
    return sorted(json.loads(f.read_text())["header"]["message_id"] for f in drop.glob("*.json"))


async def wait_for_drop(drop: Path, expected: list[str], seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while dropped(drop) != sorted(expected):
        assert loop.time() < deadline, (dropped(drop), expected)
        await asyncio.sleep(0.2)


async def log_entries(broker: Broker) -> list[LogEntry]:
    return [
        LogEntry.model_validate_json((await broker.js.get_msg(LOG_STREAM, seq)).data or b"")
        for seq in range(1, broker.writer.size + 1)
    ]


async def test_adapters_and_hub_ride_out_a_nats_restart(
    own_nats: EmbeddedNats, tmp_path: Path, keys_dir: Path
) -> None:
    url = own_nats.url
    data = tmp_path / "data"
    env = {**os.environ, "SIGBUS_DATA_DIR": str(data)}
    logs = {a: tmp_path / f"serve-{a}.log" for a in (P, SO)}
    drop = tmp_path / "social-drop"
    # Started before nats-server and the hub: they wait for both.
    port = own_nats.stop_for_restart()
    procs = {
        P: await serve(P, url, keys_dir, env, "--out", str(tmp_path / "police-drop")),
        SO: await serve(SO, url, keys_dir, env, "--out", str(drop)),
    }
    readers = [
        asyncio.ensure_future(_copy(procs[a].stderr, logs[a])) for a in (P, SO)  # type: ignore[arg-type]
    ]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONNECT_DEADLINE_S + 20
    while not all("nats_unreachable" in _text(logs[a]) for a in (P, SO)):
        assert loop.time() < deadline, "serve did not report an unreachable NATS"
        await asyncio.sleep(0.2)  # past one connect attempt's deadline: it retries
    assert all(p.returncode is None for p in procs.values()), "an adapter died without NATS"
    own_nats.start_again(port)
    await asyncio.sleep(3)
    assert all(p.returncode is None for p in procs.values()), "an adapter died without a hub"
    broker = hub_setup(keys_dir).broker(url)
    police = await agency_setup(P, keys_dir).connect(url)
    police.outbox = Outbox(data / f"outbox-{P}.sqlite")
    stopped = asyncio.Event()
    hub = None
    sent: list[str] = []
    try:
        with structlog.testing.capture_logs() as events:
            await broker.start()
            hub = asyncio.ensure_future(hub_loop(broker, stopped))
            sent += [queue(police, "before-1"), queue(police, "before-2")]
            await wait_for_drop(drop, sent, 60)

            port = own_nats.stop_for_restart()
            sent += [queue(police, "during-1"), queue(police, "during-2")]
            await asyncio.sleep(8)  # longer than the 5 s that used to end the hub
            assert all(p.returncode is None for p in procs.values()), "an adapter died"
            assert hub is not None
            assert not hub.done(), "the hub's loop died"
            own_nats.start_again(port)
            restarted = asyncio.get_running_loop().time()
            await wait_for_drop(drop, sent, 90)
            recovery_s = asyncio.get_running_loop().time() - restarted
            sent += [queue(police, "after-1"), queue(police, "after-2")]
            await wait_for_drop(drop, sent, 60)
        print(f"recovery_s={recovery_s:.1f}")  # restart to the outage's messages dropped
        # Bounded: nats-py's 1 s reconnect wait, the serve loop's backoff cap (8 s) and
        # one publish timeout (5 s), not an ack wait or a stall.
        assert recovery_s < 20
        assert all(p.returncode is None for p in procs.values())
        # Exactly once: one decision each in the hub's log, one file each in the drop.
        counts: dict[str, int] = {}
        for e in await log_entries(broker):
            counts[e.message_id] = counts.get(e.message_id, 0) + 1
        assert counts == {m: 1 for m in sent}
        assert dropped(drop) == sorted(sent)
        hub_events = [e["event"] for e in events if e.get("component", "").startswith("hub")]
        assert "nats_disconnected" in hub_events, hub_events
        assert "nats_reconnected" in hub_events, hub_events
    finally:
        stopped.set()
        if hub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(hub, 5)
        for p in procs.values():
            await stop(p)
        for r in readers:
            await r
        police.outbox.close()
        await police.close()
        await broker.stop()
    for agency in (P, SO):
        text = logs[agency].read_text()
        assert "nats_unreachable" in text, (agency, text[-2000:])
        # Waiting for the hub's streams is logged once per wait and closed by
        # streams_ready; a loaded machine may see a second wait while JetStream
        # recovers its streams after the restart, never one left open.
        waits = text.count('"waiting_for_streams"')
        assert waits >= 1, (agency, text[-2000:])
        assert text.count('"streams_ready"') == waits, (agency, text[-2000:])
        assert "nats_disconnected" in text, (agency, text[-2000:])
        assert "nats_reconnected" in text, (agency, text[-2000:])
        assert "Traceback" not in text, (agency, text[-2000:])


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def _copy(stream: asyncio.StreamReader, path: Path) -> None:
    with path.open("wb") as f:
        while chunk := await stream.read(65536):
            f.write(chunk)
            f.flush()
