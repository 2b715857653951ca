"""Races whose verdict depends on timing must never fail a correct implementation.

Two causes of such false failures, each shown deterministically:

* the reference's ICancelMethodCalls::Cancel(0) made the request visible to the server under
  one lock and decided its result under a second one; a server that tested the cancel and
  completed the call in the gap left a Cancel reporting RPC_E_CALL_COMPLETE for a call whose
  server had seen the cancel (`race-cancel-test-cancel` failed so on a loaded machine). The test
  runs the server's TestCancel and Signal in every gap the Cancel leaves between taking and
  releasing the call object's lock.
* a Cancel with ulSeconds > 0 is not atomic in any correct implementation (it acts at once and
  decides when its wait ends), so a parallel case never races it against another branch on its
  object.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

from callgate.conformance.cases.parallel import _a, interleavings
from callgate.conformance.cases.parallel.races import _COM, _CREATE
from callgate.conformance.implementations.reference import com
from callgate.conformance.implementations.reference.adapter import PINS, ReferenceAdapter, _ComSlot
from callgate.conformance.protocol.adapter import Request

RPC_E_CALL_CANCELED = 0x80010002


class _GapLock:
    """A lock that, once it is released by the thread `owner`, runs `gap` (once) before that
    thread goes on: whatever another thread could do between two lock sections happens there."""

    def __init__(self, gap: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self.gap = gap
        self.owner: int | None = None
        self.gaps = 0

    def __enter__(self) -> _GapLock:
        self._lock.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._lock.release()
        if threading.get_ident() == self.owner and self.gaps == 0:
            self.gaps += 1
            self.gap()


def _cancel_with_server_in_gap(seconds: int, split: bool) -> tuple[int, int, int]:
    """Cancel(`seconds`) on a pending call while, at the first moment Cancel lets go of the call
    object's lock, the server tests for cancel and signals (on its own threads). The codes of
    Cancel, of the server's TestCancel and of its Signal. `split` puts back the Cancel that
    decided under a second lock (the false failure's cause), to show the check catches it."""
    adapter = ReferenceAdapter()
    session = adapter.open_session([_COM])
    answers: dict[str, int] = {}
    try:
        for action in (_CREATE, _a("c0", "Begin_")):
            assert session.perform(Request(action.slot, action.op, dict(action.args))).code == 0
        slot = session._slots["c0"].state
        assert isinstance(slot, _ComSlot) and slot.call_object is not None
        call_object = slot.call_object

        def server() -> None:
            for op, args in (("server_test_cancel", {}),
                             ("server_signal", {"out": 1, "then_impersonate": False})):
                answers[op] = session.perform(Request("c0", op, args)).code

        def gap() -> None:
            worker = threading.Thread(target=server)  # the server's commands come from elsewhere
            worker.start()
            worker.join(5.0)

        lock = _GapLock(gap)
        call_object._lock = lock  # type: ignore[assignment]
        lock.owner = threading.get_ident()
        if split:
            original = com.CallObject._cancel

            def split_cancel(self: com.CallObject, ulSeconds: int) -> int:
                with self._lock:  # the request, as the old code made it visible
                    self._call.cancel_requested = True  # type: ignore[union-attr]
                return original(self, ulSeconds)

            code = split_cancel(call_object, seconds)
        else:
            code = session.perform(Request("c0", "Cancel", {"seconds": seconds})).code
        lock.owner = None
        return code, answers["server_test_cancel"], answers["server_signal"]
    finally:
        session.close()
        adapter.shutdown()


def test_a_cancel_with_no_wait_is_one_step_whatever_the_server_does_in_between() -> None:
    cancel, test, signal = _cancel_with_server_in_gap(0, split=False)
    assert signal == 0
    # The server saw the cancel, so the Cancel was accepted before it: S_OK (COM-CANCEL-05).
    assert test == RPC_E_CALL_CANCELED
    assert cancel == 0, hex(cancel)


def test_the_check_catches_a_cancel_decided_after_the_server_could_act() -> None:
    cancel, test, _ = _cancel_with_server_in_gap(0, split=True)
    # The server saw the cancel, yet the Cancel reports the call completed: no sequential order
    # of the three operations gives both answers (the false failure of the race).
    assert test == RPC_E_CALL_CANCELED and cancel == com.RPC_E_CALL_COMPLETE


def test_a_cancel_that_waits_never_races_another_branch_on_its_object() -> None:
    prefix = (_CREATE, _a("c0", "Begin_"))
    server = (_a("c0", "server_test_cancel"),
              _a("c0", "server_signal", out=1, then_impersonate=False))
    waiting = interleavings((_COM,), prefix, ((_a("c0", "Cancel", seconds=1),), server), PINS)
    assert not waiting.sound and "not atomic" in waiting.problem
    assert interleavings((_COM,), prefix, ((_a("c0", "Cancel", seconds=0),), server), PINS).sound
    # Before the branches (or after them) it runs alone on its object, and may.
    assert interleavings((_COM,), (*prefix, _a("c0", "Cancel", seconds=1)),
                         ((_a("c0", "TestCancel"),), (_a("c0", "TestCancel"),)), PINS).sound
