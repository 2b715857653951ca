"""The host a reference runtime runs in: its worker threads, timing jitter, and seeded-fault switches.

Three things every part of the reference implementation shares, and nothing else:

* `WorkerPool`: daemon threads for everything that runs "on another thread" (a COM server's
  Begin_ processing, an RPC dispatch thread, a Callback notification). A held call occupies a
  worker until the harness lets it go; idle workers wait a while for more work and then exit, so
  thousands of sessions reuse a handful of threads instead of piling them up.
* `Mailbox`: how the harness commands a held server call. The harness posts a `Command` and waits
  for the server thread's reply, so a command's effects (a Signal, a completion and its
  notification) have happened when the harness gets its answer. That is what makes the pinned
  behaviour deterministic although the server really runs on another thread.
* `Host`: the jitter (small random sleeps at interleaving points, for race testing) and the
  seeded faults (`FAULTS`).

Seeded faults. DESIGN.md principle 7 measures the suite with mutants: variants of the reference
implementation that each break one documented rule. A mutant is the reference implementation
built with `faults={name}`; the code consults `host.fault(name)` at the one place the rule is
implemented. `FAULTS` lists the fault points that exist, each with the rule it breaks; adding a
mutant means adding an entry here and one `if host.fault(...)` at the matching place.
"""

from __future__ import annotations

import enum
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

# How long an idle worker waits for more work before its thread exits.
IDLE_SECONDS = 2.0
# How long the harness waits for a held server call to answer a command before giving up; a
# healthy server thread answers in microseconds, so this only bounds a broken one.
COMMAND_SECONDS = 5.0


@dataclass(frozen=True)
class Fault:
    """A seeded fault: the rule it breaks and what the faulty implementation does instead."""

    name: str
    rule: str
    effect: str


FAULTS: Mapping[str, Fault] = {f.name: f for f in (
    Fault("begin_accepts_second", "COM-BEGIN-02",
          "Begin_ on a call object with a call in flight starts another call"),
    Fault("wait_ok_before_signal", "COM-WAIT-03",
          "ISynchronize::Wait on a call object returns S_OK when its timeout expires"),
    Fault("std_event_no_auto_reset", "COM-SYNC-03",
          "CLSID_StdEvent wraps a manual-reset event, so Wait does not reset it"),
    Fault("container_accepts_64th", "COM-CONT-02",
          "ISynchronizeContainer::AddSynchronize accepts members beyond 63"),
    Fault("notification_twice", "RPC-CLI-NOTIFY-01",
          "the RPC runtime delivers every completion notification twice"),
    Fault("server_handle_kept", "RPC-SRV-02",
          "the RPC runtime keeps the server async handle after complete, abort or exception"),
    Fault("begin_check_then_set_race", "COM-BEGIN-02",
          "Begin_ checks for a call in flight and records the new call outside one lock, so two "
          "threads' Begin_ can both start a call (only parallel cases can see it)"),
    Fault("wait_lost_wakeup", "COM-SYNC-01",
          "ISynchronize::Wait checks the event, then sleeps without looking again: a Signal "
          "between the check and the sleep is lost and the Wait times out (only parallel cases "
          "can see it)"),
)}


class Host:
    """Jitter and seeded faults, shared by every object of one adapter.

    `jitter` is the longest random pause, in seconds, inserted at interleaving points (0: none);
    `seed` makes the pauses repeatable; `faults` names entries of `FAULTS`.
    """

    def __init__(self, jitter: float = 0.0, seed: int | None = None,
                 faults: Iterable[str] = ()) -> None:
        if jitter < 0:
            raise ValueError(f"jitter must be >= 0 seconds, got {jitter}")
        unknown = sorted(set(faults) - set(FAULTS))
        if unknown:
            raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known faults: "
                             f"{', '.join(sorted(FAULTS))}")
        self.jitter = jitter
        self.seed = seed
        self.faults: frozenset[str] = frozenset(faults)
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()

    def fault(self, name: str) -> bool:
        """True if this build carries the seeded fault `name` (always False for the real thing)."""
        return name in self.faults

    def pause(self) -> None:
        """An interleaving point: sleep a random moment when jitter is on."""
        if self.jitter:
            with self._random_lock:
                delay = self._random.uniform(0.0, self.jitter)
            time.sleep(delay)


class WorkerPool:
    """Daemon worker threads that run submitted tasks, each task on a thread of its own.

    A task may block for as long as it likes (a held server call does): `submit` never queues a
    task behind a busy worker, it starts a new thread when no idle one is left. Idle workers exit
    after `idle_seconds`.
    """

    def __init__(self, name: str = "callgate-reference", idle_seconds: float = IDLE_SECONDS) -> None:
        self.name = name
        self.idle_seconds = idle_seconds
        self._cond = threading.Condition(threading.Lock())
        self._tasks: deque[Callable[[], None]] = deque()
        # Threads not running a task: idle, or started and not yet looking for work. Every queued
        # task is matched by one of them, so no task ever waits for a busy worker.
        self._available = 0
        self._threads = 0
        self._closed = False
        self._started = 0
        # Exceptions that escaped tasks (a bug in a server thread): the latest few, for tests.
        self.failures: deque[BaseException] = deque(maxlen=20)

    def submit(self, task: Callable[[], None]) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError(f"worker pool {self.name} is shut down")
            self._tasks.append(task)
            if self._available >= len(self._tasks):
                self._cond.notify()
                return
            self._available += 1
            self._threads += 1
            self._started += 1
            number = self._started
        threading.Thread(target=self._work, name=f"{self.name}-{number}", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._cond:
                deadline = time.monotonic() + self.idle_seconds
                while not self._tasks:
                    remaining = deadline - time.monotonic()
                    if self._closed or remaining <= 0:
                        self._available -= 1
                        self._threads -= 1
                        return
                    self._cond.wait(remaining)
                task = self._tasks.popleft()
                self._available -= 1
            try:
                task()
            except BaseException as exc:  # keep the pool's bookkeeping right; keep the evidence
                self.failures.append(exc)
            with self._cond:
                self._available += 1

    @property
    def threads(self) -> int:
        """Worker threads alive now (busy or idle)."""
        with self._cond:
            return self._threads

    def shutdown(self) -> None:
        """Let idle workers exit now; busy ones exit when their task ends."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Action(enum.Enum):
    """What the harness tells a held server call to do (DESIGN.md principle 6)."""

    SIGNAL = "signal"              # COM: ISynchronize::Signal with [out], Begin_ returns
    IMPERSONATE = "impersonate"    # COM: CoImpersonateClient before Signal
    TEST_CANCEL = "test_cancel"    # COM: ICancelMethodCalls::TestCancel; RPC: RpcServerTestCancel
    COMPLETE = "complete"          # RPC: RpcAsyncCompleteCall(pAsync, &reply)
    ABORT = "abort"                # RPC: RpcAsyncAbortCall(pAsync, code)
    RAISE = "raise"                # RPC: the manager routine raises code on the dispatch thread
    SHUTDOWN = "shutdown"          # the session is closing: end the call and free the thread


@dataclass(eq=False)
class Command:
    """One harness command to a held server call, and the server thread's answer."""

    action: Action
    args: Mapping[str, int | bool] = field(default_factory=dict)
    code: int = 0
    outputs: dict[str, int | bool] = field(default_factory=dict)
    _done: threading.Event = field(default_factory=threading.Event)

    def reply(self, code: int, **outputs: int | bool) -> None:
        """Called on the server thread once the command's effects have happened."""
        self.code = code
        self.outputs = dict(outputs)
        self._done.set()

    def wait(self, seconds: float) -> bool:
        return self._done.wait(seconds)


class ServerGone(Exception):
    """A held server call did not answer a command: its thread is gone or stuck."""


class Mailbox:
    """The channel from the harness to one held server call."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()

    def send(self, action: Action, seconds: float = COMMAND_SECONDS,
             **args: int | bool) -> Command:
        """Post a command and wait for the server thread's answer."""
        command = Command(action, args)
        self._queue.put(command)
        if not command.wait(seconds):
            raise ServerGone(f"the held server call did not answer {action.value} within "
                             f"{seconds} s")
        return command

    def post(self, action: Action) -> Command:
        """Post a command without waiting for the answer."""
        command = Command(action)
        self._queue.put(command)
        return command

    def receive(self) -> Command:
        """Called on the server thread: the next command, waiting as long as it takes."""
        return self._queue.get()
