"""A case's verdict can be trusted: no failure it saw is lost, a hang costs one timeout, a wait for
ever is sent only once what was observed established that it returns, and an exception in
callgate's own code is that case's `error`, not the end of the run.

Each test here failed before this change: a stateful case reported one of two failures it saw,
shrank a hang through a dozen timeouts, sent Wait(INFINITE) to an event whose Signal had not
worked (an error after a timeout where a failure was there to see), and a harness exception in a
step escaped the runner and aborted the run.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis.internal.conjecture import engine as hypothesis_engine
from hypothesis.reporting import default as reporting_default
from hypothesis.reporting import with_reporter

from callgate.conformance.budgets import BUDGETS
from callgate.conformance.cases import sequences
from callgate.conformance.cases import walk as walk_module
from callgate.conformance.cases.stateful import StatefulBudget, run_stateful
from callgate.conformance.cases.walk import walk_machine
from callgate.conformance.expectations import Deviation, Expectations
from callgate.conformance.gate import RunOptions, run_gate
from callgate.conformance.judge import perform as perform_module
from callgate.conformance.judge import runner as runner_module
from callgate.conformance.judge.runner import Case, CaseRunner
from callgate.conformance.protocol.adapter import Capabilities, Observation, Request, SlotSpec
from callgate.conformance.report import junit, reporting
from callgate.conformance.results import CaseResult, Verdict, read_stream
from callgate.model import codes
from callgate.model.transitions import Action
from tests.fakes import PINS, EventAdapter, EventSession

E0 = [SlotSpec("e0", "event", {})]


class Scripted(EventAdapter):
    """EventAdapter whose sessions are `session_class`; every request is counted."""

    def __init__(self, session_class: type[EventSession], fault: str = "",
                 pins: dict[str, str] | None = None) -> None:
        super().__init__(fault)
        self.session_class = session_class
        self.pins = dict(PINS if pins is None else pins)
        self.requests: list[Request] = []

    def capabilities(self) -> Capabilities:
        caps = super().capabilities()
        return Capabilities(caps.implementation, caps.version, caps.features, self.pins)

    def open_session(self, slots: Sequence[SlotSpec]) -> EventSession:
        session = self.session_class(self.fault)
        session.adapter = self  # type: ignore[attr-defined]
        return session


class Counting(EventSession):
    def perform(self, request: Request) -> Observation:
        self.adapter.requests.append(request)  # type: ignore[attr-defined]
        return self.answer(request)

    def answer(self, request: Request) -> Observation:
        return super().perform(request)


class TwoBugs(Counting):
    """Two independent deviations: GetHandle on a StdEvent gives no handle; Reset on a
    ManualResetEvent fails. `produced` records each one the adapter showed."""

    produced: ClassVar[set[str]] = set()

    def answer(self, request: Request) -> Observation:
        event = self.events.get(request.slot)
        if request.op == "GetHandle" and event is not None and event.kind == "StdEvent":
            TwoBugs.produced.add("GetHandle")
            return Observation(codes.S_OK.value, {"nonnull": False})
        if request.op == "Reset" and event is not None and event.kind == "ManualResetEvent":
            TwoBugs.produced.add("Reset")
            return Observation(codes.E_FAIL.value)
        return super().answer(request)


class HangsOnSignal(Counting):
    """Never answers Signal (one request kind, never answered)."""

    def answer(self, request: Request) -> Observation:
        if request.op == "Signal":
            threading.Event().wait(60)
        return super().answer(request)


class SignalIgnored(Counting):
    """Signal answers S_OK and does nothing; an INFINITE Wait really waits for the signal."""

    def answer(self, request: Request) -> Observation:
        if request.op == "Signal":
            return Observation(codes.S_OK.value)
        if request.op == "Wait" and request.args.get("timeout") == "infinite":
            while not self.events[request.slot].signaled:
                time.sleep(0.01)
        return super().answer(request)


class RealInfinite(Counting):
    """A correct event whose INFINITE Wait blocks while the event is not signalled."""

    def answer(self, request: Request) -> Observation:
        if request.op == "Wait" and request.args.get("timeout") == "infinite":
            while not self.events[request.slot].signaled:
                time.sleep(0.01)
        return super().answer(request)


def _runner(adapter: Scripted, timeout: float = 2.0) -> CaseRunner:
    return CaseRunner(adapter, adapter.capabilities(), step_timeout=timeout)


def _case(*steps: tuple[str, dict[str, str]]) -> Case:
    return Case("t", "directed", "test case", tuple(E0),
                tuple(Action("e0", op, tuple(args.items())) for op, args in steps))


def _ops(result: CaseResult) -> list[str]:
    return [f"{s.op}({','.join(map(str, s.args.values()))})" for s in result.trace]


def _replayed(runner: CaseRunner, replay: dict[str, Any]) -> CaseResult:
    """The recorded steps of `replay`, run again as a directed case."""
    steps = replay["steps"]
    assert isinstance(steps, list)
    return runner.run(Case("replay", "directed", "replay", tuple(E0), tuple(
        Action(s["slot"], s["op"], tuple(s["args"].items())) for s in steps)))


# --- 1. a failure the gate saw does not vanish -----------------------------------------------


def test_two_distinct_failures_in_one_stateful_case_are_both_reported() -> None:
    TwoBugs.produced = set()
    adapter = Scripted(TwoBugs)
    runner = _runner(adapter)
    try:
        result = run_stateful(runner, StatefulBudget(40, 10), seed=1, slots=E0)
        assert TwoBugs.produced == {"GetHandle", "Reset"}, "the seed must show both deviations"
        assert result.verdict is Verdict.FAIL
        reported = [(result.trace[-1].op, result.failed_rules, result.replay)] + [
            (f.trace[-1].op, f.failed_rules, f.replay) for f in result.other_failures]
        assert sorted(op for op, _, _ in reported) == ["GetHandle", "Reset"], reported
        assert "other failure" in result.message
        # Each is shrunk to its two steps and replays to the same failure.
        for op, rules, replay in reported:
            assert len(replay["steps"]) == 2, replay
            again = _replayed(runner, replay)
            assert again.verdict is Verdict.FAIL and again.trace[-1].op == op
            assert again.failed_rules == rules
    finally:
        runner.close()


def test_every_deviation_the_adapter_showed_is_reported_whatever_the_seed() -> None:
    for seed in range(4):
        TwoBugs.produced = set()
        adapter = Scripted(TwoBugs)
        runner = _runner(adapter)
        try:
            result = run_stateful(runner, StatefulBudget(20, 10), seed=seed, slots=E0)
        finally:
            runner.close()
        shown = {result.trace[-1].op} | {f.trace[-1].op for f in result.other_failures}
        assert shown == TwoBugs.produced, (seed, shown, TwoBugs.produced)


def _two_failures() -> CaseResult:
    TwoBugs.produced = set()
    adapter = Scripted(TwoBugs)
    runner = _runner(adapter)
    try:
        result = run_stateful(runner, StatefulBudget(40, 10), seed=1, slots=E0,
                              case_id="stateful-two")
    finally:
        runner.close()
    assert result.other_failures
    return result


def _report(result: CaseResult, tmp_path: Path) -> dict[str, Any]:
    """report.json of a run of the one case `result`, through its results stream."""
    stream = tmp_path / "results.jsonl"
    stream.write_text("\n".join(json.dumps(e) for e in (
        {"event": "run_start", "schema": 1, "seed": 1, "budget": "quick",
         "adapter": {"name": "two-bugs"}, "transitions_total": {}},
        {"event": "case", "case": result.to_json()},
        {"event": "run_end", "seconds": 1.0, "summary": {}})) + "\n")
    return reporting.build_report(read_stream(stream))


def test_other_failures_reach_report_json_junit_and_the_rules_matrix(tmp_path: Path) -> None:
    result = _two_failures()
    again = CaseResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again == result
    report = _report(result, tmp_path)
    reporting.validate_report(report, "test")  # the schema admits other_failures
    (case,) = report["cases"]
    (other,) = case["other_failures"]
    assert other["verdict"] == "fail" and other["trace"][-1]["ok"] is False
    assert other["replay"]["steps"]
    text = junit.trace_text(case)
    assert "GetHandle" in text and "Reset" in text and "(failure 2)" in text
    failed = {r["id"] for r in report["rules"] if r["verdict"] == "fail"}
    assert set(result.failed_rules) <= failed
    assert set(result.other_failures[0].failed_rules) <= failed


def test_the_markdown_summary_names_the_other_failures(tmp_path: Path) -> None:
    result = _two_failures()
    text = reporting.render_markdown(_report(result, tmp_path))
    other = result.other_failures[0]
    assert "Also seen (fail, 2 steps" in text
    assert other.trace[-1].op in text.split("Also seen", 1)[1]


def test_a_known_deviation_does_not_hide_another_failure_of_the_same_case(tmp_path: Path) -> None:
    result = _two_failures()
    first = result.failed_rules[0]
    other = next(r for r in result.other_failures[0].failed_rules
                 if r not in result.failed_rules)
    one = Expectations(tmp_path / "x.toml", (Deviation("", first, Verdict.FAIL, "known"),))
    assert one.apply(result).verdict is Verdict.FAIL  # the other failure is not listed
    both = Expectations(tmp_path / "x.toml", (Deviation("", first, Verdict.FAIL, "known"),
                                              Deviation("", other, Verdict.FAIL, "known too")))
    assert both.apply(result).verdict is Verdict.EXPECTED_FAIL


# --- 2. a hang costs one timeout, and Hypothesis prints nothing -------------------------------


@pytest.mark.serial  # bounds the wall time: run alone
def test_a_hang_in_a_stateful_case_is_one_timeout_not_shrunk(capfd: pytest.CaptureFixture[str]
                                                              ) -> None:
    adapter = Scripted(HangsOnSignal)
    runner = _runner(adapter, timeout=0.5)
    started = time.monotonic()
    try:
        with with_reporter(reporting_default):  # as outside pytest
            result = run_stateful(runner, StatefulBudget(40, 10), seed=0, slots=E0)
    finally:
        runner.close()
    seconds = time.monotonic() - started
    assert result.verdict is Verdict.ERROR and "hung" in result.message
    assert result.trace[-1].op == "Signal" and result.trace[-1].code is None
    assert runner.executor.abandoned == 1, "one timeout, not one per shrink attempt"
    assert seconds < 4.0, seconds
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)


@pytest.mark.serial  # bounds the wall time: run alone
def test_shrinking_stops_at_its_time_budget_with_the_smallest_program_seen() -> None:
    class Slow(TwoBugs):  # shrinking this without a budget takes about 5 s
        def answer(self, request: Request) -> Observation:
            time.sleep(0.02)
            return super().answer(request)

    adapter = Scripted(Slow)
    runner = _runner(adapter)
    started = time.monotonic()
    try:
        result = run_stateful(runner, StatefulBudget(40, 10), seed=1, slots=E0,
                              shrink_seconds=0.2)
    finally:
        runner.close()
    seconds = time.monotonic() - started
    assert result.verdict is Verdict.FAIL and "shrinking stopped after 0.2 s" in result.message
    assert result.trace[-1].op in ("GetHandle", "Reset") and not result.trace[-1].ok
    assert seconds < 4.0, seconds


def test_nothing_from_hypothesis_is_printed_for_a_failing_case(
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # What a long shrink makes Hypothesis print ("... PLEASE REPORT THIS ..."), at once.
    monkeypatch.setattr(hypothesis_engine, "MAX_SHRINKING_SECONDS", 0)
    adapter = Scripted(Counting, fault="created_signaled")
    runner = _runner(adapter)
    try:
        # Hypothesis's pytest plugin keeps its reports out of the output; the gate runs
        # without it, where they go to stdout.
        with with_reporter(reporting_default):
            result = run_stateful(runner, StatefulBudget(20, 10), seed=0, slots=E0)
    finally:
        runner.close()
    assert result.verdict is Verdict.FAIL
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)


def test_the_walk_takes_a_hanging_request_once_and_goes_on() -> None:
    class HangsOnZeroWait(Counting):
        def answer(self, request: Request) -> Observation:
            if request.op == "Wait" and request.args.get("timeout") == "zero":
                threading.Event().wait(60)
            return super().answer(request)

    adapter = Scripted(HangsOnZeroWait)
    caps = adapter.capabilities()
    plan = sequences.plan(caps).machines["event"]
    pending = set(plan.transitions)
    runner = _runner(adapter, timeout=0.2)
    try:
        results = [r for _, r in walk_machine(runner, plan, pending)]
    finally:
        runner.close()
    errors = [(r.trace[-1].state_before, r.trace[-1].op, r.trace[-1].args) for r in results
              if r.verdict is Verdict.ERROR]
    # One timeout per state where a zero Wait is taken, never the same one twice.
    assert len(errors) == len({repr(e) for e in errors}), errors
    assert runner.executor.abandoned == len(errors) <= 4
    assert not [k for k in pending if "Wait(timeout=zero)" not in k and "infinite" not in k], \
        sorted(pending)


# --- 3. a wait for ever only once observation established that it returns --------------------


@pytest.mark.serial  # bounds the wall time: run alone
@pytest.mark.parametrize("clsid", ["ManualResetEvent", "StdEvent"])
def test_an_ignored_signal_fails_at_once_instead_of_hanging_an_infinite_wait(clsid: str) -> None:
    adapter = Scripted(SignalIgnored)
    runner = _runner(adapter, timeout=1.0)
    started = time.monotonic()
    try:
        result = runner.run(_case(("CoCreateInstance", {"clsid": clsid}), ("Signal", {}),
                                  ("Wait", {"timeout": "infinite"})))
    finally:
        runner.close()
    assert result.verdict is Verdict.FAIL, result.message
    assert _ops(result)[-1] == "Wait(zero)" and result.trace[-1].code_name.startswith(
        "RPC_S_CALLPENDING")
    assert not [r for r in adapter.requests if r.args.get("timeout") == "infinite"]
    assert runner.executor.abandoned == 0 and time.monotonic() - started < 1.0


@pytest.mark.parametrize(("clsid", "looks"), [
    ("ManualResetEvent", ["Wait(zero)"]), ("StdEvent", ["Wait(zero)", "Signal()"])])
def test_an_infinite_wait_is_sent_after_a_look_and_the_trace_replays_as_it_ran(
        clsid: str, looks: list[str]) -> None:
    adapter = Scripted(RealInfinite)
    runner = _runner(adapter)
    case = _case(("CoCreateInstance", {"clsid": clsid}), ("Signal", {}),
                 ("Wait", {"timeout": "infinite"}))
    try:
        result = runner.run(case)
        assert result.verdict is Verdict.PASS, result.message
        steps = result.replay["steps"]
        ran = [f"{s['op']}({','.join(map(str, s['args'].values()))})" for s in steps]
        assert ran == [f"CoCreateInstance({clsid})", "Signal()", *looks, "Wait(infinite)"]
        assert result.steps == len(ran)
        again = _replayed(runner, result.replay)
        assert again.verdict is Verdict.PASS and again.replay["steps"] == steps
    finally:
        runner.close()


def test_an_infinite_wait_is_never_sent_where_a_candidate_state_would_block_it() -> None:
    # With the new event's state not pinned, the model holds signalled and non-signalled after
    # CoCreateInstance: an INFINITE Wait may block, whatever the runner is asked.
    adapter = Scripted(RealInfinite, pins={"wait_timeout_code": "RPC_S_CALLPENDING"})
    runner = _runner(adapter, timeout=0.5)
    try:
        live = runner.open("t", E0)
        assert live.step(Action("e0", "CoCreateInstance", (("clsid", "StdEvent"),)))
        assert len(live.trackers["e0"].states) == 2
        wait = Action("e0", "Wait", (("timeout", "infinite"),))
        assert not live.offered(wait)
        assert not live.step(wait) and "not sent" in live.message
        live.close()
    finally:
        runner.close()
    assert [r.op for r in adapter.requests] == ["CoCreateInstance"]
    assert runner.executor.abandoned == 0


def test_a_stateful_case_never_hangs_on_an_ignored_signal() -> None:
    adapter = Scripted(SignalIgnored)
    runner = _runner(adapter, timeout=1.0)
    try:
        result = run_stateful(runner, StatefulBudget(40, 10), seed=0, slots=E0)
    finally:
        runner.close()
    assert runner.executor.abandoned == 0, "an INFINITE Wait was sent and hung"
    assert result.verdict is Verdict.FAIL
    assert all(f.verdict is Verdict.FAIL for f in result.other_failures)


def test_the_walk_never_hangs_on_an_ignored_signal() -> None:
    adapter = Scripted(SignalIgnored)
    caps = adapter.capabilities()
    plan = sequences.plan(caps).machines["event"]
    runner = _runner(adapter, timeout=1.0)
    try:
        results = [r for _, r in walk_machine(runner, plan, set(plan.transitions))]
    finally:
        runner.close()
    assert any(r.verdict is Verdict.FAIL for r in results)
    assert not [r.message for r in results if r.verdict is Verdict.ERROR]
    assert runner.executor.abandoned == 0


def test_after_a_failed_step_nothing_more_is_sent() -> None:
    adapter = Scripted(SignalIgnored)
    runner = _runner(adapter)
    try:
        live = runner.open("t", E0)
        live.step(Action("e0", "CoCreateInstance", (("clsid", "ManualResetEvent"),)))
        live.step(Action("e0", "Signal", ()))
        assert not live.step(Action("e0", "Wait", (("timeout", "zero"),)))
        sent = len(adapter.requests)
        assert not live.step(Action("e0", "Wait", (("timeout", "infinite"),)))
        assert len(adapter.requests) == sent and live.verdict is Verdict.FAIL
        live.close()
    finally:
        runner.close()


# --- 4. an exception in callgate's own code is that case's error ------------------------------


def _break_step_record(monkeypatch: pytest.MonkeyPatch, times: int = 1) -> None:
    real = perform_module.step_record
    left = [times]

    def broken(*args: object, **kwargs: object) -> object:
        if left[0] > 0:
            left[0] -= 1
            raise RuntimeError("the judge broke")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner_module, "step_record", broken)


def test_a_harness_exception_in_a_step_is_that_cases_error(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    _break_step_record(monkeypatch)
    adapter = Scripted(Counting)
    runner = _runner(adapter)
    case = _case(("CoCreateInstance", {"clsid": "StdEvent"}), ("Signal", {}),
                 ("Wait", {"timeout": "zero"}))
    try:
        broken = runner.run(case)
        after = runner.run(case)
    finally:
        runner.close()
    assert broken.verdict is Verdict.ERROR and "harness error" in broken.message
    assert "RuntimeError: the judge broke" in broken.evidence and "Traceback" in broken.evidence
    assert after.verdict is Verdict.PASS


def test_a_harness_exception_in_a_stateful_case_is_its_error(
        monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    _break_step_record(monkeypatch)
    adapter = Scripted(Counting)
    runner = _runner(adapter)
    try:
        result = run_stateful(runner, StatefulBudget(20, 10), seed=0, slots=E0)
    finally:
        runner.close()
    assert result.verdict is Verdict.ERROR
    assert "RuntimeError: the judge broke" in result.evidence
    assert capfd.readouterr() == ("", "")


def test_a_harness_exception_in_the_walk_ends_that_walk_with_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("the planner broke")

    monkeypatch.setattr(walk_module, "_Distances", broken)
    adapter = Scripted(Counting)
    caps = adapter.capabilities()
    plan = sequences.plan(caps).machines["event"]
    runner = _runner(adapter)
    try:
        results = [r for _, r in walk_machine(runner, plan, set(plan.transitions))]
    finally:
        runner.close()
    assert [r.verdict for r in results] == [Verdict.ERROR]
    assert "the planner broke" in results[0].evidence


def test_a_harness_exception_in_one_case_does_not_abort_the_run(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _break_step_record(monkeypatch)
    options = RunOptions("tests.fakes:EventAdapter", BUDGETS["quick"], 0, tmp_path, 5.0,
                         parallel=False)
    outcome = run_gate(EventAdapter(), options)
    assert outcome.complete and outcome.exit_code == 3
    report = json.loads((tmp_path / "report.json").read_text())
    errors = [c for c in report["cases"] if c["verdict"] == "error"]
    assert len(errors) == 1 and "the judge broke" in errors[0]["evidence"]
    others = [c for c in report["cases"] if c["verdict"] != "error"]
    assert len(others) == len(report["cases"]) - 1
    # The rest ran: each passed, or says why it could not apply (the identifying sequences
    # of a walk that broke have no transitions to follow).
    assert all(c["verdict"] == "pass" or (c["verdict"] == "not_applicable" and c["message"])
               for c in others)
    assert sum(c["verdict"] == "pass" for c in others) >= len(others) - 1

