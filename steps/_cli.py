"""What every step script shares once its command line is checked (`_flags`): one-line errors for bad input."""

from __future__ import annotations

import sys
from collections.abc import Callable

from mlflow.exceptions import MlflowException

from medadv.tracking.runs import TrackingError


def run_step(step: Callable[[], object]) -> None:
    """Run a step; bad input ends it with one line on stderr and exit code 1, not a traceback."""
    try:
        step()
        return
    except (ValueError, TrackingError) as error:
        message = str(error)
    except MlflowException as error:
        message = error.message.splitlines()[0]
    sys.exit(f"medadv: error: {message}")
