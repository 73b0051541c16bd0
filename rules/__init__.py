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
from rules.evaluate import evaluate
from rules.operators import OPERATORS
from rules.ruleset import BACKENDS, Matcher, compile_ruleset

__all__ = ["BACKENDS", "OPERATORS", "TRUE", "AllOf", "AnyOf", "Compare", "Condition",
           "ConditionError", "ConditionProblem", "DurationError", "Matcher", "Not",
           "compile_ruleset", "evaluate", "parse_condition", "parse_duration"]
