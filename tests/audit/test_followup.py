"""Steering-group statistics: periods, counts, and no count below k ever shown (issue 13)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from sigbus.audit.followup import (
    REFERRAL_TO_PLAN,
    AnswerFacts,
    CaseFacts,
    CommitmentFacts,
    ConsentFacts,
    Measure,
    PeriodError,
    count_measures,
    followup,
    parse_period,
)
from sigbus.protocol.codes import (
    ClosureReason,
    ConsentAction,
    QuestionnaireAnswer,
    QuestionnaireQuestion,
)

Q3 = parse_period("2026-Q3")
IN_Q3 = datetime(2026, 8, 1, 12, tzinfo=UTC)
BEFORE = datetime(2026, 5, 1, 12, tzinfo=UTC)


def test_periods_are_stockholm_quarters_months_and_years() -> None:
    assert (Q3.first_day.isoformat(), Q3.end_day.isoformat()) == ("2026-07-01", "2026-10-01")
    assert parse_period("2026-12").end_day.isoformat() == "2027-01-01"
    assert parse_period("2026").end_day.isoformat() == "2027-01-01"
    # 00:30 Stockholm on 1 July is still 30 June in UTC: it counts in Q3.
    assert Q3.holds(datetime(2026, 6, 30, 22, 30, tzinfo=UTC))
    assert not Q3.holds(datetime(2026, 9, 30, 22, 30, tzinfo=UTC))
    for bad in ("2026-Q5", "Q3-2026", "2026-13", "15/12/2026", ""):
        with pytest.raises(PeriodError):
            parse_period(bad)


def counts(cases: list[CaseFacts], k: int) -> dict[str, int | None]:
    return {r.measure: r.count for r in followup(cases, Q3, k=k).rows}


def test_what_is_counted() -> None:
    given = ConsentFacts(((ConsentAction.GIVEN, IN_Q3),), valid_until=IN_Q3 + timedelta(days=200))
    withdrawn = ConsentFacts(
        ((ConsentAction.GIVEN, BEFORE), (ConsentAction.WITHDRAWN, IN_Q3)),
        valid_until=IN_Q3 + timedelta(days=1),  # ends in Q3, but was withdrawn first
    )
    lapsed = ConsentFacts(((ConsentAction.GIVEN, BEFORE),), valid_until=IN_Q3)
    cases = [
        CaseFacts(opened_at=IN_Q3, consents=(given,)),
        CaseFacts(opened_at=BEFORE, consents=(withdrawn, lapsed)),
        CaseFacts(opened_at=BEFORE, closed_at=IN_Q3, closure_reason=ClosureReason.MOVED_AWAY),
        CaseFacts(opened_at=BEFORE, closed_at=BEFORE, closure_reason=ClosureReason.AGE_LIMIT),
    ]
    got = count_measures(cases, Q3)
    assert got[Measure.CASES_STARTED] == 1
    assert got[Measure.CASES_ACTIVE] == 3  # the one closed before Q3 is not
    assert got[Measure.CASES_CLOSED] == 1
    assert got["cases_closed:moved_away"] == 1
    assert got["cases_closed:age_limit"] == 0
    assert (got[Measure.CONSENTS_GIVEN], got[Measure.CONSENTS_WITHDRAWN]) == (1, 1)
    assert got[Measure.CONSENTS_EXPIRED] == 1


def test_a_single_suppressed_reason_cannot_be_recomputed_from_the_total() -> None:
    cases = (
        [
            CaseFacts(
                opened_at=BEFORE, closed_at=IN_Q3, closure_reason=ClosureReason.PLAN_COMPLETED
            )
            for _ in range(6)
        ]
        + [
            CaseFacts(opened_at=BEFORE, closed_at=IN_Q3, closure_reason=ClosureReason.MOVED_AWAY)
            for _ in range(5)
        ]
        + [CaseFacts(opened_at=BEFORE, closed_at=IN_Q3, closure_reason=ClosureReason.AGE_LIMIT)]
    )
    got = counts(cases, k=5)
    assert got[Measure.CASES_CLOSED] == 12
    assert got["cases_closed:age_limit"] is None
    # 12 - 6 - 5 would give the 1 away: the smallest shown reason is hidden too.
    assert got["cases_closed:moved_away"] is None
    assert got["cases_closed:plan_completed"] == 6


@pytest.mark.parametrize("seed", range(40))
def test_no_count_below_k_is_ever_shown(seed: int) -> None:
    rng = random.Random(seed)
    k = rng.randint(2, 7)
    days = lambda: timedelta(days=rng.randint(-200, 200))  # noqa: E731
    cases = []
    for _ in range(rng.randint(0, 40)):
        closed = rng.random() < 0.5
        consents = tuple(
            ConsentFacts(
                tuple(
                    (rng.choice(list(ConsentAction)), IN_Q3 + days())
                    for _ in range(rng.randint(1, 3))
                ),
                valid_until=IN_Q3 + days(),
            )
            for _ in range(rng.randint(0, 3))
        )
        cases.append(
            CaseFacts(
                opened_at=IN_Q3 + days(),
                closed_at=IN_Q3 + days() if closed else None,
                closure_reason=rng.choice(list(ClosureReason)) if closed else None,
                consents=consents,
                questionnaires=tuple(
                    AnswerFacts(IN_Q3 + days(), answers(rng.choice(list(QuestionnaireAnswer))))
                    for _ in range(rng.randint(0, 2))
                ),
                commitments=tuple(
                    CommitmentFacts(
                        rng.choice(("school", "police", "social")),
                        (IN_Q3 + days()).date(),
                        done_at=IN_Q3 + days() if rng.random() < 0.5 else None,
                    )
                    for _ in range(rng.randint(0, 4))
                ),
                meetings_held=tuple(IN_Q3 + days() for _ in range(rng.randint(0, 2))),
            )
        )
    report = followup(cases, Q3, k=k)
    for row in report.rows:
        assert row.count is None or row.count >= k, row
        text = row.shown(k)
        assert text == f"<{k}" or int(text) >= k
    for group in ("cases_closed", "commitments_done", "commitments_overdue"):
        parts = [r.count for r in report.rows if r.measure.startswith(f"{group}:")]
        total = next(r.count for r in report.rows if r.measure == group)
        if total is not None:
            # What the hidden parts add up to (the total minus the shown ones) is 0 or >= k.
            hidden = total - sum(c for c in parts if c is not None)
            assert hidden == 0 or hidden >= k

    shown = {r.measure: r.count for r in report.rows}
    if shown["questionnaires"] is not None:
        for question in QuestionnaireQuestion:
            parts = [
                shown[f"questionnaires:{question.value}:{a.value}"] for a in QuestionnaireAnswer
            ]
            hidden = shown["questionnaires"] - sum(c for c in parts if c is not None)
            assert hidden == 0 or hidden >= k


def answers(
    answer: QuestionnaireAnswer, **other: QuestionnaireAnswer
) -> tuple[tuple[QuestionnaireQuestion, QuestionnaireAnswer], ...]:
    return tuple((q, other.get(q.value, answer)) for q in QuestionnaireQuestion)


def test_the_young_peoples_answers_are_counted_and_small_counts_hidden() -> None:
    yes, no = QuestionnaireAnswer.YES, QuestionnaireAnswer.NO
    cases = [CaseFacts(opened_at=BEFORE, questionnaires=(AnswerFacts(IN_Q3, answers(yes)),))] * 6
    cases.append(
        CaseFacts(
            opened_at=BEFORE,
            questionnaires=(
                AnswerFacts(IN_Q3, answers(yes, listened_to=no)),
                AnswerFacts(BEFORE, answers(no)),  # another period: not counted
            ),
        )
    )
    exact = count_measures(cases, Q3)
    assert exact[Measure.QUESTIONNAIRES] == 7
    assert exact["questionnaires:listened_to:yes"] == 6
    assert exact["questionnaires:listened_to:no"] == 1
    assert exact["questionnaires:support_helped:yes"] == 7
    got = counts(cases, k=5)
    assert got[Measure.QUESTIONNAIRES] == 7
    assert got["questionnaires:support_helped:yes"] == 7
    # The one "no" is hidden, and so is the 6 that would give it away (7 - 6 = 1).
    assert got["questionnaires:listened_to:no"] is None
    assert got["questionnaires:listened_to:yes"] is None
    assert got["questionnaires:knew_the_plan:partly"] is None  # zero is hidden too


def test_commitments_done_and_overdue_per_agency_and_meetings_held() -> None:
    done = CommitmentFacts("school", date(2026, 7, 10), done_at=IN_Q3)
    late = CommitmentFacts("police", date(2026, 7, 10))  # never done: overdue
    done_late = CommitmentFacts(
        "police", date(2026, 7, 10), done_at=datetime(2026, 11, 2, tzinfo=UTC)
    )
    due_later = CommitmentFacts("school", date(2026, 12, 1))  # not yet due in Q3
    old = CommitmentFacts("school", date(2026, 1, 10), done_at=BEFORE)  # done before Q3
    cases = [
        CaseFacts(opened_at=BEFORE, commitments=(done, late, done_late, due_later, old)),
        # Closed before its commitment fell due: it is never overdue.
        CaseFacts(
            opened_at=BEFORE,
            closed_at=datetime(2026, 7, 5, tzinfo=UTC),
            closure_reason=ClosureReason.MOVED_AWAY,
            commitments=(CommitmentFacts("police", date(2026, 7, 10)),),
            meetings_held=(IN_Q3, BEFORE),
        ),
    ]
    got = count_measures(cases, Q3, agencies=("social",))
    assert got[Measure.COMMITMENTS_DONE] == 1
    assert got["commitments_done:school"] == 1
    assert got[Measure.COMMITMENTS_OVERDUE] == 2
    assert got["commitments_overdue:police"] == 2
    assert got["commitments_overdue:school"] == 0
    assert got["commitments_done:social"] == 0  # a party's row shows even at zero
    assert got[Measure.MEETINGS_HELD] == 1


def test_per_agency_commitments_are_suppressed_with_their_total() -> None:
    cases = [
        CaseFacts(
            opened_at=BEFORE,
            commitments=tuple(
                CommitmentFacts(agency, date(2026, 7, 1), done_at=IN_Q3)
                for agency in ["school"] * 6 + ["police"] * 5 + ["social"]
            ),
        )
    ]
    got = counts(cases, k=5)
    assert got[Measure.COMMITMENTS_DONE] == 12
    assert got["commitments_done:social"] is None
    assert got["commitments_done:police"] is None  # else 12 - 6 - 5 gives the 1 away
    assert got["commitments_done:school"] == 6
    assert got[Measure.MEETINGS_HELD] is None  # zero is hidden too


def test_time_from_referral_to_plan_is_a_median_shown_only_over_k_cases() -> None:
    def case(days: int, planned: datetime = IN_Q3) -> CaseFacts:
        return CaseFacts(
            opened_at=BEFORE, referred_at=planned - timedelta(days=days), planned_at=planned
        )

    four = [case(d) for d in (10, 20, 30, 40)] + [case(1, planned=BEFORE)]  # one not in Q3
    (hidden,) = followup(four, Q3, k=5).medians
    assert (hidden.measure, hidden.days, hidden.n, hidden.shown(5)) == (
        REFERRAL_TO_PLAN,
        None,
        None,
        "<5",
    )
    (shown,) = followup([*four, case(50), CaseFacts(opened_at=IN_Q3)], Q3, k=5).medians
    assert (shown.days, shown.n, shown.shown(5)) == (30.0, 5, "30.0")
