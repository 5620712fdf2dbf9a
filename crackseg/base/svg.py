"""Line charts as inline SVG text: the PR curves and loss curves of ``crackseg report``.

No matplotlib, no JavaScript: the page stays one self-contained file that prints and
zooms crisply. Labels are XML-escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

#: Colour-blind-safe series colours (Okabe & Ito), cycled.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")


@dataclass
class Series:
    """One line: ``x`` and ``y`` of equal length (NaN points are skipped), an optional marked point."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    mark: tuple[float, float] | None = None
    mark_label: str = ""


@dataclass
class Chart:
    """Axes of a line chart; ``xlim``/``ylim`` default to the data's range."""

    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    xlim: tuple[float, float] | None = None
    ylim: tuple[float, float] | None = None
    #: draw iso-F1 curves (precision–recall charts)
    iso_f: bool = False
    width: int = 380
    height: int = 310


_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 12, 34, 40


def _finite(xs: Sequence[float], ys: Sequence[float]) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in zip(xs, ys) if math.isfinite(float(a)) and math.isfinite(float(b))]


def _limits(values: list[float], fixed: tuple[float, float] | None) -> tuple[float, float]:
    if fixed is not None:
        return fixed
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.04 * (hi - lo)
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    raw = (hi - lo) / max(n, 1)
    step = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= step * mult:
            step *= mult
            break
    first = math.ceil(lo / step - 1e-9) * step
    out, t = [], first
    while t <= hi + 1e-9 * step:
        out.append(round(t, 10))
        t += step
    return out


def _fmt(t: float) -> str:
    return f"{t:g}" if abs(t) >= 1e-3 or t == 0 else f"{t:.1e}"


def line_chart(chart: Chart) -> str:
    """The chart as an ``<svg>`` element (a string), with a legend under the title."""
    pts = [_finite(s.x, s.y) for s in chart.series]
    x0, x1 = _limits([p[0] for ps in pts for p in ps], chart.xlim)
    y0, y1 = _limits([p[1] for ps in pts for p in ps], chart.ylim)
    w, h = chart.width, chart.height
    legend_h = 14 * len(chart.series)
    top = _TOP + legend_h
    pw, ph = w - _LEFT - _RIGHT, h - top - _BOTTOM

    def sx(x: float) -> float:
        return _LEFT + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - (y - y0) / (y1 - y0) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
           f'role="img" aria-label="{escape(chart.title)}" class="chart">',
           f'<text x="{w / 2:.1f}" y="16" text-anchor="middle" class="chart-title">{escape(chart.title)}</text>']
    for i, s in enumerate(chart.series):
        colour = PALETTE[i % len(PALETTE)]
        ly = _TOP + 14 * i
        out.append(f'<line x1="{_LEFT}" y1="{ly - 4}" x2="{_LEFT + 18}" y2="{ly - 4}" stroke="{colour}" '
                   f'stroke-width="2"/><text x="{_LEFT + 24}" y="{ly}" class="legend">{escape(s.label)}</text>')
    out.append(f'<g><rect x="{_LEFT}" y="{top}" width="{pw}" height="{ph}" class="plot"/>')
    for t in _ticks(x0, x1):
        out.append(f'<line x1="{sx(t):.1f}" y1="{top}" x2="{sx(t):.1f}" y2="{top + ph}" class="grid"/>'
                   f'<text x="{sx(t):.1f}" y="{top + ph + 14}" text-anchor="middle" class="tick">{_fmt(t)}</text>')
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{_LEFT}" y1="{sy(t):.1f}" x2="{_LEFT + pw}" y2="{sy(t):.1f}" class="grid"/>'
                   f'<text x="{_LEFT - 5}" y="{sy(t) + 3:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>')
    if chart.iso_f:
        for f in (0.2, 0.4, 0.6, 0.8):
            r0 = f / (2 - f) + 1e-3  # where the curve reaches precision 1
            rs = [r0 + k * (1 - r0) / 60 for k in range(61)]
            curve = [(r, f * r / (2 * r - f)) for r in rs]
            curve = [(r, p) for r, p in curve if y0 <= p <= y1 and x0 <= r <= x1]
            if curve:
                out.append('<polyline class="iso" points="' + " ".join(f"{sx(r):.1f},{sy(p):.1f}" for r, p in curve)
                           + f'"/><text x="{sx(curve[-1][0]) - 2:.1f}" y="{sy(curve[-1][1]) - 3:.1f}" '
                           f'text-anchor="end" class="iso-label">F={f:.1f}</text>')
    for i, (s, ps) in enumerate(zip(chart.series, pts)):
        colour = PALETTE[i % len(PALETTE)]
        if len(ps) > 1:
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="'
                       + " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in ps) + '"/>')
        elif ps:
            out.append(f'<circle cx="{sx(ps[0][0]):.1f}" cy="{sy(ps[0][1]):.1f}" r="2.5" fill="{colour}"/>')
        if s.mark is not None and all(math.isfinite(v) for v in s.mark):
            mx, my = sx(s.mark[0]), sy(s.mark[1])
            out.append(f'<circle cx="{mx:.1f}" cy="{my:.1f}" r="4" fill="none" stroke="{colour}" stroke-width="2">'
                       f'<title>{escape(s.mark_label)}</title></circle>')
            if s.mark_label:
                out.append(f'<text x="{mx + 6:.1f}" y="{my - 6:.1f}" class="mark">{escape(s.mark_label)}</text>')
    out.append("</g>")
    out.append(f'<text x="{_LEFT + pw / 2:.1f}" y="{h - 6}" text-anchor="middle" class="axis">'
               f'{escape(chart.xlabel)}</text>')
    out.append(f'<text transform="translate(13 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle" class="axis">'
               f'{escape(chart.ylabel)}</text>')
    out.append("</svg>")
    return "".join(out)
