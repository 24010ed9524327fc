"""Message bodies: strict, bounded, minimal.

Each body is a pydantic model with ``extra="forbid"`` and strict types, and
carries a ``version``. Which model a body is parsed with is decided by the
authenticated header's ``type``, so a body cannot claim a different type than
the one its sender signed. Enumerated codes stand in for free text; the one
free-text field (a short status note) is bounded and screened for
personnummer patterns.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal, Self, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from sigbus.protocol.codes import (
    ActionCode,
    AgendaItem,
    ConsentAction,
    ConsenterRole,
    ConsentPurpose,
    ContactFunction,
    NotDoneReason,
    PlaceCode,
    ReferralKind,
    ReferralReason,
    StatusCode,
)
from sigbus.protocol.ids import (
    PARTY_AGENCIES,
    AgencyId,
    CommitmentIdStr,
    ConsentIdStr,
    GuardianRefStr,
    MessageType,
    Sha256Hex,
)
from sigbus.protocol.personnummer import Personnummer, ScreenedText

BODY_VERSION: Literal[1] = 1

_T = TypeVar("_T")


def _unique(items: tuple[_T, ...]) -> tuple[_T, ...]:
    if len(set(items)) != len(items):
        raise ValueError("items must be unique")
    return items


def _parties_only(items: tuple[AgencyId, ...]) -> tuple[AgencyId, ...]:
    if any(a not in PARTY_AGENCIES for a in items):
        raise ValueError("only party agencies may be named here")
    return _unique(items)


PartyList = Annotated[
    tuple[AgencyId, ...], Field(min_length=1, max_length=8), AfterValidator(_parties_only)
]


class StrictModel(BaseModel):
    """Base for every wire model: closed, strict, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


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
    contact_function: ContactFunction


class CaseOpened(Body):
    """Social services tell the hub who the case is about and who must consent."""

    personnummer: Personnummer
    guardians_with_custody: Annotated[
        tuple[GuardianRefStr, ...], Field(max_length=4), AfterValidator(_unique)
    ]
    parties: PartyList


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
    recorded_by: ContactFunction

    @model_validator(mode="after")
    def _shape_matches_action(self) -> Self:
        check_consent_shape(
            self.action, self.consenter_role, self.guardian_ref, self.scope, self.evidence_sha256
        )
        return self


class CaseInvitation(Body):
    """This young person is in SIG case C (the header's case ref); you are a party."""

    personnummer: Personnummer
    parties: PartyList
    coordinator: ContactFunction


class PlanCommitment(Body):
    """One action in the individuell åtgärdsplan (individual action plan)."""

    commitment_id: CommitmentIdStr
    responsible_agency: AgencyId
    action: ActionCode
    owner_function: ContactFunction
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


BODY_MODELS: dict[MessageType, type[Body]] = {
    MessageType.REFERRAL: Referral,
    MessageType.CASE_OPENED: CaseOpened,
    MessageType.CONSENT_EVENT: ConsentEvent,
    MessageType.CASE_INVITATION: CaseInvitation,
    MessageType.PLAN_COMMITMENT: PlanCommitment,
    MessageType.COMMITMENT_STATUS: CommitmentStatus,
    MessageType.MEETING_NOTICE: MeetingNotice,
}

#: Types that need a case ref in their header (all but a referral, which starts a case).
CASE_BOUND_TYPES: frozenset[MessageType] = frozenset(BODY_MODELS) - {MessageType.REFERRAL}
