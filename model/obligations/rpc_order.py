"""Dispatch order's rule obligations (spec/DOMAIN.md section 2.17, and RPC-MISC-01 of 2.20).

The observer keeps, from the operations and their results only, what the client did on the
binding and what the server reported (`OrderSeen`): whether RPC_C_OPT_BINDING_NONCAUSAL was last
set TRUE, the asynchronous calls issued (in issue order), the calls the server reported dispatched
(in the order it reported them) and the calls completed. Calls are issued on one binding from one
thread, the situation of RPC-ORDER-01.

Three of these obligations span two calls (cross-object): `order.causal_dispatch` (call 1 is not
dispatched before call 0), `order.finish_any_order` (one call completes while the other is still
held, and gets its own reply), and `order.sync_after_async` (a synchronous call reaches the server
after the asynchronous calls issued before it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from callgate.model import codes
from callgate.model.obligations.core import After, ArgMap, Now, Obligation, Observer, Whenever, only
from callgate.model.transitions import Allowed

ORDER = "rpc_order"


@dataclass(frozen=True)
class OrderSeen:
    """What the client did on the binding and what the server reported."""

    noncausal: bool = False
    issued: tuple[int, ...] = ()
    dispatched: tuple[int, ...] = ()
    completed: frozenset[int] = frozenset()

    @property
    def waiting(self) -> tuple[int, ...]:
        """The issued calls not yet reported dispatched, in issue order."""
        return tuple(c for c in self.issued if c not in self.dispatched)

    @property
    def held(self) -> tuple[int, ...]:
        """The calls reported dispatched and not completed."""
        return tuple(c for c in self.dispatched if c not in self.completed)

    def __str__(self) -> str:
        return (f"noncausal={self.noncausal} issued={self.issued} dispatched={self.dispatched} "
                f"completed={sorted(self.completed)}")


def observe(seen: OrderSeen, op: str, args: ArgMap, outcome: Allowed) -> OrderSeen:
    if not only(outcome.code, codes.RPC_S_OK):
        return seen
    if op == "RpcBindingSetOption":
        return replace(seen, noncausal=bool(args["value"]))
    if op == "issue_async":
        return replace(seen, issued=(*seen.issued, len(seen.issued)))
    if op == "server_next_dispatch":
        call = dict(outcome.outputs).get("call")
        if isinstance(call, int) and not isinstance(call, bool):
            return replace(seen, dispatched=(*seen.dispatched, call))
    if op == "server_complete":
        call = args["call"]
        assert isinstance(call, int)
        return replace(seen, completed=seen.completed | {call})
    return seen


OBSERVER: Observer[Any] = Observer(ORDER, OrderSeen(), observe)

N = Now[OrderSeen]
R = After[OrderSeen]


def earliest_waiting(n: N, _a: ArgMap, r: R) -> bool:
    return only(r.code, codes.RPC_S_OK) and r.output("call") == n.seen.waiting[0]


def a_waiting_call(n: N, _a: ArgMap, r: R) -> bool:
    return only(r.code, codes.RPC_S_OK) and r.output("call") in n.seen.waiting


def dispatches(call: int) -> Any:
    def check(_n: N, _a: ArgMap, r: R) -> bool:
        return r.output("call") == call
    return check


def own_reply(_n: N, a: ArgMap, r: R) -> bool:
    return only(r.code, codes.RPC_S_OK) and r.output("reply") == a["call"]


def all_issued_before(n: N, _a: ArgMap, r: R) -> bool:
    return only(r.code, codes.RPC_S_OK) and r.output("before") == len(n.seen.issued)


def at_least_dispatched_before(n: N, _a: ArgMap, r: R) -> bool:
    before = r.output("before")
    return (only(r.code, codes.RPC_S_OK) and isinstance(before, int)
            and len(n.seen.dispatched) <= before <= len(n.seen.issued))


def before_is(count: Any) -> Any:
    def check(n: N, _a: ArgMap, r: R) -> bool:
        return bool(r.output("before") == count(n))
    return check


def unchanged(n: N, _a: ArgMap, r: R) -> bool:
    return r.next.state == n.state


OBLIGATIONS: tuple[Obligation, ...] = (
    Obligation(
        "order.causal_dispatch", ("RPC-ORDER-01",),
        "On a binding without RPC_C_OPT_BINDING_NONCAUSAL, asynchronous calls issued from one "
        "thread are dispatched in the order they were issued: wherever a call waits, the next "
        "call the server is entered for is the earliest issued call not yet dispatched, even "
        "while an earlier call is still held (execution may overlap).",
        ORDER, Whenever(("server_next_dispatch",),
                        lambda n, a: not n.seen.noncausal and bool(n.seen.waiting),
                        earliest_waiting, defined=True)),
    Obligation(
        "order.finish_any_order", ("RPC-ORDER-01",),
        "Execution may finish in a different order: the server may complete any call it holds, "
        "whatever the other call's state, and the client gets that call's own reply.",
        ORDER, Whenever(("server_complete",), lambda n, a: a["call"] in n.seen.held,
                        own_reply, defined=True)),
    Obligation(
        "order.sync_after_async", ("RPC-ORDER-03",),
        "On a causal binding, a synchronous call made after asynchronous calls reaches the "
        "server after all of them (it is not held back by one still running): the server had "
        "been entered for every asynchronous call issued before it.",
        ORDER, Whenever(("sync_call",), lambda n, a: not n.seen.noncausal,
                        all_issued_before, defined=True)),
    Obligation(
        "order.noncausal_option", ("RPC-ORDER-04",),
        "RpcBindingSetOption(h, RPC_C_OPT_BINDING_NONCAUSAL, TRUE or FALSE) before any call is "
        "made on the binding succeeds (RPC_S_OK).",
        ORDER, Whenever(("RpcBindingSetOption",), lambda n, a: not n.seen.issued,
                        lambda n, a, r: only(r.code, codes.RPC_S_OK), defined=True)),
    Obligation(
        "order.noncausal_unordered", ("RPC-ORDER-04",),
        "RPC_C_OPT_BINDING_NONCAUSAL TRUE turns the serialisation off: any waiting call may be "
        "dispatched next: each waiting call is an allowed result.",
        ORDER, Whenever(("server_next_dispatch",),
                        lambda n, a: n.seen.noncausal and len(n.seen.waiting) == 2,
                        a_waiting_call, defined=True, some=(dispatches(0), dispatches(1)))),
    Obligation(
        "order.noncausal_sync", ("RPC-ORDER-03", "RPC-ORDER-04"),
        "On a non-causal binding a synchronous call reaches the server after the asynchronous "
        "calls already seen dispatched, and no later than the last one issued; it may overtake "
        "the calls still waiting (both ends of that range are allowed results).",
        ORDER, Whenever(("sync_call",), lambda n, a: n.seen.noncausal,
                        at_least_dispatched_before, defined=True,
                        some=(before_is(lambda n: len(n.seen.dispatched)),
                              before_is(lambda n: len(n.seen.issued))))),
    Obligation(
        "order.register_info", ("RPC-MISC-01",),
        "RpcAsyncRegisterInfo, obsolete but declared by the headers and exported, can be "
        "called on the binding in any state and changes nothing on it.",
        ORDER, Whenever(("RpcAsyncRegisterInfo",), lambda n, a: True, unchanged, defined=True)),
)
