"""One self-contained HTML report from tables and figures, and the figures `evaluate` puts in it.

Pure: pandas tables and matplotlib figures in, one HTML string out, with every figure embedded as a
base64 PNG and the style inline. No scripts and no links out, so the file opens the same in a
browser, in MLflow's artifact viewer, or mailed to a colleague, with nothing beside it.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #bbb; margin-top: 2em; }
.facts td { padding: .1em 1em .1em 0; }
.scroll { overflow-x: auto; margin: .5em 0 1.5em; }
table.data { border-collapse: collapse; font-size: 13px; }
table.data th, table.data td { border: 1px solid #ccc; padding: .25em .5em; text-align: right; white-space: nowrap; }
table.data th { background: #eee; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption, .none { color: #555; font-style: italic; }
"""


@dataclass(frozen=True, kw_only=True)
class Section:
    """One heading of the report: a short text, then tables and figures, each under its caption."""

    title: str
    text: str = ""
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    figures: Mapping[str, Figure] = field(default_factory=dict)


def figure_png(figure: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (the figure stays open: the caller may still log it)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _number(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def table_html(table: pd.DataFrame) -> str:
    """A table with escaped text, 4 significant digits and a dash for missing values."""
    if table.empty:
        return '<p class="none">none</p>'
    numbered = isinstance(table.index, pd.RangeIndex)  # row numbers say nothing: leave them out
    body = table.to_html(classes="data", border=0, na_rep="-", float_format=_number, escape=True, index=not numbered)
    return f'<div class="scroll">{body}</div>'


def _figure_html(caption: str, figure: Figure) -> str:
    encoded = base64.b64encode(figure_png(figure)).decode("ascii")
    text = html.escape(caption)
    return f'<figure><img alt="{text}" src="data:image/png;base64,{encoded}"><figcaption>{text}</figcaption></figure>'


def _section_html(section: Section) -> str:
    parts = [f"<h2>{html.escape(section.title)}</h2>"]
    if section.text:
        parts.append(f"<p>{html.escape(section.text)}</p>")
    for caption, table in section.tables.items():
        parts.append(f"<h3>{html.escape(caption)}</h3>{table_html(table)}")
    parts.extend(_figure_html(caption, figure) for caption, figure in section.figures.items())
    return "\n".join(parts)


def render_report(title: str, sections: Sequence[Section], facts: Mapping[str, str] | None = None) -> str:
    """The whole report: a title, a small table of facts (what was evaluated, when), then the sections."""
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td><td>{html.escape(value)}</td></tr>" for key, value in (facts or {}).items()
    )
    body = "\n".join(_section_html(section) for section in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f'<body><h1>{html.escape(title)}</h1><table class="facts">{rows}</table>\n{body}\n</body></html>\n'
    )


def eps_curves(table: pd.DataFrame, metrics: Sequence[str], line: Sequence[str], x: str = "eps") -> Figure:
    """One panel per metric against `x`, one line per distinct value of the `line` columns (rows without x left out)."""
    rows = table.dropna(subset=[x]).sort_values(x)
    figure, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        for key, group in rows.groupby(list(line), sort=True):
            axis.plot(group[x], group[metric], marker="o", label=" / ".join(str(part) for part in key if part != ""))
        axis.set_xlabel(x)
        axis.set_ylabel(metric)
        axis.set_ylim(-0.05, 1.05)
        axis.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="best")
    figure.tight_layout()
    return figure


def matrix_heatmap(matrix: pd.DataFrame, title: str, vmin: float = 0.0, vmax: float = 1.0) -> Figure:
    """A rates matrix as a heatmap with each cell's value written in it (NaN cells grey, marked "-")."""
    values = matrix.to_numpy(dtype=np.float64)
    height, width = values.shape
    # Room for the cells and for the longest labels (row labels to the left, column labels slanted below).
    row_chars = max((len(str(label)) for label in matrix.index), default=0)
    column_chars = max((len(str(label)) for label in matrix.columns), default=0)
    size = (2.5 + 0.9 * width + 0.07 * row_chars, 2.0 + 0.5 * height + 0.05 * column_chars)
    figure, axis = plt.subplots(figsize=size)
    colours = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")
    image = axis.imshow(np.ma.masked_invalid(values), cmap=colours, vmin=vmin, vmax=vmax, aspect="auto")
    for (row, column), value in np.ndenumerate(values):
        dark = math.isfinite(value) and value < (vmin + vmax) / 2
        text = f"{value:.2f}" if math.isfinite(value) else "-"
        axis.text(column, row, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    axis.set_xticks(range(width), [str(label) for label in matrix.columns], rotation=30, ha="right", fontsize=8)
    axis.set_yticks(range(height), [str(label) for label in matrix.index], fontsize=8)
    axis.set_xlabel(str(matrix.columns.name or ""))
    axis.set_ylabel(str(matrix.index.name or ""))
    axis.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    figure.tight_layout()
    return figure
