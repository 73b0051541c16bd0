"""`InMemoryStore`'s privacy part: a person's rows (export), erasing them (forget), and
the event retention, with the semantics of engine/store/sql/privacy.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.core.times import iso, parse_timestamp
from engine.ports import Engagement, OutboxRecord, Suppression
from engine.store.memory.queues import MemoryQueues
from engine.store.scrub import Scrubber, still_someone_elses
from engine.values import (
    IDENTIFIER_TRAITS,
    addresses_in,
    forgotten_address,
    forgotten_reason,
    named_ids,
    person_ids_from,
    waiting_ids,
)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return value


class MemoryPrivacy(MemoryQueues):
    # MemoryEngagement's, beside it in InMemoryStore
    engagement_rows: list[Engagement]
    suppression_rows: dict[str, Suppression]

    def person_ids(self, profile_id: str) -> list[str]:
        """The profile's id and the ids it had, as SqlStore's `_person_ids`."""
        return person_ids_from(profile_id, self._identities_of.get(profile_id, ()))

    def _event_is_theirs(self, key: tuple[str, str], ids: set[str]) -> bool:
        return self.event_profiles.get(key) in ids

    def export_person(self, profile_id: str) -> dict[str, list[dict[str, Any]]]:
        ids = set(self.person_ids(profile_id))

        def theirs(pid: str) -> bool:
            return pid in ids
        return {
            "profiles": [_plain(p) for pid, p in self.profiles.items() if theirs(pid)],
            "identities": [{"kind": k, "value": v, "profile_id": pid}
                           for (k, v), pid in self.identities.items() if theirs(pid)],
            "events": [dict(e) for k, e in self.events.items() if self._event_is_theirs(k, ids)],
            "inbox": [_plain(r) for r in self.inbox.values() if theirs(r.profile_id)],
            "enrollments": [_plain(e) for e in self.enrollment_rows.values()
                            if theirs(e.profile_id)],
            "journey_entries": [{"profile_id": pid, "journey": j, **_plain(s)}
                                for pid, stats in self.stats.items() if theirs(pid)
                                for j, s in stats.items()],
            "timers": [_plain(t) for t in self.timers.values() if theirs(t.profile_id)],
            "segment_members": [{"profile_id": pid, "journey": j}
                                for pid, js in self.segments.items() if theirs(pid) for j in js],
            "outbox": [_plain(r) for r in self.outbox.values() if theirs(r.entry.profile_id)],
            "decisions": [_plain(d) for d in self.decisions if theirs(d.profile_id)],
            "exits": [_plain(x) for x in self.exits if theirs(x.profile_id)],
            "goals": [_plain(g) for g in self.goals if theirs(g.profile_id)],
            "failures": [_plain(f) for f in self.parked.values() if theirs(f.profile_id)],
            "engagements": [_plain(e) for e in self.engagement_rows if theirs(e.profile_id)],
            "suppressions": [_plain(self.suppression_rows[a]) for a in
                             sorted(self._addresses(ids) & self.suppression_rows.keys())],
        }

    def _addresses(self, ids: set[str]) -> set[str]:
        """Every address the person had, lowercased as suppressions keep them: their
        e-mail and phone now, their sends' recipients, their identities' values, and
        every e-mail and phone their events set, handled or not (as SqlStore's)."""
        now = [p.traits[t] for pid, p in self.profiles.items() if pid in ids
               for t in IDENTIFIER_TRAITS if p.traits.get(t)]
        sent = [r.entry.to for r in self.outbox.values() if r.entry.profile_id in ids]
        identities = [value for (_, value), pid in self.identities.items() if pid in ids]
        given = addresses_in([*(e for k, e in self.events.items()
                                if self._event_is_theirs(k, ids)),
                              *(r.event for r in self.inbox.values() if r.profile_id in ids)])
        return {str(v).strip().lower() for v in
                (*now, *sent, *named_ids(ids), *identities, *given) if v}

    def forget_person(self, profile_id: str) -> dict[str, int]:
        ids = set(self.person_ids(profile_id))
        named = {str(p.traits[t]) for pid, p in self.profiles.items() if pid in ids
                 for t in IDENTIFIER_TRAITS if p.traits.get(t)}
        counts = {name: len(rows) for name, rows in self.export_person(profile_id).items()}
        addresses = self._addresses(ids)  # before their sends are deleted
        # every id that named them (a userId an alias gave them, a device's anonymousId):
        # other people's rows can name them by it (a referrer_id)
        their = {value for (_, value), pid in self.identities.items() if pid in ids}
        # their identifiers only (another profile's of the same text as their e-mail is
        # that person's: SqlStore's forget_person)
        gone_identities = [key for key, pid in self.identities.items() if pid in ids]
        counts["identities"] = len(gone_identities)
        for ident in gone_identities:
            owner = self.identities.pop(ident)
            self._identities_of.get(owner, set()).discard(ident)
        for pid in ids:
            self.profiles.pop(pid, None)
            self._identities_of.pop(pid, None)
            self.by_profile.pop(pid, None)
            self.active_ids.pop(pid, None)
            self.stats.pop(pid, None)
            self.segments.pop(pid, None)
        for key in [k for k, e in self.enrollment_rows.items() if e.profile_id in ids]:
            del self.enrollment_rows[key]
        for key in [k for k, t in self.timers.items() if t.profile_id in ids]:
            del self.timers[key]  # the heap skips keys no longer here
        for key in [k for k, r in self.outbox.items() if r.entry.profile_id in ids]:
            del self.outbox[key]
            self._unsent.pop(key, None)
        for sent in [k for k in self._sent_times if k[0] in ids]:
            del self._sent_times[sent]
        for message in [k for k in self.events if self._event_is_theirs(k, ids)]:
            del self.events[message]
            self.event_profiles.pop(message, None)
        for row in [k for k, r in self.inbox.items() if r.profile_id in ids]:
            del self.inbox[row]
        for parked in [k for k, f in self.parked.items() if f.profile_id in ids]:
            del self.parked[parked]
        self.decisions[:] = [d for d in self.decisions if d.profile_id not in ids]
        self.exits[:] = [x for x in self.exits if x.profile_id not in ids]
        self.goals[:] = [g for g in self.goals if g.profile_id not in ids]
        self.engagement_rows[:] = [e for e in self.engagement_rows if e.profile_id not in ids]
        for address in addresses:  # kept as its hash only
            kept = self.suppression_rows.pop(address, None)
            if kept is not None:
                hashed = forgotten_address(address)
                self.suppression_rows.setdefault(hashed, Suppression(
                    hashed, forgotten_reason(kept.reason), kept.at, kept.source, {}))
        counts["others_scrubbed"] = self._scrub_others({*named_ids(ids), *named, *addresses,
                                                        *their})
        return counts

    def _scrub_others(self, identifiers: set[str]) -> int:
        """The person's identifiers replaced in everyone else's rows, as SqlStore does
        (engine/store/scrub.py, the same tables and fields): how many rows changed."""
        others = [*(v for _, v in self.identities),
                  *waiting_ids(r.event for r in self.inbox.values()),
                  *(p.traits[t] for p in self.profiles.values() for t in IDENTIFIER_TRAITS
                    if p.traits.get(t))]
        scrub = Scrubber(identifiers - still_someone_elses(identifiers, others))
        if not scrub:
            return 0
        rows = 0

        def redone(row: Any, *names: str) -> Any:
            nonlocal rows
            new = {n: scrub.value(getattr(row, n)) for n in names}
            if all(new[n] == getattr(row, n) for n in names):
                return row
            rows += 1
            return dataclasses.replace(row, **new)

        def resent(record: OutboxRecord) -> OutboxRecord:
            nonlocal rows
            entry = record.entry
            rendered = scrub.value(_plain(entry.rendered))
            to = scrub.value(entry.to)  # someone else's send to the person's address
            if rendered == _plain(entry.rendered) and to == entry.to:
                return redone(record, "last_error")  # type: ignore[no-any-return]
            rows += 1
            return dataclasses.replace(
                record, last_error=scrub.value(record.last_error),
                entry=dataclasses.replace(entry, to=to, rendered=dataclasses.replace(
                    entry.rendered, **rendered)))

        for pid, profile in self.profiles.items():
            self.profiles[pid] = redone(profile, "traits", "computed")
        for message, event in self.events.items():
            if (body := scrub.value(event)) != event:
                self.events[message] = body
                rows += 1
        for number, item in self.inbox.items():
            self.inbox[number] = redone(item, "event", "last_error")
        for eid, enrollment in self.enrollment_rows.items():
            self.enrollment_rows[eid] = redone(enrollment, "data", "visits", "variants",
                                               "entry_event", "trigger_event")
        for key, record in self.outbox.items():
            self.outbox[key] = resent(record)
        self.decisions[:] = [redone(d, "details", "reason") for d in self.decisions]
        for number, failure in self.parked.items():
            self.parked[number] = redone(failure, "payload", "error", "stack")
        self.engagement_rows[:] = [redone(e, "url", "reason") for e in self.engagement_rows]
        for address, row in self.suppression_rows.items():
            self.suppression_rows[address] = redone(row, "details")
        return rows

    def delete_events_before(self, when: datetime, limit: int) -> int:
        old = []
        for key, event in self.events.items():
            received = parse_timestamp(event.get("receivedAt") or event.get("timestamp"))
            if received is not None and received < when:
                old.append(key)
                if len(old) >= limit:
                    break
        for key in old:
            del self.events[key]
            self.event_profiles.pop(key, None)
        return len(old)
