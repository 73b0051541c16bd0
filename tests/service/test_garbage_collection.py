"""The garbage collector of a long-running process (`journeyman serve`, `journeyman
worker`): start-up's objects frozen, the young generation collected less often
(engine/service.py `tune_garbage_collection`; docs/benchmarks.md, thirteenth session)."""

from __future__ import annotations

import gc

from engine.service import YOUNG_COLLECTION_AFTER, tune_garbage_collection


def test_start_up_objects_are_frozen_and_young_collections_spaced() -> None:
    before = gc.get_threshold()
    try:
        gc.unfreeze()
        tune_garbage_collection()
        assert gc.get_freeze_count() > 10_000  # this test process's objects
        assert gc.get_threshold() == (YOUNG_COLLECTION_AFTER, *before[1:])
        assert before[0] < YOUNG_COLLECTION_AFTER
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
