"""`/metrics` from the first scrape: every label value a process knows of is a series
at 0 (engine/runtime/metrics.py), so an alert and `increase()` see the first failure,
parking or transient error, and a journey or channel with nothing yet is there too."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from engine.service import Service
from engine.testing import FakeClock, RecordingChannel
from tests.engine.helpers import HELLO, stub_email, write_folder

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(body: bytes) -> Samples:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples}


def test_the_first_scrape_has_every_known_series_at_zero(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"welcome": stub_email("welcome")})
    service = Service(folder, f"sqlite:///{tmp_path / 'm.db'}",
                      channels={"email": RecordingChannel("email"),
                                "webhook": RecordingChannel("webhook")},
                      clock=FakeClock(datetime(2026, 3, 2, 9, tzinfo=UTC)))
    try:
        service.store.create_key("site")
        service.app()  # the API: each key's ingest series
        samples = _samples(service.metrics.render())
    finally:
        service.stop()
    assert samples[("journeyman_store_levels_up", ())] == 1
    zero = {key for key, value in samples.items() if value == 0}
    for source in ("site", "unsubscribe"):
        assert ("journeyman_events_ingested_total", (("source", source),)) in zero
    for kind in ("event", "timer"):
        assert ("journeyman_failures_total", (("kind", kind),)) in zero
        assert ("journeyman_parked_total", (("kind", kind),)) in zero
    for kind in ("events", "timers", "outbox", "retention"):
        assert ("journeyman_transient_errors_total", (("kind", kind),)) in zero
    for channel in ("email", "webhook"):
        for outcome in ("sent", "retried", "deferred", "held", "skipped", "failed", "parked",
                        "lost", "released"):
            assert ("journeyman_sends_total",
                    (("channel", channel), ("outcome", outcome))) in zero
    assert ("journeyman_engagements_total", (("by", "scanner"), ("kind", "click"))) in zero
    assert ("journeyman_engagements_unrecorded_total", (("kind", "click"),)) in zero
    assert ("journeyman_untracked_links_total", ()) in zero
    assert ("journeyman_batch_size_count", (("kind", "events"),)) in zero
    assert ("journeyman_inbox_events", (("status", "parked"),)) in zero
    assert ("journeyman_outbox_rows", (("status", "failed"),)) in zero
    for status in ("active", "completed", "exited"):
        assert ("journeyman_journey_enrollments",
                (("journey", "hello"), ("status", status))) in zero
    assert ("journeyman_journey_sends", (("journey", "hello"), ("status", "sent"))) in zero


def test_a_count_in_the_store_is_kept_beside_the_zeros() -> None:
    """The zeros fill in only what the store does not name: its counts win."""
    from engine.runtime.metrics import _with_zeros

    assert _with_zeros({"pending": 3}, ("pending", "parked")) == {"pending": 3, "parked": 0}
