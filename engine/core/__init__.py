"""The pure core: `advance(journey, enrollment, trigger, now) -> Advanced`, one handler
per step kind (`steps/`), the values it works with (`model`), computed traits
(`profiles`), the merge decision (`merge`) and time helpers (`times`).

It imports nothing that does I/O (no database, web, scheduler or network library: an
import-linter contract checks it), never reads the clock and draws no random numbers:
everything comes in as arguments and goes out as commands.
"""

from engine.core.advance import EngineError, advance, enrollment_id, new_enrollment

__all__ = ["EngineError", "advance", "enrollment_id", "new_enrollment"]
