"""Dispatch order of asynchronous RPC calls on one binding: spec/DOMAIN.md section 2.17.

Data only; hold next to the section. The `rpc_order` machine is one binding handle to the test
server and one client thread that issues every call on it (same binding, same thread, same
security level: the situation of RPC-ORDER-01). The client issues up to two asynchronous calls of
`[async] TestProc`, call 0 first and then call 1, each with its own RPC_ASYNC_STATE (notification
by event). The test server's manager routine records, in order, every call it is entered for and
holds each asynchronous call until the harness completes it.

Each call's status: `none` (not issued), `issued` (the client stub returned; the harness has not
yet seen the server's routine entered for it), `running` (the harness saw it dispatched; the
server holds it), `done` (completed, and the client's RpcAsyncCompleteCall returned its reply).

* `RpcBindingSetOption(h, RPC_C_OPT_BINDING_NONCAUSAL, value)` before any call: RPC-ORDER-04.
* `server_next_dispatch`: the next asynchronous call the server's routine was entered for that
  the harness has not yet seen. On a causal binding it is the earliest issued call not yet
  dispatched (RPC-ORDER-01); on a non-causal one any call still waiting (RPC-ORDER-04).
* `server_complete(call)`: the server completes one held call; the calls may finish in any order
  (RPC-ORDER-01: "their execution may still overlap or finish in a different order").
* `sync_call`: a synchronous TestProc on the same binding from the same thread (RPC-ORDER-03).
  Output `before`: how many of this binding's asynchronous calls the server had been entered for
  when the synchronous call reached it.

Reading of "may overlap": the model takes the page's description as the runtime's behaviour the
harness relies on: a call is dispatched while an earlier one is still held by the server, and a
synchronous call runs while an asynchronous one is held. A runtime that serialises execution
would block there, and the harness reports an error (a timeout), never a pass.

`RpcAsyncRegisterInfo` (RPC-MISC-01) is obsolete and documents no result (D-15): the model asks
only that it returns and changes nothing.

Not modelled: calls from different threads (RPC-ORDER-02, a MAY: they run concurrently), security
levels, and changing the option while calls are issued (the page says nothing about it).
"""

from __future__ import annotations

import itertools

from callgate.model import codes
from callgate.model.codes import Family
from callgate.model.tables.table import not_offered, out, row, undefined
from callgate.model.transitions import Actor, Anything, Arg, Exact, Field, Machine, Operation, Param, Value

OK = Exact(codes.RPC_S_OK)
STATUSES = ("none", "issued", "running", "done")
CALLS = (0, 1)
FIELD = {0: "c0", 1: "c1"}


def _dispatch_rows() -> list:  # type: ignore[type-arg]
    """server_next_dispatch in every combination of the two calls' statuses."""
    rows = []
    for noncausal, s0, s1 in itertools.product((False, True), STATUSES, STATUSES):
        state: dict[str, Value] = {"noncausal": noncausal, "c0": s0, "c1": s1}
        waiting = [i for i, s in zip(CALLS, (s0, s1), strict=True) if s == "issued"]
        if not waiting:
            rows.append(not_offered("server_next_dispatch", ("RPC-ORDER-01",),
                                    "no issued call waits for dispatch: the server would wait "
                                    "for nothing", state=state))
            continue
        if noncausal:
            outcomes = [out(OK, f"call {i} dispatched", outputs={"call": i},
                            also={FIELD[i]: "running"}, rules=("RPC-ORDER-04",))
                        for i in waiting]
            rows.append(row("server_next_dispatch", ("RPC-ORDER-04",), *outcomes, state=state,
                            note="serialisation off: any waiting call may come first"))
        else:
            first = waiting[0]
            rows.append(row("server_next_dispatch", ("RPC-ORDER-01",),
                            out(OK, f"call {first} dispatched (issued first)",
                                outputs={"call": first}, also={FIELD[first]: "running"}),
                            state=state))
    return rows


def _sync_rows() -> list:  # type: ignore[type-arg]
    """sync_call: the synchronous call reaches the server after every asynchronous call issued
    before it (causal), or after at least those already seen dispatched (non-causal)."""
    rows = []
    for noncausal, s0, s1 in itertools.product((False, True), STATUSES, STATUSES):
        if s0 == "none" and s1 != "none":
            continue  # call 1 is never issued before call 0
        state: dict[str, Value] = {"noncausal": noncausal, "c0": s0, "c1": s1}
        issued = sum(s != "none" for s in (s0, s1))
        seen = sum(s in ("running", "done") for s in (s0, s1))
        if noncausal:
            outcomes = [out(OK, f"{k} asynchronous calls dispatched before it",
                            outputs={"before": k}) for k in range(seen, issued + 1)]
            rows.append(row("sync_call", ("RPC-ORDER-03", "RPC-ORDER-04"), *outcomes,
                            state=state))
        else:
            rows.append(row("sync_call", ("RPC-ORDER-03", "RPC-ORDER-01"),
                            out(OK, "every earlier asynchronous call dispatched before it",
                                outputs={"before": issued}),
                            state=state))
    rows.append(not_offered("sync_call", ("RPC-ORDER-01",),
                            "call 1 is never issued before call 0",
                            state={"c0": "none", "c1": ("issued", "running", "done")}))
    return rows


def _issue_rows() -> list:  # type: ignore[type-arg]
    return [
        row("issue_async", ("RPC-ORDER-01",), out(OK, "call 0 issued", c0="issued"),
            state={"c0": "none", "c1": "none"}),
        row("issue_async", ("RPC-ORDER-01",), out(OK, "call 1 issued", c1="issued"),
            state={"c0": ("issued", "running", "done"), "c1": "none"}),
        not_offered("issue_async", ("RPC-ORDER-01",), "two calls are all the model tracks",
                    state={"c0": ("issued", "running", "done"),
                           "c1": ("issued", "running", "done")}),
        not_offered("issue_async", ("RPC-ORDER-01",), "call 1 is never issued before call 0",
                    state={"c0": "none", "c1": ("issued", "running", "done")}),
    ]


def _complete_rows() -> list:  # type: ignore[type-arg]
    rows = []
    for i in CALLS:
        rows.append(row("server_complete", ("RPC-ORDER-01",),
                        out(OK, f"call {i} completed", outputs={"reply": i},
                            also={FIELD[i]: "done"}),
                        state={FIELD[i]: "running"}, args={"call": i},
                        note="the calls may finish in any order"))
        rows.append(not_offered("server_complete", ("RPC-ORDER-01",),
                                f"the server does not hold call {i}",
                                state={FIELD[i]: ("none", "issued", "done")}, args={"call": i}))
    return rows


MACHINE = Machine(
    name="rpc_order",
    family="rpc",
    title="Dispatch order of asynchronous RPC calls on one binding (RPC_C_OPT_BINDING_NONCAUSAL)",
    doc=__doc__ or "",
    fields=(
        Field("noncausal", (False, True), "RPC_C_OPT_BINDING_NONCAUSAL is TRUE on the binding"),
        Field("c0", STATUSES, "call 0 (issued first)"),
        Field("c1", STATUSES, "call 1 (issued second)"),
    ),
    operations=(
        Operation("RpcBindingSetOption", Actor.CLIENT,
                  "RpcBindingSetOption(h, RPC_C_OPT_BINDING_NONCAUSAL, value) on the binding.",
                  (Param("value", (True, False), "the option value (TRUE or FALSE)"),),
                  capability="rpc.order"),
        Operation("issue_async", Actor.CLIENT,
                  "The client thread issues the next asynchronous TestProc on the binding (call "
                  "0, then call 1), each with its own RPC_ASYNC_STATE; the code is the stub's "
                  "(RPC_S_OK when it returned).",
                  capability="rpc.order"),
        Operation("server_next_dispatch", Actor.SERVER,
                  "The test server reports the next asynchronous call (output `call`) its "
                  "manager routine was entered for that it has not reported yet, waiting a "
                  "finite time for it.",
                  capability="rpc.order"),
        Operation("server_complete", Actor.SERVER,
                  "The test server completes held call `call` (RpcAsyncCompleteCall with the "
                  "call's number as its reply); the client thread waits for the call's event and "
                  "calls RpcAsyncCompleteCall; output `reply` is what it got.",
                  (Param("call", CALLS, "which call"),), capability="rpc.order"),
        Operation("RpcAsyncRegisterInfo", Actor.CLIENT,
                  "RpcAsyncRegisterInfo(pMsg) with an RPC_MESSAGE for TestProc on the binding "
                  "(obsolete, RPC-MISC-01); the code is its RPC_STATUS, or 0 if the "
                  "implementation's declaration returns nothing.",
                  capability="rpc.register_info"),
        Operation("sync_call", Actor.CLIENT,
                  "The client thread makes a synchronous TestProc on the binding; output `before` "
                  "is how many asynchronous calls of the binding the server had been entered for "
                  "when the synchronous call reached it.",
                  capability="rpc.order"),
    ),
    rows=(
        row("RpcBindingSetOption", ("RPC-ORDER-04",),
            out(OK, "option set", noncausal=Arg("value")),
            state={"c0": "none", "c1": "none"}),
        undefined("RpcBindingSetOption", ("RPC-ORDER-04",),
                  "the page does not say what the option does to calls already issued",
                  state={"c0": ("issued", "running", "done")}),
        not_offered("RpcBindingSetOption", ("RPC-ORDER-04",),
                    "call 1 is never issued before call 0",
                    state={"c0": "none", "c1": ("issued", "running", "done")}),
        *_issue_rows(),
        row("RpcAsyncRegisterInfo", ("RPC-MISC-01",),
            out(Anything("obsolete: the page says it returns nothing, the headers declare "
                         "RPC_STATUS (D-15), and no value is documented"), "returned"),
            note="the call returns and leaves the binding's calls as they were"),
        *_dispatch_rows(),
        *_complete_rows(),
        *_sync_rows(),
    ),
    initial=((False, "none", "none"),),
    codes=Family.RPC_STATUS,
    # Nothing in flight: every issued call has been dispatched and completed.
    quiescent=(("c0", ("none", "done")), ("c1", ("none", "done"))),
    diagram_fields=("noncausal", "c0", "c1"),
    slot_prefix="b",
    timed=(("server_next_dispatch", None), ("sync_call", None)),
)
