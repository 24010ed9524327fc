"""The case life-cycle status, derived purely from the case's facts (issue 13)."""

from __future__ import annotations

from datetime import timedelta

from sigbus.policy import default_rules
from sigbus.policy.engine import birthday_instant
from sigbus.policy.lifecycle import (
    CaseStatus,
    ConsenterStatus,
    ConsentState,
    case_status,
    consent_collection,
)
from tests.policy._policy_fixtures import (
    DOB_15,
    DOB_19,
    T0,
    YP,
    case,
    expired,
    full_consent,
    given,
    scope,
    withdrawn,
)

RULES = default_rules()


def status(consenters: list[ConsenterStatus], selected: bool = True) -> CaseStatus:
    return case_status(selected=selected, closed=False, consenters=consenters)


def test_a_minor_needs_the_young_person_and_every_guardian() -> None:
    got = consent_collection(
        case([given("consent-yp01"), given("consent-a1", "vh-1")]), RULES, now=T0
    )
    assert [(c.consenter, c.state) for c in got] == [
        (YP, ConsentState.GIVEN),
        ("guardian:vh-1", ConsentState.GIVEN),
        ("guardian:vh-2", ConsentState.MISSING),
    ]
    assert got[0].valid_until == T0 + timedelta(days=200)
    assert got[0].consent_id == "consent-yp01"
    assert status(got) is CaseStatus.CONSENT_COLLECTION


def test_everyone_consenting_is_active_and_a_withdrawal_pauses() -> None:
    events = full_consent()
    assert status(consent_collection(case(events), RULES, now=T0)) is CaseStatus.ACTIVE
    paused = consent_collection(
        case([*events, withdrawn("consent-vh-2x", 2, "vh-2")]), RULES, now=T0
    )
    assert {c.consenter: c.state for c in paused}["guardian:vh-2"] is ConsentState.WITHDRAWN
    assert status(paused) is CaseStatus.PAUSED


def test_expiry_by_period_or_event_pauses_and_a_later_period_is_not_yet_valid() -> None:
    later = scope(valid_from=T0 + timedelta(days=1), valid_until=T0 + timedelta(days=30))
    over = scope(valid_from=T0 - timedelta(days=40), valid_until=T0 - timedelta(days=1))
    events = [given("consent-yp01", sc=later), given("consent-a1", "vh-1", sc=over),
              given("consent-b1", "vh-2"), expired("consent-b1", 2, "vh-2")]  # fmt: skip
    got = {c.consenter: c.state for c in consent_collection(case(events), RULES, now=T0)}
    assert got == {
        YP: ConsentState.NOT_YET_VALID,
        "guardian:vh-1": ConsentState.EXPIRED,
        "guardian:vh-2": ConsentState.EXPIRED,
    }


def test_a_consent_longer_than_the_municipality_allows_never_counts() -> None:
    days = RULES.municipality.max_consent_days
    long = scope(valid_from=T0 - timedelta(days=1), valid_until=T0 + timedelta(days=days))
    got = consent_collection(case([given("consent-yp01", sc=long)], dob=DOB_19), RULES, now=T0)
    assert [(c.consenter, c.state) for c in got] == [(YP, ConsentState.CONFLICT)]


def test_the_best_record_of_a_consenter_is_shown() -> None:
    events = [given("consent-old1"), withdrawn("consent-old1", 2), given("consent-new1")]
    got = consent_collection(case(events, dob=DOB_19), RULES, now=T0)
    assert [(c.consent_id, c.state) for c in got] == [("consent-new1", ConsentState.GIVEN)]


def test_an_adult_needs_only_their_own_and_guardians_stop_counting_at_18() -> None:
    guardians_only = [given("consent-a1", "vh-1"), given("consent-b1", "vh-2")]
    adult = consent_collection(case(guardians_only, dob=DOB_19), RULES, now=T0)
    assert [(c.consenter, c.state) for c in adult] == [(YP, ConsentState.MISSING)]
    eighteen = birthday_instant(DOB_15, 18)
    before = consent_collection(case(guardians_only), RULES, now=eighteen - timedelta(seconds=1))
    after = consent_collection(case(guardians_only), RULES, now=eighteen)
    assert [c.consenter for c in before] == [YP, "guardian:vh-1", "guardian:vh-2"]
    assert [(c.consenter, c.state) for c in after] == [(YP, ConsentState.MISSING)]


def test_a_minor_without_known_custody_is_never_active() -> None:
    got = consent_collection(case([given("consent-yp01")], guardians=()), RULES, now=T0)
    assert ("custody_unknown", ConsentState.MISSING) in [(c.consenter, c.state) for c in got]
    assert status(got) is CaseStatus.CONSENT_COLLECTION


def test_closed_beats_everything_and_unselected_waits() -> None:
    active = consent_collection(case(full_consent()), RULES, now=T0)
    assert case_status(selected=True, closed=True, consenters=active) is CaseStatus.CLOSED
    assert status(active, selected=False) is CaseStatus.AWAITING_SELECTION
