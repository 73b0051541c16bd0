"""Load journey files and folders, reporting every problem as `file:line:column: message`.

`load_library(folder)` is the entry point most code wants: it loads `policy.yaml`,
`templates/` and every journey file, lints them together and raises one
`InvalidJourney` listing every problem in every file, or returns a `Library`.

A problem names its file as the folder was given (`deep/a/shop/welcome.yaml`, or an
absolute path), so an editor, a terminal or a CI annotation opens it from where the
command ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from journeys.computed import ComputedTraitsConfig, TraitsFile
from journeys.declared import condition_places, journey_problems, path_problems
from journeys.errors import InvalidJourney, Problem
from journeys.library import bundled_library, journeys_path
from journeys.lint import lint
from journeys.loaded import Library, LoadedJourney
from journeys.model import ID_RE, Journey, Policy
from journeys.problems import pydantic_problems
from journeys.templating import CHANNEL_KINDS, TemplateLibrary, load_templates
from journeys.textfile import read_text
from journeys.yamlsrc import Source, Where, load_yaml, plain
from rules import Condition, ConditionError, did_you_mean, parse_condition

POLICY_FILE = "policy.yaml"
COMPUTED_FILE = "computed_traits.yaml"
TRAITS_FILE = "traits.yaml"
TEMPLATES_DIR = "templates"
SCENARIO_SUFFIX = ".scenario.yaml"  # engine/qa/scenario_file.py's, never a journey


def parse_journey(text: str, file: str, *, templates: TemplateLibrary | None = None,
                  known_traits: frozenset[str] | None = None,
                  known_events: dict[str, frozenset[str]] | None = None,
                  file_id: str | None = None) -> LoadedJourney:
    """Shape-validate one journey file (no cross-file checks). Raises InvalidJourney
    listing every problem: when part of the file is broken, the rest is still checked
    (conditions, then the linter, with `templates` when given), so one run shows all.
    `file_id`: the id its file name gives (a journeys folder's `<id>.yaml`), which the
    `journey:` key must be."""
    source = load_yaml(text, file)
    if not isinstance(source.data, dict):
        raise InvalidJourney([source.problem((), "a journey file must be a mapping with "
                                              "'journey', 'version', 'entry' and 'steps'")])
    raw = plain(source.data)
    named = raw.get("journey")
    # an id that is no id (not snake_case, empty) is said by the model, not sent to a file
    misnamed = [source.problem(("journey",), f"journey {named!r} must live in {named}.yaml")
                ] if (file_id is not None and isinstance(named, str) and ID_RE.match(named)
                      and named != file_id) else []
    try:
        model = Journey.model_validate(raw)
    except ValidationError as exc:
        problems = misnamed + pydantic_problems(exc, source)
        stubbed = _stub_broken(raw, exc)
        if stubbed is not None:
            # Broken parts become stubs (a step keeps its id and next; a broken optional
            # section is left out), and the rest is checked as usual.
            partial, condition_problems = _with_conditions(stubbed, source)
            problems += condition_problems + lint(partial, templates)
            problems += journey_problems(partial, known_traits, known_events, templates)
        raise InvalidJourney(sorted(set(problems))) from None
    loaded, problems = _with_conditions(model, source)
    problems = misnamed + problems
    if problems:
        problems += lint(loaded, templates)
        problems += journey_problems(loaded, known_traits, known_events, templates)
        raise InvalidJourney(sorted(set(problems)))
    return loaded


def _with_conditions(model: Journey, source: Source) -> tuple[LoadedJourney, list[Problem]]:
    """The journey with the conditions that parse, and the problems of those that do not."""
    problems: list[Problem] = []
    conditions: dict[Where, Condition] = {}
    for where, raw in condition_places(model):
        if raw is None:  # `when: null` was written: it would hold for everyone
            problems.append(source.problem(where, "empty condition (null): write a "
                                           "condition, or leave 'when' out"))
            continue
        try:
            conditions[where] = parse_condition(raw, where=where)
        except ConditionError as exc:
            problems.extend(
                source.problem(p.where, p.message, key=_points_at_key(p.where))
                for p in exc.problems
            )
    return LoadedJourney(model, source, conditions), problems


OPTIONAL_SECTIONS = {"name", "description", "phase", "re_entry", "exit_when", "goal",
                     "policy", "migrate", "priority", "kpis"}
STUBS: dict[str, Any] = {"version": 1, "journey": "invalid_journey",
                         "entry": {"event": "__invalid_entry__"}}


def _stub_broken(raw: dict[str, Any], exc: ValidationError) -> Journey | None:
    """`raw` with every broken part stubbed out, if that makes a valid journey."""
    fixed = dict(raw)
    steps = list(raw.get("steps") or [])
    for error in exc.errors():
        loc = error["loc"]
        top = loc[0] if loc else None
        if top == "steps" and len(loc) > 1 and isinstance(loc[1], int):
            old = steps[loc[1]] if isinstance(steps[loc[1]], dict) else {}
            stub = {"id": str(old.get("id", f"__step_{loc[1]}")), "wait": "1s"}
            if isinstance(old.get("next"), str):
                stub["next"] = old["next"]
            steps[loc[1]] = stub
        elif isinstance(top, str) and error["type"] == "extra_forbidden" and len(loc) == 1:
            fixed.pop(top, None)
        elif top in OPTIONAL_SECTIONS:
            fixed.pop(str(top), None)
        elif isinstance(top, str) and top in STUBS:
            fixed[top] = STUBS[top]
        else:
            return None
    if "steps" in fixed:
        fixed["steps"] = steps
    try:
        return Journey.model_validate(fixed)
    except ValidationError:
        return None


def _points_at_key(where: tuple[str | int, ...]) -> bool:
    """Point at an unknown operator or path key rather than its value."""
    return (bool(where) and isinstance(where[-1], str)
            and where[-1] not in {"when", "all", "any", "not"})


def load_policy(folder: Path) -> tuple[Policy, list[Problem]]:
    """The folder's `policy.yaml`; without one, the bundled safe policy (consent
    required on marketing channels, quiet hours): no file must never mean no protection."""
    path = folder / POLICY_FILE
    if not path.is_file():
        bundled = bundled_library()
        if folder.resolve() == bundled.resolve() or not (bundled / POLICY_FILE).is_file():
            return Policy(), []
        return load_policy(bundled)
    display = str(path)
    try:
        source = load_yaml(read_text(path, display), display)
    except InvalidJourney as exc:
        return Policy(), exc.problems
    raw = plain(source.data) or {}
    problems = _policy_channels(raw, source)  # checked even when the shape is broken
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        return Policy(), problems + pydantic_problems(exc, source)
    return (Policy() if problems else policy), problems


def _policy_channels(raw: Any, source: Source) -> list[Problem]:
    if not isinstance(raw, dict):
        return []
    named: list[tuple[Where, str]] = []
    caps, consent = raw.get("frequency_caps"), raw.get("consent_required")
    if isinstance(caps, dict):
        named += [(("frequency_caps", c), c) for c in caps]
    if isinstance(consent, list):
        named += [(("consent_required", i), c) for i, c in enumerate(consent)
                  if isinstance(c, str)]
    return [source.problem(where, f"unknown channel {channel!r} in {where[0]}"
                           + did_you_mean(channel, CHANNEL_KINDS),
                           key=where[0] == "frequency_caps")
            for where, channel in named if channel not in CHANNEL_KINDS]


def journey_files(folder: Path) -> list[Path]:
    """The folder's journey files: its `*.yaml` but the data files and the scenario files
    kept beside the journeys (`*.scenario.yaml`, `journeys: .`; no journey id has a dot)."""
    return sorted(p for p in folder.glob("*.yaml")
                  if p.name not in {POLICY_FILE, COMPUTED_FILE, TRAITS_FILE}
                  and not p.name.endswith(SCENARIO_SUFFIX))


def load_library(folder: str | Path, *, only: list[str] | None = None) -> Library:
    """Load and lint a whole journeys folder; raise InvalidJourney listing every problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidJourney([Problem(str(folder), 1, 1, "no such journeys folder")])
    library, problems = _load_support(folder)
    templates = library.templates
    seen: dict[str, str] = {}
    for path in journey_files(folder):
        display = str(path)
        try:
            loaded = parse_journey(read_text(path, display), display, templates=templates,
                                   known_traits=library.known_traits,
                                   known_events=library.known_events, file_id=path.stem)
        except InvalidJourney as exc:
            problems += exc.problems
            continue
        if only is not None and loaded.id not in only:
            continue
        if loaded.id in seen:
            problems.append(loaded.source.problem(("journey",), f"journey id {loaded.id!r} is "
                                                  f"already used by {seen[loaded.id]}"))
            continue
        seen[loaded.id] = display
        problems += lint(loaded, templates)
        problems += journey_problems(loaded, library.known_traits, library.known_events,
                                     templates)
        library.journeys[loaded.id] = loaded
    if problems:
        raise InvalidJourney(problems)
    return library


def _load_support(folder: Path) -> tuple[Library, list[Problem]]:
    """The policy, known traits, templates and computed-trait config of a folder."""
    problems: list[Problem] = []
    policy, policy_problems = load_policy(folder)
    problems += policy_problems
    declared, trait_problems = load_traits(folder)
    problems += trait_problems
    known_traits = frozenset(declared.traits) if declared is not None else None
    templates, template_problems = load_templates(folder / TEMPLATES_DIR,
                                                  known_traits=known_traits)
    problems += template_problems
    library = Library(folder, templates=templates, policy=policy, known_traits=known_traits,
                      known_events=declared.event_properties() if declared else None)
    library.computed_config, computed_problems = load_computed(folder, known_traits)
    problems += computed_problems
    return library, problems


def load_traits(folder: Path) -> tuple[TraitsFile | None, list[Problem]]:
    """`traits.yaml`: the traits and events the folder declares (None without it)."""
    path = folder / TRAITS_FILE
    if not path.is_file():
        return None, []
    try:
        source = load_yaml(read_text(path), str(path))
        return TraitsFile.model_validate(plain(source.data) or {}), []
    except InvalidJourney as exc:
        return None, exc.problems
    except ValidationError as exc:
        return None, pydantic_problems(exc, source)


def load_computed(folder: Path, known_traits: frozenset[str] | None = None,
                  ) -> tuple[dict[str, Any] | None, list[Problem]]:
    """`computed_traits.yaml`, validated (every band filled in), with its problems."""
    path = folder / COMPUTED_FILE
    if not path.is_file():
        return None, []
    try:
        source = load_yaml(read_text(path), str(path))
    except InvalidJourney as exc:
        return None, exc.problems
    raw = plain(source.data) or {}
    problems: list[Problem] = []
    stages = raw.get("lifecycle_stages") if isinstance(raw, dict) else None
    for i, stage in enumerate(stages if isinstance(stages, list) else []):
        # The stages' conditions are checked even when another part of the file is broken.
        when = stage.get("when") if isinstance(stage, dict) else None
        where: Where = ("lifecycle_stages", i, "when")
        try:
            parse_condition(when or {}, where=where)
        except ConditionError as exc:
            problems.extend(source.problem(p.where, p.message, key=_points_at_key(p.where))
                            for p in exc.problems)
            continue
        problems += path_problems(when, where, source, known_traits)
    try:
        config = ComputedTraitsConfig.model_validate(raw)
    except ValidationError as exc:
        return None, problems + pydantic_problems(exc, source)
    return (None if problems else config.as_config()), problems


def load_journey_file(path: str | Path) -> Library:
    """Load one journey file with the templates and policy of the folder it lives in."""
    path = Path(path)
    if not path.is_file():
        raise InvalidJourney([Problem(str(path), 1, 1, "no such journeys folder or journey file")])
    library, problems = _load_support(path.parent)
    try:
        loaded = parse_journey(read_text(path), str(path), templates=library.templates,
                               known_traits=library.known_traits,
                               known_events=library.known_events)
    except InvalidJourney as exc:
        raise InvalidJourney(problems + exc.problems) from None
    problems += lint(loaded, library.templates)
    problems += journey_problems(loaded, library.known_traits, library.known_events,
                                 library.templates)
    if problems:
        raise InvalidJourney(problems)
    library.journeys[loaded.id] = loaded
    return library


def load_path(path: str | Path) -> Library:
    """A journeys folder or a single journey file (`journeyman:bundled`: the bundled
    journeys, wherever journeyman is installed)."""
    path = journeys_path(path)
    return load_library(path) if path.is_dir() else load_journey_file(path)
