"""Journey versions: what `journeyman plan` shows, what `journeyman apply` does, and
which compiled versions a running engine needs (qa-contract §5).

The store keeps every deployed version of every journey (`VersionStore`). A journey
file whose content differs from its latest deployed version must carry a higher
`version`. Enrollments finish on the version they started, unless the new version's
`migrate:` map takes over the enrollments of an older one (`from_version`): steps kept
under the same id move to themselves, renamed or replaced ones as the map says; a step
of that version with people on it and no place in the new one is an error, and so is a
move onto a step where nobody can wait (people rest only on `wait` and `wait_for`).
Moved enrollments keep their id, data and timers (due when they were), and each gets a
`waiting` decision at its new step (`moved by apply: ...`, `StepMove.decision`), so
`journeyman why` tells how the person came to be there.

`plan()` reads the store and never writes; `apply()` runs the same checks, refuses on
any error, then deploys each journey in one transaction (its new version, its moves and
their decisions). A journey that left the folder is `removed`: no new entries, and the
people in it finish on their version; it is active again when it comes back. A journey an
operator archived (`journeyman journeys archive`) stays archived whatever the folder
says, until `journeyman journeys resume` or a new version of it is applied.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.ports import DeployedVersion, StepMove, Store
from engine.runtime.time_entries import SETTING as TIME_ENTRIES_SETTING
from journeys.compiler import CompiledJourney, compile_journey
from journeys.errors import InvalidJourney, JourneyError
from journeys.loaded import Library, LoadedJourney
from journeys.loader import parse_journey
from journeys.model import Journey
from journeys.steps import WaitForStep, WaitStep
from journeys.textfile import read_text
from journeys.yamlsrc import plain
from rules import did_you_mean

log = logging.getLogger("journeyman.versions")

# The journeys the last `apply` deployed from the bundled library (a JSON list; unset when
# the last folder applied was another): a later release may drop one of them.
BUNDLED_SETTING = "bundled_journeys"

# `removed`: taken out of the folder by `apply` (active again when it comes back);
# `archived`: by an operator (stays archived until resumed or a new version is applied).
ACTIVE, PAUSED, ARCHIVED, REMOVED = "active", "paused", "archived", "removed"
STATUSES = (ACTIVE, PAUSED, ARCHIVED, REMOVED)


class PlanError(JourneyError):
    """`apply` (or `serve --journeys`) refused a folder: the errors `plan` reports."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


def content_digest(loaded: LoadedJourney) -> str:
    """The digest of what a journey file says (comments and layout do not count)."""
    text = json.dumps(plain(loaded.source.data), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class JourneyPlan:
    """What `apply` would do to one journey (the shape of qa-contract §5)."""

    journey: str
    status: str  # new | changed | unchanged | removed
    from_version: int | None = None
    to_version: int | None = None
    added_steps: list[str] = field(default_factory=list)
    removed_steps: list[str] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)  # from_version's, by step
    moves: dict[str, dict[str, Any]] = field(default_factory=dict)
    stay_on_old_version: int = 0
    in_flight_by_version: dict[int, dict[str, int]] = field(default_factory=dict)
    migrate_from: int | None = None  # the version whose enrollments move
    journey_status: str | None = None  # the deployed journey's status (None: new)
    status_after: str | None = None  # its status once applied

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "from_version": self.from_version,
                "to_version": self.to_version, "added_steps": self.added_steps,
                "removed_steps": self.removed_steps, "in_flight": self.in_flight,
                "moves": self.moves, "stay_on_old_version": self.stay_on_old_version,
                "in_flight_by_version": {str(v): c for v, c in
                                         sorted(self.in_flight_by_version.items())},
                "migrate_from": self.migrate_from, "journey_status": self.journey_status,
                "status_after": self.status_after}


@dataclass
class Plan:
    journeys: dict[str, JourneyPlan] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"journeys": {jid: p.as_json() for jid, p in sorted(self.journeys.items())},
                "errors": self.errors}

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("new", "changed", "unchanged", "removed"), 0)
        for p in self.journeys.values():
            counts[p.status] += 1
        return counts


def plan(library: Library, store: Store) -> Plan:
    """What applying `library` to `store` would do; reads only."""
    result = Plan()
    deployed = _by_journey(store.deployed_versions())
    for jid, loaded in sorted(library.journeys.items()):
        versions = deployed.get(jid, [])
        jp = _plan_one(loaded, versions, store, result.errors)
        jp.journey_status = versions[-1].status if versions else None
        jp.status_after = status_after(jp.journey_status, jp.status)
        result.journeys[jid] = jp
    for jid, versions in sorted(deployed.items()):
        if jid in library.journeys or versions[-1].status in (ARCHIVED, REMOVED):
            continue
        latest = versions[-1]
        jp = JourneyPlan(jid, "removed", latest.version, None,
                         journey_status=latest.status, status_after=REMOVED)
        _count(jp, store.in_flight(jid), latest.version)
        jp.stay_on_old_version = sum(sum(c.values()) for c in jp.in_flight_by_version.values())
        result.journeys[jid] = jp
    return result


def status_after(current: str | None, change: str) -> str:
    """A journey's status after `apply`, from its deployed status and the change: a new
    version makes an archived or removed journey active (a paused one stays paused); a
    journey back in the folder unchanged is active again if it had only been removed from
    it, and stays archived if an operator archived it."""
    if change == "removed":
        return REMOVED
    if current is None or current == REMOVED:
        return ACTIVE
    if current == ARCHIVED and change == "changed":
        return ACTIVE
    return current


def _by_journey(versions: list[DeployedVersion]) -> dict[str, list[DeployedVersion]]:
    out: dict[str, list[DeployedVersion]] = {}
    for v in versions:
        out.setdefault(v.journey, []).append(v)
    return out


def _count(jp: JourneyPlan, counts: Mapping[tuple[int, str], int], from_version: int) -> None:
    for (version, step), n in sorted(counts.items()):
        jp.in_flight_by_version.setdefault(version, {})[step] = n
    jp.in_flight = dict(jp.in_flight_by_version.get(from_version, {}))


def _plan_one(loaded: LoadedJourney, versions: list[DeployedVersion], store: Store,
              errors: list[str]) -> JourneyPlan:
    model, src = loaded.model, loaded.source
    new_ids = [s.id for s in model.steps]
    if not versions:
        return JourneyPlan(model.journey, "new", None, model.version, added_steps=new_ids)
    latest = versions[-1]
    digest = content_digest(loaded)
    jp = JourneyPlan(model.journey, "changed", latest.version, model.version)
    counts = store.in_flight(model.journey)
    if digest == latest.digest and model.version == latest.version:
        jp.status = "unchanged"
        _count(jp, counts, latest.version)
        return jp
    if model.version <= latest.version:
        errors.append(str(src.problem(("version",), (
            f"{model.journey} changed but its version is {model.version}; version "
            f"{latest.version} is deployed: give the changed journey version "
            f"{latest.version + 1}"))))
        _count(jp, counts, latest.version)
        return jp
    old = parse_deployed(latest, errors)
    old_ids = [s.id for s in old.model.steps] if old else []
    jp.added_steps = [s for s in new_ids if s not in old_ids]
    jp.removed_steps = [s for s in old_ids if s not in new_ids]
    migrate = model.migrate
    from_version = migrate.from_version if migrate else latest.version
    _count(jp, counts, from_version)
    jp.from_version = latest.version
    total = sum(counts.values())
    if migrate is None:
        jp.stay_on_old_version = total
        return jp
    source = next((v for v in versions if v.version == migrate.from_version), None)
    if source is None:
        errors.append(str(src.problem(("migrate", "from_version"), (
            f"migrate.from_version {migrate.from_version}: no such deployed version of "
            f"{model.journey} (deployed: {', '.join(str(v.version) for v in versions)})"))))
        jp.stay_on_old_version = total
        return jp
    jp.migrate_from = source.version
    from_model = parse_deployed(source, errors) if source is not latest else old
    from_ids = [s.id for s in from_model.model.steps] if from_model else []
    for old_step in migrate.steps:
        if old_step not in from_ids:
            errors.append(str(src.problem(("migrate", "steps", old_step), (
                f"migrate: {model.journey} version {source.version} has no step "
                f"{old_step!r}" + did_you_mean(old_step, from_ids)), key=True)))
    mapping = {s: s for s in from_ids if s in new_ids} | dict(migrate.steps)
    steps = {s.id: s for s in model.steps}
    moved = 0
    for old_step, n in sorted(jp.in_flight.items()):
        target = mapping.get(old_step)
        if target is None:
            errors.append(str(src.problem(("migrate", "steps"), (
                f"migrate: {n} people of {model.journey} version {source.version} wait on "
                f"step {old_step!r}, which version {model.version} does not have: map it "
                f"to a step under migrate.steps"))))
            continue
        if target not in steps:
            continue  # the linter reports a map onto an unknown step
        if not isinstance(steps[target], WaitStep | WaitForStep):
            errors.append(str(src.problem(("migrate", "steps"), (
                f"migrate: {n} people on {old_step!r} would move to {target!r}, where "
                "nobody can wait: move them to a wait or wait_for step"))))
            continue
        jp.moves[old_step] = {"to": target, "profiles": n}
        moved += n
    jp.stay_on_old_version = total - moved
    return jp


def parse_deployed(version: DeployedVersion,
                   errors: list[str] | None = None) -> LoadedJourney | None:
    """A deployed version as the journey it was deployed as; None (its problems added to
    `errors`, else logged) if its source no longer loads."""
    try:
        return parse_journey(version.source, f"{version.file} (deployed v{version.version})")
    except InvalidJourney as exc:
        if errors is None:
            log.error("deployed version %s of %s no longer loads: %s", version.version,
                      version.journey, exc, extra={"journey": version.journey})
        else:
            errors.extend(str(p) for p in exc.problems)
        return None


def apply(library: Library, store: Store, now: datetime, *, bundled_default: bool = False
          ) -> Plan:
    """Deploy `library` to `store` after the checks of `plan`; raise PlanError if any
    fails (nothing is written then). `bundled_default`: `library` is the bundled one
    because `serve`/`worker` were given no `--journeys`; then a journey deployed to the
    store and not in it is refused too, not marked removed, and so is one in it that
    the store's folder left out (`removed`), not made active again: the store runs a
    folder of its own, which a restart without `--journeys` must not replace."""
    result = plan(library, store)
    if bundled_default:
        # A journey an earlier bundled library deployed, which this release's no longer
        # has (dropped or renamed), is removed as `apply` would; any other is the
        # operator's own.
        from_bundled = set(json.loads(store.setting(BUNDLED_SETTING) or "[]"))
        result.errors.extend(
            f"{jid}: deployed to this store and not in the bundled library (serve and "
            f"worker run it without --journeys): give --journeys with the folder it was "
            f"applied from, or `journeyman journeys archive {jid}` to retire it"
            for jid, jp in result.journeys.items()
            if jp.status == "removed" and jid not in from_bundled)
        # and a journey its folder left out (a part of the bundled library, applied
        # with --journeys) is not made active again behind the operator's back
        result.errors.extend(
            f"{jid}: removed from this store by the folder applied to it (serve and "
            f"worker run the bundled library without --journeys, which would make it "
            f"active again): give --journeys with that folder, or `journeyman apply` "
            f"without --journeys to run the bundled library"
            for jid, jp in result.journeys.items()
            if jp.journey_status == REMOVED and jp.status_after == ACTIVE)
    if result.errors:
        raise PlanError(result.errors)
    # Which deployed journeys the bundled library put there: after another folder, none.
    store.put_setting(BUNDLED_SETTING, json.dumps(sorted(library.journeys))
                      if _is_bundled(library) else None)
    for jid in {v.journey for v in store.deployed_versions()} - set(library.journeys):
        # Its time-driven timers lapse while it is out of the folder: if it comes back,
        # it must be armed again for everyone (engine/runtime/time_entries.py).
        store.put_setting(TIME_ENTRIES_SETTING.format(jid), None)
    for jid, jp in result.journeys.items():
        if jp.status == "removed":
            store.set_journey_status(jid, REMOVED)
            continue
        if jp.status == "unchanged":
            if jp.status_after != jp.journey_status and jp.status_after is not None:
                store.set_journey_status(jid, jp.status_after)  # back in the folder
            continue
        loaded = library.journeys[jid]
        with store.transaction():
            previous = store.deployed_versions(jid)
            current = previous[-1].status if previous else None
            store.deploy_version(DeployedVersion(
                jid, loaded.model.version, content_digest(loaded), _source_text(library, loaded),
                loaded.file, now, status_after(current, jp.status)))
            if jp.migrate_from is not None:
                for old_step, move in jp.moves.items():
                    store.move_enrollments(StepMove(jid, jp.migrate_from, old_step,
                                                    loaded.model.version, move["to"]), now)
    return result


def _is_bundled(library: Library) -> bool:
    from journeys.library import bundled_library

    return (library.folder is not None
            and Path(library.folder).resolve() == bundled_library().resolve())


def _source_text(library: Library, loaded: LoadedJourney) -> str:
    """The journey file as written, else its parsed document dumped back to YAML."""
    if library.folder is not None:
        path = library.folder / Path(loaded.file).name  # `file`: the path as given
        if path.is_file():
            try:  # as the loader read it: UTF-8 whatever the locale (else a changed file)
                text = read_text(path, loaded.file)
            except InvalidJourney:
                text = ""
            if text and content_digest(parse_journey(text, loaded.file)) == content_digest(
                    loaded):
                return text
    from io import StringIO

    from ruamel.yaml import YAML

    stream = StringIO()
    YAML(typ="rt").dump(loaded.source.data, stream)
    return stream.getvalue()


def deployed_journeys(library: Library, store: Store, *,
                      backend: str = "durable") -> tuple[dict[tuple[str, int], CompiledJourney],
                                                         set[str]]:
    """The older deployed versions a runtime needs besides the folder's (compiled with
    the folder's templates and policy), and the journeys that take no new entries
    (paused or archived)."""
    versions: dict[tuple[str, int], CompiledJourney] = {}
    closed: set[str] = set()
    for v in store.deployed_versions():
        if v.status != ACTIVE:
            closed.add(v.journey)
        current = library.journeys.get(v.journey)
        if current is not None and current.model.version == v.version:
            continue
        loaded = parse_deployed(v)
        if loaded is None:
            continue
        versions[(v.journey, v.version)] = compile_journey(
            loaded, templates=library.templates, policy=library.policy, backend=backend)
    return versions, closed


def newest_deployed(store: Store) -> dict[str, Journey]:
    """The newest deployed version of each journey in the store that still loads (one
    that no longer does is logged and the next newest taken), as it was deployed."""
    newest: dict[str, Journey] = {}
    for jid, versions in _by_journey(store.deployed_versions()).items():
        for version in sorted(versions, key=lambda v: -v.version):
            loaded = parse_deployed(version)
            if loaded is not None:
                newest[jid] = loaded.model
                break
    return newest


def closed_journeys(store: Store) -> set[str]:
    """The journeys that take no new entries now (paused, archived or removed)."""
    return {v.journey for v in store.deployed_versions() if v.status != ACTIVE}


def set_status(store: Store, journey: str, status: str) -> bool:
    """`journeyman journeys pause/resume/archive`: set a deployed journey's status; False
    if no such journey. Reopening a closed journey re-arms its time-driven entries for
    everyone at the next start or status refresh (whoever joined a time segment while it
    was closed has no timer left, engine/runtime/time_entries.py)."""
    with store.transaction():
        versions = store.deployed_versions(journey)
        if not versions:
            return False
        store.set_journey_status(journey, status)
        if status == ACTIVE and versions[-1].status != ACTIVE:
            store.put_setting(TIME_ENTRIES_SETTING.format(journey), None)
    return True


__all__ = [
    "ACTIVE",
    "ARCHIVED",
    "PAUSED",
    "REMOVED",
    "STATUSES",
    "JourneyPlan",
    "Plan",
    "PlanError",
    "apply",
    "closed_journeys",
    "content_digest",
    "deployed_journeys",
    "newest_deployed",
    "parse_deployed",
    "plan",
    "set_status",
    "status_after",
]
