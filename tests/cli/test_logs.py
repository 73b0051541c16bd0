"""The log filter: e-mail addresses and phone numbers never reach a log line, and the
timestamps that log lines are full of are not mistaken for phone numbers."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import warnings
from collections.abc import Iterator

import pytest

from engine.cli.logs import (
    REDACTED,
    UVICORN,
    JsonFormatter,
    ProcessName,
    RedactingFilter,
    TextFormatter,
    redact,
    setup_logging,
)
from engine.runtime.logids import log_ids


@pytest.mark.parametrize(("text", "expected"), [
    ("550 5.1.1 <ana.perez+x@example.co.uk>: no such user",
     f"550 5.1.1 <{REDACTED}>: no such user"),
    ("sms to +34 600 123 456 failed", f"sms to {REDACTED} failed"),
    ("call (415) 555-0134 now", f"call ({REDACTED} now"),
    ("retrying at 2026-12-02T02:29:41.123456+00:00", "retrying at 2026-12-02T02:29:41.123456+00:00"),
    ("due 2026-12-02 09:00 (Europe/Madrid)", "due 2026-12-02 09:00 (Europe/Madrid)"),
    ("at 2026-03-29T01:00:00Z to +1 415 555 0134", f"at 2026-03-29T01:00:00Z to {REDACTED}"),
    ("send key enr-42:hello:0 sent", "send key enr-42:hello:0 sent"),
    # the operator's database URL and hosts, not a person's address or phone: a worker
    # whose --db was wrong said "cannot open the store at postgresql+psycopg://[redacted]
    # :5447/x" in its JSON lines (an operator's trial, 2026-12-08)
    ("cannot open the store at postgresql+psycopg://app@10.20.30.40:5447/j: connection to "
     'server at "10.20.30.40", port 5447 failed',
     "cannot open the store at postgresql+psycopg://app@10.20.30.40:5447/j: connection to "
     'server at "10.20.30.40", port 5447 failed'),
    ("postgresql+psycopg://journeyman@db.example.com/journeyman",
     "postgresql+psycopg://journeyman@db.example.com/journeyman"),
    ("postgresql://app:s3cret@db.example.com/j",
     f"postgresql://app:{REDACTED}@db.example.com/j"),
    ("postgresql://app:s3cret@db/j", f"postgresql://app:{REDACTED}@db/j"),
    # a user that is an e-mail address, with a password (an API token) or without: both
    # were kept whole, the token too (a reviewer, 2026-12-08)
    ("POST https://jane.doe@example.com:tok3n@hooks.example/x failed",
     f"POST https://{REDACTED}:{REDACTED}@hooks.example/x failed"),
    ("http://jane@example.com@evil/x", f"http://{REDACTED}@evil/x"),
    ("see https://shop.example/a and jane@example.com",
     f"see https://shop.example/a and {REDACTED}"),
    ("mailto:ana@example.com, //bob@example.com", f"mailto:{REDACTED}, //{REDACTED}"),
    ("phones 600.123.456, +34.600.123.456 and 1.415.555.0134",
     f"phones {REDACTED}, {REDACTED} and {REDACTED}"),
])
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_record_and_its_exception_are_redacted_in_json_lines() -> None:
    def emit(log: logging.Logger) -> None:
        try:
            raise ValueError("bad address ana@example.com")
        except ValueError:
            log.exception("sending to %s failed", "+34600123456", extra={"journey": "welcome"})

    line = json.loads(_logged(emit, JsonFormatter(), RedactingFilter()))
    assert line["message"] == f"sending to {REDACTED} failed"
    assert line["journey"] == "welcome"
    assert "ana@example.com" not in line["exception"]
    assert REDACTED in line["exception"]


def _logged(emit: object, formatter: logging.Formatter, *filters: logging.Filter) -> str:
    """What `emit(logger)` writes through a handler with `filters` and `formatter`."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    for one in filters:
        handler.addFilter(one)
    handler.setFormatter(formatter)
    log = logging.getLogger("journeyman.test_logs")
    log.addHandler(handler)
    log.propagate = False
    try:
        assert callable(emit)
        emit(log)
    finally:
        log.removeHandler(handler)
    return stream.getvalue()


def _json_line(emit: object, *filters: logging.Filter) -> dict[str, object]:
    line: dict[str, object] = json.loads(_logged(emit, JsonFormatter(), *filters))
    return line


def test_a_lines_ids_are_fields_the_profile_id_redacted_as_the_message_is() -> None:
    key = "12345678-1234-5abc-9def-0123456789ab:welcome:0"  # digits enough for a phone
    ids = log_ids("send", "ana@example.com", "welcome", "hello", key)
    line = _json_line(lambda log: log.error("send %s failed", key, extra=ids),
                      ProcessName("w-7"), RedactingFilter())
    assert line["profile_id"] == REDACTED
    assert (line["kind"], line["journey"], line["step"]) == ("send", "welcome", "hello")
    assert line["send_key"] == key  # made by the engine: as it is
    assert line["worker"] == "w-7"
    assert "ana@example.com" not in json.dumps(line)


def test_a_line_without_ids_has_none_and_still_names_its_process() -> None:
    line = _json_line(lambda log: log.warning("the outbox loop failed"), ProcessName("h:1"))
    assert set(line) == {"ts", "level", "logger", "message", "worker"}
    assert line["worker"] == "h:1"
    assert log_ids("event", "bob") == {"kind": "event", "profile_id": "bob"}


@pytest.fixture
def restored() -> Iterator[None]:
    """setup_logging changes the process's logging: put it back after the test."""
    root = logging.getLogger()
    ours = logging.getLogger("journeyman")
    kept = (root.handlers[:], root.level, ours.level, sys.excepthook, threading.excepthook,
            {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
             for name in UVICORN})
    yield
    root.handlers[:], level, our_level, sys.excepthook, threading.excepthook, uvicorn = kept
    root.setLevel(level)
    ours.setLevel(our_level)
    for name, (handlers, propagate) in uvicorn.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate
    logging.captureWarnings(False)


def test_uvicorns_lines_warnings_and_uncaught_exceptions_are_json_lines(
        restored: None, capsys: pytest.CaptureFixture[str]) -> None:
    own = logging.StreamHandler()
    logging.getLogger("uvicorn.error").handlers[:] = [own]  # as uvicorn's config leaves it
    logging.getLogger("uvicorn.error").propagate = False
    setup_logging("json", "w-1")
    try:
        raise RuntimeError("no row for ana@example.com")
    except RuntimeError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
        sys.excepthook(*sys.exc_info())  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated", DeprecationWarning, stacklevel=1)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    asgi, uncaught, warned = lines
    assert (asgi["logger"], asgi["level"], asgi["worker"]) == ("uvicorn.error", "error", "w-1")
    assert REDACTED in asgi["exception"]
    assert "ana@example.com" not in json.dumps(lines)
    assert uncaught["level"] == "critical"
    assert "RuntimeError" in uncaught["exception"]
    assert (warned["logger"], warned["level"]) == ("py.warnings", "warning")


def test_journeymans_info_lines_are_written_other_libraries_warnings_only(
        restored: None, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("json", "w-1")
    logging.getLogger("journeyman.loops").info("the outbox loop's database answers again")
    logging.getLogger("journeyman.worker").debug("a detail")
    logging.getLogger("sqlalchemy.pool").info("a library's info")
    logging.getLogger("sqlalchemy.pool").warning("a library's warning")
    lines = [json.loads(line)["message"] for line in capsys.readouterr().err.splitlines()]
    assert lines == ["the outbox loop's database answers again", "a library's warning"]


def test_a_text_line_names_its_ids_after_the_message_before_the_traceback() -> None:
    """Text logs are grepped for a profile or a send as JSON logs are filtered."""
    def emit(log: logging.Logger) -> None:
        log.warning("plain line")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("send failed", extra=log_ids("send", "ana@example.com", "welcome",
                                                       "hello", "e1:hello:0"))

    first, second, *trace = _logged(emit, TextFormatter(), RedactingFilter()).splitlines()
    assert first.endswith("WARNING journeyman.test_logs: plain line")
    assert second.endswith(f"ERROR journeyman.test_logs: send failed [profile_id="
                           f"{REDACTED} journey=welcome step=hello send_key=e1:hello:0 "
                           f"kind=send]")
    assert trace[0] == "Traceback (most recent call last):"
    assert trace[-1] == "ValueError: boom"


def test_a_messages_later_lines_are_indented_under_it_in_text() -> None:
    """A provider's multi-line answer in a message cannot pass for a log line."""
    forged = "2026-12-07 10:00:00,000 ERROR journeyman.dispatch: all sends failed"

    def emit(log: logging.Logger) -> None:
        log.warning("send failed: 451 first line\n%s\rend", forged)

    lines = _logged(emit, TextFormatter()).splitlines()
    assert lines[0].endswith("WARNING journeyman.test_logs: send failed: 451 first line")
    assert lines[1] == f"    {forged}\\rend"
    assert len(lines) == 2
