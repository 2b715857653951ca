"""The built-in adapter `reference`: drives the reference implementation through the adapter protocol.

`ReferenceAdapter` implements `callgate.conformance.protocol.adapter.Adapter`. Each session holds one
object per slot (a call object with its server object and test server, a system event, a container, an RPC
async handle) and one emulated client thread, attached to whichever OS thread the harness calls
from. `ReferenceSession.perform` looks the request's (machine, operation) up in a table of
handlers; each handler does what the operation's doc string in the model says, through the
implementation's public, Microsoft-named entry points, and reports the code and outputs.

Requests the model never sends in that state (no object in the slot, no held server call) raise
`AdapterFault`, naming the slot and what is missing.

Options: `jitter` (seconds) and `seed` add random pauses at interleaving points, and `faults`
builds a seeded-fault variant (a mutant, see `host.FAULTS`). `make_adapter(**options)` is the
factory; the harness also loads
`callgate.conformance.implementations.reference.adapter:ReferenceAdapter` by the built-in name
`reference`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from callgate.conformance.implementations.reference import com, kernel, rpc
from callgate.conformance.implementations.reference import rpc_order as order
from callgate.conformance.implementations.reference import rpc_pipe as pipe
from callgate.conformance.implementations.reference import thread_cancel as tc
from callgate.conformance.implementations.reference.com import IID, CallObject, ControllingUnknown, Unknown
from callgate.conformance.implementations.reference.host import (
    COMMAND_SECONDS,
    Command,
    Host,
    ServerAction,
    ServerGone,
    WorkerPool,
)
from callgate.conformance.implementations.reference.kernel import KernelEvent, ThreadContext
from callgate.conformance.implementations.reference.notif_slot import HANDLERS as NOTIF_HANDLERS
from callgate.conformance.implementations.reference.notif_slot import NotifSlot
from callgate.conformance.implementations.reference.rpc_client import CallResources
from callgate.conformance.protocol.adapter import (
    FEATURES,
    AdapterFault,
    Capabilities,
    Observation,
    Request,
    SlotSpec,
)
from callgate.model import codes

IMPLEMENTATION = "callgate-reference"
VERSION = "0.1.0"

Value = str | int | bool  # an argument or output value, as callgate.conformance.protocol.adapter carries them


def _code_name(value: int, family: codes.Family) -> str:
    return next(c.name for c in codes.ALL if c.value == value and c.family is family)


# One choice per variation point (model/variations.py), read from the implementation's own
# constants where it has one, so that the declaration cannot drift from the behaviour.
PINS: Mapping[str, str] = {
    # Every Wait is CoWaitForMultipleHandles, the call object's (its aggregated event) and a
    # system event's alike.
    "call_wait_timeout_code": _code_name(com.WAIT_TIMEOUT_CODE, codes.Family.HRESULT),
    "event_wait_timeout_code": _code_name(com.WAIT_TIMEOUT_CODE, codes.Family.HRESULT),
    "call_object_event": com.CALL_OBJECT_EVENT,
    "begin_pending_code": _code_name(com.BEGIN_PENDING_CODE, codes.Family.HRESULT),
    "cancelled_code": _code_name(com.CANCELLED_CODE, codes.Family.HRESULT),
    # The client's call object is a proxy call object from standard marshaling: ICallFactory
    # on the proxy always yields one, with ICancelMethodCalls and IClientSecurity.
    "call_object_origin": "standard_marshaling",
    # CallObject.Cancel refuses once the server has signalled (COM-CANCEL-08).
    "cancel_after_signal": "RPC_E_CALL_COMPLETE",
    "new_event_state": "signaled" if com.NEW_EVENT_SIGNALED else "nonsignaled",
    "unused_handle_status": _code_name(rpc.UNUSED_HANDLE_STATUS, codes.Family.RPC_STATUS),
    "handle_reuse": "reuse_allowed" if rpc.REUSE_WITHOUT_REINITIALIZE else "reinitialize_required",
    # RpcRuntime._end passes the abort or exception code to the client unchanged.
    "abort_code_delivery": "exact",
    # The client stub refuses a binding to no server at once (RpcRuntime.TestProc_async).
    "bad_binding_failure": "synchronous" if rpc.BAD_BINDING_RAISES else "through_completion",
    # CoWaitForMultipleHandles checks pHandles before cHandles, as Windows and Wine (D-06).
    "cowait_null_handles_code": "E_INVALIDARG",
    # A cancel the server did not act on changes nothing: the server's completion decides.
    "late_cancel_result": "server_result",
    "pipe_error_code": _code_name(pipe.PIPE_ERROR, codes.Family.RPC_STATUS),
    "disable_nested_code": _code_name(tc.DISABLE_NESTED_CODE, codes.Family.HRESULT),
    # NotifRuntime notifies every subscribed kind, the client's cancel included (D-20).
    "cancel_notification": "delivered",
}

_TIMEOUTS = {"zero": 0, "infinite": com.INFINITE}
_SIZES = {"exact": 0, "smaller": -1, "larger": 1}
_NOTIFY = {t.name.removeprefix("RpcNotificationType"): t for t in rpc.RPC_NOTIFICATION_TYPES}


class ReferenceAdapter:
    """The reference implementation as an adapter (DESIGN.md principle 7)."""

    def __init__(self, *, jitter: float = 0.0, seed: int | None = None,
                 faults: Iterable[str] = ()) -> None:
        self.host = Host(jitter=jitter, seed=seed, faults=faults)
        self.pool = WorkerPool()
        self._sessions = itertools.count(1)

    def capabilities(self) -> Capabilities:
        notes = ("Python threads, locks and events; the test server holds every call on a worker "
                 "thread until the harness commands it.")
        if self.host.faults:
            notes += f" Seeded faults: {', '.join(sorted(self.host.faults))}."
        # Every request runs on the caller's thread, against objects guarded by their own
        # locks: several at once, as parallel cases need.
        return Capabilities(IMPLEMENTATION, VERSION, FEATURES, dict(PINS), notes, concurrent=True)

    def open_session(self, slots: Sequence[SlotSpec]) -> ReferenceSession:
        return ReferenceSession(self, slots, next(self._sessions))

    def shutdown(self) -> None:
        self.pool.shutdown()


def make_adapter(**options: object) -> ReferenceAdapter:
    """Build a ReferenceAdapter: `jitter` (float seconds), `seed` (int), `faults` (names)."""
    jitter = options.pop("jitter", 0.0)
    seed = options.pop("seed", None)
    faults = options.pop("faults", ())
    if options:
        raise TypeError(f"unknown option(s) {', '.join(sorted(options))}; the reference adapter "
                        f"takes jitter, seed and faults")
    if not isinstance(jitter, (int, float)) or not (seed is None or isinstance(seed, int)):
        raise TypeError("jitter must be a number of seconds and seed an int or None")
    if isinstance(faults, str) or not isinstance(faults, Iterable):
        raise TypeError("faults must be a collection of fault names")
    return ReferenceAdapter(jitter=float(jitter), seed=seed, faults=[str(f) for f in faults])


# --- the objects of one session ------------------------------------------------------------------


@dataclass(eq=False)
class _ComSlot:
    server: com.TestServer
    server_object: com.ServerObject
    pointer: Unknown | None = None   # the client's reference to the call object
    call_object: CallObject | None = None  # the implementation behind it (no reference held)
    released: bool = False
    last_call: com.BeginCall | None = None
    sta: ThreadContext | None = None


@dataclass(eq=False)
class _EventSlot:
    event: com.SystemEvent | None = None


@dataclass(eq=False)
class _ContainerSlot:
    container: com.SynchronizeContainer | None = None
    members: list[com.SystemEvent] = field(default_factory=list)


@dataclass(eq=False)
class _RpcSlot:
    pAsync: rpc.RPC_ASYNC_STATE = field(default_factory=rpc.RPC_ASYNC_STATE)
    resources: CallResources | None = None
    server_call: rpc.DispatchedCall | None = None


@dataclass(eq=False)
class _CowaitSlot:
    # Handle 0 a manual-reset event, handle 1 an auto-reset event, both non-signalled.
    handles: tuple[KernelEvent, KernelEvent] = field(default_factory=lambda: (
        KernelEvent(manual_reset=True, name="cowait-0"),
        KernelEvent(manual_reset=False, name="cowait-1")))


@dataclass(eq=False)
class _ThreadCancelSlot:
    thread: tc.ClientThread
    call: tc.SyncCall | None = None
    own: tc.CancelObject = field(default_factory=lambda: tc.CancelObject(cancel_interface=True))


@dataclass(eq=False)
class _OrderSlot:
    binding: order.OrderedBinding
    calls: list[order.AsyncCall] = field(default_factory=list)


@dataclass(eq=False)
class _PipeSlot:
    call: pipe.PipeCall | None = None


_Slot = (_ComSlot | _EventSlot | _ContainerSlot | _RpcSlot | _CowaitSlot | _ThreadCancelSlot
         | _OrderSlot | _PipeSlot | NotifSlot)


@dataclass(eq=False)
class _Bound:
    machine: str
    state: _Slot


class ReferenceSession:
    """One case's objects, and the table from (machine, operation) to what the adapter does."""

    def __init__(self, adapter: ReferenceAdapter, slots: Sequence[SlotSpec], number: int) -> None:
        self.host = adapter.host
        self.pool = adapter.pool
        self._lock = threading.Lock()
        self._closed = False
        self._thread = ThreadContext(f"client-{number}")
        self._runtime: rpc.RpcRuntime | None = None
        self._good_binding = rpc.RpcBinding(server=True)
        self._slots: dict[str, _Bound] = {}
        self._servers: dict[tuple[bool, bool], tuple[com.TestServer, com.ServerObject]] = {}
        self.cancel_registry = tc.CancelRegistry()
        for spec in slots:
            if spec.name in self._slots:
                raise AdapterFault(f"slot {spec.name!r} is declared twice; give each slot its own "
                                   f"name")
            self._slots[spec.name] = _Bound(spec.machine, self._open_slot(spec))

    def _open_slot(self, spec: SlotSpec) -> _Slot:
        if spec.machine == "com_call":
            # Call objects of one configuration in one session come from one server object,
            # as a client that needs several concurrent calls makes them (COM-CF-10).
            key = (bool(spec.config.get("factory", True)), bool(spec.config.get("cancellable", True)))
            if key not in self._servers:
                server = com.TestServer(self.host, self.pool, implements_call_factory=key[0],
                                        cancellation_enabled=key[1])
                self._servers[key] = (server, com.ServerObject(server))
            server, server_object = self._servers[key]
            return _ComSlot(server, server_object)
        if spec.machine == "event":
            return _EventSlot()
        if spec.machine == "container":
            return _ContainerSlot()
        if spec.machine == "cowait":
            return _CowaitSlot()
        if spec.machine == "thread_cancel":
            thread = tc.ClientThread(self.host, self.pool)
            self.cancel_registry.add(thread)
            return _ThreadCancelSlot(thread)
        if spec.machine == "rpc_pipe":
            return _PipeSlot()
        if spec.machine == "rpc_order":
            return _OrderSlot(order.OrderedBinding(self.host, self.pool))
        if spec.machine == "rpc_notif":
            return NotifSlot.open(self.host, self.pool)
        if spec.machine == "rpc_call":
            if self._runtime is None:
                self._runtime = rpc.RpcRuntime(self.host, self.pool)
            return _RpcSlot()
        raise AdapterFault(f"slot {spec.name!r} has machine {spec.machine!r}, which the reference "
                           f"adapter does not know; use com_call, event, container, cowait, "
                           f"rpc_call, rpc_notif, rpc_order, rpc_pipe or thread_cancel")

    # --- the protocol ----------------------------------------------------------------------------

    def perform(self, request: Request) -> Observation:
        bound = self._slots.get(request.slot)
        if bound is None:
            raise AdapterFault(f"no slot {request.slot!r} in this session; declared slots: "
                               f"{', '.join(self._slots)}")
        handler = _HANDLERS.get((bound.machine, request.op))
        if handler is None:
            raise AdapterFault(f"{bound.machine} has no operation {request.op!r} in the reference "
                               f"adapter; see `callgate model show` for the vocabulary")
        if self._closed:
            raise AdapterFault(f"{request.slot}.{request.op}: the session is closed")
        try:
            with kernel.attach(self._thread):
                return handler(self, bound.state, request)
        except ServerGone as exc:
            raise AdapterFault(f"{request.slot}.{request.op}: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise AdapterFault(f"{request.slot}.{request.op}{dict(request.args)}: bad request "
                               f"({exc})") from exc

    def close(self) -> None:
        """Let every held server call go and close every object; returns within about a second
        even if a server thread is stuck."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for bound in self._slots.values():
            state = bound.state
            if isinstance(state, _ComSlot):
                state.server.shutdown()
                if state.call_object is not None:
                    state.call_object.close()
                if state.sta is not None:
                    state.sta.close()
            elif isinstance(state, _EventSlot):
                if state.event is not None:
                    state.event.close()
            elif isinstance(state, _ContainerSlot):
                for member in state.members:
                    member.close()
            elif isinstance(state, _CowaitSlot):
                for handle in state.handles:
                    handle.close()
            elif isinstance(state, _ThreadCancelSlot):
                if state.call is not None and not state.call.server_returned:
                    state.call.commands.put(("return", lambda code: None))
                state.thread.close()
            elif isinstance(state, _OrderSlot):
                state.binding.close()
            elif isinstance(state, NotifSlot):
                state.close()
        if self._runtime is not None:
            self._runtime.close()
        for bound in self._slots.values():
            if isinstance(bound.state, _RpcSlot) and bound.state.resources is not None:
                bound.state.resources.close()
        self._thread.close()

    # --- helpers ---------------------------------------------------------------------------------

    @property
    def runtime(self) -> rpc.RpcRuntime:
        assert self._runtime is not None  # created with the first rpc_call slot
        return self._runtime


def _arg(request: Request, name: str) -> Value:
    if name not in request.args:
        raise KeyError(f"argument {name!r} is missing")
    return request.args[name]


def _optional_str(request: Request, name: str, default: str) -> str:
    """A str argument that older requests leave out: `default` then."""
    return _str(request, name) if name in request.args else default


def _int(request: Request, name: str) -> int:
    value = _arg(request, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"argument {name!r} must be an int, got {value!r}")
    return value


def _bool(request: Request, name: str) -> bool:
    value = _arg(request, name)
    if not isinstance(value, bool):
        raise TypeError(f"argument {name!r} must be a bool, got {value!r}")
    return value


def _str(request: Request, name: str) -> str:
    value = _arg(request, name)
    if not isinstance(value, str):
        raise TypeError(f"argument {name!r} must be a str, got {value!r}")
    return value


def _timeout(request: Request) -> int:
    """0 ms, the request's finite wait, or INFINITE."""
    name = _str(request, "timeout")
    if name == "finite":
        return request.wait_ms
    return _TIMEOUTS[name]


def _missing(request: Request, what: str) -> AdapterFault:
    return AdapterFault(f"{request.slot}.{request.op}: {what}; the model does not offer this "
                        f"operation here, so the harness should not have sent it")


def _observe(command: Command) -> Observation:
    return Observation(command.code, dict(command.outputs))


# --- com_call ------------------------------------------------------------------------------------


def _pointer(s: _ComSlot, request: Request) -> Unknown:
    if s.pointer is None:
        raise _missing(request, "the slot has no call object (not created, or released)")
    return s.pointer


def _call_object(s: _ComSlot, request: Request) -> CallObject:
    _pointer(s, request)
    assert s.call_object is not None
    return s.call_object


def _query(pointer: Unknown, iid: IID, cls: type[Unknown]) -> tuple[int, Unknown | None]:
    hr, found = pointer.QueryInterface(iid)
    if found is not None and not isinstance(found, cls):
        raise AdapterFault(f"QueryInterface({iid.value}) gave a {type(found).__name__}")
    return hr, found


def _sync(s: _ComSlot, request: Request) -> com.SystemEvent:
    hr, sync = _query(_pointer(s, request), IID.ISynchronize, com.SystemEvent)
    if hr != com.S_OK or not isinstance(sync, com.SystemEvent):
        raise AdapterFault(f"{request.slot}: QueryInterface(ISynchronize) on the call object "
                           f"failed with 0x{hr:08X}")
    sync.Release()  # the adapter's own reference goes at once; the object outlives the call
    return sync


def _held_call(s: _ComSlot, request: Request) -> com.BeginCall:
    call = s.last_call
    if call is None or not call.held or call.abandoned:
        raise _missing(request, "the test server holds no current call")
    return call


def com_QueryInterface(session: ReferenceSession, s: _ComSlot, request: Request) -> Observation:
    iid = IID[_str(request, "iid")]
    target = s.server_object if iid is IID.ICallFactory else _pointer(s, request)
    hr, found = target.QueryInterface(iid)
    if found is not None:
        found.Release()
    return Observation(hr)


def com_CreateCall(session: ReferenceSession, s: _ComSlot, request: Request) -> Observation:
    riid = IID.AsyncIFoo if _str(request, "riid") == "async" else IID.IFoo
    aggregate = _bool(request, "aggregate")
    if s.pointer is not None or s.released:
        raise _missing(request, "the slot already holds a call object")
    hr, factory = s.server_object.QueryInterface(IID.ICallFactory)
    if hr != com.S_OK or not isinstance(factory, com.ServerObject):
        return Observation(hr)  # no ICallFactory: the client cannot ask for a call object
    try:
        if aggregate:
            outer = ControllingUnknown()
            hr, inner = factory.CreateCall(riid, outer, IID.IUnknown)
            if hr == com.S_OK and isinstance(inner, CallObject):
                outer.inner = inner
                s.pointer, s.call_object = outer, inner
        else:
            hr, made = factory.CreateCall(riid, None, riid)
            if hr == com.S_OK and isinstance(made, CallObject):
                s.pointer, s.call_object = made, made
    finally:
        factory.Release()  # COM-CF-07: the call object stays usable without ICallFactory
    return Observation(hr)


def com_Begin_(session: ReferenceSession, s: _ComSlot, request: Request) -> Observation:
    call_object = _call_object(s, request)
    hr = call_object.Begin_M()
    if hr == com.S_OK:
        s.last_call = call_object.current_call
    return Observation(hr)


def com_Wait(session: ReferenceSession, s: _ComSlot, request: Request) -> Observation:
    return Observation(_sync(s, request).Wait(com.COWAIT_DEFAULT, _timeout(request)))


def com_Finish_(session: ReferenceSession, s: _ComSlot, request: Request) -> Observation:
    hr, out = _call_object(s, request).Finish_M()
    return Observation(hr, {"out": out} if hr == com.S_OK and out is not None else {})


def com_Cancel(session: ReferenceSession, s: _ComSlot, request: Request) -> Observation:
    hr, cancel = _query(_pointer(s, request), IID.ICancelMethodCalls, CallObject)
    if not isinstance(cancel, CallObject):
        return Observation(hr)
    try:
        return Observation(cancel.Cancel(_int(request, "seconds")))
    finally:
        cancel.Release()


def com_TestCancel(session: ReferenceSession, s: _ComSlot, request: Request) -> Observation:
    hr, cancel = _query(_pointer(s, request), IID.ICancelMethodCalls, CallObject)
    if not isinstance(cancel, CallObject):
        return Observation(hr)
    try:
        return Observation(cancel.TestCancel())
    finally:
        cancel.Release()


def com_Release(session: ReferenceSession, s: _ComSlot, request: Request) -> Observation:
    refs = _pointer(s, request).Release()
    s.pointer, s.released = None, True
    return Observation(refs)


def com_sync_call(session: ReferenceSession, s: _ComSlot, request: Request) -> Observation:
    hr, out = s.server_object.M(_int(request, "out"))
    return Observation(hr, {"out": out})


def com_probe_sta_wait(session: ReferenceSession, s: _ComSlot, request: Request) -> Observation:
    sync = _sync(s, request)
    if s.sta is None:
        s.sta = ThreadContext(f"{request.slot}-sta", kernel.Apartment.STA)
    pumped: list[kernel.MSG] = []
    window = kernel.Window(s.sta, pumped.append)
    kernel.PostMessage(window, kernel.WM_USER)
    with kernel.attach(s.sta):
        hr = sync.Wait(com.COWAIT_DEFAULT, request.wait_ms)
    window.destroy()
    return Observation(hr, {"pumped": bool(pumped)})


def com_server_signal(session: ReferenceSession, s: _ComSlot, request: Request) -> Observation:
    call = _held_call(s, request)
    return _observe(call.mailbox.send(ServerAction.SIGNAL, out=_int(request, "out"),
                                      then_impersonate=_bool(request, "then_impersonate")))


def com_server_signal_late(session: ReferenceSession, s: _ComSlot, request: Request) -> Observation:
    orphans = [c for c in s.server.held_calls() if c.abandoned]
    if not orphans:
        raise _missing(request, "the test server holds no call the client abandoned")
    return _observe(orphans[0].mailbox.send(ServerAction.SIGNAL, out=1, then_impersonate=False))


def com_server_test_cancel(session: ReferenceSession, s: _ComSlot, request: Request) -> Observation:
    return _observe(_held_call(s, request).mailbox.send(ServerAction.TEST_CANCEL))


def com_server_impersonate(session: ReferenceSession, s: _ComSlot, request: Request) -> Observation:
    return _observe(_held_call(s, request).mailbox.send(ServerAction.IMPERSONATE))


# --- event ---------------------------------------------------------------------------------------


def _event(s: _EventSlot, request: Request) -> com.SystemEvent:
    if s.event is None:
        raise _missing(request, "the event has not been created")
    return s.event


def event_CoCreateInstance(session: ReferenceSession, s: _EventSlot, request: Request) -> Observation:
    if s.event is not None:
        raise _missing(request, "the slot already holds an object")
    s.event = com.make_event(session.host, _str(request, "clsid"))
    return Observation(com.S_OK)


def event_Signal(session: ReferenceSession, s: _EventSlot, request: Request) -> Observation:
    return Observation(_event(s, request).Signal())


def event_Reset(session: ReferenceSession, s: _EventSlot, request: Request) -> Observation:
    return Observation(_event(s, request).Reset())


def event_Wait(session: ReferenceSession, s: _EventSlot, request: Request) -> Observation:
    return Observation(_event(s, request).Wait(com.COWAIT_DEFAULT, _timeout(request)))


def event_GetHandle(session: ReferenceSession, s: _EventSlot, request: Request) -> Observation:
    hr, handle = _event(s, request).GetHandle()
    return Observation(hr, {"nonnull": handle is not None})


def event_SetEventHandle(session: ReferenceSession, s: _EventSlot, request: Request) -> Observation:
    event = _event(s, request)
    current = event._current()  # not GetHandle: a seeded fault may make it return NULL
    return Observation(event.SetEventHandle(KernelEvent(manual_reset=current.manual_reset)))


# --- container -----------------------------------------------------------------------------------


def _container(s: _ContainerSlot, request: Request) -> com.SynchronizeContainer:
    if s.container is None:
        raise _missing(request, "the container has not been created")
    return s.container


def _member(s: _ContainerSlot, request: Request) -> com.SystemEvent:
    index = _int(request, "index")
    if not 0 <= index < len(s.members):
        raise _missing(request, f"the container has no member {index}")
    return s.members[index]


def container_CoCreateInstance(session: ReferenceSession, s: _ContainerSlot,
                               request: Request) -> Observation:
    if s.container is not None:
        raise _missing(request, "the slot already holds a container")
    s.container = com.SynchronizeContainer(session.host)
    return Observation(com.S_OK)


def container_AddSynchronize(session: ReferenceSession, s: _ContainerSlot,
                             request: Request) -> Observation:
    container = _container(s, request)
    member = com.ManualResetEvent(session.host)
    member.Reset()
    hr = container.AddSynchronize(member)
    if hr == com.S_OK:
        s.members.append(member)
    return Observation(hr)


def container_WaitMultiple(session: ReferenceSession, s: _ContainerSlot,
                           request: Request) -> Observation:
    hr, signalled = _container(s, request).WaitMultiple(com.COWAIT_DEFAULT, _timeout(request))
    if signalled is None:
        return Observation(hr)
    signalled.Release()
    index = next((i for i, m in enumerate(s.members) if m is signalled), -1)
    return Observation(hr, {"member": index})


def container_member_signal(session: ReferenceSession, s: _ContainerSlot,
                            request: Request) -> Observation:
    return Observation(_member(s, request).Signal())


def container_member_reset(session: ReferenceSession, s: _ContainerSlot,
                           request: Request) -> Observation:
    return Observation(_member(s, request).Reset())


# --- cowait --------------------------------------------------------------------------------------

_COWAIT_FLAGS = {"none": 0, "waitall": com.COWAIT_WAITALL, "alertable": com.COWAIT_ALERTABLE}
_UNDEFINED_FLAG = 0x80000000  # no COWAIT_FLAGS value has this bit


def cowait_CoWaitForMultipleHandles(session: ReferenceSession, s: _CowaitSlot,
                                    request: Request) -> Observation:
    form = _str(request, "form")
    flags = _COWAIT_FLAGS[_str(request, "flags")]
    if form == "bad_flags":
        flags |= _UNDEFINED_FLAG
    count = 0 if form in ("zero_count", "null_handles_zero_count") else len(s.handles)
    handles = None if form in ("null_handles", "null_handles_zero_count") else s.handles
    index = None if form == "null_index" else com.DWORD()
    if form not in ("valid", "null_index", "null_handles", "zero_count",
                    "null_handles_zero_count", "bad_flags"):
        raise ValueError(f"unknown form {form!r}")
    hr = com.CoWaitForMultipleHandles(flags, _timeout(request), count, handles, index,
                                      host=session.host)
    return Observation(hr, {} if index is None else {"index": index.value})


def cowait_set_handle(session: ReferenceSession, s: _CowaitSlot, request: Request) -> Observation:
    ok = s.handles[_int(request, "index")].set()  # SetEvent
    return Observation(com.S_OK if ok else com.E_UNEXPECTED)


def cowait_reset_handle(session: ReferenceSession, s: _CowaitSlot,
                        request: Request) -> Observation:
    ok = s.handles[_int(request, "index")].reset()  # ResetEvent
    return Observation(com.S_OK if ok else com.E_UNEXPECTED)


def cowait_queue_apc(session: ReferenceSession, s: _CowaitSlot, request: Request) -> Observation:
    ok = kernel.current_thread().queue_apc(lambda: None)  # QueueUserAPC to the client thread
    return Observation(com.S_OK if ok else com.E_UNEXPECTED)


# --- rpc_call ------------------------------------------------------------------------------------


def _pointer_value(value: object) -> int:
    """How a pointer field reads from outside: 0 for NULL, 1 for anything else."""
    return 0 if value is None else 1


def _server_call(s: _RpcSlot, request: Request) -> rpc.DispatchedCall:
    call = s.server_call
    if call is None or call.ended:
        raise _missing(request, "the test server holds no call for this handle")
    return call


def _close_resources(s: _RpcSlot) -> None:
    if s.resources is not None:
        s.resources.close()
        s.resources = None


def rpc_RpcAsyncInitializeHandle(session: ReferenceSession, s: _RpcSlot,
                                 request: Request) -> Observation:
    pAsync = s.pAsync
    user_info = object()  # the application's own value: RpcAsyncInitializeHandle must keep it
    pAsync.UserInfo = user_info
    status = rpc.RpcAsyncInitializeHandle(
        pAsync, rpc.SIZEOF_RPC_ASYNC_STATE + _SIZES[_str(request, "size")], session.host)
    if status != rpc.RPC_S_OK:
        return Observation(status)
    size: Value = ("sizeof(RPC_ASYNC_STATE)" if pAsync.Size == rpc.SIZEOF_RPC_ASYNC_STATE
                   else pAsync.Size)
    return Observation(status, {
        "Signature": pAsync.Signature, "Size": size, "Lock": pAsync.Lock, "Flags": pAsync.Flags,
        "StubInfo": _pointer_value(pAsync.StubInfo),
        "RuntimeInfo": _pointer_value(pAsync.RuntimeInfo),
        "Reserved": next((r for r in pAsync.Reserved if r), 0),
        "UserInfo_kept": pAsync.UserInfo is user_info,
    })


def rpc_AsyncCall(session: ReferenceSession, s: _RpcSlot, request: Request) -> Observation:
    kind = _NOTIFY[_str(request, "notify")]
    binding = (session._good_binding if _str(request, "binding") == "good"
               else rpc.RpcBinding(server=False))
    _close_resources(s)  # the previous call's resources, if the client still had them
    # u.APC.hThread: NULL (the issuing thread, RPC-CLI-NOTIFY-02) or an explicit handle of the
    # issuing thread; a request without the field has the explicit form.
    null_thread = _optional_str(request, "hThread", "explicit") == "NULL"
    if null_thread and kind != rpc.RPC_NOTIFICATION_TYPES.RpcNotificationTypeApc:
        raise ValueError("hThread NULL is a form of NotificationType Apc only")
    resources = CallResources(kind, kernel.current_thread(), null_thread=null_thread)
    resources.fill(s.pAsync)
    try:
        session.runtime.TestProc_async(binding, s.pAsync)
    except rpc.RpcException as exc:
        resources.close()  # RPC-CLI-CALL-02: no notification will come; nothing else to do
        return Observation(exc.code)
    s.resources = resources
    call = s.pAsync.RuntimeInfo
    s.server_call = call.server if isinstance(call, rpc.ClientCall) else None
    return Observation(rpc.RPC_S_OK)


def rpc_RpcAsyncGetCallStatus(session: ReferenceSession, s: _RpcSlot,
                              request: Request) -> Observation:
    return Observation(session.runtime.RpcAsyncGetCallStatus(s.pAsync))


def rpc_RpcAsyncCompleteCall(session: ReferenceSession, s: _RpcSlot,
                             request: Request) -> Observation:
    had_call = isinstance(s.pAsync.RuntimeInfo, rpc.ClientCall)
    reply = rpc.Reply()
    status = session.runtime.RpcAsyncCompleteCall(s.pAsync, reply)
    if status == rpc.RPC_S_ASYNC_CALL_PENDING:
        return Observation(status)
    if not had_call and status in (rpc.RPC_S_INVALID_ASYNC_HANDLE, rpc.RPC_S_INVALID_BINDING):
        return Observation(status)  # no call on this handle: nothing was completed
    # A final status: a call was completed, also when an AsyncCall racing with this request put
    # the call on the handle after `had_call` was read (a parallel case saw that path return
    # RPC_S_CALL_CANCELLED without the outputs every completion has).
    outputs: dict[str, Value] = {
        "resources_open": s.resources.still_open() if s.resources is not None else True}
    if status == rpc.RPC_S_OK:
        outputs["reply"] = reply.value
    _close_resources(s)  # final: the client closes what it supplied (RPC-CLI-COMPLETE-10)
    return Observation(status, outputs)


def rpc_RpcAsyncCancelCall(session: ReferenceSession, s: _RpcSlot, request: Request) -> Observation:
    return Observation(session.runtime.RpcAsyncCancelCall(s.pAsync, _bool(request, "abort")))


def rpc_wait_notification(session: ReferenceSession, s: _RpcSlot, request: Request) -> Observation:
    if s.resources is None:
        return Observation(0)
    event = s.resources.wait(s.pAsync, request.wait_ms)
    return Observation(0) if event is None else Observation(1, {"Event": event})


def rpc_invalid_handle(session: ReferenceSession, s: _RpcSlot, request: Request) -> Observation:
    zeroed = rpc.RPC_ASYNC_STATE()
    runtime = session.runtime
    calls: dict[str, Callable[[], int]] = {
        "RpcAsyncGetCallStatus": lambda: runtime.RpcAsyncGetCallStatus(zeroed),
        "RpcAsyncCompleteCall": lambda: runtime.RpcAsyncCompleteCall(zeroed, rpc.Reply()),
        "RpcAsyncCancelCall": lambda: runtime.RpcAsyncCancelCall(zeroed, True),
        "RpcAsyncAbortCall": lambda: runtime.RpcAsyncAbortCall(
            zeroed, codes.ERROR_ACCESS_DENIED.value),
    }
    return Observation(calls[_str(request, "api")]())


def rpc_sync_call(session: ReferenceSession, s: _RpcSlot, request: Request) -> Observation:
    try:
        reply = session.runtime.TestProc(session._good_binding, _int(request, "reply"))
    except rpc.RpcException as exc:
        return Observation(exc.code)
    return Observation(rpc.RPC_S_OK, {"reply": reply})


def _later(request: Request) -> bool:
    """The `thread` of a server action: `routine` (the default) or `later`, another thread once
    the manager routine has returned without ending the call."""
    thread = _optional_str(request, "thread", "routine")
    if thread not in ("routine", "later"):
        raise ValueError(f"thread must be routine or later, got {thread!r}")
    return thread == "later"


def rpc_server_complete(session: ReferenceSession, s: _RpcSlot, request: Request) -> Observation:
    call = _server_call(s, request)
    return _observe(session.runtime.test_server.command(call, ServerAction.COMPLETE,
                                                        reply=_int(request, "reply"),
                                                        later=_later(request)))


def rpc_server_abort(session: ReferenceSession, s: _RpcSlot, request: Request) -> Observation:
    call = _server_call(s, request)
    return _observe(session.runtime.test_server.command(call, ServerAction.ABORT,
                                                        code=_int(request, "code"),
                                                        later=_later(request)))


def rpc_server_raise(session: ReferenceSession, s: _RpcSlot, request: Request) -> Observation:
    if _later(request):
        raise ValueError("a raise after the routine handed the call off is undefined "
                         "(RPC-SRV-EXC-02): the test server does not do it")
    call = _server_call(s, request)
    return _observe(session.runtime.test_server.command(call, ServerAction.RAISE,
                                                        code=_int(request, "code")))


def rpc_server_test_cancel(session: ReferenceSession, s: _RpcSlot, request: Request) -> Observation:
    """RpcServerTestCancel in the manager routine: once, or (timeout finite) again until it
    reports the cancel or the request's wait is over."""
    call = _server_call(s, request)
    command = session.runtime.test_server.command
    answer = command(call, ServerAction.TEST_CANCEL)
    if _str(request, "timeout") == "finite":
        deadline = time.monotonic() + request.wait_ms / 1000.0
        while answer.code != rpc.RPC_S_OK and time.monotonic() < deadline:
            time.sleep(min(0.005, max(0.0, deadline - time.monotonic())))
            answer = command(call, ServerAction.TEST_CANCEL)
    return _observe(answer)


def rpc_server_test_cancel_idle(session: ReferenceSession, s: _RpcSlot,
                                request: Request) -> Observation:
    return Observation(session.runtime.test_cancel_on_idle_thread())


def rpc_server_handle_live(session: ReferenceSession, s: _RpcSlot, request: Request) -> Observation:
    call = s.server_call
    return Observation(1 if call is not None and session.runtime.server_handle_live(call) else 0)


# --- the table -----------------------------------------------------------------------------------

# --- thread_cancel -------------------------------------------------------------------------------


def _reserved(request: Request) -> object:
    return None if _str(request, "pReserved") == "NULL" else object()


def tc_CoEnableCallCancellation(session: ReferenceSession, s: _ThreadCancelSlot,
                                request: Request) -> Observation:
    reserved = _reserved(request)
    return Observation(s.thread.run(lambda: s.thread.CoEnableCallCancellation(reserved)))


def tc_CoDisableCallCancellation(session: ReferenceSession, s: _ThreadCancelSlot,
                                 request: Request) -> Observation:
    reserved = _reserved(request)
    return Observation(s.thread.run(lambda: s.thread.CoDisableCallCancellation(reserved)))


def tc_reinitialize(session: ReferenceSession, s: _ThreadCancelSlot,
                    request: Request) -> Observation:
    def again() -> int:
        s.thread.CoUninitialize()
        return s.thread.CoInitializeEx()
    return Observation(s.thread.run(again))


def tc_start_sync_call(session: ReferenceSession, s: _ThreadCancelSlot,
                       request: Request) -> Observation:
    if s.call is not None:
        raise _missing(request, "the test server still holds this thread's call")
    # COM-CCAN-05: whether the call can be cancelled is sampled now, on the client thread.
    call = tc.SyncCall(session.host, enabled=False)

    def start() -> None:
        call.enabled = s.thread.count > 0
        s.thread.sync_call(call, tc.serve)
    s.thread.post(start)
    if not call.received.wait(COMMAND_SECONDS):
        raise AdapterFault(f"{request.slot}.start_sync_call: the test server never got the call")
    s.call = call
    return Observation(tc.S_OK)


def _held(s: _ThreadCancelSlot, request: Request) -> tc.SyncCall:
    if s.call is None:
        raise _missing(request, "the test server holds no call from this thread")
    return s.call


def tc_server_test_cancel(session: ReferenceSession, s: _ThreadCancelSlot,
                          request: Request) -> Observation:
    return Observation(tc.command(_held(s, request), "test_cancel"))


def tc_server_return(session: ReferenceSession, s: _ThreadCancelSlot,
                     request: Request) -> Observation:
    call = _held(s, request)
    tc.command(call, "return")
    s.call = None
    result = call.result
    if result is None:
        raise AdapterFault(f"{request.slot}.server_return: the client thread's call did not "
                           f"return")
    return Observation(result)  # the server's own code (S_OK) is not what the row checks


def tc_CoCancelCall(session: ReferenceSession, s: _ThreadCancelSlot,
                    request: Request) -> Observation:
    return Observation(session.cancel_registry.CoCancelCall(s.thread.tid, 0))


def tc_CoGetCancelObject(session: ReferenceSession, s: _ThreadCancelSlot,
                         request: Request) -> Observation:
    iid = _str(request, "iid")
    hr, found = session.cancel_registry.CoGetCancelObject(s.thread.tid, iid)
    if hr != tc.S_OK:
        return Observation(hr)
    own = found is s.own
    if isinstance(found, tc.CancelObject):
        found.Release()
    return Observation(hr, {"own": own})


def tc_CoSetCancelObject(session: ReferenceSession, s: _ThreadCancelSlot,
                         request: Request) -> Observation:
    which = _str(request, "pUnk")
    if which == "NULL":
        hr = s.thread.run(lambda: s.thread.CoSetCancelObject(None))
        return Observation(hr, {"held": s.own.refs - 1})
    target = s.own if which == "cancel_object" else tc.CancelObject(cancel_interface=False)
    hr = s.thread.run(lambda: s.thread.CoSetCancelObject(target))
    return Observation(hr, {"held": target.refs - 1})


# --- rpc_order -----------------------------------------------------------------------------------

# How long the test server waits for the next dispatch, and the client for a completed call's
# event: a healthy runtime takes microseconds.
ORDER_WAIT_SECONDS = 2.0


def order_RpcBindingSetOption(session: ReferenceSession, s: _OrderSlot,
                              request: Request) -> Observation:
    value = _bool(request, "value")
    return Observation(s.binding.RpcBindingSetOption(order.RPC_C_OPT_BINDING_NONCAUSAL, int(value)))


def order_issue_async(session: ReferenceSession, s: _OrderSlot, request: Request) -> Observation:
    s.calls.append(s.binding.TestProc_async())
    return Observation(order.RPC_S_OK)


def order_server_next_dispatch(session: ReferenceSession, s: _OrderSlot,
                               request: Request) -> Observation:
    number = s.binding.next_dispatched(ORDER_WAIT_SECONDS)
    # -1: no call was dispatched within the wait (the model never allows it).
    return Observation(order.RPC_S_OK, {"call": -1 if number is None else number})


def order_server_complete(session: ReferenceSession, s: _OrderSlot,
                          request: Request) -> Observation:
    number = _int(request, "call")
    if number >= len(s.calls):
        raise _missing(request, f"call {number} was never issued")
    code = s.binding.server_complete(number, number)
    if code != order.RPC_S_OK:
        return Observation(code)
    status, reply = s.binding.wait_and_complete(s.calls[number], ORDER_WAIT_SECONDS)
    return Observation(status, {"reply": reply})


def order_sync_call(session: ReferenceSession, s: _OrderSlot, request: Request) -> Observation:
    return Observation(order.RPC_S_OK, {"before": s.binding.TestProc()})


def order_RpcAsyncRegisterInfo(session: ReferenceSession, s: _OrderSlot,
                               request: Request) -> Observation:
    return Observation(s.binding.RpcAsyncRegisterInfo())


# --- rpc_pipe ------------------------------------------------------------------------------------

# How long the client waits for a send-complete notification after a push.
SEND_COMPLETE_SECONDS = 0.5


def _pipe_call(s: _PipeSlot, request: Request) -> pipe.PipeCall:
    if s.call is None:
        raise _missing(request, "no pipe call was started in this slot")
    return s.call


def pipe_start_call(session: ReferenceSession, s: _PipeSlot, request: Request) -> Observation:
    flags = pipe.RPC_C_NOTIFY_ON_SEND_COMPLETE if _bool(request, "send_complete") else 0
    s.call = pipe.PipeCall(session.host, flags)
    return Observation(pipe.RPC_S_OK)


def pipe_push(session: ReferenceSession, s: _PipeSlot, request: Request) -> Observation:
    call = _pipe_call(s, request)
    code = call.push([7] * _int(request, "n"))
    if code != pipe.RPC_S_OK or not call.Flags & pipe.RPC_C_NOTIFY_ON_SEND_COMPLETE:
        return Observation(code)
    notified = call.send_complete.wait(SEND_COMPLETE_SECONDS)
    call.send_complete.clear()
    return Observation(code, {"notified": notified})


def pipe_pull(session: ReferenceSession, s: _PipeSlot, request: Request) -> Observation:
    buf: list[int] = []
    code, count = _pipe_call(s, request).pull(buf, 1)
    return Observation(code, {"count": count} if code == pipe.RPC_S_OK else {})


def pipe_RpcAsyncCompleteCall(session: ReferenceSession, s: _PipeSlot,
                              request: Request) -> Observation:
    return Observation(_pipe_call(s, request).RpcAsyncCompleteCall())


def pipe_server_drain(session: ReferenceSession, s: _PipeSlot, request: Request) -> Observation:
    return Observation(_pipe_call(s, request).server_drain())


def pipe_server_push(session: ReferenceSession, s: _PipeSlot, request: Request) -> Observation:
    return Observation(_pipe_call(s, request).server_push([9] * _int(request, "n")))


def pipe_server_complete(session: ReferenceSession, s: _PipeSlot,
                         request: Request) -> Observation:
    return Observation(_pipe_call(s, request).server_complete())


_Handler = Callable[[ReferenceSession, _Slot, Request], Observation]


def _for(machine: str, slot_type: type, handlers: Mapping[str, Callable[..., Observation]]
         ) -> dict[tuple[str, str], _Handler]:
    """The handlers of one machine, each checking that it got that machine's kind of slot."""
    def checked(function: Callable[..., Observation]) -> _Handler:
        def handler(session: ReferenceSession, state: _Slot, request: Request) -> Observation:
            if not isinstance(state, slot_type):
                raise AdapterFault(f"{request.slot}: holds a {type(state).__name__}, not a "
                                   f"{machine} object")
            return function(session, state, request)
        return handler
    return {(machine, op): checked(function) for op, function in handlers.items()}


_HANDLERS: dict[tuple[str, str], _Handler] = {
    **_for("com_call", _ComSlot, {
        "QueryInterface": com_QueryInterface, "CreateCall": com_CreateCall,
        "Begin_": com_Begin_, "Wait": com_Wait, "Finish_": com_Finish_, "Cancel": com_Cancel,
        "TestCancel": com_TestCancel, "Release": com_Release, "sync_call": com_sync_call,
        "probe_sta_wait": com_probe_sta_wait, "server_signal": com_server_signal,
        "server_signal_late": com_server_signal_late,
        "server_test_cancel": com_server_test_cancel,
        "server_impersonate": com_server_impersonate,
    }),
    **_for("event", _EventSlot, {
        "CoCreateInstance": event_CoCreateInstance, "Signal": event_Signal,
        "Reset": event_Reset, "Wait": event_Wait, "GetHandle": event_GetHandle,
        "SetEventHandle": event_SetEventHandle,
    }),
    **_for("container", _ContainerSlot, {
        "CoCreateInstance": container_CoCreateInstance,
        "AddSynchronize": container_AddSynchronize, "WaitMultiple": container_WaitMultiple,
        "member_signal": container_member_signal, "member_reset": container_member_reset,
    }),
    **_for("cowait", _CowaitSlot, {
        "CoWaitForMultipleHandles": cowait_CoWaitForMultipleHandles,
        "set_handle": cowait_set_handle, "reset_handle": cowait_reset_handle,
        "queue_apc": cowait_queue_apc,
    }),
    **_for("rpc_call", _RpcSlot, {
        "RpcAsyncInitializeHandle": rpc_RpcAsyncInitializeHandle, "AsyncCall": rpc_AsyncCall,
        "RpcAsyncGetCallStatus": rpc_RpcAsyncGetCallStatus,
        "RpcAsyncCompleteCall": rpc_RpcAsyncCompleteCall,
        "RpcAsyncCancelCall": rpc_RpcAsyncCancelCall,
        "wait_notification": rpc_wait_notification, "invalid_handle": rpc_invalid_handle,
        "sync_call": rpc_sync_call, "server_complete": rpc_server_complete,
        "server_abort": rpc_server_abort, "server_raise": rpc_server_raise,
        "server_test_cancel": rpc_server_test_cancel,
        "server_test_cancel_idle": rpc_server_test_cancel_idle,
        "server_handle_live": rpc_server_handle_live,
    }),
    **_for("thread_cancel", _ThreadCancelSlot, {
        "CoEnableCallCancellation": tc_CoEnableCallCancellation,
        "CoDisableCallCancellation": tc_CoDisableCallCancellation,
        "reinitialize": tc_reinitialize, "start_sync_call": tc_start_sync_call,
        "CoCancelCall": tc_CoCancelCall, "CoGetCancelObject": tc_CoGetCancelObject,
        "CoSetCancelObject": tc_CoSetCancelObject,
        "server_test_cancel": tc_server_test_cancel, "server_return": tc_server_return,
    }),
    **_for("rpc_order", _OrderSlot, {
        "RpcBindingSetOption": order_RpcBindingSetOption, "issue_async": order_issue_async,
        "server_next_dispatch": order_server_next_dispatch,
        "server_complete": order_server_complete, "sync_call": order_sync_call,
        "RpcAsyncRegisterInfo": order_RpcAsyncRegisterInfo,
    }),
    **_for("rpc_pipe", _PipeSlot, {
        "start_call": pipe_start_call, "push": pipe_push, "pull": pipe_pull,
        "RpcAsyncCompleteCall": pipe_RpcAsyncCompleteCall, "server_drain": pipe_server_drain,
        "server_push": pipe_server_push, "server_complete": pipe_server_complete,
    }),
    **_for("rpc_notif", NotifSlot, {
        op: (lambda session, s, request, f=f: f(s, request)) for op, f in NOTIF_HANDLERS.items()
    }),
}
