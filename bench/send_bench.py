"""Email sends through the outbox to a local SMTP sink, against raw smtplib (not run in CI).

    .venv/bin/python bench/send_bench.py                    # 2,000 messages, 3 rounds
    .venv/bin/python bench/send_bench.py --messages 500 --rounds 1 --sink thread

The same kind of N messages (a cart-abandonment email: personalised subject with a
non-ASCII dash, a ~3 KB HTML part and its text part as multipart/alternative,
List-Unsubscribe and List-Unsubscribe-Post headers, a Message-ID from the send key) are
delivered to one local SMTP sink two ways, in the same run:

1. baseline: the stdlib `smtplib.SMTP` over ONE connection, `send_message` in a loop;
   the timing covers connecting, building each `EmailMessage` (same headers and parts
   as the adapter, the same 998-column SMTP policy) and QUIT;
2. the engine: N `OutboxEntry` rows queued in a fresh `SqlStore` (SQLite file; the
   enqueue is not timed), then `Dispatcher(store, {"email": EmailChannel(...)},
   clock).dispatch_due()` (batches of 100, no policy gate) and `EmailChannel.close()`,
   timed; the clock is fixed one hour after the rows were queued. Afterwards the store
   must hold N `sent` rows, the sink must have received exactly N messages in this
   phase, and N distinct Message-IDs (the duplicate count is printed);
   target: (2) >= 0.7 x (1).

Each round runs (1) then (2) on fresh keys; the rates reported are the medians over
`--rounds`. The sink is an aiosmtpd `Controller` on a free loopback port whose handler
counts messages and collects their Message-IDs ("250 OK" to every DATA). By default it
runs in a child process (`--sink process`: its own interpreter and GIL, as a real MTA
would be, and steadier numbers); `--sink thread` runs it in this process, where its
event loop competes with the client threads for the GIL.
"""

from __future__ import annotations

import argparse
import email.policy
import email.utils
import hashlib
import json
import re
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from channels.email import EmailChannel  # noqa: E402
from engine.ports import OutboxEntry, WallPaced  # noqa: E402
from engine.runtime.dispatch import Dispatcher  # noqa: E402
from engine.store import SqlStore  # noqa: E402
from journeys.templating import Rendered, html_to_text  # noqa: E402

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FROM = "Shop <hello@shop.example>"
DOMAIN = "journeyman.local"  # EmailChannel's default Message-ID domain
POLICY = email.policy.SMTP.clone(max_line_length=998, cte_type="7bit")  # as the adapter
MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)
PRODUCTS = ("Trail Runner 2", "Merino Crew Socks", "Canvas Weekender", "Rain Shell",
            "Wool Beanie", "Leather Belt")


# --- the sink --------------------------------------------------------------------------

class CountingHandler:
    """aiosmtpd handler: counts accepted messages and keeps their Message-IDs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.ids: list[str] = []
        self.size = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        content: bytes = envelope.original_content or envelope.content
        head = content.split(b"\r\n\r\n", 1)[0]
        found = MESSAGE_ID.search(head)
        with self._lock:
            self.count += 1
            self.size += len(content)
            self.ids.append(found.group(1).decode("ascii", "replace") if found else "")
        return "250 OK"

    def take(self) -> dict[str, Any]:
        """What arrived since the last take, and start counting afresh."""
        with self._lock:
            taken = {"count": self.count, "ids": self.ids, "bytes": self.size}
            self.count, self.ids, self.size = 0, [], 0
        return taken


def free_port() -> int:
    """A port nobody listens on (aiosmtpd's Controller(port=0) does not work)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_sink() -> None:
    """Child-process mode: start the sink, print its port, answer `take` lines on stdin
    with one JSON line each, stop at EOF or `stop`."""
    from aiosmtpd.controller import Controller

    handler = CountingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        print(port, flush=True)
        for line in sys.stdin:
            if line.strip() == "take":
                print(json.dumps(handler.take()), flush=True)
            elif line.strip() == "stop":
                break
    finally:
        controller.stop()


class Sink(Protocol):
    port: int

    def take(self) -> dict[str, Any]: ...
    def stop(self) -> None: ...


class ThreadSink:
    """The aiosmtpd Controller in this process (its own event-loop thread)."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.handler = CountingHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def take(self) -> dict[str, Any]:
        return self.handler.take()

    def stop(self) -> None:
        self.controller.stop()


class ProcessSink:
    """The same sink in a child process (this script with `--serve-sink`)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve-sink"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the sink process did not start: {line!r}")
        self.port = int(line)

    def take(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("take\n")
        self.proc.stdin.flush()
        taken: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return taken

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.write("stop\n")
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- the workload ----------------------------------------------------------------------

def unsubscribe(i: int) -> dict[str, str]:
    token = hashlib.sha256(f"unsub-{i}".encode()).hexdigest()
    return {"List-Unsubscribe": f"<https://shop.example/u/{token}>, "
                                f"<mailto:unsubscribe@shop.example?subject=unsubscribe%20p{i}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def rendered(i: int) -> Rendered:
    """A realistic cart-abandonment email for profile `i` (~3 KB of HTML)."""
    name = f"Customer{i:05d}"
    items = [PRODUCTS[(i + k) % len(PRODUCTS)] for k in range(3)]
    rows = "".join(
        f'<tr><td style="padding:8px;border-bottom:1px solid #eee">'
        f'<img src="https://cdn.shop.example/p/{(i + k) % 97}.jpg" width="64" alt=""></td>'
        f'<td style="padding:8px;border-bottom:1px solid #eee">{item}</td>'
        f'<td style="padding:8px;border-bottom:1px solid #eee;text-align:right">'
        f"EUR {19 + 7 * k + i % 13}.90</td></tr>"
        for k, item in enumerate(items))
    html = (
        '<!doctype html><html><head><meta charset="utf-8"><title>Your cart</title></head>'
        '<body style="font-family:Helvetica,Arial,sans-serif;color:#222;margin:0">'
        '<div style="max-width:600px;margin:0 auto;padding:24px">'
        f"<h1 style=\"font-size:22px\">Hi {name}, you left something behind</h1>"
        "<p>Your cart is still waiting for you. We kept these items aside, but stock is "
        "limited and we cannot hold them for ever.</p>"
        f'<table style="width:100%;border-collapse:collapse">{rows}</table>'
        f'<p style="margin:24px 0"><a href="https://shop.example/cart?u=p{i}&amp;'
        'utm_source=journeyman&amp;utm_medium=email&amp;utm_campaign=cart_abandonment" '
        'style="background:#0a7;color:#fff;padding:12px 20px;text-decoration:none;'
        'border-radius:4px">Back to your cart</a></p>'
        "<p>Questions? Just answer this email, or call us on weekdays from 9 to 17.</p>"
        '<hr style="border:none;border-top:1px solid #eee">'
        '<p style="font-size:12px;color:#888">You receive this email because you have an '
        "account at shop.example. Shop Example GmbH, Musterstrasse 1, 10115 Berlin. "
        f'<a href="https://shop.example/u/p{i}">Unsubscribe</a> or '
        f'<a href="https://shop.example/prefs/p{i}">change your preferences</a>.</p>'
        "</div></body></html>")
    return Rendered("cart_abandonment", "email",
                    subject=f"{name}, your cart is waiting \N{EM DASH} 3 items inside",
                    html=html, text=html_to_text(html), headers=unsubscribe(i))


def recipient(i: int) -> str:
    return f"customer{i:05d}@example.com"


def send_key(tag: str, i: int) -> str:
    return f"{tag}-enrollment-{i:06d}:send_cart_email:0"


def message_id(key: str) -> str:
    """What EmailChannel.message_id gives for `key`."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{DOMAIN}>"


# --- 1. raw smtplib --------------------------------------------------------------------

def build_raw(key: str, to: str, r: Rendered, at: datetime) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    msg["From"] = FROM
    msg["To"] = to
    msg["Subject"] = r.subject or ""
    msg["Date"] = email.utils.format_datetime(at)
    msg["Message-ID"] = message_id(key)
    for name, value in r.headers.items():
        msg[name] = value
    msg.set_content(r.text or "")
    msg.add_alternative(r.html or "", subtype="html")
    return msg


def run_raw(port: int, work: list[tuple[str, str, Rendered]], at: datetime) -> float:
    """Seconds to connect, build and send every message over one connection, QUIT."""
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        for key, to, r in work:
            smtp.send_message(build_raw(key, to, r, at))
    return time.perf_counter() - start


# --- 2. the outbox ---------------------------------------------------------------------

class FixedClock(WallPaced):
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def fill_outbox(path: Path, work: list[tuple[str, str, Rendered]]) -> SqlStore:
    store = SqlStore(f"sqlite:///{path}", create=True)
    for i, (key, to, r) in enumerate(work):
        queued = store.enqueue_send(OutboxEntry(key, key.split(":")[0], f"p{i}",
                                                "cart_abandonment", "send_cart_email",
                                                "email", to, r,
                                                T0 + timedelta(microseconds=i)))
        assert queued, key
    return store


def run_engine(store: SqlStore, port: int, now: datetime,
               profile: Any = None) -> tuple[float, str]:
    """Seconds for dispatch_due() to deliver the whole outbox, and the channel's QUIT;
    and a note on anything but one connection and every row sent on the first try."""
    channel = EmailChannel(host="127.0.0.1", port=port, from_addr=FROM, start_tls=False,
                           timeout=10)
    dispatcher = Dispatcher(store, {"email": channel}, FixedClock(now))
    try:
        start = time.perf_counter()
        if profile is not None:
            profile.enable()
        tried = dispatcher.dispatch_due()
        channel.close()
        if profile is not None:
            profile.disable()
        elapsed = time.perf_counter() - start
    finally:
        channel.close()
    note = ""
    if tried != dispatcher.stats.sent or channel.connections != 1:
        note = (f"tried {tried}, {dispatcher.stats}, "
                f"{channel.connections} SMTP connections")
    return elapsed, note


def check_sink(taken: dict[str, Any], keys: list[str], what: str,
               problems: list[str]) -> int:
    """Exactly N messages with the expected Message-IDs, else a line in `problems`;
    returns the duplicate count (messages minus distinct Message-IDs)."""
    n, ids = len(keys), taken["ids"]
    duplicates = len(ids) - len(set(ids))
    if taken["count"] != n:
        problems.append(f"{what}: the sink got {taken['count']:,} messages, not {n:,}")
    if duplicates:
        problems.append(f"{what}: {duplicates} duplicate Message-IDs at the sink")
    if set(ids) != {message_id(k) for k in keys}:
        problems.append(f"{what}: the Message-IDs at the sink are not the expected ones")
    return duplicates


# --- the run ---------------------------------------------------------------------------

def line(what: str, n: int, elapsed: float) -> float:
    rate = n / elapsed
    print(f"  {what:<44} {n:>6,} in {elapsed:6.2f} s = {rate:>7,.0f} messages/s")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2_000, help="messages per phase")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians reported)")
    parser.add_argument("--sink", choices=("process", "thread"), default="process",
                        help="where the aiosmtpd sink runs (default: a child process)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the last engine round (top 25 by cumulative time)")
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go")
    parser.add_argument("--serve-sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sink:
        serve_sink()
        return
    n = args.messages
    now = T0 + timedelta(hours=1)
    bodies = [rendered(i) for i in range(n)]

    workdir = Path(tempfile.mkdtemp(prefix="send_bench_", dir=args.dir))
    sink: Sink = ProcessSink() if args.sink == "process" else ThreadSink()
    try:
        print(f"{n:,} messages per phase, {args.rounds} round(s); aiosmtpd sink on "
              f"127.0.0.1:{sink.port} "
              f"({'a child process' if args.sink == 'process' else 'a thread of this process'})"
              f"; files in {workdir}")
        raw_rates: list[float] = []
        engine_rates: list[float] = []
        duplicates = 0
        problems: list[str] = []
        sizes: dict[str, float] = {}
        profiler = None
        for rnd in range(args.rounds):
            raw_work = [(send_key(f"raw{rnd}", i), recipient(i), bodies[i]) for i in range(n)]
            elapsed = run_raw(sink.port, raw_work, now)
            taken = sink.take()
            check_sink(taken, [k for k, _, _ in raw_work], f"raw round {rnd + 1}", problems)
            sizes["raw"] = taken["bytes"] / n
            raw_rates.append(line(f"round {rnd + 1}: raw smtplib, one connection", n, elapsed))

            engine_work = [(send_key(f"outbox{rnd}", i), recipient(i), bodies[i])
                           for i in range(n)]
            store = fill_outbox(workdir / f"outbox{rnd}.db", engine_work)
            try:
                assert store.outbox_counts() == {"pending": n}, store.outbox_counts()
                if args.profile and rnd == args.rounds - 1:
                    import cProfile

                    profiler = cProfile.Profile()
                elapsed, note = run_engine(store, sink.port, now, profiler)
                if note:
                    problems.append(f"outbox round {rnd + 1}: {note}")
                counts = store.outbox_counts()
                if counts != {"sent": n}:
                    problems.append(f"outbox round {rnd + 1}: outbox_counts() = {counts}")
            finally:
                store.close()
            taken = sink.take()
            duplicates += check_sink(taken, [k for k, _, _ in engine_work],
                                     f"outbox round {rnd + 1}", problems)
            sizes["outbox"] = taken["bytes"] / n
            engine_rates.append(line(f"round {rnd + 1}: outbox Dispatcher + EmailChannel",
                                     n, elapsed))

        raw_rate = statistics.median(raw_rates)
        engine_rate = statistics.median(engine_rates)
        print(f"  message size at the sink: raw {sizes['raw']:,.0f} bytes, "
              f"outbox {sizes['outbox']:,.0f} bytes")
        if problems:
            print("  CHECKS FAILED:\n    " + "\n    ".join(problems))
        else:
            print(f"  checks: outbox_counts() == {{'sent': {n}}} after each round; the sink "
                  f"got exactly {n:,} messages per phase, with the expected Message-IDs")
        print(f"  duplicates at the sink (outbox phases): {duplicates}")
        print(f"  median: raw smtplib {raw_rate:,.0f} messages/s, outbox {engine_rate:,.0f} "
              f"messages/s ({1e3 / raw_rate:.2f} vs {1e3 / engine_rate:.2f} ms a message)")
        if profiler is not None:
            import io
            import pstats

            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
            print(out.getvalue())
        print(f"RESULT send_outbox_vs_raw_smtplib ratio={engine_rate / raw_rate:.2f} target=0.7")
        print(f"RESULT send_duplicates ratio={duplicates} target=0")
    finally:
        sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
