"""The in-memory store's journey versions: deployed versions, in-flight counts and the
moves of `apply` (the same semantics as engine/store/sql/versions.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from engine.core.moves import moved_occurrence, moved_timer
from engine.ports import DeployedVersion, StepMove
from engine.store.memory.state import MemoryState


class MemoryVersions(MemoryState):
    def __init__(self, clock: Any = None) -> None:
        super().__init__(clock)
        self.versions: dict[tuple[str, int], DeployedVersion] = {}

    def deployed_versions(self, journey: str | None = None) -> list[DeployedVersion]:
        return [v for _, v in sorted(self.versions.items())
                if journey is None or v.journey == journey]

    def deploy_version(self, version: DeployedVersion) -> bool:
        key = (version.journey, version.version)
        if key in self.versions:
            return False
        self.versions[key] = version
        self.set_journey_status(version.journey, version.status)
        return True

    def set_journey_status(self, journey: str, status: str) -> bool:
        keys = [k for k in self.versions if k[0] == journey]
        for key in keys:
            self.versions[key] = replace(self.versions[key], status=status)
        return bool(keys)

    def in_flight(self, journey: str) -> dict[tuple[int, str], int]:
        counts: dict[tuple[int, str], int] = {}
        for by_journey in self.active_ids.values():
            eid = by_journey.get(journey)
            if eid is not None:
                e = self.enrollment_rows[eid]
                counts[(e.version, e.state)] = counts.get((e.version, e.state), 0) + 1
        return counts

    def move_enrollments(self, move: StepMove, now: datetime) -> int:
        moved = 0
        for by_journey in list(self.active_ids.values()):
            eid = by_journey.get(move.journey)
            if eid is None:
                continue
            e = self.enrollment_rows[eid]
            if e.version != move.from_version or e.state != move.from_step:
                continue
            moved += 1
            timers = [t for t in self.timers.values()
                      if t.enrollment_id == eid and t.step == move.from_step]
            self.decisions.append(move.decision(now, e.profile_id, eid,
                                                timers[0].due_at if timers else None))
            if move.from_step == move.to_step:
                self._write_enrollment(replace(e, version=move.to_version, updated_at=now))
                continue
            occurrence = moved_occurrence(e.visits, move.from_step, move.to_step)
            self._write_enrollment(replace(
                e, version=move.to_version, state=move.to_step, updated_at=now,
                visits={**e.visits, move.to_step: occurrence}))
            for timer in timers:
                self.cancel_timer(timer.key)
                self.add_timer(moved_timer(timer, move.to_step, occurrence))
        return moved
