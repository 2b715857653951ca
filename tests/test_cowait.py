"""Section 2.11, CoWaitForMultipleHandles: the cowait table holds its obligations, each obligation
catches an error planted in the table, and the reference implementation passes the machine's
cases while its seeded faults are caught."""

from __future__ import annotations

import pytest

from callgate.conformance.implementations.reference.adapter import (
    PINS,
    ReferenceAdapter,
    make_adapter,
)
from callgate.conformance.implementations.reference.host import FAULTS
from callgate.conformance.protocol.adapter import Observation, Request, SlotSpec
from callgate.model import codes
from callgate.model.families import MACHINES
from callgate.model.obligations import check_machine
from callgate.model.proofs import CheckResult, Result
from callgate.model.tables.table import out
from callgate.model.transitions import Args, Exact, Kind, Machine, State, Tracker, find_row, step
from tests.test_obligations import outcomes, plant, result_of, without_update

COWAIT = MACHINES["cowait"]
OP = "CoWaitForMultipleHandles"
OK = Exact(codes.S_OK)
TIMED = ("zero", "finite")
SHORT_MS = 20  # a finite wait that is expected to time out


def test_the_cowait_obligations_hold_on_the_table() -> None:
    results = check_machine(COWAIT, known={})
    assert len(results) >= 10
    assert all(r.result is Result.PROVED for r in results), [r.detail for r in results
                                                             if r.result is not Result.PROVED]


def _planted() -> Machine:
    """One planted error per obligation, each in a row of its own."""
    m = COWAIT
    # COM-CWMH-01: handle 0 alone is signalled, but the index says 1.
    m = plant(m, OP, {"sig0": True, "sig1": False, "apc": False},
              outcomes(out(OK, "planted: wrong index", outputs={"index": 1})),
              args={"form": "valid", "flags": ("none", "alertable")})
    # COM-CWMH-02: WAITALL with both signalled times out.
    m = plant(m, OP, {"sig0": True, "sig1": True},
              outcomes(out(Exact(codes.RPC_S_CALLPENDING), "planted: not satisfied")),
              args={"form": "valid", "flags": "waitall"})
    # COM-CWMH-02: WAITALL satisfied by handle 0 alone.
    m = plant(m, OP, {"sig0": True, "sig1": False},
              outcomes(out(OK, "planted: one is enough")),
              args={"form": "valid", "flags": "waitall", "timeout": TIMED})
    # COM-CWMH-03: the timeout code of the other ISynchronize pages.
    m = plant(m, OP, {"sig0": False, "sig1": False},
              outcomes(out(Exact(codes.RPC_E_TIMEOUT), "planted: RPC_E_TIMEOUT")),
              args={"form": "valid", "flags": "none", "timeout": TIMED})
    # COM-CWMH-04 and -05: the argument checks.
    m = plant(m, OP, {}, outcomes(out(OK, "planted: NULL lpdwindex accepted")),
              args={"form": "null_index"})
    m = plant(m, OP, {}, outcomes(out(Exact(codes.E_INVALIDARG), "planted: index not written")),
              args={"form": "null_handles"})
    m = plant(m, OP, {}, outcomes(out(OK, "planted: bad flags accepted")),
              args={"form": "bad_flags"})
    m = plant(m, OP, {}, outcomes(out(Exact(codes.E_INVALIDARG), "planted: E_INVALIDARG",
                                      outputs={"index": 0})),
              args={"form": "zero_count"})
    # D-06 pinned to E_INVALIDARG, but the table answers RPC_E_NO_SYNC under that pin.
    m = plant(m, OP, {}, outcomes(
        out(Exact(codes.RPC_E_NO_SYNC), "planted", outputs={"index": 0},
            when={"cowait_null_handles_code": "E_INVALIDARG"}),
        out(Exact(codes.RPC_E_NO_SYNC), "planted", outputs={"index": 0},
            when={"cowait_null_handles_code": "RPC_E_NO_SYNC"})),
        args={"form": "null_handles_zero_count"})
    # COM-CWMH-06: the APC runs but stays queued.
    return plant(m, OP, {"sig0": False, "sig1": False, "apc": True}, without_update("apc"),
                 args={"form": "valid", "flags": "alertable"})


@pytest.fixture(scope="module")
def planted() -> list[CheckResult]:
    return check_machine(_planted(), known={})


@pytest.mark.parametrize(("obligation", "rule", "label"), [
    ("cowait.any_signalled", "COM-CWMH-01", "planted: wrong index"),
    ("cowait.all_signalled", "COM-CWMH-02", "planted: not satisfied"),
    ("cowait.waitall_needs_all", "COM-CWMH-02", "planted: one is enough"),
    ("cowait.timeout", "COM-CWMH-03", "planted: RPC_E_TIMEOUT"),
    ("cowait.null_index", "COM-CWMH-04", "planted: NULL lpdwindex accepted"),
    ("cowait.null_handles", "COM-CWMH-04", "planted: index not written"),
    ("cowait.bad_flags", "COM-CWMH-04", "planted: bad flags accepted"),
    ("cowait.zero_count", "COM-CWMH-05", "planted: E_INVALIDARG"),
    ("cowait.null_handles_zero_count", "COM-CWMH-04", "planted"),
    ("cowait.alertable_apc", "COM-CWMH-06", "APC ran"),
])
def test_each_obligation_catches_its_planted_error(planted: list[CheckResult], obligation: str,
                                                   rule: str, label: str) -> None:
    result = result_of(planted, obligation)
    assert result.result is Result.COUNTEREXAMPLE, result.detail
    cex = result.counterexample
    assert cex is not None and rule in result.rules and rule in cex.violated
    assert cex.steps and cex.steps[-1].op == OP and cex.steps[-1].outcome == label


def test_the_d06_finding_names_the_pin(planted: list[CheckResult]) -> None:
    cex = result_of(planted, "cowait.null_handles_zero_count").counterexample
    assert cex is not None and "cowait_null_handles_code=E_INVALIDARG" in cex.what


def test_a_table_that_drops_the_apc_outcome_where_a_handle_is_signalled_is_caught() -> None:
    # COM-CWMH-06 with a handle signalled too: which comes first is undocumented, so the table
    # must keep WAIT_IO_COMPLETION among the allowed results.
    broken = plant(COWAIT, OP, {"sig0": True, "sig1": False, "apc": True},
                   outcomes(out(OK, "planted: handle only", outputs={"index": 0})),
                   args={"form": "valid", "flags": "alertable"})
    result = result_of(check_machine(broken, known={}), "cowait.alertable_apc")
    assert result.result is Result.COUNTEREXAMPLE
    assert result.counterexample is not None
    assert "no allowed outcome" in result.counterexample.what


# --- the reference implementation ----------------------------------------------------------


def _paths() -> dict[State, list[tuple[str, Args]]]:
    """A shortest path of DEFINED steps (under the reference's pins) to each reachable state."""
    paths: dict[State, list[tuple[str, Args]]] = {COWAIT.initial[0]: []}
    frontier = [COWAIT.initial[0]]
    while frontier:
        state = frontier.pop(0)
        for op in COWAIT.operations:
            for args in op.all_args():
                if find_row(COWAIT, state, op.name, args).kind is not Kind.DEFINED:
                    continue
                for allowed in step(COWAIT, state, op.name, args, PINS).allowed:
                    if allowed.next_state not in paths:
                        paths[allowed.next_state] = [*paths[state], (op.name, args)]
                        frontier.append(allowed.next_state)
    return paths


def _drive(faults: tuple[str, ...] = ()) -> list[str]:
    """Every DEFINED transition of the cowait machine, each from a fresh slot driven to its
    source state, judged against the table; the failures."""
    adapter = make_adapter(faults=faults) if faults else ReferenceAdapter()
    failures: list[str] = []
    try:
        for state, path in sorted(_paths().items(), key=repr):
            for op in COWAIT.operations:
                for args in op.all_args():
                    if find_row(COWAIT, state, op.name, args).kind is not Kind.DEFINED:
                        continue
                    session = adapter.open_session([SlotSpec("w0", "cowait", {})])
                    try:
                        tracker = Tracker(COWAIT, PINS)
                        for name, a in [*path, (op.name, args)]:
                            seen = session.perform(Request("w0", name, dict(a), SHORT_MS))
                            judged = tracker.observe(name, a, seen.code, seen.outputs)
                            if not judged.ok:
                                failures.append(f"{COWAIT.describe(state)}: {name}{dict(a)} -> "
                                                f"{seen.code:#x} {seen.outputs}")
                                break
                    finally:
                        session.close()
    finally:
        adapter.shutdown()
    return failures


def test_the_reference_takes_every_transition_as_the_table_says() -> None:
    assert len(_paths()) == 8
    assert _drive() == []


@pytest.mark.parametrize(("fault", "rule"), [
    ("cowait_null_handles_no_index", "COM-CWMH-04"),
    ("cowait_waitall_any", "COM-CWMH-02"),
])
def test_each_seeded_fault_of_the_section_is_seen(fault: str, rule: str) -> None:
    assert FAULTS[fault].rule == rule
    assert _drive((fault,)), f"{fault} went unseen"


def test_an_alertable_wait_runs_the_queued_apc_and_a_plain_one_leaves_it() -> None:
    adapter = ReferenceAdapter()
    session = adapter.open_session([SlotSpec("w0", "cowait", {})])
    try:
        def wait(flags: str) -> Observation:
            return session.perform(Request("w0", OP, {"form": "valid", "flags": flags,
                                                      "timeout": "zero"}, SHORT_MS))
        assert session.perform(Request("w0", "queue_apc", {}, SHORT_MS)).code == codes.S_OK.value
        assert wait("none").code == codes.RPC_S_CALLPENDING.value
        seen = wait("alertable")
        assert (seen.code, seen.outputs) == (codes.S_OK.value,
                                             {"index": codes.WAIT_IO_COMPLETION})
        assert wait("alertable").code == codes.RPC_S_CALLPENDING.value
    finally:
        session.close()
        adapter.shutdown()
