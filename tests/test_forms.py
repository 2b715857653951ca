"""Every documented form is driven (issue 17): an APC with u.APC.hThread NULL (RPC-CLI-NOTIFY-02),
and a call the server completes or aborts from another thread after the manager routine returned
(RPC-SRV-COMPLETE-07). The model offers both, the reference passes both, and an implementation
that gets either wrong is caught."""

from __future__ import annotations

from dataclasses import replace

import pytest

from callgate.conformance import mutants
from callgate.conformance.budgets import BUDGETS
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.protocol.adapter import features_needed
from callgate.conformance.protocol.features import FEATURES
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, Kind, find_row

RPC = MACHINES["rpc_call"]
NULL_APC = ("AsyncCall", "hThread", "NULL")
LATER = ("thread", "later")


def _plan(features: frozenset[str] = FEATURES) -> list[Action]:
    """Every step of every directed rpc_call case planned for an adapter with `features`."""
    caps = ReferenceAdapter().capabilities()
    plan = mutants.plan_for(replace(caps, features=features))
    return [step for case in plan.cases for step in case.steps
            if case.slots and case.slots[0].machine == "rpc_call"]


def _null_apc_calls(steps: list[Action]) -> list[Action]:
    return [s for s in steps if s.op == "AsyncCall" and ("hThread", "NULL") in s.args]


def _later_ends(steps: list[Action], op: str) -> list[Action]:
    return [s for s in steps if s.op == op and LATER in s.args]


@pytest.mark.slow  # plans every directed case (about a minute on a shared machine)
def test_the_directed_cases_make_a_call_with_a_null_apc_thread() -> None:
    steps = _plan()
    calls = _null_apc_calls(steps)
    assert calls, "no directed case calls with u.APC.hThread NULL"
    assert all(dict(s.args)["notify"] == "Apc" for s in calls)
    # The explicit form stays driven too.
    assert any(s.op == "AsyncCall" and ("hThread", "explicit") in s.args
               and ("notify", "Apc") in s.args for s in steps)


@pytest.mark.slow  # plans every directed case (about a minute on a shared machine)
@pytest.mark.parametrize("op", ["server_complete", "server_abort"])
def test_the_directed_cases_end_a_call_from_another_thread_after_the_routine(op: str) -> None:
    steps = _plan()
    assert _later_ends(steps, op), f"no directed case has {op} with thread later"
    assert any(s.op == op and ("thread", "routine") in s.args for s in steps)


@pytest.mark.slow  # plans every directed case (about a minute on a shared machine)
def test_an_adapter_without_the_features_is_not_sent_the_forms() -> None:
    # A feature the adapter does not declare makes those steps not applicable: never sent.
    without = frozenset(FEATURES - {"rpc.apc_null_thread", "rpc.server_later"})
    steps = _plan(without)
    assert not _null_apc_calls(steps)
    assert not _later_ends(steps, "server_complete") and not _later_ends(steps, "server_abort")
    assert features_needed("rpc_call", "AsyncCall", {"notify": "Apc", "binding": "good",
                                                     "hThread": "NULL"}) \
        == {"rpc.call", "rpc.notify.Apc", "rpc.apc_null_thread"}
    assert features_needed("rpc_call", "server_abort", {"code": 5, "thread": "later"}) \
        == {"rpc.abort", "rpc.server_later"}


def test_the_forms_are_rows_that_cite_their_rules() -> None:
    state = RPC.make(phase="INIT")
    null = find_row(RPC, state, "AsyncCall", (("notify", "Apc"), ("binding", "good"),
                                              ("hThread", "NULL")))
    assert null.kind is Kind.DEFINED and "RPC-CLI-NOTIFY-02" in null.rules
    other = find_row(RPC, state, "AsyncCall", (("notify", "Event"), ("binding", "good"),
                                               ("hThread", "NULL")))
    assert other.kind is Kind.NOT_OFFERED
    held = RPC.make(phase="PENDING", server="held")
    later = find_row(RPC, held, "server_complete", (("reply", 1), ("thread", "later")))
    assert "RPC-SRV-COMPLETE-07" in later.rules
    routine = find_row(RPC, held, "server_complete", (("reply", 1), ("thread", "routine")))
    assert "RPC-SRV-COMPLETE-07" not in routine.rules
    assert routine.outcomes == later.outcomes
    raise_later = find_row(RPC, held, "server_raise", (("code", 5), ("thread", "later")))
    assert raise_later.kind is Kind.UNDEFINED and "RPC-SRV-EXC-02" in raise_later.rules


@pytest.mark.slow  # plans every directed case (about a minute on a shared machine)
def test_the_reference_passes_both_forms() -> None:
    # Every directed rpc_call case that uses either form, run against the reference: all pass.
    adapter = ReferenceAdapter()
    try:
        caps = adapter.capabilities()
        plan = mutants.plan_for(caps)
        cases = [c for c in plan.cases
                 if any(("hThread", "NULL") in s.args or LATER in s.args for s in c.steps)]
        assert cases
        runner = CaseRunner(adapter, caps, step_timeout=5.0)
        try:
            results = [runner.run(case) for case in cases]
        finally:
            runner.close()
    finally:
        adapter.shutdown()
    failed = [(r.id, r.verdict.value, r.message) for r in results if r.verdict.value != "pass"]
    assert failed == []


@pytest.mark.slow  # plans every directed case (about a minute on a shared machine)
@pytest.mark.parametrize("fault,rule", [
    ("apc_to_runtime_thread", "RPC-CLI-NOTIFY-02"),     # ignores the NULL thread
    ("reply_on_routine_return", "RPC-SRV-COMPLETE-07"),  # completes only inside the routine
])
def test_an_implementation_that_gets_a_form_wrong_is_caught(fault: str, rule: str) -> None:
    result = mutants.run_mutant(fault, BUDGETS["quick"], 0, ("directed",))
    assert result.killed and result.verdict == "fail", result
    assert rule in result.failed_rules
