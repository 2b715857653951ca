"""Section 2.17, dispatch order on one binding (and RpcAsyncRegisterInfo of 2.20): the rpc_order
table holds its obligations, each obligation catches an error planted in the table, and the
reference implementation takes every transition as the table says while its seeded faults are
seen."""

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

ORDER = MACHINES["rpc_order"]
OK = Exact(codes.RPC_S_OK)
STEP_MS = 2000


def test_the_rpc_order_obligations_hold_on_the_table() -> None:
    results = check_machine(ORDER, known={})
    assert len(results) == 7
    assert all(r.result is Result.PROVED for r in results), [r.detail for r in results
                                                             if r.result is not Result.PROVED]


def _planted() -> Machine:
    """One planted error per obligation, each in a row of its own."""
    m = ORDER
    both_waiting = {"c0": "issued", "c1": "issued"}
    # RPC-ORDER-01: a causal binding dispatches the second call first.
    m = plant(m, "server_next_dispatch", {"noncausal": False, **both_waiting},
              outcomes(out(OK, "planted: call 1 first", outputs={"call": 1}, c1="running")))
    # RPC-ORDER-01: completing call 1 hands the client call 0's reply.
    m = plant(m, "server_complete", {"c1": "running"},
              outcomes(out(OK, "planted: wrong reply", outputs={"reply": 0}, c1="done")),
              args={"call": 1})
    # RPC-ORDER-03: a synchronous call overtakes a waiting asynchronous call.
    m = plant(m, "sync_call", {"noncausal": False, "c0": "issued", "c1": "none"},
              outcomes(out(OK, "planted: sync first", outputs={"before": 0})))
    # RPC-ORDER-04: a non-causal binding is still serialised in the table.
    m = plant(m, "server_next_dispatch", {"noncausal": True, **both_waiting},
              outcomes(out(OK, "planted: still serialised", outputs={"call": 0},
                           c0="running")))
    # RPC-ORDER-03/04: on a non-causal binding the synchronous call overtakes a dispatched one.
    m = plant(m, "sync_call", {"noncausal": True, "c0": "running", "c1": "none"},
              outcomes(out(OK, "planted: before a dispatched call", outputs={"before": 0})))
    # RPC-MISC-01: RpcAsyncRegisterInfo changes the binding's option.
    return plant(m, "RpcAsyncRegisterInfo", {},
                 outcomes(out(OK, "planted: option changed", noncausal=True)))


@pytest.fixture(scope="module")
def planted() -> list[CheckResult]:
    # RPC-ORDER-04: the option is refused (planted apart: it would leave the non-causal
    # obligations vacuous).
    refused = plant(ORDER, "RpcBindingSetOption", {"c0": "none", "c1": "none"},
                    outcomes(out(Exact(codes.RPC_S_INVALID_ARG), "planted: refused")))
    option = result_of(check_machine(refused, known={}), "order.noncausal_option")
    return [option, *check_machine(_planted(), known={})]


@pytest.mark.parametrize(("obligation", "rule", "op"), [
    ("order.causal_dispatch", "RPC-ORDER-01", "server_next_dispatch"),
    ("order.finish_any_order", "RPC-ORDER-01", "server_complete"),
    ("order.sync_after_async", "RPC-ORDER-03", "sync_call"),
    ("order.noncausal_option", "RPC-ORDER-04", "RpcBindingSetOption"),
    ("order.noncausal_unordered", "RPC-ORDER-04", "server_next_dispatch"),
    ("order.noncausal_sync", "RPC-ORDER-04", "sync_call"),
    ("order.register_info", "RPC-MISC-01", "RpcAsyncRegisterInfo"),
])
def test_each_obligation_catches_its_planted_error(planted: list[CheckResult], obligation: str,
                                                   rule: str, op: str) -> None:
    result = result_of(planted, obligation)
    assert result.result is Result.COUNTEREXAMPLE, result.detail
    cex = result.counterexample
    assert cex is not None and rule in result.rules and rule in cex.violated
    assert cex.steps and cex.steps[-1].op == op


# --- the reference implementation ----------------------------------------------------------


def _paths() -> dict[State, list[tuple[str, Args]]]:
    """A shortest path of DEFINED steps (under the reference's pins) to each reachable state,
    through the outcomes the reference takes: on a non-causal binding its server enters the
    newest waiting call first."""
    paths: dict[State, list[tuple[str, Args]]] = {ORDER.initial[0]: []}
    frontier = [ORDER.initial[0]]
    while frontier:
        state = frontier.pop(0)
        for op in ORDER.operations:
            for args in op.all_args():
                if find_row(ORDER, state, op.name, args).kind is not Kind.DEFINED:
                    continue
                for allowed in step(ORDER, state, op.name, args, PINS).allowed:
                    if op.name == "server_next_dispatch" and not _newest_first(state, allowed.next_state):
                        continue
                    if allowed.next_state not in paths:
                        paths[allowed.next_state] = [*paths[state], (op.name, args)]
                        frontier.append(allowed.next_state)
    return paths


def _newest_first(state: State, after: State) -> bool:
    """Whether the dispatch from `state` to `after` entered the newest waiting call."""
    before, now = ORDER.view(state), ORDER.view(after)
    waiting = [c for c in ("c0", "c1") if before[c] == "issued"]
    return now[waiting[-1]] == "running"


def _drive(faults: tuple[str, ...] = ()) -> list[str]:
    """Every DEFINED transition of the machine from each reachable state (those a non-causal
    binding reaches by reordering included: the reference takes the newest waiting call first),
    each from a fresh slot driven to its source state, judged against the table; the failures
    (with faults: the first), and a path that did not lead to its state."""
    adapter = make_adapter(faults=faults) if faults else ReferenceAdapter()
    failures: list[str] = []
    try:
        for state, path in sorted(_paths().items(), key=repr):
            for op in ORDER.operations:
                for args in op.all_args():
                    if find_row(ORDER, state, op.name, args).kind is not Kind.DEFINED:
                        continue
                    session = adapter.open_session([SlotSpec("b0", "rpc_order", {})])
                    try:
                        tracker = Tracker(ORDER, PINS)
                        for i, (name, a) in enumerate([*path, (op.name, args)]):
                            if i == len(path) and tracker.states != {state}:
                                failures.append(f"{ORDER.describe(state)}: the path led to "
                                                f"{[ORDER.describe(x) for x in tracker.states]}")
                                break
                            seen = session.perform(Request("b0", name, dict(a), STEP_MS))
                            judged = tracker.observe(name, a, seen.code, seen.outputs)
                            if not judged.ok:
                                failures.append(f"{ORDER.describe(state)}: {name}{dict(a)} -> "
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
    assert len(_paths()) == 24
    assert _drive() == []


@pytest.mark.parametrize(("fault", "rule"), [
    ("dispatch_on_arrival", "RPC-ORDER-01"),
    ("sync_call_overtakes", "RPC-ORDER-03"),
    ("noncausal_option_rejected", "RPC-ORDER-04"),
    ("reply_to_oldest_call", "RPC-ORDER-01"),
])
def test_each_seeded_fault_of_the_section_is_seen(fault: str, rule: str) -> None:
    assert FAULTS[fault].rule == rule
    assert _drive((fault,)), f"{fault} went unseen"


def test_calls_overlap_and_finish_out_of_order_on_a_causal_binding() -> None:
    adapter = ReferenceAdapter()
    session = adapter.open_session([SlotSpec("b0", "rpc_order", {})])

    def do(op: str, **args: int | bool) -> tuple[int, dict[str, int | bool | str]]:
        seen = session.perform(Request("b0", op, args, STEP_MS))
        return seen.code, dict(seen.outputs)
    try:
        ok = codes.RPC_S_OK.value
        assert do("issue_async") == (ok, {})
        assert do("issue_async") == (ok, {})
        assert do("server_next_dispatch") == (ok, {"call": 0})
        assert do("server_next_dispatch") == (ok, {"call": 1})  # call 0 still held
        assert do("sync_call") == (ok, {"before": 2})  # both still held
        assert do("server_complete", call=1) == (ok, {"reply": 1})
        assert do("server_complete", call=0) == (ok, {"reply": 0})
    finally:
        session.close()
        adapter.shutdown()


def test_a_noncausal_binding_enters_the_newest_waiting_call_first() -> None:
    """RPC-ORDER-04 leaves the order to the runtime; the reference takes the other one, so that
    the states where call 1 runs before call 0 are reached (and a client relying on issue order
    on such a binding is seen)."""
    adapter = ReferenceAdapter()
    session = adapter.open_session([SlotSpec("b0", "rpc_order", {})])

    def do(op: str, **args: int | bool) -> tuple[int, dict[str, int | bool | str]]:
        seen = session.perform(Request("b0", op, args, STEP_MS))
        return seen.code, dict(seen.outputs)
    try:
        ok = codes.RPC_S_OK.value
        assert do("RpcBindingSetOption", value=True) == (ok, {})
        assert do("issue_async") == (ok, {})
        assert do("issue_async") == (ok, {})
        assert do("server_next_dispatch") == (ok, {"call": 1})
        assert do("server_complete", call=1) == (ok, {"reply": 1})
        assert do("server_next_dispatch") == (ok, {"call": 0})
        assert do("server_complete", call=0) == (ok, {"reply": 0})
    finally:
        session.close()
        adapter.shutdown()


@pytest.mark.parametrize("code", [0x80000100, 0xC0000139, codes.RPC_S_OK.value])
def test_a_raise_is_no_return_although_the_row_admits_any_code(code: int) -> None:
    """RpcAsyncRegisterInfo's row admits any code (D-15) but says it returns: a stub that raises
    (Wine's 0x80000100, a missing entry point 0xC0000139), answered with `raised`, fails it."""
    for raised, ok in ((False, True), (True, False)):
        tracker = Tracker(ORDER, PINS)
        outputs = {"raised": True} if raised else {}
        assert tracker.observe("RpcAsyncRegisterInfo", (), code, outputs).ok is ok
        assert tracker.states == frozenset(ORDER.initial)
