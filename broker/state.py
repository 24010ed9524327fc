"""The hub's private state: cases and consent records. Pure, replayable.

Every change is a :class:`StateChange` with the id of the message that caused
it; :meth:`HubState.apply` is idempotent per message id, so replaying the
state stream after a crash, or re-applying a change, leaves the same state.
Consent records are append-only (ISO/IEC TS 27560: a record's history is
kept); each event gets the next revision number of its record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from sigbus.broker.errors import Rejection
from sigbus.policy import CaseState, ConsentRecordEvent, SubjectFacts
from sigbus.protocol.codes import AssessmentInstrument, ClosureReason, ConsentAction, ConsenterRole
from sigbus.protocol.ids import AgencyId
from sigbus.protocol.messages import AssessmentRef, ConsentEvent, ReferralLink, StrictModel
from sigbus.protocol.reasons import ReasonCode


class CaseOpenedChange(StrictModel):
    kind: Literal["case_opened"] = "case_opened"
    message_id: str
    case_ref: str
    subject_id: str
    date_of_birth: date
    guardians_with_custody: tuple[str, ...]
    parties: tuple[AgencyId, ...]
    opened_at: AwareDatetime
    #: The referral the case was opened for (``case open --referral``), if any.
    referral: ReferralLink | None = None


class ConsentRecordedChange(StrictModel):
    kind: Literal["consent_recorded"] = "consent_recorded"
    message_id: str
    case_ref: str
    event: ConsentRecordEvent


class CaseSelectedChange(StrictModel):
    """The selection decision: the young person enters the SIG (life cycle, issue 13)."""

    kind: Literal["case_selected"] = "case_selected"
    message_id: str
    case_ref: str
    instrument: AssessmentInstrument | None
    assessment_id: str | None
    decided_by: str
    selected_at: AwareDatetime


class CaseClosedChange(StrictModel):
    """The case is closed: from here on the hub denies every message about it."""

    kind: Literal["case_closed"] = "case_closed"
    message_id: str
    case_ref: str
    reason: ClosureReason
    closed_by: str
    closed_at: AwareDatetime


#: Every kind of hub-state change; each is a hub record in the log (``state_sha256``).
AnyChange = CaseOpenedChange | ConsentRecordedChange | CaseSelectedChange | CaseClosedChange
StateChange = Annotated[AnyChange, Field(discriminator="kind")]


class StateRecord(StrictModel):
    change: StateChange


@dataclass
class CaseRecord:
    case_ref: str
    subject_id: str
    facts: SubjectFacts
    parties: frozenset[AgencyId]
    events: list[ConsentRecordEvent] = field(default_factory=list)
    opened_at: datetime | None = None
    selection: CaseSelectedChange | None = None
    closure: CaseClosedChange | None = None
    _policy_state: CaseState | None = None
    referral: ReferralLink | None = None

    def policy_state(self) -> CaseState:
        """The policy's view of this case; one object until the next event.

        The policy engine memoises per CaseState object, so reusing it is what
        makes decisions fast; dropping it on every append is what keeps them fresh.
        """
        if self._policy_state is None:
            self._policy_state = CaseState(
                case_ref=self.case_ref,
                subject=self.facts,
                parties=self.parties,
                consent_events=tuple(self.events),
            )
        return self._policy_state

    def append(self, event: ConsentRecordEvent) -> None:
        self.events.append(event)
        self._policy_state = None


@dataclass
class HubState:
    cases: dict[str, CaseRecord] = field(default_factory=dict)
    applied: set[str] = field(default_factory=set)

    def case(self, case_ref: str | None) -> CaseRecord:
        if case_ref is None:
            raise Rejection(ReasonCode.CASE_REF_REQUIRED)
        record = self.cases.get(case_ref)
        if record is None:
            raise Rejection(ReasonCode.UNKNOWN_CASE)
        return record

    def live_case(self, case_ref: str | None) -> CaseRecord:
        """The case, unless it is closed: closing a case stops all sharing about it."""
        record = self.case(case_ref)
        if record.closure is not None:
            raise Rejection(ReasonCode.CASE_CLOSED)
        return record

    # -- planning (raises Rejection; changes nothing) ----------------------

    def plan_case_opened(
        self,
        *,
        message_id: str,
        case_ref: str,
        subject_id: str,
        date_of_birth: date,
        guardians: tuple[str, ...],
        parties: tuple[AgencyId, ...],
        now: datetime,
        referral: ReferralLink | None = None,
    ) -> CaseOpenedChange:
        if case_ref in self.cases:
            raise Rejection(ReasonCode.CASE_EXISTS)
        if referral is not None:
            check_referral_link(self, referral, now)
        return CaseOpenedChange(
            message_id=message_id,
            case_ref=case_ref,
            subject_id=subject_id,
            date_of_birth=date_of_birth,
            guardians_with_custody=guardians,
            parties=parties,
            opened_at=now,
            referral=referral,
        )

    def plan_selected(
        self,
        *,
        message_id: str,
        case_ref: str,
        assessment: AssessmentRef | None,
        decided_by: str,
        now: datetime,
    ) -> CaseSelectedChange:
        case = self.live_case(case_ref)
        if case.selection is not None:
            raise Rejection(ReasonCode.CASE_ALREADY_SELECTED)
        return CaseSelectedChange(
            message_id=message_id,
            case_ref=case_ref,
            instrument=assessment.instrument if assessment else None,
            assessment_id=assessment.assessment_id if assessment else None,
            decided_by=decided_by,
            selected_at=now,
        )

    def plan_closed(
        self,
        *,
        message_id: str,
        case_ref: str,
        reason: ClosureReason,
        closed_by: str,
        now: datetime,
    ) -> CaseClosedChange:
        self.live_case(case_ref)  # closing twice is refused: case_closed
        return CaseClosedChange(
            message_id=message_id,
            case_ref=case_ref,
            reason=reason,
            closed_by=closed_by,
            closed_at=now,
        )

    def plan_consent(
        self, *, message_id: str, case_ref: str, body: ConsentEvent, now: datetime
    ) -> ConsentRecordedChange:
        # A closed case takes no new or amended consent; a withdrawal or an expiry is
        # still recorded (it only narrows, and refusing it would raise a false alarm).
        ends = body.action in (ConsentAction.WITHDRAWN, ConsentAction.EXPIRED)
        case = self.case(case_ref) if ends else self.live_case(case_ref)
        history = [e for e in case.events if e.consent_id == body.consent_id]
        if body.action is ConsentAction.GIVEN and history:
            raise Rejection(ReasonCode.CONSENT_CONFLICT, "consent id already given")
        if body.action is not ConsentAction.GIVEN and not history:
            raise Rejection(ReasonCode.CONSENT_CONFLICT, "no such consent record")
        if history and (history[0].consenter_role, history[0].guardian_ref) != (
            body.consenter_role,
            body.guardian_ref,
        ):
            raise Rejection(ReasonCode.CONSENT_CONFLICT, "consenter differs from the record")
        if (
            body.consenter_role is ConsenterRole.GUARDIAN
            and body.guardian_ref not in case.facts.guardians_with_custody
        ):
            raise Rejection(ReasonCode.CONSENT_CONFLICT, "guardian has no custody in this case")
        event = ConsentRecordEvent(
            consent_id=body.consent_id,
            revision=len(history) + 1,
            action=body.action,
            consenter_role=body.consenter_role,
            guardian_ref=body.guardian_ref,
            scope=body.scope,
            acted_at=body.acted_at,
            recorded_at=now,
            recorded_by=body.recorded_by,
            evidence_sha256=body.evidence_sha256,
            source_message_id=message_id,
        )
        return ConsentRecordedChange(message_id=message_id, case_ref=case_ref, event=event)

    # -- applying (idempotent per message id) ------------------------------

    def apply(self, change: AnyChange) -> None:
        if change.message_id in self.applied:
            return
        if isinstance(change, CaseSelectedChange):
            self.cases[change.case_ref].selection = change
        elif isinstance(change, CaseClosedChange):
            self.cases[change.case_ref].closure = change
        elif isinstance(change, CaseOpenedChange):
            self.cases[change.case_ref] = CaseRecord(
                case_ref=change.case_ref,
                subject_id=change.subject_id,
                facts=SubjectFacts(
                    date_of_birth=change.date_of_birth,
                    guardians_with_custody=frozenset(change.guardians_with_custody),
                ),
                parties=frozenset(change.parties),
                opened_at=change.opened_at,
                referral=change.referral,
            )
        else:
            self.cases[change.case_ref].append(change.event)
        self.applied.add(change.message_id)


def check_referral_link(state: HubState, referral: ReferralLink, now: datetime) -> None:
    """A case is opened for a referral at most once, and not before it was received."""
    if referral.received_at > now:
        raise Rejection(ReasonCode.SCHEMA_INVALID, "referral received after the case opens")
    if any(
        c.referral is not None and c.referral.message_id == referral.message_id
        for c in state.cases.values()
    ):
        raise Rejection(ReasonCode.REFERRAL_ALREADY_LINKED)
