"""Small, dependency-free SVG charts for figures people would rather see than read.

Pure: figures in, an SVG document (a string) out. No JavaScript, no fonts fetched,
text as text (so a screen reader and `grep` find every figure), colours with
enough contrast on white (WCAG 2.1 AA, 1.4.11 non-text contrast >= 3:1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

WIDTH = 720
_LABEL_W = 250
_ROW_H = 26
_PAD = 16
# Blue and orange from the Okabe-Ito palette (distinguishable with colour blindness),
# darkened to >= 3:1 against white.
SERIES_COLOURS = ("#0062a3", "#b35900", "#007a5e", "#8f3f71")


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    unit: str = ""


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]  # (x, y)


def _text(x: float, y: float, body: str, *, anchor: str = "start", size: int = 13) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'font-family="sans-serif" fill="#1a1a1a">{escape(body)}</text>'
    )


def _document(height: float, title: str, body: list[str]) -> str:
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
            f'viewBox="0 0 {WIDTH} {height:.0f}" role="img" aria-label="{escape(title)}">',
            f"<title>{escape(title)}</title>",
            '<rect width="100%" height="100%" fill="#ffffff"/>',
            _text(_PAD, _PAD + 12, title, size=15),
            *body,
            "</svg>",
        ]
    )


def bar_chart(title: str, bars: Sequence[Bar]) -> tuple[str, float]:
    """Horizontal bars on one linear scale; returns (the SVG elements, their height)."""
    top = max((b.value for b in bars), default=0.0)
    span = WIDTH - _LABEL_W - 2 * _PAD - 110
    out = [_text(_PAD, _PAD + 12, title, size=14)]
    y = float(_PAD + 26)
    for bar in bars:
        width = span * bar.value / top if top > 0 else 0.0
        out += [
            _text(_PAD, y + 17, bar.label),
            f'<rect x="{_LABEL_W}" y="{y + 4:.1f}" width="{max(width, 1.0):.1f}" height="18" '
            f'fill="{SERIES_COLOURS[0]}"/>',
            _text(_LABEL_W + max(width, 1.0) + 6, y + 17, f"{bar.value:,.1f} {bar.unit}".strip()),
        ]
        y += _ROW_H
    return "\n".join(out), y + _PAD


def line_chart(
    title: str,
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    height: float = 260.0,
) -> tuple[str, float]:
    """Lines with a marker and its value at every point, on linear axes from 0."""
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    x_top, y_top = max(xs, default=1.0) or 1.0, max(ys, default=1.0) or 1.0
    left, right = _PAD + 60, WIDTH - _PAD - 190
    plot_top, plot_bottom = _PAD + 34.0, height - 40

    def at(x: float, y: float) -> tuple[float, float]:
        return (
            left + (right - left) * x / x_top,
            plot_bottom - (plot_bottom - plot_top) * y / y_top,
        )

    out = [
        _text(_PAD, _PAD + 12, title, size=14),
        f'<line x1="{left}" y1="{plot_bottom:.1f}" x2="{right}" y2="{plot_bottom:.1f}" '
        'stroke="#1a1a1a"/>',
        f'<line x1="{left}" y1="{plot_top:.1f}" x2="{left}" y2="{plot_bottom:.1f}" '
        'stroke="#1a1a1a"/>',
        _text((left + right) / 2, plot_bottom + 32, x_label, anchor="middle"),
        _text(left - 8, plot_top - 8, y_label, anchor="start", size=12),
        _text(left - 6, plot_bottom + 4, "0", anchor="end", size=11),
        _text(left - 6, plot_top + 4, f"{y_top:,.0f}", anchor="end", size=11),
    ]
    for x in sorted(set(xs)):
        px, _ = at(x, 0)
        out.append(_text(px, plot_bottom + 16, f"{x:,.0f}", anchor="middle", size=11))
    for i, s in enumerate(series):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        points = [at(x, y) for x, y in sorted(s.points)]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for (px, py), (_, y) in zip(points, sorted(s.points), strict=True):
            out += [
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{colour}"/>',
                # The first series' values under its points, the others' above,
                # so two close lines do not print over each other.
                _text(px + 5, py + 15 if i == 0 else py - 6, f"{y:,.0f}", size=11),
            ]
        legend_x = right + 24
        legend_y = plot_top + 18 * i
        out += [
            f'<rect x="{legend_x}" y="{legend_y - 9:.1f}" width="12" height="12" '
            f'fill="{colour}"/>',
            _text(legend_x + 18, legend_y + 2, s.name, size=12),
        ]
    return "\n".join(out), height


def stack(title: str, panels: Sequence[tuple[str, float]]) -> str:
    """Panels (from bar_chart / line_chart) one under another, under one title."""
    body, y = [], 30.0
    for elements, height in panels:
        body.append(f'<g transform="translate(0 {y:.1f})">{elements}</g>')
        y += height
    return _document(y + _PAD, title, body)
