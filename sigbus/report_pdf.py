"""The steering group's report as a PDF: the table and one bar chart per group.

The charts are drawn with fpdf's own primitives (rectangles and text), in
:mod:`sigbus.svgchart`'s palette, rather than by placing that module's SVG in
the PDF: fpdf's SVG importer does not render ``<text>`` reliably across
versions (labels go missing or change font), while primitives give real PDF
text that a reader can search and copy, and the tests can find. Only shown
figures are drawn: a suppressed count is a hatched stub labelled ``<k``, never
a bar of its real length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from fpdf import FPDF

from sigbus.audit.followup import Report, Row
from sigbus.svgchart import SERIES_COLOURS

_BAR_H = 5.0
_LABEL_W = 75.0
_BAR_W = 85.0


@dataclass(frozen=True)
class Chart:
    title: str
    rows: tuple[Row, ...]


def _latin1(text: str) -> str:
    # The core font (Helvetica) is Latin-1: å, ä, ö are in it, dashes and arrows are not.
    text = text.replace("—", "-").replace("–", "-").replace("→", "->").replace("≥", ">=")
    return text.encode("latin-1", "replace").decode("latin-1")


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _chart(pdf: FPDF, chart: Chart, k: int, label: Callable[[str], str]) -> None:
    pdf.set_font("Helvetica", "B", 11)
    pdf.multi_cell(0, 6, _latin1(chart.title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    top = max((r.count or 0 for r in chart.rows), default=0)
    for row in chart.rows:
        if pdf.get_y() > 270:
            pdf.add_page()
        x, y = pdf.l_margin, pdf.get_y()
        pdf.set_xy(x, y)
        pdf.cell(_LABEL_W, _BAR_H, _latin1(label(row.measure)))
        bar_x = x + _LABEL_W
        if row.count is None:
            pdf.set_draw_color(*_rgb(SERIES_COLOURS[1]))
            pdf.rect(bar_x, y + 0.5, 4, _BAR_H - 1)
            pdf.line(bar_x, y + _BAR_H - 0.5, bar_x + 4, y + 0.5)
            width = 4.0
        else:
            width = max(_BAR_W * row.count / top, 0.5) if top else 0.5
            pdf.set_fill_color(*_rgb(SERIES_COLOURS[0]))
            pdf.rect(bar_x, y + 0.5, width, _BAR_H - 1, style="F")
        pdf.set_xy(bar_x + width + 2, y)
        pdf.cell(20, _BAR_H, row.shown(k))
        pdf.set_xy(x, y + _BAR_H + 1)
    pdf.ln(3)


def report_pdf(
    report: Report,
    *,
    title: str,
    intro: Sequence[str],
    table: Sequence[str],
    charts: Sequence[Chart],
    label: Callable[[str], str],
    produced_at: datetime,
) -> bytes:
    """``title``, ``intro`` lines and the ``table`` lines, then each chart. Uncompressed,
    so its text can be searched (and checked for what it must not hold)."""
    pdf = FPDF(format="A4")
    pdf.set_compression(False)
    pdf.set_title(_latin1(title))
    pdf.set_creator("sigbus social report")
    pdf.set_creation_date(produced_at)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(0, 8, _latin1(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    for line in intro:
        pdf.multi_cell(0, 4.5, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("Courier", "", 8)
    for line in table:
        pdf.multi_cell(0, 4, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    for chart in charts:
        _chart(pdf, chart, report.k, label)
    return bytes(pdf.output())
