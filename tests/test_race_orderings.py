"""Races that are measured (issue 16): which orderings of a race's conflicting operations the
model allows, which a run showed, directed runs towards the missing ones, and race faults that
only the new observations see."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest

from callgate.conformance.cases.parallel import judging, race_cases, run_parallel
from callgate.conformance.cases.parallel.orderings import (
    OrderingClass,
    OrderingTally,
    consistent_classes,
    ordering_classes,
)
from callgate.conformance.implementations.reference import com
from callgate.conformance.implementations.reference.adapter import PINS, ReferenceAdapter
from callgate.conformance.judge.linearizability import HistoryOp, Linearizability, check
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.protocol.adapter import Observation, Request, SlotSpec
from callgate.conformance.results import Verdict
from callgate.model.families import MACHINES

RACES = {c.id: c for c in race_cases()}


@pytest.fixture
def runner_for() -> Iterator[object]:
    made: list[tuple[CaseRunner, object]] = []

    def make(adapter: object) -> CaseRunner:
        runner = CaseRunner(adapter, adapter.capabilities(), 5.0)  # type: ignore[arg-type, attr-defined]
        made.append((runner, adapter))
        return runner

    yield make
    for runner, adapter in made:
        runner.close()
        adapter.shutdown()  # type: ignore[attr-defined]


def _start(case_id: str) -> dict[str, frozenset[object]]:
    from callgate.conformance.cases.parallel import prefix_states
    case = RACES[case_id]
    states, problem, _ = prefix_states(case.slots, case.prefix, PINS)
    assert not problem
    return states  # type: ignore[return-value]


def test_orderings_no_observation_tells_apart_are_one_class() -> None:
    # Two Waits and one Signal on an auto-reset event: six orders, three outcomes (the first
    # Wait woken, the second woken, neither: both timed out before the Signal).
    case = RACES["race-signal-wait-std-event"]
    classes = ordering_classes(case, PINS, _start(case.id))  # type: ignore[arg-type]
    assert sorted(len(c.orderings) for c in classes) == [2, 2, 2]
    assert all(c.distinguishable for c in classes)
    begin = RACES["race-begin-begin"]
    assert len(ordering_classes(begin, PINS, _start(begin.id))) == 2  # type: ignore[arg-type]


def test_a_race_without_a_final_read_cannot_tell_its_orderings_apart() -> None:
    # Abort and completion with one wait and no final completion: whatever a run shows when the
    # server completed first (one notification, RPC_S_OK for the server) the model also allows
    # when the cancel came first, so that ordering is not distinguishable.
    case = RACES["race-rpc-abort-complete-ioc"]
    blind = replace(case, suffix=case.suffix[:1])
    classes = ordering_classes(blind, PINS, _start(case.id))  # type: ignore[arg-type]
    complete_first = [c for c in classes if c.label.startswith("server_complete")]
    assert len(complete_first) == 1 and not complete_first[0].distinguishable
    full = ordering_classes(case, PINS, _start(case.id))  # type: ignore[arg-type]
    assert all(c.distinguishable for c in full)


def test_the_tally_counts_observed_ambiguous_and_unknown_runs() -> None:
    classes = [OrderingClass("a", (), True), OrderingClass("b", (), True),
               OrderingClass("c", (), False)]
    tally = OrderingTally.of(classes)
    for found in ([0], [0], [0, 1], None, []):
        tally.add(found)
    assert tally.observed == [2, 0, 0]
    assert tally.consistent == [3, 1, 0]
    assert (tally.classified_runs, tally.ambiguous_runs, tally.unknown_runs) == (4, 1, 1)
    assert tally.missing() == [1, 2]
    data = tally.to_json(RACES["race-begin-begin"])
    assert [c["observed"] for c in data["classes"]] == [True, False, False]
    assert "also with another ordering" in data["classes"][1]["reason"]
    assert "cannot show it" in data["classes"][2]["reason"]
    assert data["observed"] == 1 and data["allowed"] == 3


def _op(i: int, op: str, start: float, end: float, code: int) -> HistoryOp:
    return HistoryOp(i, "c0", f"branch {i + 1}", op, (), start, end, code)


def test_a_run_shows_the_ordering_its_observations_force_and_no_other() -> None:
    case = RACES["race-begin-begin"]
    classes = ordering_classes(case, PINS, _start(case.id))  # type: ignore[arg-type]
    start = _start(case.id)
    # Overlapping Begin_s: branch 2 got S_OK, so branch 2 went first.
    ops = [_op(0, "Begin_", 0.0, 1.0, com.BEGIN_PENDING_CODE), _op(1, "Begin_", 0.1, 0.9, 0)]
    found = consistent_classes(case, classes, ops, [(0, 0), (1, 0)], start,  # type: ignore[arg-type]
                               PINS, 10_000)
    assert found is not None and len(found) == 1
    assert classes[found[0]].orderings[0][0] == (1, 0)
    # The constraint is real: forcing branch 1 first makes the history not linearizable.
    machine = {"c0": MACHINES["com_call"]}
    first_one = check(ops, machine, start, PINS, order=(0, 1))  # type: ignore[arg-type]
    first_two = check(ops, machine, start, PINS, order=(1, 0))  # type: ignore[arg-type]
    assert first_one.verdict is Linearizability.NOT_LINEARIZABLE
    assert first_two.verdict is Linearizability.LINEARIZABLE
    # An operation without an answer shows no ordering.
    unknown = [ops[0], replace(ops[1], returned=None, code=None)]
    assert consistent_classes(case, classes, unknown, [(0, 0), (1, 0)], start,  # type: ignore[arg-type]
                              PINS, 10_000) is None


class _SecondBranchLate:
    """The reference, but branch 2's Begin_ always arrives 20 ms after branch 1's has begun:
    left alone, branch 1 always wins the race."""

    def __init__(self) -> None:
        self.inner = ReferenceAdapter()
        self.began = threading.Event()

    def capabilities(self) -> object:
        return self.inner.capabilities()

    def open_session(self, slots: Sequence[SlotSpec]) -> object:
        inner = self.inner.open_session(slots)
        began = self.began
        began.clear()

        class Session:
            def perform(self, request: Request) -> Observation:
                name = threading.current_thread().name
                if request.op == "Begin_" and name == "callgate-branch-1":
                    began.set()
                if request.op == "Begin_" and name == "callgate-branch-2":
                    began.wait(0.02)
                    time.sleep(0.02)
                return inner.perform(request)

            def close(self) -> None:
                inner.close()

        return Session()

    def shutdown(self) -> None:
        self.inner.shutdown()


def test_an_ordering_never_produced_is_reported_not_observed(
        runner_for: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(judging, "ORDERING_ATTEMPTS", 0)
    runner = runner_for(_SecondBranchLate())  # type: ignore[operator]
    result = run_parallel(runner, RACES["race-begin-begin"], runs=4, stagger=0.0, seed=1)
    classes = result.orderings["classes"]
    missing = [c for c in classes if not c["observed"]]
    assert len(missing) == 1 and missing[0]["ordering"].startswith("Begin_() [branch 2]")
    assert "not produced in" in missing[0]["reason"]
    assert "orderings observed 1 of 2" in result.message


def test_directed_runs_produce_the_ordering_the_free_runs_missed(runner_for: object) -> None:
    runner = runner_for(_SecondBranchLate())  # type: ignore[operator]
    result = run_parallel(runner, RACES["race-begin-begin"], runs=4, stagger=0.0, seed=1)
    assert result.verdict is Verdict.PASS, result.message
    assert all(c["observed"] for c in result.orderings["classes"])
    assert result.orderings["directed_runs"] >= 1


def test_the_reference_shows_every_ordering_of_the_measured_races(runner_for: object) -> None:
    runner = runner_for(ReferenceAdapter())  # type: ignore[operator]
    for case_id in ("race-rpc-abort-complete-ioc", "race-cancel-test-cancel",
                    "race-rpc-poll-complete-read"):
        result = run_parallel(runner, RACES[case_id], runs=6, stagger=0.001, seed=2)
        assert result.verdict is Verdict.PASS, (case_id, result.message)
        assert result.orderings["observed"] == result.orderings["allowed"], result.orderings


def test_a_second_notification_shows_only_where_the_kind_queues_and_a_wait_looks(
        runner_for: object) -> None:
    runner = runner_for(ReferenceAdapter(faults=["notify_after_abort_cancel"]))  # type: ignore[operator]
    case = RACES["race-rpc-abort-complete-ioc"]
    caught = run_parallel(runner, case, runs=6, stagger=0.001, seed=2)
    assert caught.verdict is Verdict.FAIL, caught.message
    assert "wait_notification" in caught.message
    # Without the second wait nothing looks for the extra packet: the same fault passes.
    blind = replace(case, id="blind", suffix=case.suffix[-1:])
    assert run_parallel(runner, blind, runs=6, stagger=0.001, seed=2).verdict is Verdict.PASS
