"""`journeyman replay --compare BEFORE.json`: what changed between an earlier replay's
`--json` report and this one, number by number, for a person to read (docs/testing.md).

Two replays of the same log, before and after a change to the journeys, differ only
where the change acted; a diff of the two text reports also shows the run times, and
a wait of 1h made 3h moves numbers across several lines at once. This lists each count
that changed, per journey, with its old and new value and the difference.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rules.errors import JourneymanError

# the per-journey counts compared, in the report's order; the nested ones are flattened
_TOP = ("enrolled", "completed", "exited", "active", "goals", "conversion")
_NESTED = ("steps", "skipped_by_reason", "deferred_by_reason", "exit_reasons", "variants",
           "kpis")


class CompareError(JourneymanError):
    """The --compare file is not a replay's --json report."""


def read_report(path: Path) -> dict[str, Any]:
    """An earlier `journeyman replay --json` report, or a CompareError saying why not."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CompareError(f"--compare {path}: not a replay's --json report ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("journeys"), dict):
        raise CompareError(f"--compare {path}: not a replay's --json report "
                           "(no \"journeys\" object; make it with `journeyman replay ... "
                           "--json > FILE`)")
    events = document.get("events")  # `plan --json` has a "journeys" object too
    if not isinstance(events, int) or isinstance(events, bool):
        raise CompareError(f"--compare {path}: not a replay's --json report "
                           "(no \"events\" count; make it with `journeyman replay ... "
                           "--json > FILE`)")
    return document


def _flatten(prefix: str, value: Any, into: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, into)
    elif (isinstance(value, (int, float)) and not isinstance(value, bool)) or value is None:
        into[prefix] = value


def _numbers(journey: Any) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    if not isinstance(journey, Mapping):
        return flat
    for key in _TOP:
        if key in journey:
            _flatten(key, journey[key], flat)
    for key in _NESTED:
        if key in journey:
            _flatten(key, journey[key], flat)
    return flat


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.4f}".rstrip("0")
    return f"{int(value):,}"


def _delta(old: Any, new: Any) -> str:
    if not isinstance(old, (int, float)) or not isinstance(new, (int, float)):
        return ""
    change = new - old
    sign = "+" if change > 0 else "-"
    return f"  ({sign}{_show(abs(change))})"


def compare_lines(before: Mapping[str, Any], after: Mapping[str, Any],
                  source: str) -> Iterator[str]:
    """The text section: what changed from `before` (read from `source`) to `after`."""
    yield ""
    yield f"compared with {source}:"
    if before.get("events") != after.get("events") or before.get("from") != after.get("from") \
            or before.get("to") != after.get("to"):
        yield (f"  note: not the same events ({_show(before.get('events'))} from "
               f"{before.get('from')} to {before.get('to')} then, "
               f"{_show(after.get('events'))} from {after.get('from')} to {after.get('to')} "
               "now): the numbers differ for that too")
    old_journeys, new_journeys = before["journeys"], after["journeys"]
    unchanged = []
    for jid in [*new_journeys, *(j for j in old_journeys if j not in new_journeys)]:
        if jid not in old_journeys:
            yield f"  {jid}: new (not in {source})"
            continue
        if jid not in new_journeys:
            yield f"  {jid}: gone (in {source}, not in these journeys)"
            continue
        old, new = _numbers(old_journeys[jid]), _numbers(new_journeys[jid])
        changed = [(key, old.get(key, 0), new.get(key, 0)) for key in [*new, *(
            k for k in old if k not in new)] if old.get(key, 0) != new.get(key, 0)]
        if not changed:
            unchanged.append(jid)
            continue
        yield f"  {jid}:"
        width = max(len(key) for key, _, _ in changed)
        for key, was, now in changed:
            yield f"    {key:<{width}}  {_show(was):>9} -> {_show(now):<9}{_delta(was, now)}"
    if unchanged:
        yield "  unchanged: " + ", ".join(unchanged)


def compare_json(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """`compared` in --json: per journey, each count that changed as [before, after]."""
    journeys: dict[str, Any] = {}
    for jid in {*before["journeys"], *after["journeys"]}:
        old = _numbers(before["journeys"].get(jid))
        new = _numbers(after["journeys"].get(jid))
        diff = {key: [old.get(key), new.get(key)] for key in sorted({*old, *new})
                if old.get(key, 0) != new.get(key, 0)}
        if diff:
            journeys[jid] = diff
    return {"journeys": journeys}


__all__ = ["CompareError", "compare_json", "compare_lines", "read_report"]
