"""Expectations that say what the implementation does instead: strict checks of the entries, and
a walk that follows a known deviation past it (a fake adapter: the reference implementation with
RpcAsyncGetCallStatus answering 1914 in every state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from callgate.conformance.cases import sequences
from callgate.conformance.cases.walk import WalkBudget, walk_machine
from callgate.conformance.expectations import Expectations, ExpectationsError, load, parse
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.protocol.adapter import Capabilities, Observation, Request, Session, SlotSpec
from callgate.conformance.results import CaseResult, Summary, Verdict

DATA = Path(__file__).parent / "data" / "expectations"
STUB = DATA / "status-stub.toml"
HEAD = '[[deviation]]\nrule = "RPC-CLI-STATUS-01"\nverdict = "fail"\nreason = "stub"\n'


def _instead(body: str) -> str:
    return HEAD + "[[deviation.instead]]\n" + body


# --- the entries ---------------------------------------------------------------------------------


def test_an_instead_entry_loads_with_what_it_describes() -> None:
    known = load(STUB)
    first = known.deviations[0]
    (instead,) = first.instead
    assert (instead.machine, instead.op, instead.code, instead.next) == (
        "rpc_call", "RpcAsyncGetCallStatus", 1914, ())
    assert first.to_json()["instead"] == [{"machine": "rpc_call", "op": "RpcAsyncGetCallStatus",
                                           "code": 1914}]


@pytest.mark.parametrize(("body", "expected"), [
    ('machine = "rpc"\nop = "X"\ncode = 1\n', "machine: unknown machine 'rpc'"),
    ('machine = "rpc_call"\nop = "GetStatus"\ncode = 1\n', "op: rpc_call has no operation 'GetStatus'"),
    ('machine = "rpc_call"\nop = "RpcAsyncGetCallStatus"\n', "missing code"),
    ('machine = "rpc_call"\nop = "RpcAsyncGetCallStatus"\ncode = "1914"\n', "code must be an integer"),
    ('machine = "rpc_call"\nop = "RpcAsyncGetCallStatus"\ncode = 1914\nstate = { phase = "WAITING" }\n',
     "state: phase = 'WAITING' is not one of"),
    ('machine = "rpc_call"\nop = "RpcAsyncGetCallStatus"\ncode = 1914\nnext = { stage = "DONE" }\n',
     "next: rpc_call has no field 'stage'"),
    ('machine = "rpc_call"\nop = "RpcAsyncCancelCall"\ncode = 1914\nargs = { abort = 1 }\n',
     "args: abort = 1 is not one of [False, True]"),
    ('machine = "rpc_call"\nop = "RpcAsyncCancelCall"\ncode = 1914\nargs = { fAbort = true }\n',
     "args: RpcAsyncCancelCall has no parameter 'fAbort'"),
    ('machine = "rpc_call"\nop = "RpcAsyncGetCallStatus"\ncode = 1914\nwhen = "always"\n',
     "unknown keys ['when']"),
])
def test_a_bad_instead_is_refused_naming_the_entry_and_the_field(body: str, expected: str) -> None:
    with pytest.raises(ExpectationsError) as caught:
        parse(_instead(body), Path("known.toml"))
    message = str(caught.value)
    assert "known.toml:1: deviation #1" in message and "instead #1" in message
    assert expected in message


def test_instead_needs_a_rule_entry_of_verdict_fail() -> None:
    body = '[[deviation.instead]]\nmachine = "rpc_call"\nop = "RpcAsyncGetCallStatus"\ncode = 1\n'
    with pytest.raises(ExpectationsError, match="give rule"):
        parse('[[deviation]]\ncase = "x"\nverdict = "fail"\nreason = "r"\n' + body, Path("k.toml"))
    with pytest.raises(ExpectationsError, match='verdict is "fail"'):
        parse(HEAD.replace('"fail"', '"error"') + body, Path("k.toml"))


def test_follow_needs_the_description_to_hold_in_every_candidate_state() -> None:
    known = parse(_instead('machine = "rpc_call"\nop = "RpcAsyncGetCallStatus"\ncode = 1914\n'
                           'state = { phase = "PENDING" }\nnext = { phase = "SENT" }\n'), Path("k"))
    from callgate.model.families import MACHINES
    m = MACHINES["rpc_call"]
    pending, ready = m.make(phase="PENDING"), m.make(phase="READY")
    rules = ["RPC-CLI-STATUS-01"]
    found = known.follow("rpc_call", [pending], "RpcAsyncGetCallStatus", (), 1914, {}, rules)
    assert found is not None and found[1] == {m.make(phase="SENT")}
    assert [d.rule for d in found[0]] == ["RPC-CLI-STATUS-01"]
    assert known.follow("rpc_call", [pending, ready], "RpcAsyncGetCallStatus", (), 1914, {},
                        rules) is None
    assert known.follow("rpc_call", [pending], "RpcAsyncGetCallStatus", (), 997, {}, rules) is None
    assert known.follow("rpc_call", [pending], "RpcAsyncGetCallStatus", (), 1914, {},
                        ["RPC-CLI-STATUS-04"]) is None


# --- following a deviation ---------------------------------------------------------------------


class _StubSession:
    def __init__(self, inner: Session) -> None:
        self.inner = inner

    def perform(self, request: Request) -> Observation:
        if request.op == "RpcAsyncGetCallStatus":
            return Observation(1914)
        return self.inner.perform(request)

    def close(self) -> None:
        self.inner.close()


class StatusStub:
    """The reference implementation, RPC only, with RpcAsyncGetCallStatus a stub (1914)."""

    def __init__(self) -> None:
        self.inner = ReferenceAdapter()

    def capabilities(self) -> Capabilities:
        caps = self.inner.capabilities()
        return Capabilities("reference", caps.version,
                            frozenset(f for f in caps.features if f.startswith("rpc.")),
                            caps.pins, "RpcAsyncGetCallStatus answers 1914")

    def open_session(self, slots: Sequence[SlotSpec]) -> Any:
        return _StubSession(self.inner.open_session(slots))

    def shutdown(self) -> None:
        self.inner.shutdown()


def _walk(known: Expectations | None, cases: int = 8) -> tuple[list[CaseResult], set[str]]:
    adapter = StatusStub()
    caps = adapter.capabilities()
    plan = sequences.plan(caps).machines["rpc_call"]
    runner = CaseRunner(adapter, caps, step_timeout=5.0, expectations=known)
    try:
        results = [r for _, r in walk_machine(runner, plan, set(plan.transitions),
                                              WalkBudget(case_steps=80, cases=cases))]
    finally:
        runner.close()
        adapter.shutdown()
    return results, {k for r in results for k in r.covered}


def test_without_the_file_each_listed_deviation_fails_its_case() -> None:
    results, _ = _walk(None)
    failing = {rule for r in results if r.verdict is Verdict.FAIL for rule in r.failed_rules}
    listed = {d.rule for d in load(STUB).deviations}
    assert Summary.of(results).exit_code() == 1
    # Each segment stops at its first stub answer, so a status no walk reaches unfollowed (a
    # finished call that raised: RPC-CLI-STATUS-03) cannot fail here; the others do.
    assert "RPC-CLI-STATUS-01" in failing and failing <= listed


def test_with_the_file_the_walk_follows_the_stub_and_covers_more() -> None:
    known = load(STUB)
    plain, plain_covered = _walk(None)
    followed, covered = _walk(known)
    # Judged case by case (a walk this short need not reach every entry, so stale entries are
    # not asked for here): nothing fails, and the cases that followed the stub are known ones.
    applied = [known.apply(r) for r in followed]
    assert Summary.of(applied).exit_code() == 0, [r.message for r in applied
                                                 if r.verdict is Verdict.FAIL][:3]
    assert not any(r.verdict is Verdict.PASS and r.deviations for r in applied)
    deviating = [r for r in applied if r.deviations]
    assert deviating and all(r.verdict is Verdict.EXPECTED_FAIL for r in deviating)
    steps = [s for r in deviating for s in r.trace if s.deviation]
    assert steps and all(s.op == "RpcAsyncGetCallStatus" and s.code == 1914 and not s.ok
                         for s in steps)
    assert len(covered) > len(plain_covered)
    assert any(r.covered_after_deviation for r in deviating)
    assert Summary.of(plain).exit_code() == 1


# --- a listed failure is not shrunk ------------------------------------------------------------


def _failed(rules: list[str]) -> CaseResult:
    return CaseResult("rpc_call-walk-001", "directed", "", [], Verdict.FAIL, 3, 0.0,
                      message="stub", failed_rules=rules)


def test_a_failure_the_file_explains_is_not_shrunk_and_others_are(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from callgate.conformance import gate, units
    shrunk: list[str] = []

    def shrink_case(runner: object, failed: CaseResult, *args: object, **kw: object) -> CaseResult:
        shrunk.append(failed.failed_rules[0])
        return failed

    monkeypatch.setattr(units, "shrink_case", shrink_case)
    known = load(STUB)
    listed, other = _failed(["RPC-CLI-STATUS-01"]), _failed(["RPC-CLI-CALL-01"])
    assert known.explains(listed) and not known.explains(other)
    runner: Any = None
    assert gate.shrink(runner, None, None, listed, expectations=known) is listed
    gate.shrink(runner, None, None, other, expectations=known)
    gate.shrink(runner, None, None, listed)  # without the file it is an ordinary failure
    assert shrunk == ["RPC-CLI-CALL-01", "RPC-CLI-STATUS-01"]
