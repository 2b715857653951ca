"""The model's named invariants: each cites rules, and has a Python predicate and a Z3 formula.

A *state invariant* is a predicate on one machine's state; a *transition invariant* is a predicate
on one step (state, operation, arguments, allowed outcome, next state). Both forms of each
invariant are written here, next to each other, so a reviewer can hold them against DOMAIN.md;
`callgate.model.proofs.check_agreement` proves they agree on every reachable state and step, and
`callgate.model.proofs.prove_invariants` proves the Z3 form inductive over the tables.

Semantics shared by both forms: an outcome whose code is a set (`AnyFailure`, `Anything`, ...)
satisfies a transition invariant only if every code it admits does; a variation point that the
outcome does not name may take any choice. Invariants marked `auxiliary` are there to make the
others inductive (they are true, cited and checked like the rest; they say something narrower).

Enabledness ("the client can still finish") reads the table on both sides: `StateView.enabled`
asks `step()`, `callgate.model.symbolic.enabled` reads the same rows into Z3, with one shared test on codes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import z3

from callgate.model import codes
from callgate.model.symbolic import CodeTest, SymState, SymStep, enabled
from callgate.model.transitions import (
    Allowed,
    AnyFailure,
    AnySuccess,
    Anything,
    Args,
    CodeSpec,
    Composition,
    Exact,
    Kind,
    Machine,
    Returns,
    State,
    Value,
    step,
)

Implies, And, Or, Not = z3.Implies, z3.And, z3.Or, z3.Not

# --- code tests (the same Python test serves both forms where a spec is examined) ------------


def may_fail(spec: CodeSpec) -> bool:
    """Some code the spec admits is a failure."""
    if isinstance(spec, Exact):
        return spec.code.is_failure
    return isinstance(spec, (AnyFailure, Anything))


def may_succeed(spec: CodeSpec) -> bool:
    """Some value the spec admits is not a failure (plain return values count as success)."""
    if isinstance(spec, Exact):
        return not spec.code.is_failure
    return isinstance(spec, (AnySuccess, Anything, Returns))


def may_return(spec: CodeSpec, value: int) -> bool:
    """The spec admits this value."""
    return spec.admits(value)


def only(spec: CodeSpec, *values: int) -> bool:
    """Every value the spec admits is one of `values`."""
    if isinstance(spec, Exact):
        return spec.code.value in values
    if isinstance(spec, Returns):
        return spec.value in values
    return False


def not_only_pending(spec: CodeSpec) -> bool:
    """The spec admits a code other than RPC_S_ASYNC_CALL_PENDING: a final completion."""
    return not only(spec, codes.RPC_S_ASYNC_CALL_PENDING.value)


def notifies(spec: CodeSpec) -> bool:
    """wait_notification returned 1: a notification arrived."""
    return may_return(spec, 1)


# --- concrete views -------------------------------------------------------------------------


@dataclass(frozen=True)
class StateView:
    """A concrete state, read by field name, for the Python predicates."""

    machine: Machine
    state: State

    def __getitem__(self, name: str) -> Value:
        return self.state[self.machine.index(name)]

    def enabled(self, op: str, where: CodeTest | None = None, args: Args | None = None) -> bool:
        """`op` is DEFINED here with an outcome whose code passes `where`, for the given
        arguments or for some arguments."""
        choices = [args] if args is not None else self.machine.operation(op).all_args()
        for a in choices:
            result = step(self.machine, self.state, op, a)
            if result.kind is Kind.DEFINED and (
                    where is None or any(where(x.code) for x in result.allowed)):
                return True
        return False


@dataclass(frozen=True)
class Transition:
    """One concrete step: `allowed` is `row.outcomes[outcome]` resolved against the state."""

    machine: Machine
    state: State
    op: str
    args: Args
    outcome: int
    allowed: Allowed

    @property
    def pre(self) -> StateView:
        return StateView(self.machine, self.state)

    @property
    def post(self) -> StateView:
        return StateView(self.machine, self.allowed.next_state)

    @property
    def argmap(self) -> dict[str, Value]:
        return dict(self.args)

    @property
    def code(self) -> CodeSpec:
        return self.allowed.code

    @property
    def when(self) -> dict[str, str]:
        return dict(self.allowed.when)

    def pin_may_be(self, point: str, choice: str) -> bool:
        """The outcome is allowed when the point takes this choice (it names it, or no choice)."""
        return self.when.get(point, choice) == choice

    def outputs(self) -> dict[str, Value | CodeSpec]:
        return dict(self.allowed.outputs)

    def unchanged(self, fields: Iterable[str] | None = None) -> bool:
        """The step leaves the state (or the named fields) as it was."""
        if fields is None:
            return self.allowed.next_state == self.state
        return all(self.post[name] == self.pre[name] for name in fields)


def transitions_from(machine: Machine, state: State) -> list[Transition]:
    """Every DEFINED step out of `state`, one per (operation, arguments, outcome), unpinned."""
    result: list[Transition] = []
    for operation in machine.operations:
        for args in operation.all_args():
            taken = step(machine, state, operation.name, args)
            for i, allowed in enumerate(taken.allowed):
                result.append(Transition(machine, state, operation.name, args, i, allowed))
    return result


# --- invariant records ----------------------------------------------------------------------


@dataclass(frozen=True)
class StateInvariant:
    """A predicate every reachable state of `machine` satisfies."""

    name: str
    machine: str
    rules: tuple[str, ...]
    doc: str
    holds: Callable[[StateView], bool] = field(compare=False, repr=False)
    formula: Callable[[SymState], z3.BoolRef] = field(compare=False, repr=False)
    auxiliary: bool = False
    kind: ClassVar[str] = "state"


@dataclass(frozen=True)
class TransitionInvariant:
    """A predicate every reachable step of `machine` satisfies."""

    name: str
    machine: str
    rules: tuple[str, ...]
    doc: str
    holds: Callable[[Transition], bool] = field(compare=False, repr=False)
    formula: Callable[[SymStep], z3.BoolRef] = field(compare=False, repr=False)
    auxiliary: bool = False
    kind: ClassVar[str] = "transition"


Invariant = StateInvariant | TransitionInvariant

IN_FLIGHT = ("PENDING", "SIGNALED")
AT_REST = ("NONE", "IDLE", "RELEASED")
S_OK = codes.S_OK.value
RPC_PENDING = codes.RPC_S_ASYNC_CALL_PENDING.value
RPC_CANCELLED = codes.RPC_S_CALL_CANCELLED.value
NOTIFYING = ("Event", "Apc", "Ioc", "Hwnd", "Callback")
SERVER_ENDS = ("server_complete", "server_abort", "server_raise")


def _begin_only_when_idle(t: Transition) -> bool:
    return t.op != "Begin_" or not may_succeed(t.code) or t.pre["phase"] == "IDLE"


def _outputs_after_signal(t: Transition) -> bool:
    delivered = t.outputs().get("out")
    if t.op != "Finish_" or delivered is None:
        return True
    return t.pre["phase"] == "SIGNALED" and t.pre["out"] != 0 and delivered == t.pre["out"]


def _outputs_at_most_once(t: Transition) -> bool:
    if t.op != "Finish_" or "out" not in t.outputs():
        return True
    return t.post["out"] == 0 and t.post["phase"] == "IDLE"


def _wait_ok_means_done(t: Transition) -> bool:
    if t.op != "Wait" or not may_return(t.code, S_OK) or t.pre["phase"] not in IN_FLIGHT:
        return True
    return t.pre["phase"] == "SIGNALED" and t.post["phase"] == "SIGNALED" and not t.pre["held"]


def _std_event_consumed(t: Transition) -> bool:
    if (t.op != "Wait" or t.pre["phase"] != "SIGNALED" or not t.pre["waited"]
            or not t.pin_may_be("call_object_event", "StdEvent")):
        return True
    return not may_return(t.code, S_OK)


def _abandoned_counted(t: Transition) -> bool:
    if t.op == "Release" and t.pre["held"]:
        return int(t.post["orphan"]) == int(t.pre["orphan"]) + 1
    if t.op == "server_signal_late":
        return int(t.post["orphan"]) == int(t.pre["orphan"]) - 1
    return t.post["orphan"] == t.pre["orphan"]


def _com_test_cancel(t: Transition) -> bool:
    if t.op not in ("TestCancel", "server_test_cancel"):
        return True
    cancelled = codes.RPC_E_CALL_CANCELED.value
    reports = only(t.code, cancelled) if t.pre["cancel"] else not may_return(t.code, cancelled)
    return t.unchanged() and reports


def _late_signal(t: Transition) -> bool:
    if t.op == "server_signal_late":
        return all(t.post[f.name] == t.pre[f.name] for f in t.machine.fields if f.name != "orphan")
    return True


def _cancel_keeps_finish(s: StateView) -> bool:
    if not s["cancel"]:
        return True
    if s["phase"] == "PENDING":
        return bool(s["held"]) and s.enabled("server_signal")
    return s.enabled("Finish_")


COM: tuple[Invariant, ...] = (
    StateInvariant(
        "com.one_outstanding_call", "com_call", ("COM-CF-10", "COM-BEGIN-01", "COM-SRV-05"),
        "The test server holds a call of a call object only while that call is in flight: one "
        "call object carries at most one outstanding call.",
        holds=lambda s: not s["held"] or s["phase"] in IN_FLIGHT,
        formula=lambda s: Implies(s.is_("held", True), s.is_("phase", *IN_FLIGHT))),
    TransitionInvariant(
        "com.begin_only_when_idle", "com_call",
        ("COM-BEGIN-01", "COM-BEGIN-02", "COM-BEGIN-03", "COM-CF-10"),
        "Begin_ succeeds only on an idle call object; while a call is in flight it fails.",
        holds=_begin_only_when_idle,
        formula=lambda t: Implies(And(t.op_is("Begin_"), Not(t.failure)),
                                  t.pre.is_("phase", "IDLE"))),
    TransitionInvariant(
        "com.rejected_begin_changes_nothing", "com_call",
        ("COM-BEGIN-02", "COM-BEGIN-03", "COM-CANCEL-03"),
        "A Begin_ that fails leaves the call object exactly as it was.",
        holds=lambda t: t.op != "Begin_" or not may_fail(t.code) or t.unchanged(),
        formula=lambda t: Implies(And(t.op_is("Begin_"), t.failure), t.unchanged())),
    TransitionInvariant(
        "com.outputs_after_signal", "com_call", ("COM-FIN-01", "COM-SRV-05", "COM-WAIT-02"),
        "Finish_ delivers [out] values only after the server signalled, and delivers the value "
        "the server signalled.",
        holds=_outputs_after_signal,
        formula=lambda t: Implies(
            And(t.op_is("Finish_"), t.has_output("out")),
            And(t.pre.is_("phase", "SIGNALED"), Not(t.pre.is_("out", 0)),
                t.output_value["out"] == t.pre.value("out")))),
    TransitionInvariant(
        "com.outputs_at_most_once", "com_call", ("COM-FIN-01", "COM-FIN-04"),
        "Delivering a call's outputs returns the object to IDLE with no outputs kept, so a call's "
        "outputs are delivered at most once.",
        holds=_outputs_at_most_once,
        formula=lambda t: Implies(And(t.op_is("Finish_"), t.has_output("out")),
                                  And(t.post.is_("out", 0), t.post.is_("phase", "IDLE")))),
    StateInvariant(
        "com.nothing_pending_at_rest", "com_call",
        ("COM-FIN-04", "COM-REL-01", "COM-FIN-05", "COM-CANCEL-03"),
        "A call object that is idle (finished) or released has no cancel, no outputs and no call "
        "held by the server: a released or finished call leaves nothing pending.",
        holds=lambda s: s["phase"] not in AT_REST or (
            not s["cancel"] and s["out"] == 0 and not s["held"] and not s["waited"]),
        formula=lambda s: Implies(s.is_("phase", *AT_REST), And(
            s.is_("cancel", False), s.is_("out", 0), s.is_("held", False),
            s.is_("waited", False)))),
    StateInvariant(
        "com.cancel_keeps_finish", "com_call", ("COM-CANCEL-03", "COM-FIN-05", "COM-CANCEL-02"),
        "After an accepted Cancel the call can still be finished: a pending call is still held "
        "by the server, whose Signal is DEFINED, and a signalled one has a DEFINED Finish_; a "
        "cancel never loses the call's end.",
        holds=_cancel_keeps_finish,
        formula=lambda s: Implies(s.is_("cancel", True), z3.If(
            s.is_("phase", "PENDING"),
            And(s.is_("held", True), enabled(s.machine, s, "server_signal")),
            enabled(s.machine, s, "Finish_")))),
    TransitionInvariant(
        "com.wait_ok_means_done", "com_call", ("COM-WAIT-02", "COM-WAIT-03", "COM-CANCEL-04"),
        "Wait returns S_OK on a call in flight only once the server signalled: 'If Wait returns "
        "S_OK, the Begin_ method has returned', a cancel or not; then Finish_ may be called.",
        holds=_wait_ok_means_done,
        formula=lambda t: Implies(
            And(t.op_is("Wait"), t.code_is(S_OK), t.pre.is_("phase", *IN_FLIGHT)),
            And(t.pre.is_("phase", "SIGNALED"), t.post.is_("phase", "SIGNALED"),
                t.pre.is_("held", False)))),
    TransitionInvariant(
        "com.std_event_wait_consumes_the_signal", "com_call",
        ("COM-SYNC-06", "COM-SYNC-03"),
        "With a CLSID_StdEvent behind the call object, the Wait that returned S_OK reset it: a "
        "second Wait before Finish_ does not return S_OK.",
        holds=_std_event_consumed,
        formula=lambda t: Implies(
            And(t.op_is("Wait"), t.pre.is_("phase", "SIGNALED"), t.pre.is_("waited", True),
                t.pin_is("call_object_event", "StdEvent")),
            Not(t.code_is(S_OK)))),
    TransitionInvariant(
        "com.abandoned_calls_counted", "com_call", ("COM-REL-01", "COM-REL-02"),
        "Every call the client abandons while the server holds it adds one to the abandoned "
        "calls the server holds, and each late Signal takes one away: none is lost.",
        holds=_abandoned_counted,
        formula=lambda t: z3.If(
            And(t.op_is("Release"), t.pre.is_("held", True)),
            t.post.value("orphan") == t.pre.value("orphan") + 1,
            z3.If(t.op_is("server_signal_late"),
                  t.post.value("orphan") == t.pre.value("orphan") - 1,
                  t.unchanged(["orphan"])))),
    TransitionInvariant(
        "com.cancel_only_in_window", "com_call", ("COM-CANCEL-02", "COM-CANCEL-05"),
        "Cancel is accepted (S_OK) only between Begin_ and Finish_, and records the request.",
        holds=lambda t: t.op != "Cancel" or not may_return(t.code, S_OK) or (
            t.pre["phase"] in IN_FLIGHT and bool(t.post["cancel"])),
        formula=lambda t: Implies(And(t.op_is("Cancel"), t.code_is(S_OK)),
                                  And(t.pre.is_("phase", *IN_FLIGHT), t.post.is_("cancel", True)))),
    TransitionInvariant(
        "com.test_cancel_only_reports", "com_call", ("COM-CANCEL-10",),
        "TestCancel, from client or server, changes nothing and reports RPC_E_CALL_CANCELED "
        "exactly when the call was cancelled.",
        holds=_com_test_cancel,
        formula=lambda t: Implies(t.op_is("TestCancel", "server_test_cancel"), And(
            t.unchanged(),
            t.code_is(codes.RPC_E_CALL_CANCELED) == t.pre.is_("cancel", True)))),
    TransitionInvariant(
        "com.released_is_final", "com_call", ("COM-REL-01",),
        "Nothing brings a released call object back.",
        holds=lambda t: t.pre["phase"] != "RELEASED" or t.post["phase"] == "RELEASED",
        formula=lambda t: Implies(t.pre.is_("phase", "RELEASED"), t.post.is_("phase", "RELEASED"))),
    TransitionInvariant(
        "com.late_signal_invisible", "com_call", ("COM-CANCEL-11", "COM-REL-01", "COM-REL-02"),
        "The server's late Signal of an abandoned call changes nothing the client sees.",
        holds=_late_signal,
        formula=lambda t: Implies(t.op_is("server_signal_late"),
                                  t.unchanged(f.name for f in t.machine.fields
                                              if f.name != "orphan"))),
    StateInvariant(
        "com.pending_call_is_held", "com_call", ("COM-BEGIN-01", "COM-SRV-05"),
        "A pending call is one the test server still holds.",
        holds=lambda s: s["phase"] != "PENDING" or bool(s["held"]),
        formula=lambda s: Implies(s.is_("phase", "PENDING"), s.is_("held", True)),
        auxiliary=True),
    StateInvariant(
        "com.outputs_only_when_signalled", "com_call", ("COM-SRV-05", "COM-FIN-01"),
        "Outputs exist only for a signalled call the server no longer holds.",
        holds=lambda s: s["out"] == 0 or (s["phase"] == "SIGNALED" and not s["held"]),
        formula=lambda s: Implies(Not(s.is_("out", 0)),
                                  And(s.is_("phase", "SIGNALED"), s.is_("held", False))),
        auxiliary=True),
    StateInvariant(
        "com.signalled_call_has_outputs", "com_call", ("COM-SRV-05", "COM-WAIT-02"),
        "A signalled call, cancelled or not, has its outputs and is no longer held: only the "
        "server's Signal makes a call SIGNALED.",
        holds=lambda s: s["phase"] != "SIGNALED" or (s["out"] != 0 and not s["held"]),
        formula=lambda s: Implies(s.is_("phase", "SIGNALED"),
                                  And(Not(s.is_("out", 0)), s.is_("held", False))),
        auxiliary=True),
    StateInvariant(
        "com.abandoned_only_after_release", "com_call", ("COM-REL-01",),
        "The server holds an abandoned call only once the call object is released, and then "
        "holds no current call of it.",
        holds=lambda s: s["orphan"] == 0 or (s["phase"] == "RELEASED" and not s["held"]),
        formula=lambda s: Implies(Not(s.is_("orphan", 0)),
                                  And(s.is_("phase", "RELEASED"), s.is_("held", False))),
        auxiliary=True),
    StateInvariant(
        "com.waited_only_when_signalled", "com_call", ("COM-WAIT-02",),
        "A Wait has returned S_OK for the current call only once it is signalled.",
        holds=lambda s: not s["waited"] or s["phase"] == "SIGNALED",
        formula=lambda s: Implies(s.is_("waited", True), s.is_("phase", "SIGNALED")),
        auxiliary=True),
)


def _wait_multiple(t: Transition) -> bool:
    if t.op != "WaitMultiple":
        return True
    member = t.outputs().get("member")
    if member is not None and not ((member == 0 and t.pre["sig0"]) or (member == 1 and t.pre["sig1"])):
        return False
    return t.unchanged() and (not may_return(t.code, S_OK) or int(t.pre["count"]) > 0)


def _capacity(t: Transition) -> bool:
    if t.op != "AddSynchronize":
        return True
    count = int(t.pre["count"])
    if count < 63:
        return only(t.code, S_OK) and t.post["count"] == count + 1
    return only(t.code, codes.RPC_E_OUT_OF_RESOURCES.value) and t.post["count"] == count


SYNC: tuple[Invariant, ...] = (
    TransitionInvariant(
        "sync.auto_reset_wait", "event", ("COM-SYNC-03",),
        "A Wait that returns S_OK on CLSID_StdEvent resets the object.",
        holds=lambda t: t.op != "Wait" or not may_return(t.code, S_OK)
        or t.pre["kind"] != "StdEvent" or not t.post["signaled"],
        formula=lambda t: Implies(And(t.op_is("Wait"), t.code_is(S_OK), t.pre.is_("kind", "StdEvent")),
                                  t.post.is_("signaled", False))),
    TransitionInvariant(
        "sync.manual_reset_wait", "event", ("COM-SYNC-04",),
        "A Wait that returns S_OK on CLSID_ManualResetEvent leaves it signalled.",
        holds=lambda t: t.op != "Wait" or not may_return(t.code, S_OK)
        or t.pre["kind"] != "ManualResetEvent" or bool(t.post["signaled"]),
        formula=lambda t: Implies(
            And(t.op_is("Wait"), t.code_is(S_OK), t.pre.is_("kind", "ManualResetEvent")),
            t.post.is_("signaled", True))),
    TransitionInvariant(
        "sync.wait_ok_iff_signalled", "event", ("COM-SYNC-01", "COM-WAIT-02", "COM-WAIT-03"),
        "Wait on a system event returns S_OK exactly when the event is signalled.",
        holds=lambda t: t.op != "Wait" or (
            only(t.code, S_OK) if t.pre["signaled"] else not may_return(t.code, S_OK)),
        formula=lambda t: Implies(t.op_is("Wait"),
                                  t.code_is(S_OK) == t.pre.is_("signaled", True))),
    TransitionInvariant(
        "sync.signal_and_reset_set_the_state", "event", ("COM-SYNC-01", "COM-SYNC-02"),
        "Signal leaves the event signalled and Reset leaves it non-signalled, both with S_OK.",
        holds=lambda t: (t.op != "Signal" or (bool(t.post["signaled"]) and only(t.code, S_OK)))
        and (t.op != "Reset" or (not t.post["signaled"] and only(t.code, S_OK))),
        formula=lambda t: And(
            Implies(t.op_is("Signal"), And(t.post.is_("signaled", True), t.code_is(S_OK))),
            Implies(t.op_is("Reset"), And(t.post.is_("signaled", False), t.code_is(S_OK))))),
    TransitionInvariant(
        "sync.class_is_fixed", "event", ("COM-SYNC-06",),
        "Once created, a system event stays the class it was created as.",
        holds=lambda t: t.pre["kind"] == "NONE" or t.post["kind"] == t.pre["kind"],
        formula=lambda t: Implies(Not(t.pre.is_("kind", "NONE")), t.unchanged(["kind"]))),
    TransitionInvariant(
        "sync.container_capacity", "container", ("COM-CONT-01", "COM-CONT-02"),
        "AddSynchronize adds a member while fewer than 63 are held, and answers "
        "RPC_E_OUT_OF_RESOURCES, adding nothing, at 63.",
        holds=_capacity,
        formula=lambda t: Implies(t.op_is("AddSynchronize"), z3.If(
            t.pre.value("count") < 63,
            And(t.code_is(S_OK), t.post.value("count") == t.pre.value("count") + 1),
            And(t.code_is(codes.RPC_E_OUT_OF_RESOURCES), t.unchanged(["count"]))))),
    TransitionInvariant(
        "sync.wait_multiple_returns_a_signalled_member", "container",
        ("COM-CONT-03", "COM-CONT-04", "COM-CONT-05"),
        "WaitMultiple returns a member that is signalled, succeeds only on a non-empty container, "
        "and (its members being manual-reset) changes nothing.",
        holds=_wait_multiple,
        formula=lambda t: Implies(t.op_is("WaitMultiple"), And(
            t.unchanged(),
            Implies(t.code_is(S_OK), t.pre.value("count") > 0),
            Implies(t.has_output("member"), Or(
                And(t.output_value["member"] == 0, t.pre.is_("sig0", True)),
                And(t.output_value["member"] == 1, t.pre.is_("sig1", True))))))),
)


def _abort_code(t: Transition) -> bool:
    if (t.op != "RpcAsyncCompleteCall" or t.pre["phase"] not in ("SENT", "READY")
            or t.pre["result"] not in ("aborted", "raised")
            or not t.pin_may_be("abort_code_delivery", "exact")):
        return True
    allowed = {int(t.pre["code"]), RPC_PENDING} | ({RPC_CANCELLED} if t.pre["may_cancel"] else set())
    return only(t.code, *allowed)


def _rpc_test_cancel(t: Transition) -> bool:
    if t.op != "server_test_cancel":
        return True
    ok = codes.RPC_S_OK.value
    if t.pre["cancel"] == "no" and may_return(t.code, ok):
        return False
    if t.pre["seen"] and not only(t.code, ok):
        return False
    if not t.unchanged(f.name for f in t.machine.fields if f.name != "seen"):
        return False
    return t.post["seen"] == (bool(t.pre["seen"]) or may_return(t.code, ok))


def _status_is_the_result(t: Transition) -> bool:
    if t.op != "RpcAsyncGetCallStatus" or t.pre["phase"] not in ("SENT", "READY"):
        return True
    if only(t.code, codes.RPC_S_OK.value):
        return t.post["result"] == "ok" and not t.post["may_cancel"]
    if may_fail(t.code) and not may_return(t.code, RPC_PENDING):
        return t.post["result"] != "ok"
    return True


def _cancel_kinds(t: Transition) -> bool:
    if t.op != "RpcAsyncCancelCall" or t.pre["phase"] != "PENDING":
        return True
    if t.argmap["abort"]:
        return t.post["phase"] == "SENT" and t.post["result"] == "cancelled"
    return t.post["phase"] == "PENDING" and t.post["cancel"] != "no"


RPC: tuple[Invariant, ...] = (
    TransitionInvariant(
        "rpc.one_notification_per_call", "rpc_call",
        ("RPC-CLI-NOTIFY-01", "RPC-CLI-NOTIFY-02", "RPC-CLI-NOTIFY-03", "RPC-CLI-NOTIFY-04",
         "RPC-CLI-NOTIFY-05", "RPC-CLI-NOTIFY-06", "RPC-STATE-02"),
        "A completion notification arrives only for a call that asked for one and has not had "
        "it yet: at most one per call.",
        holds=lambda t: t.op != "wait_notification" or not notifies(t.code) or (
            t.pre["notes"] == 0 and t.post["notes"] == 1 and t.pre["notify"] != "None"),
        formula=lambda t: Implies(And(t.op_is("wait_notification"), t.code_is(1)), And(
            t.pre.is_("notes", 0), t.post.is_("notes", 1), Not(t.pre.is_("notify", "None"))))),
    StateInvariant(
        "rpc.notification_not_lost", "rpc_call",
        ("RPC-CLI-NOTIFY-01", "RPC-CLI-NOTIFY-02", "RPC-CLI-NOTIFY-03", "RPC-CLI-NOTIFY-04",
         "RPC-CLI-NOTIFY-05", "RPC-CLI-CANCEL-02"),
        "Until the client has seen it, the notification of a finished call can still arrive: "
        "with the previous invariant, exactly one notification per call.",
        holds=lambda s: s["phase"] not in ("SENT", "READY") or s["notify"] == "None"
        or s["notes"] != 0 or s.enabled("wait_notification", notifies),
        formula=lambda s: Implies(
            And(s.is_("phase", "SENT", "READY"), s.is_("notify", *NOTIFYING), s.is_("notes", 0)),
            enabled(s.machine, s, "wait_notification", notifies))),
    TransitionInvariant(
        "rpc.final_completion_leaves_no_call", "rpc_call",
        ("RPC-CLI-COMPLETE-06", "RPC-CLI-COMPLETE-07", "RPC-INIT-07"),
        "An RpcAsyncCompleteCall that returns anything but RPC_S_ASYNC_CALL_PENDING leaves the "
        "client handle with no call.",
        holds=lambda t: t.op != "RpcAsyncCompleteCall" or only(t.code, RPC_PENDING)
        or t.post["phase"] in ("INIT", "DONE"),
        formula=lambda t: Implies(And(t.op_is("RpcAsyncCompleteCall"), Not(t.code_is(RPC_PENDING))),
                                  t.post.is_("phase", "INIT", "DONE"))),
    TransitionInvariant(
        "rpc.server_handle_dead_after_end", "rpc_call",
        ("RPC-SRV-02", "RPC-SRV-COMPLETE-05", "RPC-SRV-ABORT-01", "RPC-SRV-EXC-01"),
        "Completing, aborting or raising ends a held server handle: afterwards it is gone.",
        holds=lambda t: t.op not in SERVER_ENDS or (
            t.pre["server"] == "held" and t.post["server"] == "gone"),
        formula=lambda t: Implies(t.op_is(*SERVER_ENDS), And(t.pre.is_("server", "held"),
                                                              t.post.is_("server", "gone")))),
    TransitionInvariant(
        "rpc.dead_server_handle_stays_dead", "rpc_call",
        ("RPC-SRV-02", "RPC-SRV-COMPLETE-04", "RPC-SRV-ABORT-05"),
        "Nothing but a new call revives a destroyed server handle, and RpcServerTestCancel "
        "needs a live one.",
        holds=lambda t: (t.pre["server"] != "gone" or t.op == "AsyncCall"
                         or t.post["server"] == "gone")
        and (t.op != "server_test_cancel" or t.pre["server"] == "held"),
        formula=lambda t: And(
            Implies(And(t.pre.is_("server", "gone"), Not(t.op_is("AsyncCall"))),
                    t.post.is_("server", "gone")),
            Implies(t.op_is("server_test_cancel"), t.pre.is_("server", "held")))),
    StateInvariant(
        "rpc.cancel_keeps_completion", "rpc_call",
        ("RPC-CLI-CANCEL-04", "RPC-CLI-CANCEL-02", "RPC-CLI-CANCEL-03"),
        "After a cancel the call can still be completed: a pending call is still held by the "
        "server, and a finished one has a final RpcAsyncCompleteCall.",
        holds=lambda s: s["cancel"] == "no" or (
            (s["phase"] != "PENDING" or s["server"] == "held")
            and (s["phase"] not in ("SENT", "READY")
                 or s.enabled("RpcAsyncCompleteCall", not_only_pending))),
        formula=lambda s: Implies(Not(s.is_("cancel", "no")), And(
            Implies(s.is_("phase", "PENDING"), s.is_("server", "held")),
            Implies(s.is_("phase", "SENT", "READY"),
                    enabled(s.machine, s, "RpcAsyncCompleteCall", not_only_pending))))),
    TransitionInvariant(
        "rpc.abort_code_reaches_client", "rpc_call",
        ("RPC-SRV-ABORT-01", "RPC-SRV-EXC-01", "RPC-CLI-COMPLETE-05"),
        "With exact delivery, the final RpcAsyncCompleteCall of an aborted (or raised) call "
        "returns the server's code, or RPC_S_CALL_CANCELLED if a cancel may have taken effect.",
        holds=_abort_code,
        formula=lambda t: Implies(
            And(t.op_is("RpcAsyncCompleteCall"), t.pre.is_("phase", "SENT", "READY"),
                t.pre.is_("result", "aborted", "raised"),
                t.pin_is("abort_code_delivery", "exact"), Not(t.code_is(RPC_PENDING))),
            Or(t.code == t.pre.value("code"),
               And(t.pre.is_("may_cancel", True), t.code_is(RPC_CANCELLED))))),
    TransitionInvariant(
        "rpc.failed_call_changes_nothing", "rpc_call", ("RPC-CLI-CALL-02", "RPC-INIT-08"),
        "A call whose stub raised leaves the handle as it was: there is nothing to complete or "
        "cancel.",
        holds=lambda t: t.op != "AsyncCall" or not may_fail(t.code) or t.unchanged(),
        formula=lambda t: Implies(And(t.op_is("AsyncCall"), t.failure), t.unchanged())),
    StateInvariant(
        "rpc.pending_until_server_ends", "rpc_call",
        ("RPC-CLI-STATUS-01", "RPC-CLI-COMPLETE-01", "RPC-SRV-01"),
        "A pending call has a live server handle and no result yet.",
        holds=lambda s: s["phase"] != "PENDING" or (s["server"] == "held" and s["result"] == "none"),
        formula=lambda s: Implies(s.is_("phase", "PENDING"),
                                  And(s.is_("server", "held"), s.is_("result", "none")))),
    TransitionInvariant(
        "rpc.cancelled_only_after_cancel", "rpc_call", ("RPC-CLI-COMPLETE-04", "RPC-CLI-CANCEL-05"),
        "RpcAsyncCompleteCall returns RPC_S_CALL_CANCELLED only for a call the client cancelled "
        "(with exact abort-code delivery; otherwise an aborted call may report any failure).",
        holds=lambda t: t.op != "RpcAsyncCompleteCall" or not may_return(t.code, RPC_CANCELLED)
        or not t.pin_may_be("abort_code_delivery", "exact") or t.pre["cancel"] != "no",
        formula=lambda t: Implies(
            And(t.op_is("RpcAsyncCompleteCall"), t.code_is(RPC_CANCELLED),
                t.pin_is("abort_code_delivery", "exact")),
            Not(t.pre.is_("cancel", "no")))),
    TransitionInvariant(
        "rpc.test_cancel_only_reports", "rpc_call",
        ("RPC-SRV-CANCEL-01", "RPC-SRV-CANCEL-02", "RPC-CLI-CANCEL-05"),
        "RpcServerTestCancel changes nothing (but what the server has seen), returns RPC_S_OK "
        "only after the client cancelled, and once it has reported the cancel reports nothing "
        "else: the notice may take a while to arrive, it is never taken back.",
        holds=_rpc_test_cancel,
        formula=lambda t: Implies(t.op_is("server_test_cancel"), And(
            t.unchanged(f.name for f in t.machine.fields if f.name != "seen"),
            Implies(t.pre.is_("cancel", "no"), Not(t.code_is(codes.RPC_S_OK))),
            Implies(t.pre.is_("seen", True), t.code_is(codes.RPC_S_OK)),
            t.post.is_("seen", True) == Or(t.pre.is_("seen", True),
                                           t.code_is(codes.RPC_S_OK))))),
    StateInvariant(
        "rpc.cancel_remembered", "rpc_call",
        ("RPC-CLI-CANCEL-02", "RPC-CLI-CANCEL-03", "RPC-SRV-CANCEL-01"),
        "Once the client cancelled, the manager routine that still holds the call can always "
        "learn it: RpcServerTestCancel may report RPC_S_OK, and a test that waits its bounded "
        "time must. A cancel is never forgotten.",
        holds=lambda s: s["cancel"] == "no" or s["server"] != "held" or (
            s.enabled("server_test_cancel", lambda c: only(c, codes.RPC_S_OK.value),
                      (("timeout", "finite"),))),
        formula=lambda s: Implies(
            And(Not(s.is_("cancel", "no")), s.is_("server", "held")),
            enabled(s.machine, s, "server_test_cancel",
                    lambda c: only(c, codes.RPC_S_OK.value), (("timeout", "finite"),)))),
    TransitionInvariant(
        "rpc.status_is_the_result", "rpc_call",
        ("RPC-CLI-STATUS-02", "RPC-CLI-STATUS-03", "RPC-CLI-COMPLETE-02"),
        "A final RpcAsyncGetCallStatus and the final completion agree: after RPC_S_OK the "
        "result is the server's success (no cancel may turn it now), after a failure it is not.",
        holds=_status_is_the_result,
        formula=lambda t: Implies(
            And(t.op_is("RpcAsyncGetCallStatus"), t.pre.is_("phase", "SENT", "READY")),
            And(Implies(t.code_is(codes.RPC_S_OK),
                        And(t.post.is_("result", "ok"), t.post.is_("may_cancel", False))),
                Implies(And(t.failure, Not(t.code_is(RPC_PENDING))),
                        Not(t.post.is_("result", "ok")))))),
    TransitionInvariant(
        "rpc.cancel_kinds", "rpc_call", ("RPC-CLI-CANCEL-02", "RPC-CLI-CANCEL-03"),
        "On a pending call, an abortive cancel ends the call on the client at once (cancelled); "
        "a non-abortive one leaves the client waiting for the server, and the cancel recorded "
        "for the server to learn (it is never accepted and forgotten).",
        holds=_cancel_kinds,
        formula=lambda t: Implies(And(t.op_is("RpcAsyncCancelCall"), t.pre.is_("phase", "PENDING")),
                                  z3.If(t.arg_is("RpcAsyncCancelCall", "abort", True),
                                        And(t.post.is_("phase", "SENT"),
                                            t.post.is_("result", "cancelled")),
                                        And(t.post.is_("phase", "PENDING"),
                                            Not(t.post.is_("cancel", "no")))))),
    StateInvariant(
        "rpc.finished_call_has_a_result", "rpc_call", ("RPC-CLI-STATUS-03", "RPC-CLI-COMPLETE-06"),
        "A call the server finished (or the client cancelled abortively) has a final result.",
        holds=lambda s: s["phase"] not in ("SENT", "READY") or s["result"] != "none",
        formula=lambda s: Implies(s.is_("phase", "SENT", "READY"), Not(s.is_("result", "none"))),
        auxiliary=True),
    StateInvariant(
        "rpc.abort_code_recorded", "rpc_call", ("RPC-SRV-ABORT-01", "RPC-SRV-ABORT-03"),
        "An aborted or raised call carries its non-zero code, and no other call carries one.",
        holds=lambda s: (s["result"] in ("aborted", "raised")) == (s["code"] != 0),
        formula=lambda s: s.is_("result", "aborted", "raised") == Not(s.is_("code", 0)),
        auxiliary=True),
    StateInvariant(
        "rpc.cancel_recorded", "rpc_call", ("RPC-CLI-CANCEL-05", "RPC-CLI-COMPLETE-04"),
        "A cancelled result, or one a cancel may still turn into RPC_S_CALL_CANCELLED, or a "
        "cancel the server has seen, follows a cancel request.",
        holds=lambda s: not (s["result"] == "cancelled" or s["may_cancel"] or s["seen"])
        or s["cancel"] != "no",
        formula=lambda s: Implies(Or(s.is_("result", "cancelled"), s.is_("may_cancel", True),
                                     s.is_("seen", True)),
                                  Not(s.is_("cancel", "no"))),
        auxiliary=True),
)

# Section 2.17: two asynchronous calls on one binding. Both invariants span the two calls.
ORDER: tuple[Invariant, ...] = (
    StateInvariant(
        "rpc.order_issued_in_order", "rpc_order", ("RPC-ORDER-01",),
        "Call 1 exists only after call 0 was issued (the client thread issues them in turn).",
        holds=lambda s: s["c1"] == "none" or s["c0"] != "none",
        formula=lambda s: Implies(Not(s.is_("c1", "none")), Not(s.is_("c0", "none")))),
    StateInvariant(
        "rpc.order_causal_prefix", "rpc_order", ("RPC-ORDER-01",),
        "On a causal binding call 1 is never dispatched while call 0, issued before it, still "
        "waits: the dispatched calls are a prefix of the issued ones.",
        holds=lambda s: (s["noncausal"] is True or s["c1"] not in ("running", "done")
                         or s["c0"] in ("running", "done")),
        formula=lambda s: Implies(And(s.is_("noncausal", False), s.is_("c1", "running", "done")),
                                  s.is_("c0", "running", "done"))),
)

# Section 2.19: one asynchronous call with an [in] and an [out] pipe.
PIPE: tuple[Invariant, ...] = (
    StateInvariant(
        "rpc.pipe_closed_after_end", "rpc_pipe", ("RPC-PIPE-03",),
        "The [out] pipe is closed only by the pull that received its end, which ends the [out] "
        "stream for the client: never while the client still sends on the [in] pipe.",
        holds=lambda s: s["out"] != "closed" or s["phase"] not in ("in_open", "in_closed"),
        formula=lambda s: Implies(s.is_("out", "closed"),
                                  Not(s.is_("phase", "in_open", "in_closed")))),
    StateInvariant(
        "rpc.pipe_drained_after_end", "rpc_pipe", ("RPC-PIPE-02",),
        "The server drains the [in] pipe only to the end the client's 0-length push sent: "
        "never while the client may still push.",
        holds=lambda s: s["drained"] is False or s["phase"] != "in_open",
        formula=lambda s: Implies(s.is_("drained", True), Not(s.is_("phase", "in_open")))),
)

ALL: tuple[Invariant, ...] = (*COM, *SYNC, *RPC, *ORDER, *PIPE)
BY_NAME: dict[str, Invariant] = {inv.name: inv for inv in ALL}


def for_machine(machine: str, invariants: tuple[Invariant, ...] = ALL) -> tuple[Invariant, ...]:
    """The invariants about one machine (by name)."""
    return tuple(inv for inv in invariants if inv.machine == machine)


def violated(machine: Machine, state: State, invariants: tuple[Invariant, ...] = ALL
             ) -> list[str]:
    """The state invariants of `machine` that `state` breaks."""
    view = StateView(machine, state)
    return [inv.name for inv in for_machine(machine.name, invariants)
            if isinstance(inv, StateInvariant) and not inv.holds(view)]


def violated_composed(composition: Composition, state: tuple[State, ...],
                      invariants: tuple[Invariant, ...] = ALL) -> list[str]:
    """`slot: invariant` for every state invariant a composed state breaks (slot by slot)."""
    return [f"{slot}: {name}"
            for (slot, machine), part in zip(composition.slots, state, strict=True)
            for name in violated(machine, part, invariants)]


def invariant_rules(invariants: tuple[Invariant, ...] = ALL) -> Mapping[str, tuple[str, ...]]:
    """Invariant name to the rules it cites."""
    return {inv.name: inv.rules for inv in invariants}
