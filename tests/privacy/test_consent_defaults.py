"""Consent that works by default (issue 13 §2): without a `policy.yaml` the bundled safe
policy applies (consent required on marketing channels, quiet hours), and `validate`
says so; a policy file that does not name `consent_required` still requires consent on
email, sms and push."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from engine.cli import app
from engine.testing import InMemoryEngine
from journeys.loader import load_path

T0 = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)  # 12:00 in Madrid: outside quiet hours
TEXTS = """
journey: texts
version: 1
entry: {event: Signed Up}
steps:
  - id: text
    send: {channel: sms, template: text}
  - id: mail
    send: {channel: email, template: mail}
"""


def folder_without_policy(root: Path) -> Path:
    (root / "templates").mkdir(parents=True)
    (root / "texts.yaml").write_text(TEXTS)
    (root / "templates" / "text.yaml").write_text("channel: sms\nbody: 'Sale! {{ unsubscribe_url }}'\n")
    (root / "templates" / "mail.yaml").write_text("channel: email\nsubject: Hi\ntext: hi\n")
    return root


def test_without_policy_yaml_a_customer_without_sms_consent_gets_no_sms(tmp_path: Path) -> None:
    eng = InMemoryEngine.from_folder(folder_without_policy(tmp_path / "j"), start=T0)
    eng.identify("ana", {"phone": "+34600000001", "email": "ana@example.com",
                         "consent": {"email": True}})  # no SMS consent given
    eng.identify("bo", {"phone": "+34600000002", "consent": {"sms": True}})
    eng.track("ana", "Signed Up")
    eng.track("bo", "Signed Up")
    eng.advance("1h")
    assert sorted((m.profile, m.channel) for m in eng.sent) == [("ana", "email"), ("bo", "sms")]
    assert sorted((s.profile, s.step, s.reason) for s in eng.skipped) == [
        ("ana", "text", "no_consent"), ("bo", "mail", "no_consent")]


def test_without_policy_yaml_the_bundled_policy_applies(tmp_path: Path) -> None:
    policy = load_path(folder_without_policy(tmp_path / "j")).policy
    assert set(policy.consent_required) >= {"email", "sms"}
    assert policy.quiet_hours is not None


def test_a_policy_file_that_does_not_name_consent_still_requires_it(tmp_path: Path) -> None:
    root = folder_without_policy(tmp_path / "j")
    (root / "policy.yaml").write_text("timezone: UTC\n")
    assert load_path(root).policy.consent_required == ["email", "sms", "push"]
    (root / "policy.yaml").write_text("consent_required: []\n")  # saying otherwise
    assert load_path(root).policy.consent_required == []


def test_validate_warns_about_a_folder_without_policy_yaml(tmp_path: Path) -> None:
    root = folder_without_policy(tmp_path / "j")
    result = CliRunner().invoke(app, ["validate", str(root)])
    assert result.exit_code == 0, result.output
    assert "no policy.yaml; the bundled policy applies" in result.output


PUSHES = """
journey: pushes
version: 1
entry: {event: Signed Up}
steps:
  - id: nudge
    send: {channel: push, template: nudge}
"""


def test_without_policy_yaml_a_push_needs_consent_as_validate_says(tmp_path: Path) -> None:
    # `validate` and the quickstart say the bundled policy wants consent on email, sms
    # and push; the bundled policy.yaml named only email and sms, so a push went out
    # to a person who never gave consent.
    root = tmp_path / "j"
    (root / "templates").mkdir(parents=True)
    (root / "pushes.yaml").write_text(PUSHES)
    (root / "templates" / "nudge.yaml").write_text("channel: push\nbody: 'Come back'\n")
    eng = InMemoryEngine.from_folder(root, start=T0)
    eng.identify("ana", {"device_token": "tok-ana"})  # no push consent given
    eng.identify("bo", {"device_token": "tok-bo", "consent": {"push": True}})
    eng.track("ana", "Signed Up")
    eng.track("bo", "Signed Up")
    eng.advance("1h")
    assert [(m.profile, m.channel) for m in eng.sent] == [("bo", "push")]
    assert [(s.profile, s.reason) for s in eng.skipped] == [("ana", "no_consent")]
    result = CliRunner().invoke(app, ["validate", str(root)])
    assert "consent required on email, sms and push" in result.output
