"""A template whose expression raises a plain Python error (issue 10 §1): the send is
skipped for that profile, a `template_error` decision says why (with the template's file
and line), the journey goes on, and nobody else is affected -- not even profiles whose
timers fire in the same batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.testing import InMemoryEngine
from tests.engine.helpers import stub_email, write_folder

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CODES = """
journey: codes
version: 1
entry: {event: Code Issued}
steps:
  - id: pause
    wait: 1d
  - id: code_mail
    send: {channel: email, template: code}
  - id: thanks
    send: {channel: email, template: thanks}
"""
CODE_TEMPLATE = """\
channel: email
subject: Your code
text: |
  Hi {{ profile.id }},
  your code is {{ event.properties.code + 1000 }}.
"""


def test_a_type_error_in_a_send_template_skips_that_send_only(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"codes": CODES},
                          {"code": CODE_TEMPLATE, "thanks": stub_email("thanks")})
    eng = InMemoryEngine.from_folder(folder, start=T0)
    for user, code in (("ana", 7), ("bad", "abc"), ("ben", 8)):
        eng.identify(user, {"email": f"{user}@example.com"})
        eng.track(user, "Code Issued", {"code": code})

    assert eng.worker.fire_timers() == 0
    eng.clock.advance(timedelta(days=1))
    assert eng.worker.fire_timers() == 3  # one batch: the bad one does not stop it
    eng.dispatcher.dispatch_due()

    assert sorted((m.profile, m.template) for m in eng.sent) == [
        ("ana", "code"), ("ana", "thanks"), ("bad", "thanks"), ("ben", "code"),
        ("ben", "thanks")]
    assert "1007" in next(m.body for m in eng.sent if (m.profile, m.template) == ("ana", "code"))
    [decision] = [d for d in eng.decisions if d.what in ("skipped", "deferred", "failed")]
    assert (decision.profile_id, decision.journey, decision.step, decision.what,
            decision.reason) == ("bad", "codes", "code_mail", "skipped", "template_error")
    assert decision.details["error"] == (
        f"template 'code' ({folder}/templates/code.yaml:5, text): "
        'TypeError: can only concatenate str (not "int") to str')
    for user in ("ana", "bad", "ben"):
        [enrollment] = eng.enrollments(user, "codes")
        assert enrollment.status == "completed", user
