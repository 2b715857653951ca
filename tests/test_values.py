"""Concrete argument values (callgate.conformance.cases.values): the draws, the mapping of echoed
values back to the model's abstract ones, where large values may go, and that an argument-value
mutant is caught because of them."""

from __future__ import annotations

import pytest

from callgate.conformance.cases import sequences
from callgate.conformance.cases.values import (
    BY_NAME,
    CLASSES,
    ECHO,
    MAGNITUDE,
    ValueChooser,
    class_of,
    returns_at_once,
)
from callgate.conformance.cases.walk import walk_machine
from callgate.conformance.implementations.reference.adapter import make_adapter
from callgate.conformance.judge.runner import CaseRunner, initial_state
from callgate.conformance.report.reporting import argument_values
from callgate.conformance.results import CaseResult, Verdict
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, Tracker, Value


def draws(seed: int, name: str, tier: str, n: int, where: str = "m op") -> list[int]:
    chooser = ValueChooser(seed)
    return [chooser.draw(BY_NAME[name], tier, where) for _ in range(n)]


def test_every_use_names_a_real_parameter_and_value() -> None:
    for vc in CLASSES:
        assert vc.anywhere and len(set(vc.anywhere)) == len(vc.anywhere), vc.name
        assert all(0 <= v <= 0xFFFFFFFF for v in (*vc.anywhere, *vc.at_once)), vc.name
        for use in vc.uses:
            op = MACHINES[use.machine].operation(use.op)
            params = {p.name: p.domain for p in op.params}
            assert use.param in params, (vc.name, use)
            if vc.kind == MAGNITUDE:
                assert use.abstract in params[use.param], (vc.name, use)
                assert vc.infinite in params[use.param], vc.name
            else:
                assert tuple(params[use.param]) == vc.domain, (vc.name, use)
            abstract = use.abstract if use.abstract is not None else vc.domain[0]
            assert class_of(use.machine, use.op, use.param, abstract) is vc


def test_echo_classes_have_values_enough_and_abort_codes_are_never_zero() -> None:
    for vc in CLASSES:
        if vc.kind == ECHO:
            assert len(vc.anywhere) >= len(vc.domain) + 4, vc.name
    assert 0 not in BY_NAME["abort.code"].anywhere  # RPC-SRV-ABORT-03: undefined
    assert 0xFFFFFFFE in BY_NAME["timeout.finite"].at_once  # INFINITE-1
    assert max(BY_NAME["timeout.finite"].anywhere) <= 100  # a wait that times out stays short


def test_boundaries_first_then_seeded_and_deterministic() -> None:
    vc = BY_NAME["timeout.finite"]
    first = draws(7, "timeout.finite", "at_once", len(vc.at_once))
    assert first == list(vc.at_once)  # the listed order, boundaries first, whatever the seed
    assert first == draws(8, "timeout.finite", "at_once", len(vc.at_once))
    more = draws(7, "timeout.finite", "at_once", len(vc.at_once) + 40)
    assert more == draws(7, "timeout.finite", "at_once", len(vc.at_once) + 40)  # same seed
    assert more != draws(8, "timeout.finite", "at_once", len(vc.at_once) + 40)  # another seed
    assert set(more) <= set(vc.at_once)


def test_each_operation_has_its_own_cursor() -> None:
    chooser = ValueChooser(0)
    vc = BY_NAME["timeout.finite"]
    assert chooser.draw(vc, "at_once", "com_call Wait") == vc.at_once[0]
    assert chooser.draw(vc, "at_once", "event Wait") == vc.at_once[0]
    assert chooser.draw(vc, "at_once", "com_call Wait") == vc.at_once[1]


def test_an_echoed_value_matches_only_the_value_sent() -> None:
    binding = ValueChooser(0).binding()
    action = Action("c0", "server_signal", (("out", 1), ("then_impersonate", False)))
    args, _, sent = binding.concrete("com_call", action, None, 50)
    one = binding.bound["out"]["1"]
    two = binding.bound["out"]["2"]
    assert args["out"] == sent["out"] == one and one != two
    assert binding.observed("com_call", "Finish_", 0, {"out": one})[1]["out"] == 1
    assert binding.observed("com_call", "Finish_", 0, {"out": two})[1]["out"] == 2
    for wrong in (one & 0xFF, 1, 2, 12345):  # truncated, or the abstract labels themselves
        if wrong not in (one, two):
            assert binding.observed("com_call", "Finish_", 0, {"out": wrong})[1]["out"] \
                not in (1, 2)


def test_an_abort_code_comes_back_through_the_completion_code() -> None:
    binding = ValueChooser(0).binding()
    binding.concrete("rpc_call", Action("r0", "server_abort", (("code", 5),)), None, 50)
    sent = binding.bound["abort.code"]["5"]
    assert binding.observed("rpc_call", "RpcAsyncCompleteCall", sent, {})[0] == 5
    assert binding.observed("rpc_call", "RpcAsyncCompleteCall", 1726, {})[0] == 1726
    if sent != 5:
        assert binding.observed("rpc_call", "RpcAsyncCompleteCall", 5, {})[0] not in (5, 8)
    # Other operations' codes are left alone.
    assert binding.observed("rpc_call", "server_abort", sent, {})[0] == sent


def test_fixed_values_are_the_old_single_values() -> None:
    binding = ValueChooser(3, fixed=True).binding()
    _, wait, _ = binding.concrete("com_call", Action("c0", "Wait", (("timeout", "finite"),)),
                                  None, 50)
    args, _, _ = binding.concrete("com_call", Action("c0", "sync_call", (("out", 2),)), None, 50)
    assert (wait, args["out"]) == (50, 2)
    assert binding.observed("com_call", "Finish_", 0, {"out": 2})[1]["out"] == 2


def test_a_preset_binding_replays_the_same_values() -> None:
    first = ValueChooser(0).binding()
    first.concrete("rpc_call", Action("r0", "server_complete", (("reply", 2),)), None, 50)
    again = ValueChooser(99).binding(first.as_json())
    args, _, _ = again.concrete("rpc_call", Action("r0", "server_complete", (("reply", 2),)),
                                None, 50)
    assert args["reply"] == first.bound["reply"]["2"]


def tracker_after(machine: str, config: dict[str, Value], steps: list[Action]) -> Tracker:
    m = MACHINES[machine]
    tracker = Tracker(m, {}, [initial_state(m, config)])
    for action in steps:
        allowed = tracker.expected(action.op, action.args)
        assert allowed, action
        tracker.states = frozenset({allowed[0].next_state})
    return tracker


def test_large_values_only_where_the_model_says_the_operation_returns_at_once() -> None:
    wait = Action("c0", "Wait", (("timeout", "finite"),))
    cancel = Action("c0", "Cancel", (("seconds", 1),))
    start = [Action("c0", "CreateCall", (("riid", "async"), ("aggregate", False))),
             Action("c0", "Begin_", ())]
    config: dict[str, Value] = {"factory": True, "cancellable": True, "phase": "NONE"}
    pending = tracker_after("com_call", config, start)
    signalled = tracker_after("com_call", config, [
        *start, Action("c0", "server_signal", (("out", 1), ("then_impersonate", False)))])
    assert not returns_at_once(pending, wait, "timeout", BY_NAME["timeout.finite"])
    assert not returns_at_once(pending, cancel, "seconds", BY_NAME["cancel.seconds.finite"])
    assert returns_at_once(signalled, wait, "timeout", BY_NAME["timeout.finite"])
    assert returns_at_once(signalled, cancel, "seconds", BY_NAME["cancel.seconds.finite"])
    binding = ValueChooser(0).binding()
    _, held_wait, _ = binding.concrete("com_call", wait, pending, 50)
    assert held_wait in BY_NAME["timeout.finite"].anywhere
    args, _, _ = binding.concrete("com_call", cancel, pending, 50)
    assert args["seconds"] == 1  # the client waits ulSeconds for a server the harness holds


def walk(machine: str, faults: frozenset[str], fixed: bool) -> list[CaseResult]:
    adapter = make_adapter(faults=faults)
    caps = adapter.capabilities()
    runner = CaseRunner(adapter, caps, 5.0, ValueChooser(0, fixed=fixed))
    machine_plan = sequences.plan(caps).machines[machine]
    try:
        pending = set(machine_plan.transitions)
        return [result for _, result in walk_machine(runner, machine_plan, pending)]
    finally:
        runner.close()
        adapter.shutdown()


@pytest.mark.slow
def test_a_value_dependent_mutant_is_caught_only_with_the_new_values() -> None:
    varied = walk("com_call", frozenset({"finish_out_byte"}), fixed=False)
    failed = [r for r in varied if r.verdict is Verdict.FAIL]
    assert failed and failed[0].trace[-1].op == "Finish_"
    assert "concrete values" in failed[0].message
    assert failed[0].replay["values"]["out"]
    fixed = walk("com_call", frozenset({"finish_out_byte"}), fixed=True)
    assert fixed and all(r.verdict is Verdict.PASS for r in fixed)


def test_the_reference_passes_with_varied_values_and_the_report_lists_them() -> None:
    results = walk("event", frozenset(), fixed=False)
    assert results and all(r.verdict is Verdict.PASS for r in results)
    table = argument_values(results)
    waits = table["event Wait timeout=finite"]["values"]
    assert 0xFFFFFFFE in waits and 1 in waits  # INFINITE-1 where signalled, 1 ms anywhere


def test_a_wait_that_cannot_return_at_once_gets_no_large_timeout() -> None:
    # A broken input for the guard: an event never signalled, so every finite Wait times out.
    binding = ValueChooser(0).binding()
    tracker = Tracker(MACHINES["event"], {}, [initial_state(MACHINES["event"], {})])
    create = Action("e0", "CoCreateInstance", (("clsid", "ManualResetEvent"),))
    tracker.states = frozenset({tracker.expected(create.op, create.args)[0].next_state})
    for _ in range(20):
        _, wait, _ = binding.concrete("event", Action("e0", "Wait", (("timeout", "finite"),)),
                                      tracker, 50)
        assert wait <= 100
        binding = ValueChooser(0).binding()
