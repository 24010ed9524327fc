"""End to end through a real hub: throughput and latency at fixed offered loads.

A message counts as done when both recipients' handlers have it (the last
hand-off). Its latency runs from just before the sender seals it to that
hand-off. The sender keeps at most :data:`WINDOW` messages undelivered: the bus
refuses more than ``transport.bus.INGRESS_BACKLOG`` (64) waiting per agency.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sigbus.agents.errors import PublishFailed
from sigbus.bench_world import RECIPIENTS, World
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import CommitmentStatus
from sigbus.protocol.subjects import ingress_subject

#: Undelivered messages one sender keeps in flight in the throughput run.
WINDOW = 32
#: How long to wait for the last hand-off after the last publish.
DRAIN_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Throughput:
    messages: int
    seconds: float
    hub_cpu_s: float
    envelope_bytes: int

    @property
    def msg_per_s(self) -> float:
        return self.messages / self.seconds

    @property
    def hub_cpu_per_msg_s(self) -> float:
        return self.hub_cpu_s / self.messages


@dataclass(frozen=True)
class Latency:
    offered_per_s: float
    sent: int
    refused: int
    delivered: int
    p50_ms: float
    p99_ms: float


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


async def _send(world: World[Any], body: CommitmentStatus) -> str:
    return await world.sender.send(
        MessageType.COMMITMENT_STATUS, body, case_ref=world.case_ref, recipients=RECIPIENTS
    )


async def throughput(
    world: World[Any], make_body: Callable[[], CommitmentStatus], n: int
) -> Throughput:
    """``n`` messages, windowed; from the first publish to the last hand-off."""
    window = asyncio.Semaphore(WINDOW)
    done = asyncio.Event()
    remaining = n
    envelope_bytes = len(world.seal_status(make_body()).to_wire())

    async def one() -> None:
        nonlocal remaining
        waiter = asyncio.Event()
        message_id = await _send_waiting(world, make_body(), waiter)
        await waiter.wait()
        world.handoffs.complete.pop(message_id, None)
        world.handoffs.at.pop(message_id, None)
        window.release()
        remaining -= 1
        if remaining == 0:
            done.set()

    cpu_before = world.hub.cpu_seconds()
    started = time.perf_counter()
    tasks = []
    for _ in range(n):
        await window.acquire()
        tasks.append(asyncio.create_task(one()))
    await asyncio.wait_for(done.wait(), DRAIN_TIMEOUT_S)
    seconds = time.perf_counter() - started
    cpu = world.hub.cpu_seconds() - cpu_before
    await asyncio.gather(*tasks)
    return Throughput(n, seconds, cpu, envelope_bytes)


async def _send_waiting(world: World[Any], body: CommitmentStatus, waiter: asyncio.Event) -> str:
    """Send, and have ``waiter`` set at the last hand-off (also if it came first)."""
    envelope = world.seal_status(body)
    message_id = envelope.header.message_id
    world.handoffs.waiters[message_id] = waiter
    await world.sender.publish_raw(
        ingress_subject(world.sender.agency), envelope.to_wire(), message_id
    )
    if message_id in world.handoffs.complete:
        waiter.set()
    return message_id


async def latency(
    world: World[Any], make_body: Callable[[], CommitmentStatus], rate: float, duration: float
) -> Latency:
    """Open loop: one send every ``1/rate`` s for ``duration`` s, each in its own task."""
    count = max(1, round(rate * duration))
    starts: dict[str, float] = {}
    refused = 0

    async def one(at: float) -> None:
        nonlocal refused
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        started = time.perf_counter()
        try:
            message_id = await _send(world, make_body())
        except PublishFailed:
            refused += 1  # the agency's backlog at the hub is full: the hub is saturated
            return
        starts[message_id] = started

    t0 = time.perf_counter() + 0.05
    await asyncio.gather(*(one(t0 + i / rate) for i in range(count)))
    deadline = time.perf_counter() + DRAIN_TIMEOUT_S
    while time.perf_counter() < deadline and any(m not in world.handoffs.complete for m in starts):
        await asyncio.sleep(0.05)
    latencies = [
        (world.handoffs.complete[m] - s) * 1000
        for m, s in starts.items()
        if m in world.handoffs.complete
    ]
    for m in starts:
        world.handoffs.complete.pop(m, None)
        world.handoffs.at.pop(m, None)
    return Latency(
        offered_per_s=rate,
        sent=count,
        refused=refused,
        delivered=len(latencies),
        p50_ms=percentile(latencies, 50) if latencies else float("nan"),
        p99_ms=percentile(latencies, 99) if latencies else float("nan"),
    )


def median(values: list[float]) -> float:
    return statistics.median(values)
