from __future__ import annotations

from pathlib import Path
from textwrap import dedent

# A wait until the time an event names, then a send (extreme dates, isolation)
UNTIL = """
journey: until
version: 1
entry: {event: Scheduled}
steps:
  - id: hold
    wait: {until: event.properties.when}
  - id: after
    send: {channel: email, template: hello}
"""


def write_folder(root: Path, journeys: dict[str, str], templates: dict[str, str] | None = None,
                 policy: str | None = None) -> Path:
    """A journeys folder in `root`; templates default to a stub email per referenced id.
    Without `policy`, a policy that asks for nothing (no consent, no quiet hours), so a
    test sees its journey's own behaviour; a folder without any `policy.yaml` would run
    under the bundled safe policy."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "templates").mkdir(exist_ok=True)
    for jid, text in journeys.items():
        (root / f"{jid}.yaml").write_text(dedent(text))
    for tid, text in (templates or {}).items():
        (root / "templates" / f"{tid}.yaml").write_text(dedent(text))
    (root / "policy.yaml").write_text(dedent(policy) if policy is not None
                                      else "consent_required: []\n")
    return root


def stub_email(tid: str) -> str:
    return f"channel: email\nsubject: '{tid} for {{{{ profile.id }}}}'\ntext: 'hi {{{{ profile.id }}}}'\n"


# The smallest journey that sends: one e-mail on Signed Up (template `welcome`).
HELLO = """
journey: hello
version: 1
entry: {event: Signed Up}
steps:
  - id: welcome
    send: {channel: email, template: welcome}
"""

ONE_EMAIL_A_WEEK = """
timezone: UTC
frequency_caps:
  email: {max: 1, per: 7d}
consent_required: [email]
"""


def capped_journey(jid: str, priority: int, policy: str = "", *, event: str = "Bought",
                   template: str = "note") -> str:
    """A one-send journey with a priority (and its own `policy:`), for cap contests."""
    return f"""
journey: {jid}
version: 1
priority: {priority}
entry: {{event: {event}}}
{policy}
steps:
  - id: note
    send: {{channel: email, template: {template}}}
"""
