"""The adapter runtime every agency shares.

Send: build the header, seal the body to the hub (HPKE), sign, publish to the
agency's own ingress subject with ``Nats-Msg-Id`` = message id, retrying with
the *same* id so a retry after a lost ack is de-duplicated by JetStream.

Receive: a durable pull consumer on the agency's inbox; for each release
verify the sender's signature and the hub's release record, open the data key
sealed to us, validate the body, hand the typed message to the agency's
handler, and ack only after the handler succeeded. A release that fails
verification is logged as a security event and terminated (never redelivered,
never handed on): loud, not silent.

Decision notices (the hub's signed receipt for each of our own messages) come
through the same inbox: they are verified against the hub's key, logged as an
event and given to ``on_notice`` if one is set, never to the case system. A
sending command does not wait on the inbox (``serve`` may be draining it) but
asks the hub's notice service for its own message: :meth:`Adapter.await_notice`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError
from pydantic import ValidationError

from sigbus.agents.errors import NoticeRejected, PublishFailed, ReleaseRejected
from sigbus.agents.metrics import AdapterMetrics
from sigbus.agents.outbox import Outbox, OutboxError, OutboxItem, content_digest
from sigbus.protocol.directory import Directory
from sigbus.protocol.envelope import (
    Envelope,
    Header,
    open_body,
    parse_body,
    seal_envelope,
    verify_sender,
)
from sigbus.protocol.errors import ProtocolError
from sigbus.protocol.identity import AgencyIdentity
from sigbus.protocol.ids import HUB, AgencyId, MessageType, new_opaque_id
from sigbus.protocol.messages import Body, StatutoryAssertion, narrows_consent
from sigbus.protocol.notice import (
    DecisionNotice,
    NoticeReply,
    NoticeRequest,
    SignedNotice,
    parse_inbox_item,
    verify_notice,
)
from sigbus.protocol.release import Release, ReleaseRecord, verify_release_record
from sigbus.protocol.sealing import STRICT_SUITES, SuitePolicy
from sigbus.protocol.subjects import (
    HUB_JS_PREFIX,
    INBOX_STREAM,
    NOTICE_REQUEST,
    inbox_consumer,
    ingress_subject,
    service_subject,
    urgent_subject,
)
from sigbus.transport.bus import Backoff, close_connection, connect
from sigbus.transport.metrics import tls_certs
from sigbus.transport.natsauth import NatsCredentials

log = structlog.get_logger("sigbus.adapter")

PUBLISH_ATTEMPTS = 5
PUBLISH_BACKOFF_S = 0.2


@dataclass(frozen=True)
class Delivered:
    """A verified, opened release as handed to the agency's case system."""

    header: Header
    record: ReleaseRecord
    body: Body


Handler = Callable[[Delivered], Awaitable[None]]
NoticeHandler = Callable[[DecisionNotice], Awaitable[None]]

#: How often a waiting command asks the hub again for its decision notice.
NOTICE_POLL_S = 0.2


def utc_now() -> datetime:
    return datetime.now(UTC)


#: JetStream's error code for a per-subject limit with discard-new (our ingress backlog).
_BACKLOG_FULL = 10077


class Adapter:
    def __init__(
        self,
        identity: AgencyIdentity,
        directory: Directory,
        nc: Client,
        *,
        clock: Callable[[], datetime] = utc_now,
        js_prefix: str = HUB_JS_PREFIX,
        suite_policy: SuitePolicy = STRICT_SUITES,
    ) -> None:
        self.identity = identity
        self.agency = identity.agency
        self.directory = directory
        #: Where a fresh directory comes from (a file watcher); None: fixed.
        self.directory_source: Callable[[], Directory] | None = None
        self._nc = nc
        #: The hub account's JetStream, as far as it is exported to this agency.
        self._js: JetStreamContext = nc.jetstream(prefix=js_prefix)
        self._clock = clock
        #: Classical-only HPKE suites (a hub key of X25519 alone) are refused unless allowed.
        self.suite_policy = suite_policy
        self._sub: JetStreamContext.PullSubscription | None = None
        self.log = log.bind(agency=self.agency)
        #: The durable outbox and processed-release store; None: sends go straight out.
        self.outbox: Outbox | None = None
        #: Set while the hub's streams or our consumer are missing (logged once).
        self._waiting_for_streams = False
        #: Counted as items are dealt with; served by ``serve --metrics-port``.
        self.metrics = AdapterMetrics()

    @classmethod
    async def connect(
        cls,
        url: str,
        identity: AgencyIdentity,
        directory: Directory,
        creds: NatsCredentials,
        *,
        clock: Callable[[], datetime] = utc_now,
        suite_policy: SuitePolicy = STRICT_SUITES,
    ) -> Adapter:
        nc = await connect(url, name=f"adapter-{identity.agency}", creds=creds)
        adapter = cls(
            identity,
            directory,
            nc,
            clock=clock,
            js_prefix=creds.js_prefix,
            suite_policy=suite_policy,
        )
        adapter.metrics.certs = tls_certs(creds)
        return adapter

    @property
    def nc(self) -> Client:
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        return self._js

    def now(self) -> datetime:
        return self._clock()

    async def close(self) -> None:
        await close_connection(self._nc)

    def _refresh_directory(self) -> None:
        if self.directory_source is not None:
            self.directory = self.directory_source()

    # -- sending -----------------------------------------------------------

    def _outbox_key(self) -> bytes:
        """The outbox digest key: HKDF-SHA-256 (RFC 5869) from the agency's signing key,
        domain-separated, so nothing new to store and nothing a stolen outbox file gives."""
        secret = self.identity.signing_key.private_bytes_raw()
        return HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"sigbus/v1/outbox-digest"
        ).derive(secret)

    def seal(
        self,
        message_type: MessageType,
        body: Body,
        *,
        case_ref: str | None = None,
        recipients: tuple[AgencyId, ...] = (),
        message_id: str | None = None,
        assertion: StatutoryAssertion | None = None,
    ) -> Envelope:
        now = self._clock()
        self._refresh_directory()
        hub_key = self.directory.sealing_key(HUB, at=now)
        assert hub_key.suite is not None
        header = Header(
            message_id=message_id or new_opaque_id("msg"),
            type=message_type,
            sender=self.agency,
            sender_key_id=self.identity.signing_key_id,
            case_ref=case_ref,
            created_at=now,
            recipients=recipients,
            assertion=assertion,
            suite=hub_key.suite,
        )
        return seal_envelope(
            header,
            body,
            self.identity,
            recipient=HUB,
            recipient_key_id=hub_key.key_id,
            recipient_public=hub_key.public_key,
            policy=self.suite_policy,
        )

    def queue(
        self,
        message_type: MessageType,
        body: Body,
        *,
        case_ref: str | None = None,
        recipients: tuple[AgencyId, ...] = (),
        message_id: str | None = None,
        assertion: StatutoryAssertion | None = None,
    ) -> OutboxItem:
        """Seal the message and store it in the outbox (on disk when this returns).

        The same ``message_id`` with the same content gives back the first sealed
        envelope (idempotent); with different content :class:`MessageIdConflict`."""
        if self.outbox is None:
            raise PublishFailed("this adapter has no outbox")
        message_id = message_id or new_opaque_id("msg")
        digest = content_digest(
            self._outbox_key(),
            message_type,
            body,
            case_ref=case_ref,
            recipients=recipients,
            assertion=assertion,
        )
        existing = self.outbox.check(message_id, digest)
        if existing is not None:
            return existing
        envelope = self.seal(
            message_type,
            body,
            case_ref=case_ref,
            recipients=recipients,
            message_id=message_id,
            assertion=assertion,
        )
        queued = self.outbox.put(
            message_id, self._lane(body), digest, envelope.to_wire(), self._clock()
        )
        self.log.info("message_queued", message_id=message_id)
        return queued

    def _lane(self, body: Body) -> str:
        """A withdrawal takes the fast lane: decided ahead of what was queued before it."""
        return (
            urgent_subject(self.agency) if narrows_consent(body) else ingress_subject(self.agency)
        )

    async def flush(self) -> int:
        """Publish every undelivered outbox message, oldest first; each is marked
        delivered only after its publish ack. Stops at the first failure (it stays
        queued). Counts the messages delivered."""
        if self.outbox is None:
            return 0
        delivered = 0
        for item in self.outbox.pending():
            seq = await self.publish_raw(item.subject, item.envelope, item.message_id)
            self.outbox.mark_delivered(item.message_id, seq, self._clock())
            delivered += 1
        return delivered

    async def send(
        self,
        message_type: MessageType,
        body: Body,
        *,
        case_ref: str | None = None,
        recipients: tuple[AgencyId, ...] = (),
        message_id: str | None = None,
        assertion: StatutoryAssertion | None = None,
    ) -> str:
        if self.outbox is not None:
            queued = self.queue(
                message_type,
                body,
                case_ref=case_ref,
                recipients=recipients,
                message_id=message_id,
                assertion=assertion,
            )
            await self.flush()
            return queued.message_id
        envelope = self.seal(
            message_type,
            body,
            case_ref=case_ref,
            recipients=recipients,
            message_id=message_id,
            assertion=assertion,
        )
        await self.publish_raw(
            self._lane(body),
            envelope.to_wire(),
            envelope.header.message_id,
        )
        return envelope.header.message_id

    async def publish_raw(self, subject: str, data: bytes, message_id: str) -> int:
        """Publish with retries, always with the same ``Nats-Msg-Id``; the stream sequence."""
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                ack = await self._js.publish(
                    subject, data, headers={"Nats-Msg-Id": message_id}, timeout=5.0
                )
            except APIError as e:
                if e.err_code != _BACKLOG_FULL:
                    self.log.warning(
                        "publish_retry",
                        message_id=message_id,
                        attempt=attempt,
                        error=type(e).__name__,
                    )
                    await asyncio.sleep(PUBLISH_BACKOFF_S * attempt)
                    continue
                # Our own backlog at the hub is full (transport.bus.INGRESS_BACKLOG): the
                # bus refused it, nothing was stored; the sender must know and may retry.
                self.log.warning("publish_refused", message_id=message_id, reason="backlog_full")
                raise PublishFailed(
                    f"message {message_id} refused by the bus: this agency already has the "
                    "most messages allowed waiting for the hub; try again when it has decided"
                ) from e
            except (NatsError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
                self.log.warning(
                    "publish_retry", message_id=message_id, attempt=attempt, error=type(e).__name__
                )
                await asyncio.sleep(PUBLISH_BACKOFF_S * attempt)
                continue
            self.log.info(
                "message_sent",
                message_id=message_id,
                subject=subject,
                stream_seq=ack.seq,
                duplicate=bool(ack.duplicate),
            )
            return int(ack.seq)
        raise PublishFailed(f"message {message_id} not acknowledged after {PUBLISH_ATTEMPTS} tries")

    # -- receiving ---------------------------------------------------------

    async def _subscription(self) -> JetStreamContext.PullSubscription:
        if self._sub is None:
            # The hub made this consumer with its filter fixed to our inbox
            # (transport.bus.ensure_agency_consumers); an agency can only bind to it.
            self._sub = await self._js.pull_subscribe_bind(
                inbox_consumer(self.agency), INBOX_STREAM
            )
        return self._sub

    def open_release(self, raw: bytes) -> Delivered:
        """Verify both signatures and open a release; raises :class:`ReleaseRejected`."""
        try:
            item = parse_inbox_item(raw)
        except ProtocolError as e:
            raise ReleaseRejected(e.reason.value) from e
        if not isinstance(item, Release):
            raise ReleaseRejected("a decision notice is not a release")
        return self._open_release(item)

    def check_notice(self, signed: SignedNotice) -> DecisionNotice:
        """The hub's signature (its key from the directory) and that it is ours."""
        self._refresh_directory()
        notice = signed.notice
        try:
            hub_key = self.directory.signing_key(HUB, notice.hub_key_id, at=notice.decided_at)
            return verify_notice(signed, hub_key, me=self.agency)
        except ProtocolError as e:
            raise NoticeRejected(str(e)) from e

    async def await_notice(self, message_id: str, *, timeout: float) -> DecisionNotice | None:
        """Ask the hub for our message's decision notice until it has one, or None
        after ``timeout`` seconds (the hub is down, busy, or never got the message)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        request = NoticeRequest(message_id=message_id).model_dump_json().encode()
        subject = service_subject(self.agency, NOTICE_REQUEST)
        while (left := deadline - loop.time()) > 0:
            try:
                msg = await self._nc.request(subject, request, timeout=min(left, 1.0))
                reply = NoticeReply.model_validate_json(msg.data)
            except (NatsError, TimeoutError, asyncio.TimeoutError, ValidationError):  # noqa: UP041
                reply = None
            if reply is not None and reply.notice is not None:
                notice = self.check_notice(reply.notice)
                if notice.message_id != message_id:
                    raise NoticeRejected("decision notice names another message")
                return notice
            await asyncio.sleep(min(NOTICE_POLL_S, max(deadline - loop.time(), 0)))
        return None

    def _open_release(self, release: Release) -> Delivered:
        self._refresh_directory()
        try:
            header = release.envelope.header
            # The sender's key must be valid both when the sender says it signed and when
            # the hub (signing the record) released it: a backdated created_at alone
            # cannot bring a revoked key back (issue 10).
            sender_key = self.directory.signing_key(
                header.sender, header.sender_key_id, at=header.created_at
            )
            self.directory.signing_key(
                header.sender, header.sender_key_id, at=release.record.released_at
            )
            verify_sender(release.envelope, sender_key)
            hub_key = self.directory.signing_key(
                HUB, release.record.hub_key_id, at=release.record.released_at
            )
            verify_release_record(release, hub_key, me=self.agency)
            if release.record.recipient_key_id != self.identity.sealing_key_id:
                raise ReleaseRejected("release sealed to a key this adapter does not hold")
            plaintext = open_body(
                release.envelope,
                recipient=self.agency,
                suite_private=self.identity.sealing_private,
                sealed_key=(release.sealed_key, release.sealed_key_id),
            )
            body = parse_body(header.type, plaintext)
        except ProtocolError as e:
            raise ReleaseRejected(e.reason.value) from e
        return Delivered(header=header, record=release.record, body=body)

    async def receive(
        self,
        handler: Handler,
        *,
        on_notice: NoticeHandler | None = None,
        max_messages: int = 100,
        timeout: float = 1.0,
    ) -> int:
        """Fetch up to ``max_messages`` inbox items: each release to ``handler``, each
        decision notice to ``on_notice``. Counts the items dealt with (0: none waiting)."""
        sub = await self._subscription()
        try:
            msgs = await sub.fetch(max_messages, timeout=timeout)
        except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041 - nats-py raises both
            return 0
        except (ServiceUnavailableError, NotFoundError):
            # The hub makes the streams and each agency's consumer when it starts and
            # when it first sees the agency in the directory; until then there is
            # nothing to fetch, and nothing lost: wait, logged once.
            if not self._waiting_for_streams:
                self.log.warning("waiting_for_streams")
                self._waiting_for_streams = True
            await asyncio.sleep(timeout)
            return 0
        if self._waiting_for_streams:
            self.log.warning("streams_ready")  # closes the waiting_for_streams above
            self._waiting_for_streams = False
        handled = 0
        for msg in msgs:
            handled += await self._deliver(msg, handler, on_notice)
        return handled

    async def serve(
        self,
        handler: Handler,
        *,
        also: Callable[[], Awaitable[object]] | None = None,
        stop: asyncio.Event | None = None,
        receive_timeout: float = 2.0,
    ) -> None:
        """The adapter's loop until ``stop``: deliver what waits in the outbox, hand
        what is released to ``handler``, then run ``also`` (the witness). A transport
        fault (NATS down, restarting, the hub not up yet, a full backlog, a busy
        outbox) is logged and retried with bounded exponential backoff, forever;
        anything else (a fork, a security refusal) ends the loop loudly."""
        backoff = Backoff()
        while stop is None or not stop.is_set():
            try:
                await self.flush()
                await self.receive(handler, timeout=receive_timeout)
                if also is not None:
                    await also()
            except (ServiceUnavailableError, NotFoundError):
                # A stream or consumer the hub makes is missing (a publish or the witness
                # found no responder): the hub is not up yet.
                if not self._waiting_for_streams:
                    self.log.warning("waiting_for_streams")
                    self._waiting_for_streams = True
                await asyncio.sleep(backoff.next())
                continue
            except (NatsError, TimeoutError, asyncio.TimeoutError, PublishFailed, OutboxError) as e:  # noqa: UP041
                delay = backoff.next()
                self.log.warning("serve_retry", error=type(e).__name__, retry_in_s=delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()

    async def _deliver(self, msg: Msg, handler: Handler, on_notice: NoticeHandler | None) -> int:
        try:
            item = parse_inbox_item(msg.data)
        except ProtocolError as e:
            return await self._reject(msg, "release_rejected", e.reason.value)
        if isinstance(item, SignedNotice):
            return await self._take_notice(msg, item, on_notice)
        try:
            delivered = self._open_release(item)
        except ReleaseRejected as e:
            return await self._reject(msg, "release_rejected", str(e))
        release_id = delivered.record.release_id
        if self.outbox is not None and self.outbox.is_processed(release_id):
            # Handed on before, the ack was lost (a crash): never hand it on twice.
            await msg.ack_sync()
            self.log.info(
                "release_already_handed_on",
                message_id=delivered.header.message_id,
                release_id=release_id,
            )
            return 0
        try:
            await handler(delivered)
        except Exception as e:  # noqa: BLE001 - the handler is the agency's; retry it later
            self.log.error(
                "handler_failed", message_id=delivered.header.message_id, error=type(e).__name__
            )
            self.metrics.handler_failed(delivered.header.type)
            await msg.nak(delay=2.0)
            return 0
        if self.outbox is not None:
            self.outbox.mark_processed(
                release_id, delivered.header.message_id, self._clock(), delivered.header.type
            )
        await msg.ack_sync()
        self.metrics.received(delivered.header.type)
        self.log.info(
            "message_received",
            message_id=delivered.header.message_id,
            type=delivered.header.type.value,
            sender=delivered.header.sender,
            legal_basis=delivered.record.legal_basis,
            log_index=delivered.record.log_index,
        )
        return 1

    async def _take_notice(
        self, msg: Msg, signed: SignedNotice, on_notice: NoticeHandler | None
    ) -> int:
        """A notice is logged (ids and codes), given to ``on_notice``, then acked."""
        try:
            notice = self.check_notice(signed)
        except NoticeRejected as e:
            return await self._reject(msg, "notice_rejected", str(e))
        log_notice(self.log, notice)
        if on_notice is not None:
            try:
                await on_notice(notice)
            except Exception as e:  # noqa: BLE001 - the agency's own hook; retry it later
                self.log.error(
                    "handler_failed", message_id=notice.message_id, error=type(e).__name__
                )
                self.metrics.handler_failed(notice.message_type)
                await msg.nak(delay=2.0)
                return 0
        await msg.ack_sync()
        self.metrics.noticed(notice)
        return 1

    async def _reject(self, msg: Msg, kind: str, reason: str) -> int:
        """Loud, not silent: a security event, and the item is never redelivered."""
        self.log.error(
            "security_event", kind=kind, reason=reason, inbox_seq=msg.metadata.sequence.stream
        )
        await msg.term()
        self.metrics.rejected()
        return 0


def log_notice(logger: structlog.typing.FilteringBoundLogger, notice: DecisionNotice) -> None:
    """One event per notice item: ids, outcomes, reason codes and log indexes only."""
    for item in notice.items:
        logger.info(
            "decision_notice",
            message_id=notice.message_id,
            type=notice.message_type.value if notice.message_type else None,
            recipient=item.recipient,
            outcome=item.outcome.value,
            reasons=",".join(item.reasons),
            log_index=item.log_index,
        )
