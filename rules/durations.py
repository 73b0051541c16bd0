"""Durations: `30s`, `15m`, `1h`, `2d`, `1w`, compounds like `1h30m`, or ISO 8601 `P1DT2H`."""

from __future__ import annotations

import re
from datetime import timedelta

from rules.errors import JourneymanError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SHORT = re.compile(r"^(?:\d+[smhdw])+$")
_PART = re.compile(r"(\d+)([smhdw])")
_ISO = re.compile(r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
HINT = "use 30s, 15m, 1h, 2d, 1w or ISO 8601 like P1DT2H"
# The longest duration: 100 years. Longer ones fall past the calendar's end (year 9999)
# when added to now, and no journey waits that long.
MAX_DAYS = 36_525
MAX_SECONDS = MAX_DAYS * 86400
TOO_LONG = f"longer than the maximum of {MAX_DAYS}d (100 years)"


class DurationError(JourneymanError, ValueError):
    """A duration that does not parse; the message says how to write one."""


def parse_duration(text: str) -> timedelta:
    if not isinstance(text, str):
        raise DurationError(f"bad duration {text!r}: {HINT}")
    value = text.strip()
    if any(len(digits) > 12 for digits in re.findall(r"\d+", value)):
        raise DurationError(f"bad duration {_shown(text)}: {TOO_LONG}")
    if _SHORT.match(value):
        seconds = sum(int(n) * UNITS[u] for n, u in _PART.findall(value))
    elif (m := _ISO.match(value)) and value not in ("P", "PT") and not value.endswith("T"):
        weeks, days, hours, minutes, secs = (int(g or 0) for g in m.groups())
        seconds = weeks * 604800 + days * 86400 + hours * 3600 + minutes * 60 + secs
    elif re.match(r"^P(\d+Y|\d+M)", value):
        raise DurationError(f"bad duration {text!r}: months and years vary in length; "
                            "use days (like 30d) or a calendar wait with `until`")
    else:
        raise DurationError(f"bad duration {text!r}: {HINT}")
    if seconds <= 0:
        raise DurationError(f"bad duration {text!r}: must be longer than zero")
    if seconds > MAX_SECONDS:
        raise DurationError(f"bad duration {_shown(text)}: {TOO_LONG}")
    return timedelta(seconds=seconds)


def _shown(text: str) -> str:
    """The duration as a message quotes it: a hostile one can be very long."""
    return repr(text) if len(text) <= 40 else repr(text[:37] + "...")
