"""`sigbus social report`: the steering group's follow-up figures from the hub state.

Social services run the hub, so this runs with the hub's keys: it reads the hub
state (cases, closures, consent records) over NATS with the hub's credentials,
opens it with the hub state key, turns each case into counts only
(:mod:`sigbus.audit.followup`, pure) and suppresses every count below ``--k``.
No case ref, pseudonym or date of birth is printed or written.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from sigbus.audit.followup import (
    DEFAULT_K,
    PER_AGENCY,
    REFERRAL_TO_PLAN,
    AnswerFacts,
    CaseFacts,
    CommitmentFacts,
    ConsentFacts,
    Measure,
    Report,
    Row,
    followup,
    parse_period,
)
from sigbus.broker.setup import hub_setup
from sigbus.broker.state import CaseRecord, HubState
from sigbus.broker.state_store import StateStore
from sigbus.protocol.codes import ConsentAction, QuestionnaireQuestion
from sigbus.protocol.errors import SigbusError
from sigbus.report_pdf import Chart, report_pdf
from sigbus.transport import config
from sigbus.transport.bus import connect
from sigbus.transport.files import write_private

#: What each measure is called, in Swedish and in English (``--lang``).
LABELS: dict[str, dict[str, str]] = {
    "sv": {
        "cases_started": "ärenden startade",
        "cases_active": "ärenden aktiva",
        "cases_closed": "ärenden avslutade",
        "consents_given": "samtycken lämnade",
        "consents_withdrawn": "samtycken återkallade",
        "consents_expired": "samtycken utgångna",
        "commitments_done": "åtaganden utförda",
        "commitments_overdue": "åtaganden försenade",
        "meetings_held": "möten hållna",
        "questionnaires": "ungdomens enkäter",
        REFERRAL_TO_PLAN: "dagar från anmälan till plan (median)",
    },
    "en": {
        "cases_started": "cases started",
        "cases_active": "cases active",
        "cases_closed": "cases closed",
        "consents_given": "consents given",
        "consents_withdrawn": "consents withdrawn",
        "consents_expired": "consents expired",
        "commitments_done": "commitments done",
        "commitments_overdue": "commitments overdue",
        "meetings_held": "meetings held",
        "questionnaires": "young people's questionnaires",
        REFERRAL_TO_PLAN: "days from referral to plan (median)",
    },
}
#: Closure reasons (``ClosureReason``) as the steering group reads them.
REASONS: dict[str, dict[str, str]] = {
    "sv": {
        "plan_completed": "planen genomförd",
        "not_selected": "inte utvald",
        "young_person_declined": "den unga avböjde",
        "consent_ended": "samtycket upphörde",
        "moved_away": "flyttade",
        "other_intervention": "annan insats",
        "age_limit": "åldersgräns",
    },
    "en": {
        "plan_completed": "plan completed",
        "not_selected": "not selected",
        "young_person_declined": "young person declined",
        "consent_ended": "consent ended",
        "moved_away": "moved away",
        "other_intervention": "other intervention",
        "age_limit": "age limit",
    },
}
#: The report's other words.
TEXT: dict[str, dict[str, str]] = {
    "sv": {
        "title": "SIG uppföljning för styrgruppen",
        "period": "period",
        "suppressed": "antal under {k} visas som <{k}",
        "median_n": "över {n} ärenden",
        "of_which": "varav",
        "chart_cases": "Ärenden",
        "chart_closed": "Avslutade ärenden efter orsak",
        "chart_consents": "Samtycken",
        "chart_done": "Utförda åtaganden per myndighet",
        "chart_overdue": "Försenade åtaganden per myndighet",
        "chart_meetings": "Möten",
        "no_personal_data": "Rapporten innehåller inga personuppgifter: endast antal.",
        "produced": "framtagen",
    },
    "en": {
        "title": "SIG follow-up for the steering group",
        "period": "period",
        "suppressed": "counts below {k} shown as <{k}",
        "median_n": "over {n} cases",
        "of_which": "of which",
        "chart_cases": "Cases",
        "chart_closed": "Cases closed by reason",
        "chart_consents": "Consents",
        "chart_done": "Commitments done per agency",
        "chart_overdue": "Commitments overdue per agency",
        "chart_meetings": "Meetings",
        "no_personal_data": "The report holds no personal data: counts only.",
        "produced": "produced",
    },
}
LANGS = tuple(LABELS)


def label(measure: str, lang: str) -> str:
    """A row's label: the measure's, or a part's (a closure reason, an agency)."""
    name, _, part = measure.partition(":")
    if not part:
        return LABELS[lang][name]
    if name == Measure.CASES_CLOSED:
        return f"  {TEXT[lang]['of_which']} {REASONS[lang].get(part, part)}"
    return f"  {TEXT[lang]['of_which']} {part}"


def plan_facts(record: CaseRecord) -> PlanFacts:
    """The case's commitments as the hub follows them up (each with the time its
    ``done`` status was recorded), its meetings held (those whose attendance was
    released) and when its first plan version was adopted."""
    commitments = tuple(
        CommitmentFacts(
            agency=c.responsible_agency,
            due_on=c.due_on,
            done_at=c.latest.recorded_at if c.done and c.latest is not None else None,
        )
        for c in record.commitments.values()
        if c.in_plan
    )
    return PlanFacts(
        commitments=commitments,
        meetings_held=tuple(record.meetings_held),
        planned_at=record.planned_at,
    )


@dataclass(frozen=True)
class PlanFacts:
    """What a case's plan and meetings add to the figures (see :func:`plan_facts`)."""

    commitments: tuple[CommitmentFacts, ...] = ()
    meetings_held: tuple[datetime, ...] = ()
    planned_at: datetime | None = None


def referred_at(record: CaseRecord) -> datetime | None:
    """When the referral the case was opened for was received (``case open --referral``)."""
    return record.referral.received_at if record.referral is not None else None


def case_facts(record: CaseRecord) -> CaseFacts:
    """One case as counts need it: dates, the closure reason, consent events."""
    assert record.opened_at is not None
    plan = plan_facts(record)
    by_consent: dict[str, list[tuple[ConsentAction, datetime]]] = {}
    until: dict[str, datetime] = {}
    for event in record.events:
        by_consent.setdefault(event.consent_id, []).append((event.action, event.recorded_at))
        if event.scope is not None:  # an amendment can only narrow the period
            end = event.scope.valid_until
            until[event.consent_id] = min(until.get(event.consent_id, end), end)
    return CaseFacts(
        opened_at=record.opened_at,
        closed_at=record.closure.closed_at if record.closure else None,
        closure_reason=record.closure.reason if record.closure else None,
        consents=tuple(
            ConsentFacts(events=tuple(events), valid_until=until.get(cid))
            for cid, events in by_consent.items()
        ),
        questionnaires=tuple(
            AnswerFacts(
                recorded_at=q.recorded_at,
                answers=tuple(
                    (question, getattr(q, question.value)) for question in QuestionnaireQuestion
                ),
            )
            for q in record.questionnaires
        ),
        commitments=plan.commitments,
        meetings_held=plan.meetings_held,
        referred_at=referred_at(record),
        planned_at=plan.planned_at,
    )


async def read_hub_state(keys: Path, nats: str | None) -> HubState:
    setup = hub_setup(keys)
    nc = await connect(config.nats_url(nats), name="sigbus-report", creds=setup.creds)
    try:
        store = StateStore(nc.jetstream(), setup.state_key)
        return store.state_of(await store.read())
    finally:
        await nc.close()


def _median_line(report: Report, lang: str) -> list[str]:
    out = []
    for m in report.medians:
        n = f" ({TEXT[lang]['median_n'].format(n=m.n)})" if m.n is not None else ""
        out.append(f"{LABELS[lang][m.measure]:<46} {m.shown(report.k):>6}{n}")
    return out


def heading(report: Report, lang: str = "sv") -> str:
    p = report.period
    last = date.fromordinal(p.end_day.toordinal() - 1)
    words = TEXT[lang]
    return (
        f"{words['title']}, {words['period']} {p.label} ({p.first_day.isoformat()} .. "
        f"{last.isoformat()}); {words['suppressed'].format(k=report.k)}"
    )


def ordered(report: Report) -> list[Row]:
    """Each total, then its parts (closure reasons, agencies) under it."""
    out = []
    for total in (r for r in report.rows if ":" not in r.measure):
        out.append(total)
        out += [r for r in report.rows if r.measure.startswith(f"{total.measure}:")]
    return out


def table(report: Report, lang: str = "sv") -> list[str]:
    lines = [heading(report, lang)]
    for row in ordered(report):
        lines.append(f"{label(row.measure, lang):<46} {row.shown(report.k):>6}")
    return lines + _median_line(report, lang)


def csv_text(report: Report, lang: str = "sv") -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period", "measure", "label", "count", "unit"])
    for row in ordered(report):
        shown = row.shown(report.k)
        writer.writerow(
            [report.period.label, row.measure, label(row.measure, lang).strip(), shown, "count"]
        )
    for m in report.medians:
        writer.writerow(
            [report.period.label, m.measure, LABELS[lang][m.measure], m.shown(report.k), "days"]
        )
    return out.getvalue()


def report_json(report: Report) -> dict[str, object]:
    return {
        "period": report.period.label,
        "k": report.k,
        "counts": {r.measure: r.shown(report.k) for r in report.rows},
        "medians_days": {m.measure: m.shown(report.k) for m in report.medians},
    }


def charts(report: Report, lang: str) -> list[Chart]:
    """The PDF's bar charts: one group of rows each (a total and its parts apart)."""
    words = TEXT[lang]

    def rows(*measures: str) -> tuple[Row, ...]:
        return tuple(r for r in report.rows if r.measure in measures)

    def parts(measure: str) -> tuple[Row, ...]:
        return tuple(r for r in report.rows if r.measure.startswith(f"{measure}:"))

    out = [
        Chart(words["chart_cases"], rows("cases_started", "cases_active", "cases_closed")),
        Chart(words["chart_closed"], parts(Measure.CASES_CLOSED)),
        Chart(
            words["chart_consents"],
            rows("consents_given", "consents_withdrawn", "consents_expired"),
        ),
        Chart(words["chart_done"], parts(PER_AGENCY[0])),
        Chart(words["chart_overdue"], parts(PER_AGENCY[1])),
        Chart(words["chart_meetings"], rows("meetings_held")),
    ]
    return [c for c in out if c.rows]


def pdf_bytes(report: Report, lang: str, produced_at: datetime) -> bytes:
    words = TEXT[lang]
    return report_pdf(
        report,
        title=f"{words['title']} {report.period.label}",
        intro=[
            heading(report, lang),
            words["no_personal_data"],
            f"{words['produced']}: {produced_at.strftime('%Y-%m-%d %H:%M %Z')}",
        ],
        table=table(report, lang)[1:],
        charts=charts(report, lang),
        label=lambda measure: label(measure, lang).strip(),
        produced_at=produced_at,
    )


def add_report_command(app: typer.Typer) -> None:
    @app.command("report")
    def report_command(
        period: Annotated[str, typer.Option(help="YYYY-Qn, YYYY-MM or YYYY, e.g. 2026-Q3")],
        k: Annotated[
            int, typer.Option("--k", min=2, help="suppress every count below k")
        ] = DEFAULT_K,
        csv_file: Annotated[Path | None, typer.Option("--csv", help="also write CSV here")] = None,
        pdf_file: Annotated[
            Path | None, typer.Option("--pdf", help="also write a PDF with charts here")
        ] = None,
        lang: Annotated[str, typer.Option("--lang", help="sv (default) or en")] = "sv",
        as_json: Annotated[bool, typer.Option("--json")] = False,
        nats: Annotated[str | None, typer.Option("--nats")] = None,
        keys: Annotated[Path | None, typer.Option("--keys", help="the hub's keys")] = None,
    ) -> None:
        """Steering-group statistics for a period (cases, closures by reason, consents,
        commitments per agency, meetings, referral to plan), from the hub state; small
        counts suppressed. Needs the hub's keys."""
        if lang not in LANGS:
            typer.echo(f"error: --lang {lang!r}: give one of {', '.join(LANGS)}", err=True)
            raise typer.Exit(2)
        try:
            parsed = parse_period(period)
            state = asyncio.run(read_hub_state(config.keys_dir(keys), nats))
            agencies = sorted({a for c in state.cases.values() for a in c.parties})
            facts = [case_facts(c) for c in state.cases.values()]
            report = followup(facts, parsed, k=k, agencies=agencies)
            if csv_file is not None:
                write_private(csv_file, csv_text(report, lang).encode())
            if pdf_file is not None:
                write_private(pdf_file, pdf_bytes(report, lang, datetime.now(UTC)))
        except (SigbusError, OSError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
        if as_json:
            typer.echo(json.dumps(report_json(report), indent=2))
            return
        for line in table(report, lang):
            typer.echo(line)
