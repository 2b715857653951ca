"""A wait for ever whose look leaves the state (the first Wait on a signalled call object): the
runner takes the look, walks the way back to the state (steps whose outcome the model fixes),
and sends INFINITE only once the step that entered the state last is the one the look was taken
after. A way back that goes wrong ends the case there, and INFINITE is never sent."""

from __future__ import annotations

from collections.abc import Sequence

from callgate.conformance.cases.slots import default_slot
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.judge.runner import Case, CaseRunner, Taken
from callgate.conformance.protocol.adapter import Capabilities, Observation, Request, SlotSpec
from callgate.conformance.results import CaseResult, Verdict
from callgate.model import codes
from callgate.model.transitions import Action, Value

C0 = (default_slot("c0"),)
STEPS: tuple[tuple[str, dict[str, Value]], ...] = (
    ("CreateCall", {"riid": "async", "aggregate": False}), ("Begin_", {}),
    ("server_signal", {"out": 1, "then_impersonate": False}), ("Wait", {"timeout": "infinite"}))


class _Session:
    """The reference's session, with a Finish_ that fails after the first `finishes` calls."""

    def __init__(self, inner: object, finishes: int | None) -> None:
        self.inner = inner
        self.finishes = finishes
        self.requests: list[Request] = []

    def perform(self, request: Request) -> Observation:
        self.requests.append(request)
        if request.op == "Finish_" and self.finishes is not None:
            if self.finishes == 0:
                return Observation(codes.E_FAIL.value)
            self.finishes -= 1
        return self.inner.perform(request)  # type: ignore[attr-defined,no-any-return]

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


class _Adapter:
    def __init__(self, finishes: int | None = None) -> None:
        self.reference = ReferenceAdapter()
        self.finishes = finishes
        self.sessions: list[_Session] = []

    def capabilities(self) -> Capabilities:
        return self.reference.capabilities()

    def open_session(self, slots: Sequence[SlotSpec]) -> _Session:
        session = _Session(self.reference.open_session(slots), self.finishes)
        self.sessions.append(session)
        return session

    def shutdown(self) -> None:
        self.reference.shutdown()


def _run(adapter: _Adapter) -> CaseResult:
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=5.0, keep_traces=True)
    case = Case("t", "directed", "an infinite Wait on a signalled call object", C0,
                tuple(Action("c0", op, tuple(args.items())) for op, args in STEPS))
    try:
        return runner.run(case)
    finally:
        runner.close()
        adapter.shutdown()


def _ops(result: CaseResult) -> list[str]:
    return [f"{s.op}({','.join(map(str, s.args.values()))})" for s in result.trace]


def test_an_infinite_wait_whose_look_leaves_the_state_is_sent_after_the_way_back() -> None:
    result = _run(_Adapter())
    assert result.verdict is Verdict.PASS, result.message
    assert _ops(result)[2:] == [
        "server_signal(1,False)", "Wait(zero)", "Finish_()", "Begin_()",
        "server_signal(1,False)", "Wait(infinite)"]
    assert "com_call|True,True,SIGNALED,False,1,False,0,False|Wait(timeout=infinite)" in \
        result.covered


def test_a_way_back_that_goes_wrong_never_lets_the_infinite_wait_be_sent() -> None:
    adapter = _Adapter(finishes=0)
    result = _run(adapter)
    assert result.verdict is Verdict.FAIL
    assert _ops(result)[-1] == "Finish_()"
    sent = [r for s in adapter.sessions for r in s.requests]
    assert not [r for r in sent if r.args.get("timeout") == "infinite"]


def test_only_the_step_the_look_was_taken_after_establishes_the_wait_again() -> None:
    """[X into here, look, ..., X into here] establishes it; the same walk back ending with
    another step into here, or X from another state, does not."""
    adapter = _Adapter()
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=5.0)
    here, there, p, q = ("here",), ("there",), ("p",), ("q",)
    look = Action("c0", "Wait", (("timeout", "zero"),))
    x = Action("c0", "server_signal", (("out", 1), ("then_impersonate", False)))
    y = Action("c0", "Begin_", ())

    def taken(*steps: tuple[Action, tuple[str], tuple[str]]) -> list[Taken]:
        return [Taken(a, frozenset({b}), frozenset({e})) for a, b, e in steps]
    try:
        live = runner.open("t", C0)
        try:
            back = [(y, there, p)]
            cases = {
                True: taken((x, p, here), (look, here, there), *back, (x, p, here)),
                False: taken((y, p, here), (look, here, there), *back, (x, p, here)),
            }
            for expected, steps in cases.items():
                live._taken["c0"] = steps
                assert live._seen_to_work("c0", here, look) is expected
            live._taken["c0"] = taken((x, q, here), (look, here, there), *back, (x, p, here))
            assert not live._seen_to_work("c0", here, look)
            live._taken["c0"] = taken((x, p, here), (y, here, there), *back, (x, p, here))
            assert not live._seen_to_work("c0", here, look)  # no look was taken
        finally:
            live.close()
    finally:
        runner.close()
        adapter.shutdown()
