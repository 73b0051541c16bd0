"""The root of journeyman's exception tree, in the lowest layer so every layer can
derive from it, and the "did you mean" hint that error messages share.

Every error journeyman raises on purpose derives from `JourneymanError`: the command
line and the HTTP API catch it (and only it) and show its message; anything else is a
bug and keeps its traceback. Users never see a traceback for their own mistakes.

    JourneymanError                      rules/errors.py
    ├── ConditionError (ValueError)      rules: a condition does not parse
    ├── DurationError (ValueError)       rules: a duration does not parse
    ├── RulesBackendError                rules: a backend's library does not load here
    ├── JourneyError                     journeys: the language
    │   ├── InvalidJourney               a file or folder does not validate (every problem listed)
    │   ├── UnknownJourney               a journey id that is not in the library
    │   └── TemplateRenderError          a template failed to render
    ├── EngineError                      engine.core: a state the core cannot handle (a bug)
    ├── ComputedTraitError               engine.core.profiles: a computed trait overflowed
    ├── BadEvent                         engine.runtime.events: an event that cannot be accepted
    ├── DeliveryError                    engine.ports: a channel could not deliver
    ├── ChannelConfigError (ValueError)  channels.config: a bad channels.yaml
    ├── StoreError                       engine.store: the durable store
    │   ├── SchemaNotReady               the database needs its migrations
    │   ├── DuplicateKeyName             an active API key has this name
    │   └── NaiveDatetimeError (ValueError)  a naive datetime reached the store
    ├── ApiError                         engine.api: a request answered with a 4xx
    ├── PreviewError                     engine.qa.preview: no such journey or send step
    ├── SimulationError                  engine.qa.simulate: a bad events file or option
    ├── InvalidScenario                  engine.qa.scenario_file: a scenario file does not validate
    ├── InputFileError                   engine.qa.inputs: a profile, event or events file
    │                                    that is not JSON or not of the shape asked for
    └── ReplayError                      engine.qa.replay: an unreadable event log or database
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class JourneymanError(Exception):
    """Root of every error journeyman raises on purpose."""


class RulesBackendError(JourneymanError):
    """A rules backend's library does not load on this interpreter (durable-rules' C
    extension calls `PyEval_CallObject`, which Python 3.13 removed: it installs, then
    fails at its first import)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest choice, or an empty string. Never the word
    itself: a key the language knows elsewhere (a template's `id`) is unknown where it
    was written, and "unknown key 'id' (did you mean 'id'?)" helps nobody."""
    close = difflib.get_close_matches(word, [c for c in choices if c != word], n=1,
                                      cutoff=0.6)
    if close and not _alike(word, close[0]):
        return ""
    return f" (did you mean {close[0]!r}?)" if close else ""


def _alike(word: str, choice: str) -> bool:
    """Close enough to suggest: a typo (ratio 0.7 or more: 'wiat', 'pauze') or one inside
    the other ('byebye', 'bye'); not two words that share some letters ('version',
    'reason': 0.62)."""
    return (difflib.SequenceMatcher(None, word, choice).ratio() >= 0.7
            or word in choice or choice in word)
