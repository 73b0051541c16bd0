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

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from engine.ports import Channel
from journeys.errors import InvalidJourney
from journeys.textfile import read_text
from journeys.yamlsrc import too_many_values
from rules.errors import JourneymanError

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
    """Build the adapters a `channels.yaml` describes, by channel name."""
    from channels import ADAPTERS, build

    path = Path(path)
    try:
        data = YAML(typ="safe").load(read_text(path))
    except InvalidJourney as exc:  # unreadable, or not UTF-8: `path:line:col: why`
        raise ChannelConfigError(str(exc)) from None
    except YAMLError as exc:
        raise ChannelConfigError(f"{path}: {exc}") from None
    bomb = too_many_values(data, str(path))
    if bomb is not None:
        raise ChannelConfigError(str(bomb))
    if not isinstance(data, Mapping):
        raise ChannelConfigError(f"{path}: expected a mapping of channel name to adapter")
    built: dict[str, Channel] = {}
    for name, spec in data.items():
        where = f"{path}: {name}"
        if not isinstance(spec, Mapping) or "adapter" not in spec:
            raise ChannelConfigError(f"{where}: needs `adapter:` (one of "
                                     f"{', '.join(sorted(ADAPTERS))})")
        options = _expand({k: v for k, v in spec.items() if k != "adapter"}, where)
        if isinstance(options.get("auth"), list):
            options["auth"] = tuple(options["auth"])
        try:
            built[str(name)] = build(str(spec["adapter"]), **options)
        except (TypeError, ValueError) as exc:
            raise ChannelConfigError(f"{where}: {exc}") from None
    return built
