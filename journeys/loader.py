"""Load journey files and folders, reporting every problem as `file:line:column: message`.

`load_library(folder)` is the entry point most code wants: it loads `policy.yaml`,
`templates/` and every journey file, lints them together and raises one
`InvalidJourney` listing every problem in every file, or returns a `Library`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from journeys.errors import InvalidJourney, Problem
from journeys.library import bundled_library
from journeys.lint import lint
from journeys.loaded import Library, LoadedJourney
from journeys.model import Journey, Policy
from journeys.problems import pydantic_problems
from journeys.templating import load_templates
from journeys.yamlsrc import Where, load_yaml, plain
from rules import Condition, ConditionError, parse_condition

POLICY_FILE = "policy.yaml"
COMPUTED_FILE = "computed_traits.yaml"
TEMPLATES_DIR = "templates"


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
    """The folder's `policy.yaml`; without one, the bundled safe policy (consent
    required on marketing channels, quiet hours): no file must never mean no protection."""
    path = folder / POLICY_FILE
    if not path.is_file():
        bundled = bundled_library()
        if folder.resolve() == bundled.resolve() or not (bundled / POLICY_FILE).is_file():
            return Policy(), []
        return load_policy(bundled, bundled.parent)
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
