"""What every step script shares: flags from a settings dataclass, and one-line errors for bad input."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any, NoReturn, TypeVar

from medadv.errors import MedadvError

Settings = TypeVar("Settings")


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
