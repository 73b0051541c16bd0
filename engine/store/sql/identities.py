"""`SqlStore`'s identities (which profile a userId, anonymousId or identifying trait
names) and profile merges, by the one merge rule of engine/core/merge.py."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update

from engine.core.merge import exited_by_merge, merge_losers, merged_entries, merged_profile
from engine.core.model import EntryStats
from engine.store.sql.db import INSERT_CHUNK, _chunks
from engine.store.sql.rollup import recounted
from engine.store.sql.rows import (
    enrollment_from_row,
    enrollment_values,
    entries_values,
    entry_stats_from_row,
)
from engine.store.sql.stamps import StampQueries, identity_key
from engine.store.sql.state import StateQueries


class IdentityQueries(StateQueries, StampQueries):
    @cached_property
    def _link(self) -> Any:
        i = self._identities
        link = self._insert(i).values({c: bindparam(c, type_=i.c[c].type)
                                       for c in ("kind", "value", "profile_id", "created_at")})
        return link.on_conflict_do_update(index_elements=["kind", "value"],
                                          set_={"profile_id": link.excluded.profile_id})

    @cached_property
    def _profile_for(self) -> Any:
        i = self._identities
        return select(i.c.profile_id).where(i.c.kind == bindparam("kind"),
                                            i.c.value == bindparam("value"))

    def profile_for(self, kind: str, value: str) -> str | None:
        with self._read() as conn:
            found: str | None = conn.execute(self._profile_for,
                                             {"kind": kind, "value": value}).scalar()
        return found

    def link_identity(self, kind: str, value: str, profile_id: str) -> None:
        with self._write() as conn:
            conn.execute(self._link, {"kind": kind, "value": value,
                                                    "profile_id": profile_id,
                                                    "created_at": self._now()})

    def merge_profiles(self, into: str, from_: str) -> None:
        """Fold profile `from_` into `into`, in one transaction, by the rule of
        engine/core/merge.py. Identities, segment memberships and pending inbox rows of
        `from_` move; its timers stay as they are (they fire for their enrollment, which
        moves, and a cron timer of a merged-away profile is dropped when it fires)."""
        if into == from_:
            return
        e, p = self._enrollments, self._profiles
        with self.transaction(), self._write() as conn:
            i = self._identities
            moved_ids = conn.execute(update(i).where(i.c.profile_id == from_)
                                     .values(profile_id=into).returning(i.c.kind, i.c.value))
            # the identifiers now name another profile (stamps.py; the two profiles'
            # own keys are stamped by write_prepared, or slot 0 by an unstamped caller)
            self._stamp_keys(conn, [identity_key(k, v) for k, v in moved_ids.all()])
            merged = merged_profile(into, self.get_profile(into), self.get_profile(from_))
            if merged is not None:
                conn.execute(delete(p).where(p.c.id == from_))
                self.put_profile(merged)
            active = [enrollment_from_row(r._mapping) for r in conn.execute(
                select(e).where(e.c.profile_id.in_([into, from_]), e.c.status == "active")
                .order_by(e.c.entered_at, e.c.entry_seq))]
            losers = merge_losers([x for x in active if x.profile_id == into],
                                  [x for x in active if x.profile_id == from_])
            conn.execute(update(e).where(e.c.profile_id == from_).values(profile_id=into))
            now = self._now()
            with recounted(conn, [loser.id for loser in losers]):
                for loser in losers:
                    conn.execute(update(e).where(e.c.id == loser.id).values(
                        {k: v for k, v in enrollment_values(exited_by_merge(loser, now)).items()
                         if k in ("status", "state", "exit_reason", "updated_at", "ended_at")}))
            s = self._segments
            moved = conn.execute(select(s.c.journey, s.c.since)
                                 .where(s.c.profile_id == from_)).all()
            if moved:
                conn.execute(self._insert(s).values(
                    [{"profile_id": into, "journey": r.journey, "since": r.since}
                     for r in moved]).on_conflict_do_nothing(
                         index_elements=["profile_id", "journey"]))
                conn.execute(delete(s).where(s.c.profile_id == from_))
            self._move_queued(conn, from_, into)
            self._merge_entries(conn, into, from_)

    def move_queue(self, from_: str, into: str) -> None:
        """The events waiting in queue `from_` wait in `into`'s (a provisional queue
        whose id is resolved: engine/values.py `inbox_owner`)."""
        with self._write() as conn:
            self._move_queued(conn, from_, into)

    def move_queues(self, moves: Mapping[str, str]) -> None:
        """`move_queue` of each (queue -> into, in order) in one transaction, but only of
        the queues an inbox row waits in, found by one look: most are empty (a new
        visitor's queue once its events are handled, the text it took), and each move
        is three statements (500 new visitors in one batch: 3,000 of them)."""
        ib = self._inbox
        with self._write() as conn:
            waiting: set[str] = set()
            for chunk in _chunks(list(moves), INSERT_CHUNK):
                waiting.update(conn.execute(select(ib.c.profile_id).distinct().where(
                    ib.c.profile_id.in_(chunk))).scalars())
            for from_, into in moves.items():
                if from_ in waiting:
                    self._move_queued(conn, from_, into)
                    waiting.add(into)  # moved on again by a later move, if any

    def _move_queued(self, conn: Connection, from_: str, into: str) -> None:
        """Move the inbox rows waiting under `from_`, and the stored events they are
        (filed under their queue until handled), to `into`. The events are found by the
        rows' messageIds as the database reads them from the JSON (SQLite json_extract,
        PostgreSQL ->>), before the rows move: the rows' whole bodies were read back to
        learn them (a backlog of 20,000 events of 1 KB: 0.4-0.9 s a move instead of
        1.4-1.9 s on SQLite, 1.8-3.1 s instead of 5.5-17 s on PostgreSQL); an empty
        queue costs one more indexed statement (0.1 ms)."""
        ib, ev = self._inbox, self._events
        waiting = select(ib.c.event["messageId"].as_string()).where(ib.c.profile_id == from_)
        conn.execute(update(ev).where(ev.c.profile_id == from_, ev.c.message_id.in_(waiting))
                     .values(profile_id=into))
        # a parked one's failure row goes along (it holds the event: whoever the queue
        # is now, not the profile whose id the queue was)
        f = self._failures
        conn.execute(update(f).where(f.c.profile_id == from_, f.c.kind == "event")
                     .values(profile_id=into))
        moved = conn.execute(update(ib).where(ib.c.profile_id == from_)
                             .values(profile_id=into)).rowcount
        if moved:  # locked until this commits: a claim skipped them
            self._notify(conn, [("inbox", "")])

    def _merge_entries(self, conn: Connection, into: str, from_: str) -> None:
        j = self._journey_entries
        theirs = {r.journey: entry_stats_from_row(r._mapping) for r in conn.execute(
            select(j).where(j.c.profile_id == from_))}
        if not theirs:
            return
        ours = {r.journey: entry_stats_from_row(r._mapping) for r in conn.execute(
            select(j).where(j.c.profile_id == into, j.c.journey.in_(list(theirs))))}
        conn.execute(delete(j).where(j.c.profile_id == from_))
        conn.execute(self._upsert_entries, [
            entries_values(into, journey, merged_entries(ours.get(journey, EntryStats()), s))
            for journey, s in theirs.items()])
