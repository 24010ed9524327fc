"""The baseline: a raw durable JetStream one-hop pipeline on the same server.

Same server, same mutual TLS and hub nkey, same ``sync_interval: always``, file
storage. A publisher keeps :data:`bench_e2e.WINDOW` messages undelivered (as the
sigbus sender does); a relay fetches batches from the first stream, republishes
each message to a second stream once per recipient (pipelined), and acks; two
recipient consumers fetch and ack. Done is the last recipient's hand-off.
Four connections stand in for the four processes (sender, hub, two recipients).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from sigbus.bench_e2e import DRAIN_TIMEOUT_S, WINDOW
from sigbus.transport.bus import connect
from sigbus.transport.natsauth import NatsCredentials

RAW_IN, RAW_OUT = "BENCH_RAW_IN", "BENCH_RAW_OUT"
#: Inside the hub user's publish permissions (transport.natsauth.hub_permissions).
IN_SUBJECT, OUT_PREFIX = "sigbus.benchraw.in", "sigbus.benchraw.out"
RAW_RECIPIENTS = ("a", "b")


@dataclass(frozen=True)
class RawThroughput:
    messages: int
    seconds: float
    payload_bytes: int

    @property
    def msg_per_s(self) -> float:
        return self.messages / self.seconds


async def _fresh_streams(js: JetStreamContext) -> None:
    for name, subjects in ((RAW_IN, [IN_SUBJECT]), (RAW_OUT, [f"{OUT_PREFIX}.*"])):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(name)
        await js.add_stream(
            StreamConfig(name=name, subjects=subjects, storage=StorageType.FILE, num_replicas=1)
        )


async def raw_pipeline(
    url: str, creds: NatsCredentials, n: int, payload_bytes: int
) -> RawThroughput:
    conns: list[Client] = [
        await connect(url, name=f"bench-raw-{role}", creds=creds)
        for role in ("sender", "relay", *RAW_RECIPIENTS)
    ]
    try:
        return await _run(conns, n, payload_bytes)
    finally:
        for nc in conns:
            await nc.close()


async def _run(conns: list[Client], n: int, payload_bytes: int) -> RawThroughput:
    sender, relay, *recipients = (nc.jetstream() for nc in conns)
    await _fresh_streams(sender)
    relay_sub = await relay.pull_subscribe(
        IN_SUBJECT,
        durable="relay",
        stream=RAW_IN,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT),
    )
    recipient_subs = [
        await js.pull_subscribe(
            f"{OUT_PREFIX}.{r}",
            durable=f"recipient-{r}",
            stream=RAW_OUT,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT),
        )
        for js, r in zip(recipients, RAW_RECIPIENTS, strict=True)
    ]
    window = asyncio.Semaphore(WINDOW)
    seen: dict[bytes, int] = {}
    done = asyncio.Event()

    async def relay_loop() -> None:
        while True:
            try:
                msgs = await relay_sub.fetch(64, timeout=0.2)
            except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041 - nats-py raises both
                continue
            await asyncio.gather(
                *(
                    relay.publish(f"{OUT_PREFIX}.{r}", m.data, stream=RAW_OUT)
                    for m in msgs
                    for r in RAW_RECIPIENTS
                )
            )
            for m in msgs:
                await m.ack()

    async def recipient_loop(sub: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                msgs = await sub.fetch(100, timeout=0.2)
            except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041
                continue
            for m in msgs:
                await m.ack()
                key = m.data[:16]
                seen[key] = seen.get(key, 0) + 1
                if seen[key] == len(RAW_RECIPIENTS):
                    window.release()
                    if len(seen) == n and all(v == len(RAW_RECIPIENTS) for v in seen.values()):
                        done.set()

    workers = [asyncio.create_task(relay_loop())] + [
        asyncio.create_task(recipient_loop(s)) for s in recipient_subs
    ]
    filler = os.urandom(max(0, payload_bytes - 16))
    publishes = []
    started = time.perf_counter()
    try:
        for i in range(n):
            await window.acquire()
            data = i.to_bytes(16, "big") + filler
            publishes.append(asyncio.create_task(sender.publish(IN_SUBJECT, data, stream=RAW_IN)))
        await asyncio.wait_for(done.wait(), DRAIN_TIMEOUT_S)
        await asyncio.gather(*publishes)
        seconds = time.perf_counter() - started
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for name in (RAW_IN, RAW_OUT):
            with contextlib.suppress(NotFoundError):
                await sender.delete_stream(name)
    return RawThroughput(n, seconds, payload_bytes)
