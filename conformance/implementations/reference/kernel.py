"""Kernel-like objects the reference runtimes are built on: events, thread queues, ports, windows.

These stand in for the Win32 objects the documentation talks about, with their semantics and
not more:

* `KernelEvent`: an event (CreateEvent), manual-reset or auto-reset; a wait that sees an
  auto-reset event signalled consumes the signal, atomically, so exactly one waiter wins.
* `ThreadContext`: what Windows keeps per thread that matters here: the apartment (COM), the
  queue of user APCs (run only while the thread waits alertably), and the message queue (pumped by
  an STA's modal loop, read by a message loop).
* `wait_any`: WaitForMultipleObjectsEx / MsgWaitForMultipleObjectsEx: wait for any of several
  events, optionally alertable (run queued APCs and return WAIT_IO_COMPLETION) and optionally
  woken by messages arriving in the thread's queue.
* `CompletionPort` (an I/O completion port: PostQueuedCompletionStatus and
  GetQueuedCompletionStatus) and `Window` (an HWND: PostMessage puts a message in the owning
  thread's queue; DispatchMessage calls the window procedure).

Emulated threads are objects, not OS threads: the adapter attaches a session's `ThreadContext`
to whichever OS thread the harness calls it from (`attach`), so "the thread that issued the call"
stays one thread even when the harness moves to a fresh worker after a timeout.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from callgate.model import codes

INFINITE = codes.INFINITE
WAIT_OBJECT_0 = codes.WAIT_OBJECT_0
WAIT_IO_COMPLETION = codes.WAIT_IO_COMPLETION
WAIT_TIMEOUT = 0x102
WAIT_FAILED = 0xFFFFFFFF


class _Waitable:
    """What `wait_any` needs of an object it waits on: a lock, a closed flag, and the waits
    registered on it, each woken when the object changes."""

    __slots__ = ("_closed", "_lock", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._waiters: list[threading.Event] = []

    @property
    def closed(self) -> bool:
        return self._closed

    def _register(self, waiter: threading.Event) -> None:
        with self._lock:
            self._waiters.append(waiter)

    def _unregister(self, waiter: threading.Event) -> None:
        with self._lock:
            self._waiters.remove(waiter)


class KernelEvent(_Waitable):
    """An event object: SetEvent, ResetEvent, and waits that consume an auto-reset signal."""

    __slots__ = ("_manual_reset", "_signaled", "name")

    def __init__(self, manual_reset: bool, initial_state: bool = False, name: str = "") -> None:
        super().__init__()
        self._manual_reset = manual_reset
        self._signaled = initial_state
        self.name = name

    @property
    def manual_reset(self) -> bool:
        return self._manual_reset

    def set(self) -> bool:
        """SetEvent: signal, and wake every waiter so each can try to take the signal."""
        with self._lock:
            if self._closed:
                return False
            self._signaled = True
            waiters = tuple(self._waiters)
        for waiter in waiters:
            waiter.set()
        return True

    def reset(self) -> bool:
        """ResetEvent."""
        with self._lock:
            if self._closed:
                return False
            self._signaled = False
            return True

    def is_set(self) -> bool:
        """Peek at the state without consuming an auto-reset signal (for tests and probes)."""
        return self._signaled

    def close(self) -> None:
        """CloseHandle: pending and later waits on this handle fail."""
        with self._lock:
            self._closed = True
            waiters = tuple(self._waiters)
        for waiter in waiters:
            waiter.set()

    def _take(self) -> int:
        """1 if the wait is satisfied (consuming an auto-reset signal), 0 if not, -1 if closed."""
        with self._lock:
            if self._closed:
                return -1
            if not self._signaled:
                return 0
            if not self._manual_reset:
                self._signaled = False
            return 1


class Apartment(enum.Enum):
    """The COM apartment a thread entered (CoInitializeEx)."""

    MTA = "MTA"
    STA = "STA"


@dataclass(frozen=True)
class MSG:
    """A window message as GetMessage returns it."""

    hwnd: Window | None
    message: int
    wParam: int = 0
    lParam: object = None


WM_USER = 0x0400


class ThreadContext(_Waitable):
    """One emulated Windows thread: its apartment, its APC queue and its message queue."""

    def __init__(self, name: str, apartment: Apartment = Apartment.MTA) -> None:
        super().__init__()
        self.name = name
        self.apartment = apartment
        self._apcs: deque[Callable[[], None]] = deque()
        self._messages: deque[MSG] = deque()

    def __repr__(self) -> str:
        return f"<thread {self.name} {self.apartment.value}>"

    def queue_apc(self, routine: Callable[[], None]) -> bool:
        """QueueUserAPC: the routine runs when this thread next waits alertably."""
        return self._push(lambda: self._apcs.append(routine))

    def post_message(self, msg: MSG) -> bool:
        """PostThreadMessage, and the queue half of PostMessage."""
        return self._push(lambda: self._messages.append(msg))

    def _push(self, append: Callable[[], None]) -> bool:
        """Queue something under the lock, then wake every wait registered on this thread."""
        with self._lock:
            if self._closed:
                return False
            append()
            waiters = tuple(self._waiters)
        for waiter in waiters:
            waiter.set()
        return True

    def has_apcs(self) -> bool:
        return bool(self._apcs)

    def has_messages(self) -> bool:
        return bool(self._messages)

    def run_apcs(self) -> int:
        """Run every queued APC, in order, on the calling OS thread; the count run."""
        count = 0
        while True:
            with self._lock:
                if not self._apcs:
                    return count
                routine = self._apcs.popleft()
            routine()
            count += 1

    def peek_message(self, hwnd: Window | None = None, message: int | None = None) -> MSG | None:
        """PeekMessage(PM_REMOVE) with an optional window and message filter."""
        with self._lock:
            for msg in self._messages:
                if (hwnd is None or msg.hwnd is hwnd) and (message is None or msg.message == message):
                    self._messages.remove(msg)
                    return msg
        return None

    def close(self) -> None:
        """The thread ends: queued APCs and messages are dropped and waits on it fail."""
        with self._lock:
            self._closed = True
            self._apcs.clear()
            self._messages.clear()
            waiters = tuple(self._waiters)
        for waiter in waiters:
            waiter.set()


_tls = threading.local()


def current_thread() -> ThreadContext:
    """The emulated thread the calling OS thread is attached to (an MTA thread by default)."""
    context: ThreadContext | None = getattr(_tls, "context", None)
    if context is None:
        context = ThreadContext(threading.current_thread().name)
        _tls.context = context
    return context


@contextmanager
def attach(context: ThreadContext) -> Iterator[ThreadContext]:
    """Run the body as `context`: APCs, messages and the apartment are that thread's."""
    previous: ThreadContext | None = getattr(_tls, "context", None)
    _tls.context = context
    try:
        yield context
    finally:
        _tls.context = previous


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


# Taking every handle of a wait-all at once: no other wait-all can take some of them in between.
_WAIT_ALL_LOCK = threading.Lock()


def _take_all(handles: Sequence[KernelEvent]) -> int:
    """1 if every handle is signalled (consuming the auto-reset signals), 0 if not, -1 if one
    is closed. A plain wait on one of the handles may still take its signal in between: then
    the auto-reset signal is gone and this wait is not satisfied."""
    with _WAIT_ALL_LOCK:
        if any(h.closed for h in handles):
            return -1
        if not all(h.is_set() for h in handles):
            return 0
        taken = [h for h in handles if h._take() == 1]
        if len(taken) == len(handles):
            return 1
        for handle in taken:  # lost a race for one of them: give back what was taken
            if not handle.manual_reset:
                handle.set()
        return 0


def wait_any(handles: Sequence[KernelEvent], milliseconds: int, *,
             thread: ThreadContext | None = None, alertable: bool = False,
             wake_on_messages: bool = False, wait_all: bool = False) -> int:
    """WaitForMultipleObjectsEx / MsgWaitForMultipleObjectsEx (bWaitAll as `wait_all`).

    Returns WAIT_OBJECT_0 + i for the first signalled handle (lowest index wins, as on Windows),
    WAIT_OBJECT_0 when `wait_all` and every handle is signalled (taken together),
    WAIT_OBJECT_0 + len(handles) when `wake_on_messages` and the thread's queue holds a message,
    WAIT_IO_COMPLETION after running queued APCs in an alertable wait, WAIT_TIMEOUT, or
    WAIT_FAILED when a handle or the thread is closed.
    """
    if (alertable or wake_on_messages) and thread is None:
        thread = current_thread()
    deadline = None if milliseconds == INFINITE else time.monotonic() + milliseconds / 1000.0
    waiter: threading.Event | None = None
    try:
        while True:
            if wait_all and handles:
                taken = _take_all(handles)
                if taken == 1:
                    return WAIT_OBJECT_0
                if taken < 0:
                    return WAIT_FAILED
            for index, handle in enumerate(() if wait_all else handles):
                taken = handle._take()
                if taken == 1:
                    return WAIT_OBJECT_0 + index
                if taken < 0:
                    return WAIT_FAILED
            if thread is not None:
                if thread.closed:
                    return WAIT_FAILED
                if wake_on_messages and thread.has_messages():
                    return WAIT_OBJECT_0 + len(handles)
                if alertable and thread.has_apcs():
                    thread.run_apcs()
                    return WAIT_IO_COMPLETION
            remaining = _remaining(deadline)
            if remaining == 0.0:
                return WAIT_TIMEOUT
            if waiter is None:
                # Register, then look again before sleeping: a Set between the first look and
                # the registration would otherwise be missed.
                waiter = threading.Event()
                for handle in handles:
                    handle._register(waiter)
                if thread is not None:
                    thread._register(waiter)
                continue
            waiter.wait(remaining)
            waiter.clear()
    finally:
        if waiter is not None:
            for handle in handles:
                handle._unregister(waiter)
            if thread is not None:
                thread._unregister(waiter)


def SleepEx(milliseconds: int, alertable: bool) -> int:
    """SleepEx on the current emulated thread: WAIT_IO_COMPLETION if APCs ran, else 0."""
    result = wait_any((), milliseconds, thread=current_thread(), alertable=alertable)
    return WAIT_IO_COMPLETION if result == WAIT_IO_COMPLETION else 0


class Window:
    """An HWND: owned by one thread; its messages go to that thread's queue."""

    def __init__(self, thread: ThreadContext, wndproc: Callable[[MSG], None] | None = None) -> None:
        self.thread = thread
        self.wndproc = wndproc
        self.destroyed = False

    def destroy(self) -> None:
        """DestroyWindow."""
        self.destroyed = True


def PostMessage(hWnd: Window, Msg: int, wParam: int = 0, lParam: object = None) -> bool:
    """PostMessage: queue the message to the window's thread and return at once."""
    if hWnd.destroyed:
        return False
    return hWnd.thread.post_message(MSG(hWnd, Msg, wParam, lParam))


def DispatchMessage(msg: MSG) -> None:
    """DispatchMessage: call the window procedure of the message's window, if it has one."""
    if msg.hwnd is not None and msg.hwnd.wndproc is not None and not msg.hwnd.destroyed:
        msg.hwnd.wndproc(msg)


@dataclass(frozen=True)
class CompletionPacket:
    """What GetQueuedCompletionStatus returns."""

    dwNumberOfBytesTransferred: int
    dwCompletionKey: int
    lpOverlapped: object


class CompletionPort:
    """An I/O completion port: a thread-safe FIFO of completion packets."""

    def __init__(self) -> None:
        self._event = KernelEvent(manual_reset=False)
        self._lock = threading.Lock()
        self._packets: deque[CompletionPacket] = deque()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def PostQueuedCompletionStatus(self, dwNumberOfBytesTransferred: int, dwCompletionKey: int,
                                   lpOverlapped: object) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._packets.append(CompletionPacket(dwNumberOfBytesTransferred, dwCompletionKey,
                                                  lpOverlapped))
        self._event.set()
        return True

    def GetQueuedCompletionStatus(self, dwMilliseconds: int) -> CompletionPacket | None:
        """The next packet, waiting up to `dwMilliseconds`; None on timeout or a closed port."""
        deadline = None if dwMilliseconds == INFINITE else time.monotonic() + dwMilliseconds / 1000
        while True:
            with self._lock:
                if self._packets:
                    packet = self._packets.popleft()
                    if self._packets:
                        self._event.set()  # the auto-reset event stands for "queue not empty"
                    return packet
                if self._closed:
                    return None
            remaining = _remaining(deadline)
            left = INFINITE if remaining is None else int(remaining * 1000)
            if remaining == 0.0 or wait_any((self._event,), left) != WAIT_OBJECT_0:
                with self._lock:
                    return self._packets.popleft() if self._packets else None

    def close(self) -> None:
        """CloseHandle on the port."""
        with self._lock:
            self._closed = True
        self._event.close()
