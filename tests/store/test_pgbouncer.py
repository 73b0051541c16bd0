"""PostgreSQL behind a real PgBouncer (Debian's, 1.18) in transaction mode, the pooler a
deployment of many workers puts in front of one server (docs/deploy.md, "PgBouncer").

Two things break there, and the `--db` URL's own settings (engine/store/sql/pg_engine.py)
mend them: a statement psycopg prepared on one server connection is missing on the next
one the pooler hands out (`prepare_threshold=none`: never prepare), and LISTEN, session
state, is dropped by the pooler, so the cross-process wake-ups never arrive
(`listen_host`/`listen_port`: the LISTEN connection goes straight to PostgreSQL).
PgBouncer's admin command RECONNECT closes its server connections, so the next
transaction gets a new one: what a busy pool does by chance, made certain.

Needs `pgbouncer` on the PATH (.ci/run installs Debian's package) and JOURNEYMAN_TEST_PG.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from engine.qa.replay import read_db_events
from engine.runtime.events import normalize
from engine.runtime.unsubscribe import SigningSecret
from engine.service import Service
from engine.store import SqlStore
from engine.store.errors import StoreError
from engine.store.sql.pg_engine import PREPARE_THRESHOLD, libpq_conninfo, pg_settings
from engine.testing import TEST_SECRET, FakeClock
from tests.engine.helpers import HELLO, stub_email, write_folder
from tests.net import free_port
from tests.store.conftest import make_pg_store


def test_the_urls_own_settings_are_read_and_taken_out() -> None:
    url = ("postgresql+psycopg://app:s3cret@pooler:6432/jm?sslmode=prefer"
           "&prepare_threshold=none&listen_host=db.internal&listen_port=5433"
           "&listen_dbname=journeyman")
    settings = pg_settings(url)
    assert settings.prepare_threshold is None
    assert settings.url.render_as_string(hide_password=False) == (
        "postgresql+psycopg://app:s3cret@pooler:6432/jm?sslmode=prefer")  # libpq's only
    assert settings.listen.render_as_string(hide_password=False) == (
        "postgresql+psycopg://app:s3cret@db.internal:5433/journeyman?sslmode=prefer")

    plain = pg_settings("postgresql+psycopg://app@db/jm")
    assert plain.prepare_threshold == PREPARE_THRESHOLD
    assert plain.listen == plain.url == make_url("postgresql+psycopg://app@db/jm")
    assert pg_settings("postgresql+psycopg://db/jm?prepare_threshold=4").prepare_threshold == 4
    # a pooler on a unix socket names its host in the query, which libpq reads first:
    # listen_* replace those too, or LISTEN would still go through the pooler
    socket_url = pg_settings("postgresql+psycopg://app@/jm?host=/run/pgbouncer&port=6432"
                             "&dbname=pooled&listen_host=db&listen_port=5432&listen_dbname=jm")
    assert socket_url.url.query == {"host": "/run/pgbouncer", "port": "6432",
                                    "dbname": "pooled"}
    assert socket_url.listen.render_as_string() == "postgresql+psycopg://app@db:5432/jm"
    # PostgreSQL on its local socket, or on IPv6: libpq gets the parts, not a URL
    for host in ("/var/run/postgresql", "::1"):
        listen = pg_settings(f"postgresql+psycopg://app:p%40ss@pooler:6432/jm?sslmode=disable"
                             f"&listen_host={host}&listen_port=5432").listen
        assert conninfo_to_dict(libpq_conninfo(listen)) == {
            "host": host, "port": "5432", "dbname": "jm", "user": "app", "password": "p@ss",
            "sslmode": "disable"}

    for bad, named in (("prepare_threshold=never", "prepare_threshold"),
                       ("prepare_threshold=-1", "prepare_threshold"),
                       ("listen_port=x", "listen_port"), ("listen_port=70000", "listen_port"),
                       ("listen_port=\uff15", "listen_port")):  # a fullwidth 5
        with pytest.raises(StoreError, match=named):
            pg_settings(f"postgresql+psycopg://db/jm?{bad}")


# --- a real PgBouncer ------------------------------------------------------------------

def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def pgbouncer(pg_database: str) -> Iterator[str]:
    """PgBouncer in transaction mode in front of this run's database; yields the
    database's URL through it."""
    binary = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.path.exists(p)), None)
    if binary is None:
        pytest.skip("needs Debian's pgbouncer (apt-get install pgbouncer; .ci/run does)")
    server = make_url(pg_database)
    user = server.username or "postgres"
    target = f"host={server.host or '127.0.0.1'} port={server.port or 5432} user={user}"
    if server.password:
        target += f" password={server.password}"
    version = re.search(r"PgBouncer (\d+)\.(\d+)", subprocess.run(
        [binary, "--version"], check=True, capture_output=True, text=True).stdout)
    # From 1.21 PgBouncer can keep prepared statements itself (and from 1.24 does by
    # default), which would hide what the default prepare_threshold breaks; 1.18, Debian
    # 12's, refuses the setting.
    keeps = "max_prepared_statements = 0\n" if version and (
        int(version[1]), int(version[2])) >= (1, 21) else ""
    port = free_port()
    # Run as root, PgBouncer drops to `postgres` (-u), who must reach this folder: not
    # under pytest's, which only root may enter.
    folder = Path(tempfile.mkdtemp(prefix="jm-pgbouncer-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        as_user: list[str] = []
        if os.geteuid() == 0:  # it refuses to run as root
            as_user = ["-u", "postgres"]
            shutil.chown(folder, "postgres")
        (folder / "users.txt").write_text(f'"{user}" ""\n')
        ini = folder / "pgbouncer.ini"
        ini.write_text(f"""[databases]
* = {target}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder / "users.txt"}
admin_users = {user}
pool_mode = transaction
default_pool_size = 4
{keeps}logfile = {folder / "pgbouncer.log"}
pidfile = {folder / "pgbouncer.pid"}
ignore_startup_parameters = extra_float_digits
""")
        for path in (ini, folder / "users.txt"):
            path.chmod(0o644)
        with (folder / "stderr.txt").open("wb") as err:
            proc = subprocess.Popen([binary, *as_user, str(ini)], stdout=err,
                                    stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        # its own log says it listens on our port (not another process that took it)
        log = folder / "pgbouncer.log"
        while (not log.exists() or f"listening on 127.0.0.1:{port}" not in log.read_text()
               or not _answers(port)):
            assert proc.poll() is None, "pgbouncer exited: " + _log(folder)
            assert time.monotonic() < deadline, "pgbouncer did not listen: " + _log(folder)
            time.sleep(0.05)
        yield server.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        if proc is not None:
            proc.terminate()  # 1.18: immediate shutdown; later versions: once clients left
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(folder, ignore_errors=True)


def _log(folder: Path) -> str:
    return "\n".join(path.read_text()[-2000:] for name in ("stderr.txt", "pgbouncer.log")
                     if (path := folder / name).exists())


def _reconnect(pooled: str) -> None:
    """PgBouncer's admin console: close every server connection once it is released."""
    url = make_url(pooled)
    with psycopg.connect(host=url.host, port=url.port, user=url.username or "postgres",
                         dbname="pgbouncer", autocommit=True) as admin:
        admin.execute(f"RECONNECT {url.database}")


def _handled_through_the_pooler(pooled: str, tmp_path: Path) -> tuple[int, int]:
    """Events accepted and handled (a worker's batches, prepared statements and all)
    through the pooler, its server connections replaced between rounds; (events
    handled, statements that failed for a missing prepared statement: the accepting
    side's, or the worker's, which count failed attempts against its events)."""
    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"welcome": stub_email("welcome")})
    service = Service(folder, pooled, channels={}, clock=FakeClock(datetime.now(UTC)),
                      secrets=[SigningSecret(TEST_SECRET)])
    refused = 0
    try:
        for round_ in range(4):
            events = [normalize({"type": "track", "userId": f"r{round_}-p{i}",
                                 "event": "Signed Up"}, now=service.clock.now(),
                                message_id=f"r{round_}-{i}") for i in range(5)]
            try:
                service.store.accept_events(events, "site")
            except ProgrammingError as exc:
                if "prepared statement" not in str(exc):
                    raise
                refused += 1
            while service.worker.handle_events():
                pass
            _reconnect(pooled)
        return service.worker.stats.events, refused + service.worker.stats.failures
    finally:
        service.stop()


@pytest.mark.postgres
def test_prepared_statements_break_behind_transaction_pooling_unless_turned_off(
        pgbouncer: str, pg_database: str, tmp_path: Path) -> None:
    make_pg_store(pg_database).close()
    _, failed = _handled_through_the_pooler(pgbouncer, tmp_path / "default")
    assert failed > 0  # 'prepared statement "_pg3_0" does not exist': what the setting mends

    make_pg_store(pg_database).close()
    assert _handled_through_the_pooler(f"{pgbouncer}?prepare_threshold=none",
                                       tmp_path / "none") == (20, 0)


@pytest.mark.postgres
def test_replay_reads_a_store_through_the_pooler(pgbouncer: str, pg_database: str) -> None:
    """`journeyman replay --db` reads the events in a read-only transaction: through
    the pooler, where a startup `options` (its way before) is refused."""
    store = make_pg_store(pg_database)
    try:
        store.accept_events([normalize({"type": "track", "userId": f"p{i}", "event": "Seen"},
                                       now=datetime.now(UTC), message_id=f"e{i}")
                             for i in range(3)], "site")
    finally:
        store.close()
    assert len(read_db_events(f"{pgbouncer}?prepare_threshold=none").events) == 3


@pytest.mark.slow
@pytest.mark.postgres
def test_wake_ups_reach_a_worker_behind_transaction_pooling(
        pgbouncer: str, pg_database: str, tmp_path: Path) -> None:
    """A worker whose pool goes through the pooler and whose LISTEN goes straight to
    PostgreSQL handles each event at once, woken by the NOTIFY its acceptance sends
    through the pooler: its safety tick is 30 s, so a LISTEN through the pooler (which
    hears nothing) would leave every event waiting that long."""
    make_pg_store(pg_database).close()
    server = make_url(pg_database)
    pooled = (f"{pgbouncer}?prepare_threshold=none&listen_host={server.host or '127.0.0.1'}"
              f"&listen_port={server.port or 5432}")
    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"welcome": stub_email("welcome")})
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "engine", "worker", "--journeys", str(folder), "--db", pooled,
             "--tick", "30", "--name", "pooled"], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "JOURNEYMAN_SECRET": TEST_SECRET})
    store = SqlStore(f"{pgbouncer}?prepare_threshold=none")  # the API's side, pooled too
    try:
        deadline = time.monotonic() + 120
        while "running; Ctrl-C stops it" not in log.read_text():
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(1.0)  # its first runs are over: from here only a wake-up brings work
        for i in range(3):
            accepted = time.monotonic()
            store.accept_events([normalize({"type": "track", "userId": f"p{i}",
                                            "event": "Signed Up"},
                                           now=datetime.now(UTC), message_id=f"w{i}")], "site")
            while store.outbox_counts().get("skipped", 0) < i + 1:  # no address: skipped
                assert time.monotonic() - accepted < 5, (
                    f"event {i} not handled within 5 s: {store.outbox_counts()}\n"
                    + log.read_text()[-3000:])
                time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
        store.close()
