"""`SqlStore`'s analytics for the dashboard and `GET /v1/journeys/{id}/stats`: counts
per journey and per step, read with the indexes of migration 0011 so that a journey
page stays fast with a million enrollments.

- people on each step now: the active enrollments by state, from the index
  (journey, status, state) alone;
- the period's cohort: the enrollments that entered the journey in [since, until)
  (index (journey, entered_at)): how many entered, reached the goal, passed each step
  (the step is in their `visits`), took each variant of a split step; the cost grows
  with the cohort, not with the table;
- sends per step and status (outbox (journey, created_at)) and decisions per step,
  kind and reason without the person's own part (decisions (journey, at);
  engine/store/sql/reasons.py) in the period.

Only the SQL store has these (the dashboard is served by `journeyman serve`, which
always runs on one).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Text, case, cast, func, select, text, union_all

from engine import jsonfast
from engine.core.times import iso
from engine.store.sql.db import SqlBase
from engine.store.sql.reasons import reason_key
from engine.store.sql.tables import table


@dataclass(frozen=True, slots=True)
class JourneyOverview:
    """A journey's line on the dashboard's first page."""

    in_flight: int = 0
    entries: int = 0
    sends: int = 0


@dataclass(frozen=True, slots=True)
class VariantCount:
    variant: str  # the variant's name, or "holdout"
    people: int
    converted: int


@dataclass
class JourneyCounts:
    """A journey's counts over a period (see the module's docstring for what each is)."""

    on_step: dict[str, int] = field(default_factory=dict)  # step -> active people now
    entered: int = 0
    converted: int = 0  # of the cohort, reached the goal
    ended: dict[str, int] = field(default_factory=dict)  # status -> cohort enrollments
    passed: dict[str, int] = field(default_factory=dict)  # step -> cohort that visited it
    variants: dict[str, list[VariantCount]] = field(default_factory=dict)  # split step ->
    sends: dict[str, dict[str, int]] = field(default_factory=dict)  # step -> status -> n
    decisions: list[tuple[str, str, str, int]] = field(default_factory=list)  # step, what,
    # reason, count
    series: dict[str, DayCounts] = field(default_factory=dict)  # UTC day -> its counts


@dataclass
class DayCounts:
    """One day of a journey's time series: of the enrollments that entered that day
    (UTC), how many entered and passed each step; the sends queued that day per step
    and status."""

    entered: int = 0
    passed: dict[str, int] = field(default_factory=dict)
    sends: dict[str, dict[str, int]] = field(default_factory=dict)


class _Cohort:
    """Sums the cohort's counts from the rollup's rows and from enrollments alike."""

    def __init__(self, counts: JourneyCounts, split_steps: Sequence[str]) -> None:
        self.counts = counts
        self.ended: dict[str, int] = {}
        self.variants: dict[str, dict[str, list[int]]] = {s: {} for s in split_steps}

    def add(self, day: str, kind: str, step: str, variant: str, n: int) -> None:
        c = self.counts
        if not n:
            return
        if kind == "entered":
            c.entered += n
            c.series.setdefault(day, DayCounts()).entered += n
        elif kind == "converted":
            c.converted += n
        elif kind == "status":
            self.ended[step] = self.ended.get(step, 0) + n
        elif kind == "passed" and step in c.passed:
            c.passed[step] += n
            passed = c.series.setdefault(day, DayCounts()).passed
            passed[step] = passed.get(step, 0) + n
        elif kind in ("variant", "variant_won") and step in self.variants:
            tally = self.variants[step].setdefault(variant, [0, 0])
            tally[kind == "variant_won"] += n

    def finish(self) -> None:
        c = self.counts
        c.ended = {k: v for k, v in sorted(self.ended.items()) if v}
        c.variants = {step: [VariantCount(name, n, won) for name, (n, won)
                             in sorted(found.items()) if n]
                      for step, found in self.variants.items()}


def _hour(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _next_hour(when: datetime) -> datetime:
    start = _hour(when)
    return start if start == when else start + timedelta(hours=1)


def _bucket(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H")


# Migration 0014: the deltas the PostgreSQL trigger appended, moved into the rollup in
# one statement (the rows in key order, so two folds could not deadlock either).
_ROLLUP_KEY = "journey, bucket, kind, step, variant"
_FOLD = (f"WITH moved AS (DELETE FROM journey_rollup_delta RETURNING {_ROLLUP_KEY}, n) "
         f"INSERT INTO journey_rollup ({_ROLLUP_KEY}, n) SELECT {_ROLLUP_KEY}, sum(n) "
         f"FROM moved GROUP BY {_ROLLUP_KEY} ORDER BY {_ROLLUP_KEY} ON CONFLICT "
         f"({_ROLLUP_KEY}) DO UPDATE SET n = journey_rollup.n + excluded.n")
_FOLD_LOCK = (0x6A6D, 2)  # one folder at a time ("jm", 2; 1 is the migration lock)


class AnalyticsQueries(SqlBase):
    @property
    def _rollup(self) -> Any:
        return table("journey_rollup")

    def fold_rollup_deltas(self) -> int:
        """PostgreSQL: move the rollup's pending deltas (migration 0014) into
        `journey_rollup`; how many delta rows went (0 while another process folds, and
        always on SQLite, whose triggers write the rollup itself). Readers add the deltas
        anyway: folding keeps them few, it changes no count."""
        if not self._pg:
            return 0
        with self._write() as conn:
            if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:a, :b)"),
                                {"a": _FOLD_LOCK[0], "b": _FOLD_LOCK[1]}).scalar():
                return 0
            return int(conn.execute(text(_FOLD)).rowcount or 0)

    def journeys_overview(self, journeys: Sequence[str],
                          since: datetime) -> dict[str, JourneyOverview]:
        """Each journey's people in flight now, entries and sends since `since` (three
        index ranges per journey)."""
        e, o = self._enrollments, self._outbox
        found: dict[str, JourneyOverview] = {}
        with self._read() as conn:
            for journey in journeys:
                def count(*where: Any) -> int:
                    return int(conn.execute(select(func.count()).where(*where)).scalar() or 0)

                found[journey] = JourneyOverview(
                    count(e.c.journey == journey, e.c.status == "active"),
                    count(e.c.journey == journey, e.c.entered_at >= since),
                    count(o.c.journey == journey, o.c.created_at >= since))
        return found

    def journey_counts(self, journey: str, since: datetime, until: datetime,
                       steps: Sequence[str], split_steps: Sequence[str] = ()) -> JourneyCounts:
        """The journey's counts over [since, until); `steps` are its step ids (for the
        passed counts) and `split_steps` its split steps (for the variants).

        The cohort's counts come from `journey_rollup` for the whole hours of the period
        and from the enrollments themselves for the part-hours at its two ends, so they
        equal a count of the enrollments for any period."""
        e, o, d = self._enrollments, self._outbox, self._decisions
        counts = JourneyCounts()
        counts.passed = dict.fromkeys(steps, 0)
        tally = _Cohort(counts, split_steps)
        with self._read() as conn:
            counts.on_step = {str(state): int(n) for state, n in conn.execute(
                select(e.c.state, func.count())
                .where(e.c.journey == journey, e.c.status == "active").group_by(e.c.state))}
            self._cohort(conn, journey, since, until, tally)
            tally.finish()
            sends_by_day: dict[tuple[str, str], dict[str, int]] = {}
            day = self._day(o.c.created_at)
            for raw_step, on, raw_status, n in conn.execute(
                    select(o.c.step, day, o.c.status, func.count())
                    .where(o.c.journey == journey, o.c.created_at >= since,
                           o.c.created_at < until).group_by(o.c.step, day, o.c.status)):
                step, status = str(raw_step), str(raw_status)
                mine = counts.sends.setdefault(step, {})
                mine[status] = mine.get(status, 0) + int(n)
                by_day = sends_by_day.setdefault((str(on), step), {})
                by_day[status] = int(n)
            for (on, step), by_status in sends_by_day.items():
                counts.series.setdefault(on, DayCounts()).sends[step] = by_status
            counts.series = dict(sorted(counts.series.items()))
            # grouped by the reason without the person's own part (reasons.py): a row
            # per step and reason read, not one per person's time or values
            key = reason_key(d.c.what, d.c.reason, pg=self._pg).label("reason")
            r = select(d.c.step, d.c.what, key).where(
                d.c.journey == journey, d.c.at >= since, d.c.at < until).subquery()
            counts.decisions = [
                (str(step), str(what), str(reason), int(n)) for step, what, reason, n in
                conn.execute(select(r.c.step, r.c.what, r.c.reason, func.count())
                             .group_by(r.c.step, r.c.what, r.c.reason)
                             .order_by(r.c.step, func.count().desc()))]
        return counts

    def cohort_conversion(self, journey: str, since: datetime,
                          until: datetime) -> float | None:
        """Of the enrollments that entered in [since, until), the share that reached
        the goal (None when none entered): the rollup, and the rows at the ends."""
        counts = JourneyCounts()
        tally = _Cohort(counts, ())
        with self._read() as conn:
            self._cohort(conn, journey, since, until, tally)
        return counts.converted / counts.entered if counts.entered else None

    def _cohort(self, conn: Connection, journey: str, since: datetime, until: datetime,
                tally: _Cohort) -> None:
        """The enrollments that entered in [since, until): the rollup for the whole hours,
        the rows themselves for the partial hours at each end."""
        first, last = _next_hour(since), _hour(until)
        if first < last:
            self._cohort_rows(conn, journey, since, first, tally)
            self._cohort_rollup(conn, journey, first, last, tally)
            self._cohort_rows(conn, journey, last, until, tally)
        else:
            self._cohort_rows(conn, journey, since, until, tally)

    def _day(self, column: Any) -> Any:
        """The UTC day (`YYYY-MM-DD`) of a timestamp column, in SQL."""
        if self._pg:
            return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
        return func.substr(column, 1, 10)

    def _cohort_rows(self, conn: Any, journey: str, since: datetime, until: datetime,
                     tally: _Cohort) -> None:
        """The cohort's enrollments of [since, until) read one by one (the part-hours at
        the ends of a period): the JSON comes as text and is parsed here."""
        if since >= until:
            return
        e = self._enrollments
        for entered, status, won, visits, chosen in conn.execute(
                select(e.c.entered_at, e.c.status, e.c.goal_reached_at.is_not(None),
                       cast(e.c.visits, Text), cast(e.c.variants, Text))
                .where(e.c.journey == journey, e.c.entered_at >= since,
                       e.c.entered_at < until)):
            day = entered.astimezone(UTC).strftime("%Y-%m-%d")
            tally.add(day, "entered", "", "", 1)
            if won:
                tally.add(day, "converted", "", "", 1)
            tally.add(day, "status", str(status), "", 1)
            for step in jsonfast.loads(visits) or ():
                tally.add(day, "passed", str(step), "", 1)
            for step, variant in (jsonfast.loads(chosen) or {}).items():
                tally.add(day, "variant", str(step), str(variant), 1)
                if won:
                    tally.add(day, "variant_won", str(step), str(variant), 1)

    def _cohort_rollup(self, conn: Any, journey: str, first: datetime, last: datetime,
                       tally: _Cohort) -> None:
        """The cohort of the whole hours [first, last), summed per day from the rollup
        and the deltas not folded into it yet (PostgreSQL, migration 0014)."""
        parts = union_all(*(
            select(t.c.bucket, t.c.kind, t.c.step, t.c.variant, t.c.n)
            .where(t.c.journey == journey, t.c.bucket >= _bucket(first),
                   t.c.bucket < _bucket(last))
            for t in (self._rollup, table("journey_rollup_delta")))).subquery()
        day = func.substr(parts.c.bucket, 1, 10)
        for on, kind, step, variant, n in conn.execute(
                select(day, parts.c.kind, parts.c.step, parts.c.variant, func.sum(parts.c.n))
                .group_by(day, parts.c.kind, parts.c.step, parts.c.variant)):
            tally.add(str(on), str(kind), str(step), str(variant), int(n or 0))

    def journey_activity(self, journey: str, since: datetime,
                         until: datetime) -> dict[str, float]:
        """The journey's activity in [since, until), the dashboard's KPIs: messages
        queued and delivered (outbox created in the period), messages clicked by a human,
        opened, opted out of and bounced (engagements in the period, each message once),
        goals reached in the period, their revenue, the part attributable to a message
        (last touch: a message of the same enrollment delivered at or before the goal),
        and the goals' times to goal (seconds since entry). Indexes: outbox (journey,
        created_at), engagements (journey, at), goals (journey, at)."""
        o, g, e = self._outbox, self._goals, self._enrollments
        t = table("engagements")
        found: dict[str, float] = {}
        with self._read() as conn:
            for status, n in conn.execute(
                    select(o.c.status, func.count()).where(
                        o.c.journey == journey, o.c.created_at >= since,
                        o.c.created_at < until).group_by(o.c.status)):
                found["sends"] = found.get("sends", 0) + int(n)
                if status == "sent":
                    found["delivered"] = int(n)
            for kind, n in conn.execute(
                    select(t.c.kind, func.count(t.c.message_key.distinct())).where(
                        t.c.journey == journey, t.c.at >= since, t.c.at < until,
                        (t.c.kind != "click") | t.c.human).group_by(t.c.kind)):
                found[str(kind)] = int(n)
            touched = select(o.c.id).where(
                o.c.profile_id == g.c.profile_id, o.c.enrollment_id == g.c.enrollment_id,
                o.c.status == "sent", o.c.sent_at <= g.c.at).exists()
            in_period = (g.c.journey == journey, g.c.at >= since, g.c.at < until)
            goals, revenue, attributable = conn.execute(select(
                func.count(), func.coalesce(func.sum(g.c.value), 0.0),
                func.coalesce(func.sum(case((touched, func.coalesce(g.c.value, 0.0)),
                                            else_=0.0)), 0.0)).where(*in_period)).one()
            found["goals"] = int(goals)
            found["revenue"] = float(revenue)
            found["attributable_revenue"] = float(attributable)
            times = sorted((at - entered).total_seconds() for at, entered in conn.execute(
                select(g.c.at, e.c.entered_at).join(e, e.c.id == g.c.enrollment_id)
                .where(*in_period)))
            if times:
                found["median_time_to_goal"] = statistics.median(times)
        return found

    def recent_activity(self, limit: int = 50) -> tuple[list[list[Any]], list[list[Any]]]:
        """The newest `limit` events received and messages queued, newest first (the
        live stream): read backwards on the primary keys."""
        ev, o = self._events, self._outbox
        with self._read() as conn:
            events = [[r.id, iso(r.received_at), r.source, str(r.body.get("type", "")),
                       str(r.body.get("event") or r.body.get("name") or ""), r.profile_id]
                      for r in conn.execute(select(ev.c.id, ev.c.received_at, ev.c.source,
                                                   ev.c.body, ev.c.profile_id)
                                            .order_by(ev.c.id.desc()).limit(limit))]
            sends = [[r.id, iso(r.created_at), r.journey, r.step, r.channel, r.status,
                      r.profile_id, iso(r.sent_at) if r.sent_at else "", r.last_error or ""]
                     for r in conn.execute(select(o.c.id, o.c.created_at, o.c.journey,
                                                  o.c.step, o.c.channel, o.c.status,
                                                  o.c.profile_id, o.c.sent_at, o.c.last_error)
                                           .order_by(o.c.id.desc()).limit(limit))]
        return events, sends

    def profile_with_trait(self, trait: str, value: str) -> str | None:
        """A profile whose trait `trait` is `value` (the dashboard's search by e-mail when
        e-mail is not an identity): a scan of the profiles, run only on a search."""
        p = self._profiles
        with self._read() as conn:
            found = conn.execute(select(p.c.id).where(p.c.traits[trait].as_string() == value)
                                 .limit(1)).scalar()
        return None if found is None else str(found)

    def enrollments_table_count(self) -> int:
        """`SELECT count(*) FROM enrollments` (the dashboard benchmark's baseline)."""
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(
                self._enrollments)).scalar() or 0)
