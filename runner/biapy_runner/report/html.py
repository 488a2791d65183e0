"""The report page: one self-contained HTML file (no script, no network) with its pictures as
PNG files beside it (``charts/``, ``previews/``)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

import numpy as np
import pandas as pd

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f0f0f0; }
.warnings li { color: #8a4b00; }
figure { margin: 0.8em 0; }
figure img { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; }
.grid figure { width: 200px; }
.wrong { color: #c00; font-weight: bold; }
"""


@dataclass
class Preview:
    """One image's preview in the page: its file (relative to the page), column and row names,
    and an optional note (e.g. the predicted class)."""

    stem: str
    file: str
    columns: list[str]
    rows: list[str]
    note: str = ""
    wrong: bool = False
    width: int = 0


@dataclass
class Page:
    """Everything the page shows."""

    title: str
    summary: dict[str, str]
    totals: pd.DataFrame | None = None
    per_image: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)
    charts: list[tuple[str, str]] = field(default_factory=list)
    previews: list[Preview] = field(default_factory=list)
    legend: str = ""
    grid: bool = False


def _cell(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, (int, np.integer)):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def table_html(frame: pd.DataFrame, index: bool = False) -> str:
    """An HTML table of ``frame`` (numbers right-aligned, 4 significant digits)."""
    head = ([frame.index.name or ""] if index else []) + [str(c) for c in frame.columns]
    lines = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for label, row in frame.iterrows():
        cells = ([f"<th>{html.escape(str(label))}</th>"] if index else []) + [
            _cell(v) for v in row.tolist()
        ]
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _summary(summary: Mapping[str, str]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in summary.items()
    )
    return f"<table>{rows}</table>"


def _figure(src: str, alt: str, caption: str, css: str = "", width: int = 0) -> str:
    cls = f' class="{css}"' if css else ""
    size = f' width="{width}"' if width else ""
    return (
        f'<figure><img src="{quote(src)}" alt="{html.escape(alt)}"{size}>'
        f"<figcaption{cls}>{caption}</figcaption></figure>"
    )


def shown_width(width: int, target: int = 900) -> int:
    """Small previews are shown enlarged by a whole factor (at most 3) towards ``target``
    pixels; 0 (natural size) for the others."""
    zoom = min(3, target // max(width, 1))
    return width * zoom if zoom > 1 else 0


def _previews(previews: Sequence[Preview], grid: bool) -> list[str]:
    parts = ['<div class="grid">'] if grid else []
    for p in previews:
        caption = f"<b>{html.escape(p.stem)}</b>"
        if p.note:
            caption += f" &mdash; {html.escape(p.note)}"
        if not grid:
            caption += "<br>columns: " + " | ".join(html.escape(c) for c in p.columns)
            if len(p.rows) > 1:
                caption += "<br>rows: " + " | ".join(html.escape(r) for r in p.rows)
        width = 0 if grid else shown_width(p.width)
        parts.append(_figure(p.file, p.stem, caption, "wrong" if p.wrong else "", width))
    if grid:
        parts.append("</div>")
    return parts


def render(page: Page) -> str:
    """The page as an HTML document."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<link rel="icon" href="data:,">',  # no favicon request: the page needs nothing else
        f"<title>{html.escape(page.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(page.title)}</h1>",
        _summary(page.summary),
    ]
    if page.warnings:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in page.warnings)
        out.append(f'<h2>Warnings</h2><ul class="warnings">{items}</ul>')
    if page.totals is not None and len(page.totals):
        out += ["<h2>Metrics (all images)</h2>", table_html(page.totals, index=True)]
    if page.per_image is not None and len(page.per_image):
        out += ["<h2>Metrics per image</h2>", table_html(page.per_image)]
    if page.previews:
        out.append("<h2>Images</h2>")
        if page.legend:
            out.append(f"<p>{html.escape(page.legend)}</p>")
        out += _previews(page.previews, page.grid)
    if page.charts:
        out.append("<h2>Charts</h2>")
        out += [_figure(src, title, html.escape(title)) for title, src in page.charts]
    out.append("</body></html>")
    return "\n".join(out) + "\n"
