"""`SqlStore`'s ingest and inbox: accepted events are stored (deduplicated on
(source, messageId)) and queued per profile; a worker claims each profile's events in
order, inside the transaction that handles them, one worker per profile at a time.

SQLite: the handling transaction holds the write lock, so a claim is exclusive.
PostgreSQL: claimed rows are locked `FOR UPDATE SKIP LOCKED` (concurrent claimers skip
them instead of waiting), each profile is taken with a transaction-scoped advisory
lock (`try_lock_profiles`, without waiting), and only a profile's run of events from its
earliest waiting one is kept, so no worker handles an event while an earlier one of the
same profile is elsewhere. Nothing is leased: a worker that dies has its transaction
rolled back and its rows free again as soon as its connection closes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    text,
    update,
)

from engine import jsonfast
from engine.ports import InboxItem, Lane
from engine.store.sql.db import INSERT_CHUNK, _chunks, _driver, _marks
from engine.store.sql.lanes import takeover_statements, unserved_parameters
from engine.store.sql.lists import among, one_of
from engine.store.sql.state import StateQueries
from engine.values import inbox_owner, is_provisional

HOLDING = ("pending", "parked")  # the statuses that keep a profile's later events waiting
# PostgreSQL: a claim that left events behind because another worker holds their
# profile looks again this soon. Nothing else would wake it for them: the holder's
# commit notifies no one, and `next_inbox_at` knows only held events' times, so they
# waited for the next ingest or the 5 s safety tick (two workers were slower than one).
LOOK_AGAIN = timedelta(milliseconds=50)


WITHOUT_END = 2**63 - 1  # an id after every event's (SQLite's largest rowid)


class InboxQueries(StateQueries):
    def accept_events(self, events: list[dict[str, Any]], source: str = "default") -> list[str]:
        """Store new events and queue them for the workers, all in one transaction.

        Dedupe on (source, messageId): an event seen before (or twice in the batch) is
        dropped. Returns the messageIds newly accepted, in input order. Each event is
        queued for the profile its userId (else anonymousId) currently resolves to.
        """
        seen: set[str] = set()
        batch: list[dict[str, Any]] = []
        for ev in events:
            mid = str(ev["messageId"])
            if mid not in seen:
                seen.add(mid)
                batch.append(ev)
        if not batch:
            return []
        now = self._now()
        with self._write(stamped=True) as conn:  # the inbox is no profile's state
            owners = self._owners(conn, batch)
            if not self._pg:
                return self._accept_sqlite(conn, batch, owners, source, now)
            # One short statement per table, the rows as arrays (`unnest`; the bodies as
            # one JSON array: psycopg quotes a text[] element by element): SQLAlchemy's
            # "insertmanyvalues" wrote a VALUES list per batch, a new statement text each
            # time that psycopg parsed again (too long for its cache): a sixth of the API
            # process's CPU (py-spy). In process, 3,000 -> 5,300 events/s accepted.
            bodies = [jsonfast.dumps(ev) for ev in batch]
            fresh = set(conn.execute(self._pg_ingest["events"], {
                "source": source, "at": now,
                "ids": [str(ev["messageId"]) for ev in batch],
                "profiles": [owners[id(ev)] for ev in batch],
                "bodies": "[" + ",".join(bodies) + "]"}).scalars())
            kept = [(ev, body) for ev, body in zip(batch, bodies, strict=True)
                    if str(ev["messageId"]) in fresh]
            accepted = [ev for ev, _ in kept]
            if accepted:
                self._notify(conn, [("inbox", "")])
                # In the batch's order: a profile's events are claimed by inbox id.
                conn.execute(self._pg_ingest["inbox"], {
                    "at": now, "profiles": [owners[id(ev)] for ev in accepted],
                    "bodies": "[" + ",".join(body for _, body in kept) + "]"})
        return [str(ev["messageId"]) for ev in accepted]

    @cached_property
    def _pg_ingest(self) -> dict[str, Any]:
        """PostgreSQL's ingest statements: the events (deduplicated, returning the
        messageIds that were new) and their inbox rows, each batch as arrays zipped
        row by row (`ROWS FROM`), in the batch's order."""
        at = bindparam("at", type_=self._events.c.received_at.type)
        return {
            "events": text(
                "INSERT INTO events (source, message_id, profile_id, body, received_at) "
                "SELECT :source, t.id, t.profile, t.body, :at FROM ROWS FROM ("
                "unnest(CAST(:ids AS text[])), unnest(CAST(:profiles AS text[])), "
                "jsonb_array_elements(CAST(:bodies AS jsonb))) "
                "WITH ORDINALITY AS t(id, profile, body, n) ORDER BY t.n "
                "ON CONFLICT (source, message_id) DO NOTHING RETURNING message_id"
            ).bindparams(at),
            "inbox": text(
                "INSERT INTO inbox (profile_id, event, status, attempts, created_at) "
                "SELECT t.profile, t.body, 'pending', 0, :at FROM ROWS FROM ("
                "unnest(CAST(:profiles AS text[])), "
                "jsonb_array_elements(CAST(:bodies AS jsonb))) "
                "WITH ORDINALITY AS t(profile, body, n) ORDER BY t.n"
            ).bindparams(at),
        }

    def _accept_sqlite(self, conn: Connection, batch: list[dict[str, Any]],
                       owners: dict[int, str], source: str, now: datetime) -> list[str]:
        """The ingest hot path on SQLite, at the driver: SQLAlchemy's per-row parameter
        processing cost twice SQLite's own work. Inside BEGIN IMMEDIATE this connection
        is the only writer, so looking up the known messageIds first is race-free."""
        ids = [str(ev["messageId"]) for ev in batch]
        known: set[str] = set()
        for chunk in _chunks(ids, INSERT_CHUNK):
            known.update(row[0] for row in _driver(conn).execute(
                "SELECT message_id FROM events WHERE source = ? AND message_id IN "
                f"({_marks(len(chunk))})", (source, *chunk)))
        accepted = [ev for ev in batch if str(ev["messageId"]) not in known]
        if not accepted:
            return []
        stamp = self._sqlite_stamp(now)
        bodies = [jsonfast.dumps(ev) for ev in accepted]
        driver = _driver(conn)  # the sqlite3 connection, inside this transaction
        driver.executemany(
            "INSERT INTO events (source, message_id, profile_id, body, received_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(source, str(ev["messageId"]), owners[id(ev)], body, stamp)
             for ev, body in zip(accepted, bodies, strict=True)])
        driver.executemany(
            "INSERT INTO inbox (profile_id, event, status, attempts, created_at) "
            "VALUES (?, ?, 'pending', 0, ?)",
            [(owners[id(ev)], body, stamp) for ev, body in zip(accepted, bodies, strict=True)])
        self._notify(conn, [("inbox", "")])  # other processes' workers (after the commit)
        return [str(ev["messageId"]) for ev in accepted]

    def _sqlite_stamp(self, when: datetime) -> Any:
        """`when` as the timestamp columns store it on SQLite (their own bind processor)."""
        processor = self._events.c.received_at.type.bind_processor(self._db.dialect)
        return processor(when) if processor is not None else when

    def _owners(self, conn: Connection, batch: list[dict[str, Any]]) -> dict[int, str]:
        """The inbox queue of each event (engine/values.py `inbox_owner`): the profile
        each userId and anonymousId points at, and for one not linked yet, whether its
        text is or was a profile's (`id_taken`). One lookup per kind (`kind = ? AND
        value IN`: the primary key's plan on both databases)."""
        users = {str(ev["userId"]) for ev in batch if ev.get("userId")}
        anons = {str(ev["anonymousId"]) for ev in batch if ev.get("anonymousId")}
        known = self._linked(conn, (("user_id", users), ("anonymous_id", anons)))
        new_users = {v for v in users if ("user_id", v) not in known}
        new_anons = {v for v in anons if ("anonymous_id", v) not in known}
        if new_users or new_anons:
            known |= self._linked(conn, (
                ("anonymous_id", new_users - anons), ("user_id", new_anons - users),
                ("profile", new_users | new_anons)))
        return {id(ev): inbox_owner(ev, lambda kind, value: known.get((kind, value)))
                for ev in batch}

    def _linked(self, conn: Connection, wanted: Iterable[tuple[str, set[str]]]
                ) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        i = self._identities
        for kind, values in wanted:
            for chunk in _chunks(sorted(values), INSERT_CHUNK):
                if self._pg:
                    rows = conn.execute(select(i.c.value, i.c.profile_id).where(
                        i.c.kind == kind, i.c.value.in_(chunk))).all()
                else:  # the ingest hot path: at the driver, as in _accept_sqlite
                    rows = _driver(conn).execute(
                        "SELECT value, profile_id FROM identities WHERE kind = ? AND value IN "
                        f"({_marks(len(chunk))})", (kind, *chunk)).fetchall()
                for value, profile_id in rows:
                    found[(kind, value)] = profile_id
        return found

    @cached_property
    def _inbox_statements(self) -> dict[str, Any]:
        """The inbox claim, built once (`:now`, `:limit`; `:profiles` for a retry of
        some profiles alone), and the next due time."""
        ib = self._inbox
        now: Any = bindparam("now")
        # The held profiles through the partial index ix_inbox_held: its own condition
        # is a term of the query, written as the index's (literals, not parameters), or
        # SQLite cannot tell that the index holds every row asked for, and reads the
        # whole inbox (69 ms at 200,000 rows, for every claim and every lane's look)
        parked = ib.c.status == literal_column("'parked'")
        held = select(ib.c.profile_id).where(
            parked | ib.c.available_at.is_not(None),
            (ib.c.status == "parked")
            | ((ib.c.status == "pending") & (ib.c.available_at > now)))
        query = (select(ib.c.id, ib.c.profile_id, ib.c.event, ib.c.attempts)
                 .where(ib.c.status == "pending",
                        (ib.c.available_at.is_(None)) | (ib.c.available_at <= now),
                        ib.c.profile_id.not_in(held))
                 .order_by(ib.c.id).limit(bindparam("limit")))
        some = query.where(among(ib.c.profile_id, "profiles", pg=self._pg))
        if self._pg:
            query, some = (query.with_for_update(skip_locked=True),
                           some.with_for_update(skip_locked=True))
        # PostgreSQL's claim: the waiting events of the profiles it locked, up to the
        # last one claimed (`:profiles`, `:upto`)
        waiting = (select(ib.c.profile_id, ib.c.id)
                   .where(among(ib.c.profile_id, "profiles", pg=self._pg),
                          one_of(ib.c.status, HOLDING), ib.c.id <= bindparam("upto"))
                   .order_by(ib.c.profile_id, ib.c.id))
        # SQLite's optimistic batches (stamps.py): one lane's claim, read in a snapshot,
        # and the check, in the write transaction, that those rows still wait as read
        in_lane = func.jm_lane(ib.c.profile_id, bindparam("lanes")) == bindparam("lane")
        lane = query.where(in_lane)
        # a lane worker's takeover (engine/runtime/takeover.py): the events before the
        # first one (by id) queued after `:since` (two accepts read the clock before the
        # write lock: a profile's earlier event may have the later time, and by time
        # alone would have come second; a cut by id keeps every profile's order). One
        # look from the oldest event: at once when it is recent, the whole inbox once
        # when all of it waited (a NOT EXISTS per event and profile grew with the square
        # of one profile's backlog: 64 ms at 1,024 of its events) ...
        later = ib.alias("later")
        first_later = (select(later.c.id).where(later.c.created_at > bindparam("since"))
                       .order_by(later.c.id).limit(1).scalar_subquery())
        waited = ib.c.id < func.coalesce(first_later, WITHOUT_END)
        # ... and those of the profiles no live worker's lane holds (lanes.py)
        stale = takeover_statements(query, waited, ib.c.profile_id)
        still = select(ib.c.id, ib.c.attempts).where(
            among(ib.c.id, "ids", pg=self._pg), ib.c.status == "pending",
            (ib.c.available_at.is_(None)) | (ib.c.available_at <= now))
        held_at = ib.c.available_at.is_not(None)
        lane_next = select(func.min(ib.c.available_at)).where(ib.c.status == "pending",
                                                              held_at, in_lane)
        return {"all": query, "some": some, "waiting": waiting, "lane": lane, "still": still,
                **{f"stale{name}": statement for name, statement in stale.items()},
                "lane_next": lane_next,
                "ack": delete(ib).where(among(ib.c.id, "ids", pg=self._pg)),
                "next": select(func.min(ib.c.available_at)).where(ib.c.status == "pending")}

    def claim_inbox(self, limit: int, now: datetime, *,
                    profiles: Collection[str] | None = None) -> list[InboxItem]:
        """Claim up to `limit` events to handle now (see the module doc), oldest first."""
        params: dict[str, Any] = {"now": now, "limit": limit}
        if profiles is not None:
            params["profiles"] = list(profiles)
        query = self._inbox_statements["all" if profiles is None else "some"]
        with self._write() as conn:
            rows = list(self._select_rows(conn, query, params))
            self._local.claim_short = len(rows) < limit
            if self._pg and rows:
                kept = self._runs_from_earliest(conn, rows)
                if len(kept) < len(rows):
                    self._look_again_at = now + LOOK_AGAIN
                rows = kept
        return [InboxItem(r["id"], r["profile_id"], r["event"], r["attempts"]) for r in rows]

    def peek_inbox(self, limit: int, now: datetime, lane: Lane, *,
                   waiting_since: datetime | None = None,
                   served: Sequence[Lane] | None = None) -> list[InboxItem]:
        """What `claim_inbox` would claim, of one lane's profiles (or of any lane: queued
        at or before `waiting_since`, or of a profile no lane of `served` holds),
        without claiming it (SQLite, inside a snapshot: stamps.py)."""
        query, params = self._inbox_statements["all"], {"now": now, "limit": limit}
        if waiting_since is not None:
            name, more = unserved_parameters(served)
            query = self._inbox_statements[f"stale{name}"]
            params |= {"since": waiting_since, **more}
        elif served is not None:
            raise ValueError("peek_inbox: `served` goes with `waiting_since`")
        elif lane.count > 1:
            query = self._inbox_statements["lane"]
            params |= {"lanes": lane.count, "lane": lane.index}
        with self._read() as conn:
            rows = self._select_rows(conn, query, params)
        return [InboxItem(r["id"], r["profile_id"], r["event"], r["attempts"]) for r in rows]

    def inbox_unchanged(self, items: Sequence[InboxItem], now: datetime) -> bool:
        """Inside the write transaction: every item still waits, claimable at `now`, with
        the attempts it was read with (nobody handled, retried or parked it since)."""
        expected = {i.id: i.attempts for i in items}
        found: dict[int, int] = {}
        with self._write() as conn:
            for chunk in _chunks(sorted(expected), INSERT_CHUNK):
                found.update((row["id"], row["attempts"]) for row in self._select_rows(
                    conn, self._inbox_statements["still"], {"ids": list(chunk), "now": now}))
        return found == expected

    def _runs_from_earliest(self, conn: Connection, rows: list[Mapping[Any, Any]]
                            ) -> list[Mapping[Any, Any]]:
        """PostgreSQL: keep the profiles this transaction locked, and of each only the
        run of claimed events that starts at the profile's earliest waiting event. A
        provisional queue (engine/values.py `inbox_owner`) is kept only with the id its
        text would make locked too, before its identifiers are read: another worker
        making a profile of that text (a new userId's, under the text itself) either
        holds it, and the queue waits, or committed, and the batch reads its links."""
        texts = {pid: text for r in rows if (text := _provisional_text(
            pid := r["profile_id"], r["event"])) is not None}
        owners = [r["profile_id"] for r in rows]
        locked = self.try_lock_profiles([*owners, *texts.values()])
        mine = {pid for pid in set(owners) & locked if pid not in texts or texts[pid] in locked}
        waiting: dict[str, list[int]] = {}
        upto = max(r["id"] for r in rows)
        for chunk in _chunks(sorted(mine), INSERT_CHUNK):
            for row in self._select_rows(conn, self._inbox_statements["waiting"],
                                         {"profiles": chunk, "upto": upto}):
                waiting.setdefault(row["profile_id"], []).append(row["id"])
        kept: list[Mapping[Any, Any]] = []
        position = dict.fromkeys(mine, 0)
        broken: set[str] = set()
        for row in rows:  # in id order
            pid = row["profile_id"]
            if pid not in mine or pid in broken:
                continue
            expected = waiting.get(pid, [])
            if position[pid] < len(expected) and expected[position[pid]] == row["id"]:
                kept.append(row)
                position[pid] += 1
            else:
                broken.add(pid)  # an earlier event is elsewhere or held: not this round
        return kept

    def refile_events(self, moves: list[tuple[str, str, str]]) -> None:
        """Stored events handled for another profile than they were queued for, filed
        under that one ((messageId, queued for, handled for); engine/values.py WriteRun)."""
        ev = self._events
        with self._write() as conn:
            conn.execute(update(ev).where(ev.c.profile_id == bindparam("queued"),
                                          ev.c.message_id == bindparam("mid"))
                         .values(profile_id=bindparam("handled")),
                         [{"mid": mid, "queued": queued, "handled": handled}
                          for mid, queued, handled in moves])

    def ack_inbox(self, ids: list[int]) -> None:
        """Done with these events: delete them (inside the handling transaction)."""
        with self._write() as conn:
            for chunk in _chunks(list(ids), INSERT_CHUNK):
                self._run_statement(conn, self._inbox_statements["ack"], {"ids": chunk})

    def retry_inbox(self, item_id: int, at: datetime, error: str, *,
                    attempt: bool = True) -> None:
        ib = self._inbox
        with self._write() as conn:
            conn.execute(update(ib).where(ib.c.id == item_id).values(
                attempts=ib.c.attempts + (1 if attempt else 0), available_at=at,
                last_error=error))

    _look_again_at: datetime | None = None  # a claim left events to another worker

    def next_inbox_at(self, lane: Lane | None = None) -> datetime | None:
        """When the inbox next has work: the earliest held event (of `lane`, if given),
        or soon when the last claim left events behind (PostgreSQL, see LOOK_AGAIN)."""
        if lane is not None and lane.count > 1:
            query, params = self._inbox_statements["lane_next"], {
                "lanes": lane.count, "lane": lane.index}
        else:
            query, params = self._inbox_statements["next"], {}
        with self._read() as conn:
            value: datetime | None = self._scalar(conn, query, params)
        again, self._look_again_at = self._look_again_at, None
        if again is not None and (value is None or again < value):
            return again
        return value


def _provisional_text(owner: str, event: Mapping[str, Any]) -> str | None:
    """The id text a provisional queue's event names: the id the worker would make its
    profile's (engine/runtime/identity.py), None for a profile's queue."""
    if not is_provisional(owner):
        return None
    value = event.get("userId" if owner.startswith(" user_id") else "anonymousId")
    return (str(value).strip() or None) if value is not None else None
