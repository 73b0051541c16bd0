"""docs/service.md's table of the API's answers names every status the API's code
answers with: a key over its rate (429) and the scopes' refusals (403) were missing, so
an operator reading why clients were refused found nothing (an operator's trial,
2026-12-08)."""

from __future__ import annotations

import re

from tests.conftest import ROOT

DOC = (ROOT / "docs" / "service.md").read_text()


def _table() -> dict[int, str]:
    rows = re.findall(r"^\| `(\d{3})` \| (.*) \|$", DOC, re.M)
    return {int(code): text for code, text in rows}


def test_every_status_the_api_answers_is_in_the_table() -> None:
    code = "\n".join(p.read_text() for p in sorted((ROOT / "engine" / "api").rglob("*.py")))
    raised = {int(c) for c in re.findall(
        r"(?:ApiError\(|super\(\).__init__\(|status_code=)(\d{3})", code)}
    raised -= {302}  # a tracked link's redirect (docs/engagement.md), not an error
    assert raised >= {400, 401, 403, 404, 413, 429, 503}
    assert raised - set(_table()) == set(), sorted(raised - set(_table()))


def test_the_refusals_say_what_an_operator_meets() -> None:
    table = _table()
    assert "scope" in table[403]
    assert "Retry-After" in table[429]
    assert "--rate" in table[429]
