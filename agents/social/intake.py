"""Referral intake: the queue of the referrals social services received (issue 13).

Folded from the case register (:mod:`sigbus.agents.social.register`): each referral
that ``sigbus social inbox`` fetched, with its statute, sender and the time the hub
released it, and the case opened for it (``sigbus social case open --referral``,
confirmed by the hub), if any. No personnummer and no referral reason is kept or
printed: the queue says that a referral came, from whom and on which basis.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sigbus.agents.social.register import AnyLine, NoticeLine, ReferralLine, SentLine
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import ReferralLink


@dataclass(frozen=True)
class QueuedReferral:
    message_id: str
    sender: str
    referral_kind: str
    basis: str
    received_at: datetime
    log_index: int
    #: The case opened for it (confirmed by the hub), if any.
    case_ref: str | None

    def link(self) -> ReferralLink:
        return ReferralLink(message_id=self.message_id, received_at=self.received_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "sender": self.sender,
            "kind": self.referral_kind,
            "basis": self.basis,
            "received_at": self.received_at.isoformat(),
            "log_index": self.log_index,
            "case_ref": self.case_ref,
        }

    def line(self) -> str:
        when = self.received_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        case = f"case {self.case_ref}" if self.case_ref else "no case opened"
        return (
            f"{self.message_id}  received {when}  from {self.sender:<8} basis {self.basis} "
            f"({self.referral_kind})  log#{self.log_index}  {case}"
        )


def _linked(line: SentLine) -> str | None:
    referral = line.facts.get("referral")
    return referral.get("message_id") if isinstance(referral, dict) else None


def referral_queue(lines: Iterable[AnyLine]) -> list[QueuedReferral]:
    """The referrals received, oldest first, each with the case opened for it."""
    lines = list(lines)
    late = {x.notice.message_id: x.notice for x in lines if isinstance(x, NoticeLine)}
    cases: dict[str, str] = {}
    for x in lines:
        if isinstance(x, SentLine) and x.message_type is MessageType.CASE_OPENED:
            notice = x.notice or late.get(x.message_id)
            linked = _linked(x)
            if linked is not None and notice is not None and notice.all_taken:
                cases.setdefault(linked, x.case_ref)
    seen: dict[str, ReferralLine] = {}
    for x in lines:
        if isinstance(x, ReferralLine):
            seen.setdefault(x.message_id, x)
    return sorted(
        (
            QueuedReferral(
                message_id=r.message_id,
                sender=r.sender,
                referral_kind=r.referral_kind,
                basis=r.basis,
                received_at=r.received_at,
                log_index=r.log_index,
                case_ref=cases.get(r.message_id),
            )
            for r in seen.values()
        ),
        key=lambda q: (q.received_at, q.log_index),
    )
