"""`quick_init`: a frozen, slotted dataclass built four times faster, still frozen.

Why: a frozen dataclass's generated `__init__` sets each field through
`object.__setattr__(self, name, value)`, a generic attribute lookup per field, because
its own `__setattr__` refuses. Handling an event builds ~25 such values (enrollments of
17 fields, decisions, notes, timers, outbox rows): 1.5 us an `Enrollment`, ~5% of a
worker's handling (py-spy of bench/journey_bench.py's run in process, 2026-12-06).

`quick_init` replaces that `__init__` with one that makes the new instance, for the
length of the call, an instance of a plain twin class with the same slots (no
`__setattr__` of its own), stores the fields with ordinary attribute stores (which the
interpreter specializes per slot), and turns it back into the frozen class. Outside
`__init__` nothing changes: the class, its `__setattr__` (FrozenInstanceError), `__eq__`,
`__hash__`, `__repr__`, `replace()` and pickling are the dataclass's own. 430 against
1,535 ns an `Enrollment`; from two fields up it is faster (a lone field is not).

Only the plain case: the dataclass's own `__init__` setting every field in order,
defaults and default factories; no `__post_init__`, `InitVar`, keyword-only or non-init
field, no base class (the twin must have the class's exact layout). Anything else is
refused when the class is decorated. An instance of a subclass is built by the
dataclass's own `__init__`.
tests/engine/test_frozen.py checks a decorated class against the plain dataclass.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, TypeVar, cast

T = TypeVar("T")


class _Factory:
    """A default factory's argument not given (shown as dataclasses shows it)."""

    def __repr__(self) -> str:
        return "<factory>"


_UNSET = _Factory()
_PREFIX = "__quick_"  # the generated code's own names: no field may start with it


def quick_init(cls: type[T]) -> type[T]:
    """Decorate a `@dataclass(frozen=True, slots=True)` class (this decorator above it)."""
    fields = _checked_fields(cls)
    slots = cls.__dict__["__slots__"]
    twin = type(f"_{cls.__name__}Building", (), {"__slots__": slots})
    # The generated code's names are the parameters of a function that makes __init__,
    # so they are closure cells, and __init__'s globals are the class's module's (its
    # annotations resolve there), as dataclasses does it.
    scope: dict[str, Any] = {f"{_PREFIX}twin": twin, f"{_PREFIX}cls": cls,
                             f"{_PREFIX}set": object.__setattr__, f"{_PREFIX}unset": _UNSET,
                             f"{_PREFIX}dataclass_init": cls.__init__}
    params, body = [], []
    for f in fields:
        if f.default is not dataclasses.MISSING:
            scope[f"{_PREFIX}default_{f.name}"] = f.default
            params.append(f"{f.name}={_PREFIX}default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"{_PREFIX}factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}={_PREFIX}unset")
            body.append(f"  if {f.name} is {_PREFIX}unset: {f.name} = "
                        f"{_PREFIX}factory_{f.name}()")
        else:
            params.append(f.name)
    # `self` as dataclasses names it, unless a field is so named
    self_ = f"{_PREFIX}self" if any(f.name == "self" for f in fields) else "self"
    by_name = ", ".join(f"{f.name}={f.name}" for f in fields)
    lines = [
        f"def __init__({self_}, {', '.join(params)}):", *body,
        # a subclass's instance (the twin has the class's layout, not the subclass's):
        # the dataclass's own __init__
        f"  if {self_}.__class__ is not {_PREFIX}cls:",  # not type(): a field may be `type`
        f"    return {_PREFIX}dataclass_init({self_}, {by_name})",
        f"  {_PREFIX}set({self_}, '__class__', {_PREFIX}twin)",
        *(f"  {self_}.{f.name} = {f.name}" for f in fields),
        f"  {self_}.__class__ = {_PREFIX}cls",
    ]
    maker = (f"def {_PREFIX}make({', '.join(scope)}):\n"
             + "".join(f"  {line}\n" for line in lines) + "  return __init__\n")
    namespace: dict[str, Any] = {}
    module = sys.modules.get(cls.__module__)
    exec(maker, module.__dict__ if module else {}, namespace)  # as dataclasses does
    init = namespace[f"{_PREFIX}make"](**scope)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = {**{f.name: f.type for f in fields}, "return": None}
    setattr(cls, "__init__", init)  # noqa: B010 - mypy refuses assigning a method
    return cls


def _checked_fields(cls: type[Any]) -> tuple[dataclasses.Field[Any], ...]:
    """The class's fields, if quick_init builds it as its dataclass would; else refused."""
    params = getattr(cls, "__dataclass_params__", None)
    if (params is None or not params.frozen or not params.init
            or "__slots__" not in cls.__dict__):
        raise TypeError(f"{cls.__name__}: quick_init takes a frozen, slotted dataclass "
                        "with its own __init__")
    if cls.__bases__ != (object,) or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: quick_init takes no base class or __post_init__")
    init = cls.__dict__.get("__init__")
    # dataclasses compiles its __init__ from a string: a hand-written one has a file
    # (one itself compiled from a string, by exec, is not told apart)
    if getattr(getattr(init, "__code__", None), "co_filename", None) != "<string>":
        raise TypeError(f"{cls.__name__}: quick_init replaces only dataclasses' __init__")
    every = cast(dict[str, dataclasses.Field[Any]], cls.__dict__["__dataclass_fields__"])
    # an InitVar is an __init__ argument but no field (a ClassVar is neither: harmless)
    init_vars = [f for f in every.values()
                 if getattr(f, "_field_type", None) is getattr(dataclasses, "_FIELD_INITVAR", ())]
    fields = dataclasses.fields(cast(Any, cls))
    if init_vars or any(not f.init or f.kw_only for f in fields):
        raise TypeError(f"{cls.__name__}: quick_init takes positional init fields only "
                        "(no InitVar, keyword-only or non-init field)")
    if any(f.name.startswith(_PREFIX) for f in fields):
        raise TypeError(f"{cls.__name__}: a field's name is quick_init's")
    if tuple(cls.__dict__["__slots__"]) != tuple(f.name for f in fields):
        raise TypeError(f"{cls.__name__}: its slots are not its fields")
    return fields
