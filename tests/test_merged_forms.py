"""Merged-form continuations (cases/forms.py): each form of an argument the model merges into one
state is driven to the same continuations; and the look after a pair step asks every operation
that tells the state apart (multi.py), not a minimal cover."""

from __future__ import annotations

from pathlib import Path

import pytest

from callgate.conformance.budgets import BUDGETS
from callgate.conformance.cases import forms, multi, sequences
from callgate.conformance.gate import RunOptions
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.judge.runner import Case, CaseRunner
from callgate.conformance.results import CaseResult, Verdict
from callgate.conformance.units import plan_units


@pytest.fixture(scope="module")
def plan() -> sequences.Plan:
    adapter = ReferenceAdapter()
    try:
        return sequences.plan(adapter.capabilities(), only=("rpc_call", "event", "thread_cancel"))
    finally:
        adapter.shutdown()


def _forms(plan: sequences.Plan, machine: str, steps: int, faults: tuple[str, ...] = ()
           ) -> list[tuple[Case, CaseResult]]:
    adapter = ReferenceAdapter(faults=faults)
    runner = CaseRunner(adapter, adapter.capabilities(), 10.0)
    try:
        return list(forms.forms_machine(runner, plan.machines[machine], steps))
    finally:
        runner.close()
        adapter.shutdown()


def test_the_groups_are_found_from_the_graph(plan: sequences.Plan) -> None:
    rpc = plan.machines["rpc_call"]
    found = forms.groups(rpc)
    (apc,) = [g for g in found if (g.op, g.param) == ("AsyncCall", "hThread")]
    assert [dict(f)["hThread"] for f in apc.forms] == ["NULL", "explicit"]
    assert all(dict(f)["notify"] == "Apc" for f in apc.forms)
    assert "RPC-CLI-NOTIFY-02" in apc.rules
    assert rpc.machine.view(apc.source)["phase"] == "INIT"
    # One target, reached by both forms; the model does not record hThread.
    assert len(apc.targets) == 1 and rpc.machine.view(apc.targets[0])["phase"] == "PENDING"
    # The later-thread form of a server's completion is a group too (RPC-SRV-COMPLETE-07).
    assert any((g.op, g.param) == ("server_complete", "thread") for g in found)
    # A step that leaves the state as it is is not a group: no form changes what follows.
    assert all(set(g.targets) != {g.source} for g in found)
    # The rare class comes first, so the budget never leaves it out.
    first = forms.plan_items(rpc)[0]
    assert (first.group.op, first.group.param) == ("AsyncCall", "hThread")


def test_a_machine_without_merged_forms_has_no_unit(plan: sequences.Plan) -> None:
    assert forms.groups(plan.machines["thread_cancel"]) == []
    ids = {u.id for u in plan_units(plan, plan.capabilities, _options())}
    assert {u for u in ids if u.startswith("forms-")} == {"forms-rpc_call", "forms-event"}


def _options() -> RunOptions:
    return RunOptions("reference", BUDGETS["standard"], 0, Path("."))


def test_the_reference_passes_every_form(plan: sequences.Plan) -> None:
    results = [r for _, r in _forms(plan, "rpc_call", 200)]
    assert [r.verdict for r in results] == [Verdict.PASS]
    summary = results[-1]
    assert summary.id == "rpc_call-forms"
    # Bounded: it stops once the budget is spent (within one continuation's sessions).
    assert 200 <= summary.steps < 260
    event = _forms(plan, "event", 1000)
    assert [r.verdict for _, r in event] == [Verdict.PASS]
    assert "2 of 2 continuations" in event[-1][0].description


def test_a_lost_null_thread_apc_is_caught_by_its_continuation(plan: sequences.Plan) -> None:
    # apc_to_runtime_thread: with u.APC.hThread NULL the APC goes to a thread no client waits on
    # (what Wine does, D-14). The hThread group comes first, whatever the walk did.
    ran = _forms(plan, "rpc_call", 150, ("apc_to_runtime_thread",))
    failed = [(c, r) for c, r in ran if r.verdict is Verdict.FAIL]
    assert failed, [r.id for _, r in ran]
    case, result = failed[0]
    assert "RPC-CLI-NOTIFY-02" in result.failed_rules and "RPC-CLI-NOTIFY-02" in case.rules
    calls = [s for s in result.trace if s.op == "AsyncCall"]
    assert calls[-1].args["hThread"] == "NULL"
    assert result.trace[-1].op == "wait_notification"
    # The same continuation with the explicit form passed: only the merged form shows it.
    assert case.id.endswith("-0")
    assert case.id[:-1] + "1" not in {r.id for _, r in ran if r.verdict is not Verdict.PASS}


def test_a_fault_in_a_merged_thread_form_is_caught(plan: sequences.Plan) -> None:
    # later_completion_no_event: a call the server completes from another thread after its
    # routine returned does not set the client's event. The model merges thread later and
    # routine into one state; the gate without this unit did not kill it (docs/mutants.md).
    # Only the continuations of that class's group for an Event call are driven here.
    rpc = plan.machines["rpc_call"]
    items = [i for i in forms.plan_items(rpc)
             if (i.group.op, i.group.param) == ("server_complete", "thread")
             and rpc.machine.view(i.group.source)["notify"] == "Event"]
    assert items
    adapter = ReferenceAdapter(faults=("later_completion_no_event",))
    runner = CaseRunner(adapter, adapter.capabilities(), 10.0)
    try:
        ran = list(forms.forms_machine(runner, rpc, 10_000, items=items[:5]))
    finally:
        runner.close()
        adapter.shutdown()
    failed = [r for _, r in ran if r.verdict is Verdict.FAIL]
    assert failed and all(r.trace[-1].op == "wait_notification" for r in failed)
    ends = [s for s in failed[0].trace if s.op == "server_complete"]
    assert ends[-1].args["thread"] == "later"
    # Each failing continuation failed for the later form alone.
    assert all(r.id.endswith(f"-{items[0].group.forms.index(_later(items[0]))}")
               for r in failed)


def _later(item: forms.Item) -> tuple[tuple[str, object], ...]:
    return next(f for f in item.group.forms if dict(f)["thread"] == "later")


def test_every_telling_observer_is_asked_after_a_pair(plan: sequences.Plan) -> None:
    rpc = plan.machines["rpc_call"]
    observer = multi.observer(rpc, plan.capabilities.pins)
    pending = rpc.machine.make(phase="PENDING", notify="Apc", server="held")
    cover = [a.op for a in observer.of(pending)]
    every = [a.op for a in observer.telling(pending)]
    # The minimal cover asks RpcAsyncCompleteCall, which tells a pending call from a completed
    # one as RpcAsyncGetCallStatus does; every telling operation includes both.
    assert "RpcAsyncGetCallStatus" not in cover
    assert {"RpcAsyncCompleteCall", "RpcAsyncGetCallStatus"} <= set(every)
    assert every[:len(cover)] == cover


def _pairs(plan: sequences.Plan, faults: tuple[str, ...]) -> list[CaseResult]:
    adapter = ReferenceAdapter(faults=faults)
    runner = CaseRunner(adapter, adapter.capabilities(), 10.0)
    composition = next(c for c in multi.COMPOSITIONS if c.name == "rpc_call-pair")
    try:
        return [r for _, r in multi.walk_pairs(runner, plan.machines["rpc_call"], composition,
                                                 multi.MultiBudget(3, 400, crossed=False))]
    finally:
        runner.close()
        adapter.shutdown()


@pytest.mark.slow  # two pair walks of rpc_call (about 15 s on a shared machine)
def test_a_fault_in_one_of_two_equally_telling_operations_is_caught(plan: sequences.Plan
                                                                   ) -> None:
    # status_of_last_failed_call: while another call on the binding is cancelled abortively,
    # RpcAsyncGetCallStatus of a pending call says RPC_S_CALL_CANCELLED; RpcAsyncCompleteCall
    # still answers right, and it is the one the minimal cover asks.
    assert all(r.verdict is Verdict.PASS for r in _pairs(plan, ()))
    results = _pairs(plan, ("status_of_last_failed_call",))
    failed = [r for r in results if r.verdict is Verdict.FAIL]
    assert failed and failed[0].trace[-1].op == "RpcAsyncGetCallStatus"
