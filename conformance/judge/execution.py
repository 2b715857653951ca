"""Calls into an adapter bounded by the step timeout, so that a hang becomes a timeout and not a
stuck run.

Two ways, with the same result: on a worker thread that the caller waits for (any adapter), or,
for an adapter whose calls are Python code in this process (`interruptible_calls`, the reference
implementation), directly on the main thread under an interval timer whose signal raises in the
call when it overruns. The direct way saves a thread hand-off (two thread switches) per call; it
is taken only on the process's main thread, and only while nobody else uses SIGALRM (its handler
is looked at when each case opens; someone else's timer is seen whenever a call arms ours, and
is given back). Calls from other threads (a parallel case's branches) and adapters that talk to
another process (whose reply a signal would cut in half) keep the worker thread.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class StepTimeout(Exception):
    """The adapter did not answer within the per-step timeout."""


@dataclass
class _Job:
    fn: Callable[[], Any]
    # The worker puts (True, result) or (False, exception) here: a C-level queue, cheaper to make
    # and to wait on than a threading.Event, and a gate run makes one per adapter call.
    answer: queue.SimpleQueue[tuple[bool, Any]] = field(default_factory=queue.SimpleQueue)


class _Overrun(BaseException):
    """Raised in a direct call by the timer's signal: the call overran the step timeout. A
    BaseException, so that the adapter's own `except Exception` does not swallow it."""


class _Timer:
    """The main thread's interval timer and the handler of its signal (one per process)."""

    armed = False

    @staticmethod
    def ring(signum: int, frame: object) -> None:
        if _Timer.armed:
            _Timer.armed = False
            raise _Overrun

    @staticmethod
    def ours() -> bool:
        """Whether SIGALRM is ours, or untouched (then it becomes ours): asked once per case
        (`Executor.recheck`), not per call (asking costs more than the call it would bound).
        Someone else's timer set later is seen when a call arms ours (`Executor._direct`)."""
        handler = signal.getsignal(signal.SIGALRM)
        if handler is _Timer.ring:
            return True
        if handler is not signal.SIG_DFL or signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0):
            return False
        signal.signal(signal.SIGALRM, _Timer.ring)
        return True


_IDLE = (0.0, 0.0)


class Executor:
    """Runs one call at a time and waits at most `timeout` seconds for it: on a daemon worker
    thread, or directly under a timer (`direct`; see the module's docstring).

    A worker that hangs is abandoned (it is a daemon: it cannot block the process from exiting)
    and a fresh worker takes the next call, so one hung adapter call costs one case. A direct call
    that overruns is interrupted once where it hangs (its `finally` blocks run as it unwinds); an
    adapter that swallowed BaseException would hang the run, so none that may is run directly.
    """

    def __init__(self, timeout: float, direct: bool = False) -> None:
        self.timeout = timeout
        self.direct = direct
        self.abandoned = 0
        # Calls made each way (what tests/test_execution.py checks).
        self.direct_calls = 0
        self.thread_calls = 0
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._ours: bool | None = None  # whether SIGALRM may be used (`_Timer.ours`), once asked

    def _start(self) -> threading.Thread:
        jobs = self._jobs
        worker = threading.Thread(target=self._loop, args=(jobs,), name="callgate-step",
                                  daemon=True)
        worker.start()
        return worker

    @staticmethod
    def _loop(jobs: queue.SimpleQueue[_Job | None]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                answer: tuple[bool, Any] = (True, job.fn())
            except BaseException as exc:  # handed to the caller, whatever it is
                answer = (False, exc)
            job.answer.put(answer)

    def call(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        """Run `fn`; raise StepTimeout if it takes longer than the timeout."""
        limit = self.timeout if timeout is None else timeout
        if self.direct and limit > 0 and not _Timer.armed and \
                threading.current_thread() is threading.main_thread():
            if self._ours is None:
                self._ours = _Timer.ours()
            if self._ours:
                return self._direct(fn, limit)
        return self._threaded(fn, limit)

    def _direct(self, fn: Callable[[], T], limit: float) -> T:
        outcome: tuple[bool, Any] | None = None
        try:
            _Timer.armed = True
            previous = signal.setitimer(signal.ITIMER_REAL, limit)
            if previous != _IDLE:  # someone else's timer was running: give it back, use threads
                _Timer.armed = False
                signal.setitimer(signal.ITIMER_REAL, *previous)
                self._ours = False
                return self._threaded(fn, limit)
            self.direct_calls += 1
            try:
                value = fn()
            except _Overrun:
                raise
            except BaseException as exc:  # handed to the caller, as the worker thread does
                outcome = (False, exc)
            else:
                outcome = (True, value)
            _Timer.armed = False
        except _Overrun:  # at most one per call: the handler disarms the timer as it raises
            pass
        _Timer.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        if outcome is None:
            self.abandoned += 1
            raise StepTimeout(f"no answer within {limit} s")
        ok, result = outcome
        if not ok:
            raise result
        answer: T = result
        return answer

    def _threaded(self, fn: Callable[[], T], limit: float) -> T:
        self.thread_calls += 1
        if self._worker is None:
            self._worker = self._start()
        job = _Job(fn)
        self._jobs.put(job)
        try:
            ok, value = job.answer.get(timeout=limit)
        except queue.Empty:
            # Leave the stuck worker behind with its own queue; later calls get a new one.
            self.abandoned += 1
            self._jobs = queue.SimpleQueue()
            self._worker = self._start()
            raise StepTimeout(f"no answer within {limit} s") from None
        if not ok:
            raise value
        result: T = value
        return result

    def recheck(self) -> None:
        """Look at SIGALRM's handler again before the next direct call (the runner asks at each
        case it opens: someone may have set a handler of their own since)."""
        self._ours = None

    def close(self) -> None:
        self._jobs.put(None)
