"""`SqlStore`'s privacy queries: a person's rows in every table (export), erasing them
(forget), and the event retention (docs/privacy.md).

A person is their profile and every profile id they ever had: the values of their
`profile` identifiers (an id the engine chose for them, a profile merged into theirs;
engine/runtime/identity.py), under which the rows written before a merge stay.

On SQLite, deleted rows would stay readable in free pages and in the write-ahead log
until overwritten; `forget` therefore deletes with `secure_delete` on (freed content is
zeroed), then checkpoints the WAL into the file and truncates it, VACUUMs (the file is
rebuilt without free pages) and truncates the WAL again. If another process holds a read
transaction at that moment, the checkpoint cannot finish; `forget` says so in its result
(`sqlite_scrubbed: 0`) and the next `forget` or a restart completes it. On PostgreSQL the
rows are gone at commit; their space (and the bytes in it) is reclaimed by (auto)VACUUM.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    String,
    Table,
    Text,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from engine.core.times import iso
from engine.store.scrub import OTHERS_COLUMNS, Scrubber, still_someone_elses
from engine.store.sql.db import SqlBase
from engine.values import (
    IDENTIFIER_TRAITS,
    addresses_in,
    forgotten_address,
    forgotten_reason,
    named_ids,
    person_ids_from,
    waiting_ids,
)

log = logging.getLogger("journeyman.store")

# Every table that holds people, by the column that names the profile.
PERSON_TABLES = (("profiles", "id"), ("identities", "profile_id"), ("events", "profile_id"),
                 ("inbox", "profile_id"), ("enrollments", "profile_id"),
                 ("journey_entries", "profile_id"), ("timers", "profile_id"),
                 ("segment_members", "profile_id"), ("outbox", "profile_id"),
                 ("decisions", "profile_id"), ("exits", "profile_id"),
                 ("goals", "profile_id"), ("failures", "profile_id"),
                 ("engagements", "profile_id"))
# Not a profile's row but the person's address: exported as it is; kept after forget as
# its hash only (`forgotten_address`), so a suppressed address stays suppressed
SUPPRESSIONS = "suppressions"
# forget's result: other people's rows rewritten without the person (engine/store/scrub.py)
OTHERS = "others_scrubbed"
# settings: a forget's scrub of the SQLite file did not finish (`finish_scrub`)
SCRUB_PENDING = "forget_scrub_pending"
SEARCH_CHUNK = 100  # LIKE conditions per query: SQLite's expression depth stays small


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


class PrivacyQueries(SqlBase):
    def _tables(self) -> list[tuple[str, Table, str]]:
        return [(name, self._table(name), column) for name, column in PERSON_TABLES]

    def _table(self, name: str) -> Table:
        from engine.store.sql.tables import table

        return table(name)

    def _person_ids(self, conn: Connection, profile_id: str) -> list[str]:
        """The profile's id, the ids it had, and the provisional queues of its userIds
        and anonymousIds (engine/values.py `person_ids_from`)."""
        i = self._identities
        return person_ids_from(profile_id, conn.execute(
            select(i.c.kind, i.c.value).where(i.c.profile_id == profile_id)).all())

    def person_ids(self, profile_id: str) -> list[str]:
        with self._read() as conn:
            return self._person_ids(conn, profile_id)

    def export_person(self, profile_id: str) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        with self._read() as conn:
            ids = self._person_ids(conn, profile_id)
            for name, tbl, column in self._tables():
                rows = conn.execute(select(tbl).where(tbl.c[column].in_(ids)))
                found[name] = [{k: _plain(v) for k, v in row._mapping.items()} for row in rows]
            t = self._table(SUPPRESSIONS)
            addresses = sorted(self._addresses(conn, ids))
            found[SUPPRESSIONS] = [{k: _plain(v) for k, v in row._mapping.items()} for row in
                                   conn.execute(select(t).where(t.c.address.in_(addresses)))]
        return found

    def _identifier_values(self, conn: Connection, ids: list[str]) -> set[str]:
        """The person's e-mail and phone (from their profiles' traits)."""
        p = self._profiles
        values: set[str] = set()
        for traits in conn.execute(select(p.c.traits).where(p.c.id.in_(ids))).scalars():
            if isinstance(traits, Mapping):
                values |= {str(traits[t]) for t in IDENTIFIER_TRAITS if traits.get(t)}
        return values

    def forget_person(self, profile_id: str) -> dict[str, int]:
        deleted: dict[str, int] = {}
        with self._write() as conn:
            if not self._pg:
                conn.exec_driver_sql("PRAGMA secure_delete=ON")
            ids = self._person_ids(conn, profile_id)
            named = self._identifier_values(conn, ids)
            addresses = self._addresses(conn, ids)  # before their sends are deleted
            # every id that named them (a userId an alias gave them, a device's
            # anonymousId): other people's rows can name them by it (a referrer_id)
            i = self._identities
            their = set(conn.execute(select(i.c.value).where(i.c.profile_id.in_(ids)))
                        .scalars())
            # their rows only: an identifier of the same text as their e-mail or phone
            # that points at another profile is that person's (a userId that is an
            # e-mail, a shared family address), and stays theirs
            for name, tbl, column in self._tables():
                deleted[name] = conn.execute(
                    delete(tbl).where(tbl.c[column].in_(ids))).rowcount or 0
            deleted[SUPPRESSIONS] = self._hide_suppressions(conn, addresses)
            deleted[OTHERS] = self._scrub_others(conn, {*named_ids(ids), *named, *addresses,
                                                        *their})
        if not self._pg:
            deleted["sqlite_scrubbed"] = int(self._scrub_file())
        return deleted

    def finish_scrub(self) -> bool | None:
        """The scrub of the SQLite file an earlier forget could not finish (another
        process held the file open), run now: whether it ran to the end; None when none
        was left to do (or on PostgreSQL). `profiles forget` of someone already gone
        calls it: "run forget again" is what the first one told the operator."""
        if self._pg or not self._scrub_pending():
            return None
        return self._scrub_file()

    def _scrub_pending(self) -> bool:
        st = self._settings
        with self._read() as conn:
            return conn.execute(select(st.c.key).where(st.c.key == SCRUB_PENDING)).first() \
                is not None

    def _scrub_file(self) -> bool:
        """`_scrub_sqlite`, noting in `settings` whether one is left to do."""
        done = self._scrub_sqlite()
        if done == self._scrub_pending():
            st = self._settings
            with self._write(stamped=True) as conn:  # no profile's state
                conn.execute(delete(st).where(st.c.key == SCRUB_PENDING))
                if not done:
                    conn.execute(insert(st).values(key=SCRUB_PENDING, value="1"))
        return done

    def _addresses(self, conn: Connection, ids: list[str]) -> set[str]:
        """Every address the person had, as suppressions keep them (lowercased): their
        e-mail and phone now, the recipients of their sends (an old address that bounced
        before they changed it), their identities' values (an e-mail identity of
        `--identify-by`) and every e-mail and phone their events set, handled or not (an
        address they have changed since, suppressed by hand)."""
        o, i, e, q = self._outbox, self._identities, self._events, self._inbox
        sent = conn.execute(select(o.c.to).where(o.c.profile_id.in_(ids))
                            .where(o.c.to.is_not(None)).distinct()).scalars()
        identities = conn.execute(select(i.c.value).where(i.c.profile_id.in_(ids))).scalars()
        given = addresses_in([
            *conn.execute(select(e.c.body).where(e.c.profile_id.in_(ids))).scalars(),
            *conn.execute(select(q.c.event).where(q.c.profile_id.in_(ids))).scalars()])
        return {str(v).strip().lower() for v in
                (*self._identifier_values(conn, ids), *sent, *named_ids(ids), *identities,
                 *given) if v}

    def _hide_suppressions(self, conn: Connection, addresses: set[str]) -> int:
        """The person's suppressed addresses kept as their hashes, their details dropped
        (a bounce's message, a complaint's report) and a free-text reason replaced by
        its kind (`forgotten_reason`): how many."""
        t = self._table(SUPPRESSIONS)
        named = sorted(addresses)
        rows = conn.execute(select(t).where(t.c.address.in_(named))).all()
        if rows:
            conn.execute(delete(t).where(t.c.address.in_(named)))
        for row in rows:  # as `suppress` adds one: a hash already there is kept
            conn.execute(self._insert(t).values(
                address=forgotten_address(row.address), reason=forgotten_reason(row.reason),
                source=row.source, at=row.at, details={})
                .on_conflict_do_nothing(index_elements=["address"]))
        return len(rows)

    def _scrub_others(self, conn: Connection, identifiers: set[str]) -> int:
        """The person's identifiers replaced in everyone else's rows (their own rows are
        gone by now): how many rows were rewritten. A full scan of each table of
        `OTHERS_COLUMNS` (a LIKE per identifier and column; SEARCH_CHUNK per query); on
        SQLite the rewrite runs under forget's `secure_delete`, so the old cells are
        zeroed, and the scrub that follows clears the WAL and the free pages."""
        scrub = Scrubber(identifiers)
        if not scrub:
            return 0
        i = self._identities
        others = [*conn.execute(select(i.c.value).where(func.lower(i.c.value).in_(
                      [v.lower() for v in scrub.identifiers]))).scalars(),
                  *self._their_addresses(conn, scrub),  # case aside, as the memory store
                  *waiting_ids(row.event for row in  # the waiting events that name them
                               self._naming(conn, self._inbox, ("event",), (), scrub))]
        scrub = Scrubber(identifiers - still_someone_elses(identifiers, others))
        rewritten: set[tuple[str, tuple[Any, ...]]] = set()
        for name, (docs, texts) in OTHERS_COLUMNS.items():
            tbl = self._table(name)
            keys = list(tbl.primary_key.columns)
            for row in self._naming(conn, tbl, docs, texts, scrub):
                changed: dict[str, Any] = {}
                for column in (*docs, *texts):
                    old = row._mapping[column]
                    new = (None if old is None else scrub.value(old) if column in docs
                           else _fit(tbl, column, scrub.text(old)))
                    if new != old:
                        changed[column] = new
                if changed:
                    key = tuple(row._mapping[k.name] for k in keys)
                    conn.execute(update(tbl).where(*(k == v for k, v in zip(keys, key,
                                                                               strict=True)))
                                 .values(**changed))
                    rewritten.add((name, key))
        return len(rewritten)

    def _naming(self, conn: Connection, tbl: Table, docs: tuple[str, ...],
                texts: tuple[str, ...], scrub: Scrubber) -> list[Any]:
        """The rows of `tbl` whose JSON `docs` or text `texts` hold one of the
        identifiers (as text, case aside: a superset of what `scrub` replaces; a plain
        identifier is looked for as a whole JSON string in the documents only), with
        their key."""
        keys = list(tbl.primary_key.columns)
        columns = (*docs, *texts)
        found: dict[tuple[Any, ...], Any] = {}
        conditions = [cast(tbl.c[c], Text).icontains(term, autoescape=True)
                      for c in columns
                      for term in scrub.search_terms(documents=c in docs)]
        for start in range(0, len(conditions), SEARCH_CHUNK):
            query = select(*keys, *(tbl.c[c] for c in columns)).where(
                or_(*conditions[start:start + SEARCH_CHUNK]))
            for row in conn.execute(query):
                found.setdefault(tuple(row._mapping[k.name] for k in keys), row)
        return list(found.values())

    def _their_addresses(self, conn: Connection, scrub: Scrubber) -> list[str]:
        """Other profiles' own e-mail and phone among the identifiers."""
        p = self._profiles
        return [str(row.traits[t]) for row in self._naming(conn, p, ("traits",), (), scrub)
                if isinstance(row.traits, Mapping)
                for t in IDENTIFIER_TRAITS if row.traits.get(t)]

    def _scrub_sqlite(self) -> bool:
        """Checkpoint and truncate the WAL, VACUUM, again: True when all of it ran."""
        raw = self._db.raw_connection()
        try:
            driver = raw.driver_connection
            assert driver is not None
            busy = _truncate_wal(driver)
            driver.execute("VACUUM")
            again = _truncate_wal(driver)
            driver.execute("PRAGMA secure_delete=OFF")
        except Exception as exc:  # busy or locked: say so; the rows are gone regardless
            log.warning("forget: could not scrub the SQLite file (%s); run forget again "
                        "when no other process has it open", type(exc).__name__)
            return False
        finally:
            raw.close()
        done = (busy is None or busy[0] == 0) and (again is None or again[0] == 0)
        if not done:
            log.warning("forget: another process holds the SQLite file open; its WAL could "
                        "not be truncated yet")
        return done

    def delete_events_before(self, when: datetime, limit: int) -> int:
        e = self._events
        with self._write(stamped=True) as conn:  # the event log is no profile's state
            ids = conn.execute(select(e.c.id).where(e.c.received_at < when)
                               .order_by(e.c.id).limit(limit)).scalars().all()
            if not ids:
                return 0
            return conn.execute(delete(e).where(e.c.id.in_(ids))).rowcount or 0


def _fit(tbl: Table, column: str, text: str) -> str:
    """`text` cut to its column's length (the marker can be longer than what it replaced)."""
    kind = tbl.c[column].type
    length = kind.length if isinstance(kind, String) else None
    return text[:length] if length else text


def _truncate_wal(driver: Any, attempts: int = 20) -> Any:
    """`PRAGMA wal_checkpoint(TRUNCATE)`, again while another checkpoint holds the WAL:
    the long-running processes' checkpoint thread (engine/store/sql/checkpoint.py) runs
    one every 0.2 s, and SQLite answers busy at once while it does. A busy answer that
    took long is a reader keeping the file open (SQLite's busy handler waited for it):
    not tried again."""
    result = None
    for _ in range(attempts):
        started = time.monotonic()
        result = driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if result is None or result[0] == 0 or time.monotonic() - started > 0.5:
            return result
        time.sleep(0.05)
    return result
