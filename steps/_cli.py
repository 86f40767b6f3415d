"""What every step script shares: flags from a settings dataclass, and one-line errors for bad input."""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any, NoReturn, TypeVar

from mlflow.exceptions import MlflowException

from medadv.tracking.runs import TrackingError

Settings = TypeVar("Settings")
# Where the output cannot be written: a full disk or quota, a file-size limit, a read-only or forbidden folder.
_CANNOT_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def _boolean(text: str) -> bool:
    """true/false/1/0 in any case; anything else is a usage error, not a traceback."""
    value = {"true": True, "false": False, "1": True, "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def _flag_type(default: Any) -> Callable[[str], Any]:
    return _boolean if isinstance(default, bool) else type(default)


class _Parser(argparse.ArgumentParser):
    """argparse, with a malformed command line reported in the same one-line form as any other bad input."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"medadv: error: {message}\n")


def parser_for(settings_class: type, description: str | None) -> argparse.ArgumentParser:
    """One `--name` flag per settings field (same name, type and default), plus where to track."""
    parser = _Parser(description=description)
    for field in fields(settings_class):
        default = field.default if field.default is not MISSING else None
        parser.add_argument(f"--{field.name}", type=_flag_type(default), default=default, metavar=field.name.upper())
    parser.add_argument("--tracking_uri", default=None, help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db")
    parser.add_argument("--experiment", default=None, help="MLflow experiment name (default: medadv)")
    return parser


def settings_from(arguments: argparse.Namespace, settings_class: type[Settings]) -> Settings:
    return settings_class(**{field.name: getattr(arguments, field.name) for field in fields(settings_class)})


def run_step(step: Callable[[], object]) -> None:
    """Run a step; bad input or output that cannot be written ends it with one line on stderr and exit code 1."""
    try:
        step()
        return
    except (ValueError, TrackingError) as error:
        message = str(error)
    except MlflowException as error:
        message = error.message.splitlines()[0]
    except OSError as error:
        if error.errno not in _CANNOT_WRITE:
            raise
        where = f" {error.filename}" if error.filename else ""
        message = f"cannot write{where}: {error.strerror}; free space or fix the folder, then resume with --run_id"
    sys.exit(f"medadv: error: {message}")
