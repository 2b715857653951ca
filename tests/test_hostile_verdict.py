"""The gate's verdict against hostile adapters and hostile use of the CLI (docs/verdict.md).

Each test here failed before the fix it pins: a run in which every feature was absent, a shard
of no unit or an empty trace exited 0 as "conformant, qualified"; a shard alone exited 0 as
"conformant"; an incomplete run or one below --min-coverage left junit.xml all green; a
response naming `code` twice was read as its last answer; a handshake could declare a feature
both implemented and absent; an in-process adapter calling sys.exit(0) ended the run with
exit 0 and a results stream that said it was complete.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from callgate.conformance.budgets import BUDGETS
from callgate.conformance.cli.main import main
from callgate.conformance.gate import (
    HandshakeFailed,
    RunAborted,
    RunOptions,
    check_capabilities,
    run_gate,
)
from callgate.conformance.protocol.adapter import (
    AdapterFault,
    Capabilities,
    NotApplicable,
    Observation,
    Request,
    SlotSpec,
)
from callgate.conformance.protocol.features import FEATURES
from callgate.conformance.protocol.jsonl import ProtocolError
from callgate.conformance.protocol.jsonl.messages import parse_line
from callgate.conformance.report import junit, reporting
from callgate.conformance.results import CaseResult, RunRecord, Verdict, read_stream
from tests import streams
from tests.conftest import ROOT
from tests.fakes import PINS, EventAdapter, EventSession

# Small enough that a run of the fake event adapter takes about a second.
TINY = replace(BUDGETS["quick"], name="tiny", stateful_examples=2, stateful_steps=8,
               parallel_runs=1)


class _NoFeatures(EventAdapter):
    """Declares nothing: every case is not applicable."""

    def capabilities(self) -> Capabilities:
        return Capabilities("nothing", "1", frozenset(), {})


class _AllAbsent(EventAdapter):
    """Declares every feature absent, with a reason."""

    def capabilities(self) -> Capabilities:
        return Capabilities("absent", "1", frozenset(), {},
                            absent={f: "not implemented" for f in FEATURES})


class _Contradicts(EventAdapter):
    """Declares sync.event both implemented and absent."""

    def capabilities(self) -> Capabilities:
        caps = super().capabilities()
        return replace(caps, absent={"sync.event": "missing"})


class _AbsentUnknown(EventAdapter):
    def capabilities(self) -> Capabilities:
        return replace(super().capabilities(), absent={"no.such.feature": "missing"})


def _run(adapter: EventAdapter, out: Path, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    options = RunOptions("hostile", TINY, 0, out, 5.0, parallel=False, **kwargs)
    outcome = run_gate(adapter, options)
    return outcome.exit_code, json.loads((out / "report.json").read_text(encoding="utf-8"))


def _junit_verdict(out: Path) -> list[tuple[str, str]]:
    """The `callgate.run` testcase's outcome elements: (tag, type)."""
    root = ET.parse(out / "junit.xml").getroot()
    return [(child.tag, child.get("type", "")) for case in root.iter("testcase")
            if case.get("classname") == "callgate.run" for child in case
            if child.tag in ("failure", "error")]


@pytest.mark.parametrize("adapter", [_NoFeatures(), _AllAbsent()], ids=["none", "all_absent"])
def test_a_run_in_which_no_case_passed_exits_3_never_0(adapter: EventAdapter,
                                                       tmp_path: Path) -> None:
    code, report = _run(adapter, tmp_path)
    assert report["summary"]["passed"] == 0
    assert code == 3 and report["verdict"]["status"] == "nothing shown"
    assert "no case passed" in report["verdict"]["headline"]
    assert _junit_verdict(tmp_path) == [("error", "callgate.run_error")]
    assert "exit code 3" in (tmp_path / "report.md").read_text(encoding="utf-8")
    reporting.validate_report(report)


def test_a_shard_alone_exits_3_and_says_it_is_a_shard(tmp_path: Path) -> None:
    code, report = _run(EventAdapter(), tmp_path, shard=(1, 2))
    assert report["summary"]["passed"] > 0 and report["summary"]["failed"] == 0
    assert code == 3 and report["verdict"]["status"] == "shard only"
    assert "shard 1/2 only" in report["verdict"]["headline"]
    assert _junit_verdict(tmp_path) == [("error", "callgate.run_error")]


def test_a_shard_that_failed_still_exits_1(tmp_path: Path) -> None:
    code, report = _run(EventAdapter("std_event_keeps_signal"), tmp_path, shard=(1, 2))
    assert code == 1 and report["verdict"]["status"] == "non-conformant"
    assert _junit_verdict(tmp_path) == []  # the failing cases say so themselves


def test_a_shard_of_no_unit_is_nothing_shown(tmp_path: Path) -> None:
    # Without parallel cases the fake adapter's run has a few units (its machine's walk,
    # repetition cases, ...), fewer than ten: shard 10/10 gets none.
    code, report = _run(EventAdapter(), tmp_path, shard=(10, 10))
    assert report["summary"]["cases"] == 0
    assert code == 3 and report["verdict"]["status"] == "nothing shown"


def _record(tmp_path: Path, cases: Sequence[CaseResult], **start: object) -> RunRecord:
    header = streams.run_start() | dict(start)
    return read_stream(streams.write_stream(tmp_path / "results.jsonl", cases, start=header))


def _pass() -> CaseResult:
    return CaseResult("p", "walk", "p", ["COM-SYNC-01"], Verdict.PASS, 1, 0.0)


def test_junit_fails_a_run_below_its_coverage_floor_that_no_case_failed(tmp_path: Path) -> None:
    report = reporting.build_report(_record(tmp_path, [_pass()], min_coverage=50.0))
    assert report["summary"]["exit_code"] == 1
    root = ET.fromstring(junit.junit_xml(report))
    failures = [c for c in root.iter("testcase") if c.find("failure") is not None]
    assert [c.get("classname") for c in failures] == ["callgate.run"]
    assert root.get("failures") == "1" and root.get("tests") == "2"


def test_junit_errs_a_run_that_did_not_finish_though_every_case_passed(tmp_path: Path) -> None:
    path = streams.write_stream(tmp_path / "results.jsonl", [_pass(), _pass()], complete=False)
    report = reporting.build_report(read_stream(path))
    assert report["summary"]["exit_code"] == 3
    root = ET.fromstring(junit.junit_xml(report))
    assert [c.get("name") for c in root.iter("testcase") if c.find("error") is not None] == [
        "verdict"]


def test_junit_of_a_passing_run_has_no_verdict_case(tmp_path: Path) -> None:
    report = reporting.build_report(_record(tmp_path, [_pass()]))
    assert report["summary"]["exit_code"] == 0
    root = ET.fromstring(junit.junit_xml(report))
    assert all(c.get("classname") != "callgate.run" for c in root.iter("testcase"))


def test_check_trace_of_an_empty_trace_exits_3(tmp_path: Path) -> None:
    trace = tmp_path / "empty.trace"
    trace.write_text(json.dumps({"type": "header", "format": "callgate-trace", "version": 1,
                                 "pins": {}}) + "\n", encoding="utf-8")
    assert main(["check-trace", str(trace), "--out", str(tmp_path / "out")]) == 3
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["verdict"]["status"] == "nothing shown"


def test_a_member_named_twice_is_a_protocol_violation() -> None:
    line = (b'{"type":"response","id":3,"status":"ok","code":0,'
            b'"code":2147549461}')
    with pytest.raises(ProtocolError, match="'code' is given twice"):
        parse_line(line, ["response"])
    nested = b'{"type":"response","id":3,"status":"ok","code":0,"outputs":{"out":1,"out":2}}'
    with pytest.raises(ProtocolError, match="'out' is given twice"):
        parse_line(nested, ["response"])
    assert parse_line(b'{"type":"response","id":3,"status":"ok","code":0}', ["response"])


@pytest.mark.parametrize("adapter", [_Contradicts(), _AbsentUnknown()],
                         ids=["both", "unknown"])
def test_a_handshake_that_declares_absent_wrongly_is_refused(adapter: EventAdapter,
                                                              tmp_path: Path) -> None:
    with pytest.raises(HandshakeFailed) as caught:
        _run(adapter, tmp_path)
    assert isinstance(caught.value, AdapterFault) and "absent" in str(caught.value)
    assert caught.value.outcome.exit_code == 3


def test_a_passing_whole_run_still_exits_0(tmp_path: Path) -> None:
    code, report = _run(EventAdapter(), tmp_path)
    assert code == 0 and report["verdict"]["status"] in ("conformant", "conformant, qualified")
    assert PINS  # the fake adapter pins what it knows


class _ExitingSession(EventSession):
    """Calls sys.exit(0) (or raises another BaseException) at its third request."""

    def __init__(self, stop: BaseException) -> None:
        super().__init__("")
        self.stop = stop
        self.requests = 0

    def perform(self, request: Request) -> Observation:
        self.requests += 1
        if self.requests == 3:
            raise self.stop
        return super().perform(request)


class _Exits(EventAdapter):
    def __init__(self, stop: BaseException) -> None:
        super().__init__()
        self.stop = stop

    def open_session(self, slots: Sequence[SlotSpec]) -> EventSession:
        return _ExitingSession(self.stop)


class _ExitsAtHandshake(EventAdapter):
    def capabilities(self) -> Capabilities:
        raise SystemExit(0)


class _Odd(BaseException):
    pass


@pytest.mark.parametrize("stop", [SystemExit(0), _Odd("odd")], ids=["sys_exit_0", "base"])
def test_an_in_process_adapter_that_exits_mid_run_aborts_it_with_exit_3(
        stop: BaseException, tmp_path: Path) -> None:
    with pytest.raises(RunAborted) as caught:
        _run(_Exits(stop), tmp_path)
    assert caught.value.exit_code == 3 and type(stop).__name__ in caught.value.reason
    record = read_stream(tmp_path / "results.jsonl")
    assert not record.complete
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["verdict"]["status"] == "incomplete" and report["summary"]["exit_code"] == 3


def test_an_adapter_that_exits_in_its_handshake_is_a_refused_handshake(tmp_path: Path) -> None:
    with pytest.raises(HandshakeFailed) as caught:
        _run(_ExitsAtHandshake(), tmp_path)
    assert "SystemExit" in str(caught.value) and caught.value.outcome.exit_code == 3


def test_the_cli_never_exits_with_a_status_an_adapter_chose(tmp_path: Path) -> None:
    module = tmp_path / "exiting_adapter.py"
    module.write_text("import sys\nclass A:\n    def __init__(self):\n        sys.exit(0)\n",
                      encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        code = main(["run", "--adapter", "exiting_adapter:A", "--out", str(tmp_path / "out"),
                     "--jobs", "1"])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("exiting_adapter", None)
    assert code == 3


def test_the_pytest_plugin_does_not_pass_a_session_whose_items_all_skipped(
        tmp_path: Path) -> None:
    (tmp_path / "nothing_adapter.py").write_text(
        "from callgate.conformance.protocol.adapter import Capabilities\n"
        "from tests.fakes import EventAdapter\n"
        "class A(EventAdapter):\n"
        "    def capabilities(self):\n"
        "        return Capabilities('nothing', '1', frozenset(), {})\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--callgate-adapter=nothing_adapter:A", "--callgate-budget=quick"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 5, done.stdout[-2000:]
    assert "nothing was shown to hold" in done.stdout and " skipped" in done.stdout


def test_a_stream_that_lost_a_case_line_is_never_a_complete_run(tmp_path: Path) -> None:
    failing = CaseResult("f", "walk", "f", ["COM-SYNC-01"], Verdict.FAIL, 1, 0.0,
                         failed_rules=["COM-SYNC-01"])
    path = streams.write_stream(tmp_path / "results.jsonl", [_pass(), failing, _pass()])
    lines = path.read_text(encoding="utf-8").splitlines()
    end = json.loads(lines[-1])
    end["summary"] = {"passed": 2, "failed": 1}
    lines[2] = lines[2][:40]  # the failing case's line, damaged in the middle of the stream
    path.write_text("\n".join([*lines[:-1], json.dumps(end)]) + "\n", encoding="utf-8")
    record = read_stream(path)
    assert not record.complete and "lost case lines" in (record.aborted or {})["reason"]
    assert reporting.build_report(record)["summary"]["exit_code"] == 3


# --- Declining a request (judge/declines.py, docs/adapter-protocol.md "Declining a request") ----

HIDDEN_FAULT = "std_event_keeps_signal"


class _HidingSession(EventSession):
    """A faulty session that declines (not_applicable) exactly the requests whose answers would
    fail: it runs a correct twin beside itself and declines wherever the two answers differ."""

    def __init__(self) -> None:
        super().__init__(HIDDEN_FAULT)
        self.twin = EventSession("")

    def perform(self, request: Request) -> Observation:
        right, answer = self.twin.perform(request), super().perform(request)
        if answer != right:
            raise NotApplicable("cannot do this one after all")
        return answer


class _Hider(EventAdapter):
    def open_session(self, slots: Sequence[SlotSpec]) -> EventSession:
        return _HidingSession()


class _DeclaresStdEventAbsent(EventAdapter):
    """The faulty StdEvent, declared absent up front as an argument form, and GetHandle as an
    operation: nothing else fails."""

    def __init__(self) -> None:
        super().__init__(HIDDEN_FAULT)

    def capabilities(self) -> Capabilities:
        return replace(super().capabilities(), absent={
            "event.CoCreateInstance(clsid=StdEvent)": "no CLSID_StdEvent here",
            "event.GetHandle": "no ISynchronizeHandle here"})


def test_the_seeded_fault_that_the_hider_hides_fails_a_run(tmp_path: Path) -> None:
    code, report = _run(EventAdapter(HIDDEN_FAULT), tmp_path)
    assert code == 1 and report["summary"]["failed"]


def test_declining_exactly_the_failing_requests_is_never_exit_0(tmp_path: Path) -> None:
    code, report = _run(_Hider(), tmp_path)
    assert code == 3 and report["verdict"]["status"] == "harness or adapter error"
    errors = [c for c in report["cases"] if c["verdict"] == "error"]
    assert errors and all("declined without declaration" in c["message"] for c in errors)
    assert "StdEvent" not in errors[0]["message"] or "Wait" in errors[0]["message"]
    headline = report["verdict"]["headline"]
    assert "declined (not_applicable) without declaration" in headline and ".Wait(" in headline
    junit_errors = [e.get("message") or "" for c in
                    ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
                    for e in c.iter("error")]
    assert any("declined without declaration" in m for m in junit_errors)
    assert "declined without declaration" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_a_declared_absence_is_not_applicable_and_exit_0_where_nothing_else_failed(
        tmp_path: Path) -> None:
    code, report = _run(_DeclaresStdEventAbsent(), tmp_path)
    assert code == 0 and report["verdict"]["status"] == "conformant, qualified"
    reasons = [c["message"] for c in report["cases"] if c["verdict"] == "not_applicable"]
    assert any("declared absent in the handshake: no CLSID_StdEvent here" in r for r in reasons)
    assert any("declared absent in the handshake: no ISynchronizeHandle here" in r
               for r in reasons)
    assert "stopped at a request the adapter declared absent" in report["verdict"]["headline"]
    assert report["adapter"]["absent"]["event.GetHandle"] == "no ISynchronizeHandle here"


def test_a_json_lines_adapter_that_declines_mid_case_is_caught_the_same_way(
        tmp_path: Path) -> None:
    from callgate.conformance.protocol.jsonl import CommandAdapter

    adapter = CommandAdapter([sys.executable, "-m", "callgate.conformance.protocol.jsonl_server",
                              "tests.test_hostile_verdict:_Hider"], cwd=str(ROOT),
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    # The walks are enough to meet the hidden fault; the rest would only cost time.
    options = RunOptions("hostile", TINY, 0, tmp_path, 5.0, parallel=False, stateful=False,
                         multi=False, identify=False, shrink=False)
    try:
        outcome = run_gate(adapter, options)
    finally:
        adapter.shutdown()
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert outcome.exit_code == 3
    assert any(c["verdict"] == "error" and "declined without declaration" in c["message"]
               for c in report["cases"])


def _guard(session: Any, absent: dict[str, str] | None = None) -> Any:
    from callgate.conformance.judge import declines

    slots = [SlotSpec("e0", "event")]
    return declines.open_guarded(lambda: session, slots,
                                 declines.parse_absent(absent or {})[0])


class _Scripted:
    """Answers from a script: an Observation, or an exception to raise."""

    def __init__(self, *answers: Observation | Exception) -> None:
        self.answers = list(answers)
        self.sent: list[str] = []

    def perform(self, request: Request) -> Observation:
        self.sent.append(request.op)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        pass


def test_a_decline_after_a_refused_creation_is_checked_and_stays_not_applicable() -> None:
    guard = _guard(_Scripted(Observation(0x80040154), NotApplicable("no event was made")))
    guard.perform(Request("e0", "CoCreateInstance", {"clsid": "StdEvent"}))
    with pytest.raises(NotApplicable, match=r"declined after an earlier refusal.*0x80040154"):
        guard.perform(Request("e0", "Wait", {"timeout": "zero"}))


@pytest.mark.parametrize("first", [Observation(0), Observation(0x80010115)],
                         ids=["created", "refused_wait_is_no_creation"])
def test_a_decline_without_an_earlier_refused_creation_is_an_adapter_fault(
        first: Observation) -> None:
    # A Wait that timed out (RPC_S_CALLPENDING, a failure HRESULT) took nothing away.
    op = "CoCreateInstance" if first.code == 0 else "Wait"
    guard = _guard(_Scripted(first, NotApplicable("cannot after all")))
    guard.perform(Request("e0", op, {"clsid": "StdEvent"} if op == "CoCreateInstance"
                          else {"timeout": "zero"}))
    with pytest.raises(AdapterFault, match=r"declined without declaration.*e0\.Reset"):
        guard.perform(Request("e0", "Reset", {}))


def test_a_declared_request_is_never_sent() -> None:
    session = _Scripted(Observation(0))
    guard = _guard(session, {"event.Wait(timeout=infinite)": "no INFINITE here"})
    with pytest.raises(NotApplicable, match="declared absent in the handshake: no INFINITE"):
        guard.perform(Request("e0", "Wait", {"timeout": "infinite"}))
    guard.perform(Request("e0", "Wait", {"timeout": "zero"}))
    assert session.sent == ["Wait"]


def test_a_declined_open_is_an_adapter_fault() -> None:
    from callgate.conformance.judge import declines

    def refuse() -> Any:
        raise NotApplicable("no such objects")

    with pytest.raises(AdapterFault, match=r"declined without declaration.*opening a session"):
        declines.open_guarded(refuse, [SlotSpec("e0", "event")], [])


@pytest.mark.parametrize("key", ["event.NoSuchOp", "no_machine.Wait", "event.Wait(timeout=long)",
                                 "event.Wait(when=zero)", "com_call.sync_call(out=1)",
                                 "event.Wait(timeout=zero", "no.such.feature"])
def test_an_absent_entry_that_names_no_request_is_refused(key: str) -> None:
    caps = replace(EventAdapter().capabilities(), absent={key: "missing"})
    with pytest.raises(AdapterFault, match="absent"):
        check_capabilities(caps)


def test_absent_entries_that_name_operations_and_forms_are_accepted() -> None:
    check_capabilities(_DeclaresStdEventAbsent().capabilities())
    check_capabilities(replace(EventAdapter().capabilities(), absent={
        "event.Wait(timeout=infinite)": "no INFINITE", "com_call.sync_call": "no proxy"}))


def test_the_acquiring_operations_are_the_models() -> None:
    from callgate.conformance.judge.declines import ACQUIRING, parse_absent
    from callgate.model.families import MACHINES

    assert set(ACQUIRING) == set(MACHINES)
    for machine, entries in ACQUIRING.items():
        found, problems = parse_absent({f"{machine}.{e}": "acquiring" for e in entries})
        assert not problems and len(found) == len(entries), (machine, problems)


def test_refusing_an_interface_of_a_call_object_takes_nothing_away() -> None:
    from callgate.conformance.judge import declines

    session = _Scripted(Observation(0x80004002), NotApplicable("no Cancel after all"),
                        Observation(0x80004002), NotApplicable("no call object"))
    guard = declines.open_guarded(lambda: session, [SlotSpec("c0", "com_call")], [])
    guard.perform(Request("c0", "QueryInterface", {"iid": "ICancelMethodCalls"}))
    with pytest.raises(AdapterFault, match="declined without declaration"):
        guard.perform(Request("c0", "Cancel", {"seconds": 0}))
    guard.perform(Request("c0", "QueryInterface", {"iid": "ICallFactory"}))
    with pytest.raises(NotApplicable, match="declined after an earlier refusal"):
        guard.perform(Request("c0", "CreateCall", {"riid": "async", "aggregate": False}))


def _call_guard(*answers: Observation | Exception) -> Any:
    from callgate.conformance.judge import declines

    return declines.open_guarded(lambda: _Scripted(*answers), [SlotSpec("c0", "com_call")], [])


_SYNC = Request("c0", "CreateCall", {"riid": "sync", "aggregate": False})
_ASYNC = Request("c0", "CreateCall", {"riid": "async", "aggregate": False})


def test_a_decline_of_a_request_that_would_make_the_refused_object_again_is_not_checked() -> None:
    # COM-CF-03 allows refusing a synchronous riid; that refusal took away no object a
    # CreateCall with riid async needs: declining it is an undeclared decline.
    guard = _call_guard(Observation(0x80004002), NotApplicable("no async call object"))
    guard.perform(_SYNC)
    with pytest.raises(AdapterFault, match=r"declined without declaration.*c0\.CreateCall\("
                                           r"riid=async.*would make one itself"):
        guard.perform(_ASYNC)


def test_a_decline_of_a_request_that_needs_the_refused_object_is_still_checked() -> None:
    guard = _call_guard(Observation(0x80004002), NotApplicable("no call object to begin"))
    guard.perform(_SYNC)
    with pytest.raises(NotApplicable, match=r"declined after an earlier refusal \(c0\.CreateCall"
                                            r"\(riid=sync"):
        guard.perform(Request("c0", "Begin_", {}))


def test_an_object_made_after_its_refusal_excuses_no_later_decline() -> None:
    guard = _call_guard(Observation(0x80004002), Observation(0),
                        NotApplicable("no Begin_ after all"))
    guard.perform(_SYNC)
    guard.perform(_ASYNC)
    with pytest.raises(AdapterFault, match=r"declined without declaration.*c0\.Begin_"):
        guard.perform(Request("c0", "Begin_", {}))


def test_a_second_creation_declined_after_a_refused_one_is_not_checked() -> None:
    guard = _guard(_Scripted(Observation(0x80040154), NotApplicable("cannot create")))
    guard.perform(Request("e0", "CoCreateInstance", {"clsid": "StdEvent"}))
    with pytest.raises(AdapterFault, match="declined without declaration"):
        guard.perform(Request("e0", "CoCreateInstance", {"clsid": "ManualResetEvent"}))


def test_what_an_acquiring_request_needs_names_acquiring_requests() -> None:
    from callgate.conformance.judge.declines import ACQUIRING, NEEDS

    for machine, needs in NEEDS.items():
        for made, needed in needs.items():
            assert made in ACQUIRING[machine] and needed <= ACQUIRING[machine], machine
            assert made not in needed, (machine, made)


class _DeclinesReset(EventSession):
    def perform(self, request: Request) -> Observation:
        if request.op == "Reset":
            raise NotApplicable("no Reset today")
        return super().perform(request)


class _ResetDecliner(EventAdapter):
    def open_session(self, slots: Sequence[SlotSpec]) -> EventSession:
        return _DeclinesReset("")


def test_stateful_testing_does_not_discard_an_undeclared_decline() -> None:
    from callgate.conformance.cases.stateful import StatefulBudget, run_stateful
    from callgate.conformance.judge.runner import CaseRunner

    adapter = _ResetDecliner()
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=5.0)
    try:
        result = run_stateful(runner, StatefulBudget(20, 10), seed=1,
                              slots=[SlotSpec("e0", "event")], shrink_seconds=2.0)
    finally:
        runner.close()
    assert result.verdict is Verdict.ERROR and "declined without declaration" in result.message


def test_a_race_with_a_declared_request_is_not_run() -> None:
    from callgate.conformance.cases.parallel import race_cases, run_parallel
    from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
    from callgate.conformance.judge.runner import CaseRunner

    race = next(c for c in race_cases() if c.id == "race-signal-wait-event")
    adapter = ReferenceAdapter()
    caps = replace(adapter.capabilities(), absent={"event.Signal": "no Signal here"})
    runner = CaseRunner(adapter, caps, step_timeout=5.0)
    try:
        result = run_parallel(runner, race, runs=1)
    finally:
        runner.close()
        adapter.shutdown()
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert "declared absent in the handshake: no Signal here" in result.message
