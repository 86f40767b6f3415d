"""Explanations of clean and adversarial predictions: class activation maps through tf-keras-vis, and figures."""

from medadv.explain.figures import overlay_figure
from medadv.explain.gradcam import (
    ENGINES,
    EXPLAIN_CLASSES,
    METHODS,
    Explainer,
    ExplainError,
    Explanation,
    default_layer,
    explain,
    last_conv_layer,
    target_classes,
)

__all__ = [
    "ENGINES",
    "EXPLAIN_CLASSES",
    "METHODS",
    "ExplainError",
    "Explainer",
    "Explanation",
    "default_layer",
    "explain",
    "last_conv_layer",
    "overlay_figure",
    "target_classes",
]
