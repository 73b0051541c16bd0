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
- What allocates by an argument is checked before it runs (journeys/template_widths.py):
  the filters `center`, `indent`, `wordwrap`, `format`, `replace`, `join`, `truncate`,
  `batch`, `slice`, `tojson` and `pprint`; the string methods `ljust`, `rjust`,
  `center`, `zfill`, `expandtabs`, `replace`, `join`, `format`, `format_map`; `%`
  formatting (widths, precisions, `*`); `list.extend`. A result over
  `MAX_PART_CHARS` characters is a `SecurityError` saying which.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, Template, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import pass_eval_context

from journeys import template_widths as widths
from journeys.template_widths import MAX_ITEMS, MAX_PART_CHARS, text_size

MAX_POWER_BITS = 100_000  # an integer made by `**`: about 30,000 digits


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
    code_generator_class = widths.LimitedCodeGenerator  # `~` checked
    concat_pieces = staticmethod(widths.concat_pieces)

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
    passes `MAX_PART_CHARS` characters, not once it is all built."""
    pieces = []
    size = 0
    for piece in template.generate(context):
        size += len(piece)
        if size > MAX_PART_CHARS:
            raise MessageTooLargeError(f"the rendered text has more than {MAX_PART_CHARS:,} "
                                       f"characters (stopped at {size:,})")
        pieces.append(piece)
    return "".join(pieces)


def undeclared_names(env: Environment, template: nodes.Template) -> set[str]:
    """`meta.find_undeclared_variables` without its optimizer, which evaluates constant
    expressions (a `"x" * 10**10` in full)."""
    codegen = meta.TrackingCodeGenerator(env)
    codegen.optimizer = None
    codegen.visit(template)
    return codegen.undeclared_identifiers


__all__ = ["MAX_ITEMS", "MAX_PART_CHARS", "MAX_POWER_BITS", "LimitedEnvironment",
           "MessageTooLargeError", "check_size", "render_part", "undeclared_names"]
