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
from sigbus.protocol.codes import (
    ActionCode,
    AssessmentInstrument,
    ClosureReason,
    ConsentAction,
    ConsenterRole,
    QuestionnaireAnswer,
    QuestionnaireOccasion,
    StatusCode,
)
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


class CommitmentRecordedChange(StrictModel):
    """A plan commitment released to at least one party: the hub follows it up (issue 13).

    The same commitment id again (a revised commitment) replaces agency, action, owner
    and due date; its status history stays."""

    kind: Literal["commitment_recorded"] = "commitment_recorded"
    message_id: str
    case_ref: str
    commitment_id: str
    #: The party that sent the commitment (the discloser of the plan item).
    sender: AgencyId
    responsible_agency: AgencyId
    action: ActionCode
    owner_function: str
    due_on: date
    recorded_at: AwareDatetime


class CommitmentStatusChange(StrictModel):
    """A status of a known commitment, released to at least one party: its history grows."""

    kind: Literal["commitment_status"] = "commitment_status"
    message_id: str
    case_ref: str
    commitment_id: str
    status: StatusCode
    as_of: date
    recorded_at: AwareDatetime


class CommitmentRemindedChange(StrictModel):
    """The hub decided the one reminder for a commitment's due date (released or denied):
    it is never decided again, also not after a restart (the state is bound to the log)."""

    kind: Literal["commitment_reminded"] = "commitment_reminded"
    message_id: str
    case_ref: str
    commitment_id: str
    due_on: date
    released: bool
    decided_at: AwareDatetime


class QuestionnaireRecordedChange(StrictModel):
    """The young person's coded answers (issue 13): counted in the steering group's figures."""

    kind: Literal["questionnaire_recorded"] = "questionnaire_recorded"
    message_id: str
    case_ref: str
    occasion: QuestionnaireOccasion
    listened_to: QuestionnaireAnswer
    support_helped: QuestionnaireAnswer
    knew_the_plan: QuestionnaireAnswer
    recorded_at: AwareDatetime


class PlanRevisedChange(StrictModel):
    """A plan revision released to at least one party: the plan's version and contents."""

    kind: Literal["plan_revised"] = "plan_revised"
    message_id: str
    case_ref: str
    plan_version: int
    commitments: tuple[str, ...]
    revised_at: AwareDatetime


class MeetingHeldChange(StrictModel):
    """A meeting's attendance released to at least one party: the meeting was held
    (the steering group's "meetings held", issue 13). Who came stays in the sealed
    message; the hub keeps only when."""

    kind: Literal["meeting_held"] = "meeting_held"
    message_id: str
    case_ref: str
    meeting_at: AwareDatetime
    recorded_at: AwareDatetime


#: Every kind of hub-state change; each is a hub record in the log (``state_sha256``).
AnyChange = (
    CaseOpenedChange
    | ConsentRecordedChange
    | CaseSelectedChange
    | CaseClosedChange
    | CommitmentRecordedChange
    | CommitmentStatusChange
    | CommitmentRemindedChange
    | PlanRevisedChange
    | QuestionnaireRecordedChange
    | MeetingHeldChange
)
StateChange = Annotated[AnyChange, Field(discriminator="kind")]


class StateRecord(StrictModel):
    change: StateChange


@dataclass(frozen=True)
class StatusEntry:
    status: StatusCode
    as_of: date
    recorded_at: datetime


@dataclass
class CommitmentRecord:
    """One commitment of a case's plan as the hub follows it up."""

    commitment_id: str
    sender: AgencyId
    responsible_agency: AgencyId
    action: ActionCode
    owner_function: str
    due_on: date
    history: list[StatusEntry] = field(default_factory=list)
    #: The reminders decided, by due date (True: released).
    reminded: dict[date, bool] = field(default_factory=dict)
    #: Left out of the latest plan version: no longer followed up.
    in_plan: bool = True

    @property
    def latest(self) -> StatusEntry | None:
        """The status with the latest ``as_of`` (the later one recorded on a tie)."""
        if not self.history:
            return None
        return max(enumerate(self.history), key=lambda p: (p[1].as_of, p[0]))[1]

    @property
    def done(self) -> bool:
        latest = self.latest
        return latest is not None and latest.status is StatusCode.DONE


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
    commitments: dict[str, CommitmentRecord] = field(default_factory=dict)
    #: The plan's version: 0 until the first plan revision.
    plan_version: int = 0
    #: When the first plan version was adopted (the steering group's referral-to-plan time).
    planned_at: datetime | None = None
    #: When each meeting whose attendance was released was held.
    meetings_held: list[datetime] = field(default_factory=list)
    questionnaires: list[QuestionnaireRecordedChange] = field(default_factory=list)
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

    def plan_commitment(
        self,
        *,
        message_id: str,
        case_ref: str,
        sender: AgencyId,
        commitment_id: str,
        responsible_agency: AgencyId,
        action: ActionCode,
        owner_function: str,
        due_on: date,
        now: datetime,
    ) -> CommitmentRecordedChange:
        self.live_case(case_ref)
        return CommitmentRecordedChange(
            message_id=message_id,
            case_ref=case_ref,
            commitment_id=commitment_id,
            sender=sender,
            responsible_agency=responsible_agency,
            action=action,
            owner_function=owner_function,
            due_on=due_on,
            recorded_at=now,
        )

    def plan_commitment_status(
        self,
        *,
        message_id: str,
        case_ref: str,
        commitment_id: str,
        status: StatusCode,
        as_of: date,
        now: datetime,
    ) -> CommitmentStatusChange | None:
        """None for a commitment the hub does not follow (not in this case's plan)."""
        if commitment_id not in self.live_case(case_ref).commitments:
            return None
        return CommitmentStatusChange(
            message_id=message_id,
            case_ref=case_ref,
            commitment_id=commitment_id,
            status=status,
            as_of=as_of,
            recorded_at=now,
        )

    def check_plan_revision(
        self, case_ref: str | None, plan_version: int, commitments: tuple[str, ...]
    ) -> None:
        """A revision must be the plan's next version and hold only commitments of the case."""
        case = self.live_case(case_ref)
        if plan_version != case.plan_version + 1:
            raise Rejection(
                ReasonCode.PLAN_CONFLICT, f"the plan's next version is {case.plan_version + 1}"
            )
        if any(c not in case.commitments for c in commitments):
            raise Rejection(ReasonCode.PLAN_CONFLICT, "names a commitment not in the case")

    def plan_revised(
        self,
        *,
        message_id: str,
        case_ref: str,
        plan_version: int,
        commitments: tuple[str, ...],
        now: datetime,
    ) -> PlanRevisedChange:
        self.check_plan_revision(case_ref, plan_version, commitments)
        return PlanRevisedChange(
            message_id=message_id,
            case_ref=case_ref,
            plan_version=plan_version,
            commitments=commitments,
            revised_at=now,
        )

    def meeting_held(
        self, *, message_id: str, case_ref: str, meeting_at: datetime, now: datetime
    ) -> MeetingHeldChange:
        self.case(case_ref)
        return MeetingHeldChange(
            message_id=message_id, case_ref=case_ref, meeting_at=meeting_at, recorded_at=now
        )

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
        elif isinstance(change, CommitmentRecordedChange):
            plan = self.cases[change.case_ref].commitments
            known = plan.get(change.commitment_id)
            plan[change.commitment_id] = CommitmentRecord(
                commitment_id=change.commitment_id,
                sender=change.sender,
                responsible_agency=change.responsible_agency,
                action=change.action,
                owner_function=change.owner_function,
                due_on=change.due_on,
                history=known.history if known else [],
                reminded=known.reminded if known else {},
            )
        elif isinstance(change, CommitmentStatusChange):
            self.cases[change.case_ref].commitments[change.commitment_id].history.append(
                StatusEntry(change.status, change.as_of, change.recorded_at)
            )
        elif isinstance(change, QuestionnaireRecordedChange):
            self.cases[change.case_ref].questionnaires.append(change)
        elif isinstance(change, PlanRevisedChange):
            case = self.cases[change.case_ref]
            case.plan_version = change.plan_version
            if case.planned_at is None:
                case.planned_at = change.revised_at
            for cid, commitment in case.commitments.items():
                commitment.in_plan = cid in change.commitments
        elif isinstance(change, MeetingHeldChange):
            self.cases[change.case_ref].meetings_held.append(change.meeting_at)
        elif isinstance(change, CommitmentRemindedChange):
            commitment = self.cases[change.case_ref].commitments[change.commitment_id]
            commitment.reminded[change.due_on] = change.released
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
