"""A long journey validates: the linter's graph walks are iterative (a chain of 3,000
steps overflowed Python's stack in the loop check)."""

from __future__ import annotations

import time
from pathlib import Path

from journeys.errors import InvalidJourney
from journeys.loader import load_path


def _chain(folder: Path, n: int, *, loop: bool = False) -> Path:
    steps = [f"  - {{id: s{i}, set_data: {{k{i}: {i}}}}}" for i in range(n)]
    if loop:
        steps[-1] = f"  - {{id: s{n - 1}, set_data: {{k: 1}}, next: s{n // 2}}}"
    path = folder / "chain.yaml"
    path.write_text("journey: chain\nversion: 1\nentry: {event: Go}\nsteps:\n"
                    + "\n".join(steps) + "\n")
    return path


def test_a_chain_of_3000_steps_validates(tmp_path: Path) -> None:
    started = time.perf_counter()
    load_path(str(_chain(tmp_path, 3000)))
    assert time.perf_counter() - started < 20  # ~1 s here


def test_a_long_loop_with_no_wait_is_reported_once(tmp_path: Path) -> None:
    try:
        load_path(str(_chain(tmp_path, 3000, loop=True)))
    except InvalidJourney as exc:
        [problem] = exc.problems
    message = str(problem)
    assert "chain.yaml:1505:10: loop with no wait: s1500 -> s1501 -> " in message
    assert message.endswith("s2999 -> s1500 (add a wait or wait_for inside the loop)")
