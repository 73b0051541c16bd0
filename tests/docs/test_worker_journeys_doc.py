"""A shell block of the docs that starts `serve --journeys DIR` on a store gives its
`worker`s on that store the same `--journeys`: without it a worker runs the bundled
library, and since 479dead refuses a store of other journeys (exit 1). docs/service.md
showed `journeyman worker --db URL   # more workers` under `serve --journeys my_journeys
--db URL` (review of 479dead)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```(?:sh|bash|console)?\n(.*?)```", re.S)


def _commands(block: str) -> list[str]:
    """The block's commands, a line continued by `\\` joined to the next."""
    return [line for line in block.replace("\\\n", " ").splitlines()
            if line.lstrip().startswith("journeyman ")]


def _option(command: str, name: str) -> str | None:
    found = re.search(rf"{name}[ =](\S+)", command)
    return found.group(1) if found else None


def test_workers_beside_serve_with_journeys_give_the_same_folder() -> None:
    wrong = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in BLOCK.findall(page.read_text(encoding="utf-8")):
            commands = _commands(block)
            folders = {_option(c, "--db"): _option(c, "--journeys") for c in commands
                       if c.split()[1] == "serve" and _option(c, "--journeys")}
            for command in commands:
                if command.split()[1] != "worker":
                    continue
                folder = folders.get(_option(command, "--db"))
                if folder is not None and _option(command, "--journeys") != folder:
                    wrong.append(f"{page.name}: {command.strip()}")
    assert not wrong, wrong
