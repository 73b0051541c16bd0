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
  holds at most `MAX_PART_CHARS` characters: `check_size`.
"""

from __future__ import annotations

import operator
from typing import Any

from jinja2 import Environment, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import pass_eval_context

MAX_ITEMS = 100_000  # a string, list or tuple made by `*` (as Jinja2's `range` cap)
MAX_POWER_BITS = 100_000  # an integer made by `**`: about 30,000 digits
MAX_PART_CHARS = 512 * 1024  # a rendered part: 512 Ki characters


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

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(optimized=False, finalize=_finalize, **options)
        self.binop_table["*"] = _multiply
        self.binop_table["**"] = _power


def check_size(text: str, what: str = "the rendered text") -> str:
    """`text`, if it has at most `MAX_PART_CHARS` characters; else MessageTooLargeError."""
    if len(text) > MAX_PART_CHARS:
        raise MessageTooLargeError(f"{what} has {len(text):,} characters (at most "
                              f"{MAX_PART_CHARS:,})")
    return text


def undeclared_names(env: Environment, template: nodes.Template) -> set[str]:
    """`meta.find_undeclared_variables` without its optimizer, which evaluates constant
    expressions (a `"x" * 10**10` in full)."""
    codegen = meta.TrackingCodeGenerator(env)
    codegen.optimizer = None
    codegen.visit(template)
    return codegen.undeclared_identifiers


__all__ = ["MAX_ITEMS", "MAX_PART_CHARS", "MAX_POWER_BITS", "LimitedEnvironment",
           "MessageTooLargeError", "check_size", "undeclared_names"]
