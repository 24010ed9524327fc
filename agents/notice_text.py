"""A decision notice in plain words, for the sending command, ``inbox`` and the demo.

Ids, agencies, reason codes and log indexes only: the notice holds nothing else.
"""

from __future__ import annotations

from sigbus.protocol.notice import NOT_TAKEN, DecisionNotice, NoticeItem, NoticeOutcome


def _item_line(item: NoticeItem) -> str:
    why = f": {', '.join(item.reasons)}" if item.reasons else ""
    where = f"(log index {item.log_index})"
    match item.outcome:
        case NoticeOutcome.RELEASED:
            return f"  released to {item.recipient} {where}"
        case NoticeOutcome.DENIED if item.recipient is None:
            return f"  DENIED to every recipient{why} {where}"
        case NoticeOutcome.DENIED:
            return f"  DENIED to {item.recipient}{why} {where}"
        case NoticeOutcome.CONFIRMED:
            return f"  confirmed by the hub {where}"
        case NoticeOutcome.REFUSED:
            return f"  REFUSED by the hub, nothing changed{why} {where}"


def summary(notice: DecisionNotice) -> str:
    not_taken = sum(1 for i in notice.items if i.outcome in NOT_TAKEN)
    if not_taken == 0:
        return "all released" if _is_disclosure(notice) else "confirmed"
    if not _is_disclosure(notice):
        return "refused"
    return f"denied for {not_taken} of {len(notice.items)} recipient(s)"


def describe_notice(notice: DecisionNotice) -> list[str]:
    """``decision for msg-…: …`` and one line per recipient (or hub record)."""
    kind = notice.message_type.value if notice.message_type else "unreadable message"
    head = f"decision for {kind} {notice.message_id}: {summary(notice)}"
    return [head, *(_item_line(i) for i in notice.items)]


def _is_disclosure(notice: DecisionNotice) -> bool:
    return all(i.outcome in (NoticeOutcome.RELEASED, NoticeOutcome.DENIED) for i in notice.items)
