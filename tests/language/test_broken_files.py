"""Broken journey files: each gives exactly the expected `file:line:column: message` lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from journeys.errors import InvalidJourney
from journeys.loader import load_path
from journeys.steps import STEP_KINDS

BROKEN = Path(__file__).resolve().parent / "broken"

EXPECTED: dict[str, list[str]] = {
    "bad_condition_in": [
        "bad_condition_in.yaml:6:31: 'in' needs a list",
    ],
    "bad_condition_operator": [
        "bad_condition_operator.yaml:6:30: unknown operator 'gtt' (did you mean 'gt'?)",
    ],
    "bad_condition_path": [
        "bad_condition_path.yaml:7:9: path 'profle.traits.vip' must start with event., trigger., profile.traits., profile.computed., profile.id or enrollment. (did you mean 'profile.traits.vip'?)",
    ],
    "bad_condition_regex": [
        "bad_condition_regex.yaml:6:28: 'matches' has a bad regular expression: unterminated character set at position 0",
    ],
    "bad_cron": [
        'bad_cron.yaml:4:13: bad cron expression \'0 25 * * *\': Error validating expression \'25\': the last value (25) is higher than the maximum value (23) (use 5 fields, like "0 9 * * *")',
    ],
    "bad_duration": [
        "bad_duration.yaml:6:11: wait: bad duration '3 days': use 30s, 15m, 1h, 2d, 1w or ISO 8601 like P1DT2H",
    ],
    "bad_id": [
        "bad_id.yaml:1:10: journey: journey id 'Bad-Id' must be snake_case (a-z, 0-9, _)",
    ],
    "bad_phase": [
        "bad_phase.yaml:3:8: phase: must be 'awareness', 'acquisition', 'onboarding', 'engagement', 'retention' or 'advocacy'",
    ],
    # a bad optional section (kpis, priority) hides nothing else of the journey
    "bad_kpi_and_priority": [
        "bad_kpi_and_priority.yaml:4:11: priority: must be a valid integer, unable to parse string as an integer",
        "bad_kpi_and_priority.yaml:5:20: kpis: unknown KPI 'revenue': the built-ins are sends, delivered, open_rate, ctr, click_to_open, conversion, attributable_revenue, opt_out_rate, bounce_rate, completion_rate, median_time_to_goal; a custom one is {name: ..., ratio: [count, count]}",
        "bad_kpi_and_priority.yaml:9:37: unknown operator 'eqq' (did you mean 'eq'?)",
        "bad_kpi_and_priority.yaml:10:15: step 'nowhere' does not exist",
    ],
    "bad_re_entry": [
        "bad_re_entry.yaml:4:11: re_entry: must be 'never', 'always' or {after: <duration>}, not 'sometimes'",
    ],
    "bad_timeout": [
        "bad_timeout.yaml:6:47: timeout: bad duration '1 month': use 30s, 15m, 1h, 2d, 1w or ISO 8601 like P1DT2H",
    ],
    "bad_tz": [
        "bad_tz.yaml:6:32: unknown time zone 'Europe/Madird': use 'profile' or an IANA name like Europe/Madrid",
    ],
    "bad_until": [
        "bad_until.yaml:6:19: bad time '25:00': use 24-hour HH:MM, like 09:00",
    ],
    "bad_version": [
        'bad_version.yaml:2:10: version: must be greater than or equal to 1',
    ],
    "branch_no_else": [
        'branch_no_else.yaml:7:9: a branch must end with {else: <step>}',
    ],
    "duplicate_key": [
        "duplicate_key.yaml:7:5: YAML syntax: duplicate key 'send'",
    ],
    "duplicate_step": [
        "duplicate_step.yaml:7:9: duplicate step id 'hi'",
    ],
    # over 100 years: refused wherever a duration is written, never an OverflowError
    "durations_too_long": [
        "durations_too_long.yaml:5:40: 'before' needs an ISO date-time or a duration like 90d: longer than the maximum of 36525d (100 years)",
        "durations_too_long.yaml:6:19: after: bad duration '3000000d': longer than the maximum of 36525d (100 years)",
        "durations_too_long.yaml:7:31: within: bad duration 'P3000000D': longer than the maximum of 36525d (100 years)",
        "durations_too_long.yaml:10:11: wait: bad duration '3000000d': longer than the maximum of 36525d (100 years)",
        "durations_too_long.yaml:12:11: wait: bad duration '99999999999d': longer than the maximum of 36525d (100 years)",
        "durations_too_long.yaml:14:41: timeout: bad duration '3000000d': longer than the maximum of 36525d (100 years)",
    ],
    # null conditions would hold for everyone (`not: null` for no one); nan and inf never match
    "empty_conditions": [
        "empty_conditions.yaml:3:8: empty condition (null, or a YAML alias to a mapping that holds it): write a condition here, or remove it",
        "empty_conditions.yaml:5:27: empty condition (null, or a YAML alias to a mapping that holds it): write a condition here, or remove it",
        "empty_conditions.yaml:5:39: empty condition (null, or a YAML alias to a mapping that holds it): write a condition here, or remove it",
        "empty_conditions.yaml:5:66: 'eq' needs a finite number, not nan",
        "empty_conditions.yaml:8:11: empty condition (null): write a condition, or leave 'when' out",
        "empty_conditions.yaml:9:33: 'gt' needs a finite number, not inf",
        "empty_conditions.yaml:9:66: 'in' needs a finite number, not inf",
    ],
    "goto_missing": [
        "goto_missing.yaml:8:15: step 'vip_mail' does not exist (did you mean 'vip_email'?)",
        "goto_missing.yaml:10:9: step 'vip_email' is unreachable: no step leads to it (is 'vip_mail', which does not exist, a misspelling of it?)",
    ],
    "loop_no_wait": [
        'loop_no_wait.yaml:5:9: loop with no wait: hi -> again -> hi (add a wait or wait_for inside the loop)',
    ],
    # a key the language knows elsewhere (a step's `id`): no "did you mean 'id'?"
    "known_key_misplaced": [
        "known_key_misplaced.yaml:3:1: unknown key 'id'",
    ],
    "many_problems": [
        "many_problems.yaml:6:11: wait: bad duration '2 weeks': use 30s, 15m, 1h, 2d, 1w or ISO 8601 like P1DT2H",
        "many_problems.yaml:8:45: unknown key 'too' (did you mean 'to'?)",
        "many_problems.yaml:12:15: step 'nowhere' does not exist",
    ],
    "missing_steps": [
        "missing_steps.yaml:1:1: missing required key 'steps'",
    ],
    "missing_template": [
        "missing_template.yaml:6:38: template 'helo' does not exist (looked for templates/helo.yaml) (did you mean 'hello'?)",
    ],
    "missing_template_key": [
        "missing_template_key.yaml:6:11: missing required key 'template'",
    ],
    "next_missing": [
        "next_missing.yaml:7:11: step 'byebye' does not exist (did you mean 'bye'?)",
        "next_missing.yaml:8:9: step 'bye' is unreachable: no step leads to it (is 'byebye', which does not exist, a misspelling of it?)",
    ],
    "regex_exponential": [
        "regex_exponential.yaml:5:31: 'matches' pattern can take exponential time on some inputs (a repeated group that can match the same text in more than one way: it holds another repeat, a '+'); rewrite it, e.g. (a+)+ as a+, (\\w+\\s?)+ as \\w+(\\s\\w+)*\\s?",
    ],
    "split_weights": [
        'split_weights.yaml:8:9: split weights must sum to 100, these sum to 90',
    ],
    # weights that leave room for the holdout: it is not one of the 100
    "split_weights_holdout": [
        "split_weights_holdout.yaml:9:9: split weights must sum to 100, these sum to 90 (the "
        "holdout is not one of them: 10% of people exit first, and the weights share the "
        "others)",
    ],
    "template_channel_mismatch": [
        "template_channel_mismatch.yaml:6:38: template 'sms_hi' is for channel 'sms', this step sends by 'email'",
    ],
    "two_entries": [
        "two_entries.yaml:4:3: entry needs exactly one of 'event', 'segment' or 'schedule' (found 2: event, schedule)",
    ],
    "two_kinds": [
        'two_kinds.yaml:5:5: a step has exactly one kind, this one has 2: wait, send',
    ],
    "unknown_channel": [
        "unknown_channel.yaml:6:21: unknown channel 'emial' (did you mean 'email'?)",
    ],
    "unknown_step_key": [
        # every kind, from the registry (a new kind is not written here too)
        f"unknown_step_key.yaml:5:5: step has no kind (one of: {', '.join(STEP_KINDS)}); "
        "unknown key 'sned' (did you mean 'send'?)",
    ],
    "unknown_top_key": [
        "unknown_top_key.yaml:4:1: unknown key 'exit_whne' (did you mean 'exit_when'?)",
    ],
    "two_documents": [
        "two_documents.yaml:7:1: YAML syntax: a second document ('---'): a file holds one; put "
        "the next in a file of its own",
    ],
    "unknown_variable": [
        "unknown_variable.yaml:6:31: unknown variable 'user' in template; in scope: enrollment, event, journey, profile, trigger, unsubscribe_url",
    ],
    "unreachable": [
        "unreachable.yaml:8:9: step 'orphan' is unreachable: no step leads to it",
    ],
    "yaml_syntax": [
        "yaml_syntax.yaml:4:6: YAML syntax: expected ',' or '}', but got ':'",
    ],
}


def test_every_broken_file_has_an_expectation() -> None:
    assert {p.stem for p in BROKEN.glob("*.yaml")} == set(EXPECTED)
    assert len(EXPECTED) >= 20


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_file_reports_exactly(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BROKEN)
    with pytest.raises(InvalidJourney) as info:
        load_path(f"{name}.yaml")
    assert [str(p) for p in info.value.problems] == EXPECTED[name]
