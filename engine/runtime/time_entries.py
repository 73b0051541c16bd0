"""Deploying time-driven entries over the profiles that exist already.

A schedule entry (cron) keeps one timer per profile at its next firing, in the profile's
time zone; a segment entry whose condition changes with time alone (days since the last
order, birthday_today) keeps one timer per profile at the next instant the condition may
change (engine/runtime/runner.py, engine/core/time_conditions.py; ADR 0009). New
profiles get theirs when they are created, and on every event. When a journey with such
an entry is deployed, or its schedule, condition or default time zone changes, every
existing profile gets its timer here, once: the journey's fingerprint is kept in the
store's settings, so a restart with the same journeys arms nothing. Segment checks are
armed due at once: the timer loop evaluates them in batches (entering those already in
the segment) and re-arms each at its next change.
"""

from __future__ import annotations

import logging
from datetime import datetime

from engine.ports import Store, WriteRun
from engine.runtime.runner import Runner

log = logging.getLogger("journeyman.time_entries")

CHUNK = 1000  # profiles per transaction
SETTING = "time_entries:{}"
ARMING_LOCK = "journeyman:time-entries-arming"  # a lock name in the profile-lock space


def arm_time_entries(runner: Runner, store: Store, now: datetime, *,
                     chunk: int = CHUNK) -> int:
    """Arm the time-driven entries of newly deployed or changed journeys for every
    existing profile; returns how many timers were armed."""
    # One transaction, under a lock: workers started together on one PostgreSQL database
    # would otherwise each arm the same timers and write the same settings (and all but
    # one crash on the duplicate). Whoever does not get the lock leaves it to the one
    # that did.
    with store.transaction():
        if not store.try_lock_profiles([ARMING_LOCK]):
            log.info("time-driven entries: another process is arming them")
            return 0
        pending = {jid: fingerprint for jid, fingerprint in runner.time_entries().items()
                   if store.setting(SETTING.format(jid)) != fingerprint}
        if not pending:
            return 0
        profile_ids = list(store.profile_ids())
        armed = 0
        for start in range(0, len(profile_ids), chunk):
            profiles = store.load_profiles(profile_ids[start:start + chunk])
            run = WriteRun()
            for jid in pending:
                for profile in profiles.values():
                    timer = runner.entry_timer(jid, profile, now)
                    if timer is not None:
                        run.cancel_timer(timer.key)  # a changed journey: re-armed
                        run.add_timer(timer)
            store.write_changes([run])
            armed += len(run.timers_added)
        for jid, fingerprint in pending.items():
            store.put_setting(SETTING.format(jid), fingerprint)
    log.info("time-driven entries of %s armed for %d profiles (%d timers)",
             ", ".join(sorted(pending)), len(profile_ids), armed)
    return armed


__all__ = ["arm_time_entries"]
