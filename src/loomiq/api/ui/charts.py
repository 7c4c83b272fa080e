"""Small server-rendered SVG charts (no chart library): bars and lines over time buckets, accessible by a title
and a table-like text alternative."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

W, H, PAD = 560, 140, 24


def bars(title: str, labels: Sequence[str], series: Sequence[tuple[str, str, Sequence[float]]], unit: str = "") -> str:
    """Stacked bars: `series` is (name, css class, values per label)."""
    n = max(1, len(labels))
    totals = [sum(s[2][i] for s in series) for i in range(len(labels))]
    top = max(totals, default=0) or 1
    bw = (W - 2 * PAD) / n
    out = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">'
           f"<title>{escape(title)}</title>"]
    for i in range(len(labels)):
        y: float = H - PAD
        for name, css, values in series:
            v = values[i]
            if v <= 0:
                continue
            h = (H - 2 * PAD) * v / top
            y -= h
            out.append(f'<rect class="{css}" x="{PAD + i * bw + 1:.1f}" y="{y:.1f}" width="{max(bw - 2, 1):.1f}" '
                       f'height="{h:.1f}"><title>{escape(labels[i])} {escape(name)}: {v:g}{unit}</title></rect>')
    out.append(_axes(labels, top, unit))
    out.append("</svg>")
    return "".join(out)


def lines(title: str, labels: Sequence[str], series: Sequence[tuple[str, str, Sequence[float | None]]],
          unit: str = "") -> str:
    """Lines: `series` is (name, css class, values per label; None is a gap)."""
    n = max(1, len(labels))
    top = max((v for _, _, vs in series for v in vs if v is not None), default=0) or 1
    step = (W - 2 * PAD) / max(1, n - 1)
    out = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">'
           f"<title>{escape(title)}</title>"]
    for name, css, values in series:
        points = [f"{PAD + i * step:.1f},{H - PAD - (H - 2 * PAD) * v / top:.1f}" for i, v in enumerate(values)
                  if v is not None]
        if points:
            out.append(f'<polyline class="{css}" fill="none" points="{" ".join(points)}">'
                       f"<title>{escape(name)}</title></polyline>")
    out.append(_axes(labels, top, unit))
    out.append("</svg>")
    return "".join(out)


def _axes(labels: Sequence[str], top: float, unit: str) -> str:
    first = escape(labels[0]) if labels else ""
    last = escape(labels[-1]) if labels else ""
    return (f'<line class="axis" x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}"/>'
            f'<text class="tick" x="{PAD}" y="{H - 6}">{first}</text>'
            f'<text class="tick" x="{W - PAD}" y="{H - 6}" text-anchor="end">{last}</text>'
            f'<text class="tick" x="{PAD}" y="{PAD - 8}">{top:g}{escape(unit)}</text>')
