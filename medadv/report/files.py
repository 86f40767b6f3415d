"""The report as files: the HTML page, and beside it each table as CSV, Parquet and LaTeX under `tables/` and
the report's own figures as PNG and SVG under `figures/`, for MLflow's UI and for a paper."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from medadv.report.html import Section, render_report


def write_report(
    page: Path, title: str, sections: Sequence[Section], tables: Mapping[str, pd.DataFrame], facts: Mapping[str, str]
) -> None:
    """`page` (the HTML report), `tables/` and `figures/` beside it; the figures are closed once written."""
    page.write_text(render_report(title, sections, facts))
    _write_tables(tables, page.parent / "tables")
    _write_figures(sections, page.parent / "figures")


def _write_tables(tables: Mapping[str, pd.DataFrame], folder: Path) -> None:
    """Each table as CSV, Parquet and LaTeX (a booktabs tabular, special characters escaped, 4 significant digits,
    missing values as -)."""
    folder.mkdir()
    for name, table in tables.items():
        table.to_csv(folder / f"{name}.csv")
        table.to_parquet(folder / f"{name}.parquet")
        numbered = isinstance(table.index, pd.RangeIndex)
        latex = table.to_latex(index=not numbered, na_rep="-", float_format=lambda value: f"{value:.4g}", escape=True)
        (folder / f"{name}.tex").write_text(latex)


def _write_figures(sections: Sequence[Section], folder: Path) -> None:
    """The report's own figures also as PNG and SVG files under figures/ (named after their captions), for
    MLflow's UI and for a paper (the example grids the report draws among them); the figures the example runs
    logged stay where they logged them."""
    folder.mkdir()
    for section in sections:
        for caption, figure in section.figures.items():
            name = re.sub(r"[^0-9A-Za-z]+", "_", caption).strip("_")
            for suffix in ("png", "svg"):
                figure.savefig(folder / f"{name}.{suffix}", dpi=100, bbox_inches="tight")
            plt.close(figure)
