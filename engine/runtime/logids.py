"""The ids a log line about one event, timer or send carries as `extra=`: written as
fields of their own by `--log-format json` (engine/cli/logs.py: `profile_id`, `journey`,
`step`, `send_key`, and `kind`, what the line is about), redacted as the message is.

Only for the lines that are written anyway (failures, retries, parking): building the
dict is work a quiet path must not do.
"""

from __future__ import annotations


def log_ids(kind: str, profile_id: str, journey: str = "", step: str = "",
            send_key: str = "") -> dict[str, str]:
    """`extra=` for a line about `kind` (event, timer, send) of `profile_id`; empty ids
    are left out."""
    ids = {"kind": kind, "profile_id": profile_id, "journey": journey, "step": step,
           "send_key": send_key}
    return {name: value for name, value in ids.items() if value}
