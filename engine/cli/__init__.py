"""The `journeyman` command line (Typer). Thin: every command calls the public Python API.

Commands by audience, one module each:

| module | commands |
|---|---|
| `authoring.py` | `validate`, `graph`, `preview`, `simulate`, `version` |
| `running.py` | `serve`, `worker`, `demo` |
| `admin.py` | `migrate`, `keys`, `outbox`, `decisions`, `why` |
| `failures.py` | `failures` (list, `retry`, `discard`) |
| `privacy.py` | `profiles export`, `profiles forget` |
| `users.py` | `users` (dashboard users: `create`, `list`) |
| `qa.py` | `test` (scenario files), `replay` (an event log, with a per-step report) |
| `versions.py` | `plan`, `apply`, `journeys` (list, `pause`, `resume`, `archive`) |
| `engagement.py` | `stats` (each journey's KPIs), `suppressions` (list, `add`, `remove`) |

`common.py` has what they share (options, consoles, exit codes). Exit codes: 0
success; 1 the input is invalid (journeys, events, a store); 2 usage error (Typer's,
or a journeys path named on the command line that does not exist: `common.must_exist`;
`plan` and `apply` say it with 1, as every refusal of a deploy); 3 `serve` cannot have
its port.
Modules import their heavy dependencies inside the commands, so `--help` stays fast.
"""

from __future__ import annotations

from typing import Any

import typer

from engine.cli import (
    admin,
    authoring,
    engagement,
    failures,
    privacy,
    qa,
    running,
    users,
    versions,
)
from engine.cli.common import fail
from rules.errors import JourneymanError


class _Journeyman(typer.Typer):
    """The app, which shows an error of ours that a command did not catch as its message
    and exit 1, never a traceback (rules/errors.py: a traceback is for bugs)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except JourneymanError as exc:
            raise SystemExit(fail(exc).exit_code) from None


app = _Journeyman(
    name="journeyman",
    help="Rules-based customer journey orchestration: journeys as code.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# The order of `journeyman --help`.
for command in (authoring.validate, authoring.graph, authoring.simulate, authoring.preview,
                authoring.version, admin.outbox, admin.decisions, admin.why, running.serve,
                running.demo, running.worker, admin.migrate):
    app.command()(command)
app.command("test")(qa.run_tests)
app.command()(qa.replay)
app.add_typer(admin.keys, name="keys")
app.add_typer(failures.failures, name="failures")
app.add_typer(privacy.profiles, name="profiles")
app.command()(versions.plan)
app.command()(versions.apply)
app.add_typer(versions.journeys, name="journeys")
app.command()(engagement.stats)
app.add_typer(engagement.suppressions, name="suppressions")
app.add_typer(users.users, name="users")

__all__ = ["app"]
