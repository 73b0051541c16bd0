"""channels.yaml: adapters per channel, secrets from the environment, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels import ADAPTERS, EmailChannel, FileChannel, WebhookChannel
from channels.config import ChannelConfigError, load


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
audit: {{adapter: file, path: "{tmp_path / 'audit.jsonl'}"}}
"""))
    assert isinstance(built["email"], EmailChannel)
    assert isinstance(built["webhook"], WebhookChannel)
    assert built["webhook"].secret == "s3cret"
    assert isinstance(built["audit"], FileChannel)
    for channel in built.values():
        close = getattr(channel, "close", None)
        if callable(close):
            close()


@pytest.mark.parametrize(("text", "message"), [
    ("email: {adapter: carrier_pigeon}", "unknown channel adapter 'carrier_pigeon'"),
    ("email: {host: x}", "email: needs `adapter:`"),
    ("webhook: {adapter: webhook, url: 'https://x', secret: '${NOT_SET_ANYWHERE}'}",
     "environment variable NOT_SET_ANYWHERE is not set"),
    ("email: {adapter: email, host: x}", "from_addr"),
    ("- just a list", "expected a mapping"),
    ("email: {adapter: email", "channels.yaml"),
])
def test_mistakes_are_reported_clearly(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ChannelConfigError, match=message):
        load(write(tmp_path, text))


def test_every_adapter_is_registered() -> None:
    assert set(ADAPTERS) == {"console", "email", "file", "sms", "webhook"}
