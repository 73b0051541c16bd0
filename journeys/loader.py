"""Load journey files and folders, reporting every problem as `file:line:column: message`.

`load_library(folder)` is the entry point most code wants: it loads `policy.yaml`,
`templates/` and every journey file, lints them together and raises one
`InvalidJourney` listing every problem in every file, or returns a `Library`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from journeys.errors import InvalidJourney, Problem
from journeys.model import Journey, Policy, language_keys
from journeys.steps import STEP_KINDS, step_kinds_in
from journeys.templating import TemplateLibrary, load_templates
from journeys.yamlsrc import Source, Where, load_yaml, plain
from rules import Condition, ConditionError, parse_condition

POLICY_FILE = "policy.yaml"
COMPUTED_FILE = "computed_traits.yaml"
TEMPLATES_DIR = "templates"


@dataclass(frozen=True)
class LoadedJourney:
    """A journey that passed shape validation, with its parsed conditions and source."""

    model: Journey
    source: Source
    conditions: dict[Where, Condition]

    @property
    def id(self) -> str:
        return self.model.journey

    @property
    def file(self) -> str:
        return self.source.file


@dataclass
class Library:
    """A journeys folder: its journeys, templates and global policy."""

    folder: Path | None
    journeys: dict[str, LoadedJourney] = field(default_factory=dict)
    templates: TemplateLibrary = field(default_factory=lambda: TemplateLibrary(None))
    policy: Policy = field(default_factory=Policy)
    computed_config: dict[str, Any] | None = None


def did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def pydantic_problems(exc: ValidationError, source: Source) -> list[Problem]:
    """Translate pydantic errors to positioned, readable problems."""
    problems: list[Problem] = []
    keys = language_keys()
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ":" in p))  # union tags
        kind = err["type"]
        field_name = next((p for p in reversed(loc) if isinstance(p, str)), "")
        if kind == "extra_forbidden":
            problems.append(source.problem(loc, f"unknown key {field_name!r}"
                                           + did_you_mean(field_name, keys), key=True))
        elif kind == "missing":
            problems.append(source.problem(loc[:-1], f"missing required key {field_name!r}"))
        elif kind == "step_kind":
            problems.append(source.problem(loc, _step_kind_message(err["input"])))
        else:
            msg = err["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
            problems.append(source.problem(loc, f"{field_name}: {msg}" if field_name else msg))
    return problems


def _step_kind_message(raw: Any) -> str:
    if not isinstance(raw, dict):
        return "a step must be a mapping with an 'id' and one kind key: " + ", ".join(STEP_KINDS)
    kinds = step_kinds_in(raw)
    if len(kinds) > 1:
        return f"a step has exactly one kind, this one has {len(kinds)}: " + ", ".join(kinds)
    unknown = [k for k in raw if k not in {"id", "next", "name", "description"}]
    hints = "; ".join(f"unknown key {k!r}" + did_you_mean(k, STEP_KINDS) for k in unknown)
    kinds_list = ", ".join(STEP_KINDS)
    return f"step has no kind (one of: {kinds_list})" + (f"; {hints}" if hints else "")


def condition_places(model: Journey) -> Iterator[tuple[Where, Any]]:
    """Every place in a journey that holds a condition, with its location."""
    entry = model.entry
    if entry.when is not None:
        yield ("entry", "when"), entry.when
    if entry.segment is not None:
        yield ("entry", "segment", "when"), entry.segment.when
    for i, item in enumerate(model.exit_when):
        if item.when is not None:
            yield ("exit_when", i, "when"), item.when
    if model.goal is not None and model.goal.when is not None:
        yield ("goal", "when"), model.goal.when
    for i, step in enumerate(model.steps):
        wait_for = getattr(step, "wait_for", None)
        if wait_for is not None and wait_for.when is not None:
            yield ("steps", i, "wait_for", "when"), wait_for.when
        for j, case in enumerate(getattr(step, "branch", None) or []):
            when = getattr(case, "when", None)
            if when is not None:
                yield ("steps", i, "branch", j, "when"), when


def parse_journey(text: str, file: str) -> LoadedJourney:
    """Shape-validate one journey file (no cross-file checks). Raises InvalidJourney."""
    source = load_yaml(text, file)
    if not isinstance(source.data, dict):
        raise InvalidJourney([source.problem((), "a journey file must be a mapping with "
                                              "'journey', 'version', 'entry' and 'steps'")])
    raw = plain(source.data)
    try:
        model = Journey.model_validate(raw)
    except ValidationError as exc:
        problems = pydantic_problems(exc, source)
        stubbed = _stub_broken_steps(raw, exc)
        if stubbed is not None:
            # Shape errors only inside steps: lint the rest too, so one run shows every
            # problem (broken steps become pass-through stubs that keep their id and next).
            from journeys.lint import lint

            problems += lint(LoadedJourney(stubbed, source, {}), None)
        raise InvalidJourney(sorted(set(problems))) from None
    problems = []
    conditions: dict[Where, Condition] = {}
    for where, raw in condition_places(model):
        try:
            conditions[where] = parse_condition(raw, where=where)
        except ConditionError as exc:
            problems.extend(
                source.problem(p.where, p.message, key=_points_at_key(p.where))
                for p in exc.problems
            )
    if problems:
        raise InvalidJourney(problems)
    return LoadedJourney(model, source, conditions)


def _stub_broken_steps(raw: Any, exc: ValidationError) -> Journey | None:
    broken = {e["loc"][1] for e in exc.errors() if len(e["loc"]) > 1 and e["loc"][0] == "steps"
              and isinstance(e["loc"][1], int)}
    if not broken or any(e["loc"][:1] != ("steps",) or len(e["loc"]) < 2 for e in exc.errors()):
        return None
    steps = list(raw.get("steps") or [])
    for i in broken:
        old = steps[i] if isinstance(steps[i], dict) else {}
        stub = {"id": str(old.get("id", f"__step_{i}")), "wait": "1s"}
        if isinstance(old.get("next"), str):
            stub["next"] = old["next"]
        steps[i] = stub
    try:
        return Journey.model_validate({**raw, "steps": steps})
    except ValidationError:
        return None


def _points_at_key(where: tuple[str | int, ...]) -> bool:
    """Point at an unknown operator or path key rather than its value."""
    return (bool(where) and isinstance(where[-1], str)
            and where[-1] not in {"when", "all", "any", "not"})


def load_policy(folder: Path, display_root: Path) -> tuple[Policy, list[Problem]]:
    path = folder / POLICY_FILE
    if not path.is_file():
        return Policy(), []
    display = str(path.relative_to(display_root))
    try:
        source = load_yaml(path.read_text(), display)
        return Policy.model_validate(plain(source.data) or {}), []
    except InvalidJourney as exc:
        return Policy(), exc.problems
    except ValidationError as exc:
        return Policy(), pydantic_problems(exc, source)


def journey_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.yaml")
                  if p.name not in {POLICY_FILE, COMPUTED_FILE})


def load_library(folder: str | Path, *, only: list[str] | None = None) -> Library:
    """Load and lint a whole journeys folder; raise InvalidJourney listing every problem."""
    from journeys.lint import lint

    folder = Path(folder)
    root = folder.parent
    if not folder.is_dir():
        raise InvalidJourney([Problem(str(folder), 1, 1, "no such journeys folder")])
    library, problems = _load_support(folder)
    templates = library.templates
    seen: dict[str, str] = {}
    for path in journey_files(folder):
        display = str(path.relative_to(root))
        try:
            loaded = parse_journey(path.read_text(), display)
        except InvalidJourney as exc:
            problems += exc.problems
            continue
        if only is not None and loaded.id not in only:
            continue
        if loaded.id in seen:
            problems.append(loaded.source.problem(("journey",), f"journey id {loaded.id!r} is "
                                                  f"already used by {seen[loaded.id]}"))
            continue
        if path.stem != loaded.id:
            problems.append(loaded.source.problem(
                ("journey",), f"journey {loaded.id!r} must live in {loaded.id}.yaml"))
        seen[loaded.id] = display
        problems += lint(loaded, templates)
        library.journeys[loaded.id] = loaded
    if problems:
        raise InvalidJourney(problems)
    return library


def _load_support(folder: Path) -> tuple[Library, list[Problem]]:
    """The policy, templates and computed-trait config of a journeys folder."""
    root = folder.parent
    problems: list[Problem] = []
    policy, policy_problems = load_policy(folder, root)
    problems += policy_problems
    templates, template_problems = load_templates(folder / TEMPLATES_DIR, root)
    problems += template_problems
    library = Library(folder, templates=templates, policy=policy)
    computed = folder / COMPUTED_FILE
    if computed.is_file():
        try:
            library.computed_config = plain(load_yaml(computed.read_text(),
                                                      str(computed.relative_to(root))).data)
        except InvalidJourney as exc:
            problems += exc.problems
    return library, problems


def load_journey_file(path: str | Path) -> Library:
    """Load one journey file with the templates and policy of the folder it lives in."""
    from journeys.lint import lint

    path = Path(path)
    if not path.is_file():
        raise InvalidJourney([Problem(str(path), 1, 1, "no such journey file")])
    library, problems = _load_support(path.parent)
    try:
        loaded = parse_journey(path.read_text(), str(path))
    except InvalidJourney as exc:
        raise InvalidJourney(problems + exc.problems) from None
    problems += lint(loaded, library.templates)
    if problems:
        raise InvalidJourney(problems)
    library.journeys[loaded.id] = loaded
    return library


def load_path(path: str | Path) -> Library:
    """A journeys folder or a single journey file."""
    path = Path(path)
    return load_library(path) if path.is_dir() else load_journey_file(path)
