"""Small server-rendered SVG charts.

Hand-written rather than a charting library: the dashboard must work offline with
no build step, and a polyline and some bars are all these pages need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

PALETTE = ("#3559e0", "#c01048", "#12805c", "#b54708", "#7a5af8", "#0e9384")
WIDTH, HEIGHT, PAD = 640, 180, 28


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** (len(str(int(value))) - 1)
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * magnitude:
            return step * magnitude
    return value


def line_chart(
    series: Mapping[str, Sequence[float]], labels: Sequence[str], unit: str = ""
) -> Markup:
    """One polyline per series over shared x labels (oldest first)."""
    points = max((len(values) for values in series.values()), default=0)
    if points < 2:
        return Markup(
            '<p class="empty">Not enough samples yet: the chart fills in as time passes.</p>'
        )
    top = _nice_max(max((max(v, default=0) for v in series.values()), default=0))
    span_x, span_y = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT + 18}" role="img">']
    for fraction in (0, 0.5, 1):
        y = PAD + span_y * (1 - fraction)
        parts.append(f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{y}" y2="{y}" stroke="#e4e7ec"/>')
        parts.append(f'<text x="2" y="{y + 3}">{top * fraction:g}{escape(unit)}</text>')
    for index, (name, values) in enumerate(series.items()):
        shade = index % len(PALETTE)  # the legend's colour is class series-<shade> in the CSS
        color = PALETTE[shade]
        step = span_x / max(len(values) - 1, 1)
        coords = " ".join(
            f"{PAD + i * step:.1f},{PAD + span_y * (1 - v / top):.1f}" for i, v in enumerate(values)
        )
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        parts.append(
            f'<text x="{PAD + index * 120}" y="{HEIGHT + 14}" class="series-{shade}">'
            f"■ {escape(name)}</text>"
        )
    if labels:
        parts.append(f'<text x="{PAD}" y="{HEIGHT - 6}">{escape(labels[0])}</text>')
        last = escape(labels[-1])
        parts.append(f'<text x="{WIDTH - PAD}" y="{HEIGHT - 6}" text-anchor="end">{last}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (every text in it went through escape())


def bar_chart(items: Sequence[tuple[str, float]], formatter: str = "{:g}") -> Markup:
    """Horizontal bars, largest first."""
    if not items:
        return Markup('<p class="empty">Nothing to chart yet.</p>')
    ordered = sorted(items, key=lambda item: item[1], reverse=True)[:12]
    top = max(value for _, value in ordered) or 1
    row, label_width = 22, 160
    height = row * len(ordered) + 4
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img">']
    for i, (label, value) in enumerate(ordered):
        y = i * row + 2
        width = (WIDTH - label_width - 90) * value / top
        parts.append(f'<text x="0" y="{y + 14}">{escape(label[:28])}</text>')
        parts.append(
            f'<rect x="{label_width}" y="{y + 3}" width="{width:.1f}" height="14" rx="3" '
            f'fill="{PALETTE[0]}"/>'
        )
        text = escape(formatter.format(value))
        parts.append(f'<text x="{label_width + width + 6:.1f}" y="{y + 14}">{text}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (every text in it went through escape())
