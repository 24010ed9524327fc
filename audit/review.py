"""Systematic log review (loggkontroll): a reproducible sample, anomaly rules, and the
hash chain of the reviewers' findings. Pure: entries, the period, the time zone and
the clock's readings are all passed in.

Entries are the log's JSON objects (``audit.entry.LogEntry`` dumped), as the console
holds them. Only decisions (releases and denies) are sampled or flagged.

- :func:`sample`: ``size`` decisions of the period, chosen by ranking each by
  HMAC-SHA-256(seed, "<index>") and taking the lowest: the same seed, period and log
  give the same sample on any machine (no ``random`` module, whose algorithm may change).
- :func:`anomalies`: statutory releases; releases to an agency that is not a party of
  the case (outside the plan's parties); bursts (more than ``burst_count`` decisions by
  one sender within ``burst_window``); off-hours decisions (weekends, or outside
  ``work_start``-``work_end`` local time); many denies (at least ``deny_threshold``
  denies of one sender's messages in the period).
- Findings are records of a chain signed by the hub (``audit.signed_chain``, domain
  ``FINDING_DOMAIN``): an edited, dropped, reordered or forged finding breaks the
  chain at that record; a dropped *tail* is found only against a head noted
  elsewhere (the page shows the head to copy into the review report).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any

Entry = Mapping[str, Any]
DECISIONS = ("release", "deny")


class Rule(StrEnum):
    STATUTORY = "statutory_release"
    OUTSIDE_PLAN = "outside_plan_parties"
    BURST = "burst"
    OFF_HOURS = "off_hours"
    MANY_DENIES = "many_denies"


class Verdict(StrEnum):
    """What the reviewer found about one entry."""

    OK = "ok"  # in order
    FOLLOW_UP = "follow_up"  # needs asking the discloser
    VIOLATION = "violation"  # an unauthorised disclosure or access: report it


@dataclass(frozen=True)
class Period:
    since: date
    until: date  # inclusive

    def holds(self, entry: Entry) -> bool:
        day = datetime.fromisoformat(entry["decided_at"]).date()
        return self.since <= day <= self.until


@dataclass(frozen=True)
class ReviewRules:
    burst_count: int = 20
    burst_window: timedelta = timedelta(minutes=5)
    work_start: int = 7  # local hour, inclusive
    work_end: int = 19  # local hour, exclusive
    deny_threshold: int = 5


@dataclass(frozen=True)
class Anomaly:
    index: int
    rule: Rule
    agency: str  # whose decision the rule is about: the sender (the recipient for outside-plan)


def decisions(entries: Iterable[Entry], period: Period) -> list[Entry]:
    return [e for e in entries if e.get("outcome") in DECISIONS and period.holds(e)]


def sample(entries: Iterable[Entry], period: Period, size: int, seed: str) -> list[int]:
    """The log indexes of ``size`` decisions of the period, reproducible from ``seed``."""
    key = seed.encode()

    def rank(e: Entry) -> bytes:
        return hmac.new(key, str(e["index"]).encode(), hashlib.sha256).digest()

    chosen = sorted(decisions(entries, period), key=rank)[: max(size, 0)]
    return sorted(int(e["index"]) for e in chosen)


def anomalies(
    entries: Iterable[Entry],
    period: Period,
    parties: Mapping[str, Iterable[str]],
    tz: tzinfo,
    rules: ReviewRules = ReviewRules(),
) -> list[Anomaly]:
    """Every decision of the period that a rule flags, in log order (one per rule)."""
    listed = decisions(entries, period)
    found: list[Anomaly] = []
    party_sets = {case: set(p) for case, p in parties.items()}
    for e in listed:
        index, sender = int(e["index"]), e.get("sender") or "-"
        released = e["outcome"] == "release"
        if released and e.get("statutory"):
            found.append(Anomaly(index, Rule.STATUTORY, sender))
        case = e.get("case_ref")
        recipient = e.get("recipient")
        if released and case and recipient and recipient not in party_sets.get(case, set()):
            found.append(Anomaly(index, Rule.OUTSIDE_PLAN, recipient))
        local = datetime.fromisoformat(e["decided_at"]).astimezone(tz)
        if local.weekday() >= 5 or not rules.work_start <= local.hour < rules.work_end:
            found.append(Anomaly(index, Rule.OFF_HOURS, sender))
    found += _bursts(listed, rules)
    denies = Counter(e.get("sender") or "-" for e in listed if e["outcome"] == "deny")
    found += [
        Anomaly(int(e["index"]), Rule.MANY_DENIES, e.get("sender") or "-")
        for e in listed
        if e["outcome"] == "deny" and denies[e.get("sender") or "-"] >= rules.deny_threshold
    ]
    return sorted(found, key=lambda a: (a.index, list(Rule).index(a.rule)))


def _bursts(listed: Sequence[Entry], rules: ReviewRules) -> list[Anomaly]:
    """Each decision inside a window of ``burst_window`` holding more than ``burst_count``
    decisions of one sender."""
    by_sender: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for e in listed:
        when = datetime.fromisoformat(e["decided_at"])
        by_sender[e.get("sender") or "-"].append((when, int(e["index"])))
    flagged: list[Anomaly] = []
    for sender, times in by_sender.items():
        times.sort()
        marked: set[int] = set()
        start = 0
        for end in range(len(times)):
            while times[end][0] - times[start][0] > rules.burst_window:
                start += 1
            if end - start + 1 > rules.burst_count:
                marked.update(i for _, i in times[start : end + 1])
        flagged += [Anomaly(i, Rule.BURST, sender) for i in sorted(marked)]
    return flagged
