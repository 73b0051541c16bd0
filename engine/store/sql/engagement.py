"""`SqlStore`'s engagement records (clicks, opens, bounces, ...) and the suppression
list (docs/engagement.md)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import delete, func, insert, select

from engine.ports import Engagement, OutboxRecord, Suppression
from engine.store.sql.db import INSERT_CHUNK, SqlBase, _chunks
from engine.store.sql.rows import outbox_entry
from engine.store.sql.tables import table
from engine.values import forgotten_address


class EngagementQueries(SqlBase):
    def sent_message(self, key: str) -> OutboxRecord | None:
        o = self._outbox
        with self._read() as conn:
            r = conn.execute(select(o).where(o.c.send_key == key)).first()
        if r is None:
            return None
        return OutboxRecord(outbox_entry(r._mapping), r.status, r.attempts, r.next_attempt_at,
                            r.last_error, r.sent_at)

    def record_engagement(self, engagement: Engagement, limit: int = 0,
                          since: datetime | None = None) -> bool:
        """Record it; with `limit`, only while fewer than `limit` rows of the same kind,
        message, link position and `human` were recorded at or after `since` (False:
        not recorded). The count runs under a lock of the message's outbox row
        (PostgreSQL; SQLite has one writer at a time), so concurrent clicks of one link
        cannot each see room for one more: at most `limit`, exactly."""
        e = engagement
        t = table("engagements")
        with self._write() as conn:
            if limit > 0:
                o = self._outbox
                conn.execute(select(o.c.send_key).where(o.c.send_key == e.message_key)
                             .with_for_update())
                alike = select(func.count()).select_from(t).where(
                    t.c.message_key == e.message_key, t.c.kind == e.kind,
                    t.c.human == e.human, t.c.position.is_(None) if e.position is None
                    else t.c.position == e.position)
                if since is not None:
                    alike = alike.where(t.c.at >= since)
                if conn.execute(alike).scalar_one() >= limit:
                    return False
            conn.execute(insert(t).values(
                kind=e.kind, message_key=e.message_key, profile_id=e.profile_id,
                journey=e.journey, step=e.step, at=e.at, url=e.url, position=e.position,
                human=e.human, reason=e.reason))
        return True

    def engagements(self, journey: str | None = None) -> list[Engagement]:
        t = table("engagements")
        query = select(t).order_by(t.c.id)
        if journey is not None:
            query = query.where(t.c.journey == journey)
        with self._read() as conn:
            return [Engagement(r.kind, r.message_key, r.profile_id, r.journey, r.step, r.at,
                               r.url, r.position, bool(r.human), r.reason)
                    for r in conn.execute(query)]

    def suppress(self, suppression: Suppression) -> bool:
        t = table("suppressions")
        address = suppression.address.strip().lower()
        with self._write() as conn:
            if conn.execute(select(t.c.address).where(t.c.address == address)).first():
                return False
            conn.execute(self._insert(t).values(
                address=address, reason=suppression.reason, source=suppression.source,
                at=suppression.at, details=dict(suppression.details))
                .on_conflict_do_nothing(index_elements=["address"]))
        return True

    def unsuppress(self, address: str) -> bool:
        t = table("suppressions")
        forms = [address.strip().lower(), forgotten_address(address)]
        with self._write() as conn:
            gone = conn.execute(delete(t).where(t.c.address.in_(forms)))
        return bool(gone.rowcount)

    def suppressed(self, addresses: Collection[str]) -> dict[str, Suppression]:
        t = table("suppressions")
        wanted: dict[str, list[str]] = {}
        for address in addresses:  # as written, and as kept once its person was forgotten
            wanted.setdefault(address.strip().lower(), []).append(address)
            wanted.setdefault(forgotten_address(address), []).append(address)
        found: dict[str, Suppression] = {}
        if not wanted:
            return found
        with self._read() as conn:
            for part in _chunks(list(wanted), INSERT_CHUNK):
                for r in conn.execute(select(t).where(t.c.address.in_(part))):
                    for given in wanted[r.address]:
                        found[given] = Suppression(r.address, r.reason, r.at, r.source,
                                                   r.details or {})
        return found

    def suppressions(self) -> list[Suppression]:
        t = table("suppressions")
        with self._read() as conn:
            return [Suppression(r.address, r.reason, r.at, r.source, r.details or {})
                    for r in conn.execute(select(t).order_by(t.c.address))]
