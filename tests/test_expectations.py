"""Expectations files: the loader refuses bad files, saying where; apply() turns known deviations
into expected_fail, stale entries into unexpected_pass, and leaves everything else failing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from callgate.conformance import expectations
from callgate.conformance.cases import sequences
from callgate.conformance.expectations import ExpectationsError, apply_all, load, parse
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.report.reporting import build_report, validate_report
from callgate.conformance.results import CaseResult, RunRecord, Summary, Verdict
from tests import streams
from tests.fakes import EventAdapter
from tests.streams import STD_EVENT_TWICE, _event_case, _run

DATA = Path(__file__).parent / "data" / "expectations"
FILE = Path("known.toml")


def _parse(text: str) -> expectations.Expectations:
    return parse(text, FILE)


def _entry(**keys: str) -> str:
    return "[[deviation]]\n" + "".join(f'{k} = "{v}"\n' for k, v in keys.items())


GOOD = dict(rule="COM-SYNC-03", verdict="fail", reason="keeps its signal")


# --- loading -------------------------------------------------------------------------------


def test_the_sample_file_loads_with_lines_and_both_kinds_of_entry() -> None:
    loaded = load(DATA / "fake-events.toml")
    assert loaded.implementation == "fake-events"
    assert [(d.key, d.verdict, d.line) for d in loaded.deviations] == [
        ("rule COM-SYNC-03", Verdict.FAIL, 4), ("case event-tour-003", Verdict.ERROR, 10)]
    assert loaded.deviations[0].evidence.startswith("tests/fakes.py")


@pytest.mark.parametrize(("text", "expected"), [
    (_entry(rule="COM-SYNC-03", verdict="flaky", reason="r"), "unknown verdict 'flaky'"),
    (_entry(rule="COM-SYNC-03", verdict="fail"), "missing reason"),
    (_entry(rule="COM-SYNC-03", verdict="fail", reason="  "), "missing reason"),
    (_entry(rule="COM-SYNC-33", verdict="fail", reason="r"), "unknown rule 'COM-SYNC-33'"),
    (_entry(rule="COM-MIDL-01", verdict="fail", reason="r"), "out of scope"),
    (_entry(verdict="fail", reason="r"), "exactly one of case"),
    (_entry(case="c", rule="COM-SYNC-03", verdict="fail", reason="r"), "exactly one of case"),
    (_entry(rule="COM-SYNC-03", verdict="fail", reason="r", reasons="x"), "unknown keys ['reasons']"),
    ('[[deviation]]\nrule = "COM-SYNC-03"\nverdict = "fail"\nreason = 3\n', "reason must be a string"),
    ("[[deviation]\n", "not valid TOML"),
    ('implementation = "x"\nvendor = "y"\n', "unknown top-level keys ['vendor']"),
    ('deviation = "COM-SYNC-03"\n', "must be an array of tables"),
])
def test_a_bad_file_is_refused_naming_the_file_and_the_problem(text: str, expected: str) -> None:
    with pytest.raises(ExpectationsError) as caught:
        _parse(text)
    assert expected in str(caught.value)
    assert str(FILE) in str(caught.value)


def test_an_error_names_the_line_and_entry_of_each_bad_entry() -> None:
    text = "# known deviations\n\n" + _entry(**GOOD) + "\n" + _entry(case="c1", verdict="nope",
                                                                    reason="r")
    with pytest.raises(ExpectationsError) as caught:
        _parse(text)
    assert "known.toml:8: deviation #2: unknown verdict 'nope'" in str(caught.value)


def test_a_duplicate_entry_is_refused_naming_both_lines() -> None:
    text = _entry(**GOOD) + _entry(**GOOD)
    with pytest.raises(ExpectationsError) as caught:
        _parse(text)
    assert "known.toml:5: deviation #2 (rule COM-SYNC-03): duplicate of the entry at line 1" \
        in str(caught.value)


def test_a_mistyped_rule_gets_a_suggestion() -> None:
    with pytest.raises(ExpectationsError, match="did you mean COM-SYNC-03"):
        _parse(_entry(rule="COM-SYNC-3", verdict="fail", reason="r"))


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ExpectationsError, match=r"cannot read expectations file .*nothing\.toml"):
        load(tmp_path / "nothing.toml")


def test_a_file_for_another_implementation_is_flagged() -> None:
    loaded = _parse('implementation = "wine"\n' + _entry(**GOOD))
    assert "'wine'" in loaded.mismatch("reference")
    assert loaded.mismatch("wine") == ""


# --- applying ------------------------------------------------------------------------------


def _failing_run() -> list[CaseResult]:
    """A deliberately failing adapter: a StdEvent that keeps its signal, plus cases it passes."""
    return [
        _run("std_event_keeps_signal", _event_case("std-twice", *STD_EVENT_TWICE)),
        _run("std_event_keeps_signal", _event_case("manual", *streams.MANUAL)),
    ]


def test_the_failing_adapter_exits_1_without_expectations_and_0_with_them() -> None:
    results = _failing_run()
    assert [r.verdict for r in results] == [Verdict.FAIL, Verdict.PASS]
    assert Summary.of(results).exit_code() == 1
    known = _parse(_entry(**GOOD))
    applied = apply_all(known, results)
    assert [r.verdict for r in applied] == [Verdict.EXPECTED_FAIL, Verdict.PASS]
    assert applied[0].expectation == "keeps its signal"
    assert Summary.of(applied).exit_code() == 0
    assert known.unused() == []


def test_a_listed_case_that_fails_is_expected_and_one_that_passes_is_unexpected() -> None:
    results = _failing_run()
    known = _parse(_entry(case="std-twice", verdict="fail", reason="r1")
                   + _entry(case="manual", verdict="fail", reason="r2"))
    applied = apply_all(known, results)
    assert [r.verdict for r in applied] == [Verdict.EXPECTED_FAIL, Verdict.UNEXPECTED_PASS]
    assert "remove the entry" in applied[1].message
    assert Summary.of(applied).exit_code() == 1


def test_a_rule_entry_excuses_only_failures_on_that_rule() -> None:
    (failed, _) = _failing_run()
    other = replace(failed, id="other", failed_rules=["COM-SYNC-01"])
    known = _parse(_entry(**GOOD))
    assert known.apply(failed).verdict is Verdict.EXPECTED_FAIL
    assert known.apply(other).verdict is Verdict.FAIL


def test_a_listed_verdict_must_match_an_error_stays_an_error() -> None:
    crashed = _run("crash_on_wait", _event_case("std-twice", *STD_EVENT_TWICE))
    known = _parse(_entry(case="std-twice", verdict="fail", reason="r"))
    assert known.apply(crashed).verdict is Verdict.ERROR
    assert [d.key for d in known.unused()] == ["case std-twice"]
    as_error = _parse(_entry(case="std-twice", verdict="error", reason="r"))
    assert as_error.apply(crashed).verdict is Verdict.EXPECTED_FAIL


def test_a_rule_entry_of_kind_error_matches_the_rules_of_the_step_that_broke() -> None:
    crashed = _run("crash_on_wait", _event_case("std-twice", *STD_EVENT_TWICE))
    assert "COM-SYNC-03" in expectations.failing_rules(crashed)
    known = _parse(_entry(rule="COM-SYNC-03", verdict="error", reason="crashes"))
    assert known.apply(crashed).verdict is Verdict.EXPECTED_FAIL


def test_passing_cases_that_cite_a_listed_rule_stay_passes() -> None:
    passed = _run("", _event_case("std-twice", *STD_EVENT_TWICE))
    assert "COM-SYNC-03" in passed.rules
    known = _parse(_entry(**GOOD))
    assert known.apply(passed).verdict is Verdict.PASS


def test_a_rule_entry_exercised_without_failing_is_one_unexpected_pass() -> None:
    passed = [_run("", _event_case(f"ok-{i}", *STD_EVENT_TWICE)) for i in range(3)]
    known = _parse(_entry(**GOOD))
    applied = apply_all(known, passed)
    assert [r.verdict for r in applied] == [Verdict.PASS] * 3 + [Verdict.UNEXPECTED_PASS]
    stale = applied[-1]
    assert (stale.id, stale.kind, stale.rules) == ("expectation:COM-SYNC-03", "expectation",
                                                   ["COM-SYNC-03"])
    assert "3 cases exercised the rule" in stale.message and "line 1" in stale.message
    assert Summary.of(applied).exit_code() == 1


def test_an_intermittent_entry_exercised_without_failing_is_not_stale() -> None:
    passed = [_run("", _event_case(f"ok-{i}", *STD_EVENT_TWICE)) for i in range(3)]
    known = _parse(_entry(**GOOD) + "intermittent = true\n")
    assert known.deviations[0].intermittent and known.to_json()
    applied = apply_all(known, passed)
    assert [r.verdict for r in applied] == [Verdict.PASS] * 3
    assert Summary.of(applied).exit_code() == 0
    with pytest.raises(ExpectationsError, match="intermittent must be true or false"):
        _parse(_entry(**GOOD) + 'intermittent = "yes"\n')


def test_entries_that_nothing_reached_are_unused_and_not_failures() -> None:
    passed = [_run("", _event_case("ok", *STD_EVENT_TWICE))]
    known = _parse(_entry(rule="RPC-CLI-COMPLETE-01", verdict="fail", reason="r")
                   + _entry(case="never-ran", verdict="fail", reason="r"))
    applied = apply_all(known, passed)
    assert [r.verdict for r in applied] == [Verdict.PASS]
    assert [d.key for d in known.unused()] == ["rule RPC-CLI-COMPLETE-01", "case never-ran"]


def test_not_applicable_cases_do_not_exercise_a_rule() -> None:
    missing = replace(_run("", _event_case("ok", *STD_EVENT_TWICE)),
                      verdict=Verdict.NOT_APPLICABLE)
    known = _parse(_entry(**GOOD))
    assert apply_all(known, [missing]) == [missing]


def test_the_report_lists_the_entries_with_what_each_matched() -> None:
    results = _failing_run()
    known = _parse(_entry(**GOOD) + _entry(case="never-ran", verdict="fail", reason="r"))
    applied = apply_all(known, results)
    record = RunRecord(streams.run_start(expectations=known.to_json()), applied, None)
    report = build_report(record)
    validate_report(report)
    assert [(e.get("rule") or e.get("case"), e["matched"]) for e in
            report["expectations"]["deviations"]] == [("COM-SYNC-03", 1), ("never-ran", 0)]
    (rule,) = [r for r in report["rules"] if r["id"] == "COM-SYNC-03"]
    assert rule["verdict"] == "expected_fail"


def test_the_directed_tour_of_a_failing_adapter_passes_the_gate_with_its_deviation_listed() -> None:
    adapter = EventAdapter("std_event_keeps_signal")
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=2.0)
    try:
        results = [runner.run(case) for case in sequences.plan(adapter.capabilities()).cases]
    finally:
        runner.close()
    assert Summary.of(results).exit_code() == 1
    known = load(DATA / "fake-events.toml")
    applied = apply_all(known, results)
    assert Summary.of(applied).exit_code() == 0
    assert Summary.of(applied).expected_fail >= 1
    assert [d.key for d in known.unused()] == ["case event-tour-003"]
