"""The release pipeline for one ingress message. Pure: no I/O, ``now`` is an argument.

Steps (design brief, "Broker"): verify the sender's signature against the
directory before decrypting anything -> open -> validate the body -> ask the
policy -> plan one log entry per decision -> plan the releases (data key
re-sealed to each permitted recipient). The I/O edge (:mod:`broker.service`)
writes the entries durably *before* it publishes any release.

Every failure becomes a deny with a reason code; an unexpected exception
becomes ``internal_error``. Nothing here raises to the caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sigbus.audit.entry import EntryOutcome
from sigbus.broker.errors import Rejection, WithdrawalRefused
from sigbus.broker.pseudonym import subject_id_for, subject_ref_for
from sigbus.broker.state import (
    AnyChange,
    ConsentRecordedChange,
    HubState,
    QuestionnaireRecordedChange,
)
from sigbus.policy import (
    Decision,
    DecisionRequest,
    DenyReason,
    RecipientDecision,
    Rules,
    SubjectFacts,
    Verdict,
    decide,
)
from sigbus.policy.existence import answer_existence
from sigbus.protocol.codes import ConsentAction, ConsenterRole
from sigbus.protocol.directory import Directory
from sigbus.protocol.envelope import (
    Envelope,
    Header,
    decrypt_body,
    parse_body,
    parse_envelope,
    verify_sender,
)
from sigbus.protocol.errors import ProtocolError
from sigbus.protocol.identity import AgencyIdentity
from sigbus.protocol.ids import HUB, AgencyId, MessageType
from sigbus.protocol.messages import (
    HUB_RECORD_TYPES,
    MESSAGE_TYPES,
    Body,
    CaseClosed,
    CaseInvitation,
    CaseOpened,
    CaseSelected,
    CommitmentStatus,
    ConsentEvent,
    ConsentRef,
    ExistenceQuery,
    MeetingAttendance,
    PlanCommitment,
    PlanRevision,
    Referral,
    SentBy,
    YouthQuestionnaire,
    narrows_consent,
)
from sigbus.protocol.personnummer import birth_date
from sigbus.protocol.profiles import AgencyProfile, Profiles
from sigbus.protocol.reasons import HubReason, ReasonCode
from sigbus.protocol.release import release_id_for
from sigbus.protocol.sealing import (
    STRICT_SUITES,
    SuitePolicy,
    data_key_info,
    open_data_key,
    seal_data_key,
)


@dataclass(frozen=True)
class PipelineConfig:
    max_future_skew: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=7)
    #: Classical-only HPKE suites are refused, for envelopes and recipient keys alike,
    #: unless the configuration allows them (SIGBUS_ALLOW_CLASSICAL_SUITE=1).
    suite_policy: SuitePolicy = STRICT_SUITES


@dataclass(frozen=True)
class HubContext:
    """What the hub knows and holds, passed in so the pipeline stays pure."""

    identity: AgencyIdentity
    pseudonym_key: bytes
    directory: Directory
    rules: Rules
    #: What each agency is and may send or assert (profiles/*.toml).
    profiles: Profiles
    config: PipelineConfig = field(default_factory=PipelineConfig)


@dataclass(frozen=True)
class EntryDraft:
    """A log entry without its position (index, prev hash): the log writer adds those."""

    decision_id: str
    decided_at: datetime
    ingress_seq: int
    message_id: str
    message_type: MessageType | None
    sender: AgencyId | None
    case_ref: str | None
    rules_hash: str
    ciphertext_sha256: str | None
    outcome: EntryOutcome
    recipient: AgencyId | None = None
    subject_ref: str | None = None
    legal_basis: str | None = None
    statutory: bool = False
    consent_refs: tuple[ConsentRef, ...] = ()
    rule_ids: tuple[str, ...] = ()
    reasons: tuple[LogReason, ...] = ()
    release_id: str | None = None
    consent_action: ConsentAction | None = None
    consenter_role: ConsenterRole | None = None
    #: Filled in by the service once the state change is sealed (log before state).
    state_sha256: str | None = None

    def reason_codes(self) -> tuple[str, ...]:
        """The reasons as the log writes them: the one place they become text."""
        return tuple(render_reason(r) for r in self.reasons)


#: Why a recipient was denied: the hub's own check, or the policy's (typed until logged).
LogReason = HubReason | DenyReason


def render_reason(reason: LogReason) -> str:
    """``sender_not_allowed``, ``internal_error:KeyError``, ``policy:consent_withdrawn:...``."""
    if isinstance(reason, DenyReason):
        return f"policy:{reason.as_code()}"
    return reason.render()


@dataclass(frozen=True)
class ReleaseDraft:
    """A release waiting for its log index: the envelope as the sender signed it
    (data key sealed to the hub) and the data key re-sealed to the recipient."""

    recipient: AgencyId
    recipient_key_id: str
    envelope: Envelope
    sealed_key: bytes
    entry: EntryDraft


@dataclass(frozen=True)
class Plan:
    message_id: str
    entries: tuple[EntryDraft, ...]
    releases: tuple[ReleaseDraft, ...] = ()
    state_change: AnyChange | None = None
    #: A consent withdrawal was refused: consent, and sharing under it, go on.
    refused_withdrawal: bool = False
    #: The message's own data key, for the hub's retention vault (broker.vault):
    #: kept only while the message's retention period runs, then shredded.
    data_key: bytes | None = None
    #: Which entry commits to the state change (``state_sha256``): a hub record's one
    #: entry, or a followed-up plan item's first release.
    bound: int = 0

    @property
    def denied(self) -> bool:
        return all(e.outcome is EntryOutcome.DENY for e in self.entries)


def unparsed_message_id(ingress_seq: int) -> str:
    """Stand-in id for a message whose header could not be read."""
    return f"ingress-{ingress_seq}"


def _decision_id(*parts: object) -> str:
    digest = hashlib.sha256("\n".join(str(p) for p in parts).encode()).hexdigest()[:32]
    return f"dec-{digest}"


def evaluate(
    raw: bytes,
    *,
    subject_agency: AgencyId | None,
    ingress_seq: int,
    first_seen: Callable[[str], int | None],
    state: HubState,
    ctx: HubContext,
    now: datetime,
    urgent: bool = False,
) -> Plan:
    """Decide what to do with one ingress message.

    ``first_seen(message_id)`` is the ingress sequence at which that id was
    first decided, if ever: a different one means a replay, also after
    JetStream's duplicate window has passed (the hub's own record, the log).
    ``urgent``: it came by the fast lane, which only a narrowing of a consent
    may take (:data:`NARROWING`); anything else there is denied ``wrong_lane``.
    """
    envelope: Envelope | None = None
    authentic = False
    try:
        envelope = parse_envelope(raw)
        _authenticate(envelope, subject_agency, ctx, now)
        authentic = True
        return _evaluate_envelope(envelope, ingress_seq, first_seen, state, ctx, now, urgent)
    except (ProtocolError, Rejection) as e:
        reason = HubReason(e.reason)
        refused_withdrawal = isinstance(e, WithdrawalRefused)
    except Exception as e:  # noqa: BLE001 - any fault must become a logged deny, not a crash
        reason = HubReason(ReasonCode.INTERNAL_ERROR, detail=type(e).__name__)
        refused_withdrawal = False
    # A header whose signature did not verify says nothing: the entry names only what
    # NATS vouches for (the publishing agency, by its ingress subject), never the
    # sender, case or message id the bytes claim, so a forgery cannot blame anyone.
    plan = _deny_plan(envelope, authentic, subject_agency, ingress_seq, ctx, now, reason)
    return replace(plan, refused_withdrawal=refused_withdrawal)


def _deny_plan(
    envelope: Envelope | None,
    authentic: bool,
    subject_agency: AgencyId | None,
    ingress_seq: int,
    ctx: HubContext,
    now: datetime,
    reason: HubReason,
) -> Plan:
    header = envelope.header if envelope is not None and authentic else None
    message_id = header.message_id if header else unparsed_message_id(ingress_seq)
    entry = EntryDraft(
        decision_id=_decision_id(ingress_seq, message_id, reason.render(), now.isoformat()),
        decided_at=now,
        ingress_seq=ingress_seq,
        message_id=message_id,
        message_type=header.type if header else None,
        sender=header.sender if header else subject_agency,
        case_ref=header.case_ref if header else None,
        rules_hash=ctx.rules.sha256,
        ciphertext_sha256=envelope.ciphertext_digest() if envelope else None,
        outcome=EntryOutcome.DENY,
        reasons=(reason,),
    )
    return Plan(message_id=message_id, entries=(entry,))


def _authenticate(
    envelope: Envelope, subject_agency: AgencyId | None, ctx: HubContext, now: datetime
) -> None:
    """1. Authenticate before decrypting anything: the ingress subject's agency (NATS
    permissions) is the header's sender, and the sender's key signed the header."""
    header = envelope.header
    if subject_agency != header.sender:
        raise Rejection(ReasonCode.SENDER_MISMATCH)
    verify_sender(envelope, ctx.directory.signing_key(header.sender, header.sender_key_id, at=now))


def _evaluate_envelope(
    envelope: Envelope,
    ingress_seq: int,
    first_seen: Callable[[str], int | None],
    state: HubState,
    ctx: HubContext,
    now: datetime,
    urgent: bool,
) -> Plan:
    header = envelope.header
    first_seq = first_seen(header.message_id)
    if first_seq is not None and first_seq != ingress_seq:
        raise Rejection(ReasonCode.REPLAYED_MESSAGE_ID)
    if header.created_at > now + ctx.config.max_future_skew:
        raise Rejection(ReasonCode.CREATED_AT_IN_FUTURE)
    if header.created_at < now - ctx.config.max_age:
        raise Rejection(ReasonCode.CREATED_AT_TOO_OLD)
    profile = _sender_profile(header, ctx.profiles)
    ctx.config.suite_policy.check(header.suite)  # SuiteRefused: a classical-only suite
    # 2. Open: the data key was sealed to the hub's current sealing key. It is opened
    # once and the same key re-sealed to each permitted recipient (RFC 9180 §6.1).
    if envelope.sealed_key_id != ctx.identity.sealing_key_id:
        raise Rejection(ReasonCode.SEAL_OPEN_FAILED, "sealed to another hub key")
    data_key = open_data_key(
        header.suite,
        ctx.identity.sealing_private,
        envelope.sealed_key,
        data_key_info(header.message_id, HUB, envelope.sealed_key_id),
    )
    plaintext = decrypt_body(envelope, data_key)
    # 3. Validate the body against the model the signed header names.
    body = parse_body(header.type, plaintext)
    if urgent and not narrows_consent(body):
        # Jumping the queue is for taking effect sooner, never for sharing sooner.
        raise Rejection(ReasonCode.WRONG_LANE)
    try:
        return _decide_body(envelope, body, profile, ingress_seq, state, ctx, now, data_key)
    except Rejection as e:
        if isinstance(body, ConsentEvent) and body.action is ConsentAction.WITHDRAWN:
            raise WithdrawalRefused(e.reason) from e
        raise


def _decide_body(
    envelope: Envelope,
    body: Body,
    profile: AgencyProfile,
    ingress_seq: int,
    state: HubState,
    ctx: HubContext,
    now: datetime,
    data_key: bytes,
) -> Plan:
    header = envelope.header
    _check_functions(header.type, body, profile, ctx.profiles)
    personnummer = getattr(body, "personnummer", None)
    if isinstance(personnummer, str) and birth_date(personnummer) > now.date():
        raise Rejection(ReasonCode.PERSONNUMMER_INVALID, "birth date in the future")
    subject_id = subject_id_for(personnummer, ctx.pseudonym_key) if personnummer else None

    if isinstance(body, ExistenceQuery):
        return _existence(envelope, subject_id, ingress_seq, state, ctx, now)
    if header.type in HUB_RECORD_TYPES:
        return _hub_record(envelope, body, subject_id, ingress_seq, state, ctx, now)
    return _disclosure(envelope, body, subject_id, ingress_seq, state, ctx, now, data_key)


def _hub_record(
    envelope: Envelope,
    body: Body,
    subject_id: str | None,
    ingress_seq: int,
    state: HubState,
    ctx: HubContext,
    now: datetime,
) -> Plan:
    header = envelope.header
    if header.recipients:
        raise Rejection(ReasonCode.HUB_RECORD_HAS_RECIPIENTS)
    if header.case_ref is None:
        raise Rejection(ReasonCode.CASE_REF_REQUIRED)
    change: AnyChange
    if isinstance(body, CaseOpened):
        assert subject_id is not None
        change = state.plan_case_opened(
            message_id=header.message_id,
            case_ref=header.case_ref,
            subject_id=subject_id,
            date_of_birth=birth_date(body.personnummer),
            guardians=body.guardians_with_custody,
            parties=body.parties,
            now=now,
            referral=body.referral,
        )
    elif isinstance(body, ConsentEvent):
        change = state.plan_consent(
            message_id=header.message_id, case_ref=header.case_ref, body=body, now=now
        )
        subject_id = state.case(header.case_ref).subject_id
    elif isinstance(body, CaseSelected):
        change = state.plan_selected(
            message_id=header.message_id,
            case_ref=header.case_ref,
            assessment=body.assessment,
            decided_by=body.decided_by,
            now=now,
        )
        subject_id = state.case(header.case_ref).subject_id
    elif isinstance(body, YouthQuestionnaire):
        state.live_case(header.case_ref)
        change = QuestionnaireRecordedChange(
            message_id=header.message_id,
            case_ref=header.case_ref,
            occasion=body.occasion,
            listened_to=body.listened_to,
            support_helped=body.support_helped,
            knew_the_plan=body.knew_the_plan,
            recorded_at=now,
        )
        subject_id = state.case(header.case_ref).subject_id
    elif isinstance(body, CaseClosed):
        change = state.plan_closed(
            message_id=header.message_id,
            case_ref=header.case_ref,
            reason=body.reason,
            closed_by=body.closed_by,
            now=now,
        )
        subject_id = state.case(header.case_ref).subject_id
    else:  # pragma: no cover - HUB_RECORD_TYPES and the models agree
        raise Rejection(ReasonCode.UNKNOWN_TYPE)
    entry = EntryDraft(
        decision_id=_decision_id(ingress_seq, header.message_id, "recorded", now.isoformat()),
        decided_at=now,
        ingress_seq=ingress_seq,
        message_id=header.message_id,
        message_type=header.type,
        sender=header.sender,
        recipient=HUB,
        subject_ref=_subject_ref(subject_id, header, ctx),
        case_ref=header.case_ref,
        consent_refs=(
            (ConsentRef(consent_id=change.event.consent_id, revision=change.event.revision),)
            if isinstance(change, ConsentRecordedChange)
            else ()
        ),
        rules_hash=ctx.rules.sha256,
        ciphertext_sha256=envelope.ciphertext_digest(),
        outcome=EntryOutcome.RECORDED,
        consent_action=(change.event.action if isinstance(change, ConsentRecordedChange) else None),
        consenter_role=(
            change.event.consenter_role if isinstance(change, ConsentRecordedChange) else None
        ),
    )
    return Plan(message_id=header.message_id, entries=(entry,), state_change=change)


def _disclosure(
    envelope: Envelope,
    body: Body,
    subject_id: str | None,
    ingress_seq: int,
    state: HubState,
    ctx: HubContext,
    now: datetime,
    data_key: bytes,
) -> Plan:
    header = envelope.header
    if not header.recipients:
        raise Rejection(ReasonCode.NO_RECIPIENTS)
    profile = ctx.profiles[header.sender]
    facts: SubjectFacts | None = None
    case_state = None
    early_denies: dict[AgencyId, HubReason] = {}
    if isinstance(body, Referral):
        facts = SubjectFacts(
            date_of_birth=birth_date(body.personnummer), guardians_with_custody=frozenset()
        )
        # The referral's kind names the statute the sender's profile asserts for it.
        if header.assertion is None or header.assertion.basis != profile.referrals[body.kind]:
            raise Rejection(ReasonCode.ASSERTION_NOT_ALLOWED, "referral asserts another basis")
    else:
        # A closed case shares nothing, whatever the basis (consent or statute).
        case = state.live_case(header.case_ref)
        if isinstance(body, CaseInvitation) and subject_id != case.subject_id:
            raise Rejection(ReasonCode.SCHEMA_INVALID, "invitation names another subject")
        subject_id = case.subject_id
        if header.sender not in case.parties:
            raise Rejection(ReasonCode.SENDER_NOT_ALLOWED, "sender is not a party")
        case_state = case.policy_state()
        if isinstance(body, PlanRevision):
            state.check_plan_revision(header.case_ref, body.plan_version, body.commitments)
        if isinstance(body, MeetingAttendance):
            _check_attendance(body, case.parties, case.facts.guardians_with_custody)
        early_denies = {
            r: HubReason(ReasonCode.RECIPIENT_NOT_PARTY)
            for r in header.recipients
            if r not in case.parties
        }
    request = DecisionRequest(
        message_id=header.message_id,
        discloser=header.sender,
        recipients=header.recipients,
        category=header.type,
        case=case_state,
        subject=facts,
        assertions=(header.assertion,) if header.assertion is not None else (),
    )
    decision = decide(request, ctx.rules, now=now)
    entries, releases = release_plan(
        envelope, decision, early_denies, subject_id, ingress_seq, ctx, now, data_key
    )
    change = _plan_change(header, body, state, now) if releases else None
    return Plan(
        message_id=header.message_id,
        entries=tuple(entries),
        releases=tuple(releases),
        data_key=data_key if releases else None,
        state_change=change,
        bound=next((i for i, e in enumerate(entries) if e.outcome is EntryOutcome.RELEASE), 0),
    )


def release_plan(
    envelope: Envelope,
    decision: Decision,
    early_denies: dict[AgencyId, HubReason],
    subject_id: str | None,
    ingress_seq: int,
    ctx: HubContext,
    now: datetime,
    data_key: bytes,
) -> tuple[list[EntryDraft], list[ReleaseDraft]]:
    """One entry per recipient decided, and a release (the data key re-sealed to the
    recipient's current key) for each one permitted."""
    header = envelope.header
    entries: list[EntryDraft] = []
    releases: list[ReleaseDraft] = []
    for verdict in decision.per_recipient:
        release_key = None
        reasons: tuple[LogReason, ...] = verdict.reasons
        permitted = verdict.outcome is Verdict.PERMIT
        if verdict.recipient in early_denies:
            permitted, reasons = False, (early_denies[verdict.recipient], *reasons)
        if permitted:
            try:
                release_key = ctx.directory.sealing_key(verdict.recipient, at=now)
                assert release_key.suite is not None
                ctx.config.suite_policy.check(release_key.suite)
            except ProtocolError as e:
                permitted, reasons = False, (HubReason(e.reason),)
        entry = _entry_for(
            envelope,
            decision,
            verdict,
            subject_id,
            ingress_seq,
            ctx,
            permitted=permitted,
            reasons=reasons,
        )
        entries.append(entry)
        if permitted and release_key is not None:
            assert release_key.suite is not None
            resealed = seal_data_key(
                release_key.suite,
                release_key.public_key,
                data_key,
                data_key_info(header.message_id, verdict.recipient, release_key.key_id),
                policy=ctx.config.suite_policy,
            )
            releases.append(
                ReleaseDraft(
                    recipient=verdict.recipient,
                    recipient_key_id=release_key.key_id,
                    envelope=envelope,
                    sealed_key=resealed,
                    entry=entry,
                )
            )
    return entries, releases


def _plan_change(header: Header, body: Body, state: HubState, now: datetime) -> AnyChange | None:
    """A plan item released to a party is followed up by the hub (issue 13): the
    commitment, or a status of one it follows, becomes hub state, bound to the log; so
    does the time of a meeting whose attendance was released."""
    if header.case_ref is None:
        return None
    if isinstance(body, PlanCommitment):
        return state.plan_commitment(
            message_id=header.message_id,
            case_ref=header.case_ref,
            sender=header.sender,
            commitment_id=body.commitment_id,
            responsible_agency=body.responsible_agency,
            action=body.action,
            owner_function=body.owner_function,
            due_on=body.due_on,
            now=now,
        )
    if isinstance(body, PlanRevision):
        return state.plan_revised(
            message_id=header.message_id,
            case_ref=header.case_ref,
            plan_version=body.plan_version,
            commitments=body.commitments,
            now=now,
        )
    if isinstance(body, MeetingAttendance):
        return state.meeting_held(
            message_id=header.message_id,
            case_ref=header.case_ref,
            meeting_at=body.meeting_at,
            now=now,
        )
    if isinstance(body, CommitmentStatus):
        return state.plan_commitment_status(
            message_id=header.message_id,
            case_ref=header.case_ref,
            commitment_id=body.commitment_id,
            status=body.status,
            as_of=body.as_of,
            now=now,
        )
    return None


def _entry_for(
    envelope: Envelope,
    decision: Decision,
    verdict: RecipientDecision,
    subject_id: str | None,
    ingress_seq: int,
    ctx: HubContext,
    *,
    permitted: bool,
    reasons: tuple[LogReason, ...],
) -> EntryDraft:
    header = envelope.header
    return EntryDraft(
        decision_id=decision.decision_id,
        decided_at=decision.decided_at,
        ingress_seq=ingress_seq,
        message_id=header.message_id,
        message_type=header.type,
        sender=header.sender,
        recipient=verdict.recipient,
        subject_ref=_subject_ref(subject_id, header, ctx),
        case_ref=header.case_ref,
        legal_basis=verdict.legal_basis if permitted else None,
        statutory=verdict.statutory and permitted,
        consent_refs=verdict.consent_refs,
        rule_ids=verdict.rule_ids,
        rules_hash=decision.rules_hash,
        ciphertext_sha256=envelope.ciphertext_digest(),
        outcome=EntryOutcome.RELEASE if permitted else EntryOutcome.DENY,
        reasons=reasons,
        release_id=release_id_for(header.message_id, verdict.recipient) if permitted else None,
    )


def _check_attendance(
    body: MeetingAttendance, parties: frozenset[AgencyId], guardians: frozenset[str]
) -> None:
    """Who came must be of the case: its parties, its guardians with custody."""
    if any(a not in parties for a in body.agencies_present):
        raise Rejection(ReasonCode.SCHEMA_INVALID, "an agency present is not a party")
    if any(g not in guardians for g in body.guardians_present):
        raise Rejection(ReasonCode.SCHEMA_INVALID, "a guardian present has no custody here")


def _subject_ref(subject_id: str | None, header: Header, ctx: HubContext) -> str | None:
    """What the log says about whom: a pseudonym of the person within this case only.

    The person-stable ``subject_id`` stays in the hub's encrypted state; a log entry
    leaves the hub (exports, audits), so it must not link one person's cases. A
    message outside any case (a referral) gets a pseudonym of its own.
    """
    if subject_id is None:
        return None
    return subject_ref_for(subject_id, header.case_ref or header.message_id, ctx.pseudonym_key)


def _sender_profile(header: Header, profiles: Profiles) -> AgencyProfile:
    """The sender's profile must exist and list this type (profiles/<agency>.toml)."""
    profile = profiles.get(header.sender)
    if profile is None:
        raise Rejection(ReasonCode.SENDER_NOT_ALLOWED, "sender has no profile")
    if header.type not in profile.sends:
        raise Rejection(ReasonCode.SENDER_NOT_ALLOWED, "type not in the sender's profile")
    # The registry's rule is checked again here, so a profile can never widen it.
    if MESSAGE_TYPES[header.type].sent_by is SentBy.HUB:
        raise Rejection(ReasonCode.SENDER_NOT_ALLOWED, "only the hub sends this type")
    if MESSAGE_TYPES[header.type].sent_by is SentBy.LEAD and header.sender != profiles.lead:
        raise Rejection(ReasonCode.SENDER_NOT_ALLOWED, "only the lead agency sends this type")
    if header.assertion is not None and header.assertion.basis not in profile.asserts:
        raise Rejection(ReasonCode.ASSERTION_NOT_ALLOWED, "statute not in the sender's profile")
    return profile


def _check_functions(
    message_type: MessageType, body: Body, profile: AgencyProfile, profiles: Profiles
) -> None:
    """Functions and actions a body names must be the agency's own (its profile)."""
    if isinstance(body, Referral):
        if body.kind not in profile.referrals:
            raise Rejection(ReasonCode.SENDER_NOT_ALLOWED, "referral kind not in the profile")
        own = body.contact_function
    elif isinstance(body, ConsentEvent):
        own = body.recorded_by
    elif isinstance(body, CaseInvitation):
        own = body.coordinator
    elif isinstance(body, CaseSelected):
        own = body.decided_by
    elif isinstance(body, CaseClosed):
        own = body.closed_by
    elif isinstance(body, PlanRevision):
        own = body.revised_by
    elif isinstance(body, YouthQuestionnaire):
        own = body.recorded_by
    elif isinstance(body, ExistenceQuery):
        own = body.asked_by
    elif isinstance(body, PlanCommitment):
        responsible = profiles.get(body.responsible_agency)
        if responsible is None or body.owner_function not in responsible.functions:
            raise Rejection(ReasonCode.UNKNOWN_FUNCTION, "owner is not a function of the agency")
        if body.action not in responsible.actions:
            raise Rejection(ReasonCode.UNKNOWN_FUNCTION, "action is not one the agency commits to")
        return
    else:
        return
    if own not in profile.functions:
        raise Rejection(ReasonCode.UNKNOWN_FUNCTION, "function is not one of the sender's")


def _existence(
    envelope: Envelope,
    subject_id: str | None,
    ingress_seq: int,
    state: HubState,
    ctx: HubContext,
    now: datetime,
) -> Plan:
    """A notice of existence (policy.existence): which agencies are parties to an open
    case about the young person, as one logged code; refused when the rules say off."""
    header = envelope.header
    if header.recipients:
        raise Rejection(ReasonCode.HUB_RECORD_HAS_RECIPIENTS)
    if header.case_ref is not None:
        raise Rejection(ReasonCode.SCHEMA_INVALID, "an existence query names no case")
    open_cases = (
        c.parties for c in state.cases.values() if c.subject_id == subject_id and not c.closure
    )
    answer = answer_existence(header.sender, open_cases, ctx.rules)
    if answer.refused is not None:
        raise Rejection(ReasonCode.EXISTENCE_NOTICE_OFF)
    entry = EntryDraft(
        decision_id=_decision_id(ingress_seq, header.message_id, "existence", now.isoformat()),
        decided_at=now,
        ingress_seq=ingress_seq,
        message_id=header.message_id,
        message_type=header.type,
        sender=header.sender,
        recipient=HUB,
        subject_ref=_subject_ref(subject_id, header, ctx),
        case_ref=None,
        rules_hash=ctx.rules.sha256,
        ciphertext_sha256=envelope.ciphertext_digest(),
        outcome=EntryOutcome.RECORDED,
        reasons=(HubReason(ReasonCode.EXISTENCE_ANSWERED, answer.detail()),),
    )
    return Plan(message_id=header.message_id, entries=(entry,))
