"""Channel configuration: `channels.yaml` maps each channel name a journey sends on to
an adapter and its options. Values may name environment variables, `${SMTP_PASSWORD}`,
so secrets stay out of the file.

```yaml
email:   {adapter: email, host: smtp.example.com, port: 587, start_tls: true,
          username: shop, password: "${SMTP_PASSWORD}", from_addr: "Shop <hi@shop.example>"}
sms:     {adapter: sms, url: "https://api.sms.example/v1/messages",
          body_template: {To: "{to}", Body: "{text}"}, auth: [acct, "${SMS_TOKEN}"]}
webhook: {adapter: webhook, url: "https://crm.example/hooks", secret: "${HOOK_SECRET}"}
```
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from channels.options import checked_options, option_names
from engine.ports import Channel
from journeys.errors import InvalidJourney, Problem
from journeys.templating import CHANNEL_KINDS
from journeys.textfile import read_text
from journeys.yamlsrc import load_yaml, plain
from rules.errors import JourneymanError, did_you_mean

ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ChannelConfigError(JourneymanError, ValueError):
    """channels.yaml is malformed, names an unknown adapter or an unset variable."""


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):
        def env(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ChannelConfigError(f"{where}: environment variable {name} is not set")
            return os.environ[name]
        return ENV.sub(env, value)
    if isinstance(value, Mapping):
        return {str(k): _expand(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, where) for v in value]
    return value


def load(path: str | Path) -> dict[str, Channel]:
    """Build the adapters a `channels.yaml` describes, by channel name. Every problem
    (an unknown channel, adapter or option, a value of the wrong type, an unset
    variable) is a `file:line:column` line of one ChannelConfigError."""
    from channels import ADAPTERS, build

    path = Path(path)
    try:
        source = load_yaml(read_text(path), str(path))
    except InvalidJourney as exc:  # unreadable, not UTF-8, not YAML, a bomb: positioned
        raise ChannelConfigError(str(exc)) from None
    data = source.data
    if not isinstance(data, Mapping):
        raise ChannelConfigError(f"{path}:1:1: expected a mapping of channel name to "
                                 "adapter")
    problems: list[Problem] = []
    specs: dict[str, tuple[str, dict[str, Any]]] = {}
    for key_, spec in data.items():
        name = str(key_)
        if name not in CHANNEL_KINDS:
            problems.append(source.problem((name,), f"unknown channel {name!r}"
                                           + did_you_mean(name, CHANNEL_KINDS)
                                           + f"; journeys send on {', '.join(CHANNEL_KINDS)}",
                                           key=True))
            continue
        adapter = spec.get("adapter") if isinstance(spec, Mapping) else None
        if not isinstance(adapter, str) or adapter not in ADAPTERS:
            problems.append(source.problem(
                (name, "adapter") if isinstance(spec, Mapping) and "adapter" in spec
                else (name,), f"{name}: needs `adapter:`, one of {', '.join(sorted(ADAPTERS))}"
                + (did_you_mean(adapter, ADAPTERS) if isinstance(adapter, str) else "")))
            continue
        options: dict[str, Any] = {}
        for key, value in spec.items():
            if key == "adapter":
                continue
            try:
                options[str(key)] = _expand(plain(value), f"{name}.{key}")
            except ChannelConfigError as exc:
                problems.append(source.problem((name, key), str(exc)))
        converted, wrong = checked_options(ADAPTERS[adapter], options)
        known = option_names(ADAPTERS[adapter])
        problems.extend(source.problem((name, key), f"{name}.{key}: {why}",
                                       key=key not in known) for key, why in wrong.items())
        specs[name] = (adapter, converted)
    if problems:
        raise ChannelConfigError("\n".join(str(p) for p in sorted(problems)))
    built: dict[str, Channel] = {}
    for name, (adapter, options) in specs.items():
        try:
            built[name] = build(adapter, **options)
        except (TypeError, ValueError) as exc:  # the adapter's own checks (a from_addr)
            line, col = source.position((name,))
            raise ChannelConfigError(f"{path}:{line}:{col}: {name}: {exc}") from None
    return built
