"""Rules matching speed: both backends on a 20-rule journey-like ruleset, against a bare
Python dict-lookup loop over the same 20 rules, measured in the same run.

    python bench/rules_bench.py [--seconds 2]

The bench matches one fact again and again. The durable backend keeps durable's answers
to the facts it saw lately (rules/durable_backend.py, since 2026-12-06), so it is
measured twice: `rules_durable` with nothing kept (durable asked for every match, as
for a fact never seen before: the figure of the earlier runs) and
`rules_durable_repeated` as configured (the answer kept after the first match).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime

from rules import compile_ruleset, durable_backend, parse_condition

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
STEPS = [f"step_{i}" for i in range(16)]
RAW = {"entry": {"event.event": "Checkout Started", "event.properties.cart_value": {"gt": 0}},
       "exit_when:0": {"event.event": "Order Completed"},
       "exit_when:1": {"event.event": "Unsubscribed"},
       "goal": {"event.event": "Order Completed", "event.properties.revenue": {"gte": 10}}}
RAW.update({f"wait_for:{s}": {"enrollment.state": s, "event.event": f"Event {i}",
                              "profile.traits.vip": {"ne": True}}
            for i, s in enumerate(STEPS)})
FACTS = {"event": {"event": "Event 7", "properties": {"cart_value": 30, "revenue": 30}},
         "profile": {"traits": {"vip": False}, "computed": {}},
         "enrollment": {"state": "step_7", "data": {}}}


def rate(fn: Callable[[], object], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            fn()
        n += 200
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    rules = {rid: parse_condition(raw) for rid, raw in RAW.items()}
    assert len(rules) == 20
    pairs = [(r["event.event"], r.get("enrollment.state")) for r in RAW.values()]

    def baseline() -> list[int]:
        event, state = FACTS["event"]["event"], FACTS["enrollment"]["state"]
        return [i for i, (name, st) in enumerate(pairs) if name == event and st in (None, state)]

    base = rate(baseline, args.seconds)
    print(f"baseline dict-lookup loop (20 rules): {base:,.0f} loops/s")
    results = {}
    kept = durable_backend.ANSWER_KEY_MAX
    for label, backend, keep in (("durable", "durable", 0),
                                 ("durable_repeated", "durable", kept),
                                 ("python", "python", kept)):
        durable_backend.ANSWER_KEY_MAX = keep  # 0: no answer kept, durable asked each time
        matcher = compile_ruleset(rules, backend=backend, name=f"bench_{label}")
        assert matcher.match(FACTS, NOW) == {"wait_for:step_7"}, label
        results[label] = rate(lambda m=matcher: m.match(FACTS, NOW), args.seconds)
        print(f"{label:>16}: {results[label]:,.0f} matches/s")
    durable_backend.ANSWER_KEY_MAX = kept
    print(f"RESULT rules_durable ratio={results['durable'] / base:.4g} target=0.02")
    print(f"RESULT rules_durable_repeated ratio={results['durable_repeated'] / base:.4g} "
          "target=0.02")
    print(f"RESULT rules_python ratio={results['python'] / base:.4g} target=0.1")


if __name__ == "__main__":
    main()
