"""The client application of the RPC test procedure: what it supplies for each notification type,
and how it waits for a completion notification.

RPC-INIT-04: after RpcAsyncInitializeHandle the client sets NotificationType and fills exactly the
matching member of `u`. The resources are the client's (RPC-CLI-COMPLETE-10): it creates them for
a call and closes them once RpcAsyncCompleteCall has been final. `CallResources.wait` is the
client's wait for the next notification: WaitForSingleObject on its event, an alertable wait for
the APC, GetQueuedCompletionStatus on its port, a message loop for its window, or a wait for its
callback to have run; with None there is nothing to wait for (the client polls instead).
"""

from __future__ import annotations

import threading
import time
from collections import deque

from callgate.conformance.implementations.reference import kernel
from callgate.conformance.implementations.reference.kernel import (
    MSG,
    CompletionPort,
    KernelEvent,
    ThreadContext,
    Window,
)
from callgate.conformance.implementations.reference.rpc import (
    RPC_ASYNC_EVENT,
    RPC_ASYNC_STATE,
    RPC_NOTIFICATION_TYPES,
)

# The values the client stores in u.IOC and u.HWND, to recognise its own packets and messages.
COMPLETION_KEY = 0xCA11
BYTES_TRANSFERRED = 0
NOTIFY_MESSAGE = kernel.WM_USER + 0x11


class CallResources:
    """The notification resources one call uses, and what has been delivered through them."""

    def __init__(self, kind: RPC_NOTIFICATION_TYPES, thread: ThreadContext, *,
                 null_thread: bool = False) -> None:
        self.kind = kind
        self.thread = thread  # the issuing thread: APCs and window messages come here
        self.null_thread = null_thread  # Apc: leave u.APC.hThread NULL instead of naming it
        self._cond = threading.Condition(threading.Lock())
        self._arrived: deque[int] = deque()  # Event values the routines or window saw
        self.event: KernelEvent | None = None
        self.port: CompletionPort | None = None
        self.window: Window | None = None
        self.overlapped = object()  # stands for the client's OVERLAPPED
        self._closed = False

    def fill(self, pAsync: RPC_ASYNC_STATE) -> None:
        """Set NotificationType and the matching member of u (RPC-INIT-04)."""
        T = RPC_NOTIFICATION_TYPES
        pAsync.NotificationType = self.kind
        if self.kind == T.RpcNotificationTypeEvent:
            self.event = KernelEvent(manual_reset=False)  # CreateEvent(NULL, FALSE, FALSE, NULL)
            pAsync.u.hEvent = self.event
        elif self.kind == T.RpcNotificationTypeApc:
            pAsync.u.APC.NotificationRoutine = self._routine
            # NULL: the thread that issues the call; or that thread named explicitly. Both come
            # to this thread (RPC-CLI-NOTIFY-02).
            pAsync.u.APC.hThread = None if self.null_thread else self.thread
        elif self.kind == T.RpcNotificationTypeIoc:
            self.port = CompletionPort()
            pAsync.u.IOC.hIOPort = self.port
            pAsync.u.IOC.dwNumberOfBytesTransferred = BYTES_TRANSFERRED
            pAsync.u.IOC.dwCompletionKey = COMPLETION_KEY
            pAsync.u.IOC.lpOverlapped = self.overlapped
        elif self.kind == T.RpcNotificationTypeHwnd:
            self.window = kernel.Window(self.thread, self._window_proc)
            pAsync.u.HWND.hWnd = self.window
            pAsync.u.HWND.Msg = NOTIFY_MESSAGE
        elif self.kind == T.RpcNotificationTypeCallback:
            pAsync.u.NotificationRoutine = self._routine

    def _routine(self, pAsync: RPC_ASYNC_STATE, Context: object, Event: RPC_ASYNC_EVENT) -> None:
        """The RPCNOTIFICATION_ROUTINE for Apc and Callback: note the notification."""
        self._arrive(int(Event))

    def _window_proc(self, msg: MSG) -> None:
        if msg.message == NOTIFY_MESSAGE and isinstance(msg.lParam, RPC_ASYNC_STATE):
            self._arrive(int(msg.lParam.Event))

    def _arrive(self, event: int) -> None:
        with self._cond:
            self._arrived.append(event)
            self._cond.notify_all()

    def _take(self) -> int | None:
        with self._cond:
            return self._arrived.popleft() if self._arrived else None

    def wait(self, pAsync: RPC_ASYNC_STATE, milliseconds: int) -> int | None:
        """Wait up to `milliseconds` for the next notification; its RPC_ASYNC_EVENT, or None."""
        T = RPC_NOTIFICATION_TYPES
        if self._closed or self.kind == T.RpcNotificationTypeNone:
            return None
        deadline = time.monotonic() + milliseconds / 1000.0
        if self.kind == T.RpcNotificationTypeEvent:
            assert self.event is not None
            got = kernel.wait_any((self.event,), milliseconds)
            return int(pAsync.Event) if got == kernel.WAIT_OBJECT_0 else None
        if self.kind == T.RpcNotificationTypeIoc:
            assert self.port is not None
            while (left := _left(deadline)) >= 0:
                packet = self.port.GetQueuedCompletionStatus(left)
                if packet is None:
                    return None
                if (packet.dwCompletionKey == COMPLETION_KEY
                        and packet.lpOverlapped is self.overlapped):
                    return int(pAsync.Event)
            return None
        if self.kind == T.RpcNotificationTypeCallback:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._arrived), milliseconds / 1000.0)
            return self._take()
        # Apc and Hwnd arrive on the issuing thread: this wait runs as that thread.
        with kernel.attach(self.thread):
            while True:
                found = self._take()
                if found is not None:
                    return found
                left = _left(deadline)
                if left < 0 or self._closed or self.thread.closed:
                    return None
                if self.kind == T.RpcNotificationTypeApc:
                    kernel.SleepEx(left, True)  # alertable: queued APCs run here
                else:
                    while (msg := self.thread.peek_message()) is not None:
                        kernel.DispatchMessage(msg)
                    if self._arrived:
                        continue
                    kernel.wait_any((), left, thread=self.thread, wake_on_messages=True)

    def still_open(self) -> bool:
        """The event or port the client supplied is still open: the runtime did not close it."""
        return not ((self.event is not None and self.event.closed)
                    or (self.port is not None and self.port.closed))

    def close(self) -> None:
        """CloseHandle on the event or port, DestroyWindow on the window."""
        self._closed = True
        if self.event is not None:
            self.event.close()
        if self.port is not None:
            self.port.close()
        if self.window is not None:
            self.window.destroy()


def _left(deadline: float) -> int:
    """Milliseconds left before `deadline`; -1 once it has passed (0 still means: look once)."""
    left = deadline - time.monotonic()
    return -1 if left < 0 else int(left * 1000)
