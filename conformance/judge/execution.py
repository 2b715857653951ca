"""Calls into an adapter on a worker thread, so that a hang becomes a timeout and not a stuck run."""

from __future__ import annotations

import queue
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


class Executor:
    """Runs one call at a time on a daemon worker thread and waits at most `timeout` seconds.

    A worker that hangs is abandoned (it is a daemon: it cannot block the process from exiting)
    and a fresh worker takes the next call, so one hung adapter call costs one case.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.abandoned = 0
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._worker = self._start()

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
        """Run `fn` on the worker; raise StepTimeout if it takes longer than the timeout."""
        job = _Job(fn)
        self._jobs.put(job)
        try:
            ok, value = job.answer.get(timeout=self.timeout if timeout is None else timeout)
        except queue.Empty:
            # Leave the stuck worker behind with its own queue; later calls get a new one.
            self.abandoned += 1
            self._jobs = queue.SimpleQueue()
            self._worker = self._start()
            raise StepTimeout(
                f"no answer within {self.timeout if timeout is None else timeout} s") from None
        if not ok:
            raise value
        result: T = value
        return result

    def close(self) -> None:
        self._jobs.put(None)
