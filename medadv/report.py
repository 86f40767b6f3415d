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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1320px; color: #222; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #bbb; margin-top: 2em; }
.facts td { padding: .1em 1em .1em 0; }
.scroll { overflow-x: auto; margin: .5em 0 1.5em; }
table.data { border-collapse: collapse; font-size: 13px; }
table.data th, table.data td { border: 1px solid #ccc; padding: .25em .5em; text-align: right; white-space: nowrap; }
table.data th { background: #eee; white-space: normal; max-width: 9em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-style: italic; }
"""


@dataclass(frozen=True, kw_only=True)
class Section:
    """One heading of the report: a short text, then tables and figures, each under its caption."""

    title: str
    text: str = ""
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    figures: Mapping[str, Figure] = field(default_factory=dict)
    images: Mapping[str, bytes] = field(default_factory=dict)  # PNGs as they are, e.g. figures other runs logged

    def is_empty(self) -> bool:
        return all(table.empty for table in self.tables.values()) and not self.figures and not self.images


def figure_png(figure: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (the figure stays open: the caller may still log it)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def short_model(uri: str) -> str:
    """A model URI as a legend or table cell shows it: models:/NAME/3 -> NAME v3, models:/NAME@alias ->
    NAME@alias, runs:/<id>/path -> run <first 8 characters of id>; anything else as it is."""
    if version := re.fullmatch(r"models:/([^/@]+)/(\d+)", uri):
        return f"{version[1]} v{version[2]}"
    if alias := re.fullmatch(r"models:/([^/@]+@.+)", uri):
        return alias[1]
    if logged := re.fullmatch(r"runs:/([0-9a-f]+)/.*", uri):
        return f"run {logged[1][:8]}"
    return uri


def _number(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def table_html(table: pd.DataFrame) -> str:
    """A table with escaped text, 4 significant digits and a dash for missing values (nothing for no rows)."""
    if table.empty:
        return ""
    numbered = isinstance(table.index, pd.RangeIndex)  # row numbers say nothing: leave them out
    body = table.to_html(classes="data", border=0, na_rep="-", float_format=_number, escape=True, index=not numbered)
    return f'<div class="scroll">{body}</div>'


def _figure_html(caption: str, png: bytes) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    text = html.escape(caption)
    return f'<figure><img alt="{text}" src="data:image/png;base64,{encoded}"><figcaption>{text}</figcaption></figure>'


def _section_html(section: Section) -> str:
    parts = [f"<h2>{html.escape(section.title)}</h2>"]
    if section.text:
        parts.append(f"<p>{html.escape(section.text)}</p>")
    for caption, table in section.tables.items():
        if not table.empty:
            parts.append(f"<h3>{html.escape(caption)}</h3>{table_html(table)}")
    parts.extend(_figure_html(caption, figure_png(figure)) for caption, figure in section.figures.items())
    parts.extend(_figure_html(caption, png) for caption, png in section.images.items())
    return "\n".join(parts)


def render_report(title: str, sections: Sequence[Section], facts: Mapping[str, str] | None = None) -> str:
    """The whole report: a title, a small table of facts (what was evaluated, when), then the sections that
    have something to show (a section with no rows and no figures is left out, not printed as "none")."""
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td><td>{html.escape(value)}</td></tr>" for key, value in (facts or {}).items()
    )
    body = "\n".join(_section_html(section) for section in sections if not section.is_empty())
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f'<body><h1>{html.escape(title)}</h1><table class="facts">{rows}</table>\n{body}\n</body></html>\n'
    )


def eps_curves(table: pd.DataFrame, metrics: Sequence[str], line: Sequence[str], x: str = "eps") -> Figure:
    """One panel per metric against `x`, one series per distinct value of the `line` columns (rows without x
    left out), its 95% interval drawn where the table has `<metric>_low` and `<metric>_high` columns.

    Over several x values a line with the x values run as ticks; at a single x, one bar per series with its
    interval, so a lone eps is not a dot on an axis zoomed to nothing.
    """
    rows = table.dropna(subset=[x]).sort_values(x)
    single = rows[x].nunique() == 1
    figure, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        bounds = (f"{metric}_low", f"{metric}_high")
        groups = list(rows.groupby(list(line), sort=True))
        for position, (key, group) in enumerate(groups):
            label = " / ".join(str(part) for part in key if part != "")
            interval = group[list(bounds)].to_numpy(dtype=np.float64).T if set(bounds) <= set(group) else None
            if single:
                error = None if interval is None else np.abs(interval - group[metric].to_numpy())
                axis.bar(position, group[metric], 0.5, yerr=error, capsize=4, label=label, color=f"C{position}")
            else:
                drawn = axis.plot(group[x], group[metric], marker="o", label=label)
                if interval is not None:
                    axis.fill_between(group[x], *interval, color=drawn[0].get_color(), alpha=0.15, lw=0)
        if single:
            axis.set_xticks(range(len(groups)), [])
            axis.set_xlim(-0.75, max(len(groups), 2) - 0.25)  # a lone bar stays a bar, not the whole panel
            axis.set_xlabel(f"{x} = {rows[x].iloc[0]:g}")
        else:
            values = sorted(rows[x].unique())
            if len(values) <= 8:
                axis.set_xticks(values, [f"{value:g}" for value in values])
            axis.set_xlabel(x)
        axis.set_ylabel(metric.replace("_", " "))
        axis.set_ylim(-0.05, 1.05)
        axis.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="best")
    figure.tight_layout()
    return figure


def matrix_heatmap(
    matrix: pd.DataFrame, title: str, vmin: float = 0.0, vmax: float = 1.0, counts: pd.DataFrame | None = None
) -> Figure:
    """A rates matrix as a heatmap with each cell's value written in it (NaN cells grey, marked "-"), and under
    it the cell's sample count where `counts` (same labels) has one."""
    values = matrix.to_numpy(dtype=np.float64)
    height, width = values.shape
    # Room for the cells and for the longest labels (row labels to the left, column labels slanted below).
    row_chars = max((len(str(label)) for label in matrix.index), default=0)
    column_chars = max((len(str(label)) for label in matrix.columns), default=0)
    sizes = None if counts is None else counts.reindex(index=matrix.index, columns=matrix.columns).to_numpy(float)
    size = (2.5 + 0.9 * width + 0.07 * row_chars, 2.0 + (0.5 if sizes is None else 0.7) * height + 0.05 * column_chars)
    figure, axis = plt.subplots(figsize=size)
    colours = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")
    image = axis.imshow(np.ma.masked_invalid(values), cmap=colours, vmin=vmin, vmax=vmax, aspect="auto")
    for (row, column), value in np.ndenumerate(values):
        dark = math.isfinite(value) and value < (vmin + vmax) / 2
        text = f"{value:.2f}" if math.isfinite(value) else "-"
        if sizes is not None and math.isfinite(sizes[row, column]):
            text += f"\nn={sizes[row, column]:.0f}"
        axis.text(column, row, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    axis.set_xticks(range(width), [str(label) for label in matrix.columns], rotation=30, ha="right", fontsize=8)
    axis.set_yticks(range(height), [str(label) for label in matrix.index], fontsize=8)
    axis.set_xlabel(str(matrix.columns.name or ""))
    axis.set_ylabel(str(matrix.index.name or ""))
    axis.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    figure.tight_layout()
    return figure
