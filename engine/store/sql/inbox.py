"""`SqlStore`'s ingest and inbox: accepted events are stored (deduplicated on
(source, messageId)) and queued per profile; workers lease each profile's events in
order, one worker per profile at a time.

PostgreSQL: inbox claims are serialized by a transaction-scoped advisory lock (they are
short), which is what keeps one worker per profile.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from engine import jsonfast
from engine.ports import InboxItem
from engine.store.sql.db import INSERT_CHUNK, SqlBase, _chunks, _driver, _marks

INBOX_CLAIM_LOCK = 0x4A4D_1B0C  # advisory lock id serializing inbox claims on PostgreSQL


class InboxQueries(SqlBase):
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
        ev_t = self._events
        with self._write() as conn:
            owners = self._owners(conn, batch)
            if not self._pg:
                return self._accept_sqlite(conn, batch, owners, source, now)
            # One cached statement run as an executemany (SQLAlchemy's "insertmanyvalues"
            # batches it with RETURNING): a multi-row .values() would be compiled anew for
            # every batch, which cost half the ingest time (bench/ingest_bench.py).
            stmt = (self._insert(ev_t)
                    .on_conflict_do_nothing(index_elements=["source", "message_id"])
                    .returning(ev_t.c.message_id))
            fresh = set(conn.scalars(stmt, [
                {"source": source, "message_id": str(ev["messageId"]),
                 "profile_id": owners[id(ev)], "body": ev, "received_at": now}
                for ev in batch]))
            accepted = [ev for ev in batch if str(ev["messageId"]) in fresh]
            if accepted:
                conn.execute(insert(self._inbox), [
                    {"profile_id": owners[id(ev)], "event": ev, "status": "pending",
                     "attempts": 0, "lease_owner": None, "lease_until": None, "created_at": now}
                    for ev in accepted])
        return [str(ev["messageId"]) for ev in accepted]

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
        return [str(ev["messageId"]) for ev in accepted]

    def _sqlite_stamp(self, when: datetime) -> Any:
        """`when` as the timestamp columns store it on SQLite (their own bind processor)."""
        processor = self._events.c.received_at.type.bind_processor(self._db.dialect)
        return processor(when) if processor is not None else when

    def _owners(self, conn: Connection, batch: list[dict[str, Any]]) -> dict[int, str]:
        """The inbox partition of each event: the profile its userId/anonymousId maps to."""
        users = {str(ev["userId"]) for ev in batch if ev.get("userId")}
        anons = {str(ev["anonymousId"]) for ev in batch if ev.get("anonymousId")}
        known: dict[tuple[str, str], str] = {}
        i = self._identities
        for kind, values in (("user_id", users), ("anonymous_id", anons)):
            for chunk in _chunks(sorted(values), INSERT_CHUNK):
                if self._pg:
                    rows = conn.execute(select(i.c.value, i.c.profile_id).where(
                        i.c.kind == kind, i.c.value.in_(chunk))).all()
                else:  # the ingest hot path: at the driver, as in _accept_sqlite
                    rows = _driver(conn).execute(
                        "SELECT value, profile_id FROM identities WHERE kind = ? AND value IN "
                        f"({_marks(len(chunk))})", (kind, *chunk)).fetchall()
                for value, profile_id in rows:
                    known[(kind, value)] = profile_id
        owners: dict[int, str] = {}
        for ev in batch:
            user, anon = ev.get("userId"), ev.get("anonymousId")
            if user:
                owners[id(ev)] = known.get(("user_id", str(user)), str(user))
            elif anon:
                owners[id(ev)] = known.get(("anonymous_id", str(anon)), str(anon))
            else:
                owners[id(ev)] = f"message:{ev['messageId']}"
        return owners

    def claim_inbox(self, worker: str, limit: int, lease: timedelta,
                    now: datetime) -> list[InboxItem]:
        """Lease up to `limit` pending events to `worker`, oldest first.

        Only profiles with no live lease are served, and for each of them only its
        earliest pending events, so each profile's events are handled in order by at
        most one worker at a time. A lease that expires (the worker crashed, or the
        event failed and was rolled back) makes the profile claimable again; after
        `inbox_max_attempts` claims an event is set aside with status "failed".
        """
        ib = self._inbox
        with self._write() as conn:
            if self._pg:
                conn.execute(select(func.pg_advisory_xact_lock(INBOX_CLAIM_LOCK)))
            conn.execute(update(ib).where(
                ib.c.status == "pending", ib.c.attempts >= self.inbox_max_attempts,
                ib.c.lease_until <= now).values(status="failed", lease_owner=None,
                                                lease_until=None))
            leased = (select(ib.c.profile_id).where(ib.c.status == "pending",
                                                    ib.c.lease_until > now))
            rows = conn.execute(select(ib.c.id, ib.c.profile_id, ib.c.event, ib.c.attempts)
                                .where(ib.c.status == "pending", ib.c.profile_id.not_in(leased))
                                .order_by(ib.c.id).limit(limit)).all()
            ids = [r.id for r in rows]
            for chunk in _chunks(ids, INSERT_CHUNK):
                conn.execute(update(ib).where(ib.c.id.in_(chunk)).values(
                    lease_owner=worker, lease_until=now + lease, attempts=ib.c.attempts + 1))
        return [InboxItem(r.id, r.profile_id, r.event, r.attempts + 1) for r in rows]

    def ack_inbox(self, ids: list[int]) -> None:
        """Done with these events: delete them (call inside the processing transaction)."""
        if not ids:
            return
        with self._write() as conn:
            conn.execute(delete(self._inbox).where(self._inbox.c.id == bindparam("id")),
                         [{"id": i} for i in ids])
