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
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import APIError, ServiceUnavailableError

from sigbus.agents.errors import PublishFailed, ReleaseRejected
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
from sigbus.protocol.messages import Body, StatutoryAssertion
from sigbus.protocol.release import Release, ReleaseRecord, parse_release, verify_release_record
from sigbus.protocol.subjects import HUB_JS_PREFIX, INBOX_STREAM, inbox_consumer, ingress_subject
from sigbus.transport.bus import connect
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
        self._sub: JetStreamContext.PullSubscription | None = None
        self.log = log.bind(agency=self.agency)

    @classmethod
    async def connect(
        cls,
        url: str,
        identity: AgencyIdentity,
        directory: Directory,
        creds: NatsCredentials,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> Adapter:
        nc = await connect(url, name=f"adapter-{identity.agency}", creds=creds)
        return cls(identity, directory, nc, clock=clock, js_prefix=creds.js_prefix)

    @property
    def nc(self) -> Client:
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        return self._js

    def now(self) -> datetime:
        return self._clock()

    async def close(self) -> None:
        if not self._nc.is_closed:
            await self._nc.close()

    def _refresh_directory(self) -> None:
        if self.directory_source is not None:
            self.directory = self.directory_source()

    # -- sending -----------------------------------------------------------

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
        )

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
        envelope = self.seal(
            message_type,
            body,
            case_ref=case_ref,
            recipients=recipients,
            message_id=message_id,
            assertion=assertion,
        )
        await self.publish_raw(
            ingress_subject(self.agency),
            envelope.to_wire(),
            envelope.header.message_id,
        )
        return envelope.header.message_id

    async def publish_raw(self, subject: str, data: bytes, message_id: str) -> None:
        """Publish with retries, always with the same ``Nats-Msg-Id``."""
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
            return
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
        self._refresh_directory()
        try:
            release: Release = parse_release(raw)
            header = release.envelope.header
            at = header.created_at
            verify_sender(
                release.envelope,
                self.directory.signing_key(header.sender, header.sender_key_id, at=at),
            )
            hub_key = self.directory.signing_key(
                HUB, release.record.hub_key_id, at=release.record.released_at
            )
            verify_release_record(release, hub_key, me=self.agency)
            if release.record.recipient_key_id != self.identity.sealing_key_id:
                raise ReleaseRejected("release sealed to a key this adapter does not hold")
            plaintext = open_body(
                release.envelope, recipient=self.agency, suite_private=self.identity.sealing_private
            )
            body = parse_body(header.type, plaintext)
        except ProtocolError as e:
            raise ReleaseRejected(e.reason.value) from e
        return Delivered(header=header, record=release.record, body=body)

    async def receive(
        self, handler: Handler, *, max_messages: int = 100, timeout: float = 1.0
    ) -> int:
        """Fetch up to ``max_messages`` releases and hand each to ``handler``; count handled."""
        sub = await self._subscription()
        try:
            msgs = await sub.fetch(max_messages, timeout=timeout)
        except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041 - nats-py raises both
            return 0
        except ServiceUnavailableError:
            # The hub makes each agency's consumer when it first sees the agency in
            # the directory; until then there is nothing to fetch, and nothing lost.
            self.log.warning("inbox_not_provisioned_yet")
            await asyncio.sleep(timeout)
            return 0
        handled = 0
        for msg in msgs:
            handled += await self._deliver(msg, handler)
        return handled

    async def _deliver(self, msg: Msg, handler: Handler) -> int:
        try:
            delivered = self.open_release(msg.data)
        except ReleaseRejected as e:
            self.log.error(
                "security_event",
                kind="release_rejected",
                reason=str(e),
                inbox_seq=msg.metadata.sequence.stream,
            )
            await msg.term()
            return 0
        try:
            await handler(delivered)
        except Exception as e:  # noqa: BLE001 - the handler is the agency's; retry it later
            self.log.error(
                "handler_failed", message_id=delivered.header.message_id, error=type(e).__name__
            )
            await msg.nak(delay=2.0)
            return 0
        await msg.ack_sync()
        self.log.info(
            "message_received",
            message_id=delivered.header.message_id,
            type=delivered.header.type.value,
            sender=delivered.header.sender,
            legal_basis=delivered.record.legal_basis,
            log_index=delivered.record.log_index,
        )
        return 1
