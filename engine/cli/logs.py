"""Logging for `serve`, `worker` and `demo`: plain text or JSON lines
(`--log-format json`), and never a person's data.

Log lines name ids (profile, journey, step, send key), never values. The log calls about
one event, timer or send pass those ids with `extra=` (`FIELDS`): JSON lines carry them
as fields of their own, text lines in brackets at their end, and every line of a
process carries `worker`, the process's name (`journeyman worker --name`, default
host:pid). As a safety net for text that
comes from elsewhere (an SMTP server's reply, an exception message), a filter replaces
anything that looks like an e-mail address or a phone number before a record is
written, at every level: in the message, the traceback and the `profile_id` field (a
profile id that is an e-mail address is `[redacted]` there too; `journeyman failures`
and `journeyman outbox` show it).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

# The local part with every character RFC 5322 allows unquoted but `/` and `=` (a path, a
# `key=value` before an address): with `\w.+-` only, `o'brien@example.com` kept `o'`. A
# quoted local part (`"jane doe"@example.com`, spaces and escapes allowed) is taken whole,
# quotes included, or its words before the space were left in the line; the domain may be
# a literal address (`jane@[192.0.2.1]`). Not the user of a URL
# (`postgresql+psycopg://app@10.0.0.5/journeys`): that is the operator's, and "cannot open
# the store at postgresql+psycopg://[redacted]:5432/j" hid which host a process could not
# reach. A URL's user that is an e-mail address and its password are redacted by
# `USERINFO` first (`https://jane@example.com:token@hooks.example/` was kept whole). An
# unquoted local part is tried only from the start of a run of its characters (the first
# lookbehind): tried from each character, each try reading to the run's end for an `@`, a
# 40,000-character run took ~25 s (quadratic).
EMAIL = re.compile(r'(?:"(?:[^"\\\r\n]|\\.){1,64}"'
                   r"|(?<![\w.+!#$%&'*^`{|}~-])(?<!://)[\w.+!#$%&'*^`{|}~-]+)"
                   r"@(?:[\w-]+(?:\.[\w-]+)+|\[[\w.:-]{1,64}\])")
PHONE = re.compile(r"(?<![\w-])\+?\d[\d ().-]{7,}\d")
# A URL's user and password: everything from `://` to the last `@` before its host.
USERINFO = re.compile(r"(?<=://)([^\s/?#\[\]]*)@")
# Timestamps look like phone numbers to PHONE (digits and dashes): kept as they are; so
# are IPv4 addresses (`10.20.30.40`: 8 digits and dots), which a database's or a
# provider's connection error names.
KEPT = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
                      r"(?:Z|[+-]\d{2}:?\d{2})?)?"
                      r"|(?<![\d.+])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)")
REDACTED = "[redacted]"
# Fields our log calls attach with `extra=` that belong in structured output; `kind` is
# what the line is about (event, timer, send).
FIELDS = ("profile_id", "journey", "step", "send_key", "kind")
# Of those, the one a client chose (a user id may be an e-mail address): redacted as the
# message is. The others are names the operator or the engine made (a send key is
# derived from a uuid: its digits could pass for a phone number).
CLIENT_FIELDS = ("profile_id",)
# Set on every record of the process by `ProcessName` (the operator's, not redacted).
WORKER = "worker"


def _phone(match: re.Match[str]) -> str:
    """A phone number has 8 digits or more; fewer is an SMTP status (550 5.1.1), a
    version or a count, kept for the diagnosis."""
    found = match.group()
    return REDACTED if sum(c.isdigit() for c in found) >= 8 else found


def _userinfo(match: re.Match[str]) -> str:
    """A URL's user kept unless it is an e-mail address; its password never."""
    user, colon, _password = match.group(1).partition(":")
    if "@" in user:
        user = REDACTED
    return f"{user}{colon}{REDACTED if colon else ''}@"


def redact(text: str) -> str:
    text = EMAIL.sub(REDACTED, USERINFO.sub(_userinfo, text))
    out: list[str] = []
    last = 0
    for stamp in KEPT.finditer(text):
        out += [PHONE.sub(_phone, text[last:stamp.start()]), stamp.group()]
        last = stamp.end()
    out.append(PHONE.sub(_phone, text[last:]))
    return "".join(out)


class RedactingFilter(logging.Filter):
    """Replaces e-mail addresses and phone numbers in the message and its arguments, the
    traceback and the id fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        for field in CLIENT_FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                setattr(record, field, redact(str(value)))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class ProcessName(logging.Filter):
    """Names the process on every record (`worker`) that does not name one already."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name_of_process = name

    def filter(self, record: logging.LogRecord) -> bool:
        if WORKER not in record.__dict__:
            setattr(record, WORKER, self.name_of_process)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and our id fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage()}
        line.update({f: record.__dict__[f] for f in (*FIELDS, WORKER)
                     if record.__dict__.get(f) is not None})
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, then the line's ids as `name=value` in brackets
    (`[profile_id=p-1 journey=welcome send_key=... kind=send]`): grep a text log for a
    profile or a send as a JSON log is filtered by its fields (every id, also one the
    message names: one shape to grep for)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 -- logging's
        line = super().formatMessage(record)  # the traceback comes after it (format)
        # A message's later lines indented under it: a provider's multi-line answer
        # (an SMTP reply, an HTTP body quoted in an error) could otherwise pass for log
        # lines of their own, with a time and a level of the provider's choosing.
        line = line.replace("\r", "\\r").replace("\n", "\n    ")
        ids = [f"{f}={_id_text(str(value))}" for f in FIELDS
               if (value := record.__dict__.get(f))]
        return f"{line} [{' '.join(ids)}]" if ids else line


def _id_text(value: str) -> str:
    """An id as it is, or in JSON's quotes with its line breaks, control characters and
    quotes escaped when it has any, or a space: a profile id is the client's text, and
    one with a line break wrote a forged line of its own after its line."""
    if all(c.isprintable() and not c.isspace() and c != '"' for c in value):
        return value
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}"
                   for c in json.dumps(value, ensure_ascii=False))


class ClosedByTheStop(logging.Filter):
    """uvicorn's lines when a stop closes the requests still under way after its grace
    (engine/service.py GRACEFUL_SHUTDOWN, a client stalled halfway through its body):
    a stop that went as meant, said as one warning, not two errors with a traceback
    (an alert on the log's errors counted them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if "timeout graceful shutdown exceeded" in str(error or record.getMessage()):
            if error is not None:  # the request's task, cancelled: its traceback says nothing
                return False
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = ("the stop's grace ran out: %s request(s) under way "
                                       "closed by the stop"), (_count(record),)
        return True


def _count(record: logging.LogRecord) -> str:
    found = re.search(r"\d+", record.getMessage())
    return found.group() if found else "?"


def process_name() -> str:
    """The default name of a process: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


# uvicorn's loggers: its default config gives them handlers of their own (plain text,
# not redacted) and no propagation; the service starts uvicorn with `log_config=None`,
# and here they are handed to the root logger's handler like every other.
UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
CLI = "journeyman.cli"  # the start line of `serve` and `worker`, and why one cannot start


def setup_logging(log_format: str = "text", name: str | None = None) -> None:
    """One handler on the root logger for every line of the process: `name` (default
    host:pid) as `worker`, redacted, as text or JSON lines. With JSON, whatever else
    would write to stderr goes through it too: uvicorn's lines, Python's warnings, and
    an exception nothing caught (in the main thread or another), as an `exception`
    field."""
    handler = logging.StreamHandler()
    handler.addFilter(ProcessName(name or process_name()))
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Third-party libraries say warnings and errors; journeyman's own loggers info lines
    # too: rare by rule (a database that answers again, time-driven entries armed, a
    # person forgotten). Never one per event, timer or send: those are debug, if any.
    root.setLevel(logging.WARNING)
    logging.getLogger("journeyman").setLevel(logging.INFO)
    for uvicorn in UVICORN:
        logger = logging.getLogger(uvicorn)
        logger.handlers.clear()
        logger.propagate = True
    if not any(isinstance(f, ClosedByTheStop) for f in logging.getLogger("uvicorn.error").filters):
        logging.getLogger("uvicorn.error").addFilter(ClosedByTheStop())
    logging.captureWarnings(True)
    if log_format == "json":
        sys.excepthook = _uncaught
        threading.excepthook = _uncaught_in_thread
    # A run that finds the previous one still running is skipped on purpose
    # (max_instances=1, coalesce): not worth a warning each time.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


def _uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger(CLI).critical("stopped by an exception nothing caught",
                                    exc_info=(kind, exc, tb))


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or isinstance(args.exc_value, SystemExit):
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger(CLI).critical("the thread %s stopped on an exception nothing caught",
                                    name, exc_info=(args.exc_type, args.exc_value,
                                                    args.exc_traceback))
