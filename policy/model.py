"""The policy engine's input and output models.

Shapes follow ISO/IEC TS 27560:2023 (consent record information structure) and
HL7 FHIR R5 ``Consent`` where they fit a SIG (social insatsgrupp):

* a consent record is append-only: one :class:`ConsentRecordEvent` per change,
  with a per-record ``revision`` (TS 27560 "record version"; FHIR ``Consent.meta.versionId``);
* who consents is the young person or a named guardian with custody, in that
  capacity (TS 27560 "PII principal" / "entity on behalf of"; FHIR ``Consent.grantor``);
* the scope names disclosers and recipients (FHIR ``provision.actor``), message
  categories (``provision.documentType``), purpose (``provision.purpose``) and a
  validity period with a mandatory end (``provision.period``);
* evidence is the SHA-256 of the signed written form (FHIR ``Consent.sourceAttachment``).

Every model is closed (``extra="forbid"``), strict and frozen. Ids are opaque;
no model here may carry a name or a personnummer.
"""

from __future__ import annotations

import json
from datetime import date
from enum import StrEnum
from typing import Annotated, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    model_validator,
)

from sigbus.policy._memo import memo
from sigbus.protocol.canonical import canonical_json, sha256_hex
from sigbus.protocol.codes import ConsentAction, ConsenterRole
from sigbus.protocol.ids import AgencyId, MessageType
from sigbus.protocol.messages import ConsentRef as ConsentRef  # one type: wire, log, policy
from sigbus.protocol.messages import ConsentScope, check_consent_shape, consenter_key
from sigbus.protocol.messages import StatutoryAssertion as StatutoryAssertion

_ShortId = Annotated[str, Field(min_length=1, max_length=128)]


class PolicyModel(BaseModel):
    """Base of every policy model: closed, strict, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --------------------------------------------------------------------------- input


class ConsentRecordEvent(PolicyModel):
    """One event of a consent record, as recorded by the hub.

    ``revision`` is the per-record counter the hub assigns (1 for the first
    event). A withdrawal or expiry takes effect from ``recorded_at`` (hub time):
    a message decided at exactly that instant is denied.
    """

    consent_id: _ShortId
    revision: Annotated[int, Field(ge=1)]
    action: ConsentAction
    consenter_role: ConsenterRole
    guardian_ref: _ShortId | None = None
    scope: ConsentScope | None = None
    acted_at: AwareDatetime
    recorded_at: AwareDatetime
    recorded_by: _ShortId
    evidence_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    source_message_id: _ShortId

    @model_validator(mode="after")
    def _shape_matches_action(self) -> Self:
        check_consent_shape(
            self.action, self.consenter_role, self.guardian_ref, self.scope, self.evidence_sha256
        )
        return self

    def digest(self) -> str:
        """SHA-256 of this event's RFC 8785 canonical JSON, memoised on the event.

        Events outlive the ``CaseState`` objects that list them (the hub builds a
        new state per message), so the case digest reuses these. Keyed by the
        identity of every field, so a ``model_copy(update=...)`` is re-hashed.
        """
        key = tuple(self.__dict__.values())[:_N_EVENT_FIELDS]  # fields come first, in order
        return memo(
            self, "digest", key, lambda: sha256_hex(canonical_json(self.model_dump(mode="json")))
        )

    @property
    def consenter(self) -> str:
        """``young_person`` or ``guardian:<ref>``: how reasons name a consenter."""
        return consenter_key(self.consenter_role, self.guardian_ref)


_N_EVENT_FIELDS = len(ConsentRecordEvent.model_fields)


class SubjectFacts(PolicyModel):
    """What the hub knows about the young person: no name, no personnummer."""

    date_of_birth: date
    guardians_with_custody: frozenset[str] = frozenset()

    @field_serializer("guardians_with_custody")
    def _sorted_guardians(self, value: frozenset[str]) -> list[str]:
        return sorted(value)  # sets serialise in a stable order (canonical digests)


class CaseState(PolicyModel):
    """The hub's fresh state of one SIG case; ``consent_events`` in recorded order.

    Anything the engine derives from a state is memoised keyed by the identity of
    everything it depends on (see :mod:`policy._memo`): the fold by every event
    object in order, the answers by fold, subject facts, parties and rules. A
    state with other events -- a new object or a ``model_copy(update=...)`` --
    never reuses them, so no memo can outlive the events it was computed from or
    honour a withdrawal recorded since. Build the state fresh for every decision
    from the hub's current events (reusing the event objects is what makes it fast).
    """

    case_ref: _ShortId
    subject: SubjectFacts
    parties: frozenset[AgencyId]
    consent_events: tuple[ConsentRecordEvent, ...] = ()

    @field_serializer("parties")
    def _sorted_parties(self, value: frozenset[AgencyId]) -> list[str]:
        return sorted(value)

    def digest(self) -> str:
        """SHA-256 identifying this state exactly (for decision ids).

        ``sha256(JCS(head) || "\n" || d1 || d2 ...)``: the RFC 8785 canonical JSON of
        case_ref, subject and (sorted) parties, then each consent event's own
        64-hex digest (:meth:`ConsentRecordEvent.digest`) in recorded order.
        """

        def build() -> str:
            head = {
                "case_ref": self.case_ref,
                "subject": self.subject.model_dump(mode="json"),
                "parties": sorted(self.parties),
                "events": len(self.consent_events),
            }
            tail = "".join(e.digest() for e in self.consent_events)
            # JSON with sorted keys, no whitespace, ensure_ascii=False: byte-identical
            # to RFC 8785 for this document (ASCII keys, strings, ints, lists).
            encoded = json.dumps(head, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            return sha256_hex(encoded.encode("utf-8") + b"\n" + tail.encode("ascii"))

        if type(self.consent_events) is not tuple:
            return build()  # model_construct with a mutable list: never memoised
        key = (self.case_ref, self.subject, self.parties, self.consent_events)
        return memo(self, "digest", key, build)


class DecisionRequest(PolicyModel):
    """One release question: may ``discloser`` send this ``category`` to each recipient?"""

    message_id: _ShortId
    discloser: AgencyId
    recipients: Annotated[tuple[AgencyId, ...], Field(min_length=1, max_length=8)]
    category: MessageType
    case: CaseState | None = None
    #: Facts the hub knows when there is no case (e.g. from a referral's personnummer).
    subject: SubjectFacts | None = None
    assertions: Annotated[tuple[StatutoryAssertion, ...], Field(max_length=8)] = ()


# -------------------------------------------------------------------------- output


class Verdict(StrEnum):
    """The policy's answer for one recipient (the log's outcome is ``EntryOutcome``)."""

    PERMIT = "permit"
    DENY = "deny"


class DenyCode(StrEnum):
    """Why a recipient was denied. Part of the disclosure log's contract."""

    NO_BASIS = "no_basis"
    CONSENT_MISSING = "consent_missing"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    CONSENT_EXPIRED = "consent_expired"
    CONSENT_TOO_LONG = "consent_too_long"  # period longer than max_consent_days
    CONSENT_CONFLICT = "consent_conflict"  # record's events are inconsistent
    OUTSIDE_PERIOD = "outside_period"  # before valid_from
    SCOPE_DISCLOSER = "scope_discloser"
    SCOPE_RECIPIENT = "scope_recipient"
    SCOPE_CATEGORY = "scope_category"
    SCOPE_PURPOSE = "scope_purpose"
    UNKNOWN_PARTY = "unknown_party"
    NOT_A_PARTY = "not_a_party"
    STATUTE_PRECONDITION_NOT_MET = "statute_precondition_not_met"
    STATUTE_RECIPIENT_NOT_ALLOWED = "statute_recipient_not_allowed"
    SENDER_NOT_ALLOWED = "sender_not_allowed"
    SUBJECT_UNKNOWN = "subject_unknown"
    EVALUATION_ERROR = "evaluation_error"


class DenyReason(PolicyModel):
    """A precise, code-like reason. ``detail`` is a short code, never personal data."""

    code: DenyCode
    consenter: str | None = None
    consent_id: str | None = None
    detail: str | None = None

    def as_code(self) -> str:
        """``code[:consenter]``, or ``code[:detail]`` when no consenter is named.

        E.g. ``consent_missing:guardian:vh-2``, ``sender_not_allowed:lul_6``.
        """
        if self.consenter is not None:
            return f"{self.code.value}:{self.consenter}"
        if self.detail is not None:
            return f"{self.code.value}:{self.detail}"
        return self.code.value


class RecipientDecision(PolicyModel):
    recipient: AgencyId
    outcome: Verdict
    #: Rule id of the basis used (e.g. ``osl_12_2``, ``lul_6``); None on deny.
    legal_basis: str | None = None
    #: True when a statutory basis (not consent) permitted: flagged for review.
    statutory: bool = False
    consent_refs: tuple[ConsentRef, ...] = ()
    rule_ids: tuple[str, ...] = ()
    reasons: tuple[DenyReason, ...] = ()
    #: Observations that did not decide the outcome, e.g.
    #: ``amendment_widening_ignored:<consent_id>:<revision>``.
    notes: tuple[str, ...] = ()

    @property
    def permitted(self) -> bool:
        return self.outcome is Verdict.PERMIT


class Decision(PolicyModel):
    decision_id: str
    decided_at: AwareDatetime
    rules_hash: str
    per_recipient: tuple[RecipientDecision, ...]
    rules_version: str | None = None
    message_id: str | None = None

    @property
    def all_permitted(self) -> bool:
        return all(r.outcome is Verdict.PERMIT for r in self.per_recipient)

    def for_recipient(self, recipient: AgencyId) -> RecipientDecision | None:
        for r in self.per_recipient:
            if r.recipient == recipient:
                return r
        return None
