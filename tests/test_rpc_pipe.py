"""Section 2.19, asynchronous pipes (and RPC-STATE-04): the rpc_pipe table holds its obligations,
each obligation catches an error planted in the table, and the reference implementation takes
every transition as the table says while its seeded faults are seen."""

from __future__ import annotations

import pytest

from callgate.conformance.implementations.reference.adapter import (
    PINS,
    ReferenceAdapter,
    make_adapter,
)
from callgate.conformance.implementations.reference.host import FAULTS
from callgate.conformance.protocol.adapter import Request, SlotSpec
from callgate.model import codes
from callgate.model.families import MACHINES
from callgate.model.obligations import check_machine
from callgate.model.proofs import CheckResult, Result
from callgate.model.tables.table import out
from callgate.model.transitions import Args, Exact, Kind, Machine, State, Tracker, find_row, step
from tests.test_obligations import outcomes, plant, result_of

PIPE = MACHINES["rpc_pipe"]
OK = Exact(codes.RPC_S_OK)
WRONG_ORDER = Exact(codes.RPC_X_WRONG_PIPE_ORDER)
STEP_MS = 2000


def test_the_rpc_pipe_obligations_hold_on_the_table() -> None:
    results = check_machine(PIPE, known={})
    assert len(results) == 8
    assert all(r.result is Result.PROVED for r in results), [r.detail for r in results
                                                             if r.result is not Result.PROVED]


def _planted() -> Machine:
    """One planted error per obligation, each in a row of its own."""
    m = PIPE
    m = plant(m, "push", {"phase": "in_open", "notify": False},
              outcomes(out(Exact(codes.RPC_S_INVALID_ARG), "planted: push refused")),
              args={"n": 1})
    m = plant(m, "push", {"phase": "in_open", "notify": True},
              outcomes(out(OK, "planted: not notified", outputs={"notified": False})),
              args={"n": 1})
    m = plant(m, "pull", {"phase": "in_closed", "out": "empty"},
              outcomes(out(OK, "planted: empty is the end", outputs={"count": 0})))
    m = plant(m, "pull", {"phase": "in_closed", "out": "data"},
              outcomes(out(OK, "planted: data lost", outputs={"count": 0}, out="empty")))
    m = plant(m, "push", {"phase": ("in_closed", "out_ended")},
              outcomes(out(OK, "planted: push after the end accepted")))
    m = plant(m, "pull", {"phase": "in_open"},
              outcomes(out(WRONG_ORDER, "planted: the failed call lives on")))
    m = plant(m, "RpcAsyncCompleteCall", {"phase": "in_open"},
              outcomes(out(OK, "planted: completed undrained", phase="done")))
    return plant(m, "server_complete", {"phase": ("in_open", "in_closed", "out_ended"),
                                        "drained": False},
                 outcomes(out(OK, "planted: server completed undrained", server_done=True)))


@pytest.fixture(scope="module")
def planted() -> list[CheckResult]:
    return check_machine(_planted(), known={})


@pytest.mark.parametrize(("obligation", "rule", "op"), [
    ("pipe.push", "RPC-PIPE-02", "push"),
    ("pipe.send_complete", "RPC-STATE-04", "push"),
    ("pipe.pull_pending", "RPC-PIPE-03", "pull"),
    ("pipe.pull_data", "RPC-PIPE-03", "pull"),
    ("pipe.push_after_end", "RPC-PIPE-05", "push"),
    ("pipe.pull_before_end", "RPC-PIPE-05", "pull"),
    ("pipe.client_complete_undrained", "RPC-PIPE-05", "RpcAsyncCompleteCall"),
    ("pipe.server_complete_undrained", "RPC-PIPE-05", "server_complete"),
])
def test_each_obligation_catches_its_planted_error(planted: list[CheckResult], obligation: str,
                                                   rule: str, op: str) -> None:
    result = result_of(planted, obligation)
    assert result.result is Result.COUNTEREXAMPLE, result.detail
    cex = result.counterexample
    assert cex is not None and rule in result.rules and rule in cex.violated
    assert cex.steps and cex.steps[-1].op == op


def test_an_unpinned_pipe_error_admits_every_candidate_and_a_pin_only_its_own() -> None:
    state = PIPE.make(phase="in_closed")
    unpinned = {a.code for a in step(PIPE, state, "push", (("n", 1),), {}).allowed}
    assert len(unpinned) == 4
    pinned = step(PIPE, state, "push", (("n", 1),), PINS).allowed
    assert [a.code for a in pinned] == [WRONG_ORDER]


# --- the reference implementation ----------------------------------------------------------


def _paths() -> dict[State, list[tuple[str, Args]]]:
    """A shortest path of DEFINED steps (under the reference's pins) to each reachable state."""
    paths: dict[State, list[tuple[str, Args]]] = {PIPE.initial[0]: []}
    frontier = [PIPE.initial[0]]
    while frontier:
        state = frontier.pop(0)
        for op in PIPE.operations:
            for args in op.all_args():
                if find_row(PIPE, state, op.name, args).kind is not Kind.DEFINED:
                    continue
                for allowed in step(PIPE, state, op.name, args, PINS).allowed:
                    if allowed.next_state not in paths:
                        paths[allowed.next_state] = [*paths[state], (op.name, args)]
                        frontier.append(allowed.next_state)
    return paths


def _drive(faults: tuple[str, ...] = ()) -> list[str]:
    """Every DEFINED transition, each from a fresh slot driven to its source state, judged
    against the table; the failures (with faults: the first)."""
    adapter = make_adapter(faults=faults) if faults else ReferenceAdapter()
    failures: list[str] = []
    try:
        for state, path in sorted(_paths().items(), key=repr):
            for op in PIPE.operations:
                for args in op.all_args():
                    if find_row(PIPE, state, op.name, args).kind is not Kind.DEFINED:
                        continue
                    session = adapter.open_session([SlotSpec("p0", "rpc_pipe", {})])
                    try:
                        tracker = Tracker(PIPE, PINS)
                        for name, a in [*path, (op.name, args)]:
                            seen = session.perform(Request("p0", name, dict(a), STEP_MS))
                            judged = tracker.observe(name, a, seen.code, seen.outputs)
                            if not judged.ok:
                                failures.append(f"{PIPE.describe(state)}: {name}{dict(a)} -> "
                                                f"{seen.code:#x} {seen.outputs}")
                                break
                    finally:
                        session.close()
                    if faults and failures:
                        return failures
    finally:
        adapter.shutdown()
    return failures


def test_the_reference_takes_every_transition_as_the_table_says() -> None:
    assert _drive() == []


@pytest.mark.parametrize(("fault", "rule"), [
    ("pipe_push_after_end_accepted", "RPC-PIPE-05"),
    ("pipe_pull_empty_ends", "RPC-PIPE-03"),
    ("pipe_complete_undrained", "RPC-PIPE-05"),
    ("send_complete_at_end_only", "RPC-STATE-04"),
    ("pipe_zero_push_ignored", "RPC-PIPE-02"),
])
def test_each_seeded_fault_of_the_section_is_seen(fault: str, rule: str) -> None:
    assert FAULTS[fault].rule == rule
    assert _drive((fault,)), f"{fault} went unseen"
