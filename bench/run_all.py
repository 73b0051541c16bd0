"""Run every benchmark in bench/ and collect their RESULT lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    results: list[str] = []
    failed = 0
    for script in sorted(HERE.glob("*_bench.py")):
        print(f"== {script.name}", flush=True)
        proc = subprocess.run([sys.executable, str(script), *sys.argv[1:]], text=True,
                              capture_output=True, check=False)
        print(proc.stdout, end="")
        if proc.returncode != 0:
            failed += 1
            print(proc.stderr, file=sys.stderr)
        results += [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    print("== summary")
    print("\n".join(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
