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
from journeys.template_sandbox import MAX_PART_CHARS
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
        f"the rendered text has 600,000 characters (at most {MAX_PART_CHARS:,})")
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
