"""A step's command line, read and checked before TensorFlow, Keras or MLflow is imported.

`settings_from_command_line` turns the flags into the entry point's settings, which check themselves and type
their strings when made (names, ranges, option strings, the data folder: `medadv.settings`), so `--help` and bad
input answer at once; the step then imports its job and runs it through `_cli.run_step`.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import MISSING, fields
from typing import Any, NoReturn, TypeVar

from medadv.errors import MedadvError
from medadv.options import parse_bool

Settings = TypeVar("Settings")

# Read by TensorFlow's C++ side when TensorFlow is imported: 0 lets every line through (absl, oneDNN, CUDA).
VERBOSE_LOG_LEVEL = "0"


def _boolean(text: str) -> bool:
    """true/false/1/0 in any case; anything else is a usage error, not a traceback."""
    try:
        return parse_bool(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _flag_type(default: Any) -> Any:
    return _boolean if isinstance(default, bool) else type(default)


class _Parser(argparse.ArgumentParser):
    """argparse, with a malformed command line reported in the same one-line form as any other bad input."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"medadv: error: {message}\n")


def parser_for(settings_class: type, description: str | None) -> argparse.ArgumentParser:
    """One `--name` flag per settings field (same name, type, default and help), plus where to track."""
    parser = _Parser(description=description)
    for field in fields(settings_class):
        default = field.default if field.default is not MISSING else None
        shown = "empty" if default == "" else default
        parser.add_argument(
            f"--{field.name}", type=_flag_type(default), default=default, metavar=field.name.upper(),
            help=f"{field.metadata['help']} (default: {shown})".replace("%", "%%"),  # argparse formats help with %
        )  # fmt: skip
    parser.add_argument(
        "--tracking_uri", default=None, help="where to track: $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db"
    )
    parser.add_argument("--experiment", default=None, help="MLflow experiment name (none: medadv)")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up log lines")
    return parser


def settings_from(arguments: argparse.Namespace, settings_class: type[Settings]) -> Settings:
    return settings_class(**{field.name: getattr(arguments, field.name) for field in fields(settings_class)})  # type: ignore[arg-type]


def settings_from_command_line(
    settings_class: type[Settings], description: str | None
) -> tuple[Settings, argparse.Namespace]:
    """The checked settings and the parsed flags; bad input ends the step with one line and exit code 1."""
    arguments = parser_for(settings_class, description).parse_args()
    if arguments.verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = VERBOSE_LOG_LEVEL
    try:
        settings = settings_from(arguments, settings_class)
    except MedadvError as error:
        sys.exit(f"medadv: error: {error}")
    return settings, arguments
