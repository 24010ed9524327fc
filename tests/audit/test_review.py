"""Log review (loggkontroll): the seeded sample, each anomaly rule, the findings chain."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sigbus.audit.review import (
    Period,
    ReviewRules,
    Rule,
    anomalies,
    sample,
)
from sigbus.audit.signed_chain import (
    ACCESS_DOMAIN,
    FINDING_DOMAIN,
    ChainError,
    check_chain,
    seal,
)
from sigbus.protocol.signing import HybridPrivateKey

TZ = ZoneInfo("Europe/Stockholm")
MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 in Stockholm
WEEK = Period(date(2026, 11, 23), date(2026, 11, 29))
PARTIES = {"case-1": ("social", "school", "police")}


def _e(index: int, at: datetime = MONDAY, **fields: Any) -> dict[str, Any]:
    base = {
        "index": index,
        "decided_at": at.isoformat(),
        "sender": "social",
        "recipient": "school",
        "case_ref": "case-1",
        "outcome": "release",
        "statutory": False,
    }
    return {**base, **fields}


def _rules(entries: list[dict[str, Any]]) -> set[tuple[int, Rule]]:
    return {(a.index, a.rule) for a in anomalies(entries, WEEK, PARTIES, TZ)}


def test_the_sample_is_reproducible_from_its_seed_and_stays_in_the_period() -> None:
    entries = [_e(i, MONDAY + timedelta(hours=i)) for i in range(300)]
    entries.append(_e(300, outcome="recorded"))  # a hub record is never sampled
    first = sample(entries, WEEK, 10, "2026-w48")
    assert first == sample(list(reversed(entries)), WEEK, 10, "2026-w48")
    assert len(first) == 10
    assert first != sample(entries, WEEK, 10, "another seed")
    in_week = {e["index"] for e in entries if WEEK.holds(e) and e["outcome"] != "recorded"}
    assert set(first) <= in_week
    assert max(in_week) < 300 - 24  # the period ends before the last entries
    assert sample(entries, WEEK, 1000, "x") == sorted(in_week)


def test_a_statutory_release_is_flagged_a_consent_release_is_not() -> None:
    found = _rules([_e(0, statutory=True), _e(1)])
    assert (0, Rule.STATUTORY) in found
    assert not any(i == 1 for i, _ in found)


def test_a_release_to_an_agency_outside_the_cases_parties_is_flagged() -> None:
    found = _rules([_e(0, recipient="health"), _e(1, recipient="police")])
    assert (0, Rule.OUTSIDE_PLAN) in found
    assert (1, Rule.OUTSIDE_PLAN) not in found


def test_off_hours_and_weekends_are_flagged_in_local_time() -> None:
    late = datetime(2026, 11, 23, 18, 30, tzinfo=UTC)  # 19:30 in Stockholm
    early = datetime(2026, 11, 23, 6, 30, tzinfo=UTC)  # 07:30 in Stockholm: office hours
    saturday = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
    found = _rules([_e(0, late), _e(1, early), _e(2, saturday)])
    assert (0, Rule.OFF_HOURS) in found
    assert (1, Rule.OFF_HOURS) not in found
    assert (2, Rule.OFF_HOURS) in found


def test_a_burst_of_one_senders_decisions_is_flagged_a_steady_pace_is_not() -> None:
    rules = ReviewRules(burst_count=3, burst_window=timedelta(minutes=5))
    burst = [_e(i, MONDAY + timedelta(seconds=30 * i)) for i in range(4)]
    steady = [_e(10 + i, MONDAY + timedelta(hours=1, minutes=10 * i)) for i in range(6)]
    found = {(a.index, a.rule) for a in anomalies(burst + steady, WEEK, PARTIES, TZ, rules)}
    assert {i for i, r in found if r is Rule.BURST} == {0, 1, 2, 3}


def test_many_denies_from_one_agency_are_flagged() -> None:
    denies = [_e(i, outcome="deny", sender="school", recipient="police") for i in range(5)]
    few = [_e(10 + i, outcome="deny", sender="police") for i in range(2)]
    found = _rules(denies + few)
    assert {i for i, r in found if r is Rule.MANY_DENIES} == {0, 1, 2, 3, 4}


HUB_KEY = HybridPrivateKey.generate()
KEYS = {"hub-sign-1": HUB_KEY.public_key()}


def _chain(count: int, signer: HybridPrivateKey = HUB_KEY) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for i in range(count):
        previous = records[-1] if records else None
        records.append(
            seal(
                previous,
                {"entry_index": i},
                signer=signer,
                key_id="hub-sign-1",
                domain=FINDING_DOMAIN,
            )
        )
    return records


def test_the_signed_chain_names_the_first_altered_dropped_reordered_or_forged_record() -> None:
    records = _chain(4)
    head = check_chain(records, KEYS, domain=FINDING_DOMAIN)
    assert head == records[-1]["hash"]
    altered = [dict(r) for r in records]
    altered[1]["entry_index"] = 99
    # Rewritten consistently (hash and all later links) by someone without the hub's key.
    forged = records[:2] + _chain(4, HybridPrivateKey.generate())[2:]
    forged[2] = seal(
        records[1],
        {"entry_index": 2},
        signer=HybridPrivateKey.generate(),
        key_id="hub-sign-1",
        domain=FINDING_DOMAIN,
    )
    for broken, position in (
        (altered, 1),
        (records[:1] + records[2:], 1),
        ([records[0], records[2], records[1], records[3]], 1),
        (forged, 2),
    ):
        with pytest.raises(ChainError) as raised:
            check_chain(broken, KEYS, domain=FINDING_DOMAIN)
        assert raised.value.position == position
    with pytest.raises(ChainError) as raised:  # a finding never passes as an access record
        check_chain(records, KEYS, domain=ACCESS_DOMAIN)
    assert raised.value.position == 0
