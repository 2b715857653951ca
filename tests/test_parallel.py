"""Parallel cases: soundness of every interleaving, running on real threads in and out of process,
and the two seeded races that sequential cases pass and parallel cases catch."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from callgate.conformance.cases import sequences
from callgate.conformance.cases.parallel import (
    SERIAL_ADAPTER,
    ParallelBudget,
    ParallelCase,
    _a,
    generated_cases,
    interleavings,
    race_cases,
    run_generated,
    run_parallel,
)
from callgate.conformance.cases.stateful import StatefulBudget, run_stateful
from callgate.conformance.cases.walk import walk_machine
from callgate.conformance.cli.main import main
from callgate.conformance.implementations.reference.adapter import PINS, ReferenceAdapter, ReferenceSession
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.judge.shrink import ShrinkBudget, shrink_case
from callgate.conformance.protocol.adapter import Capabilities, Observation, Request, SlotSpec
from callgate.conformance.protocol.jsonl import CommandAdapter
from callgate.conformance.results import Verdict
from callgate.model.rules import catalogue
from tests.conftest import build_c_example

RACES = {c.id: c for c in race_cases()}
# How many runs a faulty adapter gets to show its race (each run samples one schedule).
RUNS = 10


@pytest.fixture
def runner_for() -> Iterator[object]:
    made: list[tuple[CaseRunner, object]] = []

    def make(adapter: object, step_timeout: float = 5.0) -> CaseRunner:
        runner = CaseRunner(adapter, adapter.capabilities(), step_timeout)  # type: ignore[arg-type, attr-defined]
        made.append((runner, adapter))
        return runner

    yield make
    for runner, adapter in made:
        runner.close()
        adapter.shutdown()  # type: ignore[attr-defined]


def test_every_named_race_is_sound_under_the_reference_pins_and_cites_known_rules() -> None:
    rules = catalogue()
    assert {"race-begin-begin", "race-cancel-signal", "race-signal-wait-event",
            "race-rpc-abort-complete", "race-rpc-poll-complete"} <= set(RACES)
    for case in RACES.values():
        plan = interleavings(case.slots, case.prefix, case.branches, PINS, case.suffix)
        assert plan.sound, (case.id, plan.problem)
        assert len(case.branches) >= 2
        assert case.rules and set(case.rules) <= set(rules), case.id


def test_a_case_some_interleaving_drives_into_undefined_behaviour_is_not_run(
        runner_for: object) -> None:
    # Finish_ before the server's Signal is UNDEFINED (COM-FIN-03): a branch may not race them.
    case = ParallelCase("unsound", "Finish_ racing Signal", RACES["race-begin-begin"].slots,
                        (_a("c0", "CreateCall", riid="async", aggregate=False),
                         _a("c0", "Begin_")),
                        ((_a("c0", "Finish_"),),
                         (_a("c0", "server_signal", out=1, then_impersonate=False),)))
    plan = interleavings(case.slots, case.prefix, case.branches, PINS)
    assert not plan.sound and "Finish_" in plan.problem and "undefined" in plan.problem
    result = run_parallel(runner_for(ReferenceAdapter()), case)  # type: ignore[operator]
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert "not run" in result.message


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(generated_cases(ReferenceAdapter().capabilities().features, PINS))
def test_generated_cases_keep_every_action_defined_in_every_interleaving(
        case: ParallelCase) -> None:
    assert len(case.branches) >= 2 and all(case.branches)
    plan = interleavings(case.slots, case.prefix, case.branches, PINS)
    assert plan.sound, plan.problem
    assert case.rules


def test_the_reference_passes_every_named_race_in_process(runner_for: object) -> None:
    runner = runner_for(ReferenceAdapter(jitter=0.0005, seed=3))  # type: ignore[operator]
    for case in RACES.values():
        result = run_parallel(runner, case, runs=3, stagger=0.001, seed=1)
        assert result.verdict is Verdict.PASS, (case.id, result.message)
        assert result.linearizability == "linearizable"
        threads = {h.thread for h in result.history}
        assert {"branch 1", "branch 2"} <= threads
        branch_ops = [h for h in result.history if h.thread.startswith("branch")]
        assert all(h.started > 0 and h.ended >= h.started for h in branch_ops)


def _serve(*faults: str) -> CommandAdapter:
    command = [sys.executable, "-m", "callgate.conformance.implementations.reference.serve"]
    for fault in faults:
        command += ["--fault", fault]
    return CommandAdapter(shlex.join(command), request_timeout=5.0)


def test_the_reference_passes_the_named_races_out_of_process(runner_for: object) -> None:
    runner = runner_for(_serve())  # type: ignore[operator]
    for case in RACES.values():
        result = run_parallel(runner, case, runs=2, stagger=0.001)
        assert result.verdict is Verdict.PASS, (case.id, result.message)


def _sequential_verdicts(runner: CaseRunner, machines: Sequence[str],
                         slots: Sequence[SlotSpec]) -> set[Verdict]:
    """The directed walk over `machines` and a round of stateful cases over `slots`."""
    plan = sequences.plan(runner.capabilities)
    verdicts = set()
    for machine in machines:
        machine_plan = plan.machines[machine]
        for _, result in walk_machine(runner, machine_plan, set(machine_plan.transitions)):
            verdicts.add(result.verdict)
    verdicts.add(run_stateful(runner, StatefulBudget(15, 12), 0, list(slots)).verdict)
    return verdicts


COM = SlotSpec("c0", "com_call", {"factory": True, "cancellable": True})
EVENT = SlotSpec("e0", "event", {})


def test_an_unlocked_check_then_set_in_begin_passes_sequential_cases_and_fails_a_parallel_one(
        runner_for: object) -> None:
    runner = runner_for(ReferenceAdapter(faults=["begin_check_then_set_race"]))  # type: ignore[operator]
    assert _sequential_verdicts(runner, ["com_call"], [COM]) == {Verdict.PASS}
    result = run_parallel(runner, RACES["race-begin-begin"], runs=RUNS, stagger=0.002, seed=1)
    assert result.verdict is Verdict.FAIL, result.message
    assert result.linearizability == "not_linearizable"
    assert "COM-BEGIN-02" in result.failed_rules
    begins = [h for h in result.history if h.op == "Begin_"]
    assert [h.code for h in begins] == [0, 0]  # both started a call
    assert result.trace[-1].op == "Begin_" and not result.trace[-1].ok
    assert result.replay["branches"] == [[{"slot": "c0", "op": "Begin_", "args": {}}]] * 2


def test_a_lost_wakeup_in_wait_passes_sequential_cases_and_fails_a_parallel_one(
        runner_for: object) -> None:
    runner = runner_for(ReferenceAdapter(faults=["wait_lost_wakeup"]))  # type: ignore[operator]
    assert _sequential_verdicts(runner, ["event", "com_call"], [COM, EVENT]) == {Verdict.PASS}
    for race in ("race-signal-wait-event", "race-server-signal-wait"):
        result = run_parallel(runner, RACES[race], runs=RUNS, stagger=0.002, seed=1)
        assert result.verdict is Verdict.FAIL, (race, result.message)
        culprit = result.trace[-1]
        assert culprit.op == "Wait" and culprit.code_name.startswith("RPC_S_CALLPENDING")
        assert "COM-WAIT-03" in result.failed_rules or "COM-SYNC-01" in result.failed_rules


def test_out_of_process_requests_in_flight_together_show_the_begin_race(
        runner_for: object) -> None:
    runner = runner_for(_serve("begin_check_then_set_race"))  # type: ignore[operator]
    result = run_parallel(runner, RACES["race-begin-begin"], runs=RUNS)
    assert result.verdict is Verdict.FAIL, result.message


@pytest.mark.serial  # a race found and shrunk under a time budget: run alone
def test_generated_parallel_cases_find_the_begin_race_and_shrink_it(runner_for: object) -> None:
    runner = runner_for(ReferenceAdapter(faults=["begin_check_then_set_race"]))  # type: ignore[operator]
    found = run_generated(runner, ParallelBudget(30, 2, 0.001), seed=1, slot_sets=[(COM,)])
    assert found.verdict is Verdict.FAIL, found.message
    assert found.kind == "parallel"
    # Hypothesis's own shrinking runs each candidate once, within a time bound: on a loaded
    # machine it may stop early. The gate shrinks every failing case again as a program, each
    # candidate run several times (race_shrink); that is what it reports, and what is checked.
    result = shrink_case(runner, found, budget=ShrinkBudget(200, 20.0))
    assert result.verdict is Verdict.FAIL, result.message
    branches = result.replay["branches"]
    assert sum(len(b) for b in branches) <= 3, result.description
    assert any(step["op"] == "Begin_" for b in branches for step in b)


class _HangingSignal:
    """The reference adapter, except that ISynchronize::Signal on an event never answers."""

    def __init__(self) -> None:
        self.inner = ReferenceAdapter()

    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    def open_session(self, slots: Sequence[SlotSpec]) -> _HangingSession:
        return _HangingSession(self.inner.open_session(slots))

    def shutdown(self) -> None:
        self.inner.shutdown()


class _HangingSession:
    def __init__(self, inner: ReferenceSession) -> None:
        self.inner = inner

    def perform(self, request: Request) -> Observation:
        if request.op == "Signal":
            time.sleep(3.0)
        return self.inner.perform(request)

    def close(self) -> None:
        self.inner.close()


def test_an_operation_without_an_answer_has_an_unknown_outcome_and_the_case_errs(
        runner_for: object) -> None:
    runner = runner_for(_HangingSignal(), step_timeout=0.5)  # type: ignore[operator]
    result = run_parallel(runner, RACES["race-signal-wait-event"], runs=1)
    assert result.verdict is Verdict.ERROR
    assert "no answer within 0.5 s" in result.message
    # The Wait timed out: allowed if the Signal never took effect, so the history is linearizable.
    assert result.linearizability == "linearizable"
    signal = next(h for h in result.history if h.op == "Signal")
    assert signal.code is None and signal.ended == 0.0


def test_callgate_replay_runs_a_parallel_case_again(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    case = RACES["race-begin-begin"]
    path = tmp_path / "case.json"
    path.write_text(json.dumps({"id": case.id, "replay": case.replay()}), encoding="utf-8")
    assert main(["replay", str(path), "--adapter", "reference"]) == 0
    assert "every history linearizable" in capsys.readouterr().out


def test_jitter_is_refused_for_an_adapter_other_than_the_reference(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--adapter", "tests.fakes:EventAdapter", "--jitter-ms", "1",
                 "--out", str(tmp_path)])
    assert code == 2
    assert "--jitter-ms works with --adapter reference only" in capsys.readouterr().err


def test_the_c_example_adapter_serves_one_request_at_a_time_so_its_races_are_not_run(
        runner_for: object) -> None:
    program = Path(__file__).resolve().parent.parent / "examples" / "c-adapter"
    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.skip("the C example needs make and cc")
    built = build_c_example()
    assert built.returncode == 0, built.stdout + built.stderr
    runner = runner_for(CommandAdapter([str(program / "callgate-c-adapter")],  # type: ignore[operator]
                                       request_timeout=5.0))
    assert runner.capabilities.concurrent is False
    results = {case.id: run_parallel(runner, case, runs=2, stagger=0.001)
               for case in RACES.values()}
    assert {r.verdict for r in results.values()} == {Verdict.NOT_APPLICABLE}
    # The races it has the features for would have passed untried; they say why they did not run.
    for race in ("race-begin-begin", "race-signal-wait-event"):
        assert results[race].message == SERIAL_ADAPTER
        assert results[race].history == []


def test_a_value_the_prefix_sends_comes_back_from_a_branch_as_the_model_expects() -> None:
    """The prefix runs through the case runner, which draws concrete values for [out]; the
    branches' answers are judged as they come. The prefix must send the single value a branch's
    Finish_ is judged against, or a correct implementation fails (it did: out 0 for abstract 1)."""
    from callgate.conformance.judge.rerun import rerun

    replay = {"slots": [{"name": "c0", "machine": "com_call",
                         "config": {"factory": True, "cancellable": True}}],
              "steps": [{"slot": "c0", "op": "CreateCall",
                         "args": {"riid": "async", "aggregate": False}},
                        {"slot": "c0", "op": "Begin_", "args": {}},
                        {"slot": "c0", "op": "server_signal",
                         "args": {"out": 1, "then_impersonate": False}}],
              "branches": [[{"slot": "c0", "op": "Finish_", "args": {}}],
                           [{"slot": "c0", "op": "Wait", "args": {"timeout": "zero"}}]],
              "suffix": []}
    adapter = ReferenceAdapter()
    try:
        result = rerun(adapter, "prefix-out", replay, 10.0, runs=3)
    finally:
        adapter.shutdown()
    assert result.verdict is not Verdict.FAIL, result.message
