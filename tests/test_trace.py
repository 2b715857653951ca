"""Monitor mode: the trace format, `callgate check-trace`, and `callgate run --record-trace`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from callgate.conformance.cli.main import main
from callgate.conformance.gate import run_cases
from callgate.conformance.implementations.reference.adapter import make_adapter
from callgate.conformance.judge.runner import Case
from callgate.conformance.protocol.adapter import SlotSpec
from callgate.conformance.results import Verdict, read_stream
from callgate.conformance.trace.check import check
from callgate.conformance.trace.format import TraceInvalid, header, load
from callgate.model import codes
from callgate.model.transitions import Action, Value

S_OK = codes.S_OK.value
INFINITE = 0xFFFFFFFF


def _call(seq: int, api: str, args: dict[str, Any] | None = None, code: int | None = S_OK, *,
          at: float, until: float | None = None, side: str = "client", obj: str = "0x1000",
          tid: int = 1, outputs: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    line = {"type": "call", "seq": seq, "pid": 7, "tid": tid, "side": side, "object": obj,
            "kind": "call_object", "api": api, "args": args or {}, "code": code,
            "outputs": outputs or {}, "invoked": at,
            "responded": at + 0.5 if until is None else until}
    return line | extra


CREATE = {"riid": "async", "aggregate": False}
START = [
    {"type": "object", "object": "0x1000", "machine": "com_call",
     "config": {"factory": True, "cancellable": True}},
    _call(1, "ICallFactory::CreateCall", CREATE, at=1.0),
    _call(2, "AsyncIFoo::Begin_Method", at=2.0),
]


def _write(tmp_path: Path, lines: list[dict[str, Any]], name: str = "t.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(x) + "\n" for x in
                            [header("test", {}), *lines]), encoding="utf-8")
    return path


def _object_case(tmp_path: Path, lines: list[dict[str, Any]]) -> Any:
    outcome = check(load([_write(tmp_path, lines)]))
    (case,) = [c for c in outcome.cases if c.id == "trace/object/0x1000"]
    return case


def test_a_round_trip_passes(tmp_path: Path) -> None:
    case = _object_case(tmp_path, [
        *START,
        _call(3, "ISynchronize::Signal", {"out": 77, "then_impersonate": False}, at=3.0,
              side="server", obj="0xbeef", call_id="call-1", tid=2),
        _call(4, "ISynchronize::Wait", {"timeout": 0}, at=4.0),
        _call(5, "AsyncIFoo::Finish_Method", at=5.0, outputs={"out": 77}),
    ])
    # Without a call_id on the client's side the server's Signal is another object's, so the
    # client's Wait(0) returned S_OK on a call nobody signalled.
    assert case.verdict is Verdict.FAIL
    assert "COM-WAIT-03" in case.failed_rules
    case = _object_case(tmp_path, [
        *START[:2], _call(2, "AsyncIFoo::Begin_Method", at=2.0, call_id="call-1"),
        _call(3, "ISynchronize::Signal", {"out": 77, "then_impersonate": False}, at=3.0,
              side="server", obj="0xbeef", call_id="call-1", tid=2),
        _call(4, "ISynchronize::Wait", {"timeout": 0}, at=4.0),
        _call(5, "AsyncIFoo::Finish_Method", at=5.0, outputs={"out": 77}),
    ])
    assert case.verdict is Verdict.PASS, case.message
    assert case.steps == 5


def test_a_broken_rule_is_named(tmp_path: Path) -> None:
    # A second Begin_ while the first call is in flight must be refused (COM-BEGIN-02).
    case = _object_case(tmp_path, [*START, _call(3, "AsyncIFoo::Begin_Method", at=3.0)])
    assert case.verdict is Verdict.FAIL
    assert "COM-BEGIN-02" in case.failed_rules
    assert "t.jsonl:5" in case.message  # the line of the call the model rejects
    assert [s.op for s in case.trace] == ["CreateCall", "Begin_", "Begin_"]


def test_a_wrong_finish_value_is_caught(tmp_path: Path) -> None:
    case = _object_case(tmp_path, [
        *START,
        _call(3, "server_signal", {"out": 77, "then_impersonate": False}, at=3.0, side="server"),
        _call(4, "Finish_", at=4.0, outputs={"out": 78}),
    ])
    assert case.verdict is Verdict.FAIL
    assert "COM-FIN-01" in case.failed_rules


def _overlapping(finish_out: int) -> list[dict[str, Any]]:
    """The server signals while the client's Finish_ is in flight (Finish_ waits for it)."""
    return [*START,
            _call(3, "server_signal", {"out": 5, "then_impersonate": False}, at=3.2, until=3.4,
                  side="server", tid=2),
            _call(4, "Finish_", at=3.0, until=3.6, outputs={"out": finish_out})]


def test_overlapping_calls_are_judged_by_linearizability(tmp_path: Path) -> None:
    good = _object_case(tmp_path, _overlapping(5))
    assert good.verdict is Verdict.PASS, good.message
    assert good.linearizability == "linearizable"
    # After the group the object is idle again: the calls that follow are judged from there.
    later = _object_case(tmp_path, [*_overlapping(5), _call(5, "Begin_", at=4.0),
                                    _call(6, "Begin_", at=5.0)])
    assert later.verdict is Verdict.FAIL
    assert "COM-BEGIN-02" in later.failed_rules and "t.jsonl:8" in later.message
    # Finish_ may have begun before the signal, where the model leaves it undefined
    # (COM-FIN-03): anything may follow, so a wrong [out] is not judged, never failed.
    unjudged = _object_case(tmp_path, _overlapping(6))
    assert unjudged.verdict is Verdict.NOT_APPLICABLE and "undefined" in unjudged.message
    # A Cancel that overlaps the server's signal answers a code no order allows.
    bad = _object_case(tmp_path, [
        *START,
        _call(3, "server_signal", {"out": 5, "then_impersonate": False}, at=3.0, until=3.4,
              side="server", tid=2),
        _call(4, "ICancelMethodCalls::Cancel", {"seconds": 0}, 0x1234, at=3.1, until=3.3)])
    assert bad.verdict is Verdict.FAIL
    assert bad.linearizability == "not_linearizable"
    assert "not linearizable" in bad.message
    assert bad.trace[-1].op in ("Cancel", "server_signal") and not bad.trace[-1].ok
    assert bad.failed_rules


def test_unknown_apis_and_objects_are_counted(tmp_path: Path) -> None:
    lines = [*START,
             _call(3, "IUnknown::AddRef", at=3.0),
             _call(4, "CoGetCallContext", at=4.0),
             _call(5, "CoGetCallContext", at=5.0),
             _call(6, "Frobnicate", at=6.0, obj="0x2000", kind="event")]
    lines[-1].pop("kind")
    outcome = check(load([_write(tmp_path, lines)]))
    assert outcome.unknown_apis == {"CoGetCallContext": 2}
    assert outcome.uncovered_objects == {"0x2000": 1}
    by_id = {c.id: c for c in outcome.cases}
    # What came before the unknown call was judged; the object is not a pass.
    assert by_id["trace/object/0x1000"].verdict is Verdict.NOT_APPLICABLE
    assert "judged 3 of 5" in by_id["trace/object/0x1000"].message
    assert by_id["trace/unknown-api/CoGetCallContext"].verdict is Verdict.NOT_APPLICABLE
    assert by_id["trace/uncovered/0x2000"].verdict is Verdict.NOT_APPLICABLE


def test_arguments_outside_the_model_are_not_judged(tmp_path: Path) -> None:
    case = _object_case(tmp_path, [START[0], _call(1, "CreateCall",
                                                   {"riid": "async", "aggregate": 1}, at=1.0)])
    assert case.verdict is Verdict.NOT_APPLICABLE
    assert "aggregate=1 is none of the model's values" in case.message


def test_nothing_checkable_is_never_a_pass(tmp_path: Path) -> None:
    case = _object_case(tmp_path, [START[0], _call(1, "CoGetCallContext", at=1.0)])
    assert case.verdict is Verdict.NOT_APPLICABLE
    assert "nothing" in case.message


def test_a_call_without_response_is_an_error(tmp_path: Path) -> None:
    case = _object_case(tmp_path, [*START[:2], _call(2, "Begin_", at=2.0, code=None,
                                                      until=None) | {"responded": None}])
    assert case.verdict is Verdict.ERROR


def test_a_schema_violation_names_its_line(tmp_path: Path) -> None:
    bad = _call(2, "Begin_", at=2.0)
    del bad["api"]
    path = _write(tmp_path, [START[1], bad])
    with pytest.raises(TraceInvalid, match=r"t\.jsonl:3: .*'api' is a required property"):
        load([path])
    path.write_text(path.read_text(encoding="utf-8") + "{not json\n", encoding="utf-8")
    with pytest.raises(TraceInvalid, match=r"t\.jsonl:3"):
        load([path])
    assert main(["check-trace", str(path), "--out", str(tmp_path / "out")]) == 2


STEPS: tuple[tuple[str, dict[str, Value]], ...] = (
    ("CreateCall", {"riid": "async", "aggregate": False}), ("Begin_", {}), ("Begin_", {}),
    ("server_signal", {"out": 2, "then_impersonate": False}), ("Wait", {"timeout": "finite"}),
    ("Finish_", {}), ("Release", {}))
CASE = Case("begin-twice", "directed", "Begin_ twice, then the server signals and Finish_",
            (SlotSpec("c0", "com_call", {"factory": True, "cancellable": True}),),
            tuple(Action("c0", op, tuple(args.items())) for op, args in STEPS),
            rules=("COM-BEGIN-02",))


@pytest.mark.parametrize("faults", [(), ("begin_accepts_second",)])
def test_check_trace_agrees_with_the_run(tmp_path: Path, faults: tuple[str, ...]) -> None:
    recorded = tmp_path / "run.trace"
    (result,) = run_cases(make_adapter(faults=faults), [CASE], record_trace=recorded)
    out = tmp_path / "check"
    code = main(["check-trace", str(recorded), "--out", str(out)])
    cases = read_stream(out / "results.jsonl").cases
    (judged,) = [c for c in cases if c.id.startswith("trace/object/begin-twice#")]
    assert judged.verdict is result.verdict
    assert judged.failed_rules == result.failed_rules
    assert code == (1 if result.verdict is Verdict.FAIL else 0)
    assert (result.verdict is Verdict.FAIL) == bool(faults)
    assert (out / "report.json").is_file()


def test_expectations_apply_to_a_checked_trace(tmp_path: Path) -> None:
    path = _write(tmp_path, [*START, _call(3, "AsyncIFoo::Begin_Method", at=3.0)])
    assert main(["check-trace", str(path), "--out", str(tmp_path / "plain")]) == 1
    listed = tmp_path / "expected.toml"
    listed.write_text('[[deviation]]\nrule = "COM-BEGIN-02"\nverdict = "fail"\n'
                      'reason = "starts a second call"\n', encoding="utf-8")
    out = tmp_path / "listed"
    assert main(["check-trace", str(path), "--out", str(out), "--expectations",
                 str(listed)]) == 0
    (case,) = [c for c in read_stream(out / "results.jsonl").cases
               if c.id == "trace/object/0x1000"]
    assert case.verdict is Verdict.EXPECTED_FAIL
