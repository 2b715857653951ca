"""Liveness under fairness: each property is proved on the real tables or fails with its known
finding, and each fails, with a lasso or a path that replays on the tables, on a table broken
for it."""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable

import pytest

from callgate.model import codes
from callgate.model.families import MACHINES
from callgate.model.liveness import (
    PROPERTIES,
    Arc,
    Arena,
    Calls,
    Fairness,
    Finishes,
    Holding,
    ServerEnds,
    check_liveness,
    fair_component,
    fair_cycle,
    iter_lasso,
)
from callgate.model.proofs import CheckResult, Counterexample, Result, TraceStep
from callgate.model.rules import catalogue
from callgate.model.tables.table import not_offered, out, row
from callgate.model.transitions import (
    Actor,
    Exact,
    Field,
    Kind,
    Machine,
    Operation,
    Outcome,
    Returns,
    Row,
    Value,
    step,
)

COM = MACHINES["com_call"]
RPC = MACHINES["rpc_call"]
OK = Exact(codes.S_OK)


# --- helpers: break a table, replay a counterexample ----------------------------------------


def _admits(r: Row, field: str, value: Value) -> bool:
    """The row's guard lets `field` be `value` (a field it does not guard is unconstrained)."""
    return value in dict(r.guard).get(field, frozenset([value]))


def _edit(machine: Machine, pick: Callable[[Row], bool], new: Callable[[Row], Row]) -> Machine:
    assert any(pick(r) for r in machine.rows), "the edit matches no row"
    return dataclasses.replace(machine, rows=tuple(new(r) if pick(r) else r for r in machine.rows))


def _defined(op: str, **guard: Value) -> Callable[[Row], bool]:
    return lambda r: (r.op == op and r.kind is Kind.DEFINED
                      and all(_admits(r, f, v) for f, v in guard.items()))


def _withdrawn(kind: Kind) -> Callable[[Row], Row]:
    return lambda r: dataclasses.replace(r, kind=kind, outcomes=())


def _outcomes(*items: Outcome) -> Callable[[Row], Row]:
    return lambda r: dataclasses.replace(r, outcomes=items)


def _without_update(name: str) -> Callable[[Row], Row]:
    return lambda r: dataclasses.replace(r, outcomes=tuple(
        dataclasses.replace(o, updates=tuple(u for u in o.updates if u[0] != name))
        for o in r.outcomes))


def _result(machine: Machine, name: str) -> CheckResult:
    """One property's result on `machine` (on the real tables, computed once for all tests)."""
    if MACHINES.get(machine.name) is machine:
        return _real(machine.name)[name]
    (found,) = check_liveness(machine, properties=[p for p in PROPERTIES if p.name == name])
    return found


@functools.cache
def _real(machine: str) -> dict[str, CheckResult]:
    return {r.name: r for r in check_liveness(MACHINES[machine])}


def _state(step_fields: tuple[tuple[str, Value], ...]) -> tuple[Value, ...]:
    return tuple(v for _, v in step_fields)


def _replays(machine: Machine, cex: Counterexample) -> None:
    """Every step of the counterexample is an allowed outcome under its pins, the steps chain,
    and a lasso's cycle closes and is fair to the test server."""
    pins = dict(cex.pins)
    ((_, start),) = cex.initial
    assert _state(start) in machine.initial
    here = _state(start)

    def take(st: TraceStep) -> tuple[Value, ...]:
        assert _state(st.state) == here, f"{st.op} does not start where the last step ended"
        allowed = step(machine, here, st.op, st.args, pins).allowed
        nxt = _state(st.next_state)
        assert any(a.next_state == nxt and a.label == st.outcome for a in allowed), st
        return nxt

    for st in cex.steps:
        here = take(st)
    if cex.kind != "lasso":
        return
    assert cex.cycle, "a lasso has a cycle"
    entry = here
    for st in cex.cycle:
        here = take(st)
    assert here == entry, "the cycle closes"
    server = [o for o in machine.operations if o.actor is Actor.SERVER]
    visited = [_state(st.state) for st in cex.cycle]
    taken = {st.op for st in cex.cycle}
    for op in server:
        always = all(any(step(machine, s, op.name, a).kind is Kind.DEFINED
                         for a in op.all_args()) for s in visited)
        assert not always or op.name in taken, f"{op.name} is enabled throughout, never taken"


# --- the real tables ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["com.begun_call_is_finished", "rpc.call_completed_exactly_once",
                                  "rpc.call_notified_exactly_once", "rpc.server_ends_every_call"])
def test_the_real_tables_prove_the_property(name: str) -> None:
    prop = next(p for p in PROPERTIES if p.name == name)
    machine = MACHINES[prop.machine if isinstance(prop, ServerEnds) else prop.calls.machine]
    result = _result(machine, name)
    assert result.result is Result.PROVED, result.detail
    assert result.kind == "liveness" and result.rules == prop.rules


def test_a_release_that_forgets_the_abandoned_call_loses_it() -> None:
    # Issue 15, "Counting": the model once kept abandoned calls in one bit and so lost the
    # second. The real table counts them (proved above); a Release of a pending call that does
    # not record the call the test server still holds is a path that loses it.
    broken = _edit(COM, _defined("Release", phase="PENDING"), _without_update("orphan"))
    result = _result(broken, "com.server_ends_every_call")
    assert result.result is Result.COUNTEREXAMPLE and result.counterexample is not None
    cex = result.counterexample
    assert cex.kind == "path" and "drops a call the test server still holds" in cex.what
    last = cex.steps[-1]
    assert last.op == "Release" and dict(last.state)["held"] is True
    assert dict(last.next_state)["held"] is False and dict(last.next_state)["orphan"] == 0
    _replays(broken, cex)


def test_every_property_cites_catalogued_rules_and_names_real_fields() -> None:
    rules = catalogue()
    for prop in PROPERTIES:
        assert prop.rules and set(prop.rules) <= set(rules), prop.name
        machine = MACHINES[prop.machine if isinstance(prop, ServerEnds) else prop.calls.machine]
        assert _result(machine, prop.name).result is not Result.ERROR


# --- broken tables --------------------------------------------------------------------------


def test_a_begun_call_that_can_never_be_finished_is_a_lasso() -> None:
    broken = _edit(COM, _defined("Finish_", phase="SIGNALED"), _withdrawn(Kind.UNDEFINED))
    result = _result(broken, "com.begun_call_is_finished")
    assert result.result is Result.COUNTEREXAMPLE and result.counterexample is not None
    cex = result.counterexample
    assert cex.kind == "lasso" and "stays in flight forever" in result.detail
    assert all(dict(st.state)["phase"] in ("PENDING", "SIGNALED") for st in cex.cycle)
    assert "Finish_" not in {st.op for st in cex.cycle}
    _replays(broken, cex)
    text = "\n".join(iter_lasso(cex))
    assert "then forever:" in text and "Begin_()" in text


def test_a_server_that_never_signals_keeps_the_call_in_flight() -> None:
    broken = _edit(COM, _defined("server_signal"), _withdrawn(Kind.NOT_OFFERED))
    result = _result(broken, "com.begun_call_is_finished")
    assert result.counterexample is not None and result.counterexample.kind == "lasso"
    assert all(dict(st.state)["phase"] == "PENDING" for st in result.counterexample.cycle)
    _replays(broken, result.counterexample)


def test_a_call_that_leaves_flight_without_finish_is_lost() -> None:
    broken = _edit(COM, _defined("Cancel", phase="PENDING", cancel=False, cancellable=True),
                   _outcomes(out(OK, "cancelled and forgotten", cancel=True, phase="IDLE")))
    result = _result(broken, "com.begun_call_is_finished")
    assert result.counterexample is not None and result.counterexample.kind == "path"
    assert result.counterexample.steps[-1].op == "Cancel" and "lost" in result.detail
    _replays(broken, result.counterexample)


def test_an_rpc_call_never_notified_is_a_lasso() -> None:
    broken = _edit(RPC, lambda r: r.op == "wait_notification" and any(
        o.code.admits(1) for o in r.outcomes), _outcomes(out(Returns(0, "none"), "never notified")))
    result = _result(broken, "rpc.call_notified_exactly_once")
    assert result.result is Result.COUNTEREXAMPLE and result.counterexample is not None
    cex = result.counterexample
    assert cex.kind == "lasso" and "never arrives" in result.detail
    assert {st.op for st in cex.cycle} >= {"wait_notification"}
    assert all(dict(st.state)["notify"] != "None" for st in cex.cycle)
    _replays(broken, cex)
    # completing does not depend on the notification
    assert _result(broken, "rpc.call_completed_exactly_once").result is Result.PROVED


def test_a_second_notification_for_one_call_is_a_path() -> None:
    broken = _edit(RPC, _defined("wait_notification", notify="Event", notes=1),
                   _outcomes(out(Returns(1, "notified"), "notified again",
                                 outputs={"Event": 0})))
    result = _result(broken, "rpc.call_notified_exactly_once")
    assert result.counterexample is not None and result.counterexample.kind == "path"
    assert "second notification" in result.detail
    assert [st.op for st in result.counterexample.steps].count("wait_notification") == 2
    _replays(broken, result.counterexample)


def test_a_notification_before_the_call_completed_is_a_path() -> None:
    broken = _edit(RPC, _defined("wait_notification", notify="Event", phase="PENDING", notes=0),
                   _outcomes(out(Returns(1, "notified"), "too early", notes=1,
                                 outputs={"Event": 0})))
    result = _result(broken, "rpc.call_notified_exactly_once")
    assert result.counterexample is not None and result.counterexample.kind == "path"
    assert "before the call completed" in result.detail
    _replays(broken, result.counterexample)


def test_two_final_completions_of_one_call_are_a_path() -> None:
    broken = _edit(RPC, _defined("RpcAsyncCompleteCall", phase="READY"), _without_update("phase"))
    result = _result(broken, "rpc.call_completed_exactly_once")
    assert result.counterexample is not None and result.counterexample.kind == "path"
    finals = [st for st in result.counterexample.steps if st.op == "RpcAsyncCompleteCall"]
    assert len(finals) >= 2 and "finished the same call again" in result.detail
    _replays(broken, result.counterexample)


def test_a_soft_cancelled_call_the_server_cannot_answer_is_held_forever() -> None:
    broken = RPC
    for op in ("server_complete", "server_abort", "server_raise"):
        broken = _edit(broken, _defined(op, cancel="soft", phase="PENDING", server="held"),
                       _withdrawn(Kind.NOT_OFFERED))
    result = _result(broken, "rpc.server_ends_every_call")
    assert result.counterexample is not None and result.counterexample.kind == "lasso"
    assert all(dict(st.state)["cancel"] == "soft" and dict(st.state)["server"] == "held"
               for st in result.counterexample.cycle)
    _replays(broken, result.counterexample)
    # and the client, who keeps calling RpcAsyncCompleteCall, never gets a final result
    client = _result(broken, "rpc.call_completed_exactly_once")
    assert client.counterexample is not None and client.counterexample.kind == "lasso"


def test_a_condition_naming_a_missing_field_is_an_error_not_a_crash() -> None:
    prop = ServerEnds("com.renamed", ("COM-SRV-05",), "com_call",
                      (Holding("abandoned_calls"),), "a field the table does not have")
    (result,) = check_liveness(COM, properties=[prop])
    assert result.result is Result.ERROR and result.failed
    assert "abandoned_calls" in result.detail and "properties.py" in result.detail


# --- a machine small enough to see every case ------------------------------------------------

TOY_OPS = (Operation("start", Actor.CLIENT, "begin a call"),
           Operation("end", Actor.CLIENT, "finish it"),
           Operation("poll", Actor.CLIENT, "look, change nothing"),
           Operation("serve", Actor.SERVER, "the server's answer"))


def _toy(end_defined: bool, serve: bool) -> Machine:
    rows = [
        row("start", ("COM-BEGIN-01",), out(OK, "started", phase="BUSY", ready=False),
            state={"phase": "IDLE"}),
        not_offered("start", ("COM-BEGIN-02",), "busy", state={"phase": ("BUSY",)}),
        not_offered("end", ("COM-FIN-02",), "idle", state={"phase": "IDLE"}),
        not_offered("poll", ("COM-WAIT-05",), "idle", state={"phase": "IDLE"}),
        row("poll", ("COM-WAIT-05",), out(OK, "looked"), state={"phase": "BUSY"}),
        not_offered("serve", ("COM-SRV-05",), "nothing held",
                    state={"phase": "IDLE"}),
    ]
    rows.append(row("end", ("COM-FIN-01",), out(OK, "ended", phase="IDLE"),
                    state={"phase": "BUSY", "ready": True}) if end_defined else
                not_offered("end", ("COM-FIN-01",), "never", state={"phase": "BUSY",
                                                                    "ready": True}))
    rows.append(not_offered("end", ("COM-FIN-03",), "not ready", state={"phase": "BUSY",
                                                                          "ready": False}))
    rows.append(row("serve", ("COM-SRV-05",), out(OK, "served", ready=True),
                    state={"phase": "BUSY", "ready": False}) if serve else
                not_offered("serve", ("COM-SRV-05",), "never", state={"phase": "BUSY",
                                                                      "ready": False}))
    rows.append(not_offered("serve", ("COM-SRV-05",), "served already",
                            state={"phase": "BUSY", "ready": True}))
    return Machine("toy", "toy", "toy", "", (Field("phase", ("IDLE", "BUSY"), ""),
                                              Field("ready", (False, True), "")),
                   TOY_OPS, tuple(rows), (("IDLE", False),))


TOY_PROP = Finishes("toy.finishes", ("COM-FIN-01",),
                    Calls("toy", (("phase", ("BUSY",)),), ("end",)), "the toy's calls end")


def test_the_toy_is_proved_when_the_server_serves_and_the_client_ends() -> None:
    (result,) = check_liveness(_toy(True, True), properties=[TOY_PROP])
    assert result.result is Result.PROVED, result.detail


def test_polling_forever_is_unfair_only_while_the_server_could_act() -> None:
    (served,) = check_liveness(_toy(True, True), properties=[TOY_PROP])
    assert served.result is Result.PROVED
    (unserved,) = check_liveness(_toy(True, False), properties=[TOY_PROP])
    assert unserved.counterexample is not None and unserved.counterexample.kind == "lasso"
    assert [st.op for st in unserved.counterexample.cycle] == ["poll"]


def test_a_state_in_flight_where_nothing_is_defined_is_a_deadlock() -> None:
    toy = _toy(False, True)
    toy = _edit(toy, lambda r: r.op == "poll", _withdrawn(Kind.NOT_OFFERED))
    (result,) = check_liveness(toy, properties=[TOY_PROP])
    assert result.counterexample is not None and result.counterexample.kind == "deadlock"
    assert [st.op for st in result.counterexample.steps] == ["start", "serve"]
    assert "nothing is DEFINED" in "\n".join(iter_lasso(result.counterexample))


# --- the fair-cycle search itself -------------------------------------------------------------


def _arcs(*edges: tuple[str, str, str, bool]) -> dict[object, list[Arc]]:
    found: dict[object, list[Arc]] = {}
    for source, target, op, stutter in edges:
        found.setdefault(source, []).append(Arc(source, target, op, (), stutter))
        found.setdefault(target, [])
    return found


def _arena(enabled: dict[object, set[str]], moving: set[tuple[object, str]] = frozenset()  # type: ignore[assignment]
           ) -> Arena:
    return Arena(lambda n: frozenset(enabled.get(n, set())),
                 lambda n, action: (n, action[0]) in moving)


def test_weak_fairness_rules_out_a_cycle_where_the_server_is_always_enabled() -> None:
    arcs = _arcs(("a", "b", "wait", False), ("b", "a", "wait", False))
    fairness = Fairness(frozenset({"serve"}), frozenset())
    always = _arena({"a": {"wait", "serve"}, "b": {"wait", "serve"}})
    assert fair_component(arcs, always, fairness) is None
    sometimes = _arena({"a": {"wait", "serve"}, "b": {"wait"}})
    found = fair_component(arcs, sometimes, fairness)
    assert found is not None and found.nodes == {"a", "b"}


def test_strong_fairness_keeps_a_cycle_away_from_states_where_the_try_is_enabled() -> None:
    arcs = _arcs(("a", "b", "wait", False), ("b", "a", "wait", False), ("b", "b", "look", True))
    fairness = Fairness(frozenset(), frozenset({"finish"}))
    found = fair_component(arcs, _arena({"a": {"wait", "finish"}, "b": {"wait", "look"}}),
                           fairness)
    assert found is not None and found.nodes == {"b"}
    assert fair_component(arcs, _arena({"a": {"finish"}, "b": {"finish"}}), fairness) is None


def test_progress_rules_out_answering_not_yet_forever() -> None:
    arcs = _arcs(("a", "a", "poll", True))
    fairness = Fairness(frozenset(), frozenset())
    assert fair_component(arcs, _arena({"a": {"poll"}}, {("a", "poll")}), fairness) is None
    assert fair_component(arcs, _arena({"a": {"poll"}}), fairness) is not None


def test_a_fair_cycle_takes_what_fairness_demands_and_closes() -> None:
    arcs = _arcs(("a", "b", "wait", False), ("b", "c", "wait", False), ("c", "a", "wait", False),
                 ("b", "b", "serve", True), ("a", "a", "look", True))
    fairness = Fairness(frozenset({"serve"}), frozenset())
    arena = _arena({n: {"wait", "serve"} for n in "abc"})
    found = fair_component(arcs, arena, fairness)
    assert found is not None
    cycle = fair_cycle(found, arena, fairness, "a")
    assert cycle[0].source == "a" and cycle[-1].target == "a"
    assert all(x.target == y.source for x, y in itertools.pairwise(cycle))
    assert "serve" in {a.op for a in cycle} and "look" not in {a.op for a in cycle}
