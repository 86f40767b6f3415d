"""What every step script shares once its command line is checked (`_flags`): one-line errors for bad input."""

from __future__ import annotations

import sys
from collections.abc import Callable

from medadv.errors import MedadvError


def run_step(step: Callable[[], object]) -> None:
    """Run a step; bad input (a MedadvError) ends it with one line on stderr and exit code 1, Ctrl-C with one line
    saying how to go on (the run is marked KILLED) and exit code 130. Anything else is a bug or an outage and keeps
    its traceback (and a non-zero exit)."""
    try:
        step()
    except MedadvError as error:
        sys.exit(f"medadv: error: {error}")
    except KeyboardInterrupt as interrupt:
        print(f"medadv: {str(interrupt) or 'interrupted'}", file=sys.stderr)
        sys.exit(130)
