"""Wake-ups across processes on PostgreSQL: LISTEN/NOTIFY.

Writers notify in the transaction that makes the work (PostgreSQL delivers the
notification at commit, and folds duplicates of one transaction into one): accepted
events on `journeyman_inbox`, written timers on `journeyman_timers` (with the earliest
due time), queued sends on `journeyman_outbox`. `listen_for_wakes()` runs a thread with a
connection of its own that calls the loops' wake-ups: to the `--db` URL's server, or to
its `listen_host`/`listen_port`/`listen_dbname` (pg_engine.py: behind PgBouncer in
transaction mode, LISTEN must go straight to PostgreSQL). SQLite has no such thing: there
the same notes go as datagrams after the commit (engine/store/sql/wake_sockets.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import lru_cache

import psycopg
from sqlalchemy import Connection, TextClause, text

from engine.core.times import parse_timestamp
from engine.store.sql.pg_engine import libpq_conninfo, pg_settings, tcp_settings

log = logging.getLogger("journeyman.notify")

PREFIX = "journeyman_"
Wake = Callable[..., None]


def notify(conn: Connection, topic: str, payload: str = "") -> None:
    """Queue a notification in `conn`'s transaction (PostgreSQL only)."""
    notify_all(conn, [(topic, payload)])


def notify_all(conn: Connection, notes: list[tuple[str, str]]) -> None:
    """Queue notifications (topic, payload) in `conn`'s transaction in one round trip (a
    worker's batch wakes the outbox and the timers)."""
    if notes:
        conn.execute(_notify_statement(len(notes)), {
            f"{what}{i}": value for i, (topic, payload) in enumerate(notes)
            for what, value in (("c", PREFIX + topic), ("p", payload))})


@lru_cache(maxsize=8)
def _notify_statement(n: int) -> TextClause:
    return text("SELECT " + ", ".join(f"pg_notify(:c{i}, :p{i})" for i in range(n)))


def listen_for_wakes(url: str, wakes: Mapping[str, Wake]) -> Callable[[], None]:
    """Call `wakes[topic]` on each notification (the timers' with the due time); returns
    a function that stops listening."""
    stop = threading.Event()
    # straight to PostgreSQL when the pool goes through a transaction-mode pooler
    listen = pg_settings(url).listen
    dsn = libpq_conninfo(listen)

    def run() -> None:
        failed = 0  # tries in a row: the log says so at the 1st, 2nd, 4th, 8th..., as the
        # loops do (engine/runtime/loops.py), not every second of an outage
        while not stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, **tcp_settings(listen)) as conn:
                    for topic in wakes:
                        conn.execute(f"LISTEN {PREFIX}{topic}")
                    if failed:
                        log.info("listening for wake-ups again after %d failed tries in a "
                                 "row", failed)
                        failed = 0
                    while not stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            deliver(wakes, note.channel.removeprefix(PREFIX), note.payload)
            except psycopg.Error as exc:
                failed += 1
                if failed & (failed - 1) == 0:
                    log.warning("listening for wake-ups failed (%d in a row), again in a "
                                "second: %s", failed, exc)
                stop.wait(1.0)

    thread = threading.Thread(target=run, name="journeyman-listen", daemon=True)
    thread.start()

    def stop_listening() -> None:
        stop.set()
        thread.join(5)

    return stop_listening


def payload_time(payload: str) -> datetime | None:
    """A note's time; None if it has none, or none UTC can hold (the year 1 with a
    positive offset overflowed: in a datagram any local program can send, it ended the
    SQLite listener's thread, and with it the heartbeat, wake_sockets.py)."""
    try:
        return parse_timestamp(payload) if payload else None
    except (OverflowError, ValueError):
        return None


def deliver(wakes: Mapping[str, Wake], topic: str, payload: str) -> None:
    wake = wakes.get(topic)
    if wake is None:
        return
    due = payload_time(payload)
    if due is not None:
        wake(due)
    else:
        wake()
