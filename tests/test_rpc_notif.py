"""Section 2.18, RPC server notifications: the rpc_notif machine, its obligations (each shown
failing on a broken table), the reference implementation and its seeded faults."""

from __future__ import annotations

from dataclasses import replace

import pytest

from callgate.conformance.cases import sequences
from callgate.conformance.gate import run_cases
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.protocol.adapter import Request, SlotSpec
from callgate.conformance.results import Verdict
from callgate.model import codes
from callgate.model.families import UNMODELLED
from callgate.model.obligations import ALL, check_obligations, obligations_for
from callgate.model.proofs.results import Result
from callgate.model.rules import catalogue
from callgate.model.tables import rpc_notif
from callgate.model.tables.table import out, row
from callgate.model.transitions import Const, Exact, Kind, Machine, Outcome, Returns, Row

MACHINE = rpc_notif.MACHINE
FEATURES = frozenset({"rpc.notif", "rpc.notif.disconnect"})


def _failed(machine: Machine, only: str = "") -> set[str]:
    """The obligations of the machine (or only the one named) that `machine` breaks."""
    chosen = [o for o in ALL if o.machine == MACHINE.name and (not only or o.id == only)]
    results = check_obligations({machine.name: machine}, chosen, {})
    return {r.name.removeprefix("obligation[").removesuffix("]") for r in results
            if r.result is not Result.PROVED}


def _edit(op: str, pick: object, change: object) -> Machine:
    """The machine with each row of `op` that `pick` selects replaced by `change(row)`."""
    rows = tuple(change(r) if r.op == op and pick(r) else r  # type: ignore[operator]
                 for r in MACHINE.rows)
    return replace(MACHINE, rows=rows)


def _label(r: Row, label: str) -> bool:
    return any(o.label == label for o in r.outcomes)


def _arg(r: Row, name: str) -> frozenset[object]:
    return dict(r.args).get(name, frozenset())


def _state(r: Row, name: str) -> frozenset[object]:
    return dict(r.guard).get(name, frozenset())


def _outcomes(r: Row, keep: object) -> Row:
    return replace(r, outcomes=tuple(o for o in r.outcomes if keep(o)))  # type: ignore[operator]


def _plus(r: Row, extra: Outcome) -> Row:
    return replace(r, outcomes=(*r.outcomes, extra))


def test_the_tables_meet_every_obligation() -> None:
    assert _failed(MACHINE) == set()


def _split_info() -> Machine:
    """Each successful subscribe row split by `info`: kept as it is, reused subscribing
    nothing."""
    rows: list[Row] = []
    for r in MACHINE.rows:
        if r.op == "RpcServerSubscribeForNotification" and _label(r, "subscribed"):
            args = tuple(a for a in r.args if a[0] != "info")
            rows.append(replace(r, args=(*args, ("info", frozenset({"kept"})))))
            rows.append(replace(r, args=(*args, ("info", frozenset({"reused"}))),
                                outcomes=tuple(replace(o, updates=o.updates[:1])
                                               for o in r.outcomes)))
        else:
            rows.append(r)
    return replace(MACHINE, rows=tuple(rows))


BROKEN = {
    # a NULL binding on the dispatch thread refused
    "rpc_notif.subscribe": lambda: _edit(
        "RpcServerSubscribeForNotification",
        lambda r: _label(r, "subscribed") and _arg(r, "binding") == {"NULL"},
        lambda r: replace(r, outcomes=(out(Exact(codes.RPC_S_INVALID_ARG), "refused"),))),
    # RpcNotificationTypeNone accepted
    "rpc_notif.subscribe_checks": lambda: _edit(
        "RpcServerSubscribeForNotification", lambda r: _label(r, "RpcNotificationTypeNone"),
        lambda r: replace(r, outcomes=(out(Exact(codes.RPC_S_OK), "accepted"),))),
    # a reused NotificationInfo loses the subscription: that success subscribes nothing
    "rpc_notif.info_copied": lambda: _split_info(),
    # a new call starts subscribed to client disconnects (a subscription carried over)
    "rpc_notif.one_call": lambda: _edit(
        "notif_call", lambda r: r.kind is Kind.DEFINED,
        lambda r: replace(r, outcomes=tuple(
            replace(o, updates=tuple((n, Const("on") if n == "disc" else v)
                                     for n, v in o.updates))
            for o in r.outcomes))),
    # a disconnect notification nobody subscribed to (nothing owed, yet one arrives)
    "rpc_notif.delivery": lambda: _edit(
        "server_wait_notification",
        lambda r: _arg(r, "timeout") == {"finite"} and len(r.outcomes) == 1
        and isinstance(r.outcomes[0].code, Returns) and r.outcomes[0].code.value == 0,
        lambda r: _plus(r, out(Returns(1), "spurious", outputs={"kind": "ClientDisconnect",
                                                                 "Event": 3}))),
    # an owed disconnect notification that may never come
    "rpc_notif.delivered": lambda: _edit(
        "server_wait_notification",
        lambda r: _arg(r, "timeout") == {"finite"} and _state(r, "disconnected") == {True},
        lambda r: _plus(r, out(Returns(0), "lost"))),
    # D-20 read one way only: the cancel notification always comes
    "rpc_notif.cancel_may_be_absent": lambda: _edit(
        "server_wait_notification", lambda r: _arg(r, "timeout") == {"finite"},
        lambda r: _outcomes(r, lambda o: o.label != "the cancel notification did not reach "
                                                   "the subscriber")),
    # a received notification reported as not queued
    "rpc_notif.unsubscribe": lambda: _edit(
        "RpcServerUnsubscribeForNotification",
        lambda r: _label(r, "the one notification was queued and received"),
        lambda r: replace(r, outcomes=tuple(replace(o, outputs=(("queued", 0),))
                                            for o in r.outcomes))),
    # completing while still subscribed allowed
    "rpc_notif.complete_subscribed": lambda: _edit(
        "server_complete", lambda r: r.kind is Kind.UNDEFINED and "disc" in dict(r.guard)
        and _state(r, "disc") == {"on", "got"},
        lambda r: row("server_complete", r.rules, out(Exact(codes.RPC_S_OK), "completed",
                                                      call="done"),
                      state={name: tuple(v) for name, v in r.guard})),
    # completing a clean call may fail while the client is connected
    "rpc_notif.complete_clean": lambda: _edit(
        "server_complete", lambda r: _label(r, "completed")
        and _state(r, "disconnected") == {False},
        lambda r: _plus(r, out(Exact(codes.RPC_S_CANNOT_SUPPORT), "refused", call="done"))),
}


@pytest.mark.parametrize("obligation", sorted(BROKEN))
def test_each_obligation_catches_its_planted_error(obligation: str) -> None:
    assert _failed(BROKEN[obligation](), obligation) == {obligation}


def test_every_section_2_18_rule_is_in_scope_and_cited() -> None:
    rules = [r for r in catalogue().values() if r.section == "2.18"]
    assert len(rules) == 9 and all(r.in_scope for r in rules)
    cited = MACHINE.cited_rules()
    for rule in rules:
        if rule.id == "RPC-SRV-NOTIF-08":
            assert rule.id in UNMODELLED
            continue
        assert rule.id in cited, rule.id
        assert rule.level.value != "MUST" or obligations_for(rule.id), rule.id


def _run(faults: tuple[str, ...] = ()) -> list[Verdict]:
    adapter = ReferenceAdapter(faults=faults)
    caps = replace(adapter.capabilities(), features=FEATURES)
    plan = sequences.plan(caps)
    cases = [c for c in plan.cases if c.slots and c.slots[0].machine == "rpc_notif"]
    assert cases
    try:
        return [r.verdict for r in run_cases(adapter, cases)]
    finally:
        adapter.shutdown()


def test_the_reference_implementation_passes() -> None:
    assert set(_run()) == {Verdict.PASS}


# Three of the section's eight faults, one per kind of mistake (a copy not made, a limit not
# kept, a count wrong); `callgate mutants --only notif_...` runs all eight through the gate.
@pytest.mark.parametrize("fault", ["notif_info_not_copied", "notif_repeats", "notif_queued_zero"])
def test_each_seeded_fault_is_caught(fault: str) -> None:
    assert Verdict.FAIL in _run((fault,))


def _notifications(wait_between: bool) -> list[tuple[int, dict[str, object]]]:
    """Subscribe to both kinds (Callback), cancel, disconnect, and wait twice; with
    `wait_between` the server also waits once between the cancel and the disconnect."""

    adapter = ReferenceAdapter()
    session = adapter.open_session([SlotSpec("n0", "rpc_notif", {})])

    def do(op: str, **args: str) -> tuple[int, dict[str, object]]:
        seen = session.perform(Request("n0", op, args, 500))
        return seen.code, dict(seen.outputs)
    try:
        assert do("notif_call")[0] == codes.RPC_S_OK.value
        assert do("RpcServerSubscribeForNotification", kinds="both", type="Callback",
                  binding="explicit", info="kept")[0] == codes.RPC_S_OK.value
        seen = []
        do("RpcAsyncCancelCall")
        if wait_between:
            seen.append(do("server_wait_notification", timeout="finite"))
        do("client_disconnect")
        while len(seen) < 2:
            seen.append(do("server_wait_notification", timeout="finite"))
        return seen
    finally:
        session.close()
        adapter.shutdown()


def test_the_reference_delivers_a_disconnect_ahead_of_a_cancel_still_queued() -> None:
    """When two notifications are queued the documentation leaves their order open
    (RPC-SRV-NOTIF-07); the reference delivers the disconnect first, and the cancel first when
    the server waited between the two, so the harness reaches both orders."""
    disconnect = (1, {"kind": "ClientDisconnect", "Event": 3})
    cancel = (1, {"kind": "CallCancel", "Event": 4})
    assert _notifications(wait_between=False) == [disconnect, cancel]
    assert _notifications(wait_between=True) == [cancel, disconnect]
