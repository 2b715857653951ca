"""The tables assert only what a rule backs (issue 15's audit): one test per finding.

Each test names the audit item it pins. Where DOMAIN.md allows several results the table allows
them (a set or a named variation point); where it says nothing the table does not assert; every
citation names a rule the row implements; every row is reachable; the count of abandoned calls
counts. Each test fails on the tables as the audit found them.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator, Mapping, Sequence
from functools import cache

import pytest

from callgate.conformance.implementations.reference.adapter import PINS, ReferenceAdapter, _ComSlot
from callgate.conformance.protocol.adapter import (
    Capabilities,
    Observation,
    Request,
    Session,
    SlotSpec,
)
from callgate.model import codes, invariants, variations
from callgate.model.families import MACHINES
from callgate.model.invariants import StateView
from callgate.model.transitions import (
    Allowed,
    Args,
    Kind,
    Machine,
    Pins,
    Row,
    State,
    Tracker,
    Value,
    find_row,
    reachable,
    step,
)
from callgate.model.variations import BY_NAME, check_pins

COM = MACHINES["com_call"]
EVENT = MACHINES["event"]
RPC = MACHINES["rpc_call"]

S_OK = codes.S_OK.value
RPC_OK = codes.RPC_S_OK.value
IN_PROGRESS = codes.RPC_S_CALL_IN_PROGRESS.value
CANCELLED = codes.RPC_S_CALL_CANCELLED.value
TIMEOUTS = {codes.RPC_S_CALLPENDING.value, codes.RPC_E_TIMEOUT.value}
E_FAIL = codes.E_FAIL.value


# --- helpers ----------------------------------------------------------------------------------


def args_for(machine: Machine, op: str, **given: Value) -> Args:
    """The operation's arguments: the given values, in declaration order (a parameter the table
    does not have is left out, so a test reads the same against an older table)."""
    return tuple((p.name, given[p.name] if p.name in given else p.domain[0])
                 for p in machine.operation(op).params)


def admits(allowed: tuple[Allowed, ...], code: int, outputs: Mapping[str, object] | None = None
           ) -> bool:
    return any(a.admits(code, outputs or {}) for a in allowed)


Observed = tuple[str, Mapping[str, Value], int, Mapping[str, object]]


def walk(machine: Machine, steps: Sequence[Observed], pins: Pins | None = None,
         start: State | None = None) -> Tracker:
    """Follow observed steps (op, args, code, outputs); each must be allowed."""
    tracker = Tracker(machine, pins or {}, [start if start is not None else machine.initial[0]])
    for op, given, code, outputs in steps:
        judgement = tracker.observe(op, args_for(machine, op, **given), code, outputs)
        assert judgement.ok, (op, given, code, [a.describe() for a in judgement.allowed])
    return tracker


def expected(tracker: Tracker, op: str, **given: Value) -> tuple[Allowed, ...]:
    return tracker.expected(op, args_for(tracker.machine, op, **given))


@cache
def reachable_states(name: str) -> frozenset[State]:
    return frozenset(reachable(MACHINES[name]))


def transitions(machine: Machine) -> Iterator[tuple[State, str, Args, Allowed]]:
    """Every reachable DEFINED step, unpinned."""
    for state in reachable_states(machine.name):
        for operation in machine.operations:
            for args in operation.all_args():
                for allowed in step(machine, state, operation.name, args).allowed:
                    yield state, operation.name, args, allowed


INIT_OUTPUTS: dict[str, object] = {"Signature": 0x43595341, "Size": "sizeof(RPC_ASYNC_STATE)", "Lock": 0,
                "Flags": 0, "StubInfo": 0, "RuntimeInfo": 0, "Reserved": 0,
                "UserInfo_kept": True}
RPC_START: list[Observed] = [("RpcAsyncInitializeHandle", {"size": "exact"}, RPC_OK,
                              INIT_OUTPUTS)]
COM_PENDING: list[Observed] = [("CreateCall", {"riid": "async", "aggregate": False}, S_OK, {}),
                               ("Begin_", {}, S_OK, {})]
COM_SIGNALLED: list[Observed] = [
    *COM_PENDING, ("server_signal", {"out": 1, "then_impersonate": False}, S_OK, {})]


# --- behaviour no rule backs ------------------------------------------------------------------


def test_no_final_release_asserts_a_reference_count() -> None:
    # No rule gives IUnknown::Release's value: every final Release admits any count.
    seen = 0
    for state in reachable_states(COM.name):
        result = step(COM, state, "Release")
        if result.kind is Kind.DEFINED:
            seen += 1
            assert all(admits(result.allowed, refs) for refs in (0, 1, 7)), COM.describe(state)
    assert seen


def test_a_repeated_wait_on_a_signalled_call_object_allows_an_auto_reset_event() -> None:
    # COM-SYNC-06: the call object may aggregate CLSID_StdEvent, whose first S_OK resets it.
    tracker = walk(COM, [*COM_SIGNALLED, ("Wait", {"timeout": "zero"}, S_OK, {})])
    again = expected(tracker, "Wait", timeout="zero")
    assert admits(again, S_OK) and any(admits(again, code) for code in TIMEOUTS)
    std = {"call_object_event": "StdEvent"}
    check_pins(std)
    pinned = Tracker(COM, std, tracker.states)
    assert not admits(expected(pinned, "Wait", timeout="zero"), S_OK)
    manual = Tracker(COM, {"call_object_event": "ManualResetEvent"}, tracker.states)
    assert not any(admits(expected(manual, "Wait", timeout="finite"), c) for c in TIMEOUTS)
    assert pinned.kind("Wait", args_for(COM, "Wait", timeout="infinite")) is Kind.NOT_OFFERED


def test_a_soft_cancel_may_take_a_while_to_reach_the_server_but_is_never_forgotten() -> None:
    # RPC-CLI-CANCEL-05: the effect of a cancel depends on how far the call had got.
    tracker = walk(RPC, [*RPC_START, ("AsyncCall", {"notify": "Event", "binding": "good",
                                                    "hThread": "explicit"},
                                      RPC_OK, {}),
                         ("RpcAsyncCancelCall", {"abort": False}, RPC_OK, {})])
    now = expected(tracker, "server_test_cancel", timeout="zero")
    assert admits(now, IN_PROGRESS) and admits(now, RPC_OK)
    tracker.observe("server_test_cancel", args_for(RPC, "server_test_cancel", timeout="zero"),
                    IN_PROGRESS, {})
    assert admits(expected(tracker, "server_test_cancel", timeout="zero"), RPC_OK)
    waited = expected(tracker, "server_test_cancel", timeout="finite")
    assert admits(waited, RPC_OK) and not admits(waited, IN_PROGRESS)
    tracker.observe("server_test_cancel", args_for(RPC, "server_test_cancel", timeout="zero"),
                    RPC_OK, {})
    assert not admits(expected(tracker, "server_test_cancel", timeout="zero"), IN_PROGRESS)


def test_every_cancel_the_server_still_holds_can_be_seen() -> None:
    # The window ends: wherever the client cancelled and the server holds the call, a test
    # that waits its bounded time must see the cancel.
    found = 0
    for state in reachable_states(RPC.name):
        view = RPC.view(state)
        if view["cancel"] == "no" or view["server"] != "held":
            continue
        found += 1
        waited = step(RPC, state, "server_test_cancel",
                      args_for(RPC, "server_test_cancel", timeout="finite"))
        assert admits(waited.allowed, RPC_OK), RPC.describe(state)
        assert not admits(waited.allowed, IN_PROGRESS), RPC.describe(state)
    assert found


def test_a_bad_binding_may_fail_through_the_completion() -> None:
    # RPC-CLI-COMPLETE-05 allows the failure to come through the completion.
    tracker = walk(RPC, RPC_START)
    call = expected(tracker, "AsyncCall", notify="Event", binding="bad", hThread="explicit")
    assert admits(call, codes.RPC_S_CALL_FAILED_DNE.value) and admits(call, RPC_OK)
    later = walk(RPC, [("AsyncCall", {"notify": "Event", "binding": "bad",
                                      "hThread": "explicit"}, RPC_OK, {})],
                 start=next(iter(tracker.states)))
    final = expected(later, "RpcAsyncCompleteCall")
    assert admits(final, codes.RPC_S_CALL_FAILED_DNE.value, {"resources_open": True})
    assert not admits(final, RPC_OK, {"reply": 0, "resources_open": True})
    assert not admits(final, CANCELLED, {"resources_open": True})
    synchronous = Tracker(RPC, {"bad_binding_failure": "synchronous"}, tracker.states)
    assert not admits(expected(synchronous, "AsyncCall", notify="Event", binding="bad",
                               hThread="explicit"), RPC_OK)


def test_wait_never_reports_done_while_the_server_holds_begin() -> None:
    # Seed 000: "If Wait returns S_OK, the Begin_ method has returned" (a cancel or not).
    for state in reachable_states(COM.name):
        if not COM.view(state)["held"]:
            continue
        for operation in ("Wait", "probe_sta_wait"):
            for args in COM.operation(operation).all_args():
                result = step(COM, state, operation, args)
                assert not admits(result.allowed, S_OK, {"pumped": True}), \
                    (COM.describe(state), operation, args)
    tracker = walk(COM, [*COM_PENDING, ("Cancel", {"seconds": 0}, S_OK, {})])
    assert not admits(expected(tracker, "Wait", timeout="zero"), S_OK)


def test_finish_is_undefined_before_a_successful_wait_and_the_cancelled_code_after_a_cancel(
        ) -> None:
    # COM-FIN-03: no result before Wait said S_OK. After a cancel, COM-FIN-05 gives no value
    # ("RPC_E_CALL_CANCELED is likely") and COM-CANCEL-09 names RPC_S_CALL_CANCELED, which no
    # header defines (D-03): the cancelled code is one of that symbol's two readings, or S_OK
    # with the outputs when the cancel did not take effect (COM-CANCEL-05); nothing else, so the
    # undefined symbol makes no other failure acceptable.
    checked = 0
    for state in reachable_states(COM.name):
        view = COM.view(state)
        result = step(COM, state, "Finish_")
        if view["phase"] == "PENDING":
            assert result.kind is Kind.UNDEFINED, COM.describe(state)
            assert "COM-FIN-03" in result.rules
        elif view["phase"] == "SIGNALED" and view["cancel"]:
            checked += 1
            assert admits(result.allowed, codes.RPC_E_CALL_CANCELED.value)
            assert admits(result.allowed, codes.HRESULT_FROM_WIN32_RPC_S_CALL_CANCELLED.value)
            assert not admits(result.allowed, E_FAIL)
            assert "COM-FIN-05" in result.rules
    assert checked


def test_the_call_objects_wait_and_the_events_wait_are_pinned_apart() -> None:
    # DOMAIN.md links the call object's Wait timeout code to the system event's nowhere.
    pins = check_pins({"call_wait_timeout_code": "RPC_E_TIMEOUT",
                       "event_wait_timeout_code": "RPC_S_CALLPENDING"})
    call = Tracker(COM, pins, walk(COM, COM_PENDING).states)
    assert not admits(expected(call, "Wait", timeout="zero"), codes.RPC_S_CALLPENDING.value)
    assert admits(expected(call, "Wait", timeout="zero"), codes.RPC_E_TIMEOUT.value)
    event = Tracker(EVENT, pins, [EVENT.make(kind="StdEvent", signaled=False)])
    assert admits(expected(event, "Wait", timeout="zero"), codes.RPC_S_CALLPENDING.value)
    assert not admits(expected(event, "Wait", timeout="zero"), codes.RPC_E_TIMEOUT.value)
    assert {"call_wait_timeout_code", "event_wait_timeout_code"} <= set(PINS)
    assert "wait_timeout_code" not in BY_NAME


def test_the_old_wait_timeout_pin_still_works_for_both_and_is_deprecated() -> None:
    with pytest.warns(DeprecationWarning, match="wait_timeout_code"):
        assert check_pins({"wait_timeout_code": "RPC_E_TIMEOUT"}) == {
            "call_wait_timeout_code": "RPC_E_TIMEOUT",
            "event_wait_timeout_code": "RPC_E_TIMEOUT"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        caps = Capabilities("vendor", "1", frozenset(),
                            {"wait_timeout_code": "RPC_E_TIMEOUT",
                             "event_wait_timeout_code": "RPC_S_CALLPENDING"})
    # A vendor's adapter written against the old name keeps working; a new name it also pins
    # wins over the old one.
    assert dict(caps.pins) == {"call_wait_timeout_code": "RPC_E_TIMEOUT",
                               "event_wait_timeout_code": "RPC_S_CALLPENDING"}
    assert variations.expand_aliases({"new_event_state": "signaled"}) == {
        "new_event_state": "signaled"}


def test_a_retired_choice_is_refused_with_its_reason_and_the_surviving_one_accepted() -> None:
    with pytest.raises(ValueError, match="Begin_ method has returned"):
        check_pins({"cancel_releases_client": "at_once"})
    assert check_pins({"cancel_releases_client": "when_server_signals"}) == {}


def test_a_final_status_decides_the_completion() -> None:
    # RPC-CLI-STATUS-02: RPC_S_OK means the call completed successfully, so the completion
    # that follows is RPC_S_OK too; after a failing status it is not.
    finished = walk(RPC, [*RPC_START,
                          ("AsyncCall", {"notify": "None", "binding": "good",
                                         "hThread": "explicit"}, RPC_OK, {}),
                          ("RpcAsyncCancelCall", {"abort": False}, RPC_OK, {}),
                          ("server_complete", {"reply": 1, "thread": "routine"}, RPC_OK, {})])
    assert admits(expected(finished, "RpcAsyncCompleteCall"), CANCELLED,
                  {"resources_open": True})
    ok = Tracker(RPC, {}, finished.states)
    assert ok.observe("RpcAsyncGetCallStatus", (), RPC_OK, {}).ok
    assert not admits(expected(ok, "RpcAsyncCompleteCall"), CANCELLED, {"resources_open": True})
    assert admits(expected(ok, "RpcAsyncCompleteCall"), RPC_OK,
                  {"reply": 1, "resources_open": True})
    failed = Tracker(RPC, {}, finished.states)
    assert failed.observe("RpcAsyncGetCallStatus", (), CANCELLED, {}).ok
    assert not admits(expected(failed, "RpcAsyncCompleteCall"), RPC_OK,
                      {"reply": 1, "resources_open": True})


# --- citations --------------------------------------------------------------------------------


def _rows_citing(rule: str) -> list[Row]:
    return [r for m in MACHINES.values() for r in m.rows if rule in r.cited_rules()]


def test_each_invalid_handle_row_cites_its_own_functions_rule() -> None:
    by_api = {api: r for r in RPC.rows if r.op == "invalid_handle"
              for api in dict(r.args)["api"]}
    abort = by_api["RpcAsyncAbortCall"].cited_rules()
    complete = by_api["RpcAsyncCompleteCall"].cited_rules()
    assert "RPC-SRV-ABORT-04" in abort and "RPC-SRV-COMPLETE-08" not in abort
    assert "RPC-SRV-COMPLETE-08" in complete


def test_no_row_cites_a_rule_it_does_not_implement() -> None:
    # RPC-INIT-03 is RpcAsyncInitializeHandle on invalid memory, not the use of a handle never
    # initialised.
    assert _rows_citing("RPC-INIT-03") == []
    # Only the later form of a server action completes on another thread (RPC-SRV-COMPLETE-07)
    # or acts after a hand-off (RPC-SRV-EXC-02).
    for rule in ("RPC-SRV-COMPLETE-07", "RPC-SRV-EXC-02"):
        citing = _rows_citing(rule)
        assert citing and all(("thread", frozenset({"later"})) in r.args for r in citing), rule
    # RPC-DECL-01's observable half, the unchanged wire format, is what a synchronous client
    # of the [async] procedure exercises, and only that row cites it.
    assert {r.op for r in _rows_citing("RPC-DECL-01")} == {"sync_call"}
    # RPC-SRV-COMPLETE-03: the client receives the [out] value as the server set it when it
    # completed, not as it was at dispatch.
    tracker = walk(RPC, [*RPC_START,
                         ("AsyncCall", {"notify": "None", "binding": "good",
                                        "hThread": "explicit"}, RPC_OK, {}),
                         ("server_complete", {"reply": 2, "thread": "routine"}, RPC_OK, {})])
    final = expected(tracker, "RpcAsyncCompleteCall")
    assert admits(final, RPC_OK, {"reply": 2, "resources_open": True})
    assert not admits(final, RPC_OK, {"reply": 0, "resources_open": True})
    assert {r.op for r in _rows_citing("RPC-SRV-COMPLETE-03")} == {"server_complete"}


def _points(machine: Machine) -> list[str]:
    return sorted({p for r in machine.rows for o in r.outcomes for p, _ in o.when})


def _pinnings(machine: Machine) -> Iterator[dict[str, str]]:
    """The reference's choices first, then each point flipped alone, then every combination."""
    points = _points(machine)
    base = {p: PINS[p] for p in points}
    yield base
    for point in points:
        for choice in BY_NAME[point].choices:
            if choice != base[point]:
                yield {**base, point: choice}
    for combination in itertools.product(*(BY_NAME[p].choices for p in points)):
        yield dict(zip(points, combination, strict=True))


def _only_excluded_states(machine: Machine, r: Row) -> bool:
    """Every state `r`'s guard covers breaks one of the machine's state invariants (which
    `callgate model check` proves inductive)."""
    mine = [i for i in invariants.ALL
            if i.machine == machine.name and isinstance(i, invariants.StateInvariant)]
    covered = [s for s in machine.all_states()
               if all(machine.view(s)[n] in vs for n, vs in r.guard)]
    return bool(mine) and bool(covered) and all(
        any(not i.holds(StateView(machine, s)) for i in mine) for s in covered)


def _rows_hit(machine: Machine, states: frozenset[State] | set[State]) -> set[int]:
    return {id(find_row(machine, state, operation.name, args))
            for state in states for operation in machine.operations
            for args in operation.all_args()}


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_every_row_is_reachable_under_some_pinning(name: str) -> None:
    machine = MACHINES[name]
    # A pinned graph is part of the unpinned one: what no unpinned state reaches, no pinning
    # does; and what the unpinned graph reaches by mixing choices, one pinning must reach.
    never = {id(r) for r in machine.rows} - _rows_hit(machine, reachable_states(name))
    # A row no run reaches is allowed only where the machine's proved invariants exclude every
    # state it covers: the tables are total over every field combination (totality), so such
    # states need a row, and it asserts nothing an implementation could show.
    excluded = {id(r) for r in machine.rows if _only_excluded_states(machine, r)}
    never -= excluded
    assert never == set(), [(r.op, r.rules, r.note) for r in machine.rows if id(r) in never]
    left = {id(r) for r in machine.rows} - excluded
    for pins in _pinnings(machine):
        left -= _rows_hit(machine, reachable(machine, pins))
        if not left:
            break
    assert left == set(), [(r.op, r.rules) for r in machine.rows if id(r) in left]


def test_the_call_object_is_queried_for_the_asynchronous_interface() -> None:
    # Seed 000, step 3 (COM-CF-07): a client that did not ask CreateCall for the asynchronous
    # interface queries the call object for it.
    assert "AsyncIFoo" in COM.operation("QueryInterface").params[0].domain
    tracker = walk(COM, [("CreateCall", {"riid": "async", "aggregate": True}, S_OK, {})])
    result = step(COM, next(iter(tracker.states)), "QueryInterface", (("iid", "AsyncIFoo"),))
    assert result.kind is Kind.DEFINED and "COM-CF-07" in result.rules
    assert admits(result.allowed, S_OK) and not admits(result.allowed,
                                                       codes.E_NOINTERFACE.value)
    adapter = ReferenceAdapter()
    try:
        session = adapter.open_session([SlotSpec("c", "com_call",
                                                 {"factory": True, "cancellable": True})])
        assert do(session, "c", "CreateCall", riid="async", aggregate=True).code == S_OK
        assert do(session, "c", "QueryInterface", iid="AsyncIFoo").code == S_OK
        session.close()
    finally:
        adapter.shutdown()


def test_cancel_takes_zero_finite_and_infinite_seconds() -> None:
    # COM-CANCEL-08: "the call finished within the timeout" needs a timeout to finish within.
    domain = COM.operation("Cancel").params[0].domain
    assert 0 in domain and 0xFFFFFFFF in domain and len(domain) == 3
    finite = next(v for v in domain if v not in (0, 0xFFFFFFFF))
    signalled = Tracker(COM, {}, walk(COM, COM_SIGNALLED).states)
    for seconds in (finite, 0xFFFFFFFF):
        allowed = expected(signalled, "Cancel", seconds=seconds)
        assert admits(allowed, codes.RPC_E_CALL_COMPLETE.value) and not admits(allowed, S_OK)
    assert admits(expected(signalled, "Cancel", seconds=0), S_OK)  # cancel_after_signal
    pending = Tracker(COM, {}, walk(COM, COM_PENDING).states)
    assert admits(expected(pending, "Cancel", seconds=finite), S_OK)
    assert pending.kind("Cancel", (("seconds", 0xFFFFFFFF),)) is Kind.NOT_OFFERED


# --- counting ---------------------------------------------------------------------------------


def test_every_abandoned_call_is_counted() -> None:
    # No reachable transition abandons a call the server holds without adding one to the count
    # of abandoned calls (a bit cannot count a second one).
    abandoning = 0
    for state, op, _, allowed in transitions(COM):
        before, after = COM.view(state), COM.view(allowed.next_state)
        if before["held"] and not after["held"] and op != "server_signal":
            abandoning += 1
            assert isinstance(after["orphan"], int) and not isinstance(after["orphan"], bool)
            assert int(after["orphan"]) == int(before["orphan"]) + 1, (COM.describe(state), op)
    assert abandoning


def do(session: Session, slot: str, op: str, **args: Value) -> Observation:
    return session.perform(Request(slot, op, args, 20))


def test_the_reference_holds_as_many_abandoned_calls_as_the_model_counts() -> None:
    adapter = ReferenceAdapter()
    try:
        session = adapter.open_session([SlotSpec("c", "com_call",
                                                 {"factory": True, "cancellable": True})])
        tracker = Tracker(COM, PINS, [COM.make(factory=True, cancellable=True)])
        slot = session._slots["c"].state
        assert isinstance(slot, _ComSlot)
        server = slot.server

        def step_both(op: str, **given: Value) -> None:
            observation = do(session, "c", op, **given)
            judgement = tracker.observe(op, args_for(COM, op, **given), observation.code,
                                        observation.outputs)
            assert judgement.ok, (op, observation)
            (state,) = tracker.states
            held = sum(1 for call in server.held_calls() if call.abandoned)
            assert held == COM.view(state)["orphan"], (op, held)

        step_both("CreateCall", riid="async", aggregate=False)
        step_both("Begin_")
        step_both("Cancel", seconds=0)
        step_both("Release")
        step_both("server_signal_late")
        session.close()
    finally:
        adapter.shutdown()


def test_only_rows_over_states_the_invariants_exclude_may_go_unreached() -> None:
    order = MACHINES["rpc_order"]
    reached = next(r for r in order.rows if r.op == "issue_async" and r.kind is Kind.DEFINED)
    assert not _only_excluded_states(order, reached)
    ahead = next(r for r in order.rows if r.op == "issue_async"
                 and ("c0", frozenset({"none"})) in r.guard and r.kind is Kind.NOT_OFFERED)
    assert _only_excluded_states(order, ahead)  # call 1 before call 0: rpc.order_issued_in_order
    # A machine without state invariants excuses nothing.
    assert not any(_only_excluded_states(MACHINES["cowait"], r) for r in MACHINES["cowait"].rows)
