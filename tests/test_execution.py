"""The step executor bounds every adapter call by the step timeout, on a worker thread or, for an
in-process adapter on the main thread, directly under a timer; a hang is a timeout either way."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Sequence

import pytest

from callgate.conformance.implementations.reference.adapter import (
    ReferenceAdapter,
    ReferenceSession,
)
from callgate.conformance.judge.execution import Executor, StepTimeout
from callgate.conformance.judge.runner import Case, CaseRunner
from callgate.conformance.protocol.adapter import Observation, Request, SlotSpec
from callgate.conformance.results import Verdict
from callgate.model.transitions import Action
from tests.fakes import EventAdapter

# These tests set SIGALRM's handler and the main thread's interval timer.
pytestmark = pytest.mark.serial


def _idle_timer() -> bool:
    return signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_direct_call_runs_on_the_calling_thread_and_passes_answers_and_exceptions() -> None:
    executor = Executor(1.0, direct=True)
    empty: dict[str, int] = {}
    try:
        assert executor.call(threading.get_ident) == threading.get_ident()
        with pytest.raises(KeyError, match="x"):
            executor.call(lambda: empty["x"])
    finally:
        executor.close()
    assert (executor.direct_calls, executor.thread_calls, executor.abandoned) == (2, 0, 0)
    assert _idle_timer()


def test_a_direct_call_that_hangs_is_a_timeout_and_the_next_call_works() -> None:
    executor = Executor(0.2, direct=True)

    def spin() -> None:  # pure Python, never waits: the signal still reaches it
        while True:
            pass

    try:
        for hang in (lambda: threading.Event().wait(30), spin, lambda: time.sleep(30)):
            started = time.monotonic()
            with pytest.raises(StepTimeout, match=r"0\.2 s"):
                executor.call(hang)
            assert time.monotonic() - started < 5
            assert _idle_timer()
            assert executor.call(lambda: 7) == 7
    finally:
        executor.close()
    assert (executor.direct_calls, executor.abandoned) == (6, 3)


def test_calls_from_other_threads_and_under_someone_elses_alarm_take_the_worker_thread() -> None:
    executor = Executor(1.0, direct=True)
    main = threading.get_ident()
    seen: list[int] = []
    try:
        other = threading.Thread(target=lambda: seen.append(executor.call(threading.get_ident)))
        other.start()
        other.join()
        assert seen and seen[0] != other.ident and seen[0] != main
        previous = signal.signal(signal.SIGALRM, lambda *_: None)
        try:
            assert executor.call(threading.get_ident) != main
            assert signal.getsignal(signal.SIGALRM) is not signal.SIG_DFL  # left as it was
        finally:
            signal.signal(signal.SIGALRM, previous)
        # Without `direct` (an adapter in another process), every call takes the worker thread.
        plain = Executor(1.0)
        try:
            assert plain.call(threading.get_ident) != main
        finally:
            plain.close()
    finally:
        executor.close()
    assert (executor.direct_calls, executor.thread_calls) == (0, 2)


def test_someone_elses_timer_is_given_back_and_the_call_takes_the_worker_thread() -> None:
    executor = Executor(1.0, direct=True)
    try:
        assert executor.call(lambda: 1) == 1  # direct: SIGALRM is now ours
        signal.setitimer(signal.ITIMER_REAL, 100.0)  # then someone else arms the timer
        try:
            assert executor.call(threading.get_ident) != threading.get_ident()
            assert 90.0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 100.0  # still theirs
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0.0)
        assert executor.call(threading.get_ident) != threading.get_ident()  # no longer direct
        executor.recheck()  # a new case: the handler is ours, no timer runs: direct again
        assert executor.call(threading.get_ident) == threading.get_ident()
        previous = signal.signal(signal.SIGALRM, signal.SIG_DFL)  # someone resets SIGALRM
        try:
            executor.recheck()
            assert executor.call(threading.get_ident) == threading.get_ident()  # taken again
            assert signal.getsignal(signal.SIGALRM) is previous
            signal.signal(signal.SIGALRM, lambda *_: None)  # someone else's handler
            executor.recheck()
            assert executor.call(threading.get_ident) != threading.get_ident()
        finally:
            signal.signal(signal.SIGALRM, previous)
    finally:
        executor.close()
    assert (executor.direct_calls, executor.thread_calls) == (3, 3)


class _HangingSession(ReferenceSession):
    """The reference, except that Signal hangs far past the step timeout."""

    def perform(self, request: Request) -> Observation:
        if request.op == "Signal":
            threading.Event().wait(30)
        return super().perform(request)


class _Hanging(ReferenceAdapter):
    def open_session(self, slots: Sequence[SlotSpec]) -> ReferenceSession:
        session = super().open_session(slots)
        session.__class__ = _HangingSession
        return session


def test_only_an_in_process_adapter_is_called_directly_and_its_hang_is_still_a_hang() -> None:
    event = (SlotSpec("e0", "event", {}),)
    case = Case("t", "directed", "hang", event, (
        Action("e0", "CoCreateInstance", (("clsid", "StdEvent"),)), Action("e0", "Signal", ())))
    fake = EventAdapter("")
    assert CaseRunner(fake, fake.capabilities()).executor.direct is False
    adapter = _Hanging()
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=0.3)
    try:
        assert runner.executor.direct is True
        started = time.monotonic()
        result = runner.run(case)
    finally:
        runner.close()
        adapter.shutdown()
    assert time.monotonic() - started < 10
    assert result.verdict is Verdict.ERROR and "0.3 s" in result.message, result.message
    assert result.steps == 2 and runner.executor.abandoned == 1
    assert runner.executor.direct_calls >= 3 and runner.executor.thread_calls == 0
