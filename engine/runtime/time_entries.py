"""Deploying time-driven entries over the profiles that exist already.

A schedule entry (cron) keeps one timer per profile at its next firing, in the profile's
time zone; a segment entry whose condition changes with time alone (days since the last
order, birthday_today) keeps one timer per profile at the next instant the condition may
change (engine/runtime/runner.py, engine/core/time_conditions.py; ADR 0009). New
profiles get theirs when they are created, and on events that change what the condition
reads. When a journey with such an entry is deployed, its schedule, condition or default
time zone changes, or it is resumed after a pause, every existing profile gets its timer
here, once: the journey's fingerprint is kept in the store's settings, so a restart with
the same journeys arms nothing. Segment checks are armed due at once: the timer loop
evaluates them in batches (entering those already in the segment) and re-arms each at
its next change.

Arming runs in one short transaction per chunk of profiles (a long one would hold
SQLite's write lock, and on PostgreSQL the locks of every timer row, for the whole
arming). Processes started together must not all arm the same timers, and a process
killed halfway must not leave the rest unarmed, so the arming is leased:

- the lease is a settings row (`time_entries:arming`): who arms, until when (wall time,
  renewed by every chunk), which fingerprints, and the last profile id done (profiles
  are armed in id order);
- it is taken and renewed inside a transaction that holds the arming lock (a
  transaction-level advisory lock on PostgreSQL; SQLite has one writer anyway), so two
  processes never both take it;
- a process that finds a live lease of another leaves the arming to it (and the
  service asks again every few seconds while fingerprints differ); a lease that expired,
  or whose process on this host is gone, is taken over and the arming resumes after its
  last profile. The chunks' writes cancel and re-add each timer by its key, so a chunk
  done twice leaves the same timers.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from engine.ports import Store, WriteRun
from engine.runtime.runner import Runner

log = logging.getLogger("journeyman.time_entries")

CHUNK = 500  # profiles per transaction
SETTING = "time_entries:{}"
LEASE = "time_entries:arming"  # the settings row of the arming lease
LEASE_SECONDS = 30.0  # renewed by every chunk; a dead process's lease expires after it
ARMING_LOCK = "journeyman:time-entries-arming"  # a lock name in the profile-lock space
_LOCK_TRIES = 200  # waits of 50 ms for the arming lock held by another's short check
_BUSY_TRIES = 40  # waits of 50 ms for profiles locked by events being handled


def pending_time_entries(runner: Runner, store: Store) -> dict[str, str]:
    """The journeys whose time-driven entries are not armed for their fingerprint."""
    return {jid: fingerprint for jid, fingerprint in runner.time_entries().items()
            if store.setting(SETTING.format(jid)) != fingerprint}


def arm_time_entries(runner: Runner, store: Store, now: datetime, *,
                     chunk: int = CHUNK) -> int:
    """Arm the time-driven entries of newly deployed, changed or resumed journeys for
    every existing profile; returns how many timers were armed (0 when another process
    holds the arming, or there is nothing to arm)."""
    me = _owner()
    lease = _take_lease(runner, store, me)
    if lease is None:
        return 0
    pending: dict[str, str] = lease["fingerprints"]
    after: str | None = lease.get("after")
    armed = 0
    try:
        profile_ids = sorted(store.profile_ids())
        if after is not None:
            log.info("time-driven entries: resuming the arming after profile %r", after)
            profile_ids = [pid for pid in profile_ids if pid > after]
        for start in range(0, len(profile_ids), chunk):
            ids = profile_ids[start:start + chunk]
            todo = set(ids)
            for attempt in range(_BUSY_TRIES + 1):
                with _locked(store):
                    if not _still_mine(store, me):
                        log.warning("time-driven entries: the arming was taken over")
                        return armed
                    # Each profile is read under its lock (an event being handled for it
                    # elsewhere finishes first, or its timer would be armed from the
                    # profile before that event); one held for long is armed anyway.
                    mine = (store.try_lock_profiles(todo) if attempt < _BUSY_TRIES
                            else set(todo))
                    armed += _arm_chunk(runner, store, pending, sorted(mine), now)
                    todo -= mine
                    if not todo:  # the chunk is done: an arming resumed starts after it
                        _put_lease(store, {**lease, "after": ids[-1],
                                           "until": _now(runner) + LEASE_SECONDS})
                        break
                time.sleep(0.05)
        with _locked(store):
            if not _still_mine(store, me):
                return armed
            for jid, fingerprint in pending.items():
                store.put_setting(SETTING.format(jid), fingerprint)
            store.put_setting(LEASE, None)
    except BaseException:
        _let_go(store, me)  # keeps the progress: the next arming resumes after it
        raise
    log.info("time-driven entries of %s armed for %d profiles (%d timers)",
             ", ".join(sorted(pending)), len(profile_ids), armed)
    return armed


def _arm_chunk(runner: Runner, store: Store, pending: Mapping[str, str], ids: list[str],
               now: datetime) -> int:
    """Arm these profiles' timers for the pending journeys (in the caller's
    transaction); returns how many."""
    if not ids:
        return 0
    profiles = store.load_profiles(ids)
    run = WriteRun()
    for jid in pending:
        for pid in ids:
            profile = profiles.get(pid)
            timer = runner.entry_timer(jid, profile, now) if profile is not None else None
            if timer is not None:
                run.cancel_timer(timer.key)  # a changed journey: re-armed
                run.add_timer(timer)
    store.write_changes([run])
    return len(run.timers_added)


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "id": secrets.token_hex(8)}


def _take_lease(runner: Runner, store: Store, me: Mapping[str, Any]) -> dict[str, Any] | None:
    """The lease, taken (or taken over) for what is pending; None if another process
    holds it or nothing is pending."""
    with _locked(store, wait=False) as got:
        if not got:
            log.info("time-driven entries: another process is arming them")
            return None
        current = _read_lease(store)
        if current is not None and _alive(current, _now(runner)):
            log.info("time-driven entries: %s:%s is arming them", current.get("host"),
                     current.get("pid"))
            return None
        pending = pending_time_entries(runner, store)
        if not pending:
            if current is not None:
                store.put_setting(LEASE, None)
            return None
        resume = (current is not None and current.get("fingerprints") == pending
                  and current.get("after") is not None)
        lease = {"owner": dict(me), "fingerprints": pending,
                 "after": current["after"] if resume and current else None,
                 "until": _now(runner) + LEASE_SECONDS}
        _put_lease(store, lease)
        return lease


def _now(runner: Runner) -> float:
    """Lease times: the runtime's clock, in seconds."""
    return runner.clock.now().timestamp()


def _alive(lease: Mapping[str, Any], now: float) -> bool:
    """A lease still held: not expired, and not of a process on this host that is gone."""
    if float(lease.get("until") or 0) <= now:
        return False
    owner = lease.get("owner") or {}
    if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
        try:
            os.kill(owner["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


def _still_mine(store: Store, me: Mapping[str, Any]) -> bool:
    current = _read_lease(store)
    return current is not None and current.get("owner", {}).get("id") == me["id"]


def _let_go(store: Store, me: Mapping[str, Any]) -> None:
    """Expire our lease at once, keeping its progress (after an error)."""
    try:
        with _locked(store):
            current = _read_lease(store)
            if current is not None and current.get("owner", {}).get("id") == me["id"]:
                _put_lease(store, {**current, "until": 0})
    except Exception:  # the error being raised matters more; the lease expires anyway
        log.exception("time-driven entries: could not release the arming lease")


def _read_lease(store: Store) -> dict[str, Any] | None:
    raw = store.setting(LEASE)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _put_lease(store: Store, lease: Mapping[str, Any]) -> None:
    store.put_setting(LEASE, json.dumps(lease, sort_keys=True))


@contextmanager
def _locked(store: Store, *, wait: bool = True) -> Iterator[bool]:
    """A transaction holding the arming lock. Others hold it only for a short check or
    one chunk, so it is waited for; with `wait=False`, yields False (and does nothing)
    when another transaction holds it."""
    for _ in range(_LOCK_TRIES if wait else 1):
        with store.transaction():
            if store.try_lock_profiles([ARMING_LOCK]):
                yield True
                return
            if not wait:
                yield False
                return
        time.sleep(0.05)
    raise TimeoutError("time-driven entries: the arming lock stayed busy")


__all__ = ["arm_time_entries", "pending_time_entries"]
