"""What every step script shares once its command line is checked (`_flags`): one-line errors for bad input."""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable

from _flags import VERBOSE_LOG_LEVEL
from mlflow.exceptions import MlflowException

from medadv.errors import MedadvError
from medadv.tracking.runs import error_line

# Where the output cannot be written: a full disk or quota, a file-size limit, a read-only or forbidden folder.
_CANNOT_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def _import_tensorflow_quietly() -> None:
    """TensorFlow 2.21 prints its start-up lines from C++ while it is imported (absl's "before InitializeLog"
    warning, oneDNN's notice), on some machines whatever TF_CPP_MIN_LOG_LEVEL says: so, unless --verbose, import
    it with the process's stderr pointed at /dev/null (a failed import's traceback comes after it is restored)."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == VERBOSE_LOG_LEVEL:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_import_tensorflow_quietly()


def _interrupt(signum: int, frame: object) -> None:
    """Ctrl-C, or the SIGTERM that `mlflow run` sends its step after the Ctrl-C it got too, interrupts the step
    once: while the step marks its run KILLED, SIGTERM is ignored and only a second Ctrl-C cuts that short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise KeyboardInterrupt


def run_step(step: Callable[[], object]) -> None:
    """Run a step. Bad input (a MedadvError), a tracking server that refuses or cannot be reached (the run resumes
    with --run_id) or output that cannot be written ends it with one line on stderr and exit code 1; Ctrl-C with
    one line saying how to go on (the run is marked KILLED) and exit code 130. Anything else is a bug and keeps
    its traceback (and a non-zero exit). SIGTERM interrupts as Ctrl-C does."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        step()
    except MedadvError as error:
        sys.exit(f"medadv: error: {error}")
    except MlflowException as error:
        sys.exit(f"medadv: error: {error_line(error.message)}")
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
