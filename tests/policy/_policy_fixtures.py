"""Builders for policy tests. Opaque ids only: no names, no personnummer."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from sigbus.policy import (
    CaseState,
    ConsentRecordEvent,
    DecisionRequest,
    StatutoryAssertion,
    SubjectFacts,
)
from sigbus.protocol.codes import ConsentAction, ConsenterRole, ConsentPurpose
from sigbus.protocol.ids import HUB, AgencyId, MessageType
from sigbus.protocol.messages import ConsentScope

POLICE, SCHOOL, SOCIAL, HUB = "police", "school", "social", HUB
ALL = (POLICE, SCHOOL, SOCIAL)
PLAN = MessageType.PLAN_COMMITMENT
MEETING = MessageType.MEETING_NOTICE
STATUS = MessageType.COMMITMENT_STATUS
INVITE = MessageType.CASE_INVITATION
REFERRAL = MessageType.REFERRAL
CATS = (INVITE, PLAN, STATUS, MEETING)

#: The decision time most tests use: 2026-03-01 13:00 Stockholm (CET).
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
#: Date of birth of a 15-year-old at T0 and of a 19-year-old at T0.
DOB_15 = date(2010, 6, 1)
DOB_19 = date(2006, 6, 1)
EVIDENCE = "ab" * 32
YP = "young_person"


def scope(
    disclosers: Iterable[AgencyId] = ALL,
    recipients: Iterable[AgencyId] = ALL,
    categories: Iterable[MessageType] = CATS,
    valid_from: datetime = T0 - timedelta(days=30),
    valid_until: datetime = T0 + timedelta(days=200),
) -> ConsentScope:
    return ConsentScope(
        disclosers=tuple(disclosers),
        recipients=tuple(recipients),
        categories=tuple(categories),
        purpose=ConsentPurpose.SIG_CASE,
        valid_from=valid_from,
        valid_until=valid_until,
    )


def event(
    consent_id: str,
    revision: int,
    action: ConsentAction,
    who: str = YP,
    sc: ConsentScope | None = None,
    at: datetime = T0 - timedelta(days=20),
) -> ConsentRecordEvent:
    """``who`` is ``young_person`` or a guardian ref such as ``vh-1``."""
    guardian = who != YP
    return ConsentRecordEvent(
        consent_id=consent_id,
        revision=revision,
        action=action,
        consenter_role=ConsenterRole.GUARDIAN if guardian else ConsenterRole.YOUNG_PERSON,
        guardian_ref=who if guardian else None,
        scope=sc,
        acted_at=at - timedelta(minutes=5),
        recorded_at=at,
        recorded_by="social_sig_coordinator",
        evidence_sha256=EVIDENCE if sc is not None else None,
        source_message_id=f"msg-src-{consent_id}-r{revision}",
    )


def given(
    consent_id: str, who: str = YP, sc: ConsentScope | None = None, at: datetime | None = None
) -> ConsentRecordEvent:
    return event(
        consent_id, 1, ConsentAction.GIVEN, who, sc or scope(), at or T0 - timedelta(days=20)
    )


def amended(
    consent_id: str, revision: int, who: str, sc: ConsentScope, at: datetime | None = None
) -> ConsentRecordEvent:
    return event(
        consent_id, revision, ConsentAction.AMENDED, who, sc, at or T0 - timedelta(days=10)
    )


def withdrawn(
    consent_id: str, revision: int, who: str = YP, at: datetime | None = None
) -> ConsentRecordEvent:
    return event(
        consent_id, revision, ConsentAction.WITHDRAWN, who, None, at or T0 - timedelta(days=1)
    )


def expired(
    consent_id: str, revision: int, who: str = YP, at: datetime | None = None
) -> ConsentRecordEvent:
    return event(
        consent_id, revision, ConsentAction.EXPIRED, who, None, at or T0 - timedelta(days=1)
    )


def subject(dob: date = DOB_15, guardians: Iterable[str] = ("vh-1", "vh-2")) -> SubjectFacts:
    return SubjectFacts(date_of_birth=dob, guardians_with_custody=frozenset(guardians))


def case(
    events: Iterable[ConsentRecordEvent] = (),
    dob: date = DOB_15,
    guardians: Iterable[str] = ("vh-1", "vh-2"),
    parties: Iterable[AgencyId] = ALL,
) -> CaseState:
    return CaseState(
        case_ref="case-test01",
        subject=subject(dob, guardians),
        parties=frozenset(parties),
        consent_events=tuple(events),
    )


def full_consent(guardians: Iterable[str] = ("vh-1", "vh-2")) -> list[ConsentRecordEvent]:
    """The young person and every named guardian consent to everything."""
    evs = [given("consent-yp01")]
    evs += [given(f"consent-{g}x", g) for g in guardians]
    return evs


def request(
    discloser: AgencyId = SCHOOL,
    recipients: Iterable[AgencyId] = (SOCIAL,),
    category: MessageType = PLAN,
    case_state: CaseState | None = None,
    subj: SubjectFacts | None = None,
    assertions: Iterable[tuple[str, str]] = (),
) -> DecisionRequest:
    return DecisionRequest(
        message_id="msg-testmessage",
        discloser=discloser,
        recipients=tuple(recipients),
        category=category,
        case=case_state,
        subject=subj,
        assertions=tuple(StatutoryAssertion(basis=b, evidence_id=e) for b, e in assertions),
    )


def stockholm_midnight_utc(d: date) -> datetime:
    """00:00 Europe/Stockholm on ``d``, as a UTC datetime."""
    from zoneinfo import ZoneInfo

    return datetime(d.year, d.month, d.day, tzinfo=ZoneInfo("Europe/Stockholm")).astimezone(UTC)
