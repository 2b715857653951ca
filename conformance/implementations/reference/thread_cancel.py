"""Thread-level cancellation of synchronous calls (spec/DOMAIN.md section 2.8), on real threads.

* `ClientThread`: one client thread, run as a worker that executes the functions sent to it in
  order. It keeps its cancellation state: the enable count (CoEnableCallCancellation and
  CoDisableCallCancellation, COM-CCAN-03/04), whether COM is initialised (CoUninitialize clears the
  count, COM-CCAN-06) and its stack of registered cancel objects (CoSetCancelObject, COM-CCAN-11).
* `SyncCall`: one synchronous call of that thread. When it starts it samples whether cancellation
  is enabled (COM-CCAN-05) and registers its cancel object (`CallCancel`, ICancelMethodCalls)
  on the thread; the client thread then blocks until the test server returns or the call is
  cancelled (COM-CANCEL-11: a cancelled synchronous call releases the client at once; the server's
  late result is discarded).
* `CancelRegistry`: the threads of one session by id, for `CoCancelCall` and `CoGetCancelObject`,
  which another thread calls with the client thread's id.

The test server runs each call on a worker thread of its own and waits for the harness's commands:
`test_cancel` (CoTestCancel, answered through the call it is processing, its call context) and
`return`.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from callgate.conformance.implementations.reference.host import COMMAND_SECONDS, Host, WorkerPool
from callgate.model import codes

S_OK = codes.S_OK.value
E_NOINTERFACE = codes.E_NOINTERFACE.value
E_INVALIDARG = codes.E_INVALIDARG.value
E_FAIL = codes.E_FAIL.value
CO_E_CANCEL_DISABLED = codes.CO_E_CANCEL_DISABLED.value
RPC_E_CALL_CANCELED = codes.RPC_E_CALL_CANCELED.value
RPC_S_CALLPENDING = codes.RPC_S_CALLPENDING.value

IID_ICancelMethodCalls = "ICancelMethodCalls"
IID_IUnknown = "IUnknown"

# CoDisableCallCancellation while enables remain: the documented code (D-10); Wine returns S_OK.
DISABLE_NESTED_CODE = CO_E_CANCEL_DISABLED

_thread_ids = itertools.count(0x100)


class CancelObject:
    """A COM object the harness passes to CoSetCancelObject: with or without ICancelMethodCalls.

    `refs` counts every reference, the harness's own included."""

    def __init__(self, cancel_interface: bool) -> None:
        self.cancel_interface = cancel_interface
        self.refs = 1
        self._lock = threading.Lock()

    def QueryInterface(self, iid: str) -> tuple[int, CancelObject | None]:
        if iid == IID_IUnknown or (iid == IID_ICancelMethodCalls and self.cancel_interface):
            self.AddRef()
            return S_OK, self
        return E_NOINTERFACE, None

    def AddRef(self) -> int:
        with self._lock:
            self.refs += 1
            return self.refs

    def Release(self) -> int:
        with self._lock:
            self.refs -= 1
            return self.refs

    def Cancel(self, seconds: int) -> int:
        """The harness's own Cancel: it has no call to cancel (COM-CANCEL-09: up to it)."""
        return S_OK


@dataclass(eq=False)
class SyncCall:
    """One synchronous call of a client thread, held by the test server."""

    host: Host
    enabled: bool                      # cancellation was enabled when the call started
    cancelled: bool = False
    server_returned: bool = False
    result: int | None = None          # what the client thread's call returned
    received: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)  # the client may return
    client_returned: threading.Event = field(default_factory=threading.Event)
    commands: queue.SimpleQueue[tuple[str, Callable[[int], None]]] = field(
        default_factory=queue.SimpleQueue)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def QueryInterface(self, iid: str) -> tuple[int, SyncCall | None]:
        if iid in (IID_IUnknown, IID_ICancelMethodCalls):
            return S_OK, self
        return E_NOINTERFACE, None

    def Cancel(self, seconds: int) -> int:
        """ICancelMethodCalls::Cancel of the call's cancel object (COM-CCAN-08)."""
        with self.lock:
            if not self.enabled and not self.host.fault("thread_cancel_ignores_disabled"):
                return CO_E_CANCEL_DISABLED
            if self.cancelled:
                return RPC_E_CALL_CANCELED
            self.cancelled = True
        self.done.set()
        self.client_returned.wait(COMMAND_SECONDS)
        return S_OK

    def TestCancel(self) -> int:
        with self.lock:
            cancelled = self.cancelled != self.host.fault("co_test_cancel_inverted")
            return RPC_E_CALL_CANCELED if cancelled else RPC_S_CALLPENDING


Registration = CancelObject | SyncCall


class ClientThread:
    """One client thread and its cancellation state; functions run on it through `run`."""

    def __init__(self, host: Host, pool: WorkerPool) -> None:
        self.host = host
        self.pool = pool
        self.tid = next(_thread_ids)
        self.count = 0
        self.initialised = True
        self.stack: list[Registration] = []
        self._lock = threading.Lock()
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        pool.submit(self._loop)

    def _loop(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            task()

    def run(self, function: Callable[[], int]) -> int:
        """Run `function` on this thread and wait for its result."""
        box: list[int] = []
        ready = threading.Event()

        def task() -> None:
            try:
                box.append(function())
            finally:
                ready.set()
        self._tasks.put(task)
        if not ready.wait(COMMAND_SECONDS) or not box:
            raise TimeoutError("the client thread did not answer")
        return box[0]

    def post(self, function: Callable[[], None]) -> None:
        self._tasks.put(function)

    def close(self) -> None:
        self._tasks.put(None)

    def top(self) -> Registration | None:
        with self._lock:
            return self.stack[-1] if self.stack else None

    # --- run on the thread ---------------------------------------------------------------

    def CoEnableCallCancellation(self, pReserved: object) -> int:
        if pReserved is not None:
            return E_INVALIDARG
        self.count = 1 if self.host.fault("enable_not_nested") else self.count + 1
        self._refix_pending()
        return S_OK

    def _refix_pending(self) -> None:
        """Only with the seeded fault `cancellation_not_fixed_at_start`: a pending call's
        cancellability follows later enables and disables (COM-CCAN-05 fixes it at the start)."""
        if self.host.fault("cancellation_not_fixed_at_start"):
            with self._lock:
                for registration in self.stack:
                    if isinstance(registration, SyncCall):
                        registration.enabled = self.count > 0

    def CoDisableCallCancellation(self, pReserved: object) -> int:
        if pReserved is not None:
            return E_INVALIDARG
        if self.count == 0:
            return CO_E_CANCEL_DISABLED
        if self.count == 1 and self.host.fault("disable_keeps_enabled"):
            return S_OK
        self.count -= 1
        self._refix_pending()
        return S_OK if self.count == 0 else DISABLE_NESTED_CODE

    def CoUninitialize(self) -> None:
        self.initialised = False
        if not self.host.fault("reinitialize_keeps_enabled"):
            self.count = 0  # COM-CCAN-06

    def CoInitializeEx(self) -> int:
        self.initialised = True
        return S_OK

    def CoSetCancelObject(self, pUnk: CancelObject | None) -> int:
        if pUnk is None:
            if self.host.fault("cancel_objects_per_process"):
                return self._remove_latest_in_process()
            with self._lock:
                if not self.stack:
                    return E_FAIL
                if self.host.fault("set_cancel_object_null_keeps"):
                    return S_OK  # the seeded fault: the registration is not removed
                removed = self.stack.pop()
            if isinstance(removed, CancelObject):
                removed.Release()
            return S_OK
        hr, cancel = pUnk.QueryInterface(IID_ICancelMethodCalls)
        if hr != S_OK or cancel is None:
            return E_NOINTERFACE
        with self._lock:
            self.stack.append(cancel)  # the QueryInterface reference is the registration's
        if self.host.fault("cancel_objects_per_process"):
            latest = self.host.shared.setdefault("cancel registrations", [])
            assert isinstance(latest, list)
            latest.append((self, cancel))
        return S_OK

    def _remove_latest_in_process(self) -> int:
        """Seeded fault `cancel_objects_per_process`: CoSetCancelObject(NULL) removes the
        registration made most recently by any thread of the process (COM-CCAN-11)."""
        latest = self.host.shared.setdefault("cancel registrations", [])
        assert isinstance(latest, list)
        while latest:
            thread, cancel = latest.pop()
            with thread._lock:
                if cancel in thread.stack:
                    thread.stack.remove(cancel)
                    break
        else:
            with self._lock:
                if not self.stack:
                    return E_FAIL
                cancel = self.stack.pop()
        if isinstance(cancel, CancelObject):
            cancel.Release()
        return S_OK

    def sync_call(self, call: SyncCall, server: Callable[[SyncCall], None]) -> None:
        """The synchronous IFoo::M: register the call's cancel object, hand the call to the
        test server, and block until it returns or the call is cancelled."""
        with self._lock:
            self.stack.append(call)
        self.pool.submit(lambda: server(call))
        call.done.wait()
        with self._lock:
            if call in self.stack:
                self.stack.remove(call)
        with call.lock:
            call.result = RPC_E_CALL_CANCELED if call.cancelled else S_OK
        call.client_returned.set()


def serve(call: SyncCall) -> None:
    """The test server's IFoo::M on its own thread: answer the harness until told to return."""
    call.received.set()
    while True:
        command, reply = call.commands.get()
        call.host.pause()
        if command == "test_cancel":
            reply(call.TestCancel())  # CoTestCancel: through the call context, this call
            continue
        with call.lock:
            call.server_returned = True
        call.done.set()  # a cancelled call's late result is discarded
        call.client_returned.wait(COMMAND_SECONDS)
        reply(S_OK)
        return


def command(call: SyncCall, name: str) -> int:
    """Send a command to the server thread holding `call` and wait for its answer."""
    box: list[int] = []
    ready = threading.Event()

    def reply(code: int) -> None:
        box.append(code)
        ready.set()
    call.commands.put((name, reply))
    if not ready.wait(COMMAND_SECONDS):
        raise TimeoutError(f"the test server did not answer {name}")
    return box[0]


class CancelRegistry:
    """The client threads of one session by thread id: CoCancelCall and CoGetCancelObject."""

    def __init__(self) -> None:
        self._threads: dict[int, ClientThread] = {}
        self._lock = threading.Lock()

    def add(self, thread: ClientThread) -> None:
        with self._lock:
            self._threads[thread.tid] = thread

    def _thread(self, tid: int) -> ClientThread | None:
        with self._lock:
            return self._threads.get(tid)

    def CoCancelCall(self, dwThreadId: int, ulTimeout: int) -> int:
        thread = self._thread(dwThreadId)
        if thread is None:
            return E_INVALIDARG
        top = thread.top()
        if top is None:
            return E_NOINTERFACE
        if isinstance(top, SyncCall) and thread.host.fault("co_cancel_call_reports_ok") and \
                top.TestCancel() == RPC_E_CALL_CANCELED:
            return S_OK  # the seeded fault: a second cancel reported as newly accepted
        return top.Cancel(ulTimeout)

    def CoGetCancelObject(self, dwThreadId: int, iid: str) -> tuple[int, Registration | None]:
        thread = self._thread(dwThreadId)
        if thread is None:
            return E_INVALIDARG, None
        top = thread.top()
        if top is None:
            return E_NOINTERFACE, None
        with thread._lock:
            bottom = thread.stack[0] if thread.stack else top
        if bottom is not top and thread.host.fault("get_cancel_object_outermost"):
            top = bottom  # the blind fault: the outermost registration
        if thread.host.fault("get_cancel_object_any_iid"):
            return S_OK, top  # the seeded fault: every iid answered
        return top.QueryInterface(iid)
