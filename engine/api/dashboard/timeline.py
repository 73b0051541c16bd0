"""A profile's timeline on the dashboard's profile page, oldest first: entries, messages
queued (with what became of them), decisions, goals and exits.

An entry, a goal and an exit are each in two places: their own records (enrollments,
`goals`, `exits`) and the decision log (`entered`, `goal`, `exited`, with the reason).
Each is shown once: the decision, which says why (with the version entered), and the
record alone when the decision log has no row for it (`decision_log: off`, or a log
older than the record).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from engine.core.times import iso
from engine.ports import Decision, Store

# A record and its decision are written by one piece of work; a clock read twice in it
# (a real clock, a late timer) puts them milliseconds apart, far less than this.
SAME_MOMENT = timedelta(minutes=1)

Row = tuple[datetime, str, str, str, str]


def timeline(store: Store, profile_id: str) -> list[list[Any]]:
    """The profile's story, oldest first, every entry, goal and exit once."""
    rows: list[Row] = []
    for r in store.outbox_records(profile_id):
        # when the message was queued, and what became of it: the decision log says when
        # it was sent, skipped or deferred (it read `send sent` beside `sent`: one message,
        # two times, seemingly twice)
        rows.append((r.entry.created_at, "queued", r.entry.journey, r.entry.step,
                     f"{r.entry.channel} → {r.entry.to or ''}; now {r.status}"
                     + (f" ({r.last_error})" if r.last_error else "")))
    decisions = store.recorded_decisions(profile_id)
    decided = _Decided([(d.at, d.what, d.journey, step_of(d.step), d.reason)
                        for d in decisions])
    entered_on = versions_entered(decisions)
    for e in store.profile_enrollments(profile_id):
        # the step it is on now is not where it entered: the "entered" decision says that;
        # nor its version, when `apply` moved it to a newer one (it said v2 beside the
        # entry into v1, before the decision of the move)
        version = f"v{entered_on.get(e.id, e.version)}"
        if not decided.tells("entered", e.journey, e.entered_at, also=version):
            rows.append((e.entered_at, "entered", e.journey, "", version))
    for g in store.recorded_goals(profile_id):
        if not decided.tells("goal", g.journey, g.at):
            rows.append((g.at, "goal", g.journey, "", ""))
    for x in store.recorded_exits(profile_id):
        if not decided.tells("exited", x.journey, x.at):
            rows.append((x.at, "exit", x.journey, x.step, x.reason))
    rows += decided.rows
    rows.sort(key=lambda r: r[0])
    return [[iso(at), what, journey, step, detail] for at, what, journey, step, detail in rows]


def versions_entered(decisions: list[Decision]) -> dict[str, int]:
    """The version each enrollment `journeyman apply` moved had entered: the first
    move's `from_version` (its decision, `StepMove.decision`), by enrollment id."""
    entered: dict[str, int] = {}
    for d in decisions:
        if d.details.get("moved_by") == "apply" and "enrollment" in d.details:
            entered.setdefault(str(d.details["enrollment"]), int(d.details["from_version"]))
    return entered


class _Decided:
    """The decision log's rows, and which of them already tell a record."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self.told: set[int] = set()

    def tells(self, what: str, journey: str, at: datetime, *, also: str = "") -> bool:
        """Whether a row tells this record: the nearest of its kind and journey within
        SAME_MOMENT that tells no other record yet; that row then carries `also`."""
        near = [(abs(row[0] - at), i) for i, row in enumerate(self.rows)
                if i not in self.told and row[1] == what and row[2] == journey
                and abs(row[0] - at) <= SAME_MOMENT]
        if not near:
            return False
        _, i = min(near)
        self.told.add(i)
        if also:
            d_at, d_what, d_journey, step, reason = self.rows[i]
            self.rows[i] = (d_at, d_what, d_journey, step, f"{reason} ({also})")
        return True


def step_of(state: str | None) -> str:
    """A step's id, or "" for the engine's own states (`__exited__`: a goal reached
    after the enrollment ended is recorded there), as `journeyman why` tells them."""
    from engine.runtime.why import PLACEHOLDERS

    return "" if state is None or state in PLACEHOLDERS else state
