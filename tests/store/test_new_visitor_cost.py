"""What a batch of new visitors costs the database (review of the identity queues,
0cbfa60): a new anonymousId's events wait in a provisional queue (engine/values.py
`inbox_owner`), and the worker preloaded the queue's name instead of the profile it
makes, so each visitor's state and identifiers were read one by one, and each of its
two queue moves ran three statements, most of them on empty queues (500 new visitors:
6,016 statements, against 14 for 500 new customers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from engine.runtime.events import normalize
from engine.store import SqlStore
from engine.testing import InMemoryEngine
from tests.engine.helpers import write_folder
from tests.store.conftest import pg_new_database, pg_server
from tests.store.test_stamps import T0

__all__ = ["pg_new_database", "pg_server"]

VISITORS = 200


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InMemoryEngine]:
    url = (f"sqlite:///{tmp_path / 'db.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_new_database")())
    eng = InMemoryEngine.from_folder(write_folder(tmp_path / "j", {}, {}), start=T0)
    store = SqlStore(url, create=True)
    store.clock = eng.clock
    eng.use_store(store)
    yield eng
    store.close()


def statements_of_one_batch(eng: InMemoryEngine, kind: str) -> int:
    store = eng.store
    store.accept_events([normalize({"type": "track", kind: f"v{n}", "event": "Seen"}, now=T0,
                                   message_id=f"m{n}") for n in range(VISITORS)])
    seen = [0]

    def count(*_: Any) -> None:
        seen[0] += 1

    event.listen(store.sql_engine, "before_cursor_execute", count)
    eng.worker._limit._limit["inbox"] = VISITORS
    eng.worker.budget = 60.0
    eng.worker.handle_events()
    event.remove(store.sql_engine, "before_cursor_execute", count)
    assert store.inbox_counts() == {}
    assert all(store.profile_for("anonymous_id" if kind == "anonymousId" else "user_id",
                                 f"v{n}") == f"v{n}" for n in range(VISITORS))
    return seen[0]


def test_a_batch_of_new_visitors_costs_about_what_one_of_new_customers_does(
        engine: InMemoryEngine) -> None:
    visitors = statements_of_one_batch(engine, "anonymousId")
    assert visitors < 60, visitors  # not a few per visitor


def test_a_batch_of_new_customers_costs_a_few_statements(engine: InMemoryEngine) -> None:
    assert statements_of_one_batch(engine, "userId") < 60
