"""The blind round's faults (docs/mutants.md, "A blind round"), and the cases added for the
classes of fault it found the suite missing: lifetime and limit cases (cases/lifetimes.py), pair
walks of one class with crossed notifications (cases/multi.py, `CLASSES`, `_cross_notes`), and
the race of a Cancel that waits with the server's Signal (race-cancel-wait-signal, judged with
`HistoryOp.waited`).

Each class is shown caught by its SECOND fault, written after the suite was improved, on the
units that catch it; the correct reference passes the same cases."""

from __future__ import annotations

import re

import pytest

from callgate.conformance import mutants
from callgate.conformance.cases import lifetimes, multi, sequences
from callgate.conformance.cases.parallel.judging import run_parallel
from callgate.conformance.cases.parallel.races import race_cases
from callgate.conformance.cases.slots import default_slot
from callgate.conformance.implementations.reference import serve
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.implementations.reference.blind_faults import BLIND_FAULTS, SECOND
from callgate.conformance.implementations.reference.host import FAULTS
from callgate.conformance.judge.linearizability import HistoryOp, Linearizability, check_slot
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.results import CaseResult, Verdict
from callgate.model.rules import catalogue


def test_blind_faults_stay_out_of_the_catalogue_and_each_is_consulted() -> None:
    assert not set(BLIND_FAULTS) & set(FAULTS)  # `callgate mutants` does not see them
    rules = catalogue()
    assert all(f.rule in rules and rules[f.rule].in_scope for f in BLIND_FAULTS.values())
    text = "\n".join(p.read_text(encoding="utf-8") for p in mutants.reference_sources())
    consulted = set(re.findall(r"""\bfault\(\s*["']([a-z0-9_]+)["']""", text))
    assert set(BLIND_FAULTS) <= consulted
    assert set(SECOND) <= set(BLIND_FAULTS) and set(SECOND.values()) <= set(BLIND_FAULTS)


def test_a_blind_fault_is_switched_on_by_name_as_a_catalogue_fault_is() -> None:
    adapter = ReferenceAdapter(faults={"abandoned_calls_leak"})
    adapter.shutdown()
    assert "abandoned_calls_leak" in adapter.capabilities().notes
    with pytest.raises(ValueError, match="blind faults"):
        ReferenceAdapter(faults={"no_such_fault"})
    with pytest.raises(SystemExit):  # serve refuses an unknown name before it serves
        serve.main(["--fault", "no_such_fault"])


def _runner(faults: tuple[str, ...]) -> tuple[ReferenceAdapter, CaseRunner]:
    adapter = ReferenceAdapter(faults=faults)
    return adapter, CaseRunner(adapter, adapter.capabilities(), 10.0)


def _lifetimes(plan: sequences.Plan, faults: tuple[str, ...]) -> list[CaseResult]:
    adapter, runner = _runner(faults)
    try:
        return [r for _, r in lifetimes.lifetimes_machine(runner, plan.machines["com_call"])]
    finally:
        runner.close()
        adapter.shutdown()


def test_the_ends_of_a_call_object_are_its_final_releases(plan: sequences.Plan) -> None:
    found = lifetimes.ends(plan.machines["com_call"])
    machine = plan.machines["com_call"].machine
    assert sorted(machine.view(way[-1][1])["phase"] for _, way in found) == [
        "IDLE", "PENDING", "SIGNALED"]
    assert all(way[-1][0].op == "Release" for _, way in found)
    # An RPC handle is reused, never ended: the repetition cases cover it, not these.
    assert lifetimes.ends(plan.machines["rpc_call"]) == []


def test_lifetime_cases_pass_the_reference_and_catch_a_leak_across_objects(
        plan: sequences.Plan) -> None:
    assert [r.verdict for r in _lifetimes(plan, ())] == [Verdict.PASS]
    # The class's second fault: releasing signalled call objects keeps [out] buffers of the
    # server object; after four, a later call's Finish_ returns 0. Only the ninth object, which
    # laps the rest state after eight such ends, shows it.
    results = _lifetimes(plan, ("signalled_release_keeps_out_buffer",))
    failed = [r for r in results if r.verdict is Verdict.FAIL]
    assert [r.id for r in failed] == ["com_call-lifetimes-002"]
    assert "s8.Finish_()" in failed[0].message and "out 0" in failed[0].message
    assert results[-1].id == "com_call-lifetimes"


def _crossed_notes(plan: sequences.Plan, name: str, faults: tuple[str, ...]) -> CaseResult:
    composition = next(c for c in multi.COMPOSITIONS if c.name == name)
    g = multi._Graph.of(plan.machines["rpc_call"], composition.only)
    specs = tuple(default_slot(s) for s in composition.slots)
    adapter, runner = _runner(faults)
    try:
        return multi._crossed_notes_case(runner, g, composition, specs)[1]
    finally:
        runner.close()
        adapter.shutdown()


def test_a_pair_walk_of_one_class_keeps_both_objects_in_it(plan: sequences.Plan) -> None:
    g = multi._Graph.of(plan.machines["rpc_call"], ("AsyncCall", "notify", "Callback"))
    calls = {dict(a.args)["notify"] for acts in g.actions.values() for a in acts
             if a.op == "AsyncCall"}
    assert calls == {"Callback"}
    names = {c.name for c in multi.COMPOSITIONS}
    assert {f"rpc_call-pair-{k}" for k in multi.CLASSES["rpc_call-pair"][2]} <= names


def test_crossed_notifications_pass_the_reference_and_catch_a_routine_of_another_call(
        plan: sequences.Plan) -> None:
    assert _crossed_notes(plan, "rpc_call-pair-Callback", ()).verdict is Verdict.PASS
    # With NotificationType None nothing is delivered: nothing to cross, and it says so.
    none = _crossed_notes(plan, "rpc_call-pair-None", ())
    assert none.verdict is Verdict.NOT_APPLICABLE and "could not be done" in none.message
    # The class's second fault: one Callback routine per runtime, the latest call's.
    caught = _crossed_notes(plan, "rpc_call-pair-Callback", ("callback_of_latest_call",))
    assert caught.verdict is Verdict.FAIL
    assert "r0.wait_notification()" in caught.message


def _limits(plan: sequences.Plan, faults: tuple[str, ...]) -> list[CaseResult]:
    adapter, runner = _runner(faults)
    try:
        return [r for _, r in lifetimes.limits_machine(runner, plan.machines["container"])]
    finally:
        runner.close()
        adapter.shutdown()


def test_limit_cases_pass_the_reference_and_catch_a_bound_read_from_another_object(
        plan: sequences.Plan) -> None:
    assert lifetimes.bounded_fields(plan.machines["container"]) == ["count"]
    assert lifetimes.bounded_fields(plan.machines["com_call"]) == []
    assert [r.verdict for r in _limits(plan, ())] == [Verdict.PASS, Verdict.PASS]
    # The class's second fault: the bound is checked against the container created last. With
    # s1 made after s0's creation and holding one member, s0's 64th AddSynchronize is taken.
    results = _limits(plan, ("container_limit_of_latest",))
    assert [r.verdict for r in results] == [Verdict.FAIL, Verdict.PASS]
    assert "s0.AddSynchronize(): observed S_OK" in results[0].message


def _cancel_race(faults: tuple[str, ...]) -> CaseResult:
    race = next(c for c in race_cases() if c.id == "race-cancel-wait-signal")
    adapter, runner = _runner(faults)
    try:
        return run_parallel(runner, race, runs=6, stagger=0.001, seed=0)
    finally:
        runner.close()
        adapter.shutdown()


def test_a_cancel_that_waits_is_raced_with_the_servers_signal() -> None:
    assert _cancel_race(()).verdict is Verdict.PASS
    # The class's second fault: the Cancel reports RPC_E_CALL_COMPLETE but marks the call
    # cancelled, so Finish_ reports the cancel instead of the [out].
    caught = _cancel_race(("cancel_wait_marks_completed_call",))
    assert caught.verdict is Verdict.FAIL and "not linearizable" in caught.message


def _op(id_: int, op: str, invoked: float, returned: float, code: int,
        **args: str | int | bool
        ) -> HistoryOp:
    seconds = args.get("seconds")
    waited = op == "Cancel" and code == 0 and seconds == 1
    return HistoryOp(id_, "c0", f"t{id_}", op, tuple(args.items()), invoked, returned, code,
                     not_before=invoked + 1.0 if waited else None, waited=waited)


def test_an_accepted_cancel_that_waits_takes_effect_no_earlier_than_its_seconds(
        plan: sequences.Plan) -> None:
    machine = plan.machines["com_call"].machine
    pending = {s for s in plan.machines["com_call"].graph.graph.nodes
               if machine.view(s)["phase"] == "PENDING" and not machine.view(s)["cancel"]
               and machine.view(s)["cancellable"] and machine.view(s)["factory"]}
    signal = dict(out=1, then_impersonate=False)
    # The server's Signal returned while the Cancel(1) waited: an accepted Cancel says a second
    # passed without the call completing, so it has no place after the Signal...
    early = [_op(0, "Cancel", 0.0, 0.06, 0, seconds=1), _op(1, "server_signal", 0.01, 0.05, 0,
                                                            **signal)]
    assert check_slot(machine, early, pending).verdict is Linearizability.NOT_LINEARIZABLE
    # ...while one that came back after its second, the Signal after it, is in order.
    late = [_op(0, "Cancel", 0.0, 1.01, 0, seconds=1), _op(1, "server_signal", 1.02, 1.03, 0,
                                                           **signal)]
    assert check_slot(machine, late, pending).verdict is Linearizability.LINEARIZABLE
