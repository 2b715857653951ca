"""The runner judges each step with the model and turns adapter trouble into verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callgate.conformance.cases.stateful import StatefulBudget, run_stateful, trace_script
from callgate.conformance.judge.runner import Case, CaseRunner
from callgate.conformance.protocol import loading as adapters
from callgate.conformance.protocol.adapter import SlotSpec
from callgate.conformance.results import ResultStream, Verdict, read_stream
from callgate.model.transitions import Action
from tests.fakes import EventAdapter

E0 = (SlotSpec("e0", "event", {}),)


def _case(*steps: tuple[str, dict[str, object]]) -> Case:
    actions = tuple(Action("e0", op, tuple(args.items())) for op, args in steps)  # type: ignore[arg-type]
    return Case("t", "directed", "test case", E0, actions)


STD_EVENT_TWICE = _case(("CoCreateInstance", {"clsid": "StdEvent"}), ("Signal", {}),
                        ("Wait", {"timeout": "zero"}), ("Wait", {"timeout": "zero"}))


def _run(fault: str, case: Case, timeout: float = 2.0) -> object:
    adapter = EventAdapter(fault)
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=timeout)
    try:
        return runner.run(case)
    finally:
        runner.close()


def test_a_correct_implementation_passes_and_covers_its_transitions() -> None:
    result = _run("", STD_EVENT_TWICE)
    assert result.verdict is Verdict.PASS  # type: ignore[attr-defined]
    assert len(result.covered) == 4  # type: ignore[attr-defined]


def test_a_std_event_that_does_not_reset_fails_at_the_second_wait() -> None:
    result = _run("std_event_keeps_signal", STD_EVENT_TWICE)
    assert result.verdict is Verdict.FAIL  # type: ignore[attr-defined]
    last = result.trace[-1]  # type: ignore[attr-defined]
    assert (last.op, last.ok, last.code_name) == ("Wait", False, "S_OK (0x00000000)")
    assert "COM-SYNC-03" in last.rules
    assert any("RPC_S_CALLPENDING" in a for a in last.allowed)
    assert result.failed_rules == last.rules  # type: ignore[attr-defined]


def test_an_adapter_exception_is_an_error_with_its_traceback() -> None:
    result = _run("crash_on_wait", STD_EVENT_TWICE)
    assert result.verdict is Verdict.ERROR  # type: ignore[attr-defined]
    assert "RuntimeError" in result.message  # type: ignore[attr-defined]
    assert "boom" in result.evidence  # type: ignore[attr-defined]


def test_a_hung_step_is_an_error_and_the_runner_goes_on() -> None:
    adapter = EventAdapter("hang_on_wait")
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=0.3)
    try:
        first = runner.run(STD_EVENT_TWICE)
        adapter.fault = ""
        second = runner.run(STD_EVENT_TWICE)
    finally:
        runner.close()
    assert first.verdict is Verdict.ERROR and "hung" in first.message
    assert second.verdict is Verdict.PASS
    assert runner.executor.abandoned >= 1


def test_missing_features_make_a_case_not_applicable() -> None:
    case = Case("k", "directed", "container", (SlotSpec("k0", "container", {}),),
                (Action("k0", "CoCreateInstance", ()),))
    assert _run("", case).verdict is Verdict.NOT_APPLICABLE  # type: ignore[attr-defined]


def test_stateful_testing_finds_and_shrinks_a_fault() -> None:
    adapter = EventAdapter("created_signaled")
    runner = CaseRunner(adapter, adapter.capabilities())
    try:
        result = run_stateful(runner, StatefulBudget(40, 10), seed=3, slots=list(E0))
    finally:
        runner.close()
    assert result.verdict is Verdict.FAIL
    assert [s.op for s in result.trace] == ["CoCreateInstance", "Wait"]
    assert "state.e0__Wait" in trace_script(result.trace)


def test_stateful_testing_passes_a_correct_implementation() -> None:
    adapter = EventAdapter("")
    runner = CaseRunner(adapter, adapter.capabilities())
    try:
        result = run_stateful(runner, StatefulBudget(30, 10), seed=3, slots=list(E0))
    finally:
        runner.close()
    assert result.verdict is Verdict.PASS
    assert result.steps > 30


def test_the_stream_survives_a_killed_run(tmp_path: Path) -> None:
    result = _run("", STD_EVENT_TWICE)
    stream = ResultStream(tmp_path / "results.jsonl")
    stream.emit({"event": "run_start", "adapter": {"name": "x"}})
    stream.emit({"event": "case", "case": result.to_json()})  # type: ignore[attr-defined]
    stream.close()
    with (tmp_path / "results.jsonl").open("a") as handle:
        handle.write('{"event": "case", "case": {"id": "half')  # killed mid-write
    record = read_stream(tmp_path / "results.jsonl")
    assert not record.complete
    assert [c.verdict for c in record.cases] == [Verdict.PASS]


def test_a_stream_without_a_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"event": "case"}) + "\n")
    with pytest.raises(ValueError, match="no run_start"):
        read_stream(path)


@pytest.mark.parametrize("spec,says", [
    ("no.such:thing", "cannot be imported"),
    ("json:nothing_here", "has no 'nothing_here'"),
    ("json:dumps", "did not give an Adapter"),
    ("plainword", "neither a built-in name"),
])
def test_bad_adapter_specs_say_what_to_pass(spec: str, says: str) -> None:
    with pytest.raises(adapters.AdapterNotFound) as info:
        adapters.load(spec)
    assert says in str(info.value)
    assert "module:attribute" in str(info.value) and "reference" in str(info.value)


def test_stateful_rules_send_only_what_is_offered_when_sent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The stateful rules work out what each may send once per step and reuse it: every action
    they send is still offered at that moment (what a fresh look at the model says), and each
    action's offer is worked out at most once per step."""
    from callgate.conformance.judge.runner import LiveCase
    sent: list[bool] = []
    asked: dict[tuple[int, int, Action], int] = {}
    step, offered = LiveCase.step, LiveCase.offered

    def checked_step(self: LiveCase, action: Action) -> bool:
        sent.append(offered(self, action))
        return step(self, action)

    def counted(self: LiveCase, action: Action) -> bool:
        key = (id(self), len(self.trace), action)
        asked[key] = asked.get(key, 0) + 1
        return offered(self, action)

    monkeypatch.setattr(LiveCase, "step", checked_step)
    monkeypatch.setattr(LiveCase, "offered", counted)
    adapter = EventAdapter("")
    runner = CaseRunner(adapter, adapter.capabilities())
    try:
        result = run_stateful(runner, StatefulBudget(30, 10), seed=5, slots=list(E0))
    finally:
        runner.close()
    assert result.verdict is Verdict.PASS and len(sent) > 100
    assert all(sent)
    assert max(asked.values()) == 1
