"""The reference COM runtime: system events, the synchronization container, call objects, test server.

Written from spec/DOMAIN.md sections 1.1 and 2.2 to 2.10, not from the model. Each object is a
real concurrent object: state under a lock, waits on kernel events (`kernel.KernelEvent`), and a
server whose Begin_ processing runs on a worker thread.

* `ManualResetEvent` and `StdEvent` (CLSID_ManualResetEvent, CLSID_StdEvent) implement
  ISynchronize, ISynchronizeHandle and ISynchronizeEvent over a kernel event; Wait is
  `CoWaitForMultipleHandles`, so it pumps messages on an STA thread (COM-WAIT-06).
* `SynchronizeContainer` (CLSID_SynchronizeContainer) holds up to 63 members and waits for any
  (COM-CONT-01..05).
* `ServerObject` is the client's (standard-marshaled) view of the test server's object: it
  answers QueryInterface(ICallFactory) only if the server implements ICallFactory, and its
  `CreateCall` makes a `CallObject`.
* `CallObject` is a proxy call object: AsyncIFoo (`Begin_M`/`Finish_M`), ISynchronize by
  aggregating a `ManualResetEvent` (COM-SYNC-06), ICancelMethodCalls and IClientSecurity.
* `TestServer` is the harness's server (DESIGN.md principle 6): each Begin_ is processed on a
  worker thread that waits for the harness's commands (signal, impersonate, test for cancel).

Choices where the documentation leaves room (the adapter pins them):
* a wait that times out returns RPC_S_CALLPENDING (Wait is CoWaitForMultipleHandles, D-01);
* Begin_ with a call in flight returns RPC_S_CALLPENDING, the nearest real code to the
  undefined RPC_E_CALL_PENDING (D-02);
* a cancelled call reports RPC_E_CALL_CANCELED, the HRESULT TestCancel and CoCancelCall use
  (D-03);
* the call object aggregates a CLSID_ManualResetEvent, so a repeated Wait after the server
  signalled keeps returning S_OK (COM-SYNC-06, COM-SYNC-04);
* Cancel after the server signalled is refused with RPC_E_CALL_COMPLETE (COM-CANCEL-08);
* Finish_ of a cancelled call reports the cancelled code, even when the server signalled
  outputs (COM-FIN-05, COM-CANCEL-09);
* a new system event is non-signalled (as CreateEvent with bInitialState FALSE; COM-SYNC-05).
"""

from __future__ import annotations

import enum
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from callgate.conformance.implementations.reference import kernel
from callgate.conformance.implementations.reference.host import (
    COMMAND_SECONDS,
    Command,
    Host,
    Mailbox,
    ServerAction,
    ServerGone,
    WorkerPool,
)
from callgate.conformance.implementations.reference.kernel import KernelEvent
from callgate.model import codes

S_OK = codes.S_OK.value
E_NOINTERFACE = codes.E_NOINTERFACE.value
E_INVALIDARG = codes.E_INVALIDARG.value
E_UNEXPECTED = codes.E_UNEXPECTED.value
E_OUTOFMEMORY = codes.E_OUTOFMEMORY.value
RPC_E_CALL_CANCELED = codes.RPC_E_CALL_CANCELED.value
RPC_E_OUT_OF_RESOURCES = codes.RPC_E_OUT_OF_RESOURCES.value
RPC_S_CALLPENDING = codes.RPC_S_CALLPENDING.value
RPC_E_CALL_COMPLETE = codes.RPC_E_CALL_COMPLETE.value
RPC_E_TIMEOUT = codes.RPC_E_TIMEOUT.value
RPC_E_NO_SYNC = codes.RPC_E_NO_SYNC.value
CO_E_CANCEL_DISABLED = codes.CO_E_CANCEL_DISABLED.value
CLASS_E_NOAGGREGATION = 0x80040110  # winerror.h; only a seeded fault returns it

COWAIT_DEFAULT = 0
COWAIT_WAITALL = 1
COWAIT_ALERTABLE = 2
COWAIT_INPUTAVAILABLE = 4
COWAIT_DISPATCH_CALLS = 8
COWAIT_DISPATCH_WINDOW_MESSAGES = 0x10
COWAIT_VALID_FLAGS = (COWAIT_WAITALL | COWAIT_ALERTABLE | COWAIT_INPUTAVAILABLE
                      | COWAIT_DISPATCH_CALLS | COWAIT_DISPATCH_WINDOW_MESSAGES)
INFINITE = kernel.INFINITE

# The choices this runtime makes where the documentation allows several (see the docstring).
WAIT_TIMEOUT_CODE = RPC_S_CALLPENDING
# The 32-bit tick count the seeded fault event_wait_deadline_wraps adds timeouts to (a machine up
# for about 3 days): a deadline past 0xFFFFFFFF wraps into the past.
TICK_COUNT = 0x10000000
BEGIN_PENDING_CODE = RPC_S_CALLPENDING
CANCELLED_CODE = RPC_E_CALL_CANCELED
CALL_OBJECT_EVENT = "ManualResetEvent"  # the class CallObject aggregates (COM-SYNC-06)
NEW_EVENT_SIGNALED = False

# WaitForMultipleObjects takes at most 64 handles; the container keeps one slot free for the
# message queue of an STA's modal loop, hence 63 (COM-CONT-02).
CONTAINER_CAPACITY = 63


class IID(enum.Enum):
    """The interfaces this runtime knows, by Microsoft's names (IFoo is the test interface)."""

    IUnknown = "IUnknown"
    ICallFactory = "ICallFactory"
    ISynchronize = "ISynchronize"
    ISynchronizeHandle = "ISynchronizeHandle"
    ISynchronizeEvent = "ISynchronizeEvent"
    ISynchronizeContainer = "ISynchronizeContainer"
    ICancelMethodCalls = "ICancelMethodCalls"
    IClientSecurity = "IClientSecurity"
    IFoo = "IFoo"
    AsyncIFoo = "AsyncIFoo"


class Unknown:
    """IUnknown: a reference count and QueryInterface over the interfaces a class lists.

    `outer` makes the object an aggregated inner object: its (delegating) QueryInterface, AddRef
    and Release go to the controlling unknown, which holds the inner object's non-delegating
    IUnknown (`_inner_query`, `_nd_add_ref`, `_nd_release`).
    """

    INTERFACES: frozenset[IID] = frozenset({IID.IUnknown})

    def __init__(self, outer: Unknown | None = None) -> None:
        self._outer = outer
        self._refs = 1
        self._ref_lock = threading.Lock()

    def QueryInterface(self, riid: IID) -> tuple[int, Unknown | None]:
        if self._outer is not None:
            return self._outer.QueryInterface(riid)
        return self._inner_query(riid)

    def AddRef(self) -> int:
        return self._outer.AddRef() if self._outer is not None else self._nd_add_ref()

    def Release(self) -> int:
        return self._outer.Release() if self._outer is not None else self._nd_release()

    def _inner_query(self, riid: IID) -> tuple[int, Unknown | None]:
        if riid in self.INTERFACES:
            self.AddRef()
            return S_OK, self
        return E_NOINTERFACE, None

    def _nd_add_ref(self) -> int:
        with self._ref_lock:
            self._refs += 1
            return self._refs

    def _nd_release(self) -> int:
        with self._ref_lock:
            self._refs -= 1
            refs = self._refs
        if refs == 0:
            self._final_release()
        return refs

    def _final_release(self) -> None:
        """Called once, when the last reference goes."""


class ControllingUnknown(Unknown):
    """A client's outer object that aggregates one inner object (CreateCall with pCtrlUnk).

    Its QueryInterface answers IUnknown itself and hands every other interface to the inner
    object; its final Release releases the inner object's non-delegating IUnknown.
    """

    def __init__(self) -> None:
        super().__init__()
        self.inner: Unknown | None = None

    def _inner_query(self, riid: IID) -> tuple[int, Unknown | None]:
        if riid is IID.IUnknown or self.inner is None:
            return super()._inner_query(riid)
        return self.inner._inner_query(riid)

    def _final_release(self) -> None:
        inner, self.inner = self.inner, None
        if inner is not None:
            inner._nd_release()


@dataclass
class DWORD:
    """An out parameter (a DWORD the caller owns); 0xFFFFFFFF until written."""

    value: int = 0xFFFFFFFF


def CoWaitForMultipleHandles(dwFlags: int, dwTimeout: int, cHandles: int,
                             pHandles: Sequence[KernelEvent] | None, lpdwindex: DWORD | None,
                             pump: bool = True, host: Host | None = None) -> int:
    """CoWaitForMultipleHandles (section 2.11). The arguments are checked in D-06's order:
    lpdwindex (E_INVALIDARG), then *lpdwindex = 0, then pHandles (E_INVALIDARG), then the flags
    (E_INVALIDARG), then cHandles (RPC_E_NO_SYNC). On an STA thread this is the COM modal loop:
    messages that arrive while waiting are dispatched (COM-CWMH-09); on an MTA thread it simply
    blocks. A timeout gives RPC_S_CALLPENDING with *lpdwindex left 0 (COM-CWMH-03, -10).
    `host` carries the seeded faults of section 2.11 (None: none)."""
    def fault(name: str) -> bool:
        return host is not None and host.fault(name)

    if lpdwindex is None:
        return E_INVALIDARG
    if not fault("cowait_null_handles_no_index"):
        lpdwindex.value = 0
    if pHandles is None:
        return E_INVALIDARG
    if dwFlags & ~COWAIT_VALID_FLAGS:
        return E_INVALIDARG
    if cHandles == 0:
        if fault("cowait_zero_count_index_left"):
            lpdwindex.value = 0xFFFFFFFF  # the seeded fault: *lpdwindex not set to 0
        return RPC_E_NO_SYNC
    handles = tuple(pHandles[:cHandles])
    wait_all = bool(dwFlags & COWAIT_WAITALL) and not fault("cowait_waitall_any")
    thread = kernel.current_thread()
    alertable = bool(dwFlags & COWAIT_ALERTABLE) and not fault("cowait_alertable_ignored")
    sta = thread.apartment is kernel.Apartment.STA and pump  # pump False: a seeded fault
    deadline_ms = dwTimeout
    started = time.monotonic()
    while True:
        result = kernel.wait_any(handles, deadline_ms, thread=thread, alertable=alertable,
                                 wake_on_messages=sta, wait_all=wait_all)
        if sta and result == kernel.WAIT_OBJECT_0 + len(handles):
            while (msg := thread.peek_message()) is not None:
                kernel.DispatchMessage(msg)
            if dwTimeout != INFINITE:
                spent = int((time.monotonic() - started) * 1000)
                deadline_ms = max(0, dwTimeout - spent)
            continue
        if result == kernel.WAIT_TIMEOUT:
            return RPC_E_TIMEOUT if fault("cowait_timeout_code") else RPC_S_CALLPENDING
        if result == kernel.WAIT_IO_COMPLETION:
            lpdwindex.value = kernel.WAIT_IO_COMPLETION
            return S_OK
        if result == kernel.WAIT_FAILED:
            return E_UNEXPECTED
        lpdwindex.value = result - kernel.WAIT_OBJECT_0
        if fault("cowait_index_from_one"):
            lpdwindex.value += 1  # the seeded fault: a 1-based index
        return S_OK


def _wait(dwFlags: int, dwTimeout: int, handles: Sequence[KernelEvent], pump: bool = True
          ) -> tuple[int, int]:
    """CoWaitForMultipleHandles on the objects' own handles: (HRESULT, *lpdwindex)."""
    index = DWORD()
    hr = CoWaitForMultipleHandles(dwFlags, dwTimeout, len(handles), handles, index, pump)
    return hr, index.value


# --- system synchronization objects (COM-SYNC, COM-CONT) --------------------------------------


class SystemEvent(Unknown):
    """ISynchronize, ISynchronizeHandle and ISynchronizeEvent over a kernel event."""

    INTERFACES = frozenset({IID.IUnknown, IID.ISynchronize, IID.ISynchronizeHandle,
                            IID.ISynchronizeEvent})
    MANUAL_RESET = True

    def __init__(self, host: Host, outer: Unknown | None = None) -> None:
        super().__init__(outer)
        self._host = host
        self._lock = threading.Lock()
        # Called after each Wait that returns S_OK (only the seeded fault rewait_loses_out sets it).
        self._wait_ok: Callable[[], None] | None = None
        self._resets = 0  # Resets so far (only the seeded fault reset_pool_exhausted counts)
        # The deadline of the current call's first finite Wait (only the blind fault
        # call_wait_deadline_cached keeps it; Reset, at each Begin_, forgets it).
        self._deadline: float | None = None
        self._handle = KernelEvent(self._manual_reset(), NEW_EVENT_SIGNALED or (
            outer is None and host.fault("new_event_signalled")), name=type(self).__name__)
        if outer is None and host.fault("event_kernel_handle_shared"):
            key = ("event", type(self).__name__, kernel.current_thread())
            live = host.shared.get(key)
            if isinstance(live, KernelEvent) and not live.closed:
                self._handle = live
            else:
                host.shared[key] = self._handle
        if outer is None and not self.MANUAL_RESET and host.fault("std_event_signal_neighbour"):
            stds = host.shared.setdefault(("std events", kernel.current_thread()), [])
            assert isinstance(stds, list)
            stds.append(self)

    def _manual_reset(self) -> bool:
        return self.MANUAL_RESET

    def _current(self) -> KernelEvent:
        with self._lock:
            return self._handle

    def Signal(self) -> int:
        """ISynchronize::Signal: pending waits complete (COM-SYNC-01)."""
        self._host.pause()
        self._set()
        if not self.MANUAL_RESET and self._outer is None and \
                self._host.fault("std_event_signal_neighbour"):
            # The seeded fault: the table slot before this event's is signalled too.
            stds = self._host.shared.get(("std events", kernel.current_thread()), [])
            assert isinstance(stds, list)
            if self in stds and stds.index(self) > 0:
                stds[stds.index(self) - 1]._set()
        if self._host.fault("signal_pulses"):
            self._current().reset()
        return S_OK

    def _set(self) -> None:
        """Signal without an interleaving point: for callers that hold their own lock."""
        self._current().set()

    def Reset(self) -> int:
        """ISynchronize::Reset (COM-SYNC-02)."""
        if self._host.fault("reset_pool_exhausted"):
            with self._lock:  # the seeded fault: five Resets, then the pool is empty
                self._resets += 1
                if self._resets > 5:
                    return S_OK
        if not self._host.fault("reset_ignored"):
            self._current().reset()
        self._deadline = None
        if self._manual_reset() and self._host.fault("reset_forgets_manual_reset"):
            with self._lock:
                self._handle = KernelEvent(False, name=type(self).__name__)
        return S_OK

    def Wait(self, dwFlags: int, dwMilliseconds: int) -> int:
        """ISynchronize::Wait: S_OK once signalled, WAIT_TIMEOUT_CODE when the time is up."""
        if (0 < dwMilliseconds != INFINITE and not self._current().is_set()
                and self._host.fault("wait_lost_wakeup")):
            # Seeded fault: a Signal between this check and the sleep is lost (COM-SYNC-01).
            time.sleep(0.01)
            if self._current().is_set():
                time.sleep(dwMilliseconds / 1000.0)
                return WAIT_TIMEOUT_CODE
        if dwMilliseconds == 0 and self._host.fault("wait_zero_never_looks"):
            return WAIT_TIMEOUT_CODE
        if self._outer is not None and 0x80000000 <= dwMilliseconds < INFINITE and \
                self._host.fault("call_wait_signed_timeout"):
            return WAIT_TIMEOUT_CODE  # the seeded fault: a "negative" timeout has expired
        if self._outer is None and dwMilliseconds != INFINITE and \
                TICK_COUNT + dwMilliseconds > 0xFFFFFFFF and \
                self._host.fault("event_wait_deadline_wraps"):
            return WAIT_TIMEOUT_CODE  # the seeded fault: the deadline wrapped into the past
        if self._host.fault("wait_flags_misread"):
            return E_INVALIDARG  # the seeded fault: COWAIT_DEFAULT read as a flag it refuses
        if self._outer is not None and 0 < dwMilliseconds != INFINITE and \
                self._host.carries("call_wait_deadline_cached"):
            if self._deadline is None:
                self._deadline = time.monotonic() + dwMilliseconds / 1000.0
            elif time.monotonic() > self._deadline and \
                    self._host.fault("call_wait_deadline_cached"):
                return WAIT_TIMEOUT_CODE  # the blind fault: the first Wait's deadline is past
        hr, _ = _wait(dwFlags, dwMilliseconds, (self._current(),),
                      pump=not self._host.fault("sta_wait_no_pump"))
        if (hr == WAIT_TIMEOUT_CODE and self._outer is not None
                and self._host.fault("wait_ok_before_signal")):
            return S_OK
        if hr == S_OK and self._wait_ok is not None:
            self._wait_ok()
        if hr == S_OK and dwMilliseconds == INFINITE and not self.MANUAL_RESET and \
                self._outer is None and self._host.fault("std_event_infinite_no_reset"):
            self._current().set()  # the blind fault: the INFINITE path does not reset
        return hr

    def GetHandle(self) -> tuple[int, KernelEvent]:
        """ISynchronizeHandle::GetHandle (COM-SYNC-07)."""
        if self._host.fault("get_handle_null"):
            return S_OK, None  # type: ignore[return-value]
        return S_OK, self._current()

    def SetEventHandle(self, ph: KernelEvent) -> int:
        """ISynchronizeEvent::SetEventHandle: from now on this object is `ph` (COM-SYNC-08)."""
        if self._host.fault("set_event_handle_by_value"):
            return E_INVALIDARG
        with self._lock:
            self._handle = ph
        return S_OK

    def close(self) -> None:
        """Tear-down: waits still blocked on this object fail."""
        self._current().close()


class ManualResetEvent(SystemEvent):
    """CLSID_ManualResetEvent: Wait leaves it signalled (COM-SYNC-04)."""

    MANUAL_RESET = True

    def _manual_reset(self) -> bool:
        return not self._host.fault("manual_event_auto_resets")


class StdEvent(SystemEvent):
    """CLSID_StdEvent: a Wait that sees it signalled resets it (COM-SYNC-03)."""

    MANUAL_RESET = False

    def _manual_reset(self) -> bool:
        return self._host.fault("std_event_no_auto_reset")


class SynchronizeContainer(Unknown):
    """CLSID_SynchronizeContainer: ISynchronizeContainer over up to 63 members."""

    INTERFACES = frozenset({IID.IUnknown, IID.ISynchronizeContainer})

    def __init__(self, host: Host) -> None:
        super().__init__()
        self._host = host
        self._lock = threading.Lock()
        self._members: list[SystemEvent] = []
        if host.carries("container_limit_of_latest"):
            host.shared["latest container"] = self
        if host.carries("container_slots_per_process"):
            containers = host.shared.setdefault("containers", [])
            assert isinstance(containers, list)
            containers.append(self)

    def _process_members(self) -> int:
        """Blind fault container_slots_per_process: the live members of every container of the
        process (called under this container's lock; others are read without theirs)."""
        containers = self._host.shared.get("containers", [])
        assert isinstance(containers, list)
        return sum(1 for c in containers for m in list(c._members) if not m._current().closed)

    def AddSynchronize(self, pSync: Unknown) -> int:
        """Add a member; RPC_E_OUT_OF_RESOURCES when 63 are already in (COM-CONT-01, -02)."""
        hr, handle_source = pSync.QueryInterface(IID.ISynchronizeHandle)
        if hr != S_OK or not isinstance(handle_source, SystemEvent):
            return E_NOINTERFACE
        handle_source.Release()
        with self._lock:
            latest = self._host.shared.get("latest container")
            if isinstance(latest, SynchronizeContainer) and latest is not self and \
                    (len(latest._members) >= CONTAINER_CAPACITY) != \
                    (len(self._members) >= CONTAINER_CAPACITY) and \
                    self._host.fault("container_limit_of_latest"):
                # the blind fault: the latest container's count decides
                if len(latest._members) >= CONTAINER_CAPACITY:
                    return RPC_E_OUT_OF_RESOURCES
            elif len(self._members) >= CONTAINER_CAPACITY and not self._host.fault(
                    "container_accepts_64th"):
                return RPC_E_OUT_OF_RESOURCES
            if self._host.carries("container_slots_per_process") and \
                    self._process_members() >= CONTAINER_CAPACITY and \
                    self._host.fault("container_slots_per_process"):
                return RPC_E_OUT_OF_RESOURCES  # the blind fault: one array for the process
            pSync.AddRef()
            self._members.append(handle_source)
            if self._host.fault("add_returns_count"):
                return len(self._members)
        return S_OK

    def WaitMultiple(self, dwFlags: int, dwTimeOut: int) -> tuple[int, Unknown | None]:
        """Wait for any member: S_OK and the signalled member, RPC_E_TIMEOUT, or RPC_E_NO_SYNC
        for an empty container (COM-CONT-03..05)."""
        with self._lock:
            members = tuple(self._members)
        if not members and not self._host.fault("wait_multiple_empty_times_out"):
            return RPC_E_NO_SYNC, None
        handles = tuple(m._current() for m in members)
        if not handles:  # the seeded fault: wait on nothing until the time is up
            time.sleep(0 if dwTimeOut == INFINITE else dwTimeOut / 1000.0)
            return RPC_E_TIMEOUT, None
        hr, index = _wait(dwFlags, dwTimeOut, handles)
        if hr == S_OK and self._host.fault("wait_multiple_off_by_one"):
            index = (index + 1) % len(members)
        if hr == S_OK and self._host.fault("wait_multiple_last_member"):
            index = max(i for i, h in enumerate(handles) if h.is_set() or i == index)
        if hr == RPC_S_CALLPENDING and not self._host.fault("wait_multiple_timeout_code"):
            return RPC_E_TIMEOUT, None  # WaitMultiple documents RPC_E_TIMEOUT (D-01)
        if hr != S_OK or index >= len(members):
            return hr if hr != S_OK else E_UNEXPECTED, None
        members[index].AddRef()
        return S_OK, members[index]

    def _final_release(self) -> None:
        with self._lock:
            members, self._members = self._members, []
        for member in members:
            member.Release()


# --- the test server (DESIGN.md principle 6) ---------------------------------------------------


_call_numbers = itertools.count(1)


@dataclass(eq=False)
class BeginCall:
    """One Begin_ as it travels from the call object to the test server and back.

    Fields the client side writes are guarded by the owning call object's lock; the server thread
    reads `cancel_requested` without it (a bool read is atomic, and a late read only delays what
    TestCancel reports, which COM-CANCEL-04 allows).
    """

    client: CallObject
    cancel_enabled: bool
    number: int = field(default_factory=lambda: next(_call_numbers))
    mailbox: Mailbox = field(default_factory=Mailbox)
    cancel_requested: bool = False
    tested: bool = False  # the server has called TestCancel (seen only by a race fault)
    waited: bool = False  # a Wait returned S_OK (seen only by the fault rewait_loses_out)
    cancelled: bool = False
    completed: bool = False
    abandoned: bool = False
    out: int = 0
    # The server thread's side: Begin_ processing still running, the Signal done, impersonating.
    held: bool = True
    signalled: bool = False
    impersonating: bool = False
    finished: threading.Event = field(default_factory=threading.Event)


class TestServer:
    """The server object's implementation: IFoo::M, and (when it has one) its server call object.

    Every Begin_M is processed on a worker thread that waits for the harness's commands; the
    processing ends (Begin_ returns on the server) after `ServerAction.SIGNAL` or `ServerAction.SHUTDOWN`.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, host: Host, pool: WorkerPool, implements_call_factory: bool,
                 cancellation_enabled: bool) -> None:
        self.host = host
        self.pool = pool
        self.implements_call_factory = implements_call_factory
        # CoEnableCallCancellation was called on the thread that processes calls; fixed when a
        # call starts (COM-CCAN-05), so each BeginCall copies it.
        self.cancellation_enabled = cancellation_enabled
        self._lock = threading.Lock()
        self._held: list[BeginCall] = []
        self._closed = False
        # Only with the seeded fault call_objects_share_event: the events of every call object
        # made from this server object, which each Signal sets together.
        self.events: list[SystemEvent] = []
        # Only with blind faults: a cancel accepted for any call of this server object
        # (cancel_flag_per_server_object), call contexts leaked by abandoned calls
        # (abandoned_calls_leak).
        self.cancel_seen = False
        self.leaked = 0
        self.kept_buffers = 0  # signalled_release_keeps_out_buffer: [out] buffers never freed

    def begin(self, call: BeginCall) -> None:
        with self._lock:
            if self._closed:
                call.held = False
                call.finished.set()
                return
            self._held.append(call)
        self.pool.submit(lambda: self._process(call))

    def _process(self, call: BeginCall) -> None:
        """The server's Begin_M, on a worker thread: held until the harness says signal."""
        try:
            while True:
                command = call.mailbox.receive()
                self.host.pause()
                if self._serve(call, command):
                    return
        finally:
            self._let_go(call)

    def _let_go(self, call: BeginCall) -> None:
        """Begin_ processing is over: the server no longer holds the call. Done before the
        harness gets its answer, so it never sends a command to a call that is gone."""
        with self._lock:
            if call in self._held:
                self._held.remove(call)
        call.held = False
        call.finished.set()

    def _serve(self, call: BeginCall, command: Command) -> bool:
        """Carry out one command; True when Begin_ processing is over."""
        action = command.action
        if action is ServerAction.SIGNAL:
            out = int(command.args.get("out", 1))
            if self.host.fault("signal_out_not_marshaled"):
                out = 0
            if self.kept_buffers >= 4 and self.host.fault("signalled_release_keeps_out_buffer"):
                out = 0  # the blind fault: no [out] buffer left
            target = call
            if self.host.fault("server_signals_latest_call"):
                with self._lock:  # the seeded fault: the most recent call, not this one
                    target = self._held[-1] if self._held else call
            target.signalled = True  # after Signal the call context is gone (COM-SRV-06)
            target.client._on_server_signal(target, out)
            impersonate = (self.CoImpersonateClient(call)
                           if command.args.get("then_impersonate") else None)
            self._let_go(call)
            if impersonate is None:
                command.reply(S_OK)
            else:
                command.reply(S_OK, impersonate=impersonate)
            return True
        if action is ServerAction.IMPERSONATE:
            command.reply(self.CoImpersonateClient(call))
            return False
        if action is ServerAction.TEST_CANCEL:
            call.tested = True
            cancelled = call.cancel_requested and not self.host.fault("test_cancel_misses_cancel")
            if not cancelled and self.cancel_seen and self.host.fault(
                    "cancel_flag_per_server_object"):
                cancelled = True  # the blind fault: another call's cancel, on the object
            command.reply(RPC_E_CALL_CANCELED if cancelled else RPC_S_CALLPENDING)
            return False
        if action is ServerAction.SHUTDOWN:
            self._let_go(call)
            command.reply(S_OK)
            return True
        command.reply(E_UNEXPECTED)
        return False

    def CoImpersonateClient(self, call: BeginCall) -> int:
        """Possible until the server's Signal has completed (COM-SRV-06, COM-SRV-07)."""
        if call.signalled and not self.host.fault("impersonate_after_signal"):
            return RPC_E_CALL_COMPLETE  # "call context cannot be accessed after call completed"
        if not call.signalled and self.host.fault("impersonate_refused"):
            return RPC_E_CALL_COMPLETE
        call.impersonating = True
        return S_OK

    def M(self, value: int) -> tuple[int, int]:
        """The synchronous IFoo::M: the server still processes it on its own thread
        (COM-SRV-03), and the test server answers at once with `value`."""
        done = threading.Event()
        result: list[int] = []

        def run() -> None:
            try:
                self.host.pause()
                result.append(value)
            finally:
                done.set()

        self.pool.submit(run)
        if self.host.fault("sync_call_no_wait"):
            return S_OK, result[0] if result else 0
        if not done.wait(COMMAND_SECONDS) or not result:
            raise ServerGone("the test server did not answer the synchronous IFoo::M")
        return S_OK, result[0]

    def held_calls(self) -> list[BeginCall]:
        with self._lock:
            return list(self._held)

    def shutdown(self) -> None:
        """Let every held call go, waiting briefly for each server thread to answer."""
        with self._lock:
            self._closed = True
            held = list(self._held)
        commands = [call.mailbox.post(ServerAction.SHUTDOWN) for call in held]
        for command in commands:
            command.wait(1.0)


# --- the client side: server object, call object ---------------------------------------------


class ServerObject(Unknown):
    """The client's proxy to the test server's object (standard marshaling).

    QueryInterface(ICallFactory) succeeds only if the server object implements ICallFactory
    (COM-CF-01); the proxy then supplies proxy call objects (COM-CF-09).
    """

    INTERFACES = frozenset({IID.IUnknown, IID.IFoo, IID.ICallFactory})

    def __init__(self, server: TestServer) -> None:
        super().__init__()
        self.server = server
        self._made: list[CallObject] = []  # only with the seeded fault call_dies_with_factory

    def Release(self) -> int:
        refs = super().Release()
        if self.server.host.fault("call_dies_with_factory"):
            for made in self._made:
                made._final_release()  # the factory's release takes its call objects along
        return refs

    def _inner_query(self, riid: IID) -> tuple[int, Unknown | None]:
        if riid is IID.ICallFactory and (
                (not self.server.implements_call_factory
                 and not self.server.host.fault("call_factory_always"))
                or self.server.host.fault("call_factory_hidden")):
            return E_NOINTERFACE, None
        return super()._inner_query(riid)

    def CreateCall(self, riid: IID, pCtrlUnk: Unknown | None,
                   riid2: IID) -> tuple[int, Unknown | None]:
        """ICallFactory::CreateCall: a fresh call object for an asynchronous IID (COM-CF-02,
        COM-CF-03); with `pCtrlUnk` it is created as an aggregated inner object (COM-CF-06)."""
        host = self.server.host
        if not self.server.implements_call_factory and not host.fault("call_factory_always"):
            return E_NOINTERFACE, None
        if riid is IID.IFoo and host.fault("create_call_accepts_sync_iid"):
            riid = riid2 = IID.AsyncIFoo
        if riid is not IID.AsyncIFoo:
            return E_NOINTERFACE, None
        if pCtrlUnk is not None and host.fault("aggregation_refused"):
            return CLASS_E_NOAGGREGATION, None
        if pCtrlUnk is None and host.fault("proxy_requires_aggregation"):
            return CLASS_E_NOAGGREGATION, None
        if pCtrlUnk is not None and riid2 is not IID.IUnknown:
            return E_INVALIDARG, None  # objidl.h: riid2 must be IID_IUnknown (D-05)
        call_object = CallObject(self.server, pCtrlUnk)
        if host.carries("call_dies_with_factory"):
            self._made.append(call_object)
        if pCtrlUnk is not None:
            return S_OK, call_object  # the inner object's non-delegating IUnknown
        hr, wanted = call_object._inner_query(riid2)
        call_object.Release()
        return hr, wanted

    def M(self, value: int) -> tuple[int, int]:
        """IFoo::M, called synchronously."""
        return self.server.M(value)


class CallObject(Unknown):
    """A proxy call object: AsyncIFoo, ISynchronize (aggregated), ICancelMethodCalls,
    IClientSecurity. It carries at most one call at a time (COM-CF-10)."""

    INTERFACES = frozenset({IID.IUnknown, IID.AsyncIFoo, IID.ICancelMethodCalls,
                            IID.IClientSecurity})

    def __init__(self, server: TestServer, outer: Unknown | None = None) -> None:
        super().__init__(outer)
        self._server = server
        self._host = server.host
        self._lock = threading.Lock()
        # The system event this call object aggregates for ISynchronize (COM-SYNC-06); the call
        # object is its controlling unknown.
        self._sync = ManualResetEvent(self._host, outer=self if outer is None else outer)
        if self._host.carries("call_objects_share_event"):
            server.events.append(self._sync)
        self._call: BeginCall | None = None  # Begin_ accepted and Finish_ not yet returned
        self._released = False
        self._previous: int | None = None  # the last call's [out] (for a seeded fault)
        # Only with the seeded fault rewait_loses_out.
        if self._host.carries("rewait_loses_out"):
            self._sync._wait_ok = self._after_wait_ok

    def _inner_query(self, riid: IID) -> tuple[int, Unknown | None]:
        if riid in (IID.ISynchronize, IID.ISynchronizeHandle):
            if self._host.fault("no_isynchronize"):
                return E_NOINTERFACE, None
            self.AddRef()
            return S_OK, self._sync
        if ((riid is IID.AsyncIFoo and self._host.fault("call_object_lacks_async_iid"))
                or (riid is IID.IClientSecurity and self._host.fault("no_client_security"))
                or (riid is IID.ICancelMethodCalls and self._host.fault("no_cancel_interface"))):
            return E_NOINTERFACE, None
        return super()._inner_query(riid)

    @property
    def current_call(self) -> BeginCall | None:
        with self._lock:
            return self._call

    # AsyncIFoo ------------------------------------------------------------------------------

    def Begin_M(self, value: int = 0) -> int:
        """Start the call and return without waiting for the server (COM-BEGIN-01); refused
        while a call is in flight, until Finish_ returns (COM-BEGIN-02, -03)."""
        if self._host.fault("begin_check_then_set_race"):
            return self._begin_check_then_set()
        with self._lock:
            if self._released:
                return E_UNEXPECTED
            in_flight = self._call
            if in_flight is not None and in_flight.cancelled and self._host.fault(
                    "begin_after_cancel_reports_cancel"):
                return CANCELLED_CODE
            if in_flight is not None and not self._host.fault("begin_accepts_second") and not (
                    in_flight.completed and self._host.fault("begin_after_signal_accepted")) \
                    and not (in_flight.cancelled and self._host.fault(
                        "begin_accepted_after_cancel")):
                return BEGIN_PENDING_CODE
            if self._server.leaked >= 4 and self._host.fault("abandoned_calls_leak"):
                return E_OUTOFMEMORY  # the blind fault: the table of call contexts is full
            call = BeginCall(self, cancel_enabled=self._server.cancellation_enabled)
            self._call = call
            self._reset_event()
            if self._host.carries("cancel_most_recent_call"):
                self._host.shared[("current call", kernel.current_thread())] = self
        self._host.pause()
        self._server.begin(call)
        return BEGIN_PENDING_CODE if self._host.fault("begin_reports_pending") else S_OK

    def _begin_check_then_set(self) -> int:
        """Seeded fault `begin_check_then_set_race`: the check and the set are not under one
        lock, so a second thread's Begin_ between them also starts a call (COM-BEGIN-02)."""
        if self._released:
            return E_UNEXPECTED
        if self.current_call is not None:
            return BEGIN_PENDING_CODE
        time.sleep(0.005)  # the window between the check and the set, wide enough to show
        call = BeginCall(self, cancel_enabled=self._server.cancellation_enabled)
        with self._lock:
            self._call = call
            self._reset_event()
        self._server.begin(call)
        return S_OK

    def Finish_M(self) -> tuple[int, int | None]:
        """End the call: its [out] value (COM-FIN-01), RPC_E_CALL_COMPLETE with no call in
        progress (COM-FIN-02), the cancelled code after a cancel (COM-FIN-05)."""
        with self._lock:
            call = self._call
            if call is None:
                return (S_OK, None) if self._host.fault("finish_idle_ok") else (
                    RPC_E_CALL_COMPLETE, None)
            if not call.completed:
                # COM-FIN-03 gives no result for Finish_ before Wait reported S_OK (cancelled or
                # not, the server still holds Begin_); refuse without changing anything, rather
                # than block the client.
                return RPC_S_CALLPENDING, None
            if call.cancelled:
                # The server has returned from Begin_ (its Signal completed the call); the
                # call object's state is cleaned up and the cancel reported (COM-FIN-05).
                if not self._host.fault("finish_cancelled_keeps_call"):
                    self._call = None
                self._reset_event()
                return CANCELLED_CODE, None
            if not self._host.fault("finish_keeps_call"):
                self._call = None
            # Back to a known non-signalled start for the next call (COM-SYNC-05: the reset
            # happens in the method the client calls after it has seen the signal).
            self._reset_event()
            out = call.out
            last = self._host.shared.get("last_out")
            if isinstance(last, int) and last != out and self._host.fault(
                    "finish_out_of_last_signal"):
                out = last
            if self._previous is not None and self._previous != out and self._host.fault(
                    "finish_stale_out"):
                out = self._previous
            if out != out & 0xFF and self._host.fault("finish_out_byte"):
                out &= 0xFF
            self._previous = call.out
            return S_OK, out

    def _reset_event(self) -> None:
        """Back to non-signalled for a new call (skipped by the seeded fault
        `call_event_never_reset`)."""
        if not self._host.fault("call_event_never_reset"):
            self._sync.Reset()

    def _after_wait_ok(self) -> None:
        """Seeded fault `rewait_loses_out`: the first successful Wait hands the [out] buffer
        over; a second one finds it empty and stores 0 (COM-FIN-01)."""
        with self._lock:
            call = self._call
            if call is None or not call.completed:
                return
            if call.waited and self._host.fault("rewait_loses_out"):
                call.out = 0
            call.waited = True

    def _on_server_signal(self, call: BeginCall, out: int) -> None:
        """The server's ISynchronize::Signal reached the client (COM-SRV-05)."""
        self._host.pause()
        with self._lock:
            if call is not self._call or call.abandoned or self._released:
                return  # a late result of an abandoned call is discarded (COM-REL-01)
            if call.cancelled and self._host.fault("cancelled_signal_discarded"):
                return
            # A cancelled call too: the server returned (early, COM-CANCEL-11), so Begin_ has
            # returned and Wait may say so (COM-WAIT-02).
            call.out = out
            call.completed = True
            if self._host.carries("finish_out_of_last_signal"):
                self._host.shared["last_out"] = out
            # Under the lock, so that a Finish_ on another thread cannot reset the event between
            # the completion and the Signal and leave a stale signal behind.
            if not self._host.fault("signal_not_forwarded"):
                self._sync._set()
            if self._host.fault("call_objects_share_event"):
                for event in self._server.events:  # the seeded fault: as if one event
                    event._set()

    # ICancelMethodCalls ---------------------------------------------------------------------

    def Cancel(self, ulSeconds: int) -> int:
        """Request cancellation (COM-CANCEL-05..08). S_OK means the request was issued, not that
        the call is over: the client's Wait returns S_OK only once the server has signalled
        (COM-WAIT-02), and Finish_ then reports the cancel."""
        if 0x80000000 <= ulSeconds < INFINITE and self._host.fault("cancel_seconds_signed"):
            return E_INVALIDARG  # the seeded fault: a "negative" number of seconds
        if self._host.fault("cancel_most_recent_call"):
            recent = self._host.shared.get(("current call", kernel.current_thread()))
            if isinstance(recent, CallObject) and recent is not self and recent.current_call:
                return recent._cancel(ulSeconds)
        return self._cancel(ulSeconds)

    def _cancel(self, ulSeconds: int) -> int:
        with self._lock:
            call = self._call
            refusal = self._cancel_refusal(call)
            if refusal is not None or call is None:
                return refusal if refusal is not None else RPC_E_CALL_COMPLETE
            if not (call.tested and self._host.fault("cancel_lost_after_test")):
                call.cancel_requested = True  # the server's TestCancel sees it from now on
            if not ulSeconds:
                # Decided at once, under the same lock that made the request visible: the
                # server cannot test the cancel and complete the call in between, which would
                # leave a Cancel that reports RPC_E_CALL_COMPLETE for a call whose server saw
                # the cancel (a history no order of the two explains).
                return self._accept_cancel(call)
        # Give the server ulSeconds to finish; a call that completes in time is not cancelled
        # (COM-CANCEL-08).
        deadline = time.monotonic() + ulSeconds
        while time.monotonic() < deadline and not call.completed:
            call.finished.wait(min(0.01, ulSeconds))
        with self._lock:
            if call is self._call and call.completed and not call.cancelled and \
                    self._host.fault("cancel_wait_ignores_completion"):
                return self._accept_cancel(call)  # the blind fault: looks only at "cancelled"
            if call is self._call and call.completed and not call.cancelled and \
                    self._host.fault("cancel_wait_marks_completed_call"):
                call.cancelled = True  # the blind fault: marked although it completed
                return RPC_E_CALL_COMPLETE
            refusal = self._cancel_refusal(call) if call is self._call else RPC_E_CALL_COMPLETE
            if refusal is not None:
                return refusal
            return self._accept_cancel(call)

    def _accept_cancel(self, call: BeginCall) -> int:
        """The cancel is accepted (called under the lock): the call is cancelled."""
        call.cancelled = True
        if self._host.carries("cancel_flag_per_server_object"):
            self._server.cancel_seen = True
        if self._host.fault("cancel_signals_at_once"):
            self._sync._set()  # the seeded fault: Wait returns S_OK before Begin_ returned
        return CANCELLED_CODE if self._host.fault("cancel_returns_cancelled") else S_OK

    def _cancel_refusal(self, call: BeginCall | None) -> int | None:
        if call is None:
            return RPC_E_CALL_COMPLETE  # nothing between Begin_ and Finish_
        if call.cancelled and call.completed and self._host.fault("cancel_checks_complete_first"):
            return RPC_E_CALL_COMPLETE  # the blind fault: "completed" checked first
        if call.cancelled and not self._host.fault("cancel_twice_ok"):
            return CANCELLED_CODE  # already cancelled (COM-CANCEL-06)
        if call.completed and not self._host.fault("cancel_after_signal_ok"):
            return RPC_E_CALL_COMPLETE  # the call completed (COM-CANCEL-08)
        if not call.completed and call.held and self._host.fault("cancel_refused_pending"):
            return RPC_E_CALL_COMPLETE
        if not call.cancel_enabled and not self._host.fault("cancel_ignores_disabled"):
            return CO_E_CANCEL_DISABLED  # COM-CANCEL-07
        return None

    def TestCancel(self) -> int:
        """ICancelMethodCalls::TestCancel on the client side (COM-CANCEL-10)."""
        with self._lock:
            call = self._call
            if call is None:
                return RPC_E_CALL_COMPLETE
            if call.cancelled and not call.completed and self._host.fault(
                    "client_test_cancel_consumes"):
                call.cancel_requested = False  # the seeded fault: the server never sees it
            return CANCELLED_CODE if call.cancelled else RPC_S_CALLPENDING

    def close(self) -> None:
        """Tear-down at the end of a session: waits still blocked on the call object fail."""
        self._sync.close()

    # IUnknown ---------------------------------------------------------------------------------

    def _final_release(self) -> None:
        """COM-REL-01: releasing a call in flight abandons it; Finish_ never runs."""
        with self._lock:
            self._released = True
            call, self._call = self._call, None
            if call is not None and not self._host.fault("release_pending_leaks"):
                call.abandoned = True
            if call is not None and not call.completed and self._host.carries(
                    "abandoned_calls_leak"):
                self._server.leaked += 1  # the blind fault: the context is never given back
            if call is not None and call.completed and self._host.carries(
                    "signalled_release_keeps_out_buffer"):
                self._server.kept_buffers += 1  # the blind fault: the buffer is never freed
        if self._host.fault("release_abandons_server_calls"):
            for held in self._server.held_calls():
                held.abandoned = True


def make_event(host: Host, clsid: str) -> SystemEvent:
    """CoCreateInstance of a system event class by its CLSID name."""
    if clsid == "ManualResetEvent":
        return ManualResetEvent(host)
    if clsid == "StdEvent":
        return ManualResetEvent(host) if host.fault("std_event_clsid_mixup") else StdEvent(host)
    raise ValueError(f"unknown system event class {clsid!r}; use ManualResetEvent or StdEvent")
