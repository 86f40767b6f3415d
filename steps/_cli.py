"""What every step script shares once its command line is checked (`_flags`): one-line errors for bad input."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable

from mlflow.exceptions import MlflowException

from medadv.errors import MedadvError

# Where the output cannot be written: a full disk or quota, a file-size limit, a read-only or forbidden folder.
_CANNOT_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def run_step(step: Callable[[], object]) -> None:
    """Run a step. Bad input (a MedadvError), a tracking server that refuses or cannot be reached (the run resumes
    with --run_id) or output that cannot be written ends it with one line on stderr and exit code 1; Ctrl-C with
    one line saying how to go on (the run is marked KILLED) and exit code 130. Anything else is a bug and keeps
    its traceback (and a non-zero exit)."""
    try:
        step()
    except MedadvError as error:
        sys.exit(f"medadv: error: {error}")
    except MlflowException as error:
        sys.exit(f"medadv: error: {error.message.splitlines()[0]}")
    except KeyboardInterrupt as interrupt:
        print(f"medadv: {str(interrupt) or 'interrupted'}", file=sys.stderr)
        sys.exit(130)
    except OSError as error:
        if error.errno not in _CANNOT_WRITE:
            raise
        where = f" {error.filename}" if error.filename else ""
        sys.exit(
            f"medadv: error: cannot write{where}: {error.strerror}; free space or fix the folder, then resume"
            " with --run_id"
        )
