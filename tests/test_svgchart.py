"""The SVG charts (sigbus/svgchart.py): well-formed, to scale, and text escaped."""

from __future__ import annotations

from xml.etree import ElementTree

from sigbus.svgchart import Bar, Series, bar_chart, line_chart, stack

SVG = "{http://www.w3.org/2000/svg}"


def _parse(document: str) -> ElementTree.Element:
    return ElementTree.fromstring(document)


def test_bars_are_to_scale_and_labelled() -> None:
    svg = _parse(stack("t", [bar_chart("b", [Bar("raw", 700.0, "msg/s"), Bar("e2e", 70.0)])]))
    widths = [float(r.get("width", "0")) for r in svg.iter(f"{SVG}rect") if r.get("height") == "18"]
    assert len(widths) == 2
    assert abs(widths[0] / widths[1] - 10.0) < 0.01
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "700.0 msg/s" in texts
    assert "70.0" in texts


def test_labels_are_escaped_not_markup() -> None:
    document = stack("<a & b>", [bar_chart("x", [Bar("<script>", 1.0)])])
    svg = _parse(document)  # would raise on unescaped markup
    assert "<script>" not in document
    assert svg.find(f"{SVG}title") is not None
    assert next(t.text for t in svg.iter(f"{SVG}text")) == "<a & b>"


def test_line_chart_marks_every_point_with_its_value() -> None:
    series = [Series("p50", [(50, 20.0), (100, 500.0)]), Series("p99", [(50, 53.0), (100, 666.0)])]
    svg = _parse(stack("t", [line_chart("l", series, x_label="msg/s", y_label="ms")]))
    assert len(list(svg.iter(f"{SVG}circle"))) == 4
    texts = {t.text for t in svg.iter(f"{SVG}text")}
    assert {"20", "500", "53", "666", "p50", "p99"} <= texts
    # A higher value is drawn higher (a smaller y).
    ys = [float(c.get("cy", "0")) for c in svg.iter(f"{SVG}circle")]
    assert ys[1] < ys[0]
    assert ys[3] < ys[2]
