"""The withdrawal fast lane under a backlog (issue 11): how soon a withdrawal holds.

A separate world (its hub admits a deep backlog): ``cases`` cases, each with
the young person's and both guardians' samtycke (consent). With the hub held,
the police queue ``backlog`` full-size messages spread over those cases; the
hub is released and, while it works through the queue, social services
withdraw the young person's consent in each case, one after another. For each
withdrawal: the time from just before its publish to the moment its log entry
is durable (the hub's own view, polled every millisecond). Releases it pulled
back from inboxes are counted, and any release of that case decided after the
withdrawal is counted as a violation (it must be 0).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sigbus.agents.setup import agency_setup
from sigbus.audit.entry import EntryOutcome
from sigbus.bench_world import RECIPIENTS, HubThread, World, full_size_status, open_case
from sigbus.protocol.codes import ConsentAction, ConsenterRole
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import ConsentEvent
from sigbus.protocol.subjects import ingress_subject
from sigbus.transport.keystore import DEV_AGENCIES

#: How far ahead of the queue a withdrawal is sent, after the hub is released.
HEAD_START_S = 0.5
GAP_S = 0.2


@dataclass(frozen=True)
class WithdrawalLatency:
    backlog: int
    withdrawals: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    queued_when_sent: int
    retracted: int
    releases_after_withdrawal: int


async def withdrawal_latency(
    keys: Path, url: str, *, backlog: int, cases: int
) -> WithdrawalLatency:
    hub = HubThread(keys, url, profile=None, ingress_backlog=backlog + 64)
    hub.start()
    adapters = {a: await agency_setup(a, keys).connect(url) for a in DEV_AGENCIES}
    world = World(hub, adapters)
    world.start_receivers()
    try:
        refs = [await open_case(world) for _ in range(cases)]
        await _until(lambda: _recorded_consents(world) >= 3 * cases)
        hub.call(_hold(world, held=True))
        await _queue(world, refs, backlog)
        queued = backlog
        hub.call(_hold(world, held=False))
        await asyncio.sleep(HEAD_START_S)
        latencies: list[float] = []
        withdrawn: list[str] = []
        for case in refs:
            started = time.perf_counter()
            mid = await adapters["social"].send(
                MessageType.CONSENT_EVENT, _withdrawal(), case_ref=case
            )
            await _until(lambda m=mid: hub.broker.writer.first_seen_seq(m) is not None, step=0.001)
            latencies.append(time.perf_counter() - started)
            withdrawn.append(mid)
            await asyncio.sleep(GAP_S)
        await _until(lambda: _backlog_done(world, backlog), timeout=600)
        retracted, after = _account(world, withdrawn)
    finally:
        await world.close()
    ms = sorted(x * 1e3 for x in latencies)
    return WithdrawalLatency(
        backlog=backlog,
        withdrawals=len(ms),
        p50_ms=statistics.median(ms),
        p99_ms=ms[min(len(ms) - 1, round(0.99 * len(ms) + 0.5) - 1)],
        max_ms=ms[-1],
        queued_when_sent=queued,
        retracted=retracted,
        releases_after_withdrawal=after,
    )


def _withdrawal() -> ConsentEvent:
    return ConsentEvent(
        consent_id="consent-youngperson",
        action=ConsentAction.WITHDRAWN,
        consenter_role=ConsenterRole.YOUNG_PERSON,
        acted_at=datetime.now(UTC),
        recorded_by="social_case_worker",
    )


async def _hold(world: World[HubThread], *, held: bool) -> None:
    world.hub.broker.hold(held)


async def _queue(world: World[HubThread], refs: list[str], backlog: int) -> None:
    """Seal ``backlog`` full-size messages first, then publish them pipelined."""
    sender = world.sender
    envelopes = [
        sender.seal(
            MessageType.COMMITMENT_STATUS,
            full_size_status(),
            case_ref=refs[i % len(refs)],
            recipients=RECIPIENTS,
        )
        for i in range(backlog)
    ]
    js = sender.js
    futures = [
        await js.publish_async(
            ingress_subject(sender.agency),
            e.to_wire(),
            headers={"Nats-Msg-Id": e.header.message_id},
        )
        for e in envelopes
    ]
    await asyncio.wait_for(asyncio.gather(*futures), timeout=300)


def _recorded_consents(world: World[HubThread]) -> int:
    return sum(
        1 for e in world.hub.broker.writer.entries() if e.message_type is MessageType.CONSENT_EVENT
    )


def _backlog_done(world: World[HubThread], backlog: int) -> bool:
    decided = {
        e.message_id
        for e in world.hub.broker.writer.entries()
        if e.message_type is MessageType.COMMITMENT_STATUS
    }
    return len(decided) >= backlog


def _account(world: World[HubThread], withdrawn: list[str]) -> tuple[int, int]:
    """(retraction entries, releases decided after their case's withdrawal)."""
    entries = list(world.hub.broker.writer.entries())
    at = {e.case_ref: e.index for e in entries if e.message_id in withdrawn}
    retracted = sum(1 for e in entries if e.outcome is EntryOutcome.RETRACTION)
    after = sum(
        1
        for e in entries
        if e.outcome is EntryOutcome.RELEASE and e.case_ref in at and e.index > at[e.case_ref]
    )
    return retracted, after


async def _until(check: object, *, step: float = 0.01, timeout: float = 60.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("bench: the hub did not get there in time")
        await asyncio.sleep(step)
