"""The reference RPC runtime: RPC_ASYNC_STATE, client and server async handles, notification delivery.

Written from spec/DOMAIN.md sections 1.2 and 2.12 to 2.16, not from the model. One `RpcRuntime`
plays both ends of the test interface's `[async]` procedure `TestProc`:

* the client stub (`TestProc_async`) validates the caller's `RPC_ASYNC_STATE`, records the call
  in `RuntimeInfo`, and dispatches it; it returns without waiting (RPC-CLI-CALL-01) or raises
  `RpcException` (RPC-CLI-CALL-02). `TestProc` is the synchronous client of the same procedure
  (RPC-DECL-02).
* the server side gives every dispatched call a fresh server async handle and runs the manager
  routine (`TestRpcServer.TestProc`) on a dispatch thread of the worker pool. The test server
  holds the call there until the harness says complete, abort or raise (DESIGN.md principle 6).
  The runtime destroys the server handle after RpcAsyncCompleteCall, RpcAsyncAbortCall or an
  exception (RPC-SRV-02).
* completion notifications go out through the mechanism in `NotificationType`: SetEvent on
  `u.hEvent`, an APC queued to `u.APC.hThread` (the issuing thread when it is 0), a packet posted
  to `u.IOC.hIOPort`, a message posted to `u.HWND.hWnd`, or `u.NotificationRoutine` called on a
  worker thread; None delivers nothing (RPC-CLI-NOTIFY-01..06). `Event` is set to RpcCallComplete
  first (RPC-STATE-02).

Ordering: when the server completes, aborts or raises, the client's result is recorded and the
notification is queued before the server's call returns; an abortive RpcAsyncCancelCall queues
its rushed notification before it returns (RPC-CLI-CANCEL-02). A harness that waits for its
command to finish therefore never races the reply.

Choices where the documentation leaves room (the adapter pins them):
* a handle that carries no call (initialised and unused, finished, or never initialised) makes
  RpcAsyncGetCallStatus return RPC_S_INVALID_ASYNC_HANDLE, as S-RAGCS documents (D-12);
* a finished handle may start a new call without re-initialising (Windows XP on, D-11);
* a call on a binding to no server fails in the stub, at once (RPC-CLI-CALL-02), not through
  its completion;
* a cancel reaches the server's RpcServerTestCancel at once (no window);
* the code given to RpcAsyncAbortCall, or raised by the manager routine, reaches the client's
  RpcAsyncCompleteCall unchanged (RPC-CLI-COMPLETE-05);
* once the reply has reached the client a cancel changes nothing (RPC-CLI-CANCEL-05), and a
  server that completes or aborts a call the client cancelled abortively is told
  RPC_S_CALL_CANCELLED.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from callgate.conformance.implementations.reference import kernel
from callgate.conformance.implementations.reference.host import (
    COMMAND_SECONDS,
    RACE_WINDOW,
    Command,
    Host,
    Mailbox,
    ServerAction,
    ServerGone,
    WorkerPool,
)
from callgate.conformance.implementations.reference.kernel import (
    CompletionPort,
    KernelEvent,
    ThreadContext,
    Window,
)
from callgate.model import codes

RPC_S_OK = codes.RPC_S_OK.value
RPC_S_INVALID_ARG = codes.RPC_S_INVALID_ARG.value
RPC_S_ASYNC_CALL_PENDING = codes.RPC_S_ASYNC_CALL_PENDING.value
RPC_S_INVALID_BINDING = codes.RPC_S_INVALID_BINDING.value
RPC_S_NO_CALL_ACTIVE = codes.RPC_S_NO_CALL_ACTIVE.value
RPC_S_CALL_FAILED = codes.RPC_S_CALL_FAILED.value
RPC_S_CALL_FAILED_DNE = codes.RPC_S_CALL_FAILED_DNE.value
RPC_S_INTERNAL_ERROR = codes.RPC_S_INTERNAL_ERROR.value
RPC_S_CALL_IN_PROGRESS = codes.RPC_S_CALL_IN_PROGRESS.value
RPC_S_CALL_CANCELLED = codes.RPC_S_CALL_CANCELLED.value
RPC_S_INVALID_ASYNC_HANDLE = codes.RPC_S_INVALID_ASYNC_HANDLE.value
RPC_S_INVALID_ASYNC_CALL = codes.RPC_S_INVALID_ASYNC_CALL.value
RPC_ASYNC_SIGNATURE = codes.RPC_ASYNC_STATE_SIGNATURE

# sizeof(RPC_ASYNC_STATE) for the x64 layout in rpcasync.h: four 32-bit fields, three pointers,
# two enums, the union (IOC is the largest member: 32 bytes) and LONG_PTR Reserved[4].
SIZEOF_RPC_ASYNC_STATE = 112

# The choices this runtime makes where the documentation allows several (see the docstring).
UNUSED_HANDLE_STATUS = RPC_S_INVALID_ASYNC_HANDLE
REUSE_WITHOUT_REINITIALIZE = True
BAD_BINDING_RAISES = True  # the stub refuses a binding to no server at once (RPC-CLI-CALL-02)


class RPC_NOTIFICATION_TYPES(enum.IntEnum):
    RpcNotificationTypeNone = 0
    RpcNotificationTypeEvent = 1
    RpcNotificationTypeApc = 2
    RpcNotificationTypeIoc = 3
    RpcNotificationTypeHwnd = 4
    RpcNotificationTypeCallback = 5


class RPC_ASYNC_EVENT(enum.IntEnum):
    RpcCallComplete = 0
    RpcSendComplete = 1
    RpcReceiveComplete = 2
    RpcClientDisconnect = 3
    RpcClientCancel = 4


# RPCNOTIFICATION_ROUTINE(pAsync, Context, Event)
RPCNOTIFICATION_ROUTINE = Callable[["RPC_ASYNC_STATE", object, RPC_ASYNC_EVENT], None]


@dataclass
class RPC_APC:
    NotificationRoutine: RPCNOTIFICATION_ROUTINE | None = None
    hThread: ThreadContext | None = None


@dataclass
class RPC_IOC:
    hIOPort: CompletionPort | None = None
    dwNumberOfBytesTransferred: int = 0
    dwCompletionKey: int = 0
    lpOverlapped: object = None


@dataclass
class RPC_HWND:
    hWnd: Window | None = None
    Msg: int = 0


@dataclass
class RPC_ASYNC_NOTIFICATION_INFO:
    """The union `u`: the client fills exactly the member that matches NotificationType."""

    APC: RPC_APC = field(default_factory=RPC_APC)
    IOC: RPC_IOC = field(default_factory=RPC_IOC)
    HWND: RPC_HWND = field(default_factory=RPC_HWND)
    hEvent: KernelEvent | None = None
    NotificationRoutine: RPCNOTIFICATION_ROUTINE | None = None


@dataclass(eq=False)
class RPC_ASYNC_STATE:
    """The async handle: memory the caller owns; zeroed, it is a never-initialised handle.

    Mutable on purpose: it stands for a C structure that the client, the stub and the runtime
    all write to (each its own fields, RPC-INIT-04, RPC-INIT-05).
    """

    Size: int = 0
    Signature: int = 0
    Lock: int = 0
    Flags: int = 0
    StubInfo: object = None
    UserInfo: object = None
    RuntimeInfo: object = None
    Event: int = 0
    NotificationType: int = 0
    u: RPC_ASYNC_NOTIFICATION_INFO = field(default_factory=RPC_ASYNC_NOTIFICATION_INFO)
    Reserved: list[int] = field(default_factory=lambda: [0, 0, 0, 0])


@dataclass
class Reply:
    """The `void *Reply` of RpcAsyncCompleteCall: where the client receives the return value, and
    where the server passes it from."""

    value: int = 0


class RpcException(Exception):
    """RpcRaiseException: an RPC exception with its code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"RPC exception {codes.describe(code, codes.Family.RPC_STATUS)}")
        self.code = code


def RpcAsyncInitializeHandle(pAsync: RPC_ASYNC_STATE | None, Size: int,
                             host: Host | None = None) -> int:
    """Set Size, Signature, Lock, Flags, StubInfo, RuntimeInfo and Reserved; leave UserInfo,
    Event, NotificationType and u to the caller (RPC-INIT-01, -02, -03). `host` carries the
    seeded faults of a mutant build."""
    if pAsync is None:
        return RPC_S_INVALID_ASYNC_HANDLE
    if Size < SIZEOF_RPC_ASYNC_STATE or (Size != SIZEOF_RPC_ASYNC_STATE and not (
            host is not None and host.fault("init_accepts_larger_size"))):
        return RPC_S_INVALID_ARG
    if host is not None and host.fault("init_zeroes_user_info"):
        pAsync.UserInfo = None  # memset of the whole structure
    pAsync.Size = Size
    pAsync.Signature = RPC_ASYNC_SIGNATURE
    pAsync.Lock = 0
    pAsync.Flags = 0
    pAsync.StubInfo = None
    pAsync.RuntimeInfo = None
    pAsync.Reserved = [0, 0, 0, 0]
    if host is not None and host.carries("reused_handle_old_event"):
        host.shared.pop(("first event", id(pAsync)), None)  # re-initialised: forgotten
    return RPC_S_OK


def RpcAsyncGetCallHandle(pAsync: RPC_ASYNC_STATE, host: Host | None = None) -> object:
    """The macro: the binding handle of the call is `RuntimeInfo` (RPC-STATE-01)."""
    if host is not None and host.fault("call_handle_is_stub_info"):
        return pAsync.StubInfo
    return pAsync.RuntimeInfo


def _valid(pAsync: RPC_ASYNC_STATE | None) -> bool:
    return (pAsync is not None and pAsync.Signature == RPC_ASYNC_SIGNATURE
            and pAsync.Size == SIZEOF_RPC_ASYNC_STATE)


_numbers = itertools.count(1)


@dataclass(frozen=True)
class StubInfo:
    """What the client stub keeps for a call in `StubInfo`: which procedure it is."""

    procedure: str
    number: int


@dataclass(eq=False)
class RpcBinding:
    """A binding handle: to the runtime's test server, or (`server` False) to no server."""

    server: bool = True


@dataclass(eq=False)
class ClientCall:
    """The client runtime's record of one asynchronous call (the client handle's RuntimeInfo).
    Guarded by the runtime's lock."""

    pAsync: RPC_ASYNC_STATE
    issuing_thread: ThreadContext
    number: int = field(default_factory=lambda: next(_numbers))
    status: int = RPC_S_ASYNC_CALL_PENDING  # final once it is anything else
    reply: int = 0
    server: DispatchedCall | None = None
    # Only with the blind fault reused_handle_old_event: the u.hEvent of the handle's first call.
    old_event: object = None


@dataclass(eq=False)
class DispatchedCall:
    """One dispatched call on the server: its async handle and cancel flag (the server handle's
    RuntimeInfo, hence also its binding handle). Guarded by the runtime's lock."""

    client: ClientCall | None  # None for a synchronous client
    handle: RPC_ASYNC_STATE
    # A synchronous client's call (client None): the value the test server answers at once
    # with, any number including 0. An asynchronous call: what its [out] held at dispatch.
    hint: int
    number: int = field(default_factory=lambda: next(_numbers))
    mailbox: Mailbox = field(default_factory=Mailbox)
    cancel_requested: bool = False
    ended: bool = False
    # Seen only by race faults: the server's completion or RpcServerTestCancel is under way.
    completing: bool = False
    testing: bool = False
    sync_done: threading.Event = field(default_factory=threading.Event)
    sync_status: int = RPC_S_ASYNC_CALL_PENDING
    sync_reply: int = 0
    # Set once the manager routine has returned (or raised): a later thread that completes or
    # aborts the call waits for it, so that it acts after the routine returned.
    routine_returned: threading.Event = field(default_factory=threading.Event)


class _ManagerRaised(RpcException):
    """The manager routine raised on the dispatch thread, because the harness said so."""

    def __init__(self, code: int, command: Command) -> None:
        super().__init__(code)
        self.command = command


_server_tls = threading.local()


class RpcRuntime:
    """The RPC runtime of one session: both ends of the test procedure, and their handles."""

    def __init__(self, host: Host, pool: WorkerPool) -> None:
        self.host = host
        self.pool = pool
        self._lock = threading.Lock()
        self._server_handles: dict[int, DispatchedCall] = {}
        self._closed = False
        self.test_server = TestRpcServer(self)
        # Where the seeded fault apc_to_runtime_thread sends APCs: a thread no client waits on.
        self._runtime_thread = ThreadContext("rpc-runtime")
        self._used_handles: set[int] = set()  # only with the seeded fault handle_used_once
        # Only with the seeded faults rpc_reply_per_binding and rpc_cancel_last_dispatched.
        self._binding_reply: int | None = None
        self._last_dispatched: DispatchedCall | None = None
        # Only with the seeded fault status_of_last_failed_call: the handle and final status of
        # the call the client completed last, if it failed, until the next call starts.
        self._last_failed: tuple[int, int] | None = None

    # --- client stubs --------------------------------------------------------------------------

    def TestProc_async(self, binding: RpcBinding, pAsync: RPC_ASYNC_STATE | None,
                       hint: int = 0) -> None:
        """The client stub of `[async] TestProc`: returns once the call is on its way."""
        if pAsync is None or not _valid(pAsync):
            raise RpcException(RPC_S_INVALID_ASYNC_HANDLE)
        with self._lock:
            if isinstance(pAsync.RuntimeInfo, ClientCall) and not self.host.fault(
                    "handle_reuse_in_flight"):
                raise RpcException(RPC_S_INVALID_ASYNC_CALL)  # one handle per call (RPC-INIT-06)
            if not binding.server or self._closed:
                if self.host.fault("failed_call_left_on_handle"):
                    pAsync.RuntimeInfo = ClientCall(pAsync, kernel.current_thread(),
                                                    status=RPC_S_CALL_FAILED_DNE)
                if self.host.fault("failed_call_forgets_init"):
                    pAsync.Signature = 0  # the seeded fault: as if never initialised
                raise RpcException(RPC_S_CALL_FAILED_DNE)  # cleaned up already (RPC-CLI-CALL-02)
            if self.host.fault("handle_used_once"):
                if id(pAsync) in self._used_handles:
                    raise RpcException(RPC_S_INVALID_ASYNC_CALL)
                self._used_handles.add(id(pAsync))
            if self.host.fault("stub_clears_notification_type"):
                pAsync.NotificationType = RPC_NOTIFICATION_TYPES.RpcNotificationTypeNone
            call = ClientCall(pAsync, kernel.current_thread())
            if pAsync.NotificationType == RPC_NOTIFICATION_TYPES.RpcNotificationTypeCallback \
                    and self.host.carries("callback_of_latest_call"):
                self.host.shared[("latest routine", id(self))] = pAsync.u.NotificationRoutine
            if self.host.carries("reused_handle_old_event"):
                first = self.host.shared.setdefault(("first event", id(pAsync)), pAsync.u.hEvent)
                if first is not pAsync.u.hEvent:
                    call.old_event = first
            self._last_failed = None  # the seeded fault status_of_last_failed_call's record
            pAsync.StubInfo = StubInfo("TestProc", call.number)
            pAsync.RuntimeInfo = call
            call.server = self._dispatch_locked(call, hint)
        self.host.pause()
        if self.host.fault("stub_reports_pending"):
            raise RpcException(RPC_S_ASYNC_CALL_PENDING)

    def TestProc(self, binding: RpcBinding, hint: int) -> int:
        """A synchronous client of the same procedure: blocks until the reply (RPC-DECL-02)."""
        with self._lock:
            if not binding.server or self._closed:
                raise RpcException(RPC_S_CALL_FAILED_DNE)
            server_call = self._dispatch_locked(None, hint)
        if not server_call.sync_done.wait(COMMAND_SECONDS):
            raise ServerGone(f"the test server did not answer a synchronous call within "
                             f"{COMMAND_SECONDS} s")
        if server_call.sync_status != RPC_S_OK:
            raise RpcException(server_call.sync_status)
        return 0 if self.host.fault("sync_client_no_reply") else server_call.sync_reply

    # --- server side ---------------------------------------------------------------------------

    def _dispatch_locked(self, client: ClientCall | None, hint: int) -> DispatchedCall:
        """Give the call a server async handle and run the manager routine on a dispatch thread."""
        handle = RPC_ASYNC_STATE()
        RpcAsyncInitializeHandle(handle, SIZEOF_RPC_ASYNC_STATE)
        server_call = DispatchedCall(client, handle, hint)
        handle.RuntimeInfo = server_call
        handle.StubInfo = StubInfo("TestProc", server_call.number)
        if not self.host.fault("server_handle_unregistered"):
            self._server_handles[server_call.number] = server_call
        if client is not None and self.host.carries("rpc_cancel_last_dispatched"):
            self._last_dispatched = server_call
        self.pool.submit(lambda: self._dispatch(server_call))
        return server_call

    def _dispatch(self, server_call: DispatchedCall) -> None:
        """The dispatch thread: the manager routine gets the server handle first (RPC-SRV-01)."""
        _server_tls.call = server_call
        command: Command | None = None
        try:
            self.test_server.TestProc(server_call.handle, server_call.hint)
            if (server_call.client is not None and not server_call.ended
                    and self.host.fault("reply_on_routine_return")):
                # Wine's behaviour: the reply leaves when the routine returns, with whatever the
                # [out] held, and the call is over.
                self._end(server_call, RPC_S_OK, server_call.hint)
        except _ManagerRaised as exc:
            command = exc.command
            code = RPC_S_CALL_FAILED if self.host.fault("exception_code_lost") else exc.code
            self._end(server_call, code, 0)  # RPC-SRV-EXC-01
        except RpcException as exc:
            self._end(server_call, exc.code, 0)
        except Exception as exc:  # a bug in the manager routine: end the call, keep the evidence
            self.pool.failures.append(exc)
            self._end(server_call, RPC_S_INTERNAL_ERROR, 0)
        finally:
            _server_tls.call = None
            server_call.routine_returned.set()
            if command is not None:
                command.reply(RPC_S_OK)

    def _end(self, server_call: DispatchedCall, status: int, reply: int) -> int:
        """End a call from the server side: record the client's result, queue its notification,
        destroy the server handle (RPC-SRV-02). The server's own status comes back."""
        deliver: ClientCall | None = None
        with self._lock:
            if server_call.ended:
                return RPC_S_INVALID_ASYNC_HANDLE
            if self.host.fault("server_reply_read_early"):
                reply = server_call.hint  # what the [out] held when the call was dispatched
            server_call.ended = True
            if not self.host.fault("server_handle_kept"):
                self._server_handles.pop(server_call.number, None)
                server_call.handle.Signature = 0  # freed: later use is invalid
                server_call.handle.RuntimeInfo = None
            client = server_call.client
            if client is None:
                server_call.sync_status, server_call.sync_reply = status, reply
                server_call.sync_done.set()
                result = RPC_S_OK
            elif client.status != RPC_S_ASYNC_CALL_PENDING:
                result = RPC_S_CALL_CANCELLED  # the client cancelled abortively: nobody to tell
                if self.host.fault("notify_after_abort_cancel"):
                    deliver = client
            elif self.host.fault("status_final_before_reply"):
                client.status = status
                deliver = client
                result = RPC_S_OK
            else:
                client.status, client.reply = status, reply
                if self.host.carries("rpc_reply_per_binding"):
                    self._binding_reply = reply
                deliver = client
                result = RPC_S_OK
        if deliver is not None and self.host.fault("status_final_before_reply") and \
                deliver.status == status and result == RPC_S_OK:
            time.sleep(RACE_WINDOW)
            with self._lock:
                deliver.reply = reply
        if deliver is not None:
            self._notify(deliver)
        return result

    def _server_call_of(self, pAsync: RPC_ASYNC_STATE | None) -> DispatchedCall | None:
        if not _valid(pAsync):
            return None
        assert pAsync is not None
        info = pAsync.RuntimeInfo
        return info if isinstance(info, DispatchedCall) else None

    # --- the RpcAsync* functions -----------------------------------------------------------------

    def RpcAsyncGetCallStatus(self, pAsync: RPC_ASYNC_STATE | None) -> int:
        """RPC_S_ASYNC_CALL_PENDING while outstanding, else the call's final status
        (RPC-CLI-STATUS-01..04)."""
        if not _valid(pAsync):
            return (RPC_S_INVALID_ARG if self.host.fault("status_bad_handle_invalid_arg")
                    else RPC_S_INVALID_ASYNC_HANDLE)
        assert pAsync is not None
        with self._lock:
            call = pAsync.RuntimeInfo
            if not isinstance(call, ClientCall):
                return UNUSED_HANDLE_STATUS
            status = call.status
            fault = self.host.fault
            if (status == RPC_S_ASYNC_CALL_PENDING and call.server is not None
                    and fault("status_poll_drops_soft_cancel")):
                call.server.cancel_requested = False
            if status == RPC_S_ASYNC_CALL_PENDING and fault("status_ok_while_pending"):
                return RPC_S_OK
            if status == RPC_S_ASYNC_CALL_PENDING and self._last_failed is not None \
                    and self._last_failed[0] != id(pAsync) \
                    and fault("status_of_last_failed_call"):
                return self._last_failed[1]
            if status == RPC_S_OK and fault("status_returns_reply"):
                return call.reply
            if status == RPC_S_CALL_CANCELLED and fault("status_pending_after_abort_cancel"):
                return RPC_S_ASYNC_CALL_PENDING
            polled = pAsync.NotificationType == RPC_NOTIFICATION_TYPES.RpcNotificationTypeNone
            if polled and fault("polled_status_stale"):
                return RPC_S_ASYNC_CALL_PENDING
            if polled and status == RPC_S_ASYNC_CALL_PENDING and fault("polled_status_early"):
                return RPC_S_OK
            return status

    def RpcAsyncCompleteCall(self, pAsync: RPC_ASYNC_STATE | None, Reply: Reply | None) -> int:
        """On a client handle: RPC_S_ASYNC_CALL_PENDING (not final) until the reply is in, then
        the final status, with the return value in `Reply` on success; the runtime frees the
        call (RPC-CLI-COMPLETE-01..06). On a server handle: send the reply (RPC-SRV-COMPLETE)."""
        fault = self.host.fault
        if not _valid(pAsync):
            if fault("server_complete_zeroed_pending"):
                return RPC_S_ASYNC_CALL_PENDING
            return RPC_S_INVALID_ASYNC_HANDLE
        assert pAsync is not None
        server_call = self._server_call_of(pAsync)
        if server_call is not None:
            if fault("server_complete_runs_client_path"):
                return RPC_S_ASYNC_CALL_PENDING
            if fault("abort_during_complete_no_notify"):
                server_call.completing = True
                time.sleep(RACE_WINDOW)
            self.host.pause()
            value = Reply.value if Reply is not None else 0
            if fault("server_reply_by_pointer"):
                value = int(Reply is not None)
            status = self._end(server_call, RPC_S_OK, value)
            if fault("server_complete_not_final"):
                with self._lock:
                    self._server_handles[server_call.number] = server_call
            return status
        with self._lock:
            call = pAsync.RuntimeInfo
            if not isinstance(call, ClientCall):
                if fault("complete_no_call_ok"):
                    return RPC_S_OK
                return RPC_S_INVALID_ASYNC_HANDLE  # no call on this handle (RPC-CLI-COMPLETE-09)
            if call.status == RPC_S_ASYNC_CALL_PENDING:
                if fault("complete_pending_final"):
                    pAsync.StubInfo = None
                    pAsync.RuntimeInfo = None
                return RPC_S_ASYNC_CALL_PENDING
            status = call.status
            if status not in (RPC_S_OK, RPC_S_CALL_CANCELLED) and fault("failure_reported_ok"):
                status = RPC_S_OK
            if status == RPC_S_CALL_CANCELLED and fault("cancel_reported_ok"):
                status = RPC_S_OK
            if status == RPC_S_CALL_CANCELLED and pAsync.NotificationType == \
                    RPC_NOTIFICATION_TYPES.RpcNotificationTypeNone and \
                    fault("polled_cancel_reports_failed"):
                status = RPC_S_CALL_FAILED  # the blind fault: the neighbouring code
            if status == RPC_S_OK and Reply is not None and not fault(
                    "complete_reply_not_copied"):
                Reply.value = call.reply & 0xFFFF if fault("complete_reply_16bit") else call.reply
                if self._binding_reply not in (None, Reply.value) and fault(
                        "rpc_reply_per_binding"):
                    Reply.value = self._binding_reply
            if fault("complete_not_final"):
                return status
            if status != RPC_S_OK and self.host.carries("status_of_last_failed_call"):
                self._last_failed = (id(pAsync), status)
            # Final: free what the runtime allocated for the call (RPC-CLI-COMPLETE-06). The
            # handle keeps its signature, so it may carry a new call (D-11).
            pAsync.StubInfo = None
            pAsync.RuntimeInfo = None
            if fault("runtime_closes_event"):
                if pAsync.u.hEvent is not None:
                    pAsync.u.hEvent.close()
                if pAsync.u.IOC.hIOPort is not None:
                    pAsync.u.IOC.hIOPort.close()
            return status

    def RpcAsyncCancelCall(self, pAsync: RPC_ASYNC_STATE | None, fAbortCall: bool) -> int:
        """Tell the server; with fAbortCall, also end the call on the client at once and rush
        its notification (RPC-CLI-CANCEL-01..03)."""
        if not _valid(pAsync):
            return RPC_S_INVALID_ASYNC_HANDLE
        assert pAsync is not None
        notify: ClientCall | None = None
        with self._lock:
            call = pAsync.RuntimeInfo
            if not isinstance(call, ClientCall):
                return RPC_S_INVALID_ASYNC_HANDLE
            fault = self.host.fault
            told = call.server
            if self._last_dispatched is not None and self._last_dispatched is not told and \
                    fault("rpc_cancel_last_dispatched"):
                told = self._last_dispatched
            if told is not None and not told.ended and not (
                    not fAbortCall and fault("cancel_not_forwarded")) and not (
                    not fAbortCall and told.testing
                    and fault("soft_cancel_lost_while_testing")) and not (
                    fAbortCall and fault("abort_cancel_not_told")):
                told.cancel_requested = True
            abortive = (fAbortCall and not fault("abort_cancel_not_rushed")) or fault(
                "cancel_always_abortive")
            if abortive and call.status == RPC_S_ASYNC_CALL_PENDING:
                call.status = RPC_S_CALL_CANCELLED
                notify = call
                if (call.server is not None and call.server.completing
                        and fault("abort_during_complete_no_notify")):
                    notify = None
            status = call.status
        if notify is not None:
            self._notify(notify)
        return status if self.host.fault("cancel_returns_status") else RPC_S_OK

    def RpcAsyncAbortCall(self, pAsync: RPC_ASYNC_STATE | None, ExceptionCode: int) -> int:
        """The server ends the call; the client receives ExceptionCode (RPC-SRV-ABORT-01)."""
        server_call = self._server_call_of(pAsync)
        if server_call is None:
            if self.host.fault("abort_invalid_ok"):
                return RPC_S_OK
            return RPC_S_INVALID_ASYNC_HANDLE  # RPC-SRV-ABORT-04
        self.host.pause()
        if self.host.fault("abort_code_lost"):
            ExceptionCode = RPC_S_CALL_FAILED
        if ExceptionCode & 0x80000000 and self.host.fault("abort_code_sign_lost"):
            ExceptionCode = RPC_S_CALL_FAILED
        return self._end(server_call, ExceptionCode, 0)

    def RpcServerTestCancel(self, BindingHandle: object) -> int:
        """RPC_S_OK if the client cancelled, RPC_S_CALL_IN_PROGRESS if not; a zero binding means
        the call running on this thread (RPC-SRV-CANCEL-01..03)."""
        if BindingHandle is None:
            current: DispatchedCall | None = getattr(_server_tls, "call", None)
            if current is None:
                if self.host.fault("test_cancel_idle_invalid_binding"):
                    return RPC_S_INVALID_BINDING
                return RPC_S_NO_CALL_ACTIVE
            BindingHandle = current
        if not isinstance(BindingHandle, DispatchedCall):
            return RPC_S_INVALID_BINDING
        with self._lock:
            if BindingHandle.ended:
                return RPC_S_INVALID_BINDING
            cancelled = BindingHandle.cancel_requested
            if self.host.carries("soft_cancel_lost_while_testing"):
                BindingHandle.testing = True
        if self.host.fault("soft_cancel_lost_while_testing"):
            time.sleep(RACE_WINDOW)  # the test's unlocked window
        with self._lock:
            BindingHandle.testing = False
            if self.host.fault("server_test_cancel_consumes"):
                BindingHandle.cancel_requested = False
            if self.host.fault("server_test_cancel_blind"):
                cancelled = False
            return RPC_S_OK if cancelled else RPC_S_CALL_IN_PROGRESS

    # --- notifications -----------------------------------------------------------------------------

    def _notify(self, call: ClientCall) -> None:
        """Deliver the completion notification the client asked for (RPC-CLI-NOTIFY-01..06).
        `u` is read now, as a runtime reads the caller's structure when the call completes."""
        pAsync = call.pAsync
        pAsync.Event = (RPC_ASYNC_EVENT.RpcSendComplete if self.host.fault("event_field_wrong_kind")
                        else RPC_ASYNC_EVENT.RpcCallComplete)  # RPC-STATE-02
        kind = pAsync.NotificationType
        u = pAsync.u
        if kind == RPC_NOTIFICATION_TYPES.RpcNotificationTypeEvent \
                and call.status == RPC_S_OK and call.server is not None \
                and call.server.routine_returned.is_set() \
                and self.host.fault("later_completion_no_event"):
            return
        for _ in range(2 if self.host.fault("notification_twice") else 1):
            self.host.pause()
            if kind == RPC_NOTIFICATION_TYPES.RpcNotificationTypeEvent:
                target_event = self._blind_event(call, u.hEvent)
                if target_event is not None:
                    target_event.set()
            elif kind == RPC_NOTIFICATION_TYPES.RpcNotificationTypeApc:
                apc_routine = u.APC.NotificationRoutine
                target = u.APC.hThread or call.issuing_thread  # hThread 0: the issuing thread
                if u.APC.hThread is None and self.host.fault("apc_to_runtime_thread"):
                    target = self._runtime_thread
                if apc_routine is not None:
                    target.queue_apc(_bind(apc_routine, pAsync))
            elif kind == RPC_NOTIFICATION_TYPES.RpcNotificationTypeIoc:
                if u.IOC.hIOPort is not None:
                    u.IOC.hIOPort.PostQueuedCompletionStatus(
                        u.IOC.dwNumberOfBytesTransferred,
                        0 if self.host.fault("ioc_wrong_key") else u.IOC.dwCompletionKey,
                        u.IOC.lpOverlapped)
            elif kind == RPC_NOTIFICATION_TYPES.RpcNotificationTypeHwnd:
                if u.HWND.hWnd is not None:
                    message = kernel.WM_USER if self.host.fault("hwnd_wrong_message") else u.HWND.Msg
                    kernel.PostMessage(u.HWND.hWnd, message, 0, pAsync)
            elif kind == RPC_NOTIFICATION_TYPES.RpcNotificationTypeCallback:
                callback = u.NotificationRoutine
                latest = self.host.shared.get(("latest routine", id(self)))
                if latest is not None and latest is not callback and \
                        self.host.fault("callback_of_latest_call"):
                    callback = latest  # type: ignore[assignment]  # the blind fault
                if callback is not None and not self.host.fault("callback_not_called"):
                    # On another thread, as the runtime's notifier does (RPC-CLI-NOTIFY-05).
                    with contextlib.suppress(RuntimeError):  # the pool is shut down: no one left
                        self.pool.submit(_bind(callback, pAsync, self.host))
            # RpcNotificationTypeNone: the client polls RpcAsyncGetCallStatus (RPC-CLI-NOTIFY-06).

    def _blind_event(self, call: ClientCall, event: KernelEvent | None) -> KernelEvent | None:
        """The event a completion signals: u.hEvent, or with a blind fault another one (the
        handle's first call's, reused_handle_old_event; the runtime's cached one while it is
        open, event_notify_cached_handle)."""
        if isinstance(call.old_event, KernelEvent) and self.host.fault("reused_handle_old_event"):
            return call.old_event
        if self.host.carries("event_notify_cached_handle"):
            cached = self.host.shared.get(("cached event", id(self)))
            if isinstance(cached, KernelEvent) and not cached.closed and cached is not event \
                    and self.host.fault("event_notify_cached_handle"):
                return cached
            self.host.shared[("cached event", id(self))] = event
        return event

    # --- the harness's view ----------------------------------------------------------------------

    def server_handle_live(self, server_call: DispatchedCall) -> bool:
        """Does the runtime still hold this call's server async handle?"""
        with self._lock:
            return self._server_handles.get(server_call.number) is server_call

    def test_cancel_on_idle_thread(self) -> int:
        """RpcServerTestCancel(0) on a server thread that runs no call."""
        done = threading.Event()
        result: list[int] = []

        def run() -> None:
            try:
                result.append(self.RpcServerTestCancel(None))
            finally:
                done.set()

        self.pool.submit(run)
        if not done.wait(COMMAND_SECONDS) or not result:
            raise ServerGone("RpcServerTestCancel on an idle server thread did not return")
        return result[0]

    def close(self) -> None:
        """End every call the test server still holds, and refuse new ones."""
        with self._lock:
            self._closed = True
            # Calls from synchronous clients complete on their own and read no commands.
            held = [c for c in self._server_handles.values()
                    if not c.ended and c.client is not None]
        commands = [c.mailbox.post(ServerAction.SHUTDOWN) for c in held]
        for command in commands:
            command.wait(1.0)


def _bind(routine: RPCNOTIFICATION_ROUTINE, pAsync: RPC_ASYNC_STATE,
          host: Host | None = None) -> Callable[[], None]:
    """The call of a notification routine: (pAsync, Context NULL, RpcCallComplete)."""
    def call() -> None:
        if host is not None:
            host.pause()
        routine(pAsync, None, RPC_ASYNC_EVENT.RpcCallComplete)
    return call


class TestRpcServer:
    """The manager routine of `[async] TestProc`, as the harness's test server.

    A call from a synchronous client is completed at once with its hint, on the dispatch thread
    (RPC-SRV-COMPLETE-07). Every other call is held on its dispatch thread until the
    harness sends a command through the call's mailbox. A complete or abort command with
    `later` set makes the routine return without ending the call; another thread then ends it
    once the routine has returned (RPC-SRV-COMPLETE-07).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, runtime: RpcRuntime) -> None:
        self.runtime = runtime

    def TestProc(self, pAsync: RPC_ASYNC_STATE, hint: int) -> None:
        runtime = self.runtime
        server_call = pAsync.RuntimeInfo
        assert isinstance(server_call, DispatchedCall)
        if server_call.client is None:
            runtime.RpcAsyncCompleteCall(pAsync, Reply(hint))
            return
        while True:
            command = server_call.mailbox.receive()
            runtime.host.pause()
            action = command.action
            if action in (ServerAction.COMPLETE, ServerAction.ABORT) and command.args.get("later"):
                # Hand the call off: the routine returns without ending it, and another thread
                # completes or aborts it once the routine has returned (RPC-SRV-COMPLETE-07).
                runtime.pool.submit(functools.partial(self._end_later, pAsync, server_call, command))
                return
            if action is ServerAction.COMPLETE:
                command.reply(runtime.RpcAsyncCompleteCall(pAsync, Reply(int(command.args["reply"]))))
                return
            if action is ServerAction.ABORT:
                command.reply(runtime.RpcAsyncAbortCall(pAsync, int(command.args["code"])))
                return
            if action is ServerAction.RAISE:
                # Before any hand-off, on the dispatch thread (RPC-SRV-EXC-01); the dispatcher
                # answers the harness once the runtime has ended the call.
                raise _ManagerRaised(int(command.args["code"]), command)
            if action is ServerAction.TEST_CANCEL:
                command.reply(runtime.RpcServerTestCancel(RpcAsyncGetCallHandle(pAsync,
                                                                                runtime.host)))
                continue
            if action is ServerAction.SHUTDOWN:
                command.reply(runtime.RpcAsyncAbortCall(pAsync, RPC_S_CALL_FAILED))
                return
            command.reply(RPC_S_INVALID_ARG)

    def _end_later(self, pAsync: RPC_ASYNC_STATE, server_call: DispatchedCall,
                   command: Command) -> None:
        """A thread other than the dispatch thread ends a handed-off call, after its manager
        routine returned."""
        runtime = self.runtime
        if not server_call.routine_returned.wait(COMMAND_SECONDS):
            command.reply(RPC_S_INTERNAL_ERROR)
            return
        runtime.host.pause()
        if command.action is ServerAction.COMPLETE:
            command.reply(runtime.RpcAsyncCompleteCall(pAsync, Reply(int(command.args["reply"]))))
        else:
            command.reply(runtime.RpcAsyncAbortCall(pAsync, int(command.args["code"])))

    def command(self, server_call: DispatchedCall, action: ServerAction, **args: int | bool) -> Command:
        """The harness tells the held call what to do, and waits until it is done."""
        return server_call.mailbox.send(action, **args)
