"""The sender's decision notice, made from the log entries of one ingress message.

Made from the entries as logged (not from the plan), so the notice the hub
stores in the sender's inbox after logging and the one its notice service
gives on request later are the same notice, with the log's own indexes.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from sigbus.audit.entry import EntryOutcome, LogEntry
from sigbus.broker.checkpointer import reply_to_agency, requester
from sigbus.broker.log_writer import LogWriter
from sigbus.protocol.messages import HUB_QUERY_TYPES, HUB_RECORD_TYPES
from sigbus.protocol.notice import (
    NOT_DECIDED,
    DecisionNotice,
    NoticeItem,
    NoticeOutcome,
    NoticeReply,
    NoticeRequest,
    SignedNotice,
    notice_id_for,
    sign_notice,
)
from sigbus.protocol.signing import HybridPrivateKey
from sigbus.protocol.subjects import NOTICE_REQUEST, service_subject

log = structlog.get_logger("sigbus.broker.notice")

#: The log's outcome as the sender is told it: a disclosure, or a hub record.
_DISCLOSURE = {
    EntryOutcome.RELEASE: NoticeOutcome.RELEASED,
    EntryOutcome.DENY: NoticeOutcome.DENIED,
}
_HUB_RECORD = {
    EntryOutcome.RECORDED: NoticeOutcome.CONFIRMED,
    EntryOutcome.DENY: NoticeOutcome.REFUSED,
}


def notice_for(entries: Sequence[LogEntry], *, hub_key_id: str) -> DecisionNotice | None:
    """The notice for one ingress message's entries; None if there is no one to tell."""
    first = entries[0] if entries else None
    if first is None or first.sender is None:
        return None
    to_hub = HUB_RECORD_TYPES | HUB_QUERY_TYPES
    outcomes = _HUB_RECORD if first.message_type in to_hub else _DISCLOSURE
    items = tuple(
        NoticeItem(
            recipient=e.recipient,
            outcome=outcomes[e.outcome],
            reasons=e.reasons,
            log_index=e.index,
        )
        for e in entries
        if e.outcome in outcomes
    )
    if not items:
        return None
    return DecisionNotice(
        notice_id=notice_id_for(first.message_id, first.ingress_seq),
        message_id=first.message_id,
        message_type=first.message_type,
        sender=first.sender,
        decided_at=first.decided_at,
        items=items,
        hub_key_id=hub_key_id,
    )


class NoticeService:
    """Answers ``sigbus.hub.<agency>.notice.request``: the notice for one of the asking
    agency's own messages. Another agency's message, or one not decided yet, gets the
    same ``not_decided``: asking never tells an agency that a message exists."""

    def __init__(
        self, nc: Client, writer: LogWriter, signing_key: HybridPrivateKey, hub_key_id: str
    ) -> None:
        self._nc = nc
        self._writer = writer
        self._key = signing_key
        self._key_id = hub_key_id
        self._sub: Subscription | None = None

    def signed(self, entries: Sequence[LogEntry]) -> SignedNotice | None:
        notice = notice_for(entries, hub_key_id=self._key_id)
        return sign_notice(notice, self._key) if notice is not None else None

    async def serve(self) -> None:
        self._sub = await self._nc.subscribe(
            service_subject("*", NOTICE_REQUEST), cb=self._on_request
        )

    async def _on_request(self, msg: Msg) -> None:
        try:
            req = NoticeRequest.model_validate_json(msg.data)
        except ValidationError:
            await reply_to_agency(msg, NoticeReply(error="bad_request"))
            return
        seq = self._writer.first_seen_seq(req.message_id)
        entries = self._writer.entries_for_ingress(seq) if seq is not None else ()
        signed = self.signed(entries)
        if signed is None or signed.notice.sender != requester(msg.subject):
            await reply_to_agency(msg, NoticeReply(error=NOT_DECIDED))
            return
        await reply_to_agency(msg, NoticeReply(notice=signed))
