"""A notice of existence, without content (issue 13; as the Dutch Verwijsindex).

Where the rules file allows it (``[existence_notice] enabled = true``; off by
default), a party may ask whether another agency is involved with a young person.
The answer is only which agencies are parties to an open case about them: no
content, no category, no case ref, no date. It exists so that the coordinator can
ask for consent; it is never a way to learn what the case holds.

Pure: the rules and the parties of the young person's open cases come in (the hub
finds those in its state); the answer goes out. The hub logs every query and
answer (``existence_answered``) or refusal (``existence_notice_off``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from sigbus.policy.rules import Rules
from sigbus.protocol.ids import HUB, AgencyId

#: How an answer with no agency involved is written in the log and the notice.
NONE_INVOLVED = "none"


class ExistenceRefusal(StrEnum):
    #: The rules file does not allow notices of existence.
    OFF = "existence_notice_off"


@dataclass(frozen=True)
class ExistenceAnswer:
    """Refused (with why), or answered: the agencies involved, sorted, maybe none."""

    refused: ExistenceRefusal | None
    agencies: tuple[AgencyId, ...] = ()

    @property
    def involved(self) -> bool:
        return bool(self.agencies)

    def detail(self) -> str:
        """``police.school`` or ``none``: the answer as one code (agency names have no dot)."""
        return ".".join(self.agencies) or NONE_INVOLVED


def parse_detail(detail: str) -> tuple[AgencyId, ...]:
    """The inverse of :meth:`ExistenceAnswer.detail`, for the asker's adapter."""
    return () if detail == NONE_INVOLVED else tuple(detail.split("."))


def answer_existence(
    asker: AgencyId, open_case_parties: Iterable[Iterable[AgencyId]], rules: Rules
) -> ExistenceAnswer:
    """Who besides ``asker`` is a party to an open case about the young person.

    ``open_case_parties``: the parties of each open (not closed) case about them."""
    if not rules.existence_notice.enabled:
        return ExistenceAnswer(refused=ExistenceRefusal.OFF)
    involved = {a for parties in open_case_parties for a in parties} - {asker, HUB}
    return ExistenceAnswer(refused=None, agencies=tuple(sorted(involved)))
