"""A small SVG chart, drawn on the server: decisions per time bucket, one bar per region
side by side. No script, no CDN: the page is whole when it arrives."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

__all__ = ["bars"]

PALETTE = ("#2563eb", "#d97706", "#059669", "#7c3aed", "#dc2626", "#0891b2")
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 880, 260, 48, 44, 16


def bars(buckets: Sequence[str], series: Mapping[str, Mapping[str, int]], title: str) -> str:
    """`series`: region -> bucket -> count. Buckets left to right, as given."""
    regions = sorted(series)
    highest = max([1, *(n for counts in series.values() for n in counts.values())])
    tick = max(1, math.ceil(highest / 4))  # four whole-number steps
    peak = tick * 4
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(1, len(buckets))
    bar = max(1.0, (slot - 4) / max(1, len(regions)))
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} '
        f'{HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for step in range(5):  # gridlines and their counts
        value = tick * step
        y = TOP + plot_h - plot_h * step / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">{value}</text>'
        )
    for i, bucket in enumerate(buckets):
        x0 = LEFT + i * slot + 2
        for j, region in enumerate(regions):
            count = series[region].get(bucket, 0)
            h = plot_h * count / peak
            parts.append(
                f'<rect class="bar" data-region="{escape(region)}" x="{x0 + j * bar:.1f}" '
                f'y="{TOP + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(region)} {escape(bucket)}: '
                f"{count}</title></rect>"
            )
        if len(buckets) <= 12 or i % max(1, len(buckets) // 12) == 0:
            parts.append(
                f'<text x="{x0 + slot / 2:.1f}" y="{TOP + plot_h + 14}" class="axis" '
                f'text-anchor="middle">{escape(_label(bucket))}</text>'
            )
    for j, region in enumerate(regions):  # legend
        x = LEFT + j * 140
        parts.append(
            f'<rect x="{x}" y="{HEIGHT - 14}" width="10" height="10" '
            f'fill="{PALETTE[j % len(PALETTE)]}"/>'
            f'<text x="{x + 14}" y="{HEIGHT - 5}" class="axis">{escape(region)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _label(bucket: str) -> str:
    """`2026-12-02T21` -> `21:00`; a day or minute bucket as its last part."""
    if len(bucket) == 13:
        return f"{bucket[-2:]}:00"
    return bucket[-5:]
