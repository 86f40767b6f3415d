"""`key=value,key=value` option strings (from the command line) typed by a function's signature."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from medadv.errors import MedadvError


def parse_options(text: str, func: Callable[..., Any], what: str, reserved: tuple[str, ...] = ()) -> dict[str, Any]:
    """Parse `text` into keyword-only arguments of `func`, each converted to its default's type.

    Names in `reserved` are set by medadv itself. Unknown keys and unparsable values raise MedadvError
    naming the valid keys.
    """
    parameters = {
        name: p
        for name, p in inspect.signature(func).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in reserved
    }
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in parameters:
            valid = list(parameters)
            raise MedadvError(f"{what}: unknown option {item!r}; valid options are {', '.join(valid)} (as key=value)")
        options[key] = _convert(value.strip(), parameters[key].default, f"{what} option {key}")
    return options


def _convert(value: str, default: Any, what: str) -> Any:
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError  # caught below: the value is not a bool
            return value.lower() in ("true", "1")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise MedadvError(f"{what}: cannot read {value!r} as {type(default).__name__}") from None
    return value


def parse_params(text: str) -> dict[str, str]:
    """`a=1,b=2` -> {"a": "1", "b": "2"}; the attack's config class types them."""
    params = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise MedadvError(f"attack_params: {item!r} is not key=value")
        params[key.strip()] = value.strip()
    return params
