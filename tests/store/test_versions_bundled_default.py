"""`serve`/`worker` without `--journeys` (`apply(..., bundled_default=True)`) on the
stores they must start on, and the one they must refuse (review of 479dead):

- they start on an empty store, on a store running the bundled library with journeys
  paused or archived by an operator, and after an upgrade whose bundled journeys are
  at a higher version;
- they refuse a store that runs a folder of its own that is a part of the bundled
  library (a copy with journeys taken out, applied with `--journeys`): the journeys
  it left out are `removed`, and the bundled library made them active again, exit 0.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.runtime.versions import PlanError, apply
from engine.testing import InMemoryStore
from journeys.library import bundled_library
from journeys.loader import load_path

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _copy(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(bundled_library(), folder, ignore=shutil.ignore_patterns("scenarios"))
    return folder


def _statuses(store: InMemoryStore) -> dict[str, tuple[int, str]]:
    return {v.journey: (v.version, v.status) for v in store.deployed_versions()}


def test_the_bundled_library_starts_on_its_own_stores(tmp_path: Path) -> None:
    bundled = load_path(bundled_library())
    store = InMemoryStore()
    apply(bundled, store, NOW, bundled_default=True)  # an empty store
    assert {s for _, s in _statuses(store).values()} == {"active"}

    store.set_journey_status("welcome", "paused")  # `journeyman journeys pause welcome`
    store.set_journey_status("referral", "archived")
    apply(bundled, store, NOW, bundled_default=True)  # the restart
    assert _statuses(store)["welcome"] == (1, "paused")
    assert _statuses(store)["referral"] == (1, "archived")

    newer = _copy(tmp_path, "newer")  # a newer journeyman's bundled welcome, at v2
    welcome = newer / "welcome.yaml"
    text = welcome.read_text(encoding="utf-8")
    welcome.write_text(text.replace("version: 1", "version: 2", 1).replace(
        "description: ", "description: (v2) ", 1), encoding="utf-8")
    apply(load_path(newer), store, NOW, bundled_default=True)
    assert _statuses(store)["welcome"] == (2, "paused")


def test_a_store_running_a_part_of_the_bundled_library_is_refused(tmp_path: Path) -> None:
    mine = _copy(tmp_path, "mine")
    (mine / "win_back.yaml").unlink()  # the operator does not run win_back
    store = InMemoryStore()
    apply(load_path(bundled_library()), store, NOW)
    apply(load_path(mine), store, NOW)
    assert _statuses(store)["win_back"] == (1, "removed")

    with pytest.raises(PlanError) as refused:
        apply(load_path(bundled_library()), store, NOW, bundled_default=True)
    assert "win_back: removed from this store" in str(refused.value)
    assert _statuses(store)["win_back"] == (1, "removed")  # nothing written


def test_a_journey_a_newer_bundled_library_dropped_is_removed_not_refused(
        tmp_path: Path) -> None:
    """A release whose bundled library no longer has `referral` (dropped or renamed):
    the store it deployed before restarts without --journeys, `referral` removed as
    `apply` would. Nothing recorded which deployed journeys came from the bundled
    library, so the restart was refused as if `referral` were the operator's own."""
    store = InMemoryStore()
    apply(load_path(bundled_library()), store, NOW, bundled_default=True)
    newer = _copy(tmp_path, "newer")
    (newer / "referral.yaml").unlink()
    release = load_path(newer)
    assert release.folder is not None
    # the newer release's bundled library, as its `serve` finds it
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("journeys.library.bundled_library", lambda: newer)
        apply(release, store, NOW, bundled_default=True)
    assert _statuses(store)["referral"] == (1, "removed")
    assert _statuses(store)["welcome"] == (1, "active")


def test_after_a_folder_of_its_own_a_dropped_journey_is_refused_again(tmp_path: Path) -> None:
    """The record is the last folder's: once the operator applied a folder of their own
    (which kept `referral`), a bundled library without it is refused, not let remove it."""
    store = InMemoryStore()
    apply(load_path(bundled_library()), store, NOW, bundled_default=True)
    apply(load_path(_copy(tmp_path, "mine")), store, NOW)  # the operator's own copy
    newer = _copy(tmp_path, "newer")
    (newer / "referral.yaml").unlink()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("journeys.library.bundled_library", lambda: newer)
        with pytest.raises(PlanError, match="referral: deployed to this store and not in"):
            apply(load_path(newer), store, NOW, bundled_default=True)
    assert _statuses(store)["referral"] == (1, "active")
