"""The report's own figures: rates against eps with their intervals, and rates matrices as heatmaps."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


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
