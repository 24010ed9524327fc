"""Table-driven tests: one row per rule of issue 5 (named vectors, opaque ids only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from _policy_fixtures import (
    ALL,
    DOB_15,
    DOB_19,
    HUB,
    MEETING,
    PLAN,
    POLICE,
    REFERRAL,
    SCHOOL,
    SOCIAL,
    T0,
    YP,
    amended,
    case,
    expired,
    full_consent,
    given,
    request,
    scope,
    stockholm_midnight_utc,
    subject,
    withdrawn,
)

from sigbus.policy import (
    CaseState,
    Decision,
    DecisionRequest,
    DenyCode,
    DenyReason,
    RecipientDecision,
    Rules,
    Verdict,
    decide,
    default_rules,
    load_rules,
)
from sigbus.policy._index import build_index
from sigbus.policy.engine import age_on
from sigbus.protocol.ids import MessageType

RULES = default_rules()


def _rules_with(**municipality: object) -> Rules:
    data = (
        __import__("importlib.resources", fromlist=["files"])
        .files("policy")
        .joinpath("rules.toml")
        .read_text(encoding="utf-8")
    )
    for key, value in municipality.items():
        rendered = str(value).lower() if isinstance(value, bool) else str(value)
        lines = [
            f"{key} = {rendered}" if line.startswith(f"{key} =") else line
            for line in data.splitlines()
        ]
        data = "\n".join(lines) + "\n"
    return load_rules(data.encode("utf-8"))


RULES_UNDER15_OPTIONAL = _rules_with(young_person_consent_required_under_15=False)


def render(rd: RecipientDecision) -> str:
    if rd.outcome is Verdict.PERMIT:
        return f"permit:{rd.legal_basis}"
    return "deny:" + "|".join(r.as_code() for r in rd.reasons)


@dataclass(frozen=True)
class Vector:
    name: str
    req: DecisionRequest
    expect: tuple[str, ...]
    now: datetime = T0
    rules: Rules = RULES


# Birthdays at the Stockholm day boundary (CET in winter, CEST in summer).
DOB_18_ON_T0 = date(2008, 3, 1)  # 18th birthday 2026-03-01 00:00 Stockholm = 02-28T23:00Z
BDAY_WINTER = stockholm_midnight_utc(date(2026, 3, 1))
DOB_18_SUMMER = date(2008, 7, 10)  # 18th birthday 2026-07-10 00:00 Stockholm = 07-09T22:00Z
BDAY_SUMMER = stockholm_midnight_utc(date(2026, 7, 10))
US = timedelta(microseconds=1)
LONG_SCOPE = scope(valid_from=T0 - timedelta(days=10), valid_until=T0 + timedelta(days=356))
EXACT_365 = scope(valid_from=T0 - timedelta(days=10), valid_until=T0 + timedelta(days=355))
SUMMER_SCOPE = scope(valid_until=T0 + timedelta(days=300))
yp_only = [given("consent-yp01", sc=SUMMER_SCOPE)]
W_AT = T0 - timedelta(hours=1)  # a withdrawal recorded at this instant

VECTORS: list[Vector] = [
    # --- who must consent ------------------------------------------------------------
    Vector(
        "adult_own_consent",
        request(case_state=case([given("consent-yp01")], DOB_19)),
        ("permit:osl_12_2",),
    ),
    Vector(
        "adult_guardians_only",
        request(
            case_state=case([given("consent-g1", "vh-1"), given("consent-g2", "vh-2")], DOB_19)
        ),
        ("deny:consent_missing:young_person",),
    ),
    Vector("minor_all_three", request(case_state=case(full_consent())), ("permit:osl_12_2",)),
    Vector(
        "minor_missing_guardian",
        request(case_state=case(full_consent(["vh-1"]))),
        ("deny:consent_missing:guardian:vh-2",),
    ),
    Vector(
        "minor_missing_young_person",
        request(case_state=case([given("consent-g1", "vh-1"), given("consent-g2", "vh-2")])),
        ("deny:consent_missing:young_person",),
    ),
    Vector(
        # Every minor has a guardian: none on record is unknown custody, never a permit.
        "minor_no_guardians_on_record_is_denied",
        request(case_state=case([given("consent-yp01")], guardians=())),
        ("deny:subject_unknown:custody",),
    ),
    Vector(
        # A date of birth after the decision is implausible, not "under 18".
        "referral_born_after_the_decision_is_denied",
        request(
            POLICE,
            category=REFERRAL,
            subj=subject(T0.date() + timedelta(days=30)),
            assertions=[("lul_6", "susp-abcd")],
        ),
        ("deny:subject_unknown:date_of_birth",),
    ),
    Vector(
        "under15_guardians_alone_setting_on",
        request(case_state=case([given("consent-g1", "vh-1")], date(2012, 6, 1), ["vh-1"])),
        ("deny:consent_missing:young_person",),
    ),
    Vector(
        "under15_guardians_alone_setting_off",
        request(case_state=case([given("consent-g1", "vh-1")], date(2012, 6, 1), ["vh-1"])),
        ("permit:osl_12_2",),
        rules=RULES_UNDER15_OPTIONAL,
    ),
    Vector(
        "fifteenth_birthday_needs_own_consent",
        request(case_state=case([given("consent-g1", "vh-1")], date(2011, 3, 1), ["vh-1"])),
        ("deny:consent_missing:young_person",),
        now=BDAY_WINTER,
        rules=RULES_UNDER15_OPTIONAL,
    ),
    Vector(
        "day_before_fifteenth_guardians_suffice",
        request(case_state=case([given("consent-g1", "vh-1")], date(2011, 3, 1), ["vh-1"])),
        ("permit:osl_12_2",),
        now=BDAY_WINTER - US,
        rules=RULES_UNDER15_OPTIONAL,
    ),
    # --- the 18th birthday at the exact Europe/Stockholm day boundary ---------------
    Vector(
        "eighteen_minus_1us_needs_guardian",
        request(case_state=case([given("consent-yp01")], DOB_18_ON_T0, ["vh-1"])),
        ("deny:consent_missing:guardian:vh-1",),
        now=BDAY_WINTER - US,
    ),
    Vector(
        "eighteen_at_midnight_stockholm",
        request(case_state=case([given("consent-yp01")], DOB_18_ON_T0, ["vh-1"])),
        ("permit:osl_12_2",),
        now=BDAY_WINTER,
    ),
    Vector(
        "eighteen_utc_date_not_used",
        request(case_state=case([given("consent-yp01")], DOB_18_ON_T0, ["vh-1"])),
        ("permit:osl_12_2",),
        now=datetime(2026, 2, 28, 23, 30, tzinfo=UTC),
    ),
    Vector(
        "eighteen_summer_minus_1us",
        request(case_state=case(yp_only, DOB_18_SUMMER, ["vh-1"])),
        ("deny:consent_missing:guardian:vh-1",),
        now=BDAY_SUMMER - US,
    ),
    Vector(
        "eighteen_summer_at_midnight",
        request(case_state=case(yp_only, DOB_18_SUMMER, ["vh-1"])),
        ("permit:osl_12_2",),
        now=BDAY_SUMMER,
    ),
    Vector(
        "guardian_consent_stops_counting_at_18",
        request(
            case_state=case(
                [given("consent-yp01"), withdrawn("consent-yp01", 2), given("consent-g1", "vh-1")],
                DOB_18_ON_T0,
                ["vh-1"],
            )
        ),
        ("deny:consent_withdrawn:young_person",),
        now=BDAY_WINTER,
    ),
    # --- withdrawal: effective from recorded_at -------------------------------------
    Vector(
        "withdrawal_same_timestamp_denies",
        request(case_state=case([*full_consent(), withdrawn("consent-yp01", 2, at=W_AT)])),
        ("deny:consent_withdrawn:young_person",),
        now=W_AT,
    ),
    Vector(
        "withdrawal_1us_later_still_permits",
        request(case_state=case([*full_consent(), withdrawn("consent-yp01", 2, at=W_AT)])),
        ("permit:osl_12_2",),
        now=W_AT - US,
    ),
    Vector(
        "guardian_withdrawal_denies_minor",
        request(case_state=case([*full_consent(), withdrawn("consent-vh-2x", 2, "vh-2")])),
        ("deny:consent_withdrawn:guardian:vh-2",),
    ),
    Vector(
        "guardian_withdrawal_irrelevant_for_adult",
        request(case_state=case([*full_consent(), withdrawn("consent-vh-2x", 2, "vh-2")], DOB_19)),
        ("permit:osl_12_2",),
    ),
    Vector(
        "new_record_after_withdrawal_counts",
        request(
            case_state=case(
                [*full_consent(), withdrawn("consent-yp01", 2), given("consent-yp02", at=T0 - US)]
            )
        ),
        ("permit:osl_12_2",),
    ),
    Vector(
        "given_recorded_after_now_not_yet_in_effect",
        request(case_state=case([given("consent-yp01", at=T0 + US)], DOB_19)),
        ("deny:consent_missing:young_person",),
    ),
    # --- guardians added to / removed from the case --------------------------------
    Vector(
        "guardian_added_needs_consent",
        request(case_state=case(full_consent(["vh-1"]), guardians=["vh-1", "vh-3"])),
        ("deny:consent_missing:guardian:vh-3",),
    ),
    Vector(
        "guardian_removed_no_longer_required",
        request(
            case_state=case(
                [
                    *full_consent(["vh-1"]),
                    given("consent-g2", "vh-2"),
                    withdrawn("consent-g2", 2, "vh-2"),
                ],
                guardians=["vh-1"],
            )
        ),
        ("permit:osl_12_2",),
    ),
    # --- scope -----------------------------------------------------------------------
    Vector(
        "scope_discloser",
        request(
            POLICE,
            case_state=case([given("consent-yp01", sc=scope(disclosers=[SCHOOL, SOCIAL]))], DOB_19),
        ),
        ("deny:scope_discloser:young_person",),
    ),
    Vector(
        "scope_recipient",
        request(
            recipients=[POLICE, SOCIAL],
            case_state=case([given("consent-yp01", sc=scope(recipients=[SOCIAL]))], DOB_19),
        ),
        ("deny:scope_recipient:young_person", "permit:osl_12_2"),
    ),
    Vector(
        "scope_category",
        request(
            category=MEETING,
            case_state=case([given("consent-yp01", sc=scope(categories=[PLAN]))], DOB_19),
        ),
        ("deny:scope_category:young_person",),
    ),
    Vector(
        "before_valid_from",
        request(case_state=case([given("consent-yp01", sc=scope(valid_from=T0 + US))], DOB_19)),
        ("deny:outside_period:young_person",),
    ),
    Vector(
        "at_valid_until",
        request(case_state=case([given("consent-yp01", sc=scope(valid_until=T0))], DOB_19)),
        ("deny:consent_expired:young_person",),
    ),
    Vector(
        "expired_event",
        request(case_state=case([given("consent-yp01"), expired("consent-yp01", 2)], DOB_19)),
        ("deny:consent_expired:young_person",),
    ),
    Vector(
        "max_length_exceeded",
        request(case_state=case([given("consent-yp01", sc=LONG_SCOPE)], DOB_19)),
        ("deny:consent_too_long:young_person",),
    ),
    Vector(
        "max_length_exact",
        request(case_state=case([given("consent-yp01", sc=EXACT_365)], DOB_19)),
        ("permit:osl_12_2",),
    ),
    Vector(
        "max_length_fixed_by_shortening",
        request(
            case_state=case(
                [given("consent-yp01", sc=LONG_SCOPE), amended("consent-yp01", 2, YP, EXACT_365)],
                DOB_19,
            )
        ),
        ("permit:osl_12_2",),
    ),
    # --- amendments: narrow only --------------------------------------------------
    Vector(
        "narrowing_amendment_applies",
        request(
            recipients=[POLICE, SOCIAL],
            case_state=case(
                [
                    given("consent-yp01"),
                    amended("consent-yp01", 2, YP, scope(recipients=[SOCIAL, SCHOOL])),
                ],
                DOB_19,
            ),
        ),
        ("deny:scope_recipient:young_person", "permit:osl_12_2"),
    ),
    Vector(
        "widening_amendment_ignored",
        request(
            recipients=[POLICE, SOCIAL],
            case_state=case(
                [
                    given("consent-yp01", sc=scope(recipients=[SOCIAL])),
                    amended("consent-yp01", 2, YP, scope()),
                ],
                DOB_19,
            ),
        ),
        ("deny:scope_recipient:young_person", "permit:osl_12_2"),
    ),
    Vector(
        "mixed_amendment_keeps_only_the_meet",
        request(
            recipients=[POLICE, SCHOOL],
            case_state=case(
                [
                    given("consent-yp01", sc=scope(recipients=[SOCIAL, SCHOOL])),
                    amended("consent-yp01", 2, YP, scope(recipients=[SOCIAL, POLICE])),
                ],
                DOB_19,
            ),
        ),
        ("deny:scope_recipient:young_person", "deny:scope_recipient:young_person"),
    ),
    Vector(
        "extending_period_ignored",
        request(
            case_state=case(
                [
                    given("consent-yp01", sc=scope(valid_until=T0)),
                    amended("consent-yp01", 2, YP, scope(valid_until=T0 + timedelta(days=10))),
                ],
                DOB_19,
            )
        ),
        ("deny:consent_expired:young_person",),
    ),
    Vector(
        "amendment_by_other_consenter_is_conflict",
        request(
            case_state=case(
                [given("consent-yp01"), amended("consent-yp01", 2, "vh-1", scope())], DOB_19
            )
        ),
        ("deny:consent_conflict:young_person",),
    ),
    Vector(
        "revision_gap_is_conflict",
        request(
            case_state=case(
                [given("consent-yp01"), amended("consent-yp01", 3, YP, scope())], DOB_19
            )
        ),
        ("deny:consent_conflict:young_person",),
    ),
    # --- parties and forbids ----------------------------------------------------------
    Vector(
        "recipient_not_a_party",
        request(recipients=[POLICE], case_state=case(full_consent(), parties=[SOCIAL, SCHOOL])),
        ("deny:not_a_party:recipient",),
    ),
    Vector(
        "discloser_not_a_party",
        request(POLICE, case_state=case(full_consent(), parties=[SOCIAL, SCHOOL])),
        ("deny:not_a_party:discloser",),
    ),
    Vector(
        "hub_recipient_is_unknown_party",
        request(recipients=[HUB, SOCIAL], case_state=case(full_consent())),
        ("deny:unknown_party:recipient", "permit:osl_12_2"),
    ),
    Vector(
        "hub_record_category_forbidden",
        request(category=MessageType.CONSENT_EVENT, case_state=case(full_consent())),
        ("deny:no_basis:hub_record",),
    ),
    Vector("no_case_no_consent", request(subj=subject()), ("deny:no_basis:no_case",)),
    # --- referrals: statute only ------------------------------------------------------
    Vector(
        "lul6_police_minor",
        request(POLICE, category=REFERRAL, subj=subject(), assertions=[("lul_6", "susp-abcd")]),
        ("permit:lul_6",),
    ),
    Vector(
        "lul6_school_sender_not_allowed",
        request(SCHOOL, category=REFERRAL, subj=subject(), assertions=[("lul_6", "susp-abcd")]),
        ("deny:sender_not_allowed:lul_6",),
    ),
    Vector(
        "reporting_duty_school_minor",
        request(
            SCHOOL, category=REFERRAL, subj=subject(), assertions=[("reporting_duty", "rep-abcd")]
        ),
        ("permit:reporting_duty",),
    ),
    Vector(
        "reporting_duty_adult",
        request(
            SCHOOL,
            category=REFERRAL,
            subj=subject(DOB_19),
            assertions=[("reporting_duty", "rep-abcd")],
        ),
        ("deny:statute_precondition_not_met:reporting_duty:age",),
    ),
    Vector(
        "referral_to_police_not_allowed",
        request(
            SCHOOL, [POLICE], REFERRAL, subj=subject(), assertions=[("reporting_duty", "rep-abcd")]
        ),
        ("deny:statute_recipient_not_allowed:reporting_duty",),
    ),
    Vector(
        "referral_without_assertion",
        request(POLICE, category=REFERRAL, subj=subject()),
        ("deny:no_basis:referral_needs_statute",),
    ),
    Vector(
        "referral_never_by_consent",
        request(SCHOOL, category=REFERRAL, case_state=case(full_consent())),
        ("deny:no_basis:referral_needs_statute",),
    ),
    Vector(
        "referral_subject_unknown",
        request(POLICE, category=REFERRAL, assertions=[("lul_6", "susp-abcd")]),
        ("deny:subject_unknown:lul_6",),
    ),
    Vector(
        "unknown_statute_not_echoed",
        request(POLICE, category=REFERRAL, subj=subject(), assertions=[("made_up_law", "x-abcd")]),
        ("deny:no_basis:unknown_statute",),
    ),
    Vector(
        "lul6_on_17th_year_last_day",
        request(
            POLICE,
            category=REFERRAL,
            subj=subject(DOB_18_ON_T0),
            assertions=[("lul_6", "susp-abcd")],
        ),
        ("permit:lul_6",),
        now=BDAY_WINTER - US,
    ),
    Vector(
        "lul6_on_18th_birthday",
        request(
            POLICE,
            category=REFERRAL,
            subj=subject(DOB_18_ON_T0),
            assertions=[("lul_6", "susp-abcd")],
        ),
        ("deny:statute_precondition_not_met:lul_6:age",),
        now=BDAY_WINTER,
    ),
    # --- statutory vs consent ---------------------------------------------------------
    Vector(
        "osl_10_18a_survives_withdrawal",
        request(
            SOCIAL,
            [POLICE],
            case_state=case([given("consent-yp01"), withdrawn("consent-yp01", 2)], DOB_19),
            assertions=[("osl_10_18a", "ra-risk01")],
        ),
        ("permit:osl_10_18a",),
    ),
    Vector(
        "withdrawal_without_statute_denies",
        request(
            SOCIAL,
            [POLICE],
            case_state=case([given("consent-yp01"), withdrawn("consent-yp01", 2)], DOB_19),
        ),
        ("deny:consent_withdrawn:young_person",),
    ),
    Vector(
        "osl_10_18a_reaches_police_only",
        request(
            SOCIAL,
            [POLICE, SCHOOL],
            case_state=case([given("consent-yp01"), withdrawn("consent-yp01", 2)], DOB_19),
            assertions=[("osl_10_18a", "ra-risk01")],
        ),
        (
            "permit:osl_10_18a",
            "deny:statute_recipient_not_allowed:osl_10_18a|consent_withdrawn:young_person",
        ),
    ),
    Vector(
        "osl_10_18a_needs_risk_assessment_id",
        request(
            SOCIAL, [POLICE], case_state=case([], DOB_19), assertions=[("osl_10_18a", "note-abcd")]
        ),
        (
            "deny:statute_precondition_not_met:osl_10_18a:risk_assessment"
            "|consent_missing:young_person",
        ),
    ),
    Vector(
        "osl_10_18a_age_21",
        request(SOCIAL, [POLICE], case_state=case([], date(2005, 3, 1))),
        ("deny:consent_missing:young_person",),
    ),
    Vector(
        "osl_10_18a_age_21_asserted",
        request(
            SOCIAL,
            [POLICE],
            case_state=case([], date(2005, 3, 1)),
            assertions=[("osl_10_18a", "ra-risk01")],
        ),
        ("deny:statute_precondition_not_met:osl_10_18a:age|consent_missing:young_person",),
    ),
    Vector(
        "osl_10_18a_wrong_sender",
        request(
            SCHOOL, [POLICE], case_state=case([], DOB_19), assertions=[("osl_10_18a", "ra-risk01")]
        ),
        ("deny:sender_not_allowed:osl_10_18a|consent_missing:young_person",),
    ),
    Vector(
        "consent_preferred_when_both",
        request(
            SOCIAL,
            [POLICE],
            case_state=case([given("consent-yp01")], DOB_19),
            assertions=[("osl_10_18a", "ra-risk01")],
        ),
        ("permit:osl_12_2",),
    ),
    Vector(
        "hub_record_forbid_beats_statute",
        request(
            SOCIAL,
            [POLICE],
            MessageType.CASE_OPENED,
            case_state=case([], DOB_19),
            assertions=[("osl_10_18a", "ra-risk01")],
        ),
        ("deny:no_basis:hub_record",),
    ),
]


@pytest.mark.parametrize("v", VECTORS, ids=[v.name for v in VECTORS])
def test_vector(v: Vector) -> None:
    decision = decide(v.req, v.rules, now=v.now)
    assert tuple(render(rd) for rd in decision.per_recipient) == v.expect
    assert [rd.recipient for rd in decision.per_recipient] == list(v.req.recipients)
    for rd in decision.per_recipient:
        if rd.outcome is Verdict.PERMIT:
            assert rd.legal_basis in rd.rule_ids
            assert rd.statutory == (rd.legal_basis != RULES.consent.id)
            assert rd.statutory or rd.consent_refs
            assert not rd.reasons
        else:
            assert rd.reasons
            assert rd.legal_basis is None
            assert not rd.consent_refs


def test_vector_names_unique() -> None:
    assert len({v.name for v in VECTORS}) == len(VECTORS)


# ------------------------------------------------------------------ details of output


def test_permit_names_every_consent_and_revision() -> None:
    evs = [
        *full_consent(),
        amended("consent-vh-2x", 2, "vh-2", scope(recipients=[SOCIAL, SCHOOL])),
    ]
    d = decide(request(case_state=case(evs)), RULES, now=T0)
    (rd,) = d.per_recipient
    assert [(r.consent_id, r.revision) for r in rd.consent_refs] == [
        ("consent-yp01", 1),
        ("consent-vh-1x", 1),
        ("consent-vh-2x", 2),
    ]
    assert rd.rule_ids == ("osl_12_2",)
    assert d.rules_hash == RULES.sha256
    assert d.rules_version == RULES.rules_version
    assert d.decided_at == T0
    assert d.message_id == "msg-testmessage"


def test_widening_is_reported_in_notes() -> None:
    evs = [
        given("consent-yp01", sc=scope(recipients=[SOCIAL])),
        amended("consent-yp01", 2, YP, scope()),
    ]
    d = decide(request(case_state=case(evs, DOB_19)), RULES, now=T0)
    assert d.per_recipient[0].notes == ("amendment_widening_ignored:consent-yp01:2",)


def test_statute_also_applicable_is_noted() -> None:
    req = request(
        SOCIAL,
        [POLICE],
        case_state=case([given("consent-yp01")], DOB_19),
        assertions=[("osl_10_18a", "ra-risk01")],
    )
    rd = decide(req, RULES, now=T0).per_recipient[0]
    assert rd.notes == ("statute_also_applicable:osl_10_18a",)
    assert not rd.statutory


def test_statutory_permit_is_flagged() -> None:
    req = request(POLICE, category=REFERRAL, subj=subject(), assertions=[("lul_6", "susp-abcd")])
    rd = decide(req, RULES, now=T0).per_recipient[0]
    assert rd.statutory
    assert rd.legal_basis == "lul_6"
    assert rd.rule_ids == ("lul_6",)
    assert rd.consent_refs == ()


def test_several_failing_records_all_reported() -> None:
    evs = [
        given("consent-yp01", sc=scope(recipients=[SCHOOL])),
        given("consent-yp02"),
        withdrawn("consent-yp02", 2),
    ]
    rd = decide(request(case_state=case(evs, DOB_19)), RULES, now=T0).per_recipient[0]
    assert [(r.code, r.consent_id) for r in rd.reasons] == [
        (DenyCode.SCOPE_RECIPIENT, "consent-yp01"),
        (DenyCode.CONSENT_WITHDRAWN, "consent-yp02"),
    ]


def test_deny_reason_codes() -> None:
    assert DenyReason(code=DenyCode.CONSENT_MISSING, consenter="guardian:vh-2").as_code() == (
        "consent_missing:guardian:vh-2"
    )
    assert DenyReason(code=DenyCode.SENDER_NOT_ALLOWED, detail="lul_6").as_code() == (
        "sender_not_allowed:lul_6"
    )
    assert DenyReason(code=DenyCode.NO_BASIS).as_code() == "no_basis"


def test_required_deny_codes_exist() -> None:
    wanted = {
        "no_basis",
        "consent_missing",
        "consent_withdrawn",
        "consent_expired",
        "outside_period",
        "scope_discloser",
        "scope_recipient",
        "scope_category",
        "scope_purpose",
        "unknown_party",
        "not_a_party",
        "statute_precondition_not_met",
        "statute_recipient_not_allowed",
        "sender_not_allowed",
        "subject_unknown",
        "evaluation_error",
    }
    assert wanted <= {c.value for c in DenyCode}


# ----------------------------------------------------------------- errors are denies


def test_naive_now_is_evaluation_error() -> None:
    d = decide(request(case_state=case(full_consent())), RULES, now=datetime(2026, 3, 1))
    assert [render(rd) for rd in d.per_recipient] == ["deny:evaluation_error:ValueError"]


def test_broken_state_is_evaluation_error_not_exception() -> None:
    good = request(recipients=[SOCIAL, POLICE], case_state=case(full_consent()))
    broken = good.model_copy(update={"case": object()})  # bypasses validation
    d = decide(broken, RULES, now=T0)
    assert [rd.outcome for rd in d.per_recipient] == [Verdict.DENY, Verdict.DENY]
    assert all(rd.reasons[0].code is DenyCode.EVALUATION_ERROR for rd in d.per_recipient)
    assert d.decision_id.startswith("dec-")


# ------------------------------------------------------------------- determinism, ids


def test_deterministic_and_id_depends_on_inputs() -> None:
    req = request(recipients=[SOCIAL, POLICE], case_state=case(full_consent()))
    a = decide(req, RULES, now=T0)
    b = decide(DecisionRequest.model_validate_json(req.model_dump_json()), RULES, now=T0)
    assert a == b
    assert a.decision_id.startswith("dec-")
    assert decide(req, RULES, now=T0 + US).decision_id != a.decision_id
    other_rules = _rules_with(max_consent_days=300)
    assert decide(req, other_rules, now=T0).decision_id != a.decision_id
    # The same instant in another offset is the same decision.
    assert (
        decide(
            req, RULES, now=T0.astimezone(stockholm_midnight_utc(date(2026, 1, 1)).tzinfo)
        ).decision_id
        == a.decision_id
    )


def test_decision_round_trips_as_json() -> None:
    d = decide(request(recipients=[SOCIAL, HUB], case_state=case(full_consent())), RULES, now=T0)
    assert Decision.model_validate_json(d.model_dump_json()) == d


def test_cache_never_honours_an_appended_withdrawal() -> None:
    st = case(full_consent(), DOB_19)
    assert decide(request(case_state=st), RULES, now=T0).all_permitted
    later = st.model_copy(
        update={"consent_events": (*st.consent_events, withdrawn("consent-yp01", 2, at=T0))}
    )
    assert not decide(request(case_state=later), RULES, now=T0).all_permitted
    # ...and a query about the past (before the withdrawal was recorded) is still answered
    # as of then, without disturbing the cached current view.
    assert decide(request(case_state=later), RULES, now=T0 - US).all_permitted
    assert not decide(request(case_state=later), RULES, now=T0).all_permitted


@pytest.mark.parametrize(
    ("dob", "today", "age"),
    [
        (date(2008, 3, 1), date(2026, 2, 28), 17),
        (date(2008, 3, 1), date(2026, 3, 1), 18),
        (date(2008, 2, 29), date(2026, 2, 28), 17),  # leap-day birth: new age on 1 March
        (date(2008, 2, 29), date(2026, 3, 1), 18),
        (date(2008, 2, 29), date(2028, 2, 29), 20),
    ],
)
def test_age_on(dob: date, today: date, age: int) -> None:
    assert age_on(dob, today) == age


def test_all_parties_constant_matches_protocol() -> None:
    assert set(ALL) == {POLICE, SCHOOL, SOCIAL}
    assert T0.date() > DOB_15


def test_copied_state_gets_fresh_digest_and_equality_ignores_memo() -> None:
    st = case(full_consent(), DOB_19)
    d1 = st.digest()
    build_index(st)
    fresh = CaseState.model_validate_json(st.model_dump_json())
    assert fresh == st
    assert fresh.digest() == d1
    moved = st.model_copy(update={"parties": frozenset({SOCIAL})})
    assert moved.digest() != d1


def test_copied_rules_get_fresh_lookups() -> None:
    assert "lul_6" in RULES.statutes_by_id
    fewer = RULES.model_copy(update={"statute": RULES.statute[:1]})
    assert "lul_6" not in fewer.statutes_by_id


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic: a list where a tuple is declared
def test_unvalidated_mutable_events_are_never_memoised() -> None:
    """A CaseState built with model_construct and a list that grows in place."""
    events = list(full_consent())
    st = CaseState.model_construct(
        case_ref="case-test01",
        subject=subject(DOB_19),
        parties=frozenset(ALL),
        consent_events=events,
    )
    assert decide(request(case_state=st), RULES, now=T0).all_permitted
    events.append(withdrawn("consent-yp01", 2, at=T0))
    d1 = decide(request(case_state=st), RULES, now=T0)
    assert not d1.all_permitted
    events.append(given("consent-yp02", at=T0))
    d2 = decide(request(case_state=st), RULES, now=T0)
    assert d2.all_permitted
    assert d2.decision_id != d1.decision_id  # the digest is not memoised either


def test_memo_is_per_rules_object() -> None:
    st = case([given("consent-yp01", sc=LONG_SCOPE)], DOB_19)
    longer = _rules_with(max_consent_days=400)
    assert not decide(request(case_state=st), RULES, now=T0).all_permitted
    assert decide(request(case_state=st), longer, now=T0).all_permitted
    assert not decide(request(case_state=st), RULES, now=T0).all_permitted
