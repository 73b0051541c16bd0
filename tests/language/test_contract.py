"""Every YAML block of the language contract loads, and every complete journey runs."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from engine.testing import InMemoryEngine
from journeys.loader import load_path
from journeys.model import Policy
from journeys.templating import TemplateFile
from tests.conftest import START, contract_path

BLOCKS = re.findall(r"```yaml\n(.*?)```", contract_path().read_text(), re.S)


def _blocks(kind: str) -> list[str]:
    out = []
    for text in BLOCKS:
        data = YAML(typ="safe").load(text)
        looks_like = {
            "journey": "journey" in data,
            "entry": set(data) == {"entry"},
            "template": "channel" in data,
            "policy": "frequency_caps" in data,
        }
        if looks_like[kind]:
            out.append(text)
    return out


def test_the_contract_has_the_blocks_we_expect() -> None:
    assert len(_blocks("journey")) == 2
    assert len(_blocks("entry")) == 3
    assert len(_blocks("template")) == 1
    assert len(_blocks("policy")) == 1


def _folder_for(tmp_path: Path, journey_yaml: str) -> Path:
    data = YAML(typ="safe").load(journey_yaml)
    (tmp_path / f"{data['journey']}.yaml").write_text(journey_yaml)
    templates = tmp_path / "templates"
    templates.mkdir(exist_ok=True)
    ids = {s["send"]["template"] for s in data["steps"] if "send" in s}
    for tid in ids:
        (templates / f"{tid}.yaml").write_text(
            f"channel: email\nsubject: stub {tid}\ntext: hello {{{{ profile.id }}}}\n")
    return tmp_path


@pytest.mark.parametrize("text", _blocks("journey"), ids=lambda t: t.split("\n")[0])
def test_complete_journeys_validate_and_run(tmp_path: Path, text: str) -> None:
    folder = _folder_for(tmp_path, text)
    library = load_path(folder)
    (journey,) = library.journeys.values()
    eng = InMemoryEngine.from_folder(folder, start=START)
    entry = journey.model.entry
    assert entry.event is not None
    # No policy.yaml in the folder: the bundled policy applies, so consent is needed.
    eng.identify("p1", {"email": "p1@example.com", "timezone": "Europe/Madrid",
                        "consent": {"email": True, "sms": True, "push": True}})
    eng.track("p1", entry.event, {"cart_value": 30, "source": "web"})
    eng.run_until_idle(timedelta(days=60))
    assert eng.sent, "the journey sent nothing"
    assert eng.exits
    assert eng.exits[-1].journey == journey.id


@pytest.mark.parametrize("text", _blocks("entry"))
def test_entry_fragments_validate_in_a_minimal_journey(tmp_path: Path, text: str) -> None:
    body = "journey: fragment\nversion: 1\n" + text + "steps:\n  - id: done\n    exit: done\n"
    (tmp_path / "fragment.yaml").write_text(body)
    library = load_path(tmp_path)
    assert "fragment" in library.journeys


def test_template_block_loads() -> None:
    (text,) = _blocks("template")
    TemplateFile.model_validate(YAML(typ="safe").load(text))


def test_policy_block_loads() -> None:
    (text,) = _blocks("policy")
    policy = Policy.model_validate(YAML(typ="safe").load(text))
    assert policy.frequency_caps["email"].max == 3
