"""How many inbox events or due timers a worker's next batch claims: adaptive, so a
lone event is handled at once and batches grow under load (issue 11), within the
worker's `budget` of handling time per transaction."""

from __future__ import annotations

MIN_BATCH = 32  # a batch handles at least this many items before its budget cuts it
# The smallest timer claim. A timer costs more than an event (a cron firing computes the
# profile's traits, enters, renders and arms the next firing: ~1 ms, several under
# load), and during a storm of due timers each claim is a transaction that holds
# SQLite's write lock, which an API request waits for: 32 timers held it 180 ms.
MIN_TIMER_BATCH = 4
# Seconds a chunk of timers fires inside SQLite's write transaction while the API is
# busy (`Store.writers_lately`), instead of the worker's budget (`serve`'s 20 ms): a
# request that comes meanwhile cuts the chunk but waits for the writes of what it fired.
# With this and the dispatcher's BUSY_API_CLAIM, an API request's p99 during a storm of
# 100,000 due timers went from 52 ms to 38 (7 ms before the storm), its sends done in
# 88 s instead of 77 (bench/storm_bench.py, docs/benchmarks.md).
BUSY_API_BUDGET = 0.005


class ClaimSizes:
    """The claim size of each kind of work ("inbox", "timers")."""

    def __init__(self) -> None:
        self._limit = {"inbox": MIN_BATCH, "timers": 64}

    def __getitem__(self, kind: str) -> int:
        return self._limit[kind]

    def adapt(self, kind: str, done: int, took: float, claimed: int, *, budget: float,
              most: int, full: bool = False) -> None:
        """Grow the claim while batches finish within the budget, shrink it when not.
        `full`: the claim found as many rows as it asked for, though fewer were kept
        (PostgreSQL lets go of the profiles another worker holds): still a full claim,
        or two workers' batches never grow past the first limit (each kept 43-58 of 64,
        and made six times as many transactions as one worker alone). Not when it kept
        less than half: the rows it let go stay locked until it commits, out of the
        other worker's reach, and a larger claim would hold more of them."""
        limit = self._limit[kind]
        floor = MIN_TIMER_BATCH if kind == "timers" else MIN_BATCH
        if took > 2 * budget:
            limit = max(floor, int(limit * 0.7))
        elif done < claimed:
            # Cut short (the budget, a waiting request, busy profiles): claim about what
            # a batch gets through, or each claim takes and puts back hundreds of rows
            # for the few it handles (a storm of 100,000 timers slowed five times).
            limit = max(floor, min(limit, 2 * done))
        elif claimed >= limit or (full and 2 * claimed >= limit):
            limit = min(most, limit * 2)
        self._limit[kind] = limit


def took_all(done: int, claimed: int, short: bool) -> bool:
    """Whether a batch inside the write transaction took everything due and did it all:
    its claim came back `short` of its limit (counted before PostgreSQL let go of
    profiles another transaction holds: those are `next_inbox_at`'s) and nothing was
    left undone (`done` of `claimed`). Its loop then stops instead of claiming again only
    to find nothing (what arrives later wakes it: in this process, or by NOTIFY). A
    batch handled in a snapshot (SQLite's `journeyman worker`) looks again: that look is
    a read, and another process's events may come with no wake-up (wake_sockets.py), and
    a lane worker's look at the lanes nobody serves comes after its own lane."""
    return short and done == claimed
