"""Message bodies: strict, bounded, minimal.

Each body is a pydantic model with ``extra="forbid"`` and strict types, and
carries a ``version``. Which model a body is parsed with is decided by the
authenticated header's ``type``, so a body cannot claim a different type than
the one its sender signed. Enumerated codes stand in for free text; the one
free-text field (a short status note) is bounded and screened for
personnummer patterns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Literal, Self, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from sigbus.protocol.codes import (
    ActionCode,
    AgendaItem,
    AssessmentInstrument,
    ClosureReason,
    ConsentAction,
    ConsenterRole,
    ConsentPurpose,
    NotDoneReason,
    PlaceCode,
    QuestionnaireAnswer,
    QuestionnaireOccasion,
    ReferralKind,
    ReferralReason,
    StatusCode,
)
from sigbus.protocol.ids import (
    HUB,
    AgencyId,
    CommitmentIdStr,
    ConsentIdStr,
    FunctionCode,
    GuardianRefStr,
    MessageIdStr,
    MessageType,
    Sha256Hex,
    no_digit_run,
)
from sigbus.protocol.personnummer import Personnummer, ScreenedText

BODY_VERSION: Literal[1] = 1

_T = TypeVar("_T")


def _unique(items: tuple[_T, ...]) -> tuple[_T, ...]:
    if len(set(items)) != len(items):
        raise ValueError("items must be unique")
    return items


def _parties_only(items: tuple[AgencyId, ...]) -> tuple[AgencyId, ...]:
    if HUB in items:
        raise ValueError("the hub is never a party")
    return _unique(items)


PartyList = Annotated[
    tuple[AgencyId, ...], Field(min_length=1, max_length=16), AfterValidator(_parties_only)
]


class StrictModel(BaseModel):
    """Base for every wire model: closed, strict, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


#: A rule id of the rules file (policy/rules.toml), e.g. ``lul_6``.
RuleIdStr = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,40}$")]
#: The sender's own reference for the evidence a statute needs (e.g. the risk
#: assessment for OSL 10 kap. 18 a §): opaque, never a personnummer or a name.
EvidenceIdStr = Annotated[
    str, Field(pattern=r"^[a-z][A-Za-z0-9_-]{3,127}$"), AfterValidator(no_digit_run)
]


class StatutoryAssertion(StrictModel):
    """The sender asserts a statutory basis, with its own evidence id, in the signed header.

    The hub checks that the sender's profile may assert it; the policy checks the
    statute itself (senders, the one recipient, age limit, evidence id pattern).
    """

    basis: RuleIdStr
    evidence_id: EvidenceIdStr


class ConsentRef(StrictModel):
    """A consent record and the revision a decision relied on (policy, log and release)."""

    consent_id: str
    revision: Annotated[int, Field(ge=1)]


class Body(StrictModel):
    version: Literal[1] = BODY_VERSION


class Referral(Body):
    """Anmälan (SoL 14 kap. 1 §) or LUL 6 § notification. No narrative."""

    kind: ReferralKind
    personnummer: Personnummer
    reasons: Annotated[
        tuple[ReferralReason, ...], Field(min_length=1, max_length=8), AfterValidator(_unique)
    ]
    observed_on: date
    contact_function: FunctionCode


class ReferralLink(StrictModel):
    """The referral a case is opened for: its message id and when the hub released it to
    social services (its release record's ``released_at``). No content of the referral."""

    message_id: MessageIdStr
    received_at: AwareDatetime


class CaseOpened(Body):
    """Social services tell the hub who the case is about and who must consent."""

    personnummer: Personnummer
    guardians_with_custody: Annotated[
        tuple[GuardianRefStr, ...], Field(max_length=4), AfterValidator(_unique)
    ]
    parties: PartyList
    referral: ReferralLink | None = None


class AssessmentRef(StrictModel):
    """Which structured assessment a selection rests on: the instrument and the case
    system's own opaque id for it. Never its content, scores or answers."""

    instrument: AssessmentInstrument
    assessment_id: EvidenceIdStr


class CaseSelected(Body):
    """Social services decided that the young person of this case enters the SIG."""

    assessment: AssessmentRef | None = None
    decided_by: FunctionCode


class CaseClosed(Body):
    """Social services closed the SIG case (avslut): from now on nothing about it is shared."""

    reason: ClosureReason
    closed_by: FunctionCode


class ConsentScope(StrictModel):
    disclosers: PartyList
    recipients: PartyList
    categories: Annotated[
        tuple[MessageType, ...], Field(min_length=1, max_length=8), AfterValidator(_unique)
    ]
    purpose: ConsentPurpose
    valid_from: AwareDatetime
    valid_until: AwareDatetime

    @model_validator(mode="after")
    def _period_is_ordered(self) -> Self:
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


def consenter_key(role: ConsenterRole, guardian_ref: str | None) -> str:
    """The one name of a consenter (FHIR ``Consent.grantor``), in policy keys and deny
    reasons alike: ``young_person``, or ``guardian:<ref>`` for a vårdnadshavare."""
    if role is ConsenterRole.GUARDIAN:
        return f"{ConsenterRole.GUARDIAN.value}:{guardian_ref}"
    return ConsenterRole.YOUNG_PERSON.value


def parse_consenter_key(key: str) -> tuple[ConsenterRole, str | None]:
    """The inverse of :func:`consenter_key`."""
    role, _, ref = key.partition(":")
    return ConsenterRole(role), (ref or None)


def check_consent_shape(
    action: ConsentAction,
    role: ConsenterRole,
    guardian_ref: str | None,
    scope: ConsentScope | None,
    evidence: str | None,
) -> None:
    """A guardian is always named (FHIR Consent.grantor); given/amended carry scope and
    evidence; withdrawn/expired carry no scope. Shared by the wire event and the record."""
    if (role is ConsenterRole.GUARDIAN) != (guardian_ref is not None):
        raise ValueError("guardian_ref is required for, and only for, a guardian")
    needs_scope = action in (ConsentAction.GIVEN, ConsentAction.AMENDED)
    if needs_scope and (scope is None or evidence is None):
        raise ValueError("given and amended consents need a scope and evidence")
    if not needs_scope and scope is not None:
        raise ValueError("withdrawn and expired events carry no scope")


class ConsentEvent(Body):
    """Samtycke (consent) given, amended, withdrawn or expired, as recorded by social services."""

    consent_id: ConsentIdStr
    action: ConsentAction
    consenter_role: ConsenterRole
    guardian_ref: GuardianRefStr | None = None
    scope: ConsentScope | None = None
    acted_at: AwareDatetime
    evidence_sha256: Sha256Hex | None = None
    recorded_by: FunctionCode

    @model_validator(mode="after")
    def _shape_matches_action(self) -> Self:
        check_consent_shape(
            self.action, self.consenter_role, self.guardian_ref, self.scope, self.evidence_sha256
        )
        return self

    @property
    def consenter(self) -> str:
        return consenter_key(self.consenter_role, self.guardian_ref)


#: The consent events that may take the fast lane (``sigbus.ingress.<agency>.urgent``,
#: issue 11): each can only narrow what may be shared. An amendment can widen a
#: scope as well as narrow it, so it waits its turn (a narrowing amendment is a
#: withdrawal plus a new consent).
NARROWING = frozenset({ConsentAction.WITHDRAWN, ConsentAction.EXPIRED})


def narrows_consent(body: Body) -> bool:
    return isinstance(body, ConsentEvent) and body.action in NARROWING


class CaseInvitation(Body):
    """This young person is in SIG case C (the header's case ref); you are a party."""

    personnummer: Personnummer
    parties: PartyList
    coordinator: FunctionCode


class PlanCommitment(Body):
    """One action in the individuell åtgärdsplan (individual action plan)."""

    commitment_id: CommitmentIdStr
    responsible_agency: AgencyId
    action: ActionCode
    owner_function: FunctionCode
    due_on: date


class CommitmentStatus(Body):
    commitment_id: CommitmentIdStr
    status: StatusCode
    not_done_reason: NotDoneReason | None = None
    as_of: date
    note: Annotated[ScreenedText, Field(max_length=200)] | None = None

    @model_validator(mode="after")
    def _reason_only_when_not_done(self) -> Self:
        if (self.status is StatusCode.NOT_DONE) != (self.not_done_reason is not None):
            raise ValueError("not_done_reason is required for, and only for, not_done")
        return self


class MeetingNotice(Body):
    """Kallelse till individuellt möte (individual meeting)."""

    meeting_at: AwareDatetime
    place: PlaceCode
    agenda: Annotated[
        tuple[AgendaItem, ...], Field(min_length=1, max_length=10), AfterValidator(_unique)
    ]


class MeetingAttendance(Body):
    """Närvaro: who came to the individual meeting held at ``meeting_at`` (as its notice
    said): the agencies (parties of the case), whether the young person came, and
    which guardians came, by guardian ref. Never a name."""

    meeting_at: AwareDatetime
    agencies_present: Annotated[
        tuple[AgencyId, ...], Field(max_length=16), AfterValidator(_parties_only)
    ]
    young_person_present: bool
    guardians_present: Annotated[
        tuple[GuardianRefStr, ...], Field(max_length=4), AfterValidator(_unique)
    ] = ()


class MeetingMinutes(Body):
    """Minnesanteckningar (minutes) of the individual meeting held at ``meeting_at``: the
    agenda items dealt with, as codes, and one short free-text note, screened for
    personnummer (a note with one is refused)."""

    meeting_at: AwareDatetime
    discussed: Annotated[
        tuple[AgendaItem, ...], Field(min_length=1, max_length=10), AfterValidator(_unique)
    ]
    note: Annotated[ScreenedText, Field(max_length=300)] | None = None


class YouthQuestionnaire(Body):
    """The young person's answers, as codes, to how the support was experienced, recorded
    by social services at a review or at closure. A hub record: never released; only
    counted, with small counts suppressed, in the steering group's figures. One field per
    :class:`~sigbus.protocol.codes.QuestionnaireQuestion`."""

    occasion: QuestionnaireOccasion
    listened_to: QuestionnaireAnswer
    support_helped: QuestionnaireAnswer
    knew_the_plan: QuestionnaireAnswer
    recorded_by: FunctionCode


#: How many commitments one plan version holds at most.
MAX_PLAN_COMMITMENTS = 32


class PlanRevision(Body):
    """A new version of the case's individuell åtgärdsplan (individual action plan):
    its version number (the plan's next one at the hub: 1, 2, ...) and the ids of the
    commitments it holds (each sent before as a ``plan_commitment``). A commitment
    left out is no longer part of the plan, and no longer followed up."""

    plan_version: Annotated[int, Field(ge=1, le=9999)]
    commitments: Annotated[
        tuple[CommitmentIdStr, ...],
        Field(max_length=MAX_PLAN_COMMITMENTS),
        AfterValidator(_unique),
    ]
    revised_by: FunctionCode


class CommitmentReminder(Body):
    """Påminnelse: the hub reminds the responsible agency (the one recipient) that its
    commitment in the case's plan (the header's case ref) passed its due date without
    a ``done`` status. Sent by the hub alone, once per commitment and due date, and
    released only as the commitment itself would be (category ``plan_commitment``,
    from the lead agency)."""

    commitment_id: CommitmentIdStr
    action: ActionCode
    owner_function: FunctionCode
    due_on: date


class ExistenceQuery(Body):
    """Is another agency involved with this young person? Asked of the hub, which answers
    only which agencies (if any) are parties to an open case about them: no content, no
    category, no case ref (a notice of existence, as the Dutch Verwijsindex). Only where
    the rules file allows it (``[existence_notice] enabled``)."""

    personnummer: Personnummer
    asked_by: FunctionCode


class SentBy(StrEnum):
    """Which agencies a message type may come from; the profiles say which do."""

    #: The lead agency only: social services, who run the SIG and the hub.
    LEAD = "lead"
    #: Any agency that is a party to the case named in the header.
    PARTY = "party"
    #: Any agency in the directory: a referral comes before any case.
    ANY = "any"
    #: The hub alone (a reminder): no profile may list it, an agency sending it is refused.
    HUB = "hub"


@dataclass(frozen=True)
class MessageTypeSpec:
    """One message type: everything else about it is derived from this row."""

    model: type[Body]
    sent_by: SentBy
    #: Needs a case ref in its header (all but a referral, which can start a case).
    case_bound: bool = True
    #: Addressed to the hub itself: it changes hub state and is never released.
    hub_record: bool = False
    #: A question to the hub itself (an existence query): never released, changes no
    #: state; the hub's answer is its logged entry and the sender's decision notice.
    hub_query: bool = False


#: The message-type registry. Adding a type: a MessageType member, its body model,
#: and one row here (tests/protocol/test_registry.py checks that nothing is missing).
MESSAGE_TYPES: Mapping[MessageType, MessageTypeSpec] = MappingProxyType(
    {
        MessageType.REFERRAL: MessageTypeSpec(Referral, SentBy.ANY, case_bound=False),
        MessageType.CASE_OPENED: MessageTypeSpec(CaseOpened, SentBy.LEAD, hub_record=True),
        MessageType.CONSENT_EVENT: MessageTypeSpec(ConsentEvent, SentBy.LEAD, hub_record=True),
        MessageType.CASE_SELECTED: MessageTypeSpec(CaseSelected, SentBy.LEAD, hub_record=True),
        MessageType.CASE_CLOSED: MessageTypeSpec(CaseClosed, SentBy.LEAD, hub_record=True),
        MessageType.YOUTH_QUESTIONNAIRE: MessageTypeSpec(
            YouthQuestionnaire, SentBy.LEAD, hub_record=True
        ),
        MessageType.CASE_INVITATION: MessageTypeSpec(CaseInvitation, SentBy.LEAD),
        MessageType.PLAN_COMMITMENT: MessageTypeSpec(PlanCommitment, SentBy.PARTY),
        MessageType.COMMITMENT_STATUS: MessageTypeSpec(CommitmentStatus, SentBy.PARTY),
        MessageType.MEETING_NOTICE: MessageTypeSpec(MeetingNotice, SentBy.LEAD),
        MessageType.PLAN_REVISION: MessageTypeSpec(PlanRevision, SentBy.LEAD),
        MessageType.MEETING_ATTENDANCE: MessageTypeSpec(MeetingAttendance, SentBy.LEAD),
        MessageType.MEETING_MINUTES: MessageTypeSpec(MeetingMinutes, SentBy.LEAD),
        MessageType.COMMITMENT_REMINDER: MessageTypeSpec(CommitmentReminder, SentBy.HUB),
        MessageType.EXISTENCE_QUERY: MessageTypeSpec(
            ExistenceQuery, SentBy.ANY, case_bound=False, hub_query=True
        ),
    }
)
if set(MESSAGE_TYPES) != set(MessageType):  # pragma: no cover - an import-time guard
    raise RuntimeError("every MessageType needs a row in MESSAGE_TYPES")

BODY_MODELS: Mapping[MessageType, type[Body]] = MappingProxyType(
    {t: spec.model for t, spec in MESSAGE_TYPES.items()}
)
CASE_BOUND_TYPES: frozenset[MessageType] = frozenset(
    t for t, spec in MESSAGE_TYPES.items() if spec.case_bound
)
HUB_RECORD_TYPES: frozenset[MessageType] = frozenset(
    t for t, spec in MESSAGE_TYPES.items() if spec.hub_record
)
HUB_QUERY_TYPES: frozenset[MessageType] = frozenset(
    t for t, spec in MESSAGE_TYPES.items() if spec.hub_query
)
