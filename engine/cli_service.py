"""The `journeyman serve`, `worker` and `keys` commands (registered by engine/cli.py)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from journeys.errors import JourneyError

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

DB_HELP = "Store URL: sqlite:///journeyman.db (default) or postgresql+psycopg://..."
JourneysOpt = Annotated[Path | None, typer.Option(
    help="Journeys folder (default: the bundled library, journeys/library).")]
DbOpt = Annotated[str, typer.Option(help=DB_HELP)]
IdentifyOpt = Annotated[list[str] | None, typer.Option(
    "--identify-by", help="Traits that identify a person across ids (repeat), e.g. email.")]
LeaseOpt = Annotated[float, typer.Option(help=(
    "Seconds a crashed process keeps the events and sends it claimed before another "
    "process takes them over."))]
SendsOpt = Annotated[str, typer.Option(help=(
    "Where sends go until real adapters are configured: `console`, or `file:PATH` "
    "(JSON lines)."))]

DEMO_START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CHANNEL_NAMES = ("email", "sms", "push", "webhook", "console", "file")

keys = typer.Typer(help="Write keys for the event API.", no_args_is_help=True)


ChannelsOpt = Annotated[Path | None, typer.Option(
    "--channels", help="channels.yaml: an adapter per channel (email via SMTP, sms, "
    "webhook, ...); without it every channel goes where --sends says.")]


def channels_for(sends: str, config: Path | None = None) -> dict[str, Any]:
    """The adapters by channel name: from channels.yaml, else one adapter for every
    channel (the console, or a JSON-lines file)."""
    import channels
    from channels.config import load

    if config is not None:
        return load(config)
    kind, _, arg = sends.partition(":")
    adapter = channels.build(kind, **({"path": arg} if arg else {}))
    return dict.fromkeys(CHANNEL_NAMES, adapter)


def setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # A tick that finds the previous one still running is skipped on purpose
    # (max_instances=1, coalesce): not worth a warning per tick.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


def bundled_library() -> Path:
    import journeys

    return Path(journeys.__file__).resolve().parent / "library"


def _service(journeys: Path | None, db: str, identify_by: list[str] | None, sends: str,
             config: Path | None = None, **extra: Any) -> Any:
    from engine.service import Service

    setup_logging()
    try:
        return Service(journeys or bundled_library(), db,
                       channels=channels_for(sends, config),
                       identify_by=tuple(identify_by or ()),
                       secret=os.environ.get("JOURNEYMAN_SECRET") or None, **extra)
    except (JourneyError, ValueError) as exc:
        for line in str(exc).splitlines():
            err.print(line, markup=False)
        raise typer.Exit(1) from None


def serve(
    journeys: JourneysOpt = None,
    db: DbOpt = "sqlite:///journeyman.db",
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    identify_by: IdentifyOpt = None,
    sends: SendsOpt = "console",
    channels: ChannelsOpt = None,
    tick: Annotated[float, typer.Option(help="Seconds between timer/outbox ticks.")] = 0.5,
    lease: LeaseOpt = 60.0,
    public_url: Annotated[str | None, typer.Option(help=(
        "The API's address as mail recipients reach it, for unsubscribe links "
        "(default http://HOST:PORT)."))] = None,
) -> None:
    """Run the service: event API, worker, timer ticker and outbox dispatcher."""
    service = _service(journeys, db, identify_by, sends, channels, tick=tick, lease=lease,
                       public_url=public_url or f"http://{host}:{port}")
    err.print(f"journeyman: {len(service.library.journeys)} journeys from "
              f"{service.library.folder}, "
              f"store {service.store.dialect}, API on http://{host}:{port} "
              "(write keys: `journeyman keys create NAME`)", markup=False)
    service.serve(host, port)


def worker(
    journeys: JourneysOpt = None,
    db: DbOpt = "sqlite:///journeyman.db",
    identify_by: IdentifyOpt = None,
    sends: SendsOpt = "console",
    channels: ChannelsOpt = None,
    tick: Annotated[float, typer.Option(help="Seconds between timer/outbox ticks.")] = 0.5,
    name: Annotated[str | None, typer.Option(help="Worker name (default host:pid).")] = None,
    lease: LeaseOpt = 60.0,
) -> None:
    """Run a worker alone (events, timers, outbox), for more processes on one store."""
    service = _service(journeys, db, identify_by, sends, channels, tick=tick, name=name,
                       lease=lease)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: service.request_stop())
    service.start()
    err.print(f"journeyman worker {service.worker.name} running; Ctrl-C stops it",
              markup=False)
    try:
        service.wait()
    finally:
        service.stop()


def _store(db: str) -> Any:
    from engine.store import SqlStore

    try:
        return SqlStore(db, create=True)
    except JourneyError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(1) from None


@keys.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key (who uses it).")],
    admin: Annotated[bool, typer.Option(help="May read profiles (GET /v1/profiles/...).")]
    = False,
    db: DbOpt = "sqlite:///journeyman.db",
) -> None:
    """Create a write key; the key alone is the last line of stdout (shown only once)."""
    from engine.store import DuplicateKeyName

    store = _store(db)
    try:
        key = store.create_key(name, admin=admin)
    except DuplicateKeyName as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(1) from None
    finally:
        store.close()
    err.print(f"created {'admin ' if admin else ''}key {name!r}; store it now, "
              "it is not shown again:", markup=False)
    sys.stdout.write(key + "\n")


@keys.command("list")
def keys_list(
    db: DbOpt = "sqlite:///journeyman.db",
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
) -> None:
    """List keys (names and prefixes; the keys themselves are stored hashed)."""
    store = _store(db)
    try:
        infos = store.list_keys(include_revoked=all_keys)
    finally:
        store.close()
    table = Table("name", "prefix", "admin", "created", "revoked")
    for info in infos:
        table.add_row(info.name, info.prefix, "yes" if info.admin else "",
                      info.created_at.isoformat(timespec="seconds") if info.created_at else "",
                      info.revoked_at.isoformat(timespec="seconds") if info.revoked_at else "")
    out.print(table)


@keys.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="The key's name.")],
    db: DbOpt = "sqlite:///journeyman.db",
) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    store = _store(db)
    try:
        revoked = store.revoke_key(name)
    finally:
        store.close()
    if not revoked:
        err.print(f"no active key named {name!r}", markup=False)
        raise typer.Exit(1)
    out.print(f"revoked {name!r}", markup=False)


def demo(
    journeys: JourneysOpt = None,
    events: Annotated[Path | None, typer.Option(help=(
        "Segment-format JSON lines to play (default: the bundled demo stream)."))] = None,
    synthetic: Annotated[int, typer.Option(help="Made-up visitors added to the stream.")]
    = 30,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second.")]
    = 172_800.0,
    days: Annotated[int, typer.Option(help="Simulated days to run on after the last event "
                                           "(stops earlier when nothing is pending).")] = 80,
    db: Annotated[str | None, typer.Option(help=(
        "Store URL to keep the demo's state (default: a fresh temporary SQLite file)."))]
    = None,
) -> None:
    """Run the whole service on a time-lapse clock and play a demo event stream through
    its HTTP API: watch profiles enter journeys and messages reach the console."""
    import tempfile
    from datetime import timedelta

    from rich.progress import Progress, TextColumn

    from engine.demo import load_events, run_demo, synthetic_events, when

    bundled = Path(__file__).resolve().parents[1] / "docs" / "demo-events.jsonl"
    try:
        stream = load_events(events or bundled) if events or bundled.is_file() else []
    except (OSError, ValueError) as exc:
        err.print(f"cannot read the demo events: {exc}", markup=False)
        raise typer.Exit(1) from None
    if synthetic:
        start = when(stream[0]) if stream else DEMO_START
        stream = sorted(stream + synthetic_events(synthetic, start), key=when)
    if not stream:
        err.print("no events to play (give --events FILE or --synthetic N)", markup=False)
        raise typer.Exit(1)
    setup_logging()
    with tempfile.TemporaryDirectory(prefix="journeyman-demo-") as tmp:
        url = db or f"sqlite:///{Path(tmp) / 'demo.db'}"
        with Progress(TextColumn("{task.description}"), console=out,
                      transient=False) as bar:
            task = bar.add_task("starting", total=None)

            def show(now: Any, posted: int, handled: int, sent: int) -> None:
                bar.update(task, description=(
                    f"[bold]{now:%Y-%m-%d %H:%M}[/] simulated · events {posted}/{len(stream)}"
                    f" posted, {handled} handled · {sent} messages sent"))

            summary = run_demo(journeys or bundled_library(), stream, db=url,
                               channels=channels_for("console"), speed=speed,
                               run_on=timedelta(days=days), progress=show,
                               show=lambda line: print(line, flush=True))
    for line in summary.lines():
        out.print(line, markup=False)


def outbox(
    db: DbOpt = "sqlite:///journeyman.db",
    status: Annotated[str | None, typer.Option(help=(
        "Only rows with this status: pending, sent, failed or skipped."))] = None,
    profile: Annotated[str | None, typer.Option(help="Only this profile's rows.")] = None,
    limit: Annotated[int, typer.Option(help="Show the newest N rows.")] = 50,
) -> None:
    """The outbox: what was sent, what waits, and what failed or was skipped, and why."""
    store = _store(db)
    try:
        rows = store.outbox_records(profile_id=profile, status=status)[-limit:]
        counts = store.outbox_counts()
    finally:
        store.close()
    table = Table("send key", "profile", "journey/step", "channel", "status", "attempts",
                  "next attempt / sent", "last error")
    for r in rows:
        when = r.sent_at or r.next_attempt_at
        table.add_row(r.entry.key, r.entry.profile_id, f"{r.entry.journey}/{r.entry.step}",
                      r.entry.channel, r.status, str(r.attempts),
                      when.isoformat(timespec="seconds") if when else "", r.last_error or "")
    out.print(table)
    out.print(", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "empty",
              markup=False)


def decisions(
    db: DbOpt = "sqlite:///journeyman.db",
    profile: Annotated[str | None, typer.Option(help="Only this profile's decisions.")] = None,
    limit: Annotated[int, typer.Option(help="Show the newest N.")] = 50,
) -> None:
    """The decision log: every skip, deferral and failure, with its reason."""
    store = _store(db)
    try:
        rows = store.recorded_decisions(profile)[-limit:]
    finally:
        store.close()
    table = Table("at", "profile", "journey/step", "what", "reason", "details")
    for d in rows:
        table.add_row(d.at.isoformat(timespec="seconds"), d.profile_id,
                      f"{d.journey}/{d.step}", d.what, d.reason,
                      ", ".join(f"{k}={v}" for k, v in d.details.items()))
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command()(outbox)
    app.command()(decisions)
    app.command()(serve)
    app.command()(demo)
    app.command()(worker)
    app.add_typer(keys, name="keys")
