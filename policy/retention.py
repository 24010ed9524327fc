"""The retention schedule: when a message's content must be gone. Pure: ``now`` is an argument.

One schedule for the hub (which shreds its data key for the message) and for every
adapter (which deletes what it stored): the period of the message's category in
the rules file (``[retention]``), counted from the hub's decision time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from sigbus.policy.rules import Rules
from sigbus.protocol.ids import MessageType


class Held(Protocol):
    """Anything kept about one message: its category and when the hub decided it."""

    @property
    def category(self) -> MessageType: ...

    @property
    def decided_at(self) -> datetime: ...


H = TypeVar("H", bound=Held)


def expires_at(rules: Rules, category: MessageType, decided_at: datetime) -> datetime:
    """The moment the content of a message of ``category`` decided at ``decided_at`` must go."""
    return decided_at + timedelta(days=rules.retention.period_days(category))


def due(rules: Rules, held: Iterable[H], now: datetime) -> list[H]:
    """What must be shredded or deleted at ``now`` (period ended), in the order given."""
    return [h for h in held if expires_at(rules, h.category, h.decided_at) <= now]
