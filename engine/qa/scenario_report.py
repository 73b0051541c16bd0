"""How a scenario's result reads: one line per scenario, and for a failure the
expected-vs-actual timeline (events, messages, exits, skips and deferrals in time
order, each expectation marked and the scenario line it comes from).

`summary_line(result)` and `failure_lines(result)` return `(text, style)` pieces;
`plain(...)` joins them for logs and pytest, and `journeyman test` prints them through
rich, in colour on a terminal.

    FAIL  scenarios/welcome.scenario.yaml  a site sign-up is welcomed twice  (0.05s)
          2026-03-02T09:00:00Z          ana  track Signed Up {source: site}     line 9
      ok  2026-03-02T09:00:00Z  message ana  welcome/welcome_site  email welcome_site  line 12
    DIFF  2026-03-04T09:00:00Z  message ana  welcome/preferences  ...        line 13
          at: expected 2026-03-04T08:00:00Z, got 2026-03-04T09:00:00Z (1h later)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.core.times import iso
from engine.qa.scenarios import Row, ScenarioResult

Piece = tuple[str, str]  # (text, rich style)
Line = list[Piece]

LABELS = {"event": ("", "dim"), "ok": ("ok", "green"), "missing": ("MISSING", "bold red"),
          "unexpected": ("UNEXPECTED", "bold red"), "differs": ("DIFFERS", "bold yellow"),
          "order": ("ORDER", "bold yellow"), "context": ("", "dim")}
WIDTH = 12  # the label column
NOUNS = {"messages": "message", "exits": "exit", "skipped": "skipped", "deferred": "deferred",
         "event": ""}
MEANING = {"missing": "expected, did not happen", "unexpected": "happened, not expected",
           "differs": "happened, not as expected", "order": "expected in another order",
           "context": "also happened (not checked)"}


def summary_line(result: ScenarioResult) -> Line:
    if result.invalid:
        status, style = "ERROR", "bold red"
    elif result.passed:
        status, style = "PASS", "bold green"
    else:
        status, style = "FAIL", "bold red"
    line: Line = [(f"{status:<5} ", style), (result.file, "bold"), (f"  {result.title}", "")]
    if not result.invalid:
        line.append((f"  ({result.seconds:.2f}s)", "dim"))
    return line


def failure_lines(result: ScenarioResult) -> list[Line]:
    """The details under a failing or invalid scenario's summary line."""
    if result.problems:
        return [[("  " + str(p), "red")] for p in result.problems]
    if result.error is not None:
        return [[("  " + text, "red")] for text in result.error.splitlines()]
    lines: list[Line] = []
    if result.start is not None and result.ended is not None:
        lines.append([(f"  journeys folder {result.journeys}, from {iso(result.start)} to "
                       f"{iso(result.ended)} (fake clock)", "dim")])
    lines.append([(f"  {'':<{WIDTH}}{'time':<22}{'what':<10}{'user':<12}detail", "dim")])
    for row in result.rows:
        lines += _row_lines(row)
    for mismatch in result.profile_mismatches:
        lines.append([(f"  {'PROFILE':<{WIDTH}}", "bold red"), (str(mismatch), ""),
                      (f"  line {mismatch.line}", "dim")])
    counts = result.counts()
    if counts:
        lines.append([("  " + ", ".join(f"{n} {_plural(kind, n)}"
                                        for kind, n in sorted(counts.items())), "bold")])
    return lines


def _plural(kind: str, n: int) -> str:
    words = {"missing": "missing", "unexpected": "unexpected", "differs": "different",
             "order": "out of order", "profile": "profile mismatch" + ("es" if n > 1 else "")}
    return words.get(kind, kind)


def _row_lines(row: Row) -> list[Line]:
    label, style = LABELS[row.mark]
    at = iso(row.at) if row.at is not None else "(any time)"
    where = f"  line {row.line}" if row.line else ""
    if row.kind == "event":
        user = str(row.fields.get("user", ""))
        return [[(f"  {'':<{WIDTH}}{at:<22}{'event':<10}{user:<12}", "dim"), (row.text, "dim"),
                 (where, "dim")]]
    fields = row.fields
    user = str(fields.get("user", ""))
    text_style = "dim" if row.mark == "context" else ""
    head: Line = [(f"  {label:<{WIDTH}}", style), (f"{at:<22}", text_style),
                  (f"{NOUNS[row.kind]:<10}", text_style), (f"{user:<12}", text_style),
                  (describe(row.kind, fields), text_style), (where, "dim")]
    if row.mark in MEANING:
        head.append((f"  ({MEANING[row.mark]})", style if row.mark != "context" else "dim"))
    lines = [head]
    lines += [[(f"  {'':<{WIDTH}}  {note}", style)] for note in row.notes]
    return lines


def describe(kind: str, fields: Mapping[str, Any]) -> str:
    """`journey/step  channel template  reason ...`: the record's fields but user and at."""
    where = "/".join(str(fields[k]) for k in ("journey", "step") if fields.get(k))
    parts = [where] if where else []
    if kind == "messages":
        parts += [str(fields[k]) for k in ("channel", "template") if fields.get(k)]
        if fields.get("to"):
            parts.append(f"to {fields['to']}")
        if fields.get("subject"):
            parts.append(f"{fields['subject']!r}")
    else:
        parts += [str(fields[k]) for k in ("channel",) if fields.get(k)]
        if fields.get("reason"):
            parts.append(f"reason {fields['reason']}")
        until = fields.get("until")
        if until is not None:
            parts.append(f"until {iso(until)}" if hasattr(until, "tzinfo") else str(until))
    return "  ".join(parts)


def plain(lines: Iterable[Line]) -> str:
    return "\n".join("".join(text for text, _ in line).rstrip() for line in lines)


def report_text(result: ScenarioResult) -> str:
    """The summary line and, if it did not pass, the timeline: plain text."""
    lines = [summary_line(result)]
    if not result.passed:
        lines += failure_lines(result)
    return plain(lines)
