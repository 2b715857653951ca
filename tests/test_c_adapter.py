"""The example C adapter (examples/c-adapter): it builds, speaks the protocol, and conforms."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callgate.conformance.cases.stateful import StatefulBudget, default_slots, run_stateful
from callgate.conformance.judge.runner import Case, CaseRunner
from callgate.conformance.protocol.adapter import FEATURES, NotApplicable, Request, SlotSpec
from callgate.conformance.protocol.jsonl import ADAPTER_MESSAGES, CommandAdapter, check_message, encode
from callgate.conformance.results import CaseResult, Verdict
from callgate.model import codes
from callgate.model.transitions import Action
from callgate.model.variations import check_pins
from tests.conftest import build_c_example

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "c-adapter"
PROGRAM = EXAMPLE / "callgate-c-adapter"


@pytest.fixture(scope="module")
def program() -> Path:
    """The adapter, built with the machine's cc by its Makefile."""
    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.skip("the C example needs make and cc")
    built = build_c_example()
    assert built.returncode == 0, built.stdout + built.stderr
    assert PROGRAM.is_file()
    return PROGRAM


@pytest.fixture
def adapter(program: Path) -> Iterator[CommandAdapter]:
    command = CommandAdapter([str(program)], request_timeout=5.0)
    yield command
    command.shutdown()


def _talk(program: Path, lines: list[dict[str, Any] | bytes]) -> tuple[list[dict[str, Any]], str,
                                                                        int]:
    """Feed lines to the program; its answers (checked against the schemas), stderr, exit code."""
    data = b"".join(m if isinstance(m, bytes) else encode(m) for m in lines)
    done = subprocess.run([str(program)], input=data, capture_output=True, timeout=30,
                          check=False)
    answers = [check_message(json.loads(line), ADAPTER_MESSAGES)
               for line in done.stdout.splitlines()]
    return answers, done.stderr.decode(), done.returncode


def test_the_handshake_declares_known_features_and_pins(adapter: CommandAdapter) -> None:
    caps = adapter.capabilities()
    assert caps.features <= FEATURES
    assert {"com.call", "sync.event", "sync.manual_reset_event", "sync.std_event"} <= caps.features
    assert not caps.features & {"com.cancel", "rpc.handle", "sync.container"}
    assert check_pins(caps.pins) == {
        "call_wait_timeout_code": "RPC_S_CALLPENDING",
        "event_wait_timeout_code": "RPC_S_CALLPENDING", "call_object_event": "ManualResetEvent",
        "new_event_state": "nonsignaled", "begin_pending_code": "RPC_S_CALLPENDING",
        "call_object_origin": "same_apartment"}


def _steps(slot: str, *steps: tuple[str, dict[str, Any]]) -> tuple[Action, ...]:
    return tuple(Action(slot, op, tuple(args.items())) for op, args in steps)


COM = SlotSpec("c0", "com_call", {"factory": True, "cancellable": True})
NO_FACTORY = SlotSpec("c0", "com_call", {"factory": False, "cancellable": True})
EVENT = SlotSpec("e0", "event", {})
CREATE = ("CreateCall", {"riid": "async", "aggregate": False})
FINITE = {"timeout": "finite"}
ZERO = {"timeout": "zero"}

# Each INFINITE Wait follows a zero Wait that saw the object signalled: the runner sends a wait
# for ever only after such a look (and takes the look itself where a case has none).
CASES = [
    Case("call-round-trip", "directed", "Begin_, Wait times out, server signals, Finish_",
         (COM,), _steps("c0", ("QueryInterface", {"iid": "ICallFactory"}), CREATE,
                        ("QueryInterface", {"iid": "ISynchronize"}), ("Begin_", {}),
                        ("Wait", FINITE), ("server_signal", {"out": 2, "then_impersonate": False}),
                        ("Wait", ZERO), ("Finish_", {}), ("Release", {}))),
    Case("call-reuse", "directed", "a finished call object starts another call", (COM,),
         _steps("c0", CREATE, ("Finish_", {}), ("Begin_", {}), ("Begin_", {}),
                ("server_signal", {"out": 1, "then_impersonate": True}), ("Finish_", {}),
                ("Wait", ZERO), ("Begin_", {}), ("Wait", ZERO),
                ("server_signal", {"out": 2, "then_impersonate": False}), ("Finish_", {}))),
    Case("call-abandoned", "directed", "Release while the server holds the call", (COM,),
         _steps("c0", ("CreateCall", {"riid": "async", "aggregate": True}), ("Begin_", {}),
                ("Release", {}), ("server_signal_late", {}))),
    Case("call-interfaces", "directed", "same-apartment call object: no cancel, no security",
         (COM,), _steps("c0", ("CreateCall", {"riid": "sync", "aggregate": False}), CREATE,
                        ("QueryInterface", {"iid": "ICancelMethodCalls"}),
                        ("QueryInterface", {"iid": "IClientSecurity"}),
                        ("sync_call", {"out": 2}))),
    Case("no-factory", "directed", "a server object without ICallFactory", (NO_FACTORY,),
         _steps("c0", ("QueryInterface", {"iid": "ICallFactory"}), ("sync_call", {"out": 1}))),
    Case("std-event", "directed", "auto-reset", (EVENT,),
         _steps("e0", ("CoCreateInstance", {"clsid": "StdEvent"}), ("Wait", FINITE),
                ("Signal", {}), ("Wait", ZERO), ("Wait", ZERO))),
    Case("manual-event", "directed", "manual reset", (EVENT,),
         _steps("e0", ("CoCreateInstance", {"clsid": "ManualResetEvent"}), ("Signal", {}),
                ("Wait", ZERO), ("Wait", {"timeout": "infinite"}), ("Wait", ZERO), ("Reset", {}),
                ("Wait", FINITE))),
]


def _run(adapter: CommandAdapter, cases: list[Case]) -> list[CaseResult]:
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=10.0)
    try:
        return [runner.run(case) for case in cases]
    finally:
        runner.close()


def test_directed_cases_pass_against_the_c_adapter(adapter: CommandAdapter) -> None:
    results = _run(adapter, CASES)
    assert [(r.id, r.verdict) for r in results] == [(c.id, Verdict.PASS) for c in CASES], \
        [r.message for r in results]
    assert all(r.steps == len(c.steps) for r, c in zip(results, CASES, strict=True))
    assert adapter.starts == 1


def test_the_judge_catches_a_wrong_answer_from_the_c_adapter(adapter: CommandAdapter) -> None:
    # The C adapter pins RPC_S_CALLPENDING for a Wait that times out; a harness that wanted
    # RPC_E_TIMEOUT must fail it, or the passes above prove nothing.
    caps = adapter.capabilities()
    strict = type(caps)(caps.implementation, caps.version, caps.features,
                        {**caps.pins, "event_wait_timeout_code": "RPC_E_TIMEOUT"})
    runner = CaseRunner(adapter, strict, step_timeout=10.0)
    try:
        result = runner.run(CASES[-2])
    finally:
        runner.close()
    assert result.verdict is Verdict.FAIL
    assert result.trace[-1].code == codes.RPC_S_CALLPENDING.value


def test_generated_programs_pass_against_the_c_adapter(adapter: CommandAdapter) -> None:
    caps = adapter.capabilities()
    runner = CaseRunner(adapter, caps, step_timeout=10.0)
    try:
        result = run_stateful(runner, StatefulBudget(examples=15, steps=15), seed=1,
                              slots=default_slots(caps.features))
    finally:
        runner.close()
    assert result.verdict is Verdict.PASS, result.message
    assert result.steps > 50


def test_cases_beyond_its_features_are_not_applicable(adapter: CommandAdapter) -> None:
    cancel = Case("cancel", "directed", "needs com.cancel", (COM,),
                  _steps("c0", CREATE, ("Begin_", {}), ("Cancel", {"seconds": 0})))
    (result,) = _run(adapter, [cancel])
    assert result.verdict is Verdict.NOT_APPLICABLE and "com.cancel" in result.message
    session = adapter.open_session([EVENT])
    with pytest.raises(NotApplicable, match="implements CoCreateInstance, Signal"):
        session.perform(Request("e0", "GetHandle"))
    session.close()
    with pytest.raises(NotApplicable, match="event and com_call machines only"):
        adapter.open_session([SlotSpec("r0", "rpc_call", {})])


def test_the_c_adapter_survives_lines_it_cannot_read(program: Path) -> None:
    answers, stderr, code = _talk(program, [
        {"type": "hello", "protocol": 1},
        b"not json\n",
        b'{"type":"request","session":1}\n',
        b'{"a":' * 100 + b"1" + b"}" * 100 + b"\n",
        b"x" * (2 << 20) + b"\n",
        {"type": "request", "id": 2, "session": 42, "slot": "e0", "op": "Wait", "args": {},
         "wait_ms": 0},
        {"type": "open", "id": 3, "session": 1, "slots": [{"name": "e0", "machine": "event"}]},
        {"type": "request", "id": 4, "session": 1, "slot": "e9", "op": "Signal", "args": {},
         "wait_ms": 0},
        {"type": "close", "id": 5, "session": 1},
        {"type": "close", "id": 6, "session": 1},
    ])
    assert code == 0  # end of input: exit 0
    assert answers[0]["type"] == "handshake"
    replies = {m["id"]: m for m in answers[1:]}
    assert replies[2]["status"] == "error" and "no open session" in replies[2]["message"]
    assert replies[3]["status"] == "ok"
    assert replies[4]["status"] == "error" and "no slot" in replies[4]["message"]
    assert replies[5]["status"] == "ok" and replies[6]["status"] == "error"
    assert "not a message (unexpected character)" in stderr
    assert "without an id" in stderr
    assert "nested too deeply" in stderr
    assert "longer than 1048576 bytes" in stderr


def test_the_c_adapter_lets_held_calls_go_at_close_and_exits_on_shutdown(program: Path) -> None:
    def request(rid: int, op: str, **args: Any) -> dict[str, Any]:
        return {"type": "request", "id": rid, "session": 1, "slot": "c0", "op": op,
                "args": args, "wait_ms": 10}

    answers, _, code = _talk(program, [
        {"type": "hello", "protocol": 1},
        {"type": "open", "id": 1, "session": 1,
         "slots": [{"name": "c0", "machine": "com_call", "config": {"factory": True}}]},
        request(2, "CreateCall", riid="async", aggregate=False),
        request(3, "Begin_"),
        {"type": "close", "id": 4, "session": 1},  # the held server thread must be let go
        {"type": "shutdown"},
        {"type": "hello", "protocol": 1},  # after shutdown: never read
    ])
    assert code == 0
    assert [m.get("status") for m in answers[1:]] == ["ok"] * 4
    assert sum(m["type"] == "handshake" for m in answers) == 1


def test_the_c_adapter_writes_codes_unsigned_with_names_for_people(program: Path) -> None:
    answers, _, _ = _talk(program, [
        {"type": "hello", "protocol": 1},
        {"type": "open", "id": 1, "session": 1, "slots": [{"name": "e0", "machine": "event"}]},
        {"type": "request", "id": 2, "session": 1, "slot": "e0", "op": "CoCreateInstance",
         "args": {"clsid": "StdEvent"}, "wait_ms": 0},
        {"type": "request", "id": 3, "session": 1, "slot": "e0", "op": "Wait",
         "args": {"timeout": "zero"}, "wait_ms": 0},
    ])
    wait = answers[-1]
    assert wait["code"] == codes.RPC_S_CALLPENDING.value and wait["name"] == "RPC_S_CALLPENDING"


@pytest.mark.parametrize("op", ["Cancel", "TestCancel", "probe_sta_wait", "server_test_cancel",
                                "server_impersonate"])
def test_com_operations_it_does_not_implement_are_not_applicable(adapter: CommandAdapter,
                                                                  op: str) -> None:
    session = adapter.open_session([COM])
    try:
        with pytest.raises(NotApplicable, match="no cancellation, STA probe or impersonation"):
            session.perform(Request("c0", op, {"seconds": 0} if op == "Cancel" else {}))
    finally:
        session.close()
