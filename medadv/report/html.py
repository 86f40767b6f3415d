"""One self-contained HTML report from tables and figures.

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

import pandas as pd
from matplotlib.figure import Figure

from medadv.report.records import short_model

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


def shown(table: pd.DataFrame) -> pd.DataFrame:
    """A table as the report shows it: model URIs by their short names, run ids by their first 8 characters
    (the CSV and LaTeX files keep them whole)."""
    result = table.copy()
    for column in result.columns:
        if str(column) == "run_id" or str(column).endswith("_run_id"):
            result[column] = result[column].map(lambda run_id: str(run_id)[:8])
        elif pd.api.types.is_string_dtype(result[column].dtype):  # object or (pandas 3) str columns
            result[column] = result[column].map(_short_uris)
    result.columns = pd.Index([_short_uris(c) for c in result.columns], name=result.columns.name)
    if result.index.name == "run_id":
        result.index = pd.Index([str(run_id)[:8] for run_id in result.index], name="run")
    elif not isinstance(result.index, pd.RangeIndex):
        result.index = result.index.map(_short_uris)
    return result


def _short_uris(value: object) -> object:
    """Every model URI in a label (or in each part of a tuple label) by its short name."""
    if isinstance(value, tuple):
        return tuple(_short_uris(part) for part in value)
    if not isinstance(value, str):
        return value
    return re.sub(r"(?:models|runs):/\S+", lambda uri: short_model(uri[0]), value)


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
