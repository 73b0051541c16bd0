"""What a template may make a render allocate (journeys/template_sandbox.py): nothing is
evaluated at compile time or by `validate` (a `{{ "x" * 10**10 }}` folded there grew
`journeyman validate` to 22 GB), `*` and `**` refuse huge results, and every rendered
part has a size limit; over it the send is skipped as `template_error`."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.testing import InMemoryEngine
from journeys.errors import TemplateRenderError
from journeys.loader import load_path
from journeys.template_sandbox import MAX_LOOP_STEPS, MAX_PART_CHARS
from journeys.templating import make_environment, render_string, undeclared
from tests.engine.helpers import HELLO, write_folder

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_nothing_is_evaluated_at_compile_time_or_when_names_are_read() -> None:
    calls: list[Any] = []

    def counted(value: Any) -> Any:
        calls.append(value)
        return value

    env = make_environment()
    env.filters["counted"] = counted
    source = '{{ "x" | counted }} {{ ("y" | counted) ~ "z" }}'
    assert undeclared(source, env) == set()
    template = env.from_string(source)
    assert calls == []  # Jinja2 folded both constant expressions as it compiled
    assert template.render() == "x yz"
    assert calls == ["x", "y"]


def test_validate_does_not_build_a_huge_constant(tmp_path: Path) -> None:
    # 10**7 characters: small enough to show the old behaviour without harm (10 MB
    # folded at load), the same path as the 10**10 that took 22 GB.
    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"welcome": """\
        channel: email
        subject: hi
        text: '{{ "x" * 10**7 }}'
        """})
    tracemalloc.start()
    try:
        load_path(folder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


@pytest.mark.parametrize(("source", "error"), [
    ('{{ "x" * 10**10 }}', "SecurityError: '*' would make 10,000,000,000 items "
                           "(at most 100,000)"),
    ("{{ event.stars * '*' }}", "'*' would make 50,000,000 items"),
    ("{{ [1, 2] * event.stars }}", "'*' would make 100,000,000 items"),
    ("{{ 2 ** (10 ** 9) }}", "SecurityError: '**' would make an integer of up to "
                             "2,000,000,000 bits (at most 100,000)"),
])
def test_star_and_power_refuse_huge_results(source: str, error: str) -> None:
    with pytest.raises(TemplateRenderError, match="cannot render") as caught:
        render_string(source, {"event": {"stars": 50_000_000}})
    assert error in str(caught.value)


def test_star_and_power_still_work_at_sane_sizes() -> None:
    assert render_string("{{ '*' * event.stars }}|{{ 2 ** 10 }}|{{ [0] * 3 }}|{{ 1.5 * 2 }}"
                         "|{{ 1 ** (10 ** 9) }}|{{ 2 * 'ab' }}", {"event": {"stars": 5}}
                         ) == "*****|1024|[0, 0, 0]|3.0|1|abab"
    assert len(render_string("{{ 'x' * 100000 }}", {})) == 100_000


def test_a_rendered_part_over_the_limit_is_a_render_error(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"welcome": """\
        channel: email
        subject: hi
        text: "{% for i in range(6) %}{{ 'x' * 100000 }}{% endfor %}"
        """})
    library = load_path(folder).templates
    with pytest.raises(TemplateRenderError) as caught:
        library.render("welcome", {})
    assert str(caught.value) == (
        f"template 'welcome' ({folder}/templates/welcome.yaml:3, text): MessageTooLargeError: "
        f"the rendered text has more than {MAX_PART_CHARS:,} characters (stopped at 600,000)")
    with pytest.raises(TemplateRenderError, match="MessageTooLargeError"):
        render_string("{% for i in range(6) %}{{ 'x' * 100000 }}{% endfor %}", {})


def test_a_send_over_the_limits_is_skipped_as_template_error(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"welcome": """\
        channel: email
        subject: hi
        text: "You gave us {{ '*' * event.properties.stars }}"
        """})
    eng = InMemoryEngine.from_folder(folder, start=T0)
    for user, stars in (("ana", 5), ("eve", 50_000_000)):
        eng.identify(user, {"email": f"{user}@example.com"})
        eng.track(user, "Signed Up", {"stars": stars})
    eng.dispatcher.dispatch_due()
    assert [(m.profile, m.body) for m in eng.sent] == [("ana", "You gave us *****")]
    [decision] = [d for d in eng.decisions if d.what == "skipped"]
    assert (decision.profile_id, decision.reason) == ("eve", "template_error")
    assert "'*' would make 50,000,000 items (at most 100,000)" in decision.details["error"]


# Under a 2 GB limit (`prlimit --as=2000000000`), each of these built its whole result
# (300 M characters, or 10 GB: MemoryError) before the size of the part was checked.
@pytest.mark.parametrize(("source", "error"), [
    ('{{ "x"|center(300000000) }}', "center would make 300,000,000 characters"),
    ('{{ "x".ljust(300000000) }}', "str.ljust would make 300,000,000 characters"),
    ("{{ 'x'.rjust(event.width) }}", "str.rjust would make 300,000,000 characters"),
    ("{{ 'x'.center(event.width) }}{{ 'x'.zfill(event.width) }}", "str.center would make"),
    ("{{ '7'.zfill(event.width) }}", "str.zfill would make 300,000,000 characters"),
    ("{{ '\t\t'.expandtabs(event.width) }}", "str.expandtabs would make 600,000,002"),
    ('{{ ("x" * 99999).replace("x", "y" * 99999) }}', "str.replace would make 9,999,800,001"),
    ('{{ ("x" * 99999) | replace("x", "y" * 99999) }}', "replace would make 9,999,800,001"),
    ("{{ ','.join(range(100000) | map('string') | map('center', 99999)) }}",
     "str.join would make"),
    ("{{ range(100000) | map('string') | map('center', 99999) | join }}",
     "join would make"),
    ('{{ "%*d" % (event.width, 1) }}', "'%' formatting would make 300,000,403 characters"),
    ('{{ "%300000000d" % 1 }}', "'%' formatting would make 300,000,411"),
    ('{{ "%.300000000f" % 1 }}', "'%' formatting would make 300,000,412"),
    ('{{ "%300000000d" | format(1) }}', "format would make 300,000,411"),
    ('{{ "{:300000000}".format(1) }}', "str.format would make 300,000,400"),
    ('{{ "{:{}}".format(1, event.width) }}', "str.format would make 300,000,409"),
    ('{{ "{0}{0}{0}{0}{0}{0}".format("x" * 99999) }}', "str.format would make 599,994"),
    ('{{ "x" | indent(event.width, true) }}', "indent would make 300,000,001"),
    ('{{ ("a " * 50000) | wordwrap(1, wrapstring="x" * 1000) }}', "wordwrap would make"),
    ("{{ [1] | batch(event.width, 0) | list }}", "batch would pad to 300,000,000 items"),
    ("{{ [1] | slice(event.width) | list | length }}", "slice would make 300,000,000 lists"),
    ('{{ {"a": [1, 2]} | tojson(event.width) }}', "tojson would make 600,000,008"),
    ('{{ ["x" * 99999] * 100000 }}', "'*' would make 10,000,500,000 characters"),
    ('{% set ns = namespace(s="x") %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}'
     "{% endfor %}", "'~' would make 1,048,576 characters"),
    ('{% set ns = namespace(s="x") %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}'
     "{% endfor %}", "'+' would make 1,048,576 characters"),
    ("{% set ns = namespace(s=[1]) %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}"
     "{% endfor %}", "'+' would make 131,072 items"),
    ("{% set l = [1] %}{% for i in range(60) %}{{ l.extend(l) }}{% endfor %}",
     "list.extend would make 131,072 items"),
    ('{% for i in range(100000) %}{{ "x" * 99999 }}{% endfor %}',
     "MessageTooLargeError: the rendered text has more than 524,288 characters "
     "(stopped at 599,994)"),
    # Jinja2's buffers: each new piece was kept until the join (10 GB, 24 s)
    ('{% set out %}{% for i in range(100000) %}{{ "y" * 99999 }}{% endfor %}{% endset %}'
     "{{ out | length }}", "a block's output would make 599,994 characters"),
    ('{% macro m() %}{% for i in range(100000) %}{{ "y" * 99999 }}{% endfor %}{% endmacro %}'
     "{{ m() | length }}", "a block's output would make 599,994 characters"),
    ('{% filter upper %}{% for i in range(100000) %}{{ "y" * 99999 }}{% endfor %}'
     "{% endfilter %}", "a block's output would make 599,994 characters"),
    ("{% macro m() %}{{ caller() | length }}{% endmacro %}{% call m() %}"
     '{% for i in range(100000) %}{{ "y" * 99999 }}{% endfor %}{% endcall %}',
     "a block's output would make 599,994 characters"),
])
def test_sizes_are_checked_before_the_memory_is_spent(source: str, error: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(TemplateRenderError, match="cannot render") as caught:
            render_string(source, {"event": {"width": 300_000_000}})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error in str(caught.value)
    assert peak < 50_000_000


def test_ordinary_widths_and_formats_still_work() -> None:
    assert render_string(
        '{{ "%d" % 1000000 }}|{{ "x" | center(5) }}|{{ "ab".ljust(4) }}|{{ "7".zfill(3) }}|'
        '{{ "%5.2f" | format(3.14159) }}|{{ "{:>4}".format("ab") }}|{{ [1, 2] | join(",") }}|'
        '{{ "a-b" | replace("-", "+") }}|{{ "a b" | wordwrap(1) }}|'
        '{{ [1, 2, 3] | batch(2, 0) | list }}|{{ {"a": 1} | tojson }}|'
        '{{ "%(a)s" % {"a": 5} }}|{{ "x" ~ 1 ~ [2] }}|{{ "a" + "b" }}|{{ [1] + [2] }}|'
        '{{ "{a}".format_map({"a": 3}) }}|{{ ",".join(range(3) | map("string")) }}|'
        '{{ "a\tb".expandtabs(2) }}|{{ ("x" * 100000) | length }}', {}) == (
        "1000000|  x  |ab  |007| 3.14|  ab|1,2|a+b|a\nb|[[1, 2], [3, 0]]|{\"a\": 1}|5|x1[2]|"
        "ab|[1, 2]|3|0,1,2|a b|100000")


def test_a_parts_loops_share_one_budget_of_iterations() -> None:
    """Nested loops multiply: two over 100,000 items ran ten billion times (minutes of
    a worker's CPU for one send). A part's loops run at most MAX_LOOP_STEPS times."""
    with pytest.raises(TemplateRenderError, match="loops ran more than 1,000,000 times"):
        render_string("{% for i in range(100000) %}{% for j in range(event.n) %}"
                      "{% endfor %}{% endfor %}", {"event": {"n": 100_000}})
    assert MAX_LOOP_STEPS == 1_000_000
    assert render_string("{% for i in range(1000) %}{% for j in range(999) %}{% endfor %}"
                         "{% endfor %}done", {}) == "done"  # 1,000 + 999,000 iterations
    assert render_string(  # loop.length, else, unpacking and recursive loops still work
        "{% for x in items if x > 1 %}{{ loop.index }}/{{ loop.length }} {% else %}none"
        "{% endfor %}|{% for x in [] %}{{ x }}{% else %}none{% endfor %}|"
        "{% for k, v in {'a': 1}.items() %}{{ k }}={{ v }}{% endfor %}|"
        "{% for n in tree recursive %}{{ n.id }}{% if n.kids %}({{ loop(n.kids) }}){% endif %}"
        "{% endfor %}", {"items": [1, 2, 3],
                         "tree": [{"id": 1, "kids": [{"id": 2, "kids": []}]}]}) == (
        "1/2 2/2 |none|a=1|1(2)")


@pytest.mark.parametrize("grow", [
    "{% set _ = kept.append('x' * 100000 ~ i) %}",
    "{% set _ = kept.insert(0, 'x' * 100000 ~ i) %}",
    "{% set _ = kept.extend(['x' * 100000 ~ i]) %}",
    "{% set _ = index.update({i: 'x' * 100000 ~ i}) %}",
    "{% set _ = index.setdefault(i, 'x' * 100000 ~ i) %}",
    "{% set _ = seen.add('x' * 100000 ~ i) %}",
])
def test_what_a_render_adds_to_lists_dicts_and_sets_is_bounded(grow: str) -> None:
    """The loops' cap bounds the time, not what each iteration leaves behind: a
    thousand iterations appending a new 100,000-character string each held 100 MB (a
    million, 100 GB) and rendered nothing. A part's render may add 4 Mi characters."""
    source = ("{% set kept = [] %}{% set index = {} %}{% set seen = set() %}"
              "{% for i in range(1000) %}" + grow + "{% endfor %}done")
    tracemalloc.start()
    try:
        with pytest.raises(TemplateRenderError, match="would hold more than 4,194,304"):
            render_string(source, {"set": set})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, peak


def test_ordinary_lists_and_dicts_still_grow() -> None:
    source = ("{% set names = [] %}{% set by = {} %}{% for p in people %}"
              "{% set _ = names.append(p.name) %}{% set _ = by.update({p.name: p.n}) %}"
              "{% endfor %}{{ names | join(',') }} {{ by | length }}")
    people = [{"name": f"n{i}", "n": i} for i in range(5000)]
    assert render_string(source, {"people": people}).endswith(" 5000")
