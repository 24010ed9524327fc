"""`sigbus social report`: the steering group's figures from the live hub state (issue 13).

Counts below k never show, in the table, the JSON or the CSV; the report names no case.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

from sigbus.agents.social.consent import consent_withdrawn
from sigbus.protocol.codes import ClosureReason, ConsenterRole
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import CaseClosed
from sigbus.protocol.personnummer import birth_date
from tests.integration.conftest import World
from tests.integration.test_decision_notice_cli import cli
from tests.test_report_render import numbers, pdf_text

SO = "social"


def this_quarter() -> str:
    now = datetime.now(UTC)
    return f"{now.year}-Q{(now.month - 1) // 3 + 1}"


async def test_the_report_counts_and_never_shows_a_count_below_k(
    world: World, keys_dir: Path, tmp_path: Path
) -> None:
    cases = [await world.open_case_with_consents() for _ in range(3)]
    for case in cases[:2]:
        await world.adapters[SO].send(
            MessageType.CASE_CLOSED,
            CaseClosed(reason=ClosureReason.PLAN_COMPLETED, closed_by="social_case_worker"),
            case_ref=case,
        )
    await world.adapters[SO].send(
        MessageType.CONSENT_EVENT,
        consent_withdrawn(
            "consent-guardianvh1", ConsenterRole.GUARDIAN, "vh-1", acted_at=datetime.now(UTC)
        ),
        case_ref=cases[2],
    )
    await world.settle()

    out_csv, out_pdf = tmp_path / "report.csv", tmp_path / "report.pdf"
    run = await cli(
        world, keys_dir, "social", "report", "--period", this_quarter(), "--k", "2",
        "--csv", str(out_csv), "--pdf", str(out_pdf),
    )  # fmt: skip
    assert run.code == 0, run
    table = {
        line.rsplit(None, 1)[0].strip(): line.rsplit(None, 1)[1]
        for line in run.out.splitlines()[1:]
    }
    assert table["ärenden startade"] == "3"
    assert table["ärenden aktiva"] == "3"
    assert table["ärenden avslutade"] == "2"
    assert table["varav planen genomförd"] == "2"
    assert table["varav flyttade"] == "<2"
    assert table["samtycken lämnade"] == "9"
    assert table["samtycken återkallade"] == "<2"  # exactly one: hidden
    assert table["åtaganden utförda"] == "<2"  # no plan in the hub state yet: 0, hidden
    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert {r["measure"]: r["count"] for r in rows}["consents_given"] == "9"
    for row in rows:
        assert row["count"] == "<2" or int(row["count"]) >= 2, row
    assert out_csv.stat().st_mode & 0o777 == 0o600
    pdf = out_pdf.read_bytes()
    assert pdf.startswith(b"%PDF-")
    assert out_pdf.stat().st_mode & 0o777 == 0o600
    text = pdf_text(pdf)
    assert "ärenden startade" in text
    assert "Avslutade ärenden efter orsak" in text
    assert all(n >= 2 for n in numbers(text)), text

    english = await cli(
        world, keys_dir, "social", "report", "--period", this_quarter(), "--lang", "en",
        "--pdf", str(out_pdf),
    )  # fmt: skip
    assert english.code == 0, english
    assert "consents given" in english.out
    assert "samtycken" not in english.out
    text = pdf_text(out_pdf.read_bytes())
    assert "Cases closed by reason" in text
    assert "ärenden" not in text
    assert all(n >= 5 for n in numbers(text + english.out)), text

    default = await cli(world, keys_dir, "social", "report", "--period", this_quarter(), "--json")
    assert default.code == 0, default
    shown = json.loads(default.out)["counts"]
    assert shown["consents_given"] == "9"
    assert all(v == "<5" or int(v) >= 5 for v in shown.values()), shown
    assert shown["cases_started"] == "<5"
    everything = run.out + default.out + english.out + out_csv.read_text() + text
    for case in cases:
        assert case not in everything
    born = birth_date(world.youth)
    for secret in (world.youth, world.youth.replace("-", ""), born.isoformat(), f"{born:%y%m%d}"):
        assert secret not in everything, secret
    assert json.loads(default.out)["medians_days"] == {"referral_to_plan_days": "<5"}

    bad = await cli(world, keys_dir, "social", "report", "--period", "15/12/2026")
    assert bad.code == 2, bad
    assert bad.err.strip().splitlines() == [
        "error: period '15/12/2026' is not YYYY, YYYY-Qn or YYYY-MM (e.g. 2026-Q3)"
    ]
