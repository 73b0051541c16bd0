"""channels.yaml: adapters per channel, secrets from the environment, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels import ADAPTERS, EmailChannel, FileChannel, WebhookChannel
from channels.config import ChannelConfigError, load
from journeys.templating import CHANNEL_KINDS

KNOWN = ", ".join(sorted(ADAPTERS))  # a new adapter is one line in ADAPTERS, not here too


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "channels.yaml"
    path.write_text(text)
    return path


def test_adapters_are_built_per_channel_with_env_secrets(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    built = load(write(tmp_path, f"""
email: {{adapter: email, host: smtp.example.com, port: 587, from_addr: "Shop <hi@shop.example>"}}
webhook: {{adapter: webhook, url: "https://crm.example/hooks", secret: "${{HOOK_SECRET}}"}}
file: {{adapter: file, path: "{tmp_path / 'audit.jsonl'}"}}
"""))
    assert isinstance(built["email"], EmailChannel)
    assert isinstance(built["webhook"], WebhookChannel)
    assert built["webhook"].secret == "s3cret"
    assert isinstance(built["file"], FileChannel)
    for channel in built.values():
        close = getattr(channel, "close", None)
        if callable(close):
            close()


@pytest.mark.parametrize(("text", "message"), [
    ("email: {adapter: carrier_pigeon}", "channels.yaml:1:18: email: needs `adapter:`, one of "
     + KNOWN),
    ("email: {adapter: emial}", f"one of {KNOWN} " + r"\(did you mean 'email'\?\)"),
    ("email: {host: x}", "email: needs `adapter:`"),
    ("webhook: {adapter: webhook, url: 'https://x', secret: '${NOT_SET_ANYWHERE}'}",
     "environment variable NOT_SET_ANYWHERE is not set"),
    ("email: {adapter: email, host: x}", "from_addr"),
    ("- just a list", "expected a mapping"),
    ("email: {adapter: email", "channels.yaml"),
    ("webhook: {adapter: webhook, url: 'https://x', secret: s, resolver: socket.getaddrinfo}",
     "webhook.resolver: cannot be set in channels.yaml"),  # code only (channels/resolve.py)
])
def test_mistakes_are_reported_clearly(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ChannelConfigError, match=message):
        load(write(tmp_path, text))


def test_every_adapter_is_registered() -> None:
    """Each adapter class in a module of channels/ is in ADAPTERS, under its `name`."""
    import importlib
    import inspect

    import channels

    found = {}
    for module in sorted(Path(channels.__file__).parent.glob("*.py")):
        loaded = importlib.import_module(f"channels.{module.stem}")
        for _, cls in inspect.getmembers(loaded, inspect.isclass):
            if cls.__module__ == loaded.__name__ and callable(getattr(cls, "send", None)) \
                    and isinstance(getattr(cls, "name", None), str):
                found[cls.name] = cls
    assert {"console", "email", "file", "sms", "webhook"} <= set(found)
    assert found == ADAPTERS


def test_values_from_the_environment_mean_what_they_say(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`${VAR}` values are strings: `use_tls: "${SMTP_TLS}"` with SMTP_TLS=false turned
    TLS on (bool("false") is true). A flag or a number given as text is read as one."""
    monkeypatch.setenv("SMTP_TLS", "false")
    monkeypatch.setenv("SMTP_PORT", "2525")
    built = load(write(tmp_path, """
email: {adapter: email, host: smtp.example.com, port: "${SMTP_PORT}", use_tls: "${SMTP_TLS}",
        start_tls: "no", timeout: "2.5", password: 123456, from_addr: "Shop <hi@shop.example>"}
"""))
    email = built["email"]
    assert isinstance(email, EmailChannel)
    assert (email.port, email.use_tls, email.timeout) == (2525, False, 2.5)


def test_every_wrong_option_is_a_positioned_line(tmp_path: Path) -> None:
    """Unknown channels and options (with "did you mean"), values of the wrong type, a
    port out of range, an SMS method or a header that cannot go out: each a
    `file:line:column` line, all of them at once (they were raw Python errors, one at a
    time, or not caught: `port: 99999`, `start_tls: "maybe"` started without a word)."""
    path = write(tmp_path, """\
emial: {adapter: email, from_addr: "Shop <hi@shop.example>"}
email: {adapter: email, from_addr: "Shop <hi@shop.example>", port: 99999, start_tls: maybe,
        hots: smtp.example.com, timeout: abc}
sms: {adapter: sms, url: "https://sms.example", method: "DELETE\\r\\nX: y"}
webhook: {adapter: webhook, url: "https://crm.example", secret: s, headers: {X-A: "1\\r\\nX-B: 2"}}
""")
    with pytest.raises(ChannelConfigError) as caught:
        load(path)
    lines = str(caught.value).splitlines()
    assert lines[:5] == [
        f"{path}:1:1: unknown channel 'emial' (did you mean 'email'?); journeys send on "
        + ", ".join(CHANNEL_KINDS),
        f"{path}:2:68: email.port: must be a port from 1 to 65535, not 99999",
        f"{path}:2:86: email.start_tls: must be true or false, not 'maybe'",
        f"{path}:3:9: email.hots: unknown option 'hots' (did you mean 'host'?); EmailChannel "
        "takes: from_addr, host, port, use_tls, start_tls, username, password, timeout, "
        "reply_to, message_id_domain, validate_certs, resolver",
        f"{path}:3:42: email.timeout: must be a number, not 'abc'",
    ]
    assert len(lines) == 5  # the adapters' own checks come once the options are right
    for text, message in [
        ('sms: {adapter: sms, url: "https://sms.example", method: "DELETE\\r\\nX: y"}',
         "sms method must be one of POST, PUT, PATCH, GET"),
        ('webhook: {adapter: webhook, url: "https://c.example", secret: s, '
         'headers: {X-A: "1\\r\\nX-B: 2"}}', "the value must be text without line breaks"),
        ('webhook: {adapter: webhook, url: "https://c.example", secret: s, '
         'headers: {"X A": "1"}}', "is not a valid HTTP header name"),
    ]:
        with pytest.raises(ChannelConfigError, match=message):
            load(write(tmp_path, text))


@pytest.mark.parametrize("port", ["²", "١٢", "5" * 5000])
def test_a_port_of_digits_int_cannot_read_is_a_positioned_line(tmp_path: Path,
                                                                port: str) -> None:
    """`"²".isdigit()` is true and `int("²")` a ValueError: it escaped as a traceback."""
    path = write(tmp_path, f'email: {{adapter: email, from_addr: "a@b.c", port: "{port}"}}\n')
    with pytest.raises(ChannelConfigError, match=r"email\.port: must be a whole number"):
        load(path)
