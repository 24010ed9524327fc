"""The hub's signed decision notice: what became of one message, told to its sender.

For each message the hub decides, its sender gets a notice once the log entries
are durable: per recipient released or denied (with the reason codes the log
holds) and the log index of each entry; a hub record (case opened, consent
given or withdrawn) is confirmed or refused. It is the receipt of X-Road and
SDK: a sender never has to assume its message went through.

The notice carries ids, codes and log indexes only: no personnummer, no
subject id or ref, no case ref. It is signed with the hub's signing key (the
key that signs release records), under its own domain tag, so a signature over
one can never pass for the other.

It reaches the sender two ways, both only the sender's: stored in its inbox
(``sigbus.inbox.<agency>``, next to its releases, so it is there when an
offline adapter comes back), and on request from the hub's notice service
(``sigbus.hub.<agency>.notice.request``), which the sending command polls.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Literal

from cryptography.exceptions import InvalidSignature
from pydantic import AwareDatetime, Field, ValidationError

from sigbus.protocol.canonical import DECISION_NOTICE_DOMAIN, B64Bytes, canonical_json
from sigbus.protocol.envelope import MAX_ENVELOPE_BYTES, error_locations
from sigbus.protocol.errors import EnvelopeFormatError, NoticeError
from sigbus.protocol.ids import AgencyId, MessageType
from sigbus.protocol.messages import StrictModel
from sigbus.protocol.release import Release, parse_release
from sigbus.protocol.signing import HybridPrivateKey, HybridPublicKey

NOTICE_VERSION: Literal[1] = 1
#: Bound on a notice: one item per recipient (the header allows 8) or one per hub record.
MAX_NOTICE_ITEMS = 16

#: A reason code as the log writes it (``consent_conflict``, ``policy:no_consent:...``).
ReasonText = Annotated[str, Field(pattern=r"^[a-z][A-Za-z0-9_.:-]{0,199}$")]


class NoticeOutcome(StrEnum):
    """What the sender is told, per item (the log's is ``audit.entry.EntryOutcome``)."""

    RELEASED = "released"  # released to ``recipient``
    DENIED = "denied"  # not released to ``recipient`` (None: to no one)
    CONFIRMED = "confirmed"  # a hub record the hub applied
    REFUSED = "refused"  # a hub record the hub did not apply: nothing changed


#: Outcomes after which the sender's intent did not take effect.
NOT_TAKEN = frozenset({NoticeOutcome.DENIED, NoticeOutcome.REFUSED})


class NoticeItem(StrictModel):
    #: The recipient decided on; None for a hub record or a message refused as a whole.
    recipient: AgencyId | None
    outcome: NoticeOutcome
    reasons: Annotated[tuple[ReasonText, ...], Field(max_length=8)] = ()
    log_index: Annotated[int, Field(ge=0)]


class DecisionNotice(StrictModel):
    version: Literal[1] = NOTICE_VERSION
    notice_id: str
    #: The sender's own message id (``ingress-<seq>`` when the hub could not read it).
    message_id: Annotated[str, Field(max_length=80)]
    message_type: MessageType | None
    sender: AgencyId
    decided_at: AwareDatetime
    items: Annotated[tuple[NoticeItem, ...], Field(min_length=1, max_length=MAX_NOTICE_ITEMS)]
    hub_key_id: str

    @property
    def all_taken(self) -> bool:
        """Every recipient released to, or the hub record applied."""
        return all(item.outcome not in NOT_TAKEN for item in self.items)


class SignedNotice(StrictModel):
    kind: Literal["decision_notice"] = "decision_notice"
    notice: DecisionNotice
    signature: B64Bytes

    def to_wire(self) -> bytes:
        return self.model_dump_json().encode()


class NoticeRequest(StrictModel):
    """Asked on the agency's own ``notice.request`` subject: the hub knows who asks."""

    message_id: Annotated[str, Field(max_length=80)]


class NoticeReply(StrictModel):
    """``notice`` once the message is decided; ``error`` (a short code) until then."""

    notice: SignedNotice | None = None
    error: str | None = None


#: The reply's ``error`` while the hub has not decided the message (or it is not yours).
NOT_DECIDED = "not_decided"


def notice_id_for(message_id: str, ingress_seq: int) -> str:
    """Deterministic, so a notice re-published after a crash is de-duplicated; per
    ingress sequence, so a replayed id gets its own (deny) notice."""
    digest = hashlib.sha256(f"{message_id}\n{ingress_seq}".encode()).hexdigest()[:32]
    return f"ntc-{digest}"


def sign_notice(notice: DecisionNotice, hub_key: HybridPrivateKey) -> SignedNotice:
    signature = hub_key.sign(DECISION_NOTICE_DOMAIN + canonical_json(notice))
    return SignedNotice(notice=notice, signature=signature)


def verify_notice(
    signed: SignedNotice, hub_public: HybridPublicKey, *, me: AgencyId
) -> DecisionNotice:
    """The hub's signature over the notice, and that it is about a message of ours."""
    notice = signed.notice
    try:
        hub_public.verify(signed.signature, DECISION_NOTICE_DOMAIN + canonical_json(notice))
    except InvalidSignature as e:
        raise NoticeError("decision notice signature does not verify") from e
    if notice.sender != me:
        raise NoticeError("decision notice is about another agency's message")
    return notice


def parse_notice(raw: bytes) -> SignedNotice:
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise EnvelopeFormatError("decision notice exceeds the size limit")
    try:
        return SignedNotice.model_validate_json(raw)
    except ValidationError as e:
        raise EnvelopeFormatError(f"decision notice is malformed at {error_locations(e)}") from e


InboxItem = Release | SignedNotice

#: What an agency's inbox holds, by the item's ``kind``: one row per kind. A release
#: (the first kind, from before kinds were named) is the item without one.
INBOX_KINDS: Mapping[str, type[StrictModel]] = MappingProxyType(
    {"release": Release, "decision_notice": SignedNotice}
)


def parse_inbox_item(raw: bytes) -> InboxItem:
    """A release or a decision notice, told apart by ``kind`` before full validation."""
    if len(raw) > 2 * MAX_ENVELOPE_BYTES:
        raise EnvelopeFormatError("inbox item exceeds the size limit")
    try:
        kind = json.loads(raw).get("kind", "release")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, RecursionError) as e:
        raise EnvelopeFormatError("inbox item is not a JSON object") from e
    if kind not in INBOX_KINDS:
        raise EnvelopeFormatError("inbox item of an unknown kind")
    return parse_notice(raw) if INBOX_KINDS[kind] is SignedNotice else parse_release(raw)
