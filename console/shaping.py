"""Pure shaping of log entries and case records for the console's views (no I/O).

Entries are the disclosure log's JSON objects (``audit.entry.LogEntry`` dumped);
filters are checked against the values the log and the rules can hold, so a
misspelt filter is refused instead of reading as "no disclosures".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sigbus.audit.entry import EntryOutcome
from sigbus.broker.state import CaseRecord
from sigbus.console.i18n import REASONS, t
from sigbus.policy.engine import stockholm_date
from sigbus.policy.lifecycle import case_status, consent_collection
from sigbus.policy.model import ConsentRecordEvent
from sigbus.policy.rules import Rules

Entry = Mapping[str, Any]


class FilterError(ValueError):
    """A filter value the log cannot hold (the field is named, never the value echoed back)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


@dataclass(frozen=True)
class LogFilter:
    case: str | None = None
    agency: str | None = None
    basis: str | None = None
    outcome: str | None = None
    since: date | None = None
    until: date | None = None  # inclusive day


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def parse_filter(
    params: Mapping[str, str], *, agencies: Iterable[str], bases: Iterable[str]
) -> LogFilter:
    """The query parameters as a filter; an unknown agency, basis, outcome or a bad date
    raises :class:`FilterError` naming the field."""
    agency, basis, outcome = (_blank(params.get(k)) for k in ("agency", "basis", "outcome"))
    if agency is not None and agency not in set(agencies):
        raise FilterError("agency")
    if basis is not None and basis not in set(bases):
        raise FilterError("basis")
    if outcome is not None and outcome not in {o.value for o in EntryOutcome}:
        raise FilterError("outcome")
    days: dict[str, date | None] = {}
    for key in ("since", "until"):
        raw = _blank(params.get(key))
        try:
            days[key] = date.fromisoformat(raw) if raw else None
        except ValueError as e:
            raise FilterError(key) from e
    return LogFilter(
        case=_blank(params.get("case")),
        agency=agency,
        basis=basis,
        outcome=outcome,
        since=days["since"],
        until=days["until"],
    )


def matches(entry: Entry, f: LogFilter) -> bool:
    if f.case is not None and entry.get("case_ref") != f.case:
        return False
    if f.agency is not None and f.agency not in (entry.get("sender"), entry.get("recipient")):
        return False
    if f.basis is not None and entry.get("legal_basis") != f.basis:
        return False
    if f.outcome is not None and entry.get("outcome") != f.outcome:
        return False
    day = datetime.fromisoformat(entry["decided_at"]).date()
    return not ((f.since and day < f.since) or (f.until and day > f.until))


def filter_entries(entries: Iterable[Entry], f: LogFilter) -> list[Entry]:
    return [e for e in entries if matches(e, f)]


def known_bases(rules: Rules, entries: Iterable[Entry]) -> set[str]:
    return {
        rules.consent.id,
        *rules.statutes_by_id,
        *(e["legal_basis"] for e in entries if e.get("legal_basis")),
    }


def readable_reason(code: str, lang: str) -> str:
    """``policy:consent_withdrawn:guardian:vh-2`` → "consent withdrawn (guardian:vh-2)"."""
    parts = code.split(":")
    key, detail = (
        (":".join(parts[:2]), parts[2:]) if parts[0] == "policy" else (parts[0], parts[1:])
    )
    text = REASONS.get(key, {}).get(lang) or key
    return f"{text} ({':'.join(detail)})" if detail else text


def readable_basis(basis: str | None, rules: Rules, lang: str) -> str:
    if basis is None:
        return "—"
    if basis == rules.consent.id:
        return t("basis_consent", lang)
    statute = rules.statutes_by_id.get(basis)
    return f"{statute.title} ({statute.citation})" if statute else basis


def readable_outcome(outcome: str, lang: str) -> str:
    return t(f"out_{outcome}", lang) if outcome in {o.value for o in EntryOutcome} else outcome


@dataclass(frozen=True)
class Row:
    index: int
    when: str
    case_ref: str
    message_type: str
    sender: str
    recipient: str
    basis: str
    outcome: str
    reasons: str
    flagged: bool  # a statutory release: released without consent, for review


def rows(entries: Sequence[Entry], rules: Rules, lang: str) -> list[Row]:
    out = []
    for e in entries:
        out.append(
            Row(
                index=int(e["index"]),
                when=datetime.fromisoformat(e["decided_at"]).strftime("%Y-%m-%d %H:%M"),
                case_ref=e.get("case_ref") or "—",
                message_type=e.get("message_type") or "—",
                sender=e.get("sender") or "—",
                recipient=e.get("recipient") or "—",
                basis=readable_basis(e.get("legal_basis"), rules, lang),
                outcome=readable_outcome(e["outcome"], lang),
                reasons="; ".join(readable_reason(r, lang) for r in e.get("reasons", ())),
                flagged=bool(e.get("statutory")) and e["outcome"] == EntryOutcome.RELEASE.value,
            )
        )
    return out


@dataclass(frozen=True)
class ConsentRow:
    consenter: str
    action: str
    valid_until: str
    recorded_at: str


def consent_rows(events: Iterable[ConsentRecordEvent], lang: str) -> list[ConsentRow]:
    """One row per consent event: the consenter's role (and guardian ref), never a name."""
    out = []
    for ev in events:
        role = t(ev.consenter_role.value, lang)
        out.append(
            ConsentRow(
                consenter=f"{role} {ev.guardian_ref}" if ev.guardian_ref else role,
                action=t(ev.action.value, lang),
                valid_until=ev.scope.valid_until.strftime("%Y-%m-%d") if ev.scope else "—",
                recorded_at=ev.recorded_at.strftime("%Y-%m-%d %H:%M"),
            )
        )
    return out


@dataclass(frozen=True)
class LifecycleView:
    """Where the case stands for the coordinator (issue 13's life cycle, issue 14's page)."""

    status: str
    selection: str
    closure: str
    #: (consenter, state, valid until) per required consenter, from the hub's rules.
    consenters: list[tuple[str, str, str]]


def _consenter_label(consenter: str, lang: str) -> str:
    role, _, ref = consenter.partition(":")
    return f"{t(role, lang)} {ref}" if ref else t(role, lang)


def lifecycle_view(record: CaseRecord, rules: Rules, now: datetime, lang: str) -> LifecycleView:
    """The same status the hub and `sigbus social case show` derive
    (:mod:`sigbus.policy.lifecycle`), and each required consenter's state at ``now``."""
    consenters = consent_collection(record.policy_state(), rules, now=now)
    status = case_status(
        selected=record.selection is not None,
        closed=record.closure is not None,
        consenters=consenters,
    )
    selection = "—"
    if record.selection is not None:
        instrument = record.selection.instrument
        selection = record.selection.selected_at.strftime("%Y-%m-%d")
        if instrument is not None:
            selection += f" ({instrument.value} {record.selection.assessment_id or ''})".rstrip()
    closure = "—"
    if record.closure is not None:
        reason = t(f"closure_{record.closure.reason.value}", lang)
        closure = f"{record.closure.closed_at:%Y-%m-%d} {reason}"
    return LifecycleView(
        status=t(f"status_{status.value}", lang),
        selection=selection,
        closure=closure,
        consenters=[
            (
                _consenter_label(c.consenter, lang),
                t(f"consent_{c.state.value}", lang),
                c.valid_until.strftime("%Y-%m-%d") if c.valid_until else "—",
            )
            for c in consenters
        ],
    )


@dataclass(frozen=True)
class CommitmentRow:
    commitment: str
    agency: str
    action: str
    owner: str
    due_on: str
    status: str
    overdue: bool
    reminded: bool
    in_plan: bool


def commitment_rows(record: CaseRecord, now: datetime, lang: str) -> list[CommitmentRow]:
    """The plan's commitments as the hub follows them up; overdue as the reminder pass
    counts it (``broker/reminders.py``): past due, still in the plan, not done."""
    today = stockholm_date(now)
    out = []
    for c in sorted(record.commitments.values(), key=lambda c: (c.due_on, c.commitment_id)):
        latest = c.latest
        out.append(
            CommitmentRow(
                commitment=c.commitment_id,
                agency=c.responsible_agency,
                action=c.action.value,
                owner=c.owner_function,
                due_on=c.due_on.isoformat(),
                status=t(f"cs_{latest.status.value}", lang) if latest else t("cs_none", lang),
                overdue=c.due_on < today and c.in_plan and not c.done,
                reminded=any(c.reminded.values()),
                in_plan=c.in_plan,
            )
        )
    return out


MEETING_TYPES = ("meeting_notice", "meeting_attendance", "meeting_minutes")


@dataclass(frozen=True)
class MeetingRow:
    when: str
    message_type: str
    sender: str
    recipients: str


def meeting_rows(entries: Iterable[Entry], case_ref: str, lang: str) -> list[MeetingRow]:
    """The case's meeting notices, attendance and minutes as the log holds them (their
    content stays sealed): one row per message, with the parties it was released to."""
    by_message: dict[str, list[Entry]] = {}
    for e in entries:
        if (
            e.get("case_ref") == case_ref
            and e.get("message_type") in MEETING_TYPES
            and e["outcome"] == EntryOutcome.RELEASE.value
        ):
            by_message.setdefault(e["message_id"], []).append(e)
    out = []
    for released in by_message.values():
        first = released[0]
        out.append(
            MeetingRow(
                when=datetime.fromisoformat(first["decided_at"]).strftime("%Y-%m-%d %H:%M"),
                message_type=t(f"type_{first['message_type']}", lang),
                sender=first.get("sender") or "—",
                recipients=", ".join(
                    sorted({e["recipient"] for e in released if e.get("recipient")})
                ),
            )
        )
    return out
