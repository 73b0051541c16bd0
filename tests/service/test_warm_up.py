"""`Service.warm_up` (issue 11): a process compiles its templates and its store's
statements as it starts, so its first batch is handled as fast as the next."""

from __future__ import annotations

from engine.runtime.unsubscribe import SigningSecret
from engine.service import Service
from engine.testing import TEST_SECRET
from tests.conftest import LIBRARY


def test_warm_up_compiles_the_templates_and_the_units_write_plans(store_url: str) -> None:
    service = Service(LIBRARY, store_url, channels={}, secrets=[SigningSecret(TEST_SECRET)])
    try:
        templates = next(iter(service.runner.journeys.values())).templates
        assert templates._compiled == {}
        assert service.store._many_plans == {}
        service.warm_up()
        assert templates._compiled  # every part (tests/language/test_templates.py)
        plans = dict(service.store._many_plans)
        assert len(plans) == 11  # profiles, enrollments, entries, timers, segments (2),
        # identities, sends, decisions, exits, goals: a unit's kinds of rows
        assert service.store.load_states(["journeyman-warm-up"])[
            "journeyman-warm-up"].profile is None  # nothing was written
        service.warm_up()  # again: nothing new
        assert service.store._many_plans == plans
    finally:
        service.stop()
