"""Figures that put clean and adversarial heatmaps side by side, for a reader to judge by eye.

Built on `matplotlib.figure.Figure` without pyplot, so no global figure state leaks between calls;
the caller saves or logs the returned figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from medadv.explain.gradcam import ExplainError

HEATMAP_CMAP = "jet"


def overlay_figure(
    x_clean: np.ndarray,
    clean_maps: np.ndarray,
    x_adv: np.ndarray | None = None,
    adv_maps: np.ndarray | None = None,
    *,
    titles: Sequence[str] | None = None,
    max_samples: int = 4,
    alpha: float = 0.5,
) -> Figure:
    """One row per sample (the first `max_samples`).

    Images: clean image | clean heatmap over it | adversarial image | adversarial heatmap over it.
    ECGs (inputs (n, L, 1)): clean signal | adversarial signal, each over its heatmap as a colour band.
    Without `x_adv` only the clean columns are drawn. `titles` label the rows (for example id and classes).
    """
    pairs = [("clean", x_clean, clean_maps)]
    if x_adv is not None or adv_maps is not None:
        if x_adv is None or adv_maps is None:
            raise ExplainError("pass both x_adv and adv_maps, or neither")
        pairs.append(("adversarial", x_adv, adv_maps))
    for _, x, maps in pairs:
        if x.shape != x_clean.shape or maps.shape != x.shape[:-1]:
            raise ExplainError(f"inputs {x.shape} and heatmaps {maps.shape} do not match clean inputs {x_clean.shape}")
    n = min(len(x_clean), max_samples)
    if n == 0:
        raise ExplainError("no samples to draw")
    signal = x_clean.ndim == 3
    columns = len(pairs) if signal else 2 * len(pairs)
    figure = Figure(figsize=(4.5 * columns if signal else 2.6 * columns, 2.2 * n + 0.6), layout="constrained")
    axes = figure.subplots(n, columns, squeeze=False)
    for row in range(n):
        for column, (name, x, maps) in enumerate(pairs):
            if signal:
                _draw_signal(axes[row, column], x[row, :, 0], maps[row], alpha)
                axes[row, column].set_title(name, fontsize=9)
            else:
                _draw_image(axes[row, 2 * column], x[row], None, alpha)
                _draw_image(axes[row, 2 * column + 1], x[row], maps[row], alpha)
                axes[row, 2 * column].set_title(f"{name} image", fontsize=9)
                axes[row, 2 * column + 1].set_title(f"{name} heatmap", fontsize=9)
        if titles is not None:
            axes[row, 0].set_ylabel(titles[row], fontsize=8)
    mappable = axes[0, -1].images[-1]
    figure.colorbar(mappable, ax=axes, shrink=0.6, label="heatmap")
    return figure


def _draw_image(ax: Axes, image: np.ndarray, heatmap: np.ndarray | None, alpha: float) -> None:
    """The image scaled to [0, 1] for display (grey or RGB), with the heatmap blended over it if given."""
    low, high = float(image.min()), float(image.max())
    shown = (image - low) / (high - low) if high > low else np.zeros_like(image)
    ax.imshow(shown[..., 0] if shown.shape[-1] == 1 else shown, cmap="gray", vmin=0.0, vmax=1.0)
    if heatmap is not None:
        ax.imshow(heatmap, cmap=HEATMAP_CMAP, vmin=0.0, vmax=1.0, alpha=alpha)
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_signal(ax: Axes, signal: np.ndarray, heatmap: np.ndarray, alpha: float) -> None:
    """The signal as a line over its heatmap, drawn as a colour band across the full height."""
    margin = 0.05 * (float(signal.max() - signal.min()) or 1.0)
    low, high = float(signal.min()) - margin, float(signal.max()) + margin
    ax.imshow(
        heatmap[None, :],
        cmap=HEATMAP_CMAP,
        vmin=0.0,
        vmax=1.0,
        alpha=alpha,
        aspect="auto",
        extent=(0.0, float(len(signal)), low, high),
    )
    ax.plot(np.arange(len(signal)) + 0.5, signal, color="black", linewidth=0.7)
    ax.set_xlim(0.0, float(len(signal)))
    ax.set_ylim(low, high)
    ax.set_xlabel("sample", fontsize=8)
