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
`__hash__`, `__repr__`, `replace()` and pickling are the dataclass's own. 395 against
1,535 ns an `Enrollment`; from two fields up it is faster (a lone field is not).

Only the plain case: fields set by `__init__` in order, defaults and default factories,
no `__post_init__`, no keyword-only fields, no dataclass base (the twin must have the
class's exact layout). Anything else is refused when the class is decorated. An
instance of a subclass is built by the dataclass's own `__init__`.
tests/core/test_frozen.py checks a decorated class against the plain dataclass.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, cast

T = TypeVar("T")

_UNSET = object()  # a default factory's argument not given


def quick_init(cls: type[T]) -> type[T]:
    """Decorate a `@dataclass(frozen=True, slots=True)` class (this decorator above it)."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__}: quick_init takes a frozen, slotted dataclass")
    if cls.__bases__ != (object,) or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: quick_init takes no base class or __post_init__")
    fields = dataclasses.fields(cast(Any, cls))
    if any(not f.init or f.kw_only for f in fields):
        raise TypeError(f"{cls.__name__}: quick_init takes positional init fields only")
    if tuple(cls.__dict__["__slots__"]) != tuple(f.name for f in fields):
        raise TypeError(f"{cls.__name__}: its slots are not its fields")

    twin = type(f"_{cls.__name__}Building", (), {"__slots__": cls.__dict__["__slots__"]})
    scope: dict[str, Any] = {"_twin": twin, "_cls": cls, "_set": object.__setattr__,
                             "_unset": _UNSET, "_dataclass_init": cls.__init__}
    params_src, body = [], []
    for f in fields:
        if f.default is not dataclasses.MISSING:
            scope[f"_default_{f.name}"] = f.default
            params_src.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_factory_{f.name}"] = f.default_factory
            params_src.append(f"{f.name}=_unset")
            body.append(f"    if {f.name} is _unset: {f.name} = _factory_{f.name}()\n")
        else:
            params_src.append(f.name)
    names = ", ".join(f"{f.name}={f.name}" for f in fields)
    source = (f"def __init__(self, {', '.join(params_src)}):\n" + "".join(body)
              # a subclass's instance (the twin has the class's layout, not the
              # subclass's): the dataclass's own __init__
              + f"    if type(self) is not _cls:\n        return _dataclass_init(self, {names})\n"
              + "    _set(self, '__class__', _twin)\n"
              + "".join(f"    self.{f.name} = {f.name}\n" for f in fields)
              + "    self.__class__ = _cls\n")
    exec(source, scope)  # as dataclasses builds its own __init__
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = {**{f.name: f.type for f in fields}, "return": None}
    setattr(cls, "__init__", init)  # noqa: B010 - mypy refuses assigning a method
    return cls
