"""NATS connections and JetStream streams: the one place that knows their settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from sigbus.protocol import subjects as s
from sigbus.transport.errors import TransportError
from sigbus.transport.natsauth import NatsCredentials, inbox_prefix

log = structlog.get_logger("sigbus.bus")

DAY_S = 86_400.0
CONNECT_DEADLINE_S = 10.0

#: The streams and their settings. File storage everywhere; the server fsyncs
#: every write (sync_interval: always). The log and the hub state refuse
#: deletes and purges: history is append-only.
STREAMS: tuple[StreamConfig, ...] = (
    StreamConfig(
        name=s.INGRESS_STREAM,
        subjects=[s.INGRESS_ALL],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        duplicate_window=2 * 3600.0,
        max_age=90 * DAY_S,
    ),
    StreamConfig(
        name=s.INBOX_STREAM,
        subjects=[s.INBOX_ALL],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        duplicate_window=DAY_S,
        max_age=90 * DAY_S,
    ),
    StreamConfig(
        name=s.LOG_STREAM,
        subjects=[s.LOG_ENTRY_SUBJECT],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        duplicate_window=DAY_S,
        deny_delete=True,
        deny_purge=True,
        discard=DiscardPolicy.NEW,
    ),
    StreamConfig(
        name=s.CHECKPOINT_STREAM,
        subjects=[s.CHECKPOINT_SUBJECT, s.COSIGNATURE_ALL],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        deny_delete=True,
        deny_purge=True,
    ),
    StreamConfig(
        name=s.STATE_STREAM,
        subjects=[s.STATE_SUBJECT],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        duplicate_window=DAY_S,
        deny_delete=True,
        deny_purge=True,
    ),
)


def make_error_callback(component: str) -> Callable[[Exception], Awaitable[None]]:
    """nats-py reports permission violations only through ``error_cb``: never ignore them."""
    clog = log.bind(component=component)

    async def on_error(e: Exception) -> None:
        text = str(e).lower()
        if "permission" in text or "authorization" in text:
            clog.error(
                "security_event",
                kind="permission_violation",
                error=type(e).__name__,
                detail=str(e)[:200],
            )
        else:
            clog.warning("nats_error", error=type(e).__name__)

    return on_error


async def connect(url: str, *, name: str, creds: NatsCredentials) -> Client:
    """Connect as ``creds``' identity: nkey + mutual TLS, or plaintext only if insecure_dev."""
    clog = log.bind(component=name)
    nc = Client()

    async def disconnected() -> None:
        if not (nc.is_closed or nc.is_draining):  # a disconnect we asked for is no news
            clog.warning("nats_disconnected")

    report = make_error_callback(name)

    async def on_error(e: Exception) -> None:
        if nc.is_closed or nc.is_draining:  # TLS teardown noise after our own close
            return
        await report(e)

    async def reconnected() -> None:
        clog.info("nats_reconnected")

    tls = creds.tls_context()
    if tls is None and not creds.insecure_dev:
        raise TransportError("refusing a plaintext NATS connection (use --insecure-dev to allow)")
    try:
        # Bounded: with reconnects on, a refused identity would otherwise retry forever.
        await asyncio.wait_for(
            nc.connect(
                servers=[url],
                name=name,
                error_cb=on_error,
                tls=tls,
                nkeys_seed_str=creds.nkey_seed,
                inbox_prefix=inbox_prefix(creds.agency),
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                max_reconnect_attempts=-1,  # the default (60) gives up; a hub must not
                connect_timeout=5,
                allow_reconnect=True,
            ),
            timeout=CONNECT_DEADLINE_S,
        )
    except (NatsError, OSError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
        with contextlib.suppress(NatsError):
            await nc.close()
        raise TransportError(f"cannot connect to NATS as {name}") from e
    return nc


async def ensure_streams(js: JetStreamContext, *, replicas: int = 1) -> None:
    """Create or update every stream. Idempotent; the hub calls it on start.

    ``replicas`` > 1 needs a JetStream cluster of at least that many servers; an
    acknowledged append is then on disk on a majority of them.
    """
    for base in STREAMS:
        config = replace(base, num_replicas=replicas)
        assert config.name is not None
        try:
            await js.stream_info(config.name)
            await js.update_stream(config)
        except NotFoundError:
            await js.add_stream(config)
        log.debug("stream_ready", stream=config.name)


READ_BATCH = 1000


async def read_stream(
    js: JetStreamContext, stream: str, subject: str, *, up_to_seq: int | None = None
) -> AsyncIterator[Msg]:
    """Every stored message of ``subject`` in ``stream``, in order, read in batches.

    An ephemeral pull consumer with no acks: reading leaves no trace and takes
    one round trip per batch instead of one per message.
    """
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return
    last = info.state.last_seq if up_to_seq is None else min(up_to_seq, info.state.last_seq)
    if info.state.messages == 0 or last == 0:
        return
    sub = await js.pull_subscribe(
        subject,
        stream=stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=60.0
        ),
    )
    try:
        while True:
            try:
                batch = await sub.fetch(READ_BATCH, timeout=2.0)
            except (TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041 - nats-py raises both
                raise TransportError(f"stream {stream} stopped before sequence {last}") from e
            for msg in batch:
                seq = msg.metadata.sequence.stream
                if seq > last:
                    return
                yield msg
                if seq == last:
                    return
    finally:
        with contextlib.suppress(NatsError):
            await sub.unsubscribe()
