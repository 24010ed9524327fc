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
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer

from sigbus.audit.followup import (
    DEFAULT_K,
    AnswerFacts,
    CaseFacts,
    ConsentFacts,
    Report,
    followup,
    parse_period,
)
from sigbus.broker.setup import hub_setup
from sigbus.broker.state import CaseRecord, HubState
from sigbus.broker.state_store import StateStore
from sigbus.protocol.codes import ConsentAction, QuestionnaireQuestion
from sigbus.protocol.errors import SigbusError
from sigbus.transport import config
from sigbus.transport.bus import connect
from sigbus.transport.files import write_private

#: What each measure is called in the table (Swedish / English).
LABELS = {
    "cases_started": "ärenden startade / cases started",
    "cases_active": "ärenden aktiva / cases active",
    "cases_closed": "ärenden avslutade / cases closed",
    "consents_given": "samtycken lämnade / consents given",
    "consents_withdrawn": "samtycken återkallade / consents withdrawn",
    "consents_expired": "samtycken utgångna / consents expired",
    "questionnaires": "ungdomens enkäter / young people's questionnaires",
}


def case_facts(record: CaseRecord) -> CaseFacts:
    """One case as counts need it: dates, the closure reason, consent events."""
    assert record.opened_at is not None
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
    )


async def read_hub_state(keys: Path, nats: str | None) -> HubState:
    setup = hub_setup(keys)
    nc = await connect(config.nats_url(nats), name="sigbus-report", creds=setup.creds)
    try:
        store = StateStore(nc.jetstream(), setup.state_key)
        return store.state_of(await store.read())
    finally:
        await nc.close()


def table(report: Report) -> list[str]:
    p = report.period
    last = p.end_day.toordinal() - 1
    head = (
        f"SIG uppföljning / follow-up {p.label} ({p.first_day.isoformat()} .. "
        f"{date.fromordinal(last).isoformat()}); antal under {report.k} visas "
        f"som <{report.k} / counts below {report.k} shown as <{report.k}"
    )
    lines = [head]
    for row in report.rows:
        measure, _, reason = row.measure.partition(":")
        label = f"  varav / of which {reason}" if reason else LABELS[measure]
        lines.append(f"{label:<46} {row.shown(report.k):>6}")
    return lines


def csv_text(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period", "measure", "count"])
    for row in report.rows:
        writer.writerow([report.period.label, row.measure, row.shown(report.k)])
    return out.getvalue()


def add_report_command(app: typer.Typer) -> None:
    @app.command("report")
    def report_command(
        period: Annotated[str, typer.Option(help="YYYY-Qn, YYYY-MM or YYYY, e.g. 2026-Q3")],
        k: Annotated[
            int, typer.Option("--k", min=2, help="suppress every count below k")
        ] = DEFAULT_K,
        csv_file: Annotated[Path | None, typer.Option("--csv", help="also write CSV here")] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
        nats: Annotated[str | None, typer.Option("--nats")] = None,
        keys: Annotated[Path | None, typer.Option("--keys", help="the hub's keys")] = None,
    ) -> None:
        """Steering-group statistics for a period (cases, closures by reason, consents),
        from the hub state; small counts suppressed. Needs the hub's keys."""
        try:
            parsed = parse_period(period)
            state = asyncio.run(read_hub_state(config.keys_dir(keys), nats))
            report = followup([case_facts(c) for c in state.cases.values()], parsed, k=k)
            if csv_file is not None:
                write_private(csv_file, csv_text(report).encode())
        except (SigbusError, OSError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
        if as_json:
            rows = {r.measure: r.shown(report.k) for r in report.rows}
            typer.echo(json.dumps({"period": period, "k": k, "counts": rows}, indent=2))
            return
        for line in table(report):
            typer.echo(line)
