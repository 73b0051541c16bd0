"""The template sandbox's limits on size: what a template (or the event it renders for)
may make a render allocate.

- Nothing is evaluated at compile time (or when `journeyman validate` reads a
  template's names): Jinja2 folds constant expressions as it compiles, and a
  `{{ "x" * 10**10 }}` folded there grew `validate` to 22 GB. The environments are
  made with `optimized=False` and a `finalize` that needs the evaluation context
  (Jinja2 then leaves every `{{ ... }}` to the render), and `undeclared` reads names
  with a code generator that has no optimizer.
- `*` and `**` are checked before they run: a string, list or tuple of more than
  `MAX_ITEMS` items (`'*' * event.properties.stars`), or an integer power of more than
  `MAX_POWER_BITS` bits, is a `SecurityError` (so the send is a `template_error`).
  `range` is capped at 100,000 by Jinja2's sandbox.
- Every rendered part (subject, HTML, text, body, each payload string, an inline string)
  holds at most `MAX_PART_CHARS` characters: `render_part` renders through
  `Template.generate` and stops as soon as the output passes the limit (not after the
  whole text is built), a `MessageTooLargeError`.
- The `{% for %}` loops of one part run at most `MAX_LOOP_STEPS` iterations in all
  (`counted`): nested loops multiply (two loops over 100,000 items ran ten billion
  times, minutes of a worker's CPU per send), a `SecurityError` past it.
- What one part's render adds to lists, dicts and sets (`append`, `insert`, `extend`,
  `update`, `setdefault`, `add`) is at most `template_widths.MAX_GROWN_CHARS`
  characters in all, a `SecurityError` past it: the loops' cap bounds the time, not
  the data an iteration leaves behind for the next.
- Jinja2's buffers (a `{% set %}` block, a macro's, `{% filter %}`'s or `{% call %}`'s
  output) are `template_widths.OutputBuffer`s, joined by `buffer_joined`: refused as
  soon as their text passes `MAX_PART_CHARS`, not once it is all built.
- What allocates by an argument is checked before it runs (journeys/template_widths.py):
  the filters `center`, `indent`, `wordwrap`, `format`, `replace`, `join`, `truncate`,
  `batch`, `slice`, `tojson` and `pprint`; the string methods `ljust`, `rjust`,
  `center`, `zfill`, `expandtabs`, `replace`, `join`, `format`, `format_map`; `%`
  formatting (widths, precisions, `*`); `list.extend`. A result over
  `MAX_PART_CHARS` characters is a `SecurityError` saying which.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from jinja2 import Environment, Template, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import pass_eval_context

from journeys import template_widths as widths
from journeys.template_widths import MAX_ITEMS, MAX_PART_CHARS, text_size

MAX_POWER_BITS = 100_000  # an integer made by `**`: about 30,000 digits
MAX_LOOP_STEPS = 1_000_000  # a part's loop iterations in all: under a second of CPU
# the iterations a part's render has left (a one-item list: counted's loops share it)
_steps_left: ContextVar[list[int] | None] = ContextVar("template_steps_left", default=None)


class MessageTooLargeError(SecurityError):
    """A rendered part over `MAX_PART_CHARS`."""


@pass_eval_context
def _finalize(eval_ctx: Any, value: Any) -> Any:
    """What `{{ ... }}` prints, unchanged. Needing the evaluation context, it stops Jinja2
    from evaluating constant output expressions at compile time."""
    return value


def _sized(value: Any) -> bool:
    return isinstance(value, str | list | tuple)


def _multiply(left: Any, right: Any) -> Any:
    for seq, times in ((left, right), (right, left)):
        if _sized(seq) and isinstance(times, int) and len(seq) * times > MAX_ITEMS:
            raise SecurityError(f"'*' would make {len(seq) * times:,} items "
                                f"(at most {MAX_ITEMS:,})")
        if isinstance(seq, list | tuple) and isinstance(times, int) and times > 1:
            widths.check("'*'", text_size(seq) * times)  # [big] * 100000
    return operator.mul(left, right)


def _power(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        bits = abs(left).bit_length() * right  # an upper bound
        if bits > MAX_POWER_BITS:
            raise SecurityError(f"'**' would make an integer of up to {bits:,} bits "
                                f"(at most {MAX_POWER_BITS:,})")
    return operator.pow(left, right)


class LimitedEnvironment(SandboxedEnvironment):
    """Jinja2's sandbox, with `*` and `**` checked and no compile-time evaluation."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = widths.LimitedCodeGenerator  # `~` checked, loops counted
    concat_pieces = staticmethod(widths.concat_pieces)
    concat = staticmethod(widths.buffer_joined)  # the generated code's `concat`
    output_buffer = widths.OutputBuffer  # the generated code's buffers

    @staticmethod
    def counted(iterable: Iterable[Any]) -> Iterator[Any]:
        """A `{% for %}`'s items, each counted against the render's `MAX_LOOP_STEPS`
        (outside `render_part`, as when `validate` reads a template, not counted)."""
        left = _steps_left.get()
        if left is None:
            yield from iterable
            return
        for item in iterable:
            left[0] -= 1
            if left[0] < 0:
                raise SecurityError(f"the template's loops ran more than {MAX_LOOP_STEPS:,} "
                                    "times in one part")
            yield item

    def __init__(self, **options: Any) -> None:
        super().__init__(optimized=False, finalize=_finalize, **options)
        self.binop_table["*"] = _multiply
        self.binop_table["**"] = _power
        self.binop_table["%"] = widths.modulo
        self.binop_table["+"] = widths.add
        self.filters.update(widths.FILTERS)

    def call(__self, __context: Context, __obj: Any,  # noqa: N805
             *args: Any, **kwargs: Any) -> Any:
        args = widths.check_call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        """`str.format` and `format_map`, sandboxed as Jinja2 does, with each field's
        width and the running length checked (template_widths.LimitedFormatter)."""
        return widths.wrap_format(self, value)


def check_size(text: str, what: str = "the rendered text") -> str:
    """`text`, if it has at most `MAX_PART_CHARS` characters; else MessageTooLargeError."""
    if len(text) > MAX_PART_CHARS:
        raise MessageTooLargeError(f"{what} has {len(text):,} characters (at most "
                              f"{MAX_PART_CHARS:,})")
    return text


def render_part(template: Template, context: Mapping[str, Any]) -> str:
    """`template.render(context)`, stopped (MessageTooLargeError) as soon as the output
    passes `MAX_PART_CHARS` characters, not once it is all built; its loops share one
    budget of `MAX_LOOP_STEPS` iterations."""
    pieces = []
    size = 0
    budget = _steps_left.set([MAX_LOOP_STEPS])
    grown = widths.grown_left.set([widths.MAX_GROWN_CHARS])
    try:
        for piece in template.generate(context):
            size += len(piece)
            if size > MAX_PART_CHARS:
                raise MessageTooLargeError(f"the rendered text has more than "
                                           f"{MAX_PART_CHARS:,} characters (stopped at {size:,})")
            pieces.append(piece)
    finally:
        widths.grown_left.reset(grown)
        _steps_left.reset(budget)
    return "".join(pieces)


def undeclared_names(env: Environment, template: nodes.Template) -> set[str]:
    """`meta.find_undeclared_variables` without its optimizer, which evaluates constant
    expressions (a `"x" * 10**10` in full)."""
    codegen = meta.TrackingCodeGenerator(env)
    codegen.optimizer = None
    codegen.visit(template)
    return codegen.undeclared_identifiers


__all__ = ["MAX_ITEMS", "MAX_LOOP_STEPS", "MAX_PART_CHARS", "MAX_POWER_BITS", "LimitedEnvironment",
           "MessageTooLargeError", "check_size", "render_part", "undeclared_names"]
