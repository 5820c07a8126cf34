"""Inline SVG bar charts (no scripts, no network). Floats here are only geometry, never money."""

from __future__ import annotations

from html import escape


def bar_chart(title: str, labels: list[str], values: list[int], value_text: list[str], *, chart_id: str,
              width: int = 640, height: int = 220, color: str = "#1f4e79") -> str:
    """A vertical bar chart; each bar carries its exact figure as a tooltip and a label."""
    n = max(1, len(values))
    top = max([v for v in values if v > 0], default=1)
    left, bottom, pad = 10, 40, 24
    plot_h = height - bottom - pad
    slot = (width - 2 * left) / n
    bars = []
    for i, (label, value, text) in enumerate(zip(labels, values, value_text, strict=True)):
        h = 0.0 if value <= 0 else max(1.0, plot_h * value / top)
        x = left + i * slot + slot * 0.15
        y = pad + plot_h - h
        bars.append(
            f'<g><title>{escape(label)}: {escape(text)}</title>'
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{color}"/>'
            f'<text x="{x + slot * 0.35:.1f}" y="{y - 3:.1f}" font-size="9" text-anchor="middle">'
            f'{escape(text)}</text>'
            f'<text x="{x + slot * 0.35:.1f}" y="{height - bottom + 14:.1f}" font-size="9" '
            f'text-anchor="middle">{escape(label)}</text></g>')
    return (f'<figure class="chart"><figcaption>{escape(title)}</figcaption>'
            f'<svg id="{escape(chart_id)}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="100%" role="img" aria-label="{escape(title)}">'
            f'<line x1="{left}" y1="{pad + plot_h}" x2="{width - left}" y2="{pad + plot_h}" stroke="#888"/>'
            f'{"".join(bars)}</svg></figure>')
