"""The shrinker: every failing case comes back 1-minimal, for the same reason, within a budget."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from callgate.conformance import mutants
from callgate.conformance.cases import sequences
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.judge.runner import Case, CaseRunner
from callgate.conformance.judge.shrink import (
    Reason,
    ShrinkBudget,
    Shrinker,
    actions_of,
    shrink_case,
    shrink_failure,
)
from callgate.conformance.protocol.adapter import Observation, Request, SlotSpec
from callgate.conformance.report import reporting
from callgate.conformance.results import CaseResult, Verdict, read_stream
from callgate.model import codes
from callgate.model.transitions import Action
from tests import streams
from tests.fakes import EventAdapter, EventSession

E0 = (SlotSpec("e0", "event", {}),)


def a(op: str, **args: str) -> Action:
    return Action("e0", op, tuple(args.items()))


CREATE = a("CoCreateInstance", clsid="ManualResetEvent")
SIGNAL, RESET, HANDLE = a("Signal"), a("Reset"), a("GetHandle")
LOOK = a("Wait", timeout="zero")


@dataclass
class ArmedSession(EventSession):
    """Loses a Signal once GetHandle and then Reset have been called in the session (a hidden
    state the model does not have): the Wait after that Signal times out where S_OK is due.
    With `other_way`, every session but the first answers GetHandle with a null handle."""

    other_way: bool = False
    first: bool = True
    handle: bool = False
    armed: bool = False

    def perform(self, request: Request) -> Observation:
        if request.op == "GetHandle":
            self.handle = True
            if self.other_way and not self.first:
                return Observation(codes.S_OK.value, {"nonnull": False})
        if request.op == "Reset" and self.handle:
            self.armed = True
        if request.op == "Signal" and self.armed:
            return Observation(codes.S_OK.value)  # the signal is lost
        return super().perform(request)


class ArmedAdapter(EventAdapter):
    def __init__(self, other_way: bool = False) -> None:
        super().__init__()
        self.other_way = other_way

    def open_session(self, slots: Sequence[SlotSpec]) -> EventSession:
        session = ArmedSession("", other_way=self.other_way, first=self.sessions == 0)
        super().open_session(slots)
        return session


def failing(adapter: ArmedAdapter, steps: Sequence[Action]) -> tuple[CaseRunner, CaseResult]:
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=5.0)
    result = runner.run(Case("t", "directed", "test case", E0, tuple(steps)))
    assert result.verdict is Verdict.FAIL and len(result.trace) == len(steps), result.message
    return runner, result


# 40 steps: the 3 that matter (GetHandle, then Reset, then Signal) among noise that neither arms
# the fault nor shows it, then the Wait that shows it.
NOISE = [SIGNAL, LOOK, RESET, LOOK, SIGNAL, LOOK, LOOK, RESET]
LONG = [CREATE, *NOISE, *NOISE, HANDLE, LOOK, *([LOOK] * 4), RESET, *([LOOK, HANDLE] * 7),
        SIGNAL, LOOK]


def test_a_fault_needing_three_steps_in_a_forty_step_trace_shrinks_to_exactly_those() -> None:
    assert len(LONG) == 40
    runner, failed = failing(ArmedAdapter(), LONG)
    try:
        shrunk = shrink_failure(runner, failed, E0)
        assert shrunk is not None
        assert actions_of(shrunk.result.trace) == (CREATE, HANDLE, RESET, SIGNAL, LOOK)
        assert (shrunk.length_before, shrunk.length_after) == (40, 5)
        assert shrunk.one_minimal and shrunk.note == ""
        assert 0 < shrunk.reruns <= ShrinkBudget().reruns
        assert Reason.of(shrunk.result) == Reason.of(failed)
    finally:
        runner.close()


def test_a_cycle_back_to_an_observed_state_is_cut_out() -> None:
    # After GetHandle and Reset, Signal/Reset pairs lead back to the state they left.
    steps = [CREATE, HANDLE, RESET, *([SIGNAL, RESET] * 6), SIGNAL, LOOK]
    runner, failed = failing(ArmedAdapter(), steps)
    try:
        shrinker = Shrinker(runner, Case("t", "directed", "", E0, tuple(steps)),
                            Reason.of(failed))  # type: ignore[arg-type]
        cut = shrinker.cycles(failed)
        assert actions_of(cut.trace) == (CREATE, HANDLE, RESET, SIGNAL, LOOK)
        # The longest cycle (from before GetHandle) was tried first and lost the failure.
        assert shrinker.rejected.get("passed", 0) >= 1
    finally:
        runner.close()


def test_a_candidate_that_fails_another_way_is_not_accepted() -> None:
    steps = [CREATE, LOOK, HANDLE, LOOK, RESET, SIGNAL, LOOK]
    runner, failed = failing(ArmedAdapter(other_way=True), steps)
    try:
        shrunk = shrink_failure(runner, failed, E0)
        assert shrunk is not None
        # Every rerun that keeps GetHandle fails on it (a null handle), every other one passes:
        # none shows the lost signal, so the original is what is reported.
        assert shrunk.rejected.get("failed another way", 0) >= 1
        assert actions_of(shrunk.result.trace) == tuple(steps)
        assert shrunk.result.trace[-1].op == "Wait" and shrunk.length_after == len(steps)
    finally:
        runner.close()


@pytest.mark.parametrize("budget", [ShrinkBudget(reruns=3), ShrinkBudget(seconds=0.0)])
def test_a_budget_that_runs_out_is_reported_as_not_minimal(budget: ShrinkBudget) -> None:
    runner, failed = failing(ArmedAdapter(), LONG)
    try:
        shrunk = shrink_failure(runner, failed, E0, budget)
        assert shrunk is not None
        assert not shrunk.one_minimal
        assert "budget ran out" in shrunk.note
        assert shrunk.reruns <= budget.reruns
        assert Reason.of(shrunk.result) == Reason.of(failed)
        assert shrunk.length_after <= 40
    finally:
        runner.close()


def test_shrink_case_reports_lengths_and_progress() -> None:
    runner, failed = failing(ArmedAdapter(), LONG)
    ticks = iter(range(0, 10_000, 3))  # a clock that moves 3 s per reading: progress every call
    said: list[str] = []
    try:
        result = shrink_case(runner, failed, progress=said.append,
                             clock=lambda: float(next(ticks)),
                             budget=ShrinkBudget(reruns=400, seconds=1e6))
    finally:
        runner.close()
    assert (result.length_before, result.length_after) == (40, 5)
    assert result.shrink["one_minimal"] is True and result.original_length == 40
    assert result.replay["steps"][-1]["op"] == "Wait" and len(result.replay["steps"]) == 5
    assert said and said[0].startswith("shrinking t: ")


def test_a_branch_failure_without_a_program_to_rerun_is_reported_not_shrunk() -> None:
    runner, failed = failing(ArmedAdapter(), [CREATE, HANDLE, RESET, SIGNAL, LOOK])
    runner.close()
    trace = [replace(t, thread="branch 1") for t in failed.trace]
    raced = replace(failed, kind="parallel", trace=trace, history=trace)
    result = shrink_case(runner, raced)
    assert result.shrink["one_minimal"] is False and "not shrunk" in result.shrink["note"]
    assert result.length_before == result.length_after == 5


def test_only_a_fail_whose_last_step_went_wrong_has_a_reason() -> None:
    runner, failed = failing(ArmedAdapter(), [CREATE, HANDLE, RESET, SIGNAL, LOOK])
    runner.close()
    assert Reason.of(failed) == Reason("event", "Wait", tuple(sorted(failed.trace[-1].rules)))
    assert Reason.of(replace(failed, verdict=Verdict.ERROR)) is None
    assert Reason.of(replace(failed, trace=failed.trace[:-1])) is None
    assert shrink_case(runner, replace(failed, verdict=Verdict.ERROR)).shrink == {}


def _report(tmp_path: Path, shrink: dict[str, object]) -> dict[str, Any]:
    shrunk = replace(streams.com_failure(), length_before=9, length_after=4, shrink=shrink)
    record = read_stream(streams.write_stream(tmp_path / "results.jsonl", [shrunk]))
    reporting.write_reports(record, tmp_path)
    report: dict[str, Any] = json.loads((tmp_path / "report.json").read_text("utf-8"))
    return report


SHRINK = {"length_before": 9, "length_after": 4, "reruns": 12, "seconds": 0.1,
          "one_minimal": True, "note": "", "rejected": {"passed": 11}}


def test_the_report_shows_the_lengths_before_and_after_shrinking(tmp_path: Path) -> None:
    report = _report(tmp_path, SHRINK)
    (case,) = report["cases"]
    assert (case["length_before"], case["length_after"]) == (9, 4)
    assert case["shrink"]["one_minimal"] is True
    text = (tmp_path / "report.md").read_text("utf-8")
    assert "Shrunk from 9 to 4 steps in 12 reruns: no single step can be removed" in text
    html = (tmp_path / "report.html").read_text("utf-8")
    assert "Shrunk from 9 to 4 steps in 12 reruns" in html


def test_a_shrinking_that_ran_out_says_not_minimal_and_a_broken_one_breaks_the_schema(
        tmp_path: Path) -> None:
    _report(tmp_path / "a", SHRINK | {"one_minimal": False, "note": "the budget ran out"})
    assert "not shown minimal (the budget ran out)" in (tmp_path / "a" / "report.md").read_text(
        "utf-8")
    broken = {k: v for k, v in SHRINK.items() if k != "one_minimal"}
    with pytest.raises(reporting.ReportInvalid):
        _report(tmp_path / "b", broken)


# --- minimal in `callgate mutants`: the faulty transition, and the steps that observe it --------

STD = a("CoCreateInstance", clsid="StdEvent")
WAIT_FINITE = a("Wait", timeout="finite")


def _keeps_signal(steps: Sequence[Action]) -> tuple[CaseResult, sequences.Plan]:
    adapter = EventAdapter("std_event_keeps_signal")  # the Wait that should auto-reset does not
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=5.0)
    try:
        result = runner.run(Case("t", "directed", "test case", E0, tuple(steps)))
    finally:
        runner.close()
    assert result.verdict is Verdict.FAIL
    return result, sequences.plan(adapter.capabilities())


def test_a_fault_that_corrupts_the_next_state_counts_the_steps_that_observe_it() -> None:
    result, plan = _keeps_signal([STD, SIGNAL, WAIT_FINITE, LOOK])
    text, shortest, observing = mutants.faulty_transition(result, plan, "COM-SYNC-03")
    # The faulty transition is the Wait that kept the signal; the zero Wait after it shows it.
    assert text == "event: kind=StdEvent signaled=True / Wait(timeout=finite)"
    assert (shortest, observing) == (2, 1)
    assert mutants.is_minimal(len(result.trace), shortest, observing, True)
    # Without the rule, the failing step is taken: then 4 steps are more than 1 + 1.
    text, shortest, observing = mutants.faulty_transition(result, plan)
    assert text.endswith("signaled=False / Wait(timeout=zero)") and (shortest, observing) == (1, 0)
    assert not mutants.is_minimal(len(result.trace), shortest, observing, True)


def test_a_counterexample_with_a_detour_or_not_shown_1_minimal_is_not_minimal() -> None:
    result, plan = _keeps_signal([STD, RESET, LOOK, SIGNAL, WAIT_FINITE, LOOK])
    _, shortest, observing = mutants.faulty_transition(result, plan, "COM-SYNC-03")
    # No Wait citing the rule is reached by a shortest path: the latest one (the failing step)
    # is named, and 6 steps are more than its shortest path, itself and nothing after it.
    assert (shortest, observing) == (1, 0)
    assert not mutants.is_minimal(len(result.trace), shortest, observing, True)
    assert not mutants.is_minimal(4, 2, 1, False)  # the shrinker did not show it
    assert not mutants.is_minimal(4, 2, 1, None)   # not shrunk at all
    assert mutants.is_minimal(4, None, 1, True) is None  # no faulty transition: unknown


def test_a_shrunk_race_reports_its_attempts_and_reproduction_rate(tmp_path: Path) -> None:
    report = _report(tmp_path, SHRINK | {"attempts": 8, "reproduced": 3, "reproduce_runs": 8,
                                         "note": "probabilistic: ..."})
    assert report["cases"][0]["shrink"]["reproduced"] == 3
    text = (tmp_path / "report.md").read_text("utf-8")
    assert "each candidate ran up to 8 times (a probabilistic claim)" in text
    assert "failed the same way in 3 of 8 fresh runs" in text


def test_a_fault_between_two_objects_counts_a_shortest_path_for_each() -> None:
    # Two manual-reset events sharing one kernel event: e0's Signal shows on e1's Wait. The
    # faulty transition is e0's Signal (e1's Wait does not cite COM-SYNC-01, the Signal does);
    # the bound is a shortest path for each object driven (e0 and e1 created), the Signal, and
    # e1's Wait that observes it: 4 steps are minimal; one object's path alone (1 step to e0's
    # state) would have called them not minimal.
    adapter = ReferenceAdapter(faults=["event_kernel_handle_shared"])
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=5.0)
    slots = (SlotSpec("e0", "event", {}), SlotSpec("e1", "event", {}))
    steps = (Action("e0", "CoCreateInstance", (("clsid", "ManualResetEvent"),)),
             Action("e1", "CoCreateInstance", (("clsid", "ManualResetEvent"),)),
             Action("e0", "Signal", ()), Action("e1", "Wait", (("timeout", "zero"),)))
    try:
        result = runner.run(Case("t", "multi", "two events", slots, steps))
    finally:
        runner.close()
        adapter.shutdown()
    assert result.verdict is Verdict.FAIL and result.trace[-1].slot == "e1"
    plan = sequences.plan(adapter.capabilities())
    text, shortest, observing = mutants.faulty_transition(result, plan, "COM-SYNC-01")
    assert text.startswith("event e0: kind=ManualResetEvent signaled=False / Signal")
    assert (shortest, observing) == (2, 1)
    assert mutants.is_minimal(len(result.trace), shortest, observing, True)


def test_a_shrunk_counterexample_keeps_the_values_it_sent() -> None:
    # Finish_ hands back the previous call's [out]: the shrunk counterexample (a cycle cut out)
    # must carry the concrete values it ran with, or its replay sends others and its echoed
    # [out] cannot be read back as the model's (the faulty transition could not be placed).
    adapter = ReferenceAdapter(faults=["finish_stale_out"])
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=5.0)
    slots = (SlotSpec("s0", "com_call", {}),)

    def c(op: str, **args: str | int | bool) -> Action:
        return Action("s0", op, tuple(args.items()))

    call = [c("Begin_"), c("server_signal", out=1, then_impersonate=False), c("Finish_")]
    steps = (c("CreateCall", riid="async", aggregate=False), *call, *call, c("Begin_"),
             c("server_signal", out=2, then_impersonate=False), c("Finish_"))
    try:
        failed = runner.run(Case("t", "directed", "stale out", slots, steps))
        assert failed.verdict is Verdict.FAIL and len(failed.trace) == 10, failed.message
        shrunk = shrink_case(runner, failed)
    finally:
        runner.close()
        adapter.shutdown()
    assert shrunk.length_after == 7 and shrunk.shrink["one_minimal"]
    assert shrunk.replay["values"] == failed.replay["values"]
    plan = sequences.plan(adapter.capabilities(), only={"com_call"})
    text, shortest, observing = mutants.faulty_transition(shrunk, plan, "COM-FIN-01")
    assert text.endswith("phase=SIGNALED cancel=False out=1 held=False orphan=0 waited=False"
                         " / Finish_()")
    assert (shortest, observing) == (3, 3)
    assert mutants.is_minimal(len(shrunk.trace), shortest, observing, True)


def test_a_needed_step_the_model_calls_a_no_op_is_where_a_hidden_fault_acts() -> None:
    # rewait_loses_out: a second Wait that returns S_OK empties the [out] buffer, and Finish_
    # (the step citing COM-FIN-01) delivers 0. The model says the second Wait changes nothing, so
    # a trace that needs it (shown by the shrinker) shows the fault acting there.
    adapter = ReferenceAdapter(faults=["rewait_loses_out"])
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=5.0)
    look = Action("s0", "Wait", (("timeout", "zero"),))
    steps = (Action("s0", "CreateCall", (("riid", "async"), ("aggregate", False))),
             Action("s0", "Begin_", ()),
             Action("s0", "server_signal", (("out", 1), ("then_impersonate", False))),
             look, look, Action("s0", "Finish_", ()))
    try:
        # [out] 1 sent as 42: the lost value (0) must differ from the one sent.
        result = runner.run(Case("t", "directed", "wait twice", (SlotSpec("s0", "com_call", {}),),
                                 steps, values={"out": {"1": 42, "2": 7}}))
    finally:
        runner.close()
        adapter.shutdown()
    assert result.verdict is Verdict.FAIL and len(result.trace) == 6, result.message
    plan = sequences.plan(adapter.capabilities(), only={"com_call"})
    text, shortest, observing = mutants.faulty_transition(result, plan, "COM-FIN-01",
                                                          needed=True)
    assert text.endswith("waited=True / Wait(timeout=zero)") and (shortest, observing) == (4, 1)
    assert mutants.is_minimal(6, shortest, observing, True)
    # Not shown needed: the step citing the rule is named, and 6 steps exceed 4 + 1 + 0.
    text, shortest, observing = mutants.faulty_transition(result, plan, "COM-FIN-01")
    assert text.endswith(" / Finish_()") and (shortest, observing) == (4, 0)
    assert not mutants.is_minimal(6, shortest, observing, True)


def test_the_way_to_where_a_hidden_fault_acts_is_shortened_too() -> None:
    # reinitialize_keeps_enabled: CoUninitialize leaves the enable count. The failure shows at
    # the last Disable, whose state the model reaches at once (Enable) but where the implementation
    # is right; the fault acted at `reinitialize`, and the way to it (a cancel object set and
    # cleared) is what can be shortened: to one Enable.
    adapter = ReferenceAdapter(faults=["reinitialize_keeps_enabled"])
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=5.0)

    def t(op: str, **args: str) -> Action:
        return Action("s0", op, tuple(args.items()))

    enable, disable = (t("CoEnableCallCancellation", pReserved="NULL"),
                       t("CoDisableCallCancellation", pReserved="NULL"))
    steps = (t("CoSetCancelObject", pUnk="cancel_object"), enable,
             t("CoSetCancelObject", pUnk="NULL"), t("reinitialize"), enable, disable)
    try:
        failed = runner.run(Case("t", "directed", "", (SlotSpec("s0", "thread_cancel", {}),),
                                 steps))
        assert failed.verdict is Verdict.FAIL and len(failed.trace) == 6, failed.message
        shrunk = shrink_case(runner, failed)
    finally:
        runner.close()
        adapter.shutdown()
    assert actions_of(shrunk.trace) == (enable, t("reinitialize"), enable, disable)
    assert shrunk.shrink["one_minimal"]


def _last_dispatched_shrunk() -> tuple[CaseResult, tuple[Action, ...], ReferenceAdapter]:
    # rpc_cancel_last_dispatched: RpcAsyncCancelCall on r1 tells the server of the call last
    # dispatched on the binding (r0's), whose server then sees a cancel. r0 took a detour (a
    # call aborted and completed) before its second call; its own shortest way (learnt from r1,
    # an object of the same machine and configuration) replaces it in the places of its last
    # steps, so r0's call is still dispatched after r1's.
    adapter = ReferenceAdapter(faults=["rpc_cancel_last_dispatched"])
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=5.0)

    def r(slot: str, op: str, **args: str | int) -> Action:
        return Action(slot, op, tuple(args.items()))

    init = {s: r(s, "RpcAsyncInitializeHandle", size="exact") for s in ("r0", "r1")}
    call = {s: r(s, "AsyncCall", notify="Apc", binding="good", hThread="explicit")
            for s in ("r0", "r1")}
    cancel, test = r("r1", "RpcAsyncCancelCall", abort=False), r("r0", "server_test_cancel",
                                                                   timeout="zero")
    steps = (init["r0"], r("r0", "AsyncCall", notify="None", binding="good", hThread="explicit"),
             init["r1"], r("r0", "server_abort", code=5, thread="later"), call["r1"],
             r("r0", "RpcAsyncCompleteCall"), call["r0"], cancel, test)
    slots = (SlotSpec("r0", "rpc_call", {}), SlotSpec("r1", "rpc_call", {}))
    try:
        failed = runner.run(Case("t", "multi", "", slots, steps,
                                 values={"abort.code": {"5": 4294967295, "8": 4660}}))
        assert failed.verdict is Verdict.FAIL and len(failed.trace) == 9, failed.message
        shrunk = shrink_case(runner, failed)
    finally:
        runner.close()
        adapter.shutdown()
    return shrunk, (init["r1"], call["r1"], init["r0"], call["r0"], cancel, test), adapter


def test_objects_steps_are_shortened_each_in_its_own_graph_keeping_their_order() -> None:
    shrunk, expected, _ = _last_dispatched_shrunk()
    assert actions_of(shrunk.trace) == expected
    assert shrunk.shrink["one_minimal"]


@pytest.mark.slow  # builds the rpc_call graph (about 10 s, more on a loaded machine)
def test_a_fault_acting_on_another_object_is_placed_on_that_objects_step() -> None:
    shrunk, _, adapter = _last_dispatched_shrunk()
    # The faulty transition is r1's cancel (another object's step citing the rule), reached by
    # a shortest way for each object: 2 + 2 steps, the cancel, and r0's test that observes it.
    plan = sequences.plan(adapter.capabilities(), only={"rpc_call"})
    text, shortest, observing = mutants.faulty_transition(shrunk, plan, "RPC-CLI-CANCEL-03",
                                                          needed=True)
    assert text.startswith("rpc_call r1: ") and text.endswith("/ RpcAsyncCancelCall(abort=False)")
    assert (shortest, observing) == (4, 1)
    assert mutants.is_minimal(6, shortest, observing, True)


def test_the_observed_graph_reads_a_run_through_the_values_it_sent() -> None:
    """A shrunk counterexample may have sent other concrete values than the case it came from;
    an echoed value (here the abort code, sent as 8, echoed by RpcAsyncCompleteCall) reads back
    only through the values that run sent. Read through the case's, the run's states stop at the
    echo, and the shortest ways after it are never found (a 9-step counterexample of
    `rpc_cancel_last_dispatched` stayed 9 steps long for that; 6 suffice)."""
    from callgate.conformance.cases.slots import default_slot

    adapter = ReferenceAdapter()
    runner = CaseRunner(adapter, adapter.capabilities(), keep_traces=True)
    r0 = default_slot("r0")
    steps = (Action("r0", "RpcAsyncInitializeHandle", (("size", "exact"),)),
             Action("r0", "AsyncCall", (("notify", "None"), ("binding", "good"),
                                        ("hThread", "explicit"))),
             Action("r0", "server_abort", (("code", 5), ("thread", "routine"))),
             Action("r0", "RpcAsyncCompleteCall", ()))
    sent = {"abort.code": {"5": 8}}
    try:
        result = runner.run(Case("echo", "directed", "", (r0,), steps, (), values=sent))
        assert result.verdict is Verdict.PASS, result.message
        other = Case("echo", "directed", "", (r0,), steps, (), values={"abort.code": {"5": 9}})
        shrinker = Shrinker(runner, other, Reason("rpc_call", "RpcAsyncCompleteCall", ()))
        assert len(shrinker.learn(result.trace)) < len(steps) + 1  # the echo is not read back
        assert len(shrinker.learn(result.trace, sent)) == len(steps) + 1
    finally:
        runner.close()
        adapter.shutdown()
