"""Commands for deploying journeys (qa-contract §5): `plan` (what `apply` would do, like
`terraform plan`), `apply` (deploy a folder), and `journeys` (what is deployed, with
`pause`, `resume` and `archive`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from engine.cli.common import (
    EXIT_INVALID,
    DbOpt,
    DeployJourneysOpt,
    err,
    fail,
    journeys_folder,
    out,
    print_rows,
)
from engine.store import DEFAULT_URL
from rules.errors import JourneymanError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (qa-contract §5).")]

journeys = typer.Typer(help="Deployed journeys: list them, pause, resume or archive one.",
                       invoke_without_command=True)


def _load(folder: Path | None, *, as_json: bool = False) -> Any:
    """The folder's library; exit 1 if it does not load (with `--json`, the problems go
    in the document's `errors`, one `file:line:col: message` each, as a plan's do)."""
    from journeys.loader import load_library

    try:
        return load_library(journeys_folder(folder))
    except JourneymanError as exc:
        if as_json:
            _refused_json(str(exc).splitlines())
        raise fail(exc) from None


def _refused_json(errors: list[str]) -> NoReturn:
    """qa-contract §5: `--json` prints the document whatever the outcome; exit 1."""
    sys.stdout.write(json.dumps({"journeys": {}, "errors": errors}, indent=2) + "\n")
    raise typer.Exit(EXIT_INVALID)


# plan and apply on a SQLite file that is not there: how a new store is made instead
NEW_STORE = "; `journeyman migrate --db URL` makes a new one"


def _open(db: str, *, deploy: bool = False, as_json: bool = False) -> Any:
    """The store, which must exist: a SQLite `--db` at a typo is exit 1 and makes no file
    (`plan` showed every journey `new` and `apply` deployed the folder to a new database
    nobody runs, both exit 0). For plan and apply (`deploy`) the error says how a new
    store is made, and with `--json` it is the document's one error (qa-contract §5)."""
    from engine.cli.common import existing_store

    try:
        return existing_store(db, missing_hint=NEW_STORE if deploy else "")
    except JourneymanError as exc:
        if as_json and deploy:
            _refused_json([str(exc)])
        raise fail(exc) from None


def plan(journeys: DeployJourneysOpt = None, db: DbOpt = DEFAULT_URL,
         as_json: JsonOpt = False) -> None:
    """Show what `apply` would do: new, changed and removed journeys, the people on each
    step of the deployed version and where each goes. Exit 1 on an error."""
    from engine.runtime.versions import plan as make_plan

    library = _load(journeys, as_json=as_json)
    store = _open(db, deploy=True, as_json=as_json)
    try:
        result = make_plan(library, store)
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps(result.as_json(), indent=2) + "\n")
    else:
        _print_plan(result)
    if result.errors:
        raise typer.Exit(EXIT_INVALID)


def apply(journeys: DeployJourneysOpt = None, db: DbOpt = DEFAULT_URL,
          as_json: JsonOpt = False) -> None:
    """Deploy a journeys folder: new versions, the moves their `migrate:` maps ask for,
    and journeys no longer in the folder marked removed. Refuses (exit 1) what `plan` reports
    as an error; nothing is written then."""
    from engine.runtime.versions import PlanError
    from engine.runtime.versions import apply as deploy
    from engine.runtime.versions import plan as make_plan

    library = _load(journeys, as_json=as_json)
    store = _open(db, deploy=True, as_json=as_json)
    try:
        result = deploy(library, store, store.clock.now())
    except PlanError as exc:
        if as_json:  # the plan that was refused, its errors included
            sys.stdout.write(json.dumps(make_plan(library, store).as_json(), indent=2) + "\n")
        else:
            for line in exc.errors:
                err.print(line, markup=False)
        err.print("apply refused: nothing was deployed", markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps(result.as_json(), indent=2) + "\n")
        return
    _print_plan(result, done=True)
    if any(jp.status in ("new", "changed") for jp in result.journeys.values()):
        out.print("running serve and worker processes take the new versions when they "
                  "restart (until then they enrol on the versions they started with)",
                  markup=False)


def _print_plan(result: Any, *, done: bool = False) -> None:
    marks = {"new": "+", "changed": "~", "removed": "-", "unchanged": " "}
    for jid, jp in sorted(result.journeys.items()):
        if jp.status == "unchanged":
            _print_status(jid, jp)
            continue
        versions = (f"v{jp.to_version}" if jp.status == "new" else
                    f"v{jp.from_version}" if jp.status == "removed" else
                    # not `v1 -> v1` (or `v2 -> v1`, a rollback to the eye): the error
                    # (on stderr) says which version to give
                    f"v{jp.from_version} deployed, the folder's is v{jp.to_version}: "
                    "refused (a changed journey needs a higher version)"
                    if (jp.to_version or 0) <= (jp.from_version or 0) else
                    f"v{jp.from_version} -> v{jp.to_version}")
        out.print(f"{marks[jp.status]} {jid}: {jp.status}, {versions}", markup=False)
        for step in jp.added_steps if jp.status != "new" else []:
            out.print(f"    + step {step}", markup=False)
        for step in jp.removed_steps:
            out.print(f"    - step {step}", markup=False)
        for version, counts in sorted(jp.in_flight_by_version.items()):
            on = ", ".join(f"{step} {n}" for step, n in sorted(counts.items()))
            out.print(f"    in flight on v{version}: {on}", markup=False)
        for step, move in sorted(jp.moves.items()):
            out.print(f"    {step} -> {move['to']}: {move['profiles']} move to "
                      f"v{jp.to_version} (timers keep their due time)", markup=False)
        if jp.journey_status in ("archived", "removed") and jp.status_after == "active":
            out.print(f"    {jp.journey_status}: takes new entries again with this version",
                      markup=False)
        if jp.stay_on_old_version:
            what = ("finish on their version (no new entries)" if jp.status == "removed"
                    else "stay on their version until they finish")
            out.print(f"    {jp.stay_on_old_version} {what}", markup=False)
    counts = result.counts()
    verb = "Applied" if done else "Plan"
    out.print(f"{verb}: {counts['new']} new, {counts['changed']} changed, "
              f"{counts['removed']} removed, {counts['unchanged']} unchanged.", markup=False)
    for line in result.errors:
        err.print(line, markup=False)
    if result.errors:
        err.print(f"{len(result.errors)} error(s): apply would refuse this folder",
                  markup=False)


def _print_status(jid: str, jp: Any) -> None:
    """An unchanged journey whose status matters: back in the folder, or kept closed."""
    if jp.journey_status == "removed" and jp.status_after == "active":
        out.print(f"  {jid}: back in the folder, v{jp.from_version}: takes new entries again",
                  markup=False)
    elif jp.journey_status in ("archived", "paused"):
        out.print(f"= {jid}: {jp.journey_status}, v{jp.from_version}: stays "
                  f"{jp.journey_status} (`journeyman journeys resume {jid}` to take new "
                  "entries)", markup=False)


@journeys.callback()
def journeys_list(ctx: typer.Context, db: DbOpt = DEFAULT_URL,
                  as_json: JsonOpt = False) -> None:
    """List deployed journeys: status, versions and people in flight on each version."""
    if ctx.invoked_subcommand is None:
        _list_deployed(db, as_json)


@journeys.command("list")
def journeys_list_command(db: DbOpt = DEFAULT_URL, as_json: JsonOpt = False) -> None:
    """The same list (as `keys list`, `users list` and `suppressions list` read)."""
    _list_deployed(db, as_json)


def _list_deployed(db: str, as_json: bool) -> None:
    store = _open(db)
    try:
        rows = _deployed(store)
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    print_rows(("journey", "status", "versions", "in flight"),
               ((row["journey"], row["status"], ", ".join(str(v) for v in row["versions"]),
                 ", ".join(f"v{v}: {n}" for v, n in row["in_flight"].items()) or "0")
                for row in rows))


def _deployed(store: Any) -> list[dict[str, Any]]:
    by_journey: dict[str, list[Any]] = {}
    for v in store.deployed_versions():
        by_journey.setdefault(v.journey, []).append(v)
    rows = []
    for jid, versions in sorted(by_journey.items()):
        per_version: dict[str, int] = {}
        for (version, _step), n in sorted(store.in_flight(jid).items()):
            per_version[str(version)] = per_version.get(str(version), 0) + n
        rows.append({"journey": jid, "status": versions[-1].status,
                     "versions": [v.version for v in versions],
                     "deployed_at": versions[-1].deployed_at.isoformat(),
                     "in_flight": per_version})
    return rows


def _set_status(journey: str, db: str, status: str) -> None:
    from engine.runtime.versions import set_status

    store = _open(db)
    try:
        known = set_status(store, journey, status)
        names = sorted({v.journey for v in store.deployed_versions()})
    finally:
        store.close()
    if not known:
        from rules import did_you_mean

        err.print(f"no deployed journey {journey!r}" + did_you_mean(journey, names),
                  markup=False)
        raise typer.Exit(EXIT_INVALID)
    err.print(f"{journey}: {status}", markup=False)


JourneyArg = Annotated[str, typer.Argument(help="A deployed journey id.")]


@journeys.command("pause")
def journeys_pause(journey: JourneyArg, db: DbOpt = DEFAULT_URL) -> None:
    """No new entries into the journey; the people in it go on."""
    _set_status(journey, db, "paused")


@journeys.command("resume")
def journeys_resume(journey: JourneyArg, db: DbOpt = DEFAULT_URL) -> None:
    """Take new entries again (a paused or archived journey)."""
    _set_status(journey, db, "active")


@journeys.command("archive")
def journeys_archive(journey: JourneyArg, db: DbOpt = DEFAULT_URL) -> None:
    """Retire the journey: no new entries, the people in it finish on their version. It
    stays archived through `apply` and restarts until `resume` or a new version."""
    _set_status(journey, db, "archived")
