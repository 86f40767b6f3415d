"""The report's own figures: rates against eps with their intervals, rates matrices as heatmaps, and the grid of
an image attack's examples beside their Grad-CAM maps."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from medadv.attacks.result import AttackResult
from medadv.explain.figures import HEATMAP_CMAP
from medadv.report.records import Heatmaps


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


def example_grid(result: AttackResult, heatmaps: Heatmaps, count: int = 3) -> Figure:
    """Per sample (fooled ones first, `count` at most): clean image, adversarial image, the perturbation amplified
    so the largest change shown fills the colour range (the factor stated), and the Grad-CAM map over the clean
    and over the adversarial image: what an attack does to the input and to the explanation, in one figure."""
    position = {str(sample_id): k for k, sample_id in enumerate(heatmaps.ids)}
    fooled_first = np.argsort(result.y_adv == result.y_clean, kind="stable")
    rows = [i for i in fooled_first if str(result.ids[i]) in position][:count]
    if not rows:
        raise ValueError("no sample of the attack result has a Grad-CAM map")
    scale = float(np.abs(result.delta[rows]).max()) or 1.0
    names = result.class_names

    def named(label: int) -> str:
        return names[label] if label < len(names) else str(label)

    figure, axes = plt.subplots(len(rows), 5, figsize=(12, 2.6 * len(rows)), squeeze=False)
    for axis_row, i in zip(axes, rows, strict=True):
        maps = heatmaps.clean[position[str(result.ids[i])]], heatmaps.adversarial[position[str(result.ids[i])]]
        panels = (
            (result.x[i], None, f"{result.ids[i]}: clean, predicted {named(result.y_clean[i])}"),
            (result.x_adv[i], None, f"adversarial, predicted {named(result.y_adv[i])}"),
            (result.x[i], maps[0], "Grad-CAM, clean"),
            (result.x_adv[i], maps[1], "Grad-CAM, adversarial"),
        )
        for axis, (image, heatmap, title) in zip(axis_row[[0, 1, 3, 4]], panels, strict=True):
            _image(axis, image, result.clip_range, heatmap)
            axis.set_title(title, fontsize=8)
        _perturbation(axis_row[2], result.delta[i], scale)
        axis_row[2].set_title(f"perturbation x{0.5 / scale:.3g}", fontsize=8)
    figure.suptitle(
        f"perturbation amplified x{0.5 / scale:.3g}: white (grey for colour images) is no change, the colour limits "
        f"the largest |delta| shown ({scale:.3g})",
        fontsize=9,
    )
    figure.tight_layout()
    return figure


def _image(axis: Axes, image: np.ndarray, clip_range: tuple[float, float], heatmap: np.ndarray | None) -> None:
    """An image on its data's value range (clean and adversarial alike), grey or RGB, the heatmap blended over."""
    low, high = clip_range if all(map(math.isfinite, clip_range)) else (float(image.min()), float(image.max()))
    shown = np.clip((image - low) / ((high - low) or 1.0), 0.0, 1.0)
    axis.imshow(shown[..., 0] if shown.shape[-1] == 1 else shown, cmap="gray", vmin=0.0, vmax=1.0)
    if heatmap is not None:
        axis.imshow(heatmap, cmap=HEATMAP_CMAP, vmin=0.0, vmax=1.0, alpha=0.45)
    axis.axis("off")


def _perturbation(axis: Axes, delta: np.ndarray, scale: float) -> None:
    """delta on the colour limits +-scale: blue-white-red for one channel, mid-grey for no change in RGB."""
    if delta.shape[-1] == 1:
        axis.imshow(delta[..., 0], cmap="seismic", vmin=-scale, vmax=scale)
    else:
        axis.imshow(np.clip(0.5 + 0.5 * delta / scale, 0.0, 1.0))
    axis.axis("off")
