"""Clean classification quality of a victim: the numbers a model card and the registry carry."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

from medadv.data.base import Dataset


def classification_scores(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy, macro F1 and macro one-vs-rest AUC (NaN when a class is missing from y_true)."""
    y_pred = probs.argmax(axis=1)
    scores = {
        "accuracy": float(np.mean(y_pred == y_true)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=range(probs.shape[1]), zero_division=0)),
        "auc": float("nan"),
    }
    if len(np.unique(y_true)) == probs.shape[1]:
        positive = probs[:, 1] if probs.shape[1] == 2 else probs
        scores["auc"] = float(roc_auc_score(y_true, positive, multi_class="ovr", average="macro"))
    return scores


def confusion_figure(y_true: np.ndarray, y_pred: np.ndarray, class_names: tuple[str, ...]) -> Figure:
    """Counts of true (rows) against predicted (columns) classes."""
    counts = confusion_matrix(y_true, y_pred, labels=range(len(class_names)))
    figure, axis = plt.subplots(figsize=(1.2 * len(class_names) + 2, 1.2 * len(class_names) + 1.5))
    axis.imshow(counts, cmap="Blues")
    axis.set_xticks(range(len(class_names)), class_names)
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (row, col), count in np.ndenumerate(counts):
        axis.text(
            col, row, str(count), ha="center", va="center", color="white" if count > counts.max() / 2 else "black"
        )
    figure.tight_layout()
    return figure


def prediction_table(dataset: Dataset, probs: np.ndarray) -> pd.DataFrame:
    """One row per sample: id, true and predicted class, and the probability of every class."""
    table = pd.DataFrame({"id": dataset.ids, "y_true": dataset.y, "y_pred": probs.argmax(axis=1)})
    for index, name in enumerate(dataset.class_names):
        table[f"prob_{name}"] = probs[:, index]
    return table
