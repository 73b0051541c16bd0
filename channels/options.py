"""An adapter's options from `channels.yaml`, checked against its constructor's
signature before it is built: the types the signature names, an unknown option with
"did you mean", a port in range. Each problem is `file:line:column: channel.option:
message`, as journeys' are.

Values come from YAML, and `${VAR}` values are strings (channels/config.py), so a string
is taken where its meaning is plain: `"false"`, `"no"`, `"0"` for a flag (a bare
`bool("false")` is true: `use_tls: "${SMTP_TLS}"` with `SMTP_TLS=false` turned TLS on),
`"587"` for a number. A number where text is wanted (a password of digits) is that
text.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rules.errors import did_you_mean

TRUE = frozenset({"true", "yes", "on", "1"})
FALSE = frozenset({"false", "no", "off", "0"})
PORT_RANGE = (1, 65535)


class OptionError(ValueError):
    """One option's value cannot be what the adapter takes; the message says why."""


def checked_options(factory: Callable[..., Any], options: Mapping[str, Any],
                    ) -> tuple[dict[str, Any], dict[str, str]]:
    """The options converted to the types `factory` takes, and the problems by option
    name (an unknown one, a wrong type). Options the signature does not type are passed
    as they are."""
    parameters = option_names(factory)
    hints = _hints(factory)
    converted: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, value in options.items():
        if name not in parameters:
            problems[name] = (f"unknown option {name!r}" + did_you_mean(name, parameters)
                              + f"; {_adapter(factory)} takes: {', '.join(parameters)}")
            continue
        try:
            converted[name] = _convert(name, value, hints.get(name))
        except OptionError as exc:
            problems[name] = str(exc)
    return converted, problems


def _adapter(factory: Callable[..., Any]) -> str:
    return getattr(factory, "__name__", "the adapter")


def option_names(factory: Callable[..., Any]) -> list[str]:
    """The options a channels.yaml may set: keyword parameters, not `self` or `*args`."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in inspect.signature(factory).parameters.values()
            if p.kind in kinds]


def _hints(factory: Callable[..., Any]) -> dict[str, Any]:
    target: Any = factory
    if isinstance(factory, type):
        target = vars(factory).get("__init__", factory)
    try:
        return typing.get_type_hints(target)
    except (NameError, TypeError):  # an annotation it cannot resolve: no checks
        return {}


def _convert(name: str, value: Any, hint: Any) -> Any:
    if hint is None:
        return value
    choices = _choices(hint)
    if value is None:
        if type(None) in choices:
            return None
        raise OptionError(f"needs a value ({_wanted(choices)})")
    errors: list[str] = []
    for choice in choices:
        if choice is type(None):
            continue
        try:
            return _as(name, value, choice)
        except OptionError as exc:
            errors.append(str(exc))
    raise OptionError(errors[0] if len(errors) == 1 else
                      f"must be {_wanted(choices)}, not {value!r}")


def _choices(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _wanted(choices: tuple[Any, ...]) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number",
             str: "text", Path: "a path"}
    shown = [str(names.get(c) or getattr(typing.get_origin(c), "__name__", None)
                 or getattr(c, "__name__", c))
             for c in choices if c is not type(None)]
    return " or ".join(shown) + (" (or null)" if type(None) in choices else "")


def _as(name: str, value: Any, kind: Any) -> Any:
    origin = typing.get_origin(kind) or kind
    if kind is bool:
        return _flag(value)
    if kind is int:
        number = _whole(value)
        if name == "port" and not PORT_RANGE[0] <= number <= PORT_RANGE[1]:
            raise OptionError(f"must be a port from {PORT_RANGE[0]} to {PORT_RANGE[1]}, "
                              f"not {number}")
        return number
    if kind is float:
        return _number(value)
    if kind is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise OptionError(f"must be text, not {value!r}")
        return str(value)
    if kind is Path:
        if not isinstance(value, str):
            raise OptionError(f"must be a path, not {value!r}")
        return Path(value)
    if origin is tuple:
        size = len(typing.get_args(kind))
        if not isinstance(value, list | tuple) or len(value) != size:
            raise OptionError(f"must be a list of {size} values, not {value!r}")
        return tuple(value)
    if origin in (Mapping, dict, typing.Mapping):
        if not isinstance(value, Mapping):
            raise OptionError(f"must be a mapping, not {value!r}")
        return {str(k): v for k, v in value.items()}
    raise OptionError(f"cannot be set in channels.yaml ({_wanted((kind,))})")


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise OptionError(f"must be true or false, not {value!r}")


def _whole(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    # ASCII digits only: "²".isdigit() is true and int("²") a ValueError (a traceback)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        try:
            return int(value.strip())
        except ValueError:  # past int()'s 4,300 digits
            pass
    raise OptionError(f"must be a whole number, not {value!r}")


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise OptionError(f"must be a number, not {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise OptionError(f"must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise OptionError(f"must be a finite number, not {value!r}")
    return number
