"""Conditions and their evaluation: the lowest layer (imports nothing of ours)."""

from rules.conditions import (
    TRUE,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    ConditionError,
    ConditionProblem,
    Not,
    parse_condition,
)
from rules.durations import DurationError, parse_duration
from rules.errors import JourneymanError, did_you_mean
from rules.evaluate import evaluate
from rules.matcher import Matcher
from rules.operators import OPERATORS
from rules.ruleset import BACKENDS, compile_ruleset

__all__ = ["BACKENDS", "OPERATORS", "TRUE", "AllOf", "AnyOf", "Compare", "Condition",
           "ConditionError", "ConditionProblem", "DurationError", "JourneymanError", "Matcher",
           "Not", "compile_ruleset", "did_you_mean", "evaluate", "parse_condition",
           "parse_duration"]
