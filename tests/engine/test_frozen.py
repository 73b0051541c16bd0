"""`quick_init` (engine/core/frozen.py): a decorated class behaves as the plain frozen
dataclass it was, outside `__init__` and inside it."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
import typing
from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

import engine.core.model as model
import engine.core.steps.base as steps_base
import engine.values as values
from engine.core.frozen import quick_init


def _value_class(name: str) -> Any:
    """The same frozen dataclass twice: as dataclasses builds it, and through quick_init."""
    return dataclass(frozen=True, slots=True)(type(name, (), {
        "__annotations__": {"name": "str", "count": "int", "tags": "dict[str, Any]",
                            "when": "datetime | None"},
        "count": 0, "tags": field(default_factory=dict), "when": None,
        "__module__": __name__}))


Plain = _value_class("Plain")
Quick = quick_init(_value_class("Quick"))


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("a",), {}),
    (("a", 2), {}),
    (("a", 2, {"k": 1}), {}),
    (("a",), {"when": datetime(2026, 1, 1, tzinfo=UTC)}),
    ((), {"name": "b", "tags": {"x": [1]}, "count": 3}),
]


@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_same_values_equality_hash_and_repr(args: tuple[Any, ...],
                                            kwargs: dict[str, Any]) -> None:
    quick, plain = Quick(*args, **kwargs), Plain(*args, **kwargs)
    assert type(quick) is Quick
    assert dataclasses.astuple(quick) == dataclasses.astuple(plain)
    assert repr(quick) == repr(plain).replace("Plain(", "Quick(")
    assert quick == Quick(*args, **kwargs)
    assert quick != Quick("other")


@dataclass(frozen=True, slots=True)
class PlainPair:
    name: str
    count: int = 0


@quick_init
@dataclass(frozen=True, slots=True)
class QuickPair:
    name: str
    count: int = 0


def test_the_hash_is_the_dataclass_hash() -> None:
    assert hash(QuickPair("a", 2)) == hash(PlainPair("a", 2))
    assert {QuickPair("a"), QuickPair("a", 0), QuickPair("b")} == {QuickPair("a"), QuickPair("b")}


def test_each_default_factory_call_makes_a_new_value() -> None:
    first, second = Quick("a"), Quick("a")
    assert first.tags == {}
    assert first.tags is not second.tags


def test_still_frozen_and_replace_and_pickle_work() -> None:
    quick = Quick("a", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.name = "b"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del quick.count  # type: ignore[misc]
    assert dataclasses.replace(quick, count=5) == Quick("a", 5)
    assert pickle.loads(pickle.dumps(quick)) == quick
    assert not hasattr(quick, "__dict__")


def test_bad_calls_fail_as_the_dataclass_fails() -> None:
    for bad_args, bad_kwargs in [((), {}), (("a", 1, {}, None, "extra"), {}),
                                 (("a",), {"nope": 1}), (("a",), {"name": "b"})]:
        with pytest.raises(TypeError):
            Plain(*bad_args, **bad_kwargs)
        with pytest.raises(TypeError):
            Quick(*bad_args, **bad_kwargs)


def test_the_signature_and_type_hints_are_the_dataclass_ones() -> None:
    assert str(inspect.signature(Quick)) == str(inspect.signature(Plain))  # <factory> too
    assert typing.get_type_hints(Quick.__init__) == typing.get_type_hints(Plain.__init__)


def test_refuses_what_it_does_not_build() -> None:
    @dataclass(frozen=True, slots=True)
    class WithPostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(slots=True)
    class NotFrozen:
        a: int

    @dataclass(frozen=True, slots=True)
    class KeywordOnly:
        a: int = field(kw_only=True)

    @dataclass(frozen=True, slots=True)
    class NotInInit:
        a: int = field(init=False, default=1)

    @dataclass(frozen=True, slots=True)
    class WithInitVar:
        a: int
        b: InitVar[int] = 0

    @dataclass(frozen=True, slots=True)
    class OwnInit:
        a: int

        def __init__(self, a: str) -> None:
            object.__setattr__(self, "a", int(a))

    @dataclass(frozen=True, slots=True, init=False)
    class NoInit:
        a: int

    @dataclass(frozen=True, slots=True)
    class TakenName:
        __quick_twin__: int  # (a name ending in __ is not mangled)

    for cls in (WithPostInit, NoSlots, NotFrozen, KeywordOnly, NotInInit, WithInitVar, OwnInit,
                NoInit, TakenName, int):
        with pytest.raises(TypeError, match="quick_init"):
            quick_init(cls)


def _decorated() -> list[type[Any]]:
    """The engine's classes built through `quick_init` (their `__init__` uses the twin)."""
    return [value for module in (model, steps_base, values) for value in vars(module).values()
            if isinstance(value, type) and value.__module__ == module.__name__
            and dataclasses.is_dataclass(value)
            and "__quick_twin" in getattr(value.__init__, "__code__", quick_init.__code__)
            .co_freevars]


def test_the_engine_values_built_through_it_are_still_frozen() -> None:
    decorated = _decorated()
    assert {"Enrollment", "Decision", "Note", "OutboxEntry"} <= {c.__name__ for c in decorated}
    for cls in decorated:
        sample = cls(*[object() for f in dataclasses.fields(cls)
                       if f.default is dataclasses.MISSING
                       and f.default_factory is dataclasses.MISSING])
        assert type(sample) is cls
        first = dataclasses.fields(cls)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(sample, first, None)


def test_a_subclass_instance_stays_of_its_class() -> None:
    class Tagged(Quick):
        __slots__ = ("tag",)

    tagged = Tagged("a", 2)
    assert type(tagged) is Tagged
    assert tagged == Tagged("a", 2)
    assert tagged.tags == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        tagged.name = "b"  # type: ignore[misc]


@quick_init
@dataclass(frozen=True, slots=True)
class Named:
    self: str  # a field may be named as the generated code's first parameter is not
    cls: int = 1
    type: str = "track"  # nor may a field's name hide a builtin the code calls


@quick_init
@dataclass(frozen=True, slots=True)
class WithClassVar:
    kinds: typing.ClassVar[tuple[str, ...]] = ("a", "b")
    kind: str = "a"


def test_fields_named_self_cls_or_type() -> None:
    named = Named("me", 2, "page")
    assert (named.self, named.cls, named.type) == ("me", 2, "page")
    assert Named(self="me") == Named("me", 1, "track")


def test_a_class_variable_is_no_field_and_init_is_named_as_dataclasses_names_it() -> None:
    assert WithClassVar("b").kind == "b"
    assert WithClassVar.kinds == ("a", "b")
    assert next(iter(inspect.signature(Quick.__init__).parameters)) == "self"
    assert next(iter(inspect.signature(Named.__init__).parameters)) != "self"


def test_a_class_of_a_module_not_imported_is_built() -> None:
    cls = quick_init(dataclass(frozen=True, slots=True)(type(
        "Loose", (), {"__annotations__": {"a": int}, "__module__": "nowhere"})))
    assert cls(1).a == 1
