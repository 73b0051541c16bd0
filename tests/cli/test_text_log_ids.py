"""Text log lines end with their ids (engine/cli/logs.py `TextFormatter`); a profile id
is the client's text, any text of up to 255 characters: it must not end the line (a
forged line after it) nor pass for more ids than one."""

from __future__ import annotations

import io
import logging

from engine.cli.logs import RedactingFilter, TextFormatter
from engine.runtime.logids import log_ids

FORGED = "p1\n2026-12-07 21:00:00,000 CRITICAL journeyman.dispatch: forged line"


def _text(profile_id: str) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(TextFormatter())
    log = logging.getLogger("journeyman.test_text_log_ids")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("send failed", extra=log_ids("send", profile_id, "welcome", "hello",
                                                 "e1:hello:0"))
    finally:
        log.removeHandler(handler)
    return stream.getvalue()


def test_a_profile_id_with_a_line_break_stays_on_its_line() -> None:
    written = _text(FORGED)
    assert written.count("\n") == 1
    assert written.endswith(' [profile_id="p1\\n2026-12-07 21:00:00,000 CRITICAL '
                            'journeyman.dispatch: forged line" journey=welcome step=hello '
                            'send_key=e1:hello:0 kind=send]\n')


def test_a_profile_id_with_spaces_is_one_id() -> None:
    written = _text("p1 send_key=x")
    assert written.endswith(' [profile_id="p1 send_key=x" journey=welcome step=hello '
                            'send_key=e1:hello:0 kind=send]\n')


def test_a_plain_profile_id_is_as_it_is() -> None:
    assert _text("visitor-42").endswith(
        " [profile_id=visitor-42 journey=welcome step=hello send_key=e1:hello:0 kind=send]\n")


def test_a_profile_id_that_is_an_address_with_any_local_part_is_redacted() -> None:
    """RFC 5322 allows ! # $ % & ' * ^ ` { | } ~ in a local part (o'brien@...): the
    redaction took the address from after them and left its start in the line."""
    for address in ("o'brien@example.com", "ana!smith@example.com", "j&j{x}~y@example.com"):
        written = _text(address)
        assert " [profile_id=[redacted] journey=welcome" in written, written
        assert address.split("@")[0][:2] not in written.split(" [")[-1]


def test_an_address_with_a_quoted_local_part_or_a_literal_domain_is_redacted() -> None:
    """`"jane doe"@example.com` was left whole (a quote is no character of an unquoted
    local part, so nothing before the `@` matched), and so was `jane@[192.0.2.1]`."""
    for address in ('"jane doe"@example.com', '"a\\"b"@example.org', "jane@[192.0.2.1]",
                    "jane@[IPv6:2001:db8::1]"):
        written = _text(address)
        assert " [profile_id=[redacted] journey=welcome" in written, written
        assert "jane" not in written, written
        assert "a\\" not in written, written
