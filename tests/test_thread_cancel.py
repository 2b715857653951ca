"""Section 2.8, thread-level cancellation: the thread_cancel machine, its obligations (each shown
failing on a broken table), the reference implementation and its seeded faults."""

from __future__ import annotations

from dataclasses import replace

import pytest

from callgate.conformance.cases import sequences
from callgate.conformance.gate import run_cases
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.results import Verdict
from callgate.model import codes
from callgate.model.obligations import UNSTATED, check_machine, obligations_for
from callgate.model.proofs.results import Result
from callgate.model.rules import catalogue
from callgate.model.tables import thread_cancel
from callgate.model.tables.table import out, row
from callgate.model.transitions import Exact, Machine, Row

MACHINE = thread_cancel.MACHINE
FEATURES = frozenset({"com.thread_cancel", "com.thread_cancel.call", "com.thread_cancel.object"})


def _failed(machine: Machine) -> set[str]:
    return {r.name.removeprefix("obligation[").removesuffix("]") for r in check_machine(machine)
            if r.result is not Result.PROVED}


def _swap(op: str, keep: object, new: Row) -> Machine:
    """The machine with the rows of `op` that `keep` rejects replaced by `new`."""
    rows = [r for r in MACHINE.rows if r.op != op or keep(r)]  # type: ignore[operator]
    return replace(MACHINE, rows=(*rows, new))


def test_every_section_2_8_rule_is_in_scope_and_cited() -> None:
    rules = [r for r in catalogue().values() if r.section == "2.8"]
    assert len(rules) == 11 and all(r.in_scope for r in rules)
    cited = MACHINE.cited_rules()
    for rule in rules:
        if rule.id == "COM-CCAN-01":
            assert rule.id in UNSTATED
        else:
            assert rule.id in cited, rule.id
            assert rule.level.value != "MUST" or obligations_for(rule.id), rule.id


def test_the_tables_meet_every_obligation() -> None:
    assert _failed(MACHINE) == set()


def test_a_call_that_ignores_the_enable_count_breaks_the_timing_obligations() -> None:
    broken = _swap("start_sync_call", lambda r: dict(r.guard).get("call") != frozenset({"NONE"}),
                   row("start_sync_call", ("COM-CCAN-05",),
                       out(Exact(codes.S_OK), "always cancellable", call="PENDING",
                           cancellable=True), state={"call": "NONE"}))
    assert "thread_cancel.not_enabled" in _failed(broken)


def test_a_reinitialisation_that_keeps_the_count_is_caught() -> None:
    broken = _swap("reinitialize", lambda r: r.kind.value != "defined",
                   row("reinitialize", ("COM-CCAN-06",), out(Exact(codes.S_OK), "kept"),
                       state={"call": "NONE", "registered": 0}))
    assert "thread_cancel.reinitialize" in _failed(broken)


def test_a_table_with_one_reading_of_d10_is_caught() -> None:
    nested = frozenset(range(2, thread_cancel.MAX_ENABLES + 1))
    broken = _swap("CoDisableCallCancellation",
                   lambda r: dict(r.guard).get("count") != nested,
                   row("CoDisableCallCancellation", ("COM-CCAN-04",),
                       out(Exact(codes.S_OK), "Wine only", count=1),
                       state={"call": thread_cancel.FREE, "count": nested},
                       args={"pReserved": "NULL"}))
    assert "thread_cancel.disable_nested" in _failed(broken)


def test_an_enable_that_changes_a_pending_call_is_caught() -> None:
    broken = _swap("CoEnableCallCancellation",
                   lambda r: dict(r.guard).get("call") != frozenset({"PENDING"}),
                   row("CoEnableCallCancellation", ("COM-CCAN-05",),
                       out(Exact(codes.S_OK), "late enable", cancellable=True),
                       state={"call": "PENDING"}))
    assert "thread_cancel.fixed_at_start" in _failed(broken)


def test_an_accepted_cancel_of_a_cancelled_call_is_caught() -> None:
    broken = _swap("CoCancelCall", lambda r: dict(r.guard).get("call") != frozenset({"RELEASED"}),
                   row("CoCancelCall", ("COM-CCAN-08",), out(Exact(codes.S_OK), "again"),
                       state={"call": "RELEASED"}))
    assert "thread_cancel.already_cancelled" in _failed(broken)


def _run(faults: tuple[str, ...] = ()) -> list[Verdict]:
    adapter = ReferenceAdapter(faults=faults)
    caps = replace(adapter.capabilities(), features=FEATURES)
    plan = sequences.plan(caps)
    cases = [c for c in plan.cases if c.slots and c.slots[0].machine == "thread_cancel"]
    assert cases
    return [r.verdict for r in run_cases(adapter, cases)]


def test_the_reference_implementation_passes() -> None:
    assert set(_run()) == {Verdict.PASS}


@pytest.mark.parametrize("fault", ["disable_keeps_enabled", "reinitialize_keeps_enabled",
                                   "thread_cancel_ignores_disabled"])
def test_each_seeded_fault_is_caught(fault: str) -> None:
    assert Verdict.FAIL in _run((fault,))
