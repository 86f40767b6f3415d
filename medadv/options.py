"""Command-line strings made typed values, once: `key=value,...` option strings, booleans, and one value typed
by a type (a signature's default, a config field's annotation). Light: no TensorFlow, so `medadv.settings`
types its strings with it before a step imports anything heavy."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from medadv.errors import MedadvError

_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def parse_bool(text: str) -> bool:
    """true/false/1/0 in any case; ValueError for anything else (each caller says whose value it was)."""
    value = _BOOLEANS.get(text.strip().lower())
    if value is None:
        raise ValueError(f"expected true or false, got {text!r}")
    return value


def typed_value(text: str, kind: Any) -> Any:
    """`text` as `kind`: bool, int, float, str, or a union of those (`int | None`: "none" or empty is None).

    ValueError when no member of the union reads it."""
    members = [k for k in typing.get_args(kind) if k is not type(None)] or [kind]
    if text.strip().lower() in ("", "none") and type(None) in typing.get_args(kind):
        return None
    for member in members:
        try:
            return parse_bool(text) if member is bool else member(text)
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a valid {' or '.join(getattr(m, '__name__', str(m)) for m in members)}")


def parse_params(text: str, what: str = "attack_params") -> dict[str, str]:
    """`a=1,b=2` -> {"a": "1", "b": "2"}: the syntax only; who reads the keys types their values."""
    params = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise MedadvError(f"{what}: {item!r} is not key=value")
        params[key.strip()] = value.strip()
    return params


def parse_options(text: str, func: Callable[..., Any], what: str, reserved: tuple[str, ...] = ()) -> dict[str, Any]:
    """Parse `text` (`key=value,...`) into keyword-only arguments of `func`: `typed_options` of `parse_params`."""
    return typed_options(parse_params(text, what), func, what, reserved)


def typed_options(
    options: Mapping[str, str], func: Callable[..., Any], what: str, reserved: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`options` by key as keyword-only arguments of `func`, each converted to its default's type.

    Names in `reserved` are set by medadv itself. Unknown keys and unparsable values raise MedadvError
    naming the valid keys.
    """
    parameters = {
        name: p
        for name, p in inspect.signature(func).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in reserved
    }
    typed: dict[str, Any] = {}
    for key, value in options.items():
        if key not in parameters:
            valid = ", ".join(parameters)
            raise MedadvError(f"{what}: unknown option {f'{key}={value}'!r}; valid options are {valid} (as key=value)")
        typed[key] = _by_default(value, parameters[key].default, f"{what} option {key}")
    return typed


def _by_default(value: str, default: Any, what: str) -> Any:
    kind = type(default)
    if kind not in (bool, int, float):
        return value
    try:
        return typed_value(value, kind)
    except ValueError:
        raise MedadvError(f"{what}: cannot read {value!r} as {kind.__name__}") from None


def typed_fields(params: Mapping[str, str], types: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Each `params` value typed by `types[key]` (a config's field annotations); MedadvError naming a bad one."""
    values = {}
    for key, text in params.items():
        try:
            values[key] = typed_value(text, types[key])
        except ValueError as error:
            raise MedadvError(f"{what}: parameter {key}={error}") from None
    return values
