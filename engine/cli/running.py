"""Commands that run the engine: `serve` (API + worker + timers + outbox), `worker`
(more processes on one store) and `demo` (the service on a time-lapse clock)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.cli.common import (
    EXIT_INVALID,
    EXIT_NO_PORT,
    DbOpt,
    JourneysOpt,
    err,
    fail,
    journeys_folder,
    out,
)
from engine.cli.logs import CLI, setup_logging
from engine.store import DEFAULT_URL
from rules.errors import JourneymanError

IdentifyOpt = Annotated[list[str] | None, typer.Option(
    "--identify-by", help="Traits that identify a person across ids (repeat), e.g. email.")]
LeaseOpt = Annotated[float, typer.Option(min=1.0, help=(
    "Seconds a crashed process keeps the sends it claimed before another process takes "
    "them over (events are never held: a crashed worker's transaction rolls back)."))]
SendsOpt = Annotated[str, typer.Option(help=(
    "Where sends go until real adapters are configured: `console`, or `file:PATH` "
    "(JSON lines)."))]
ChannelsOpt = Annotated[Path | None, typer.Option(
    "--channels", help="channels.yaml: an adapter per channel (email via SMTP, sms, "
    "webhook, ...); without it every channel goes where --sends says.")]
LOG_FORMATS = ("text", "json")


def _log_format(value: str) -> str:
    if value not in LOG_FORMATS:  # `yaml` started with text logs and said nothing
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(LOG_FORMATS)}")
    return value


LogFormatOpt = Annotated[str, typer.Option(
    "--log-format", callback=_log_format, help="`text`, or `json`: one JSON object per "
    "line, with ids (never a person's data).")]
TickOpt = Annotated[float, typer.Option(min=0.01, help=(
    "Seconds between safety checks of the inbox, timers and outbox (work wakes them at "
    "once; this only bounds how late a missed wake-up is noticed)."))]
EventsFirstOpt = Annotated[float, typer.Option(min=0.0, help=(
    "Seconds a send may wait while the event loop is busy with events (a burst, or "
    "steady load): events first, then the sends queued meanwhile, in fewer outbox "
    "transactions; under steady load every dispatcher run waits this long. 0 sends at "
    "once. A lone event's sends barely wait (one more look at the inbox)."))]
SecretFileOpt = Annotated[Path | None, typer.Option(
    "--secret-file", help=(
        "File with the unsubscribe-signing secrets (newest first; `SECRET until DATE` "
        "for older ones), default $JOURNEYMAN_SECRET_FILE; or put them in "
        "$JOURNEYMAN_SECRET. Without either, a SQLite database gets a generated "
        "DATABASE.secret file beside it; PostgreSQL needs one (docs/channels.md)."))]


def _public_url(value: str | None) -> str | None:
    """`--public-url` (or JOURNEYMAN_PUBLIC_URL) must be an http(s) address: it starts
    every unsubscribe link and tracked link in what is sent, and `journeys.example.com`
    without its scheme was taken as is, so every message went out with links that lead
    nowhere (an operator's trial, 2026-12-07)."""
    if value is None:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise typer.BadParameter(f"{value!r} is not an http:// or https:// address (the "
                                 "API as recipients reach it, e.g. https://journeys.example.com)")
    return value


def public_url_warning(public_url: str | None, *, host: str | None = None,
                       db: str = DEFAULT_URL) -> str | None:
    """What to say when links will point where no recipient can go: `serve --host
    0.0.0.0` without `--public-url` put `http://0.0.0.0:8000` in every unsubscribe and
    tracked link; a worker on a shared database (its API elsewhere) put
    `http://127.0.0.1:8000` (an operator's trial, 2026-12-07). Not an error: on one
    machine, for a try, the default is right."""
    if public_url is not None:
        return None
    if host is not None and host.strip("[]") in ("0.0.0.0", "::", ""):
        return (f"warning: no --public-url: the links in what is sent point at "
                f"http://{host}:PORT, which no recipient can reach; set --public-url "
                "(or $JOURNEYMAN_PUBLIC_URL) to the API's address")
    if host is None and not db.startswith("sqlite"):
        return ("warning: no --public-url: the links in what this worker sends point at "
                "http://127.0.0.1:8000; set --public-url (or $JOURNEYMAN_PUBLIC_URL) to "
                "the API's address, as serve's")
    return None


def unconfigured_channels_warning(library: Any, adapters: Any) -> str | None:
    """What to say when journeys send on a channel `--channels` configures no adapter
    for: each such send fails for good at dispatch (`no_channel`), which showed only
    when one came due (the bundled library's NPS escalation by SMS, a week after its
    entry, under deploy/channels.yaml's e-mail and webhook alone)."""
    from journeys.steps import SendStep

    missing: dict[str, list[str]] = {}
    for jid, loaded in sorted(library.journeys.items()):
        for step in loaded.model.steps:
            if isinstance(step, SendStep) and step.send.channel not in adapters:
                missing.setdefault(step.send.channel, []).append(f"{jid}.{step.id}")
    if not missing:
        return None
    named = "; ".join(f"{channel} ({', '.join(steps)})"
                      for channel, steps in sorted(missing.items()))
    return (f"warning: journeys send on channels with no adapter in --channels: {named}; "
            "those sends fail (no_channel) until channels.yaml configures them")


PublicUrlHelp = ("The API's address as recipients reach it, for unsubscribe links "
                 "(also $JOURNEYMAN_PUBLIC_URL; default {default}).")

DEMO_START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def channels_for(sends: str, config: Path | None = None) -> dict[str, Any]:
    """The adapters by channel name: from channels.yaml, else one adapter for every
    channel a journey may send on (CHANNEL_KINDS; the console, or a JSON-lines file)."""
    import channels
    from channels.config import load
    from journeys.templating import CHANNEL_KINDS

    if config is not None:
        return load(config)
    kind, _, arg = sends.partition(":")
    adapter = channels.build(kind, **({"path": arg} if arg else {}))
    return dict.fromkeys(CHANNEL_KINDS, adapter)


def _say(text: str, log_format: str, *, error: bool = False, warning: bool = False) -> None:
    """A line of `serve` or `worker` itself (its start, why it cannot start, a warning)
    on stderr: as text, or with `--log-format json` a JSON line like the log's, at the
    level it is (a warning was an `error` line, which a log alert on errors counts)."""
    if log_format == "json":
        level = logging.ERROR if error else logging.WARNING if warning else logging.INFO
        logging.getLogger(CLI).log(level, text)
    else:
        for line in text.splitlines():
            err.print(line, markup=False)


def _service(journeys: Path | None, db: str, identify_by: list[str] | None, sends: str,
             config: Path | None = None, secret_file: Path | None = None,
             log_format: str = "text", **extra: Any) -> Any:
    from engine.runtime.signing import configured_secrets
    from engine.service import Service

    try:
        return Service(journeys_folder(journeys), db, bundled_default=journeys is None,
                       channels=channels_for(sends, config),
                       identify_by=tuple(identify_by or ()),
                       secrets=configured_secrets(os.environ, secret_file), **extra)
    except (JourneymanError, ValueError) as exc:
        _say(str(exc), log_format, error=True)
        raise typer.Exit(EXIT_INVALID) from None


def serve(
    journeys: JourneysOpt = None,
    db: DbOpt = DEFAULT_URL,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    identify_by: IdentifyOpt = None,
    sends: SendsOpt = "console",
    channels: ChannelsOpt = None,
    tick: TickOpt = 0.5,
    lease: LeaseOpt = 60.0,
    events_first: EventsFirstOpt = 1.0,  # engine/service.py EVENTS_FIRST
    public_url: Annotated[str | None, typer.Option(
        envvar="JOURNEYMAN_PUBLIC_URL", show_envvar=False, callback=_public_url,
        help=PublicUrlHelp.format(default="http://HOST:PORT"))] = None,
    secret_file: SecretFileOpt = None,
    log_format: LogFormatOpt = "text",
    with_worker: Annotated[bool, typer.Option(
        "--worker/--no-worker", help=(
            "--no-worker: the API alone (accept events, unsubscribe, admin), for API "
            "replicas in front of `journeyman worker` processes on one store."))] = True,
    dashboard_open: Annotated[bool, typer.Option(
        "--dashboard-open", help=(
            "Let clients on this machine (loopback) read the dashboard without logging "
            "in; nothing can be changed that way. Others still log in."))] = False,
) -> None:
    """Run the service: event API (with /healthz, /readyz and /metrics), worker, timers
    and outbox dispatcher (or the API alone, with --no-worker)."""
    # The port taken before anything says the API is there (or what its URL is); listened
    # on only once the service is built, so that while it migrates and loads a client is
    # refused at once (and tries another replica) instead of waiting on a queued connection
    setup_logging(log_format)
    try:
        sock = bound(host, port)
    except OSError as exc:
        raise _no_port(host, port, exc, log_format) from None
    port = sock.getsockname()[1]  # --port 0: the one the system chose
    address = _address(host, port)
    if (warning := public_url_warning(public_url, host=host)) is not None:
        _say(warning, log_format, warning=True)
    try:
        service = _service(journeys, db, identify_by, sends, channels, secret_file,
                           log_format, tick=tick, lease=lease,
                           public_url=public_url or f"http://{address}",
                           dashboard_open=dashboard_open, events_first=events_first)
    except BaseException:  # invalid journeys, a store that cannot open: exit 1 (typer.Exit)
        sock.close()
        raise
    try:
        # Two sockets with SO_REUSEADDR may both bind a port while neither listens (two
        # serves starting together): the first to listen has it, the other is told here
        sock.listen(2048)  # uvicorn's backlog; asyncio's listen() again changes nothing
    except OSError as exc:
        sock.close()
        with contextlib.suppress(Exception):  # the port's line and exit 3, whatever stop met
            service.stop()
        raise _no_port(host, port, exc, log_format) from None
    if with_worker and (warning := unconfigured_channels_warning(
            service.library, service.dispatcher.channels)) is not None:
        _say(warning, log_format, warning=True)
    count = len(service.library.journeys)
    _say(f"journeyman: {count} journey{'' if count == 1 else 's'} from "
         f"{service.library.folder}, "
         f"store {service.store.dialect}, API on http://{address} "
         f"{'' if with_worker else '(API only) '}"
         "(write keys: `journeyman keys create NAME`); dashboard at "
         f"http://{address}/ (users: `journeyman users create NAME`"
         f"{'; open to this machine' if dashboard_open else ''})", log_format)
    service.serve(host, port, with_worker=with_worker, sock=sock)


def worker(
    journeys: JourneysOpt = None,
    db: DbOpt = DEFAULT_URL,
    identify_by: IdentifyOpt = None,
    sends: SendsOpt = "console",
    channels: ChannelsOpt = None,
    tick: TickOpt = 0.5,
    name: Annotated[str | None, typer.Option(help=(
        "This process's name in its log lines (the `worker` field of --log-format json) "
        "and its start line; default host:pid."))] = None,
    lease: LeaseOpt = 60.0,
    events_first: EventsFirstOpt = 1.0,  # engine/service.py EVENTS_FIRST
    public_url: Annotated[str | None, typer.Option(
        envvar="JOURNEYMAN_PUBLIC_URL", show_envvar=False, callback=_public_url,
        help=PublicUrlHelp.format(default="http://127.0.0.1:8000"))] = None,
    secret_file: SecretFileOpt = None,
    http_port: Annotated[int | None, typer.Option(min=0, max=65535, help=(
        "Serve /healthz, /readyz and /metrics on this port."))] = None,
    http_host: Annotated[str, typer.Option(help="Interface for --http-port.")] = "127.0.0.1",
    log_format: LogFormatOpt = "text",
    batch_budget: Annotated[float, typer.Option(min=0.001, help=(
        "Seconds a batch of events or timers may run before it commits. Longer batches "
        "spread each transaction's cost over more events; a lone event is still handled "
        "at once."))] = 0.1,  # engine/service.py WORKER_BATCH_BUDGET
    lane: Annotated[str, typer.Option(envvar="JOURNEYMAN_LANE", show_envvar=False, help=(
        "SQLite: K/N, this worker's share of the inbox, for N workers on one file "
        "(--lane 0/2 and --lane 1/2: each handles half the profiles, on its own core). "
        "PostgreSQL's workers share the inbox by themselves. Also JOURNEYMAN_LANE."))]
    = "0/1",
) -> None:
    """Run a worker alone (events, timers, outbox), for more processes on one store.
    Give it the same `--public-url` and secrets as `serve`: the links in what it sends
    point at that API, which must verify them. SIGTERM or SIGINT: the running batch
    finishes, then it exits."""
    from engine.ports import Lane

    try:
        share = Lane.parse(lane)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--lane") from None
    if share.count > 1 and not db.startswith("sqlite"):
        raise typer.BadParameter("lanes are for SQLite; PostgreSQL's workers share the "
                                 "inbox by themselves", param_hint="--lane")
    setup_logging(log_format, name)
    if (warning := public_url_warning(public_url, db=db)) is not None:
        _say(warning, log_format, warning=True)
    ops_sock = None
    if http_port is not None:  # taken first, as serve takes its port: exit 3 if it cannot
        try:
            ops_sock = bound(http_host, http_port)
        except OSError as exc:
            raise _no_port(http_host, http_port, exc, log_format,
                           option="--http-port") from None
    try:
        service = _service(journeys, db, identify_by, sends, channels, secret_file,
                           log_format, tick=tick, name=name, lease=lease,
                           public_url=public_url or "http://127.0.0.1:8000",
                           batch_budget=batch_budget, lane=share,
                           optimistic=True, events_first=events_first)
    except BaseException:
        if ops_sock is not None:
            ops_sock.close()
        raise
    if (warning := unconfigured_channels_warning(service.library,
                                                 service.dispatcher.channels)) is not None:
        _say(warning, log_format, warning=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: service.request_stop())
    ops = None
    if ops_sock is not None:
        assert http_port is not None
        try:
            ops_sock.listen(2048)
        except OSError as exc:  # another process listened first (see serve)
            ops_sock.close()
            with contextlib.suppress(Exception):
                service.stop()
            raise _no_port(http_host, http_port, exc, log_format,
                           option="--http-port") from None
        ops = _serve_ops(service, ops_sock)
    service.start()
    from engine.service import tune_garbage_collection

    tune_garbage_collection()
    _say(f"journeyman worker {service.worker.name} running; Ctrl-C stops it", log_format)
    try:
        service.wait()
    finally:
        if ops is not None:
            ops.should_exit = True
        service.stop()
    # The last line of a clean stop: a log that ends at "running" was a SIGKILL (systemd's
    # TimeoutStopSec, the OOM killer), which is how an operator tells the two apart
    _say(f"journeyman worker {service.worker.name} stopped", log_format)


def bound(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` as uvicorn binds one (SO_REUSEADDR; IPv6 for an
    address with a colon), not listening yet: a port another process listens on is
    refused here (OSError), while nothing can connect until it listens."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on connections whose socket
    # says TCP, and the accepted ones inherit it. With 0 every answer met the client's
    # delayed ACK: a batch's POST took 47 ms instead of 5 (journey_bench.py's race 3x
    # the peer instead of 6-8x)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _address(host: str, port: int) -> str:
    """`host:port` as a URL writes it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _no_port(host: str, port: int, exc: OSError, log_format: str, *,
             option: str = "--port") -> typer.Exit:
    _say(f"cannot listen on {_address(host, port)}: {exc.strerror or exc} (another process "
         f"has the port? {option} chooses another)", log_format, error=True)
    return typer.Exit(EXIT_NO_PORT)


def _serve_ops(service: Any, sock: socket.socket) -> Any:
    """The worker's /healthz, /readyz and /metrics on `sock` (bound and listening: a port
    in use is exit 3 before the worker starts, not an error line beside a running
    worker whose probes answer for another process), on a thread of their own."""
    import threading

    import uvicorn

    # log_config=None: its lines go through setup_logging's handler (engine/cli/logs.py)
    server = uvicorn.Server(uvicorn.Config(service.ops_app(), log_level="warning",
                                           access_log=False, log_config=None))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="journeyman-ops",
                     daemon=True).start()
    return server


def _print_line(line: str) -> None:
    """One write per line: the console channel prints from another thread."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


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
    secret_file: SecretFileOpt = None,
) -> None:
    """Run the whole service on a time-lapse clock and play a demo event stream through
    its HTTP API: watch profiles enter journeys and messages reach the console."""
    import tempfile
    from datetime import timedelta

    from rich.progress import Progress, TextColumn

    from engine.qa.demo import (
        bundled_demo_events,
        load_events,
        run_demo,
        synthetic_events,
        when,
    )
    from engine.runtime.signing import configured_secrets

    bundled = bundled_demo_events()
    try:
        stream = load_events(events or bundled) if events or bundled.is_file() else []
    except JourneymanError as exc:  # each message names the file (and the line)
        raise fail(exc) from None
    if synthetic:
        start = when(stream[0]) if stream else DEMO_START
        stream = sorted(stream + synthetic_events(synthetic, start), key=when)
    if not stream:
        err.print("no events to play (give --events FILE or --synthetic N)", markup=False)
        raise typer.Exit(1)
    setup_logging("text")
    with tempfile.TemporaryDirectory(prefix="journeyman-demo-") as tmp:
        url = db or f"sqlite:///{Path(tmp) / 'demo.db'}"
        with Progress(TextColumn("{task.description}"), console=out,
                      transient=False) as bar:
            task = bar.add_task("starting", total=None)

            def show(now: Any, posted: int, handled: int, sent: int) -> None:
                bar.update(task, description=(
                    f"[bold]{now:%Y-%m-%d %H:%M}[/] simulated · events {posted}/{len(stream)}"
                    f" posted, {handled} handled · {sent} messages sent"))

            try:
                summary = run_demo(journeys_folder(journeys), stream, db=url,
                                   channels=channels_for("console"), speed=speed,
                                   run_on=timedelta(days=days), progress=show,
                                   show=_print_line,
                                   secrets=configured_secrets(os.environ, secret_file),
                                   bundled_default=journeys is None)
            except JourneymanError as exc:  # a store of other journeys, as serve says
                raise fail(exc) from None
    for line in summary.lines():
        out.print(line, markup=False)
