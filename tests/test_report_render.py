"""The steering group's report as table, CSV, JSON and PDF: both languages, no count below k
(issue 13). Pure rendering of :func:`sigbus.audit.followup.followup`'s report."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime, timedelta

import pytest

from sigbus.audit.followup import CaseFacts, CommitmentFacts, Report, followup, parse_period
from sigbus.protocol.codes import ClosureReason
from sigbus.report import LABELS, LANGS, TEXT, csv_text, pdf_bytes, report_json, table

Q3 = parse_period("2026-Q3")
AT = datetime(2026, 8, 1, 12, tzinfo=UTC)
_TJ = re.compile(rb"\(((?:[^()\\]|\\.)*)\) Tj")


def pdf_text(pdf: bytes) -> str:
    """Every text string the PDF draws (it is written uncompressed)."""
    return "\n".join(m.decode("latin-1").replace("\\", "") for m in _TJ.findall(pdf))


def numbers(text: str) -> list[int]:
    return [int(t) for t in re.split(r"[\s,;()]+", text) if t.isdigit()]


def report(k: int = 5) -> Report:
    cases = [
        CaseFacts(
            opened_at=AT,
            commitments=(
                CommitmentFacts("school", date(2026, 7, 1), done_at=AT),
                CommitmentFacts("police", date(2026, 7, 1)),
            ),
            meetings_held=(AT,) if i < 6 else (),
            referred_at=AT - timedelta(days=9 + i),
            planned_at=AT,
        )
        for i in range(7)
    ]
    # One case closed, one commitment of the social services done: counts of 1.
    cases.append(
        CaseFacts(
            opened_at=AT - timedelta(days=200),
            closed_at=AT,
            closure_reason=ClosureReason.MOVED_AWAY,
            commitments=(CommitmentFacts("social", date(2026, 7, 1), done_at=AT),),
        )
    )
    return followup(cases, Q3, k=k, agencies=("police", "school", "social"))


@pytest.mark.parametrize("lang", LANGS)
def test_every_output_shows_its_labels_and_no_count_below_k(lang: str) -> None:
    r = report()
    lines = table(r, lang)
    rows = list(csv.DictReader(io.StringIO(csv_text(r, lang))))
    pdf = pdf_bytes(r, lang, AT)
    assert pdf.startswith(b"%PDF-")
    text = pdf_text(pdf)
    for label in LABELS[lang].values():
        assert label in "\n".join(lines), label
        assert label in text, label
        assert label in {row["label"] for row in rows}, label
    assert TEXT[lang]["chart_done"] in text
    other = "en" if lang == "sv" else "sv"
    assert LABELS[other]["cases_started"] not in text + "\n".join(lines)
    # Seven cases started, so 7 shows; the one closed case and the social services'
    # one commitment do not, nor does the total of 1 closed.
    assert {row["measure"]: row["count"] for row in rows}["cases_started"] == "7"
    assert {row["measure"]: row["count"] for row in rows}["commitments_done:social"] == "<5"
    assert {row["measure"]: row["count"] for row in rows}["referral_to_plan_days"] == "12.0"
    for row in rows:
        if row["unit"] == "count":
            assert row["count"] == "<5" or int(row["count"]) >= 5, row
    shown = json.loads(json.dumps(report_json(r)))
    assert all(v == "<5" or int(v) >= 5 for v in shown["counts"].values()), shown
    for where in ("\n".join(lines), text):
        assert all(n >= 5 for n in numbers(where)), [n for n in numbers(where) if n < 5]


def test_the_median_is_hidden_under_k_cases() -> None:
    r = report(k=8)  # seven cases with both dates
    assert report_json(r)["medians_days"] == {"referral_to_plan_days": "<8"}
    assert all(n >= 8 for n in numbers("\n".join(table(r, "en"))))
    assert all(n >= 8 for n in numbers(pdf_text(pdf_bytes(r, "en", AT))))
