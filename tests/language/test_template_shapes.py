"""A template reading an attribute the render context never has (`profile.trait`,
`journey.title`, `profile.computed.order_count`) is a validation error at the expression:
`validate` passed it before, and every send of it was skipped as `template_error`."""

from __future__ import annotations

from pathlib import Path

import pytest

from journeys.errors import InvalidJourney
from journeys.loader import load_path
from tests.engine.helpers import HELLO, stub_email, write_folder


def _problems(folder: Path) -> list[str]:
    with pytest.raises(InvalidJourney) as info:
        load_path(folder)
    return [str(p).split("templates/", 1)[1] for p in info.value.problems]


def test_unknown_attributes_of_profile_journey_enrollment_and_computed(
        tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"welcome": (
        "channel: email\n"
        "subject: \"{{ journey.title }} for {{ profile.trait.first_name | default('you') }}\"\n"
        "html: |\n"
        "  <p>Hello</p>\n"
        "  <p>{{ profile.computed.order_count }} orders,\n"
        "  since {{ enrollment['entered'] }}; again {{ profile.trait.first_name }}</p>\n")})
    assert _problems(folder) == [
        "welcome.yaml:2:14: unknown attribute 'journey.title' in template (journey has id, "
        "version, name)",
        "welcome.yaml:2:38: unknown attribute 'profile.trait' in template (profile has id, "
        "traits, computed) (did you mean 'traits'?)",
        "welcome.yaml:5:9: unknown computed trait 'profile.computed.order_count' in template "
        "(did you mean 'orders_count'?)",
        "welcome.yaml:6:12: unknown attribute 'enrollment.entered' in template (enrollment "
        "has id, state, status, data, entered_at, variants) (did you mean 'entered_at'?)",
        # each part once: the html reads it again on its own line
        "welcome.yaml:6:47: unknown attribute 'profile.trait' in template (profile has id, "
        "traits, computed) (did you mean 'traits'?)",
    ]


def test_an_html_file_is_checked_too(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"welcome": (
        "channel: email\nsubject: hi\nhtml_file: body.html\n")})
    (folder / "templates" / "body.html").write_text(
        "<p>Hi</p>\n<p>{{ profile.trait.first_name | default('there') }}</p>\n")
    problems = _problems(folder)
    assert problems == ["body.html:2:7: unknown attribute 'profile.trait' in template "
                        "(profile has id, traits, computed) (did you mean 'traits'?)"]


def test_what_the_context_has_passes(tmp_path: Path) -> None:
    """Every attribute the engine gives and dict methods are fine; so is the whole
    bundled library (its own tests)."""
    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"welcome": (
        "channel: email\n"
        "subject: \"{{ profile.id }} {{ profile.get('id') }} {{ journey.name }} "
        "{{ journey.id }} {{ journey.version }}\"\n"
        "text: \"{{ enrollment.data.x | default('') }} {{ enrollment.variants }} "
        "{{ enrollment.state }} {{ enrollment.status }} {{ enrollment.entered_at }} "
        "{{ enrollment.id }} {{ profile.computed.orders_count | default(0) }} "
        "{{ profile.computed.get('visits') }} {{ event.properties.x | default('') }} "
        "{{ trigger.properties.y | default('') }} {{ profile.traits.x | default('') }} "
        "{{ event.event }} {{ event.timestamp }} {{ event.userId }} {{ event.context }}\"\n")})
    load_path(folder)


def test_an_events_data_is_under_properties(tmp_path: Path) -> None:
    """`event.property.name`, `event.price`: an event has its own keys, and what the
    sender sent is under `properties`; in templates and in conditions."""
    journey = HELLO.replace("entry: {event: Signed Up}", (
        "entry:\n  event: Signed Up\n  when: {event.property.source: {eq: web}}"))
    journey = journey.replace("steps:\n", (
        "steps:\n  - id: w\n    wait_for: {event: Clicked, timeout: 1d, when: "
        "{trigger.url: {exists: true}}}\n"))
    folder = write_folder(tmp_path / "j", {"hello": journey}, {"welcome": (
        "channel: email\n"
        "subject: \"{{ event.property.name | default('') }} {{ event.price }}\"\n"
        "text: hi\n")})
    with pytest.raises(InvalidJourney) as info:
        load_path(folder)
    assert [str(p).split("/j/", 1)[1] for p in info.value.problems] == [
        "hello.yaml:6:10: unknown path 'event.property.source' (did you mean 'properties'?)",
        "hello.yaml:9:52: unknown path 'trigger.url' (an event's own data is under "
        "properties: trigger.properties.url)",
        "templates/welcome.yaml:2:14: unknown attribute 'event.property' in template (did "
        "you mean 'properties'?)",
        "templates/welcome.yaml:2:54: unknown attribute 'event.price' in template (an "
        "event's own data is under properties: event.properties.price)",
    ]


def test_inline_strings_of_a_journey_are_checked_too(tmp_path: Path) -> None:
    journey = HELLO + (
        "  - id: note\n    set_data: {who: \"{{ profile.trait.first_name }}\"}\n"
        "  - id: tell\n    emit: {event: Asked, properties: {v: \"{{ event.revenue }}\"}}\n")
    folder = write_folder(tmp_path / "j", {"hello": journey}, {"welcome": stub_email("welcome")})
    with pytest.raises(InvalidJourney) as info:
        load_path(folder)
    assert [str(p).split("/j/", 1)[1] for p in info.value.problems] == [
        "hello.yaml:9:21: unknown attribute 'profile.trait' in template (profile has id, "
        "traits, computed) (did you mean 'traits'?)",
        "hello.yaml:11:42: unknown attribute 'event.revenue' in template (an event's own "
        "data is under properties: event.properties.revenue)",
    ]


def test_a_templates_own_variables_of_the_same_names_are_its_own(tmp_path: Path) -> None:
    """A loop variable, a macro's argument, a `{% set %}`, a `{% with %}` or an import
    named `event`, `profile` or `journey` is the template's own: `{% for event in
    profile.traits.upcoming_events %}{{ event.title }}` rendered each event's title, and
    validate took `event.title` for the entry event's. Outside its scope the name is the
    context's again, and checked."""
    journey = HELLO + (
        "  - id: note\n    set_data: {skus: \"{% for event in event.properties.products "
        "| default([]) %}{{ event.sku }}{% endfor %}\"}\n"
        "  - id: tell\n    update_profile: {set: {city: \"{% macro m(profile) %}"
        "{{ profile.city }}{% endmacro %}{{ m(profile.traits) }}\"}}\n")
    folder = write_folder(tmp_path / "j", {"hello": journey}, {"welcome": (
        "channel: email\n"
        "subject: \"{% with journey = profile.traits %}{{ journey.trip }}{% endwith %}\"\n"
        "text: |\n"
        "  {% for event in profile.traits.upcoming_events | default([]) %}\n"
        "  {{ loop.index }}. {{ event.title }} on {{ event['date'] }}\n"
        "  {% endfor %}\n"
        "  {% macro hello(profile) %}Hi {{ profile.first_name }}{% endmacro %}\n"
        "  {{ hello(profile.traits) }}\n"
        "  {% for friend in event.properties.friends | default([]) %}\n"
        "  {% set profile = friend %}{{ profile.name }}\n"
        "  {% endfor %}\n"
        "  {% call(journey) hello(profile.traits) %}{{ journey.stop }}{% endcall %}\n"
        "html_file: body.html\n")})
    (folder / "templates" / "layout.html").write_text(
        "<body>{% block content %}{% endblock %}</body>\n")
    (folder / "templates" / "body.html").write_text(
        "{% extends 'layout.html' %}\n"
        "{% set journey = {'title': 'Autumn'} %}\n"
        "{% block content %}\n"
        "{% for profile, event in event.properties.pairs | default([]) %}\n"
        "{{ profile.name }} {{ event.when }}\n"
        "{% endfor %}{{ journey.title }}\n"
        "{% endblock %}\n")
    load_path(folder)


def test_outside_its_scope_the_name_is_the_contexts_again(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"welcome": (
        "channel: email\n"
        "subject: hi\n"
        "text: |\n"
        "  {% for event in profile.traits.upcoming_events | default([]) %}\n"
        "  {% set journey = event %}{{ event.title }} {{ journey.title }}\n"
        "  {% endfor %}\n"
        "  {% macro hello(profile) %}Hi {{ profile.first_name }}{% endmacro %}\n"
        "  {{ event.title }} {{ journey.title }} {{ profile.first_name }}\n")})
    assert _problems(folder) == [
        "welcome.yaml:8:6: unknown attribute 'event.title' in template (an event's own data "
        "is under properties: event.properties.title)",
        "welcome.yaml:8:24: unknown attribute 'journey.title' in template (journey has id, "
        "version, name)",
        "welcome.yaml:8:44: unknown attribute 'profile.first_name' in template (profile has "
        "id, traits, computed)",
    ]



def test_the_declared_traits_and_properties_checks_know_a_templates_own_variables(
        tmp_path: Path) -> None:
    """traits.yaml's checks of `profile.traits.<name>` and of a declared entry event's
    `event.properties.<name>` skip a template's own `profile` or `event`, as the
    attribute checks do, and a dict's methods: `profile.traits.get('nickname', 'friend')`
    rendered, and was 'unknown trait profile.traits.get' (declare `get: {type: string}`)."""
    journey = HELLO.replace("{event: Signed Up}", "{event: Checkout Started}")
    folder = write_folder(tmp_path / "j", {"hello": journey}, {"welcome": (
        "channel: email\n"
        "subject: hi\n"
        "text: |\n"
        "  {% for event in profile.traits.upcoming | default([]) %}\n"
        "  {{ event.properties.venue }}{% endfor %}\n"
        "  {% for profile in profile.traits.friends | default([]) %}\n"
        "  {{ profile.traits.nickname }}{% endfor %}\n"
        # a dict's methods are no trait or property: `.get` is the method, never a key
        "  {{ profile.traits.get('nickname', 'friend') }}\n"
        "  {% for k, v in profile.traits.items() %}{{ k }}{% endfor %}\n"
        "  {{ event.properties.get('venue', '') }} {{ event.properties.keys() | list }}\n")})
    (folder / "traits.yaml").write_text(
        "traits:\n  upcoming: {type: list}\n  friends: {type: list}\n"
        "events:\n  Checkout Started:\n    properties:\n      cart_value: {type: number}\n")
    load_path(folder)


def test_event_name_says_where_a_page_calls_name_is(tmp_path: Path) -> None:
    """Segment's page and screen calls carry a `name`: here it is the event's name,
    `event.event`, and `event.name` is never there."""
    journey = HELLO.replace("entry: {event: Signed Up}", (
        "entry:\n  event: Pricing\n  when: {event.name: {eq: Pricing}}"))
    folder = write_folder(tmp_path / "j", {"hello": journey}, {"welcome": (
        "channel: email\nsubject: \"{{ event.name }}\"\ntext: hi\n")})
    with pytest.raises(InvalidJourney) as info:
        load_path(folder)
    said = ("(a page or screen call's name, as a track's, is event.event; an event's own "
            "data is under properties: event.properties.name)")
    assert [str(p).split("/j/", 1)[1] for p in info.value.problems] == [
        f"hello.yaml:6:10: unknown path 'event.name' {said}",
        f"templates/welcome.yaml:2:14: unknown attribute 'event.name' in template {said}",
    ]
