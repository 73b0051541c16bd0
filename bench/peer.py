"""The Celery peer of bench/journey_bench.py: ../shared/peers/celery_journey.py, what a
Python team hand-rolls instead of a journey engine (a Celery task per event scheduling a
countdown task that "sends"), run as a subprocess. It starts its own redis-server on a
free port (never the shared one at 6379) and two Celery worker processes; `celery[redis]`
is pip-installed into the bench's interpreter if missing (the bench's setup, not CI's).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PEER = Path(__file__).resolve().parent.parent.parent / "shared" / "peers" / "celery_journey.py"


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class PeerRun:
    rate: float
    lost: int
    dup: int
    output: str


def ensure_celery() -> None:
    """The peer needs celery[redis] in this interpreter: install it if missing (the
    bench's own setup, never CI's)."""
    try:
        import celery  # noqa: F401
        import redis  # noqa: F401
    except ImportError:
        print("  installing celery[redis] for the peer (pip, into this interpreter)",
              flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "celery[redis]"],
                       check=True)


def _leftovers(pids: set[int]) -> list[int]:
    """Those of `pids` still alive and still the peer's (a Celery worker of its app, or
    a redis-server)."""
    alive = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"peer_app" in cmdline or b"redis-server" in cmdline:
            alive.append(pid)
    return alive


def run_peer(peer: Path, n: int, delay: float, timeout: float = 900) -> PeerRun:
    """Run the peer script on `n` events; it starts its own redis-server on a free port
    (never touching the shared one at 6379) and two Celery worker processes."""
    if not peer.is_file():
        raise RuntimeError(f"the peer script is not at {peer} (give --peer)")
    ensure_celery()
    tmp = Path(tempfile.mkdtemp(prefix="peer_"))  # the peer leaves its app folder behind
    proc = subprocess.Popen([sys.executable, str(peer), "--n", str(n), "--delay", str(delay)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "TMPDIR": str(tmp)})
    below: set[int] = set()
    try:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            below.update(descendants(proc.pid))  # its workers leave its session
            time.sleep(0.5)
        try:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the peer did not finish in {timeout:.0f} s") from None
    finally:
        if proc.poll() is None:  # timed out or interrupted
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        # The peer stops its workers and Redis itself; whatever of them is still there
        # after 10 s (the peer failed or was killed) is ended here, by pid, once its
        # command line shows it is one of them (a pid may have been reused meanwhile).
        wait_until = time.monotonic() + 10
        while _leftovers(below) and time.monotonic() < wait_until:
            time.sleep(0.2)
        for pid in _leftovers(below):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
    match = re.search(r"RESULT celery_e2e events_per_s=(\d+) lost=(\d+) dup=(\d+)", out)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"the peer failed ({proc.returncode}):\n{out}\n{err[-2000:]}")
    info = " ".join(line for line in out.splitlines() if not line.startswith("RESULT"))
    return PeerRun(float(match[1]), int(match[2]), int(match[3]), info)
