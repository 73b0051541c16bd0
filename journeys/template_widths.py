"""What a template may make one operation allocate, checked before the operation runs:
the size arguments (widths, counts, padding, indents) of Jinja2's filters and of the
string methods, `%` formatting, `str.format`, `+`, `~` and `list.extend`; and what a
render adds to lists, dicts and sets in all (`MAX_GROWN_CHARS`). A result
over `MAX_PART_CHARS` characters (what one rendered part may hold) is a
`SecurityError` naming the operation, raised before any memory is spent on it.

Sizes are upper bounds computed from the arguments: `text_size` estimates what `str()`
of a value holds (a list's items, quotes and commas included) and stops counting past
the limit, so a list holding the same 100,000-character string 100,000 times costs
a few steps, not 10 GB. Ordinary use is untouched: `"%d" % 1000000`, `"x"|center(20)`,
a join of a few hundred names.
"""

from __future__ import annotations

import operator
import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from jinja2 import filters as jfilters
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.nodes import Call, Concat, EnvironmentAttribute, EvalContext, For
from jinja2.sandbox import SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import pass_environment, pass_eval_context
from markupsafe import Markup, escape

MAX_ITEMS = 100_000  # a string, list or tuple made by `*` (as Jinja2's `range` cap)
MAX_PART_CHARS = 512 * 1024  # a rendered part: 512 Ki characters
# What a part's render may add to lists, dicts and sets in all (`append`, `update`, ...):
# nothing else keeps data from one loop iteration to the next, and a million iterations
# appending a new 100,000-character string each held 100 GB.
MAX_GROWN_CHARS = 8 * MAX_PART_CHARS
# the characters a part's render may still add (a one-item list; None: not rendering)
grown_left: ContextVar[list[int] | None] = ContextVar("template_grown_left", default=None)
_GROWING = frozenset({"append", "insert", "extend", "update", "setdefault", "add"})
_NUMBER = 400  # at most what `%d`, `%f`, `{:e}` print of a number, before its width


def check(what: str, size: int) -> None:
    if size > MAX_PART_CHARS:
        raise SecurityError(f"{what} would make {size:,} characters "
                            f"(at most {MAX_PART_CHARS:,})")


def text_size(value: Any, indent: int = 0) -> int:
    """An upper bound of `len(str(value))` (with `indent`: of its JSON with that indent),
    counted only until it passes MAX_PART_CHARS."""
    if isinstance(value, str):
        return len(value)
    total = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack and total <= MAX_PART_CHARS:
        item, depth = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2  # quoted in a list's text
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() * 31 // 100 + 2
        elif isinstance(item, list | tuple | set | frozenset | dict):
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            total += 2 + len(children) * (2 + indent * (depth + 1) + (indent > 0))
            stack.extend((child, depth + 1) for child in children)
        else:
            total += 32  # a float, a date, an object: printed short
    return total


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


# -- `%` formatting: `"%*d" % (width, n)`, `"%.99999999f"`, `"%s%s" % (big, big)`
_PERCENT = re.compile(r"%(?:\(([^)]*)\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.?)", re.S)


def percent_size(fmt: str, values: Any) -> int:
    """An upper bound of `len(fmt % values)` (a malformed format: what was counted)."""
    args = values if isinstance(values, tuple) else (values,)
    size = len(fmt)
    at = 0
    for match in _PERCENT.finditer(fmt):
        name, width, precision, conversion = match.groups()
        if conversion == "%":
            continue
        for number in (width, precision):
            if number == "*":
                size += _int(args[at]) if at < len(args) else 0
                at += 1
            elif number:
                size += int(number) if len(number) < 10 else MAX_PART_CHARS + 1
        if name is not None:
            value = values.get(name) if isinstance(values, Mapping) else None
        else:
            value = args[at] if at < len(args) else None
            at += 1
        size += text_size(value) if conversion in "sra" else _NUMBER
        if size > MAX_PART_CHARS:
            break
    return size


def modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        check("'%' formatting", percent_size(left, right))
    return operator.mod(left, right)


def add(left: Any, right: Any) -> Any:
    """`+`: two strings over the limit, or two lists of more than MAX_ITEMS items or
    over the limit in text (`ns.s + ns.s` in a loop doubles), are refused."""
    if isinstance(left, str) and isinstance(right, str):
        check("'+'", len(left) + len(right))
    elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
        if len(left) + len(right) > MAX_ITEMS:
            raise SecurityError(f"'+' would make {len(left) + len(right):,} items "
                                f"(at most {MAX_ITEMS:,})")
        check("'+'", text_size(left) + text_size(right))
    return operator.add(left, right)


def concat_pieces(pieces: tuple[Any, ...]) -> tuple[Any, ...]:
    """The pieces of a `~`, if their text fits the limit (`ns.s ~ ns.s` doubles)."""
    total = 0
    for piece in pieces:
        total += text_size(piece)
        check("'~'", total)
    return pieces


def buffer_joined(pieces: Iterable[str]) -> str:
    """`"".join(pieces)` for Jinja2's buffers (a `{% set %}` block, a macro's, a
    `{% filter %}`'s or a `{% call %}`'s output), refused as soon as the text passes the
    limit: the pieces are references until joined (`{{ big }}` in a loop)."""
    kept: list[str] = []
    total = 0
    for piece in pieces:
        total += len(piece)
        check("a block's output", total)
        kept.append(piece)
    return "".join(kept)


class OutputBuffer(list[str]):
    """A Jinja2 buffer (a `{% set %}` block, a macro's, `{% filter %}`'s or `{% call %}`'s
    output) that refuses a piece as soon as its text passes the limit: each piece may be
    a new string (`{{ "y" * 99999 }}` in a loop grew one to 10 GB before its join)."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def append(self, piece: str) -> None:
        self.size += len(piece)
        check("a block's output", self.size)
        super().append(piece)

    def extend(self, pieces: Iterable[str]) -> None:
        for piece in pieces:
            self.append(piece)


class LimitedCodeGenerator(CodeGenerator):
    """Jinja2's code generator, with the pieces of each `~` checked before the join, its
    buffers sized (`OutputBuffer`) and each `{% for %}`'s iterable counted against the
    render's loop budget (template_sandbox.py `LimitedEnvironment.counted`)."""

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")

    def visit_For(self, node: For, frame: Frame) -> None:  # noqa: N802
        counted = node.iter
        if not (isinstance(counted, Call) and isinstance(counted.node, EnvironmentAttribute)):
            node.iter = Call(EnvironmentAttribute("counted"), [counted], [], None, None,
                             lineno=counted.lineno)
        super().visit_For(node, frame)

    def visit_Concat(self, node: Concat, frame: Frame) -> None:  # noqa: N802
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"{func_name}(environment.concat_pieces((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")


# -- string and list methods, checked in LimitedEnvironment.call
def _pad(name: str) -> Callable[..., None]:
    def checked(s: str, width: Any = 0, *_: Any, **__: Any) -> None:
        check(f"str.{name}", max(len(s), _int(width)))
    return checked


def _expandtabs(s: str, tabsize: Any = 8, **kwargs: Any) -> None:
    tabsize = kwargs.get("tabsize", tabsize)
    check("str.expandtabs", len(s) + s.count("\t") * _int(tabsize))


def replace_size(s: str, old: Any, new: Any, count: Any = -1) -> int:
    if not (isinstance(old, str) and isinstance(new, str)):
        return len(s)
    times = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    return len(s) + times * max(0, len(new) - len(old))


def _replace(s: str, old: Any = "", new: Any = "", count: Any = -1, **kwargs: Any) -> None:
    check("str.replace", replace_size(s, old, new, kwargs.get("count", count)))


def joined(what: str, separator: str, iterable: Any) -> list[Any]:
    """The items of `iterable` in a list, read one at a time while their text and the
    separators between them stay under the limit (a generator of large strings is
    refused at the item that passes it, not once all are in memory)."""
    items: list[Any] = []
    total = -len(separator)
    for item in iterable:
        total += len(separator) + text_size(item)
        check(what, total)
        items.append(item)
    return items


def _translate(s: str, table: Any = None, *_: Any) -> None:
    if isinstance(table, Mapping) and table:
        longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
        check("str.translate", len(s) * max(1, longest))


_STR_METHODS: dict[str, Callable[..., None]] = {
    "ljust": _pad("ljust"), "rjust": _pad("rjust"), "center": _pad("center"),
    "zfill": _pad("zfill"), "expandtabs": _expandtabs, "replace": _replace,
    "translate": _translate}


def check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """The call's arguments, once a string or list method that allocates by them is
    known to stay under the limit (a `join` of an iterator: its items, in a list)."""
    owner = getattr(obj, "__self__", None)
    if isinstance(owner, str):
        name = getattr(obj, "__name__", "")
        if name == "join" and len(args) == 1 and not kwargs:
            return (joined("str.join", owner, args[0]),)
        checked = _STR_METHODS.get(name)
        if checked is not None:
            checked(owner, *args, **kwargs)
    elif isinstance(owner, list | dict | set) and getattr(obj, "__name__", "") in _GROWING:
        name = f"{type(owner).__name__}.{obj.__name__}"
        if (name == "list.extend" and len(args) == 1 and hasattr(args[0], "__len__")
                and len(owner) + len(args[0]) > MAX_ITEMS):
            raise SecurityError(f"list.extend would make {len(owner) + len(args[0]):,} "
                                f"items (at most {MAX_ITEMS:,})")
        # a generator's items, read (and counted) before they are added
        args = tuple(joined(name, "", a) if isinstance(a, Iterator) else a for a in args)
        grow(name, sum(map(text_size, args)) + text_size(kwargs))
    return args


def grow(what: str, size: int) -> None:
    """Charge `size` characters added to a list, dict or set to the render's
    `MAX_GROWN_CHARS` (outside `render_part`, as when `validate` reads, not counted)."""
    left = grown_left.get()
    if left is not None:
        left[0] -= size
        if left[0] < 0:
            raise SecurityError(f"{what}: the template's lists, dicts and sets would hold "
                                f"more than {MAX_GROWN_CHARS:,} characters in one part")


# -- str.format and format_map: each field's width, and the running length
_FORMAT_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(\d*)[,_]?(?:\.(\d+))?")


class _Counted:
    """A sandboxed Formatter that checks each field before formatting it."""

    size = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        match = _FORMAT_SPEC.match(format_spec)
        numbers = [g for g in match.groups() if g] if match is not None else []
        need = sum(int(n) if len(n) < 10 else MAX_PART_CHARS + 1 for n in numbers)
        need += text_size(value) if isinstance(value, str | list | tuple | dict) else _NUMBER
        check("str.format", self.size + need)
        result = super().format_field(value, format_spec)  # type: ignore[misc]
        self.size += len(result)
        return result

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        check("str.format", self.size + text_size(value))
        return super().convert_field(value, conversion)  # type: ignore[misc]


class _LimitedFormatter(_Counted, SandboxedFormatter):
    pass


class _LimitedEscapeFormatter(_Counted, SandboxedEscapeFormatter):
    pass


def wrap_format(env: Any, value: Any) -> Callable[..., str] | None:
    """Jinja2's `wrap_str_format` with the counting formatters."""
    if not isinstance(value, types.MethodType | types.BuiltinMethodType) or \
            value.__name__ not in ("format", "format_map"):
        return None
    owner = value.__self__
    if not isinstance(owner, str):
        return None
    is_map = value.__name__ == "format_map"

    def wrapper(*args: Any, **kwargs: Any) -> str:
        formatter: SandboxedFormatter = (
            _LimitedEscapeFormatter(env, escape=owner.escape) if isinstance(owner, Markup)
            else _LimitedFormatter(env))
        if is_map:
            if kwargs:
                raise TypeError("format_map() takes no keyword arguments")
            if len(args) != 1:
                raise TypeError(f"format_map() takes exactly one argument ({len(args)} "
                                "given)")
            kwargs, args = args[0], ()
        return type(owner)(formatter.vformat(owner, args, kwargs))

    return wrapper


# -- Jinja2's filters that allocate by an argument
def do_center(value: Any, width: Any = 80) -> str:
    check("center", max(text_size(value), _int(width)))
    return jfilters.do_center(value, width)


def do_indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> str:
    if isinstance(s, str):
        indent = len(width) if isinstance(width, str) else _int(width)
        check("indent", len(s) + (s.count("\n") + 1) * indent)
    return jfilters.do_indent(s, width, first, blank)


@pass_environment
def do_wordwrap(environment: Any, s: Any, width: Any = 79,  # noqa: PLR0917
                break_long_words: bool = True,
                wrapstring: Any = None, break_on_hyphens: bool = True) -> str:
    if isinstance(s, str):
        wrap = wrapstring if isinstance(wrapstring, str) else environment.newline_sequence
        breaks = (len(s.split()) + s.count("-") + s.count("\n")
                  + len(s) // max(1, _int(width)))
        check("wordwrap", len(s) + breaks * len(wrap))
    return jfilters.do_wordwrap(environment, s, width, break_long_words, wrapstring,
                                break_on_hyphens)


def do_format(value: Any, *args: Any, **kwargs: Any) -> str:
    check("format", text_size(value))
    check("format", percent_size(str(value), kwargs or args))
    return jfilters.do_format(value, *args, **kwargs)


@pass_eval_context
def do_replace(eval_ctx: EvalContext, s: Any, old: Any, new: Any, count: Any = None) -> str:
    text = s if isinstance(s, str) else None
    if text is None:
        check("replace", text_size(s))
        text = str(s)
    new_text = str(escape(new) if eval_ctx.autoescape else new)
    check("replace", replace_size(text, str(old), new_text, -1 if count is None else count))
    return jfilters.do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def do_join(eval_ctx: EvalContext, value: Any, d: Any = "", attribute: Any = None) -> str:
    if attribute is not None:
        value = map(jfilters.make_attrgetter(eval_ctx.environment, attribute), value)
    return jfilters.sync_do_join(eval_ctx, joined("join", str(d), value), d)


@pass_environment
def do_truncate(env: Any, s: Any, length: Any = 255,  # noqa: PLR0917
                killwords: bool = False,
                end: Any = "...", leeway: Any = None) -> str:
    check("truncate", text_size(s) + text_size(end))
    return jfilters.do_truncate(env, s, length, killwords, end, leeway)


def do_batch(value: Any, linecount: Any, fill_with: Any = None) -> Any:
    if fill_with is not None and _int(linecount) > MAX_ITEMS:
        raise SecurityError(f"batch would pad to {linecount:,} items (at most {MAX_ITEMS:,})")
    return jfilters.do_batch(value, linecount, fill_with)


def do_slice(value: Any, slices: Any, fill_with: Any = None) -> Any:
    if _int(slices) > MAX_ITEMS:
        raise SecurityError(f"slice would make {slices:,} lists (at most {MAX_ITEMS:,})")
    return jfilters.sync_do_slice(value, slices, fill_with)


@pass_eval_context
def do_tojson(eval_ctx: EvalContext, value: Any, indent: Any = None) -> Any:
    size = len(indent) if isinstance(indent, str) else _int(indent)
    check("tojson", text_size(value, indent=size))
    return jfilters.do_tojson(eval_ctx, value, indent)


def do_pprint(value: Any) -> str:
    check("pprint", text_size(value))
    return jfilters.do_pprint(value)


FILTERS: dict[str, Callable[..., Any]] = {
    "center": do_center, "indent": do_indent, "wordwrap": do_wordwrap,
    "format": do_format, "replace": do_replace, "join": do_join, "truncate": do_truncate,
    "batch": do_batch, "slice": do_slice, "tojson": do_tojson, "pprint": do_pprint}
