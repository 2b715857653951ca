"""The JSON-lines transport: its schemas, its line reader, and the client and server together."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from callgate.conformance.judge.runner import Case, CaseRunner
from callgate.conformance.protocol.adapter import AdapterFault, NotApplicable, Observation, Request, SlotSpec
from callgate.conformance.protocol.jsonl import (
    ADAPTER_MESSAGES,
    CHUNK_BYTES,
    HARNESS_MESSAGES,
    CommandAdapter,
    Overlong,
    ProtocolError,
    check_message,
    encode,
    inline_local_refs,
    parse_line,
    read_lines,
    schemas,
)
from callgate.conformance.protocol.jsonl_server import serve
from callgate.conformance.results import Verdict
from callgate.model import codes
from callgate.model.transitions import Action
from tests.fakes import EventAdapter

ROOT = Path(__file__).resolve().parent.parent
FAULT_ADAPTER = str(ROOT / "tests" / "fault_adapter.py")
CALLPENDING = codes.RPC_S_CALLPENDING.value

# One valid example of every message type.
GOOD: dict[str, dict[str, Any]] = {
    "hello": {"type": "hello", "protocol": 1, "harness": "callgate"},
    "handshake": {"type": "handshake", "protocol": 1, "implementation": "x", "version": "1",
                  "features": ["sync.event", "rpc.notify.None"],
                  "pins": {"wait_timeout_code": "RPC_S_CALLPENDING"}, "notes": "n"},
    "open": {"type": "open", "id": 1, "session": 1,
             "slots": [{"name": "c0", "machine": "com_call",
                        "config": {"factory": True, "phase": "NONE", "out": 0}}]},
    "request": {"type": "request", "id": 2, "session": 1, "slot": "c0", "op": "Begin_",
                "args": {"timeout": "zero", "out": 1, "abort": False}, "wait_ms": 50},
    "close": {"type": "close", "id": 3, "session": 1},
    "shutdown": {"type": "shutdown"},
    "response": {"type": "response", "id": 2, "status": "ok", "code": CALLPENDING,
                 "name": "RPC_S_CALLPENDING", "outputs": {"out": 2, "nonnull": True}},
    "event": {"type": "event", "session": 1, "kind": "notification", "slot": "r0",
              "data": {"Event": 0}},
}

# Broken messages: (what is wrong, the message, a phrase the error must contain).
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("hello protocol as a string", {"type": "hello", "protocol": "1"}, "not of type 'integer'"),
    ("hello with an unknown member", {"type": "hello", "protocol": 1, "colour": "red"},
     "unknown member(s) 'colour'"),
    ("handshake without implementation",
     {"type": "handshake", "protocol": 1, "version": "1", "features": []}, "'implementation'"),
    ("handshake feature with a space",
     {"type": "handshake", "protocol": 1, "implementation": "x", "version": "1",
      "features": ["sync event"]}, "does not match"),
    ("handshake pin that is not a string",
     {"type": "handshake", "protocol": 1, "implementation": "x", "version": "1", "features": [],
      "pins": {"wait_timeout_code": 1}}, "not of type 'string'"),
    ("open without slots", {"type": "open", "id": 1, "session": 1, "slots": []},
     "should be non-empty"),
    ("open slot config holding null",
     {"type": "open", "id": 1, "session": 1,
      "slots": [{"name": "e0", "machine": "event", "config": {"kind": None}}]},
     "not of type"),
    ("request without wait_ms",
     {"type": "request", "id": 1, "session": 1, "slot": "e0", "op": "Wait", "args": {}},
     "'wait_ms'"),
    ("request with an argument list",
     {"type": "request", "id": 1, "session": 1, "slot": "e0", "op": "Wait", "args": [],
      "wait_ms": 0}, "not of type 'object'"),
    ("request slot with a hyphen",
     {"type": "request", "id": 1, "session": 1, "slot": "e-0", "op": "Wait", "args": {},
      "wait_ms": 0}, "does not match"),
    ("close of session 0", {"type": "close", "id": 1, "session": 0}, "less than the minimum"),
    ("shutdown with a member", {"type": "shutdown", "now": True}, "unknown member(s) 'now'"),
    ("response with an unknown status", {"type": "response", "id": 1, "status": "maybe"},
     "is not one of"),
    ("response not_applicable without message",
     {"type": "response", "id": 1, "status": "not_applicable"}, "'message'"),
    ("response error with a code",
     {"type": "response", "id": 1, "status": "error", "message": "m", "code": 0},
     "should not be valid"),
    ("response code 2**32", {"type": "response", "id": 1, "status": "ok", "code": 1 << 32},
     "not an unsigned 32-bit number"),
    ("response code negative", {"type": "response", "id": 1, "status": "ok", "code": -1},
     "as unsigned: 4294967295"),
    ("response code as a name", {"type": "response", "id": 1, "status": "ok", "code": "S_OK"},
     "is not a number"),
    ("response code as a boolean", {"type": "response", "id": 1, "status": "ok", "code": True},
     "is not a number"),
    ("response code as a fraction", {"type": "response", "id": 1, "status": "ok", "code": 1.5},
     "is not a number"),
    ("response code as 0.0", {"type": "response", "id": 1, "status": "ok", "code": 0.0},
     "is not a number"),
    ("response id 7.0", {"type": "response", "id": 7.0, "status": "ok", "code": 0},
     "id must be an integer"),
    ("response id 0", {"type": "response", "id": 0, "status": "ok", "code": 0},
     "id must be an integer"),
    ("response output holding a list",
     {"type": "response", "id": 1, "status": "ok", "code": 0, "outputs": {"out": [1]}},
     "not of type"),
    ("event kind in capitals", {"type": "event", "session": 1, "kind": "Notification"},
     "does not match"),
    ("event without session", {"type": "event", "kind": "log"}, "'session'"),
    ("event session 1.0", {"type": "event", "session": 1.0, "kind": "log"},
     "must be a JSON integer"),
]


def test_every_message_type_has_a_published_draft_2020_12_schema() -> None:
    published = schemas()
    assert set(published) == set(HARNESS_MESSAGES + ADAPTER_MESSAGES)
    for name, schema in published.items():
        Draft202012Validator.check_schema(schema)
        assert schema["properties"]["type"] == {"const": name}
        assert (ROOT / "conformance" / "protocol" / "schemas" / f"{name}.json").is_file()


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_a_good_message_of_each_type_is_accepted(kind: str) -> None:
    message = GOOD[kind]
    assert check_message(message, (kind,)) is message
    assert parse_line(encode(message)[:-1], (kind,)) == message


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_members_named_x_are_extensions_and_ignored(kind: str) -> None:
    message = {**GOOD[kind], "x_vendor": {"anything": [1, 2]}}
    assert check_message(message, (kind,)) == message


@pytest.mark.parametrize(("what", "message", "phrase"), BAD, ids=[b[0] for b in BAD])
def test_a_broken_message_is_rejected_with_a_reason(what: str, message: dict[str, Any],
                                                    phrase: str) -> None:
    with pytest.raises(ProtocolError, match=None) as caught:
        check_message(message, HARNESS_MESSAGES + ADAPTER_MESSAGES)
    assert phrase in str(caught.value), what


def test_every_message_type_has_a_broken_example() -> None:
    assert {m["type"] for _, m, _ in BAD} == set(GOOD)


def test_a_remembered_valid_shape_does_not_excuse_a_bad_id() -> None:
    good = {"type": "close", "id": 5, "session": 1}
    check_message(good, ("close",))
    for bad_id in (0, -3, 2.0, "5", None, 1 << 53):
        with pytest.raises(ProtocolError, match="id must be an integer"):
            check_message({**good, "id": bad_id}, ("close",))


def test_a_message_type_from_the_wrong_side_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="not expected here"):
        check_message(GOOD["request"], ADAPTER_MESSAGES)
    with pytest.raises(ProtocolError, match="not expected here"):
        check_message({"id": 1}, ADAPTER_MESSAGES)


@pytest.mark.parametrize(("line", "phrase"), [
    (b"\xff\xfe{}", "not UTF-8"),
    (b"this is not json", "not JSON"),
    (b'{"type":"response","id":1,"status":"ok","code":NaN}', "not JSON"),
    (b"[1, 2]", "not a JSON list"),
    (b'{"type":"response","id":1,"status":"ok"} trailing', "not JSON"),
])
def test_a_line_that_is_no_message_is_rejected(line: bytes, phrase: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_line(line, ADAPTER_MESSAGES)
    assert phrase in str(caught.value)


def test_local_references_are_inlined_and_others_refused() -> None:
    schema = {"$defs": {"id": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/id"}},
              "items": [{"$ref": "#/$defs/id"}]}
    assert inline_local_refs(schema) == {"properties": {"a": {"type": "integer"}},
                                         "items": [{"type": "integer"}]}
    with pytest.raises(ValueError, match="only local references"):
        inline_local_refs({"properties": {"a": {"$ref": "other.json#/x"}}})


# --- reading lines ---------------------------------------------------------------------------


def _reader(chunks: list[bytes]) -> tuple[Any, list[int]]:
    """A read function over `chunks`, and a list that counts the bytes handed out."""
    handed = [0]
    pieces = iter(chunks)

    def read(_size: int) -> bytes:
        piece = next(pieces, b"")
        handed[0] += len(piece)
        return piece

    return read, handed


def test_lines_are_split_across_chunks_and_a_last_line_needs_no_newline() -> None:
    read, _ = _reader([b'{"a":1}\n{"b"', b':2}\n\n{"c":3}'])
    assert list(read_lines(read, 100)) == [b'{"a":1}', b'{"b":2}', b"", b'{"c":3}']


def test_an_overlong_line_is_reported_before_it_ends_and_skipped() -> None:
    limit = 1000
    huge = [b"x" * CHUNK_BYTES for _ in range(160)]  # 10 MB without a newline
    read, handed = _reader([b"ok\n", *huge, b"tail\nnext\n"])
    lines = read_lines(read, limit)
    assert next(lines) == b"ok"
    overlong = next(lines)
    assert isinstance(overlong, Overlong)
    assert overlong.prefix == b"x" * 2048 and overlong.seen > limit  # evidence: 2 KB of it
    # Reported after the first chunk past the limit, not at the end of the 10 MB line.
    assert handed[0] <= 3 + CHUNK_BYTES
    assert list(lines) == [b"next"]  # the rest of the long line is skipped


def _chunks_forever() -> Iterator[bytes]:
    while True:
        yield b"y" * CHUNK_BYTES


def test_an_endless_line_never_grows_the_buffer_past_the_limit() -> None:
    source = _chunks_forever()
    reads = 0

    def read(_size: int) -> bytes:
        nonlocal reads
        reads += 1
        return next(source)

    item = next(read_lines(read, 4 * CHUNK_BYTES))
    assert isinstance(item, Overlong)
    assert item.seen <= 5 * CHUNK_BYTES and reads == 5


# --- the server, in process -----------------------------------------------------------------


def _serve(lines: list[dict[str, Any] | bytes], adapter: Any = None) -> tuple[list[dict[str, Any]], str]:
    stdin = io.BytesIO(b"".join(m if isinstance(m, bytes) else encode(m) for m in lines))
    stdout = io.BytesIO()
    log = io.StringIO()
    code = serve(adapter or EventAdapter(), stdin, stdout, log=log)
    assert code == 0
    return [json.loads(line) for line in stdout.getvalue().splitlines()], log.getvalue()


HELLO = {"type": "hello", "protocol": 1}
OPEN = {"type": "open", "id": 1, "session": 7, "slots": [{"name": "e0", "machine": "event"}]}


def _request(rid: int, op: str, session: int = 7, **args: Any) -> dict[str, Any]:
    return {"type": "request", "id": rid, "session": session, "slot": "e0", "op": op,
            "args": args, "wait_ms": 10}


def test_the_server_answers_hello_open_requests_and_close() -> None:
    out, log = _serve([HELLO, OPEN, _request(2, "CoCreateInstance", clsid="StdEvent"),
                       _request(3, "Wait", timeout="zero"), _request(4, "GetHandle"),
                       {"type": "close", "id": 5, "session": 7}, {"type": "shutdown"}])
    assert out[0]["type"] == "handshake" and out[0]["features"] == sorted(out[0]["features"])
    for message in out:
        check_message(message, ADAPTER_MESSAGES)
    replies = {m["id"]: m for m in out[1:]}
    assert replies[1] == {"type": "response", "id": 1, "status": "ok"}
    assert replies[2]["code"] == 0 and replies[3]["code"] == CALLPENDING
    assert replies[4]["outputs"] == {"nonnull": True}
    assert replies[5]["status"] == "ok" and log == ""


def test_the_server_turns_adapter_trouble_into_error_and_not_applicable_responses() -> None:
    out, _ = _serve([HELLO, OPEN, _request(2, "SetEventHandle"), _request(3, "Wait", session=99,
                                                                           timeout="zero"),
                     _request(4, "CoCreateInstance", clsid="StdEvent"),
                     _request(5, "Wait", timeout="zero")],
                    EventAdapter("crash_on_wait"))
    replies = {m["id"]: m for m in out[1:]}
    assert replies[2]["status"] == "not_applicable"
    assert replies[3]["status"] == "error" and "no open session 99" in replies[3]["message"]
    assert replies[5]["status"] == "error" and "RuntimeError: boom" in replies[5]["message"]
    assert "Traceback" in replies[5]["evidence"]


class _OddSession:
    def __init__(self) -> None:
        self.calls = 0

    def perform(self, request: Request) -> Observation:
        if request.op == "negative":
            return Observation(-2147417835)  # a signed RPC_S_CALLPENDING
        return Observation(0, {"out": None})  # type: ignore[dict-item]

    def close(self) -> None:
        pass


class _OddAdapter(EventAdapter):
    def open_session(self, slots: Any) -> Any:
        return _OddSession()


def test_the_server_sends_signed_hresults_unsigned_and_refuses_unsendable_outputs() -> None:
    out, _ = _serve([HELLO, OPEN, _request(2, "negative"), _request(3, "null_output")],
                    _OddAdapter())
    replies = {m["id"]: m for m in out[1:]}
    assert replies[2]["code"] == CALLPENDING
    assert replies[3]["status"] == "error" and "cannot be sent" in replies[3]["message"]


def test_the_server_answers_a_broken_message_with_an_id_and_logs_one_without() -> None:
    out, log = _serve([HELLO, b'{"type":"request","id":9,"session":1}\n', b"garbage\n",
                       b"\n", OPEN])
    replies = {m["id"]: m for m in out[1:]}
    assert replies[9]["status"] == "error" and "'slot'" in replies[9]["message"]
    assert replies[1]["status"] == "ok"
    assert "ignored a line" in log and "not JSON" in log


def test_the_server_wants_hello_first() -> None:
    out, _ = _serve([OPEN, HELLO])
    assert out[0]["status"] == "error" and "hello" in out[0]["message"]
    assert out[1]["type"] == "handshake"


def test_the_server_refuses_to_open_a_session_twice() -> None:
    out, _ = _serve([HELLO, OPEN, {**OPEN, "id": 2}])
    replies = {m["id"]: m for m in out[1:]}
    assert replies[1]["status"] == "ok"
    assert replies[2]["status"] == "error" and "already open" in replies[2]["message"]


# --- client and server over real pipes ------------------------------------------------------


def _served(mode: str = "none", fake_fault: str = "", **options: Any) -> CommandAdapter:
    return CommandAdapter([sys.executable, FAULT_ADAPTER, mode, "--fake-fault", fake_fault],
                          cwd=str(ROOT), **options)


def _case(name: str, clsid: str, *steps: tuple[str, dict[str, Any]]) -> Case:
    actions = [Action("e0", "CoCreateInstance", (("clsid", clsid),))]
    actions += [Action("e0", op, tuple(args.items())) for op, args in steps]
    return Case(name, "directed", name, (SlotSpec("e0", "event", {}),), tuple(actions))


ZERO = {"timeout": "zero"}
CASES = [
    _case("std-resets", "StdEvent", ("Signal", {}), ("Wait", ZERO), ("Wait", ZERO)),
    _case("manual-stays", "ManualResetEvent", ("Signal", {}), ("Wait", ZERO), ("Wait", ZERO)),
    _case("reset", "ManualResetEvent", ("Signal", {}), ("Reset", {}), ("Wait", ZERO)),
    _case("finite", "StdEvent", ("Wait", {"timeout": "finite"}), ("GetHandle", {})),
    _case("infinite", "ManualResetEvent", ("Signal", {}), ("Wait", {"timeout": "infinite"})),
]


def _verdicts(adapter: Any) -> list[tuple[str, Verdict, str, int | None]]:
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout=5.0)
    try:
        results = [runner.run(case) for case in CASES]
    finally:
        runner.close()
        adapter.shutdown()
    return [(r.id, r.verdict, r.trace[-1].op if r.trace else "",
             r.trace[-1].code if r.trace else None) for r in results]


@pytest.mark.parametrize("fault", ["", "std_event_keeps_signal", "created_signaled",
                                   "crash_on_wait"])
def test_a_served_adapter_gets_the_same_verdicts_as_in_process(fault: str) -> None:
    in_process = _verdicts(EventAdapter(fault))
    over_pipes = _verdicts(_served(fake_fault=fault))
    assert over_pipes == in_process
    if fault:  # the faulty twins must be caught both ways, or the comparison proves little
        assert any(v in (Verdict.FAIL, Verdict.ERROR) for _, v, _, _ in in_process)


def test_several_threads_share_one_session_and_each_gets_its_own_answers() -> None:
    adapter = _served()
    slots = [SlotSpec(f"e{i}", "event", {}) for i in range(8)]
    session = adapter.open_session(slots)
    errors: list[str] = []

    def work(slot: str, clsid: str) -> None:
        session.perform(Request(slot, "CoCreateInstance", {"clsid": clsid}))
        for i in range(60):
            signal = i % 2 == 0
            session.perform(Request(slot, "Signal" if signal else "Reset"))
            code = session.perform(Request(slot, "Wait", {"timeout": "zero"})).code
            if code != (0 if signal else CALLPENDING):
                errors.append(f"{slot} round {i}: code {code}")

    threads = [threading.Thread(target=work, args=(s.name, "ManualResetEvent")) for s in slots]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        session.close()
    finally:
        adapter.shutdown()
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert adapter.starts == 1


def test_a_request_can_wait_in_flight_for_a_later_request() -> None:
    adapter = _served("latch")
    session = adapter.open_session([SlotSpec("e0", "event", {})])
    session.perform(Request("e0", "CoCreateInstance", {"clsid": "ManualResetEvent"}))
    answers: list[Observation] = []
    waiter = threading.Thread(target=lambda: answers.append(
        session.perform(Request("e0", "Wait", {"timeout": "infinite"}))))
    try:
        waiter.start()
        time.sleep(0.3)
        blocked = not answers
        signalled = session.perform(Request("e0", "Signal"))
        waiter.join(5)
        session.close()
    finally:
        adapter.shutdown()
    assert blocked, "Wait(INFINITE) answered before the Signal it waits for"
    assert signalled.code == 0 and [a.code for a in answers] == [0]


def test_events_are_kept_per_session_and_do_not_disturb_responses() -> None:
    adapter = _served("events")
    try:
        session = adapter.open_session([SlotSpec("e0", "event", {})])
        session.perform(Request("e0", "CoCreateInstance", {"clsid": "StdEvent"}))
        observed = session.perform(Request("e0", "Wait", {"timeout": "zero"}))
        events = session.events()
        session.close()
    finally:
        adapter.shutdown()
    assert observed.code == CALLPENDING
    assert [e.kind for e in events] == ["log"] * len(events) and len(events) >= 3
    assert all(e.session == session.session for e in events)


def test_not_applicable_and_error_responses_keep_the_process() -> None:
    adapter = _served(fake_fault="crash_on_wait")
    try:
        session = adapter.open_session([SlotSpec("e0", "event", {})])
        with pytest.raises(NotApplicable, match="SetEventHandle"):
            session.perform(Request("e0", "SetEventHandle"))
        session.perform(Request("e0", "CoCreateInstance", {"clsid": "StdEvent"}))
        with pytest.raises(AdapterFault, match="RuntimeError: boom") as caught:
            session.perform(Request("e0", "Wait", {"timeout": "zero"}))
        after = session.perform(Request("e0", "Signal"))
        session.close()
    finally:
        adapter.shutdown()
    assert "Traceback" in caught.value.evidence
    assert after.code == 0 and adapter.starts == 1


def test_a_restarted_adapter_must_declare_the_same_capabilities(tmp_path: Path) -> None:
    counter = tmp_path / "starts"
    program = tmp_path / "fickle.py"
    program.write_text(
        "import json, pathlib, sys\n"
        f"counter = pathlib.Path({str(counter)!r})\n"
        "n = int(counter.read_text()) if counter.exists() else 0\n"
        "counter.write_text(str(n + 1))\n"
        "sys.stdin.readline()\n"
        "features = ['sync.event'] if n == 0 else ['sync.event', 'sync.std_event']\n"
        "print(json.dumps({'type': 'handshake', 'protocol': 1, 'implementation': 'fickle',\n"
        "                  'version': '1', 'features': features}), flush=True)\n"
        "sys.stdin.readline()\n"  # the first open: exit without answering it (every time alike)
        "sys.exit(0)\n")
    adapter = CommandAdapter([sys.executable, str(program)], request_timeout=2.0)
    try:
        first = adapter.capabilities()
        with pytest.raises(AdapterFault, match="exited or crashed"):
            adapter.open_session([SlotSpec("e0", "event", {})])  # it exits on the open
        with pytest.raises(AdapterFault, match="other capabilities") as caught:
            adapter.open_session([SlotSpec("e0", "event", {})])
    finally:
        adapter.shutdown()
    assert first.features == frozenset({"sync.event"})
    assert "sync.std_event" in caught.value.evidence


@pytest.mark.parametrize(("options", "phrase"), [
    ({"command": ""}, "command is empty"),
    ({"command": "x", "request_timeout": 0}, "positive"),
    ({"command": "x", "max_line_bytes": 10}, "at least 1024"),
])
def test_command_adapter_options_are_checked(options: dict[str, Any], phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase):
        CommandAdapter(**options)


def test_the_generic_server_refuses_an_adapter_it_cannot_load() -> None:
    import subprocess

    done = subprocess.run([sys.executable, "-m", "callgate.conformance.protocol.jsonl_server",
                           "no_such_module:X"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2 and "cannot load adapter" in done.stderr


def test_a_python_command_runs_with_the_harness_interpreter() -> None:
    serve = "python -m callgate.conformance.implementations.reference.serve"
    assert CommandAdapter(serve).argv[0] == sys.executable
    assert CommandAdapter(["python3", "x.py"]).argv == (sys.executable, "x.py")
    assert CommandAdapter("./python-adapter --x").argv == ("./python-adapter", "--x")


def test_the_transcript_in_the_protocol_document_is_valid() -> None:
    text = (ROOT / "docs" / "adapter-protocol.md").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.startswith(("> {", "< {"))]
    assert len(lines) >= 10
    for line in lines:
        allowed = HARNESS_MESSAGES if line.startswith(">") else ADAPTER_MESSAGES
        check_message(json.loads(line[2:]), allowed)
