"""The store's PostgreSQL engine (ADR 0011): how its pool hands out connections and
when psycopg prepares statements, set for a process whose few threads (the event, timer
and outbox loops, the API's requests) run the same statements thousands of times.

- **Last in, first out.** SQLAlchemy's pool hands out its connections in turn (first
  in, first out), so a process's transactions were spread over all of them, and each
  connection parsed and planned every statement again (psycopg prepares a statement on
  a connection only after it ran there a few times). Taking the connection returned
  last keeps the work on the fewest connections: the others stay idle.
- **Prepared at the second run** (`prepare_threshold=1`; psycopg's default is the
  sixth). Two workers and an API over 3,000 events end to end: 1,738 statements parsed
  and planned anew, 533 with both settings (`log_min_duration_statement = 0`). A
  statement run once (a migration's) is never prepared, nor is a text of several
  commands (psycopg prepares only what returned one result). A prepared statement
  whose table a migration altered fails once ("cached plan must not change result
  type"): `SqlStore.is_transient` says retry, and psycopg prepares it again.
- **Pinged only when idle.** SQLAlchemy's `pool_pre_ping` sends a round trip (`;`)
  each time a connection leaves the pool: 825 of the 837 transactions in that run. A
  connection used a moment ago is as alive as a ping would show; one idle for
  `PING_AFTER_IDLE_S` or more is pinged as before, so a database restarted while a
  process was quiet costs it nothing. What is given up: a connection whose server went
  away within its last second idle fails its next statement instead of being replaced
  before it. SQLAlchemy then invalidates the pool (every connection older than the
  failure is replaced at its next checkout), and the failure is the one a statement in
  flight at that moment gets anyway: the worker retries it as transient
  (`SqlStore.is_transient`), the dispatcher writes what it delivered again when
  nothing committed (engine/runtime/outcomes.py: after a failed COMMIT it asks), an
  API request answers 503 and the client sends it again (Segment's libraries retry
  5xx; engine/api/unavailable.py). A conversation found out of step (psycopg's own
  InternalError, through PgBouncer while backends were terminated) is handled as a
  lost connection (`_out_of_step`).

**Behind PgBouncer in transaction mode** (docs/deploy.md): journeyman reads settings of
its own from the `--db` URL's query and takes them out before the URL reaches libpq:
`prepare_threshold=none` (psycopg's setting: never prepare; a statement prepared on one
server connection is missing on the next one the pooler hands out, before PgBouncer
1.21), and `listen_host`, `listen_port`, `listen_dbname` (where the LISTEN connection
goes instead: straight to PostgreSQL, since LISTEN is session state a transaction-mode
pooler drops; notify.py). Every other query parameter is libpq's, as before.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DisconnectionError

from engine import jsonfast
from engine.store.errors import StoreError

PING_AFTER_IDLE_S = 1.0
PREPARE_THRESHOLD = 1
# libpq's TCP settings, each unless the URL sets its own (and none when a service file,
# `?service=` or PGSERVICE, may): with the last connection back handed out first, the
# others sit idle for hours, and a connection whose peer vanished without a reset (a NAT
# or firewall that forgot it) is found by keepalives in ~1.5 minutes once idle, and by
# `tcp_user_timeout` within a minute while data waits for an answer, instead of the
# kernel's ~15 minutes of retransmissions; and a connect to a server that does not
# answer at all gives up after `connect_timeout` seconds (libpq waits forever without
# it: a /readyz look or a worker's start hung on a blackholed address).
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 60, "keepalives_interval": 10,
              "keepalives_count": 3, "tcp_user_timeout": 60_000, "connect_timeout": 10}
_IDLE_SINCE = "jm_idle_since"
# journeyman's own settings in a PostgreSQL URL's query (PgSettings), not libpq's
OWN_PARAMETERS = ("prepare_threshold", "listen_host", "listen_port", "listen_dbname")
_WHOLE = re.compile(r"[0-9]+")  # ASCII digits: str.isdigit() takes other scripts' too


@dataclass(frozen=True)
class PgSettings:
    """A `--db` PostgreSQL URL read: the URL for libpq (journeyman's own parameters
    taken out), psycopg's `prepare_threshold` (None: never prepare), and the URL the
    LISTEN connection uses (the same unless `listen_*` say otherwise)."""

    url: URL
    prepare_threshold: int | None
    listen: URL


def pg_settings(url: str | URL) -> PgSettings:
    """Read journeyman's own parameters out of a PostgreSQL URL (OWN_PARAMETERS); a bad
    value is a StoreError naming it."""
    parsed = make_url(url)
    own = {k: _last(v) for k, v in parsed.query.items() if k in OWN_PARAMETERS}
    plain = parsed.difference_update_query(OWN_PARAMETERS)
    threshold: int | None = PREPARE_THRESHOLD
    if "prepare_threshold" in own:
        threshold = _prepare_threshold(own["prepare_threshold"])
    listen = plain
    # libpq takes `host`, `hostaddr`, `port` and `dbname` from the query over the URL's
    # own parts (a pooler on a unix socket: `@/jm?host=/run/pgbouncer&port=6432`), so
    # each listen_* replaces both, or LISTEN would still go through the pooler.
    if "listen_host" in own:
        listen = listen.set(host=own["listen_host"]).difference_update_query(
            ("host", "hostaddr"))
    if "listen_port" in own:
        port = own["listen_port"]
        if not _WHOLE.fullmatch(port) or not 0 < int(port) < 65536:
            raise StoreError(f"--db: listen_port must be a port number, not {port!r}")
        listen = listen.set(port=int(port)).difference_update_query(("port",))
    if "listen_dbname" in own:
        listen = listen.set(database=own["listen_dbname"]).difference_update_query(
            ("dbname",))
    return PgSettings(plain, threshold, listen)


def libpq_conninfo(url: URL) -> str:
    """libpq's connection string for `url` (a psycopg one): from its parts, not rendered
    back into a URL, which libpq would misread for a host that is a unix-socket folder
    (`/var/run/postgresql` became the database name) or an IPv6 address."""
    params: dict[str, object] = dict(url.translate_connect_args(
        database="dbname", username="user"))
    params.update({k: _last(v) for k, v in url.query.items()})
    return make_conninfo(**{k: str(v) for k, v in params.items()})


def _last(value: str | tuple[str, ...]) -> str:
    return value[-1] if isinstance(value, tuple) else value


def _prepare_threshold(value: str) -> int | None:
    if value.lower() == "none":
        return None
    if not _WHOLE.fullmatch(value):
        raise StoreError("--db: prepare_threshold must be 'none' (never prepare, for "
                         f"PgBouncer in transaction mode) or a whole number, not {value!r}")
    return int(value)


def postgres_engine(url: str, *, echo: bool = False, idle_s: float = PING_AFTER_IDLE_S,
                    clock: Callable[[], float] = time.monotonic) -> Engine:
    """The store's PostgreSQL engine (hide_parameters: see db.py `_make_engine`)."""
    settings = pg_settings(url)
    connect_args: dict[str, Any] = {"prepare_threshold": settings.prepare_threshold,
                                    **tcp_settings(settings.url)}
    engine = ping_when_idle(create_engine(
        settings.url, echo=echo, hide_parameters=True, pool_use_lifo=True,
        connect_args=connect_args, json_serializer=jsonfast.dumps,
        json_deserializer=jsonfast.loads_jsonb), idle_s, clock)
    event.listen(engine, "handle_error", _out_of_step)
    return engine


def _out_of_step(context: ExceptionContext) -> None:
    """psycopg's own InternalError, with no SQLSTATE ("received 2 results from command
    'BEGIN'"; not the server's XX000): the client and the server, or a pooler between
    them, no longer agree where the conversation is. Seen through PgBouncer while the
    database's backends were terminated. Nothing on that connection can be trusted: it
    is dropped like a lost one (SQLAlchemy invalidates it), so the error is transient
    (`SqlStore.is_transient`) and a retry runs on a new connection."""
    error = context.original_exception
    if isinstance(error, psycopg.InternalError) and error.sqlstate is None:
        context.is_disconnect = True


def tcp_settings(url: str | URL) -> dict[str, Any]:
    """`KEEPALIVES` less what the URL sets itself; none when a service file may set them
    (for the pool's connections and the LISTEN connection, notify.py)."""
    given = make_url(url).query
    if "service" in given or os.environ.get("PGSERVICE"):
        return {}
    return {k: v for k, v in KEEPALIVES.items() if k not in given}


def ping_when_idle(engine: Engine, idle_s: float = PING_AFTER_IDLE_S,
                   clock: Callable[[], float] = time.monotonic) -> Engine:
    """Ping `engine`'s connections at checkout when idle `idle_s` or more by `clock`
    (seconds; a new connection counts from its connect); a failed ping makes the pool
    connect again (raising `DisconnectionError` in a checkout handler: SQLAlchemy's
    documented way)."""
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    def _connect(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = clock()

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = clock()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is not None and clock() - since < idle_s:
            return
        try:
            alive = dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:  # as SQLAlchemy's own pre-ping decides
            if not dialect.is_disconnect(exc, dbapi_conn, None):
                raise
            alive = False
        if not alive:
            raise DisconnectionError("the connection was closed while idle in the pool")

    return engine
