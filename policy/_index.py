"""The compiled view of a case's consent records (the engine's fast path).

Folding the append-only events of each consent record into its current state
is the costly part of a decision. :func:`build_index` memoises the fold on the
case's last event, keyed by the identity of every event in order
(:mod:`policy._memo`, not ``cached_property``: see there why). States rebuilt
from the same event objects share it; a new event means a new key and a new
fold, so the memo cannot outlive the events it was computed from and can never
honour a consent withdrawn after it was built.

Time: an event counts from its ``recorded_at`` (hub time). The memoised fold
covers every event and is used only when ``now`` is at or after the latest
``recorded_at`` in the state (the broker's normal case); an earlier ``now``
(e.g. ``sigbus policy check --at`` in the past) folds the events recorded by
then, uncached.

The fold implements the ISO/IEC TS 27560 record lifecycle (given, amended,
withdrawn, expired) and FHIR R5 ``Consent.status`` (active / inactive).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from sigbus.policy._memo import memo
from sigbus.policy.model import CaseState, ConsentRecordEvent
from sigbus.protocol.codes import ConsentAction, ConsentPurpose
from sigbus.protocol.ids import AgencyId, MessageType
from sigbus.protocol.messages import ConsentScope


class RecordStatus(Enum):
    ACTIVE = "active"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"  # an explicit ``expired`` event
    CONFLICT = "conflict"  # the record's events are inconsistent: never counts


@dataclass(frozen=True, slots=True)
class EffectiveScope:
    """A consent's scope after amendments: only ever the meet (∩) of what was given."""

    disclosers: frozenset[AgencyId]
    recipients: frozenset[AgencyId]
    categories: frozenset[MessageType]
    purpose: ConsentPurpose | None  # None: an amendment changed the purpose (nothing left)
    valid_from: datetime
    valid_until: datetime

    @staticmethod
    def of(scope: ConsentScope) -> EffectiveScope:
        return EffectiveScope(
            disclosers=frozenset(scope.disclosers),
            recipients=frozenset(scope.recipients),
            categories=frozenset(scope.categories),
            purpose=scope.purpose,
            valid_from=scope.valid_from,
            valid_until=scope.valid_until,
        )

    def widened_by(self, new: EffectiveScope) -> bool:
        """True when ``new`` reaches beyond ``self`` in any dimension."""
        return not (
            new.disclosers <= self.disclosers
            and new.recipients <= self.recipients
            and new.categories <= self.categories
            and new.purpose == self.purpose
            and new.valid_from >= self.valid_from
            and new.valid_until <= self.valid_until
        )

    def meet(self, new: EffectiveScope) -> EffectiveScope:
        """Greatest scope within both: an amendment can narrow, never widen."""
        return EffectiveScope(
            disclosers=self.disclosers & new.disclosers,
            recipients=self.recipients & new.recipients,
            categories=self.categories & new.categories,
            purpose=self.purpose if new.purpose == self.purpose else None,
            valid_from=max(self.valid_from, new.valid_from),
            valid_until=min(self.valid_until, new.valid_until),
        )


@dataclass(slots=True)
class RecordView:
    """One consent record folded to its state as of the events it saw."""

    consent_id: str
    consenter: str
    revision: int
    status: RecordStatus
    scope: EffectiveScope | None
    notes: list[str] = field(default_factory=list)
    conflict: str | None = None  # short code of the inconsistency


@dataclass(frozen=True, slots=True)
class CaseIndex:
    #: consenter ("young_person" / "guardian:vh-1") -> their records, first-seen order.
    by_consenter: dict[str, tuple[RecordView, ...]]
    latest_recorded_at: datetime | None
    #: Engine memos derived from this fold (policy.engine._Coverage); never part of it.
    derived: list[object] = field(default_factory=list, compare=False)


def _fold(events: tuple[ConsentRecordEvent, ...] | list[ConsentRecordEvent]) -> CaseIndex:
    records: dict[str, RecordView] = {}
    latest: datetime | None = None
    for ev in events:
        if latest is None or ev.recorded_at > latest:
            latest = ev.recorded_at
        rec = records.get(ev.consent_id)
        if rec is None:
            rec = RecordView(
                consent_id=ev.consent_id,
                consenter=ev.consenter,
                revision=ev.revision,
                status=RecordStatus.ACTIVE,
                scope=None,
            )
            records[ev.consent_id] = rec
            if ev.action is not ConsentAction.GIVEN or ev.scope is None:
                _conflict(rec, "first_event_not_given")
            elif ev.revision != 1:
                _conflict(rec, "revision_gap")
            else:
                rec.scope = EffectiveScope.of(ev.scope)
            continue
        _apply(rec, ev)
    by_consenter: dict[str, list[RecordView]] = {}
    for rec in records.values():
        by_consenter.setdefault(rec.consenter, []).append(rec)
    return CaseIndex(
        by_consenter={k: tuple(v) for k, v in by_consenter.items()},
        latest_recorded_at=None if latest is None else latest.astimezone(UTC),
    )


def _conflict(rec: RecordView, code: str) -> None:
    if rec.status is not RecordStatus.WITHDRAWN:
        rec.status = RecordStatus.CONFLICT
    if rec.conflict is None:
        rec.conflict = code


def _apply(rec: RecordView, ev: ConsentRecordEvent) -> None:
    """Apply one later event to a record (TS 27560 lifecycle; withdrawal is final)."""
    if ev.revision != rec.revision + 1:
        _conflict(rec, "revision_gap")
    rec.revision = max(rec.revision, ev.revision)
    action = ev.action
    if action is ConsentAction.WITHDRAWN:
        # Withdrawal is always possible and always final (OSL 12 kap. 2 §: a waiver
        # of secrecy can be revoked at any time; FHIR Consent.status = inactive).
        # Fail-safe: it withdraws even when the event is otherwise inconsistent.
        rec.status = RecordStatus.WITHDRAWN
        if ev.consenter != rec.consenter:
            rec.notes.append(f"withdrawal_by_other_consenter:{rec.consent_id}:{ev.revision}")
        return
    if ev.consenter != rec.consenter:
        # Only the consenter (recorded by the hub) may change their own record.
        _conflict(rec, "consenter_mismatch")
        return
    if rec.status is RecordStatus.WITHDRAWN:
        rec.notes.append(f"event_after_withdrawal:{rec.consent_id}:{ev.revision}")
        return
    if action is ConsentAction.EXPIRED:
        if rec.status is RecordStatus.ACTIVE:
            rec.status = RecordStatus.EXPIRED
        return
    if action is ConsentAction.GIVEN:
        # A record is given once; a new consent is a new record.
        _conflict(rec, "given_twice")
        return
    # AMENDED: narrow only. A widening amendment is never applied as given: the
    # record keeps the meet of old and new scope, and the widening is reported.
    if ev.scope is None or rec.scope is None:
        _conflict(rec, "amendment_without_scope")
        return
    new = EffectiveScope.of(ev.scope)
    if rec.scope.widened_by(new):
        rec.notes.append(f"amendment_widening_ignored:{rec.consent_id}:{ev.revision}")
    rec.scope = rec.scope.meet(new)


def case_index(case: CaseState, now: datetime) -> CaseIndex:
    """The folded records of ``case`` as of ``now`` (memoised when current)."""
    current: CaseIndex = build_index(case)
    latest = current.latest_recorded_at
    if latest is None or latest <= now:
        return current
    return _fold([ev for ev in case.consent_events if ev.recorded_at <= now])


def build_index(case: CaseState) -> CaseIndex:
    """Fold every event of ``case``, memoised on its last event.

    The hub builds a new ``CaseState`` for every message from the same event
    objects; the fold is shared between states whose events are the same
    objects in the same order. The memo sits on the last event and is keyed by
    the identity of every event (``policy._memo``): an appended, removed or
    replaced event -- or a ``model_copy`` of one -- misses it.
    """
    events = case.consent_events
    if type(events) is not tuple or not events:
        return _fold(list(events))  # never memoise a mutable list (model_construct)
    return memo(events[-1], "fold", events, lambda: _fold(events))
