"""The life-cycle status of a SIG case, derived from its facts. Pure: ``now`` is an argument.

A case moves through (issue 13; Socialstyrelsen 2016, "Arbetsgång"):

* ``awaiting_selection`` -- opened at the hub, no selection decision yet;
* ``consent_collection`` -- selected; some required consenter has not (yet) given a
  consent that holds now, and none has ended one;
* ``active`` -- every required consenter has a consent that holds now;
* ``paused`` -- some required consenter's consent ended (withdrawn, expired, or a
  record in conflict) and nothing holds in its place: no sharing on consent;
* ``closed`` -- closed with a reason code: nothing about the case is shared any more.

Which consenters are required is the policy's own rule (:func:`required_consenters`:
a minor needs the young person **and** every vårdnadshavare with custody). A consent
"holds" when its record is active and ``now`` is inside its validity period; its
scope (which agencies, which categories) is the release decision's business and is
not judged here, so ``active`` says consent is in place, not that every release is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sigbus.policy._index import RecordStatus, RecordView, case_index
from sigbus.policy.engine import CUSTODY_UNKNOWN, required_consenters
from sigbus.policy.model import CaseState
from sigbus.policy.rules import Rules


class CaseStatus(StrEnum):
    AWAITING_SELECTION = "awaiting_selection"
    CONSENT_COLLECTION = "consent_collection"
    ACTIVE = "active"
    PAUSED = "paused"
    CLOSED = "closed"


class ConsentState(StrEnum):
    """Where one required consenter stands at ``now``."""

    GIVEN = "given"  # a consent that holds now
    MISSING = "missing"  # no consent recorded (or custody unknown: nobody can give it)
    NOT_YET_VALID = "not_yet_valid"  # recorded, its period starts later
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
    CONFLICT = "conflict"  # the record's events are inconsistent: it never counts

    @property
    def ended(self) -> bool:
        return self in (ConsentState.WITHDRAWN, ConsentState.EXPIRED, ConsentState.CONFLICT)


@dataclass(frozen=True, slots=True)
class ConsenterStatus:
    #: ``young_person``, ``guardian:<ref>``, or ``custody_unknown`` (a minor without guardians).
    consenter: str
    state: ConsentState
    consent_id: str | None = None
    #: End of the validity period of the consent shown (given, not yet valid, expired).
    valid_until: datetime | None = None


def _state_of(rec: RecordView, rules: Rules, now: datetime) -> ConsentState:
    if rec.status is RecordStatus.WITHDRAWN:
        return ConsentState.WITHDRAWN
    scope = rec.scope
    if (
        rec.status is RecordStatus.CONFLICT
        or scope is None
        or scope.purpose != rules.consent.purpose
        # Longer than the municipality allows: the release decision never counts it.
        or scope.valid_until - scope.valid_from
        > timedelta(days=rules.municipality.max_consent_days)
    ):
        return ConsentState.CONFLICT
    if rec.status is RecordStatus.EXPIRED or now >= scope.valid_until:
        return ConsentState.EXPIRED
    if now < scope.valid_from:
        return ConsentState.NOT_YET_VALID
    return ConsentState.GIVEN


#: Which record of a consenter to show when there are several: the best one.
_RANK = {
    ConsentState.GIVEN: 0,
    ConsentState.NOT_YET_VALID: 1,
    ConsentState.EXPIRED: 2,
    ConsentState.WITHDRAWN: 3,
    ConsentState.CONFLICT: 4,
}


def consent_collection(case: CaseState, rules: Rules, *, now: datetime) -> list[ConsenterStatus]:
    """Per required consenter at ``now``: given (until when), missing, or how it ended."""
    index = case_index(case, now)
    out: list[ConsenterStatus] = []
    for consenter in required_consenters(case.subject, rules, now):
        records = () if consenter == CUSTODY_UNKNOWN else index.by_consenter.get(consenter, ())
        if not records:
            out.append(ConsenterStatus(consenter, ConsentState.MISSING))
            continue
        best: tuple[int, float, ConsenterStatus] | None = None
        for rec in records:
            state = _state_of(rec, rules, now)
            until = rec.scope.valid_until if rec.scope is not None else None
            key = (_RANK[state], -(until.timestamp() if until else 0.0))
            status = ConsenterStatus(consenter, state, rec.consent_id, until)
            if best is None or key < best[:2]:
                best = (*key, status)
        assert best is not None
        out.append(best[2])
    return out


def case_status(
    *, selected: bool, closed: bool, consenters: Sequence[ConsenterStatus]
) -> CaseStatus:
    """The life-cycle status from the facts (see the module docstring for the order)."""
    if closed:
        return CaseStatus.CLOSED
    if not selected:
        return CaseStatus.AWAITING_SELECTION
    if consenters and all(c.state is ConsentState.GIVEN for c in consenters):
        return CaseStatus.ACTIVE
    if any(c.state.ended for c in consenters):
        return CaseStatus.PAUSED
    return CaseStatus.CONSENT_COLLECTION
