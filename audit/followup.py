"""Follow-up statistics for the steering group (styrgrupp), with small counts suppressed.

Pure: the case facts and the period come in, counts go out. Which facts: when
each case was opened and closed (and why), and each consent record's events
(given, withdrawn, expired) with its validity end. No person, no case ref
reaches the output: only counts per measure.

Suppression (issue 13: "no individual can be recognised"): every count below
``k`` (default 5) is shown as ``<k``, zero included, so a suppressed cell never
says "at least one". Within a group that adds up to a shown total (cases closed
by reason), the hidden cells add up to the total minus the shown ones; that sum
must be 0 or at least ``k`` too, so the smallest shown cells are hidden until it
is (secondary suppression). Commitments done and overdue are shown per agency
under their totals, suppressed the same way. The time from referral to plan is a
median over the cases whose plan was made in the period, shown only when at
least ``k`` cases have both dates (else it is hidden, and so is how many).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from statistics import median
from zoneinfo import ZoneInfo

from sigbus.audit.errors import AuditError
from sigbus.protocol.codes import (
    ClosureReason,
    ConsentAction,
    QuestionnaireAnswer,
    QuestionnaireQuestion,
)

STOCKHOLM = ZoneInfo("Europe/Stockholm")
DEFAULT_K = 5
_PERIOD = re.compile(r"^(\d{4})(?:-Q([1-4])|-(\d{2}))?$")


class PeriodError(AuditError):
    """A period that is not ``YYYY``, ``YYYY-Qn`` or ``YYYY-MM``."""


@dataclass(frozen=True)
class Period:
    label: str
    first_day: date
    end_day: date  # exclusive

    @property
    def start(self) -> datetime:
        return datetime(*self.first_day.timetuple()[:3], tzinfo=STOCKHOLM)

    @property
    def end(self) -> datetime:
        return datetime(*self.end_day.timetuple()[:3], tzinfo=STOCKHOLM)

    def holds(self, at: datetime | None) -> bool:
        return at is not None and self.start <= at < self.end


def parse_period(text: str) -> Period:
    """``2026`` (a year), ``2026-Q3`` (a quarter) or ``2026-07`` (a month), Stockholm days."""
    match = _PERIOD.fullmatch(text)
    if match is None:
        raise PeriodError(f"period {text!r} is not YYYY, YYYY-Qn or YYYY-MM (e.g. 2026-Q3)")
    year = int(match[1])
    if match[2]:
        first_month, months = (int(match[2]) - 1) * 3 + 1, 3
    elif match[3]:
        first_month, months = int(match[3]), 1
        if not 1 <= first_month <= 12:
            raise PeriodError(f"period {text!r}: no month {first_month}")
    else:
        first_month, months = 1, 12
    end_month = first_month + months
    end = date(year + (end_month - 1) // 12, (end_month - 1) % 12 + 1, 1)
    return Period(text, date(year, first_month, 1), end)


@dataclass(frozen=True)
class ConsentFacts:
    """One consent record: its events as (action, recorded at), and its validity end."""

    events: tuple[tuple[ConsentAction, datetime], ...]
    valid_until: datetime | None


@dataclass(frozen=True)
class AnswerFacts:
    """One questionnaire the young person answered: when it was recorded, and the answers."""

    recorded_at: datetime
    answers: tuple[tuple[QuestionnaireQuestion, QuestionnaireAnswer], ...]


@dataclass(frozen=True)
class CommitmentFacts:
    """One commitment of a plan: the responsible agency, the due day, when it was done."""

    agency: str
    due_on: date
    done_at: datetime | None = None


@dataclass(frozen=True)
class CaseFacts:
    opened_at: datetime
    closed_at: datetime | None = None
    closure_reason: ClosureReason | None = None
    consents: tuple[ConsentFacts, ...] = ()
    questionnaires: tuple[AnswerFacts, ...] = ()
    commitments: tuple[CommitmentFacts, ...] = ()
    #: When each meeting of the case was held (the caller decides "held").
    meetings_held: tuple[datetime, ...] = ()
    #: When the referral the case was opened for was received, and the first plan made.
    referred_at: datetime | None = None
    planned_at: datetime | None = None


class Measure(StrEnum):
    CASES_STARTED = "cases_started"
    CASES_ACTIVE = "cases_active"
    CASES_CLOSED = "cases_closed"
    CONSENTS_GIVEN = "consents_given"
    CONSENTS_WITHDRAWN = "consents_withdrawn"
    CONSENTS_EXPIRED = "consents_expired"
    #: The young people's questionnaires recorded; ``questionnaires:<question>:<answer>``
    #: counts each answer (the answers to one question add up to this total).
    QUESTIONNAIRES = "questionnaires"
    COMMITMENTS_DONE = "commitments_done"
    COMMITMENTS_OVERDUE = "commitments_overdue"
    MEETINGS_HELD = "meetings_held"


#: The measures shown per agency (``commitments_done:<agency>``) under their total.
PER_AGENCY = (Measure.COMMITMENTS_DONE, Measure.COMMITMENTS_OVERDUE)
#: The one median: days from the referral's receipt to the case's first plan.
REFERRAL_TO_PLAN = "referral_to_plan_days"


@dataclass(frozen=True)
class Row:
    measure: str  # a Measure, or ``cases_closed:<reason>``
    count: int | None  # None: suppressed

    def shown(self, k: int) -> str:
        return f"<{k}" if self.count is None else str(self.count)


@dataclass(frozen=True)
class Median:
    """A median in days over ``n`` cases; both hidden (None) when fewer than k cases."""

    measure: str
    days: float | None
    n: int | None

    def shown(self, k: int) -> str:
        return f"<{k}" if self.days is None else f"{self.days:.1f}"


@dataclass(frozen=True)
class Report:
    period: Period
    k: int
    rows: tuple[Row, ...]
    medians: tuple[Median, ...] = ()


def _expired_in(record: ConsentFacts, period: Period) -> bool:
    """An explicit expiry event in the period, or the period end passing in it while the
    record was still in force (not withdrawn or expired before)."""
    if any(a is ConsentAction.EXPIRED and period.holds(t) for a, t in record.events):
        return True
    until = record.valid_until
    if until is None or not period.holds(until):
        return False
    ended = [t for a, t in record.events if a in (ConsentAction.WITHDRAWN, ConsentAction.EXPIRED)]
    return not any(t <= until for t in ended)


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=STOCKHOLM)


def _overdue_in(commitment: CommitmentFacts, case: CaseFacts, period: Period) -> bool:
    """Overdue at some time in the period: from the day after its due day until it was
    done or its case closed, whichever came first."""
    since = _day_start(commitment.due_on + timedelta(days=1))
    ends = [t for t in (commitment.done_at, case.closed_at) if t is not None]
    return since < period.end and (not ends or min(ends) > max(since, period.start))


def _agencies(cases: Sequence[CaseFacts], extra: Iterable[str]) -> list[str]:
    return sorted({c.agency for case in cases for c in case.commitments} | set(extra))


def _plan_counts(case: CaseFacts, period: Period, counts: dict[str, int]) -> None:
    for commitment in case.commitments:
        if period.holds(commitment.done_at):
            counts[Measure.COMMITMENTS_DONE] += 1
            counts[f"{Measure.COMMITMENTS_DONE.value}:{commitment.agency}"] += 1
        elif _overdue_in(commitment, case, period):
            counts[Measure.COMMITMENTS_OVERDUE] += 1
            counts[f"{Measure.COMMITMENTS_OVERDUE.value}:{commitment.agency}"] += 1
    counts[Measure.MEETINGS_HELD] += sum(1 for at in case.meetings_held if period.holds(at))


def _counts(
    cases: Sequence[CaseFacts], period: Period, agencies: Iterable[str] = ()
) -> dict[str, int]:
    counts = {m.value: 0 for m in Measure}
    counts.update({f"{Measure.CASES_CLOSED.value}:{r.value}": 0 for r in ClosureReason})
    counts.update({_answer(q, a): 0 for q in QuestionnaireQuestion for a in QuestionnaireAnswer})
    for measure in PER_AGENCY:
        counts.update({f"{measure.value}:{a}": 0 for a in _agencies(cases, agencies)})
    for case in cases:
        if period.holds(case.opened_at):
            counts[Measure.CASES_STARTED] += 1
        if case.opened_at < period.end and (
            case.closed_at is None or case.closed_at >= period.start
        ):
            counts[Measure.CASES_ACTIVE] += 1
        if period.holds(case.closed_at) and case.closure_reason is not None:
            counts[Measure.CASES_CLOSED] += 1
            counts[f"{Measure.CASES_CLOSED.value}:{case.closure_reason.value}"] += 1
        for record in case.consents:
            for action, at in record.events:
                if action is ConsentAction.GIVEN and period.holds(at):
                    counts[Measure.CONSENTS_GIVEN] += 1
                elif action is ConsentAction.WITHDRAWN and period.holds(at):
                    counts[Measure.CONSENTS_WITHDRAWN] += 1
            if _expired_in(record, period):
                counts[Measure.CONSENTS_EXPIRED] += 1
        for questionnaire in case.questionnaires:
            if period.holds(questionnaire.recorded_at):
                counts[Measure.QUESTIONNAIRES] += 1
                for question, answer in questionnaire.answers:
                    counts[_answer(question, answer)] += 1
        _plan_counts(case, period, counts)
    return counts


def _answer(question: QuestionnaireQuestion, answer: QuestionnaireAnswer) -> str:
    return f"{Measure.QUESTIONNAIRES.value}:{question.value}:{answer.value}"


def referral_to_plan(cases: Sequence[CaseFacts], period: Period, *, k: int) -> Median:
    """The median days from referral to plan, over the cases planned in the period;
    hidden, with its n, unless at least ``k`` cases have both dates."""
    days = [
        (c.planned_at - c.referred_at).total_seconds() / 86400
        for c in cases
        if c.referred_at is not None
        and c.planned_at is not None
        and period.holds(c.planned_at)
        and c.planned_at >= c.referred_at
    ]
    if len(days) < k:
        return Median(REFERRAL_TO_PLAN, None, None)
    return Median(REFERRAL_TO_PLAN, round(median(days), 1), len(days))


def _suppress_group(
    raw: dict[str, int], shown: dict[str, int | None], total: str, parts: Sequence[str], k: int
) -> None:
    """Secondary suppression: under a shown total, what the hidden parts add up to is
    known (the total minus the shown parts), so it must be 0 or at least ``k``: hide
    the smallest shown part until it is (hiding every part leaves only the total)."""
    while shown[total] is not None:
        hidden_sum = sum(raw[p] for p in parts if shown[p] is None)
        visible = sorted((p for p in parts if shown[p] is not None), key=lambda p: raw[p])
        if hidden_sum == 0 or hidden_sum >= k or not visible:
            return
        shown[visible[0]] = None


def count_measures(
    cases: Sequence[CaseFacts], period: Period, agencies: Iterable[str] = ()
) -> dict[str, int]:
    """Every measure's exact count (before suppression: never print these)."""
    return _counts(cases, period, agencies)


def followup(
    cases: Sequence[CaseFacts],
    period: Period,
    *,
    k: int = DEFAULT_K,
    agencies: Iterable[str] = (),
) -> Report:
    """The steering group's figures for ``period``; every count below ``k`` suppressed.

    ``agencies``: every agency to show a row for (a party's row shows even at zero,
    so a suppressed row never tells that the agency had a commitment)."""
    if k < 1:
        raise PeriodError("k must be at least 1")
    raw = _counts(cases, period, agencies)
    shown: dict[str, int | None] = {m: (c if c >= k else None) for m, c in raw.items()}
    closed = Measure.CASES_CLOSED.value
    parts = [f"{closed}:{r.value}" for r in ClosureReason]
    _suppress_group(raw, shown, closed, parts, k)
    # Each question's answers add up to the questionnaires shown: suppressed per question.
    for question in QuestionnaireQuestion:
        answers = [_answer(question, a) for a in QuestionnaireAnswer]
        _suppress_group(raw, shown, Measure.QUESTIONNAIRES.value, answers, k)
    for measure in PER_AGENCY:
        prefix = f"{measure.value}:"
        _suppress_group(raw, shown, measure.value, [m for m in raw if m.startswith(prefix)], k)
    rows = tuple(Row(m, shown[m]) for m in raw)
    return Report(period, k, rows, (referral_to_plan(cases, period, k=k),))
