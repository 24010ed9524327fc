"""The hub's CPU per message without the I/O: the pure pipeline plus the release signatures.

:func:`broker.pipeline.evaluate` (verify, open, validate, decide, re-seal) on
envelopes the sender sealed, with the live hub's own context and state, then one
release record signed per release (:func:`protocol.release.sign_record`, on a
record the hub signed in the run), as the service does after the log append.
This is the part of the hub the crypto floor bounds; everything else the hub
spends goes to NATS round trips.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sigbus.bench_world import RECIPIENTS, World, full_size_status
from sigbus.broker.pipeline import evaluate
from sigbus.broker.service import Broker
from sigbus.broker.setup import hub_setup
from sigbus.protocol.release import sign_record


async def pipeline_cpu_seconds(world: World[Any], keys: Path, url: str, iterations: int) -> float:
    """CPU seconds per message (this thread's) of evaluate + 2 release signatures, with
    the context and state of a hub started on the log (and not serving: the serving
    hub has stopped, and nothing is sent meanwhile)."""
    broker = hub_setup(keys).broker(url)
    await broker.start()
    try:
        return _measure(world, broker, iterations)
    finally:
        await broker.stop()


def _measure(world: World[Any], broker: Broker, iterations: int) -> float:
    raws = [world.seal_status(full_size_status()).to_wire() for _ in range(iterations)]
    record = world.handoffs.last_record
    if record is None:
        raise RuntimeError("no release has been handed off yet")
    now = datetime.now(UTC)
    started = time.thread_time()
    for seq, raw in enumerate(raws, start=1):
        plan = evaluate(
            raw,
            subject_agency=world.sender.agency,
            ingress_seq=10**9 + seq,
            first_seen=lambda _message_id: None,
            state=broker.state,
            ctx=broker.ctx,
            now=now,
        )
        if len(plan.releases) != len(RECIPIENTS):
            raise RuntimeError("the bench case no longer releases to both recipients")
        for _draft in plan.releases:
            sign_record(record, broker.ctx.identity.signing_key)
    return (time.thread_time() - started) / iterations
