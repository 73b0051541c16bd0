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
  kind and reason (decisions (journey, at)) in the period.

Only the SQL store has these (the dashboard is served by `journeyman serve`, which
always runs on one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, func, select

from engine import jsonfast
from engine.store.sql.db import SqlBase


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


class AnalyticsQueries(SqlBase):
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
        passed counts) and `split_steps` its split steps (for the variants)."""
        e, o, d = self._enrollments, self._outbox, self._decisions
        counts = JourneyCounts()
        cohort = (e.c.journey == journey, e.c.entered_at >= since, e.c.entered_at < until)
        with self._read() as conn:
            counts.on_step = {str(state): int(n) for state, n in conn.execute(
                select(e.c.state, func.count())
                .where(e.c.journey == journey, e.c.status == "active").group_by(e.c.state))}
            # One pass over the cohort (its rows are read once, not once per count):
            # the JSON comes as text and is parsed here, faster than the database's
            # JSON functions once per step and variant.
            rows = conn.execute(select(e.c.status, e.c.goal_reached_at.is_not(None),
                                       cast(e.c.visits, Text), cast(e.c.variants, Text))
                                .where(*cohort))
            counts.passed = dict.fromkeys(steps, 0)
            variants: dict[str, dict[str, list[int]]] = {step: {} for step in split_steps}
            ended: dict[str, int] = {}
            for status, converted, visits, chosen in rows:
                counts.entered += 1
                counts.converted += bool(converted)
                ended[status] = ended.get(status, 0) + 1
                for step in jsonfast.loads(visits) or ():
                    if step in counts.passed:
                        counts.passed[step] += 1
                for step, variant in (jsonfast.loads(chosen) or {}).items():
                    if step in variants:
                        tally = variants[step].setdefault(str(variant), [0, 0])
                        tally[0] += 1
                        tally[1] += bool(converted)
            counts.ended = dict(sorted(ended.items()))
            counts.variants = {step: [VariantCount(name, n, won) for name, (n, won)
                                      in sorted(found.items())]
                               for step, found in variants.items()}
            for step, status, n in conn.execute(
                    select(o.c.step, o.c.status, func.count())
                    .where(o.c.journey == journey, o.c.created_at >= since,
                           o.c.created_at < until).group_by(o.c.step, o.c.status)):
                counts.sends.setdefault(str(step), {})[str(status)] = int(n)
            counts.decisions = [
                (str(step), str(what), str(reason), int(n)) for step, what, reason, n in
                conn.execute(select(d.c.step, d.c.what, d.c.reason, func.count())
                             .where(d.c.journey == journey, d.c.at >= since, d.c.at < until)
                             .group_by(d.c.step, d.c.what, d.c.reason)
                             .order_by(d.c.step, func.count().desc()))]
        return counts

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
