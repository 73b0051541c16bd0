"""Strings nested in dicts and lists of `emit.properties` (and of `update_profile.set`
and `set_data`) are Jinja2 templates too: the runner renders every one of them
(journeys/templating.py `render_value`), so validate checks every one, at its own
place, for syntax, unknown variables and unknown attributes. It checked only the
strings at the top, and `emit: {properties: {order: {total: "{{ event.revenue }}"}}}`
passed validate, then failed every run as a `template_error`."""

from __future__ import annotations

from pathlib import Path

import pytest

from journeys.errors import InvalidJourney
from journeys.loader import load_path
from tests.engine.helpers import HELLO, stub_email, write_folder


def _problems(tmp_path: Path, steps: str) -> list[str]:
    folder = write_folder(tmp_path / "j", {"hello": HELLO + steps},
                          {"welcome": stub_email("welcome")})
    with pytest.raises(InvalidJourney) as info:
        load_path(folder)
    return [str(p).split("/j/", 1)[1] for p in info.value.problems]


def test_nested_emit_properties_are_checked_at_their_own_place(tmp_path: Path) -> None:
    steps = (
        "  - id: tell\n"
        "    emit:\n"
        "      event: Asked\n"
        "      properties:\n"
        "        order:\n"
        "          total: \"{{ event.revenue }}\"\n"
        "          items:\n"
        "            - \"{{ journey.title }}\"\n"
        "            - {sku: \"{{ nobody.sku }}\", n: 1}\n"
        "            - \"{{ oops\"\n"
        "          who: \"{{ profile.computed.order_count }}\"\n")
    assert _problems(tmp_path, steps) == [
        "hello.yaml:13:18: unknown attribute 'event.revenue' in template (an event's own "
        "data is under properties: event.properties.revenue)",
        "hello.yaml:15:15: unknown attribute 'journey.title' in template (journey has id, "
        "version, name)",
        "hello.yaml:16:21: unknown variable 'nobody' in template; in scope: enrollment, "
        "event, journey, profile, trigger, unsubscribe_url",
        "hello.yaml:17:15: template syntax error: unexpected end of template, expected "
        "'end of print statement'.",
        "hello.yaml:18:16: unknown computed trait 'profile.computed.order_count' in "
        "template (did you mean 'orders_count'?)",
    ]


def test_nested_update_profile_and_set_data_values_too(tmp_path: Path) -> None:
    steps = (
        "  - id: note\n"
        "    set_data: {cart: {lines: [\"{{ event.price }}\"]}}\n"
        "  - id: keep\n"
        "    update_profile: {set: {address: {city: \"{{ profile.trait.city }}\"}}}\n")
    assert _problems(tmp_path, steps) == [
        "hello.yaml:9:31: unknown attribute 'event.price' in template (an event's own data "
        "is under properties: event.properties.price)",
        "hello.yaml:11:44: unknown attribute 'profile.trait' in template (profile has id, "
        "traits, computed) (did you mean 'traits'?)",
    ]


def test_nested_strings_that_are_right_pass(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"hello": HELLO + (
        "  - id: tell\n"
        "    emit:\n"
        "      event: Asked\n"
        "      properties:\n"
        "        order: {total: \"{{ event.properties.revenue | default(0) }}\", "
        "tags: [a, \"{{ journey.name }}\", 3, null]}\n")},
        {"welcome": stub_email("welcome")})
    load_path(folder)


def test_an_undeclared_trait_nested_is_reported_at_its_own_place(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"hello": HELLO + (
        "  - id: tell\n"
        "    emit:\n"
        "      event: Asked\n"
        "      properties:\n"
        "        who:\n"
        "          - \"{{ profile.traits.nick }}\"\n")},
        {"welcome": stub_email("welcome")})
    (folder / "traits.yaml").write_text("traits:\n  nickname: {type: string}\n")
    with pytest.raises(InvalidJourney) as info:
        load_path(folder)
    assert [str(p).split("/j/", 1)[1] for p in info.value.problems] == [
        "hello.yaml:13:13: unknown trait 'profile.traits.nick' in template (not in "
        "traits.yaml) (did you mean 'nickname'?)"]
