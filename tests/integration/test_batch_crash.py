"""A hub killed with a whole batch in flight (issue 11): on restart it resumes at
once, not after the ingress consumer's ack wait, and each message is released
exactly once, in the order the log recorded."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sigbus.agents.setup import agency_setup
from sigbus.audit.entry import EntryOutcome
from sigbus.broker.service import CRASH_AFTER_LOG_ENV
from sigbus.broker.setup import hub_setup
from sigbus.fixtures import lul6_referral
from sigbus.protocol.ids import MessageType
from sigbus.protocol.subjects import INBOX_ALL, inbox_subject
from sigbus.transport.bus import connect
from tests.integration.conftest import LUL6, World

P, SO = "police", "social"
IN_FLIGHT = 12


async def test_a_crash_with_a_batch_in_flight_resumes_at_once_and_releases_once(
    nats_url: str, keys_dir: Path
) -> None:
    hub = hub_setup(keys_dir)
    first = hub.broker(nats_url)
    await first.start()  # streams and consumers exist; nothing decided yet
    await first.stop()
    police = await agency_setup(P, keys_dir).connect(nats_url)
    youth = World(broker=None, adapters={}).youth  # type: ignore[arg-type]
    sent = [
        await police.send(
            MessageType.REFERRAL,
            lul6_referral(youth, datetime.now(UTC).date()),
            recipients=(SO,),
            assertion=LUL6,
        )
        for _ in range(IN_FLIGHT)
    ]
    # A hub process that dies right after its first batch's log append.
    cmd = [sys.executable, "-m", "sigbus", "broker", "run", "--nats", nats_url]
    cmd += ["--keys", str(keys_dir)]
    crashing = subprocess.Popen(cmd, env={**os.environ, CRASH_AFTER_LOG_ENV: "1"})
    try:
        assert await asyncio.to_thread(crashing.wait, 30) == 70
    finally:
        if crashing.poll() is None:
            crashing.kill()
    nc = await connect(nats_url, name="test-observer", creds=hub.creds)
    js = nc.jetstream()
    try:
        assert (await js.stream_info("SIGBUS_INBOX")).state.messages == 0  # nothing released
        logged = (await js.stream_info("SIGBUS_LOG")).state.messages
        assert 1 <= logged <= IN_FLIGHT  # the first batch, logged before the kill

        restarted = hub.broker(nats_url)  # the default ack wait: 30 s
        started = time.monotonic()
        await restarted.start()
        try:
            while len(restarted.writer.entries()) < IN_FLIGHT:
                await restarted.process_batch(timeout=0.5)
                assert time.monotonic() - started < 10, "waited for the ack wait"
            await restarted.drain_ingress(idle_timeout=0.5)
            resumed_in = time.monotonic() - started
            entries = restarted.writer.entries()
        finally:
            await restarted.stop()
        assert resumed_in < 10
        # Decided once each: the logged batch was redone, not decided again.
        assert sorted(e.message_id for e in entries) == sorted(sent)
        assert {e.outcome for e in entries} == {EntryOutcome.RELEASE}
        inbox = await js.stream_info("SIGBUS_INBOX", subjects_filter=INBOX_ALL)
        # One release per message, and one decision notice each to the police.
        assert inbox.state.subjects == {inbox_subject(SO): IN_FLIGHT, inbox_subject(P): IN_FLIGHT}
    finally:
        await police.close()
        await nc.close()
