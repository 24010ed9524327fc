"""NATS connections and JetStream streams: the one place that knows their settings."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
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
from nats.js.errors import APIError, NotFoundError

from sigbus.protocol import subjects as s
from sigbus.protocol.ids import AgencyId
from sigbus.transport.errors import NatsUnreachable, TransportError
from sigbus.transport.lease import ensure_lease_bucket
from sigbus.transport.natsauth import NatsCredentials, inbox_prefix

log = structlog.get_logger("sigbus.bus")

DAY_S = 86_400.0
CONNECT_DEADLINE_S = 10.0
#: Reconnect pacing: nats-py waits this long between tries of one server, forever
#: (max_reconnect_attempts=-1); a process rides out an outage of any length.
RECONNECT_WAIT_S = 1
#: Bounded exponential backoff for a loop that retries after a transport error.
BACKOFF_FIRST_S = 0.25
BACKOFF_CAP_S = 8.0


class Backoff:
    """Exponential backoff from :data:`BACKOFF_FIRST_S`, doubling up to ``cap``; reset
    after a success."""

    def __init__(self, first: float = BACKOFF_FIRST_S, cap: float = BACKOFF_CAP_S) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first


#: How many of one agency's messages may wait undecided in the ingress stream.
#: One more is refused at the bus (JetStream's per-subject limit, discard new), so
#: a flooding agency holds at most this many messages ahead of anyone else's:
#: another agency's message waits at most INGRESS_BACKLOG decisions per flooder.
INGRESS_BACKLOG = 64
#: Largest message an agency may store in the ingress stream (its account's
#: max_payload is the same bound, enforced before the stream sees it).
INGRESS_MAX_MSG_BYTES = 128 * 1024

#: Versions of each snapshot subject kept (broker/snapshot.py).
SNAPSHOT_KEEP = 3

#: The streams and their settings. File storage everywhere; the server fsyncs
#: every write (sync_interval: always). The log and the hub state refuse
#: deletes and purges: history is append-only.
STREAMS: tuple[StreamConfig, ...] = (
    StreamConfig(
        name=s.INGRESS_STREAM,
        subjects=[s.INGRESS_ALL, s.URGENT_ALL],
        storage=StorageType.FILE,
        # A message leaves the stream when the hub acks it (after log and release),
        # so what is stored is exactly what waits: the per-agency backlog.
        retention=RetentionPolicy.WORK_QUEUE,
        duplicate_window=2 * 3600.0,
        max_age=90 * DAY_S,
        max_msgs_per_subject=INGRESS_BACKLOG,
        discard=DiscardPolicy.NEW,
        discard_new_per_subject=True,
        max_msg_size=INGRESS_MAX_MSG_BYTES,
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
    StreamConfig(
        name=s.SNAPSHOT_STREAM,
        subjects=[s.SNAPSHOT_ALL],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        # The latest three of each piece and manifest: a snapshot cut short by a
        # crash leaves the one before it whole (broker/snapshot.py).
        max_msgs_per_subject=SNAPSHOT_KEEP,
        discard=DiscardPolicy.OLD,
    ),
    StreamConfig(
        name=s.VAULT_STREAM,
        subjects=[s.VAULT_ALL],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        # One copy and one key per message (a redo after a crash writes the same
        # bytes); a key is deleted (and erased by the server) when it is shredded.
        max_msgs_per_subject=1,
        discard=DiscardPolicy.OLD,
    ),
    *(
        StreamConfig(
            name=name,
            subjects=[subject],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            deny_delete=True,
            deny_purge=True,
        )
        for name, subject in (
            (s.ACCESS_STREAM, s.ACCESS_SUBJECT),
            (s.FINDINGS_STREAM, s.FINDINGS_SUBJECT),
        )
    ),
)


_nats_async_reply = JetStreamContext._handle_async_reply


async def _async_reply_with_errors(self: JetStreamContext, msg: Msg) -> None:
    """A refused pipelined publish fails its future with the server's error.

    nats-py (2.16) raises that error inside its reply callback (``APIError.from_error``
    raises), so the future never resolves: the caller waits out its timeout and sees a
    ``TimeoutError``, and the cause ("maximum bytes exceeded", "insufficient
    resources", a wrong expected last sequence) reaches only ``error_cb`` (issue 12).
    """
    token = msg.subject[len(self._nc._inbox_prefix) + 22 + 2 :]
    future = self._publish_async_futures.get(token)
    if future is not None and not future.done() and msg.data:
        with contextlib.suppress(ValueError):
            resp = json.loads(msg.data)
            if isinstance(resp, dict) and isinstance(resp.get("error"), dict):
                try:
                    APIError.from_error(resp["error"])
                except APIError as e:
                    future.set_exception(e)
                    return
    await _nats_async_reply(self, msg)


JetStreamContext._handle_async_reply = _async_reply_with_errors  # type: ignore[method-assign]


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
    """Connect as ``creds``' identity: nkey + mutual TLS, or plaintext only if insecure_dev.

    ``url`` may name several servers of one cluster, comma-separated: the client tries
    them in turn, at the start and on every reconnect."""
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
        # As loud as the disconnect: who saw the incident open sees it close.
        clog.warning("nats_reconnected")

    tls = creds.tls_context()
    if tls is None and not creds.insecure_dev:
        raise TransportError("refusing a plaintext NATS connection (use --insecure-dev to allow)")
    try:
        # Bounded: with reconnects on, a refused identity would otherwise retry forever.
        await asyncio.wait_for(
            nc.connect(
                servers=[u.strip() for u in url.split(",") if u.strip()],
                name=name,
                error_cb=on_error,
                tls=tls,
                nkeys_seed_str=creds.nkey_seed,
                inbox_prefix=inbox_prefix(creds.agency),
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                max_reconnect_attempts=-1,  # the default (60) gives up; a hub must not
                reconnect_time_wait=RECONNECT_WAIT_S,
                connect_timeout=5,
                allow_reconnect=True,
            ),
            timeout=CONNECT_DEADLINE_S,
        )
    except (NatsError, OSError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
        with contextlib.suppress(NatsError):
            await nc.close()
        raise NatsUnreachable(f"cannot connect to NATS as {name}") from e
    return nc


async def close_connection(nc: Client) -> None:
    """Close ``nc``, also in the middle of an outage. nats-py (2.x) closing a TLS
    connection that is reconnecting flushes into a transport already torn down and
    raises ``AttributeError`` (``'NoneType' object has no attribute '_write_appdata'``):
    seen on `sigbus down` while the store watch held nats-server stopped. The
    connection is gone either way; a stop must not end in a traceback."""
    if nc.is_closed:
        return
    with contextlib.suppress(NatsError, AttributeError, OSError):
        await nc.close()


async def ensure_streams(
    js: JetStreamContext, *, replicas: int = 1, ingress_backlog: int = INGRESS_BACKLOG
) -> None:
    """Create or update every stream. Idempotent; the hub calls it on start.

    ``replicas`` > 1 needs a JetStream cluster of at least that many servers; an
    acknowledged append is then on disk on a majority of them. ``ingress_backlog``:
    messages that may wait per agency (and lane) before the bus refuses more.
    """
    for base in STREAMS:
        config = replace(base, num_replicas=replicas)
        if config.name == s.INGRESS_STREAM:
            config = replace(config, max_msgs_per_subject=ingress_backlog)
        assert config.name is not None
        try:
            await js.stream_info(config.name)
            await js.update_stream(config)
        except NotFoundError:
            await js.add_stream(config)
        log.debug("stream_ready", stream=config.name)
    await ensure_lease_bucket(js, replicas=replicas)


async def ensure_agency_consumers(js: JetStreamContext, agencies: Iterable[AgencyId]) -> None:
    """Each agency's two durable consumers, made by the hub with their filters fixed.

    An agency can only fetch from and ack these (transport.natsauth exports
    nothing else), so it can never point a consumer at another agency's inbox.
    Idempotent: the hub calls it on start and when the directory grows.
    """
    for agency in agencies:
        for stream, name, subject in (
            (s.INBOX_STREAM, s.inbox_consumer(agency), s.inbox_subject(agency)),
            (s.CHECKPOINT_STREAM, s.witness_consumer(agency), s.CHECKPOINT_SUBJECT),
        ):
            await js.add_consumer(
                stream,
                ConsumerConfig(
                    name=name,
                    durable_name=name,
                    filter_subject=subject,
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                ),
            )
        log.debug("agency_consumers_ready", agency=agency)


READ_BATCH = 1000
#: Lookups in flight at once when reading by sequence.
GET_WINDOW = 256


async def read_by_sequence(
    js: JetStreamContext, stream: str, last_seq: int
) -> AsyncIterator[bytes]:
    """Messages 1..``last_seq`` of ``stream``, in order, by sequence lookups.

    The read-only auditor's way: it may look messages up (STREAM.MSG.GET) but not
    create a consumer, since a push consumer could deliver into another stream.
    A window of lookups in flight keeps it at a fraction of a round trip each.
    """
    for start in range(1, last_seq + 1, GET_WINDOW):
        window = range(start, min(start + GET_WINDOW, last_seq + 1))
        try:
            stored = await asyncio.gather(*(js.get_msg(stream, seq) for seq in window))
        except NotFoundError as e:
            raise TransportError(f"stream {stream} has a gap before sequence {last_seq}") from e
        for msg in stored:
            yield bytes(msg.data or b"")


async def read_stream(
    js: JetStreamContext,
    stream: str,
    subject: str,
    *,
    up_to_seq: int | None = None,
    from_seq: int = 1,
) -> AsyncIterator[Msg]:
    """Every stored message of ``subject`` in ``stream`` from ``from_seq`` on, in order.

    An ephemeral pull consumer with no acks: reading leaves no trace and takes
    one round trip per batch instead of one per message.
    """
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return
    last = info.state.last_seq if up_to_seq is None else min(up_to_seq, info.state.last_seq)
    if info.state.messages == 0 or last == 0 or from_seq > last:
        return
    from_start = from_seq <= 1
    sub = await js.pull_subscribe(
        subject,
        stream=stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL if from_start else DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=None if from_start else from_seq,
            inactive_threshold=60.0,
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
