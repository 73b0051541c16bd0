"""The README's "Where to add things" names every file a newcomer touches to add a rule
operator, a step kind or a channel: what it names exists, and the registries agree with
each other and with the docs that list them (docs/language.md, docs/channels.md). A new
one that skips a place fails here, saying which."""

from __future__ import annotations

import importlib
import re
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _readme_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("Where to add things")
    return text[start:text.index("\n## ", start)]


def _doc_section(page: str, heading: str) -> str:
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


# (file, name defined in it) for each kind of addition: each is named in the README's
# section, and is there
NAMED = {
    "rule operator": [
        ("rules/operators.py", "OPERATORS"),
        ("tests/rules/test_rules.py", "OPERANDS"),
        ("rules/explain.py", "SYMBOLS"),
    ],
    "step kind": [
        ("journeys/steps.py", "STEP_MODELS"),
        ("journeys/steps.py", "Step"),
        ("journeys/steps.py", "AnyStep"),
        ("journeys/steps.py", "INNER_MODELS"),
        ("engine/core/steps/__init__.py", "HANDLERS"),
        ("engine/core/model.py", "UpdateProfile"),
        ("journeys/lint.py", "inline_template_places"),
        ("journeys/compiler.py", "_describe"),
        ("tests/language/test_broken_files.py", "EXPECTED"),
    ],
    "channel": [
        ("channels/__init__.py", "ADAPTERS"),
        ("channels/webhook.py", "build_request"),
        ("channels/webhook.py", "send_checked"),
        ("channels/webhook.py", "checked_headers"),
        ("channels/deadline.py", "bounded_client"),
        ("journeys/templating.py", "CHANNEL_KINDS"),
        ("engine/runtime/rendering.py", "ADDRESS_TRAITS"),
        ("journeys/model.py", "MARKETING_CHANNELS"),
    ],
}


def _defines(source: str, name: str) -> bool:
    """A definition of `name` at a line's start: `def`, `class`, or an assignment."""
    found = re.search(rf"^\s*(def |class )?{re.escape(name)}\b\s*[:=(]", source, re.M)
    return found is not None


def test_every_path_the_section_names_exists() -> None:
    section = _readme_section()
    paths = {p for p in re.findall(r"`([\w./<>-]+)`", section)
             if "/" in p and "<" not in p}
    assert paths, "no paths found in the README's section"
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, missing


def _named(kind: str) -> list[str]:
    section = _readme_section()
    wrong = []
    for path, name in NAMED[kind]:
        if f"`{name}`" not in section:
            wrong.append(f"README does not name `{name}` ({path})")
        if not _defines((ROOT / path).read_text(encoding="utf-8"), name):
            wrong.append(f"{path} defines no {name}")
    return wrong


def test_the_places_of_an_operator_are_named_and_there() -> None:
    assert not _named("rule operator")


def test_every_operator_is_documented() -> None:
    from rules import OPERATORS

    section = _doc_section("language.md", "Conditions")
    missing = [op for op in OPERATORS if not re.search(rf"`{op}(`|:)", section)]
    assert not missing, f"not under Conditions in docs/language.md: {missing}"


def test_the_places_of_a_step_kind_are_named_and_there() -> None:
    assert not _named("step kind")


def test_every_step_kind_is_in_each_registry_and_documented() -> None:
    from engine.core.steps import HANDLERS
    from journeys.steps import STEP_MODELS, AnyStep, Step

    members = typing.get_args(typing.get_args(Step)[0])
    tags = {getattr(meta, "tag", None) for member in members
            for meta in getattr(member, "__metadata__", ())}
    table = _doc_section("language.md", "Steps")
    for kind, model in STEP_MODELS.items():
        assert kind in HANDLERS, f"{kind}: no handler in HANDLERS (engine/core/steps)"
        assert f"step:{kind}" in tags, f"{kind}: not in the Step union (journeys/steps.py)"
        assert model in typing.get_args(AnyStep), f"{kind}: not in AnyStep"
        assert f"| `{kind}` |" in table, f"{kind}: no row in docs/language.md, Steps"
    assert set(HANDLERS) == set(STEP_MODELS)


def test_the_places_of_a_channel_are_named_and_there() -> None:
    assert not _named("channel")


def test_every_adapter_and_channel_name_is_documented() -> None:
    from channels import ADAPTERS
    from journeys.templating import CHANNEL_KINDS

    page = _doc_section("channels.md", "Channel adapters (`channels/`)")
    for name, factory in ADAPTERS.items():
        module = importlib.import_module(factory.__module__)
        path = Path(module.__file__ or "").relative_to(ROOT).as_posix()
        assert f"| `{name}` | `{path}` |" in page, f"{name}: no row in docs/channels.md"
    listed = re.search(r"a channel\s+name a journey can send on \(([^)]*)\)", page)
    assert listed, "docs/channels.md no longer lists the channel names"
    assert set(re.findall(r"`(\w+)`", listed.group(1))) == set(CHANNEL_KINDS)
