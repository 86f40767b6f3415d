"""Valid ranges of the entry points' numeric settings, checked when the settings are made, before compute.

Each settings dataclass declares `RANGES = {field: (low, high)}` (inclusive; None: unbounded) and calls
`check_ranges(self)` in `__post_init__`, so a negative count can never be read as "everything".
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any, ClassVar, Protocol

from medadv.errors import MedadvError

Bounds = tuple[float | None, float | None]
SEED_MAX = 2**32 - 1  # NumPy's and TensorFlow's seeds are 32-bit


class HasRanges(Protocol):
    RANGES: ClassVar[dict[str, Bounds]]


def check_ranges(settings: HasRanges) -> None:
    """Raise ValueError naming the first numeric field outside its declared range (or not finite)."""
    declared = settings.RANGES
    numeric = [f.name for f in fields(settings) if isinstance(getattr(settings, f.name), int | float)]  # type: ignore[arg-type]
    unbounded = [name for name in numeric if name not in declared and not isinstance(getattr(settings, name), bool)]
    if unbounded:  # a new numeric setting must come with its range
        raise TypeError(f"{type(settings).__name__}: no range declared for {', '.join(unbounded)}")
    for name, (low, high) in declared.items():
        value: Any = getattr(settings, name)
        if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
            raise MedadvError(f"{name} must be {describe((low, high))}, got {value}")


def describe(bounds: Bounds) -> str:
    """`in [0, 1]`, `>= 1`, ...: how the README and the errors write a range."""
    low, high = bounds
    if high is None:
        return f">= {_number(low)}" if low is not None else "any finite number"
    if low is None:
        return f"<= {_number(high)}"
    return f"in [{_number(low)}, {_number(high)}]"


def _number(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
