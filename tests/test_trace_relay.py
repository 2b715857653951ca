"""`callgate import-relay`: Wine relay logs as traces, and what check-trace can and cannot judge
from them (values the log does not show)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callgate.conformance import expectations
from callgate.conformance.cli.main import main
from callgate.conformance.implementations import wine
from callgate.conformance.results import CaseResult, Verdict
from callgate.conformance.trace import relay
from callgate.conformance.trace.check import check
from callgate.conformance.trace.format import load, problems

ROOT = Path(__file__).resolve().parents[1]
CLIENT, SERVER = (0x7C, 0x80), (0x20, 0xE8)
ASYNC, SERVER_ASYNC = 0x21FB40, 0x10A3180


class Log:
    """A relay log written line by line, as Wine writes it (PID:TID:Call / Ret)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def call(self, who: tuple[int, int], dll: str, func: str, *args: str) -> None:
        pid, tid = who
        self.lines.append(f"{pid:04x}:{tid:04x}:Call {dll}.{func}({','.join(args)}) "
                          f"ret=140001616\n")

    def ret(self, who: tuple[int, int], dll: str, func: str, retval: int) -> None:
        pid, tid = who
        self.lines.append(f"{pid:04x}:{tid:04x}:Ret  {dll}.{func}() retval={retval:08x} "
                          f"ret=140001616\n")

    def whole(self, who: tuple[int, int], dll: str, func: str, retval: int, *args: str) -> None:
        self.call(who, dll, func, *args)
        self.ret(who, dll, func, retval)

    def noise(self, who: tuple[int, int]) -> None:
        self.whole(who, "ntdll", "RtlAllocateHeap", 0x10A0000, "010a0000", "00000000", "20")

    def tie(self, who: tuple[int, int], call: int, side: str, address: int) -> None:
        self.whole(who, "KERNEL32", "OutputDebugStringA", 0,
                   f'0021fbb0 "callgate-tie call={call} side={side} async={address:016X}"')


def _pair_log(status: int, *, tie: bool = True, cancel: int | None = None,
              abort: int | None = None) -> list[str]:
    """One asynchronous call as examples/relay/rpc_async_pair.c makes it: the client initialises
    its handle, tags and issues the call, polls the status (`status`), the server's routine
    (inside NdrAsyncServerCall) aborts or completes it, and the client completes it."""
    log = Log()
    log.whole(CLIENT, "rpcrt4", "RpcAsyncInitializeHandle", 0, f"{ASYNC:08x}", "00000070")
    if tie:
        log.tie(CLIENT, 11, "client", ASYNC)
    log.noise(CLIENT)  # inside NdrAsyncClientCall, which the relay log does not show
    log.call(SERVER, "rpcrt4", "NdrAsyncServerCall", "010a22a0")
    if tie:
        log.tie(SERVER, 11, "server", SERVER_ASYNC)
    log.whole(CLIENT, "rpcrt4", "RpcAsyncGetCallStatus", status, f"{ASYNC:08x}")
    if cancel is not None:
        log.whole(CLIENT, "rpcrt4", "RpcAsyncCancelCall", cancel, f"{ASYNC:08x}", "00000000")
    if abort is not None:
        log.whole(SERVER, "rpcrt4", "RpcAsyncAbortCall", abort, f"{SERVER_ASYNC:08x}",
                  "00000005")
    log.whole(SERVER, "rpcrt4", "RpcAsyncCompleteCall", 0, f"{SERVER_ASYNC:08x}", "01c9f78c")
    log.ret(SERVER, "rpcrt4", "NdrAsyncServerCall", 0x21)
    log.whole(CLIENT, "KERNEL32", "WaitForSingleObject", 0, "00000030", "00002710")
    log.whole(CLIENT, "rpcrt4", "RpcAsyncCompleteCall", 0, f"{ASYNC:08x}", "0021fbb0")
    return log.lines


def _checked(tmp_path: Path, lines: list[str]) -> dict[str, CaseResult]:
    imported = relay.import_log(lines)
    path = tmp_path / "relay.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        relay.write(imported, handle)
    return {c.id: c for c in check(load([path])).cases}


def test_a_status_stub_is_caught_though_the_log_hides_values(tmp_path: Path) -> None:
    # Wine's RpcAsyncGetCallStatus answers RPC_S_INVALID_ASYNC_HANDLE for a pending call: no
    # NotificationType (which the log does not show) allows that.
    cases = _checked(tmp_path, _pair_log(1914))
    case = cases["trace/object/0x21fb40@0x7c#1"]
    assert case.verdict is Verdict.FAIL, case.message
    assert "RPC-CLI-STATUS-01" in case.failed_rules
    assert case.trace[-1].op == "RpcAsyncGetCallStatus" and not case.trace[-1].ok
    assert [s.op for s in case.trace] == ["RpcAsyncInitializeHandle", "AsyncCall",
                                          "RpcAsyncGetCallStatus"]


def test_what_the_log_hides_is_never_a_pass(tmp_path: Path) -> None:
    cases = _checked(tmp_path, _pair_log(997))  # RPC_S_ASYNC_CALL_PENDING: as documented
    case = cases["trace/object/0x21fb40@0x7c#1"]
    assert case.verdict is Verdict.NOT_APPLICABLE, case.message
    assert "notify" in case.message and "no pass is claimed" in case.message
    assert "trace/unclaimed" not in cases  # the tags tied the server's calls to the client's


def test_stubbed_cancel_and_abort_are_caught(tmp_path: Path) -> None:
    cancel = _checked(tmp_path, _pair_log(997, cancel=1914))["trace/object/0x21fb40@0x7c#1"]
    assert cancel.verdict is Verdict.FAIL and "RPC-CLI-CANCEL-01" in cancel.failed_rules
    abort = _checked(tmp_path, _pair_log(997, abort=1914))["trace/object/0x21fb40@0x7c#1"]
    assert abort.verdict is Verdict.FAIL and "RPC-SRV-ABORT-01" in abort.failed_rules, \
        abort.message
    assert any(s.op == "server_abort" and not s.ok for s in abort.trace)
    # An abort the runtime accepts (the client's completion is then not RPC_S_OK, which this
    # log does not say) is not judged a failure.
    fine = _checked(tmp_path, _pair_log(997, abort=0))["trace/object/0x21fb40@0x7c#1"]
    assert fine.verdict is not Verdict.FAIL, fine.message


def test_without_tags_the_server_is_unclaimed_and_the_issue_unplaced(tmp_path: Path) -> None:
    lines = _pair_log(1914, tie=False)
    imported = relay.import_log(lines)
    assert imported.notes and "no tag" in imported.notes[0]
    cases = _checked(tmp_path, lines)
    assert cases["trace/unclaimed"].verdict is Verdict.NOT_APPLICABLE
    # The call may have been issued after the status poll, where 1914 is allowed: no fail.
    case = cases["trace/object/0x21fb40@0x7c#1"]
    assert case.verdict is not Verdict.FAIL, case.message
    assert case.verdict is not Verdict.PASS


def test_every_imported_line_is_valid_and_noise_is_counted() -> None:
    log = Log()
    log.whole(CLIENT, "ole32", "CoEnableCallCancellation", 0, "00000000")
    log.lines.insert(1, log.lines[0].replace("ole32", "combase"))  # ole32 forwards to combase
    log.lines.insert(2, log.lines[2].replace("ole32", "combase"))
    log.call(CLIENT, "rpcrt4", "RpcAsyncCompleteCall", f"{ASYNC:08x}", "0021fbb0")  # crashed
    imported = relay.import_log([*_pair_log(997), *log.lines])
    calls = [x for x in imported.lines if x["type"] == "call"]
    assert all(problems(x) == [] for x in imported.lines)
    assert [c["api"] for c in calls].count("CoEnableCallCancellation") == 1
    assert imported.unmatched == 1 and calls[-1]["responded"] is None
    assert imported.skipped["ntdll"] == 1 and imported.skipped["kernel32"] == 1
    assert imported.lines[0]["type"] == "header"


def test_import_relay_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "relay.log"
    log.write_text("".join(_pair_log(1914)), encoding="utf-8")
    out = tmp_path / "t.jsonl"
    assert main(["import-relay", str(log), "--out", str(out)]) == 0
    assert "in-scope calls written" in capsys.readouterr().err
    assert len(load([out]).calls) == 5  # init, the tagged AsyncCall, poll, server's and client's
    assert main(["import-relay", str(tmp_path / "missing.log")]) == 2


REASON = wine.unavailable_reason()


@pytest.mark.slow  # builds the pair, runs it under Wine with relay logging (about 10 to 30 s)
@pytest.mark.skipif(REASON is not None, reason=f"needs Wine and mingw-w64: {REASON}")
def test_the_rpc_pair_under_wine_shows_wines_known_deviations(tmp_path: Path) -> None:
    from callgate.conformance.trace import winepair

    log = winepair.run(tmp_path / "relay.log")
    out = tmp_path / "trace.jsonl"
    assert main(["import-relay", str(log), "--out", str(out)]) == 0
    for line in out.read_text(encoding="utf-8").splitlines():
        assert problems(json.loads(line)) == []
    cases = {c.id: c for c in check(load([out])).cases}
    objects = [c for k, c in cases.items() if k.startswith("trace/object/")]
    assert len(objects) == 4, sorted(cases)  # one per call the client makes
    failed = {r for c in objects if c.verdict is Verdict.FAIL for r in c.failed_rules}
    # Wine 8.0's stubs (reports/wine/expectations.toml): the status poll, the cancel, the abort.
    assert {"RPC-CLI-STATUS-01", "RPC-CLI-CANCEL-01", "RPC-SRV-ABORT-01"} <= failed, [
        (c.id, c.verdict, c.message) for c in objects]
    assert all(c.trace and not c.trace[-1].ok for c in objects if c.verdict is Verdict.FAIL)
    known = expectations.load(ROOT / "reports" / "wine" / "expectations.toml")
    assert {known.apply(c).verdict for c in objects} == {Verdict.EXPECTED_FAIL}


def test_lines_without_pid_and_a_bad_unknown_name() -> None:
    calls, unmatched = relay.parse([
        "0024:Call rpcrt4.RpcAsyncGetCallStatus(0021fb40) ret=140001616\n",
        "0024:Ret  rpcrt4.RpcAsyncGetCallStatus() retval=000003e5 ret=140001616\n"])
    assert unmatched == 0 and (calls[0].pid, calls[0].tid, calls[0].retval) == (0, 0x24, 997)
    line = {"type": "call", "seq": 1, "pid": 0, "tid": 1, "side": "client", "object": "x",
            "api": "RpcAsyncGetCallStatus", "args": {}, "code": None, "outputs": {},
            "invoked": 1.0, "responded": 2.0}
    assert problems(line | {"unknown": ["code", "args.notify", "outputs.*"]}) == []
    assert problems(line | {"unknown": ["notify"]})  # neither code nor args./outputs.


def test_a_call_the_model_leaves_undefined_for_an_unseen_value_is_not_failed(
        tmp_path: Path) -> None:
    # RpcAsyncCancelCall on a handle that carries no call is UNDEFINED: whatever it returned,
    # with its fAbort unseen, nothing is claimed.
    def call(seq: int, api: str, code: int, args: dict[str, object],
             unknown: list[str]) -> dict[str, object]:
        return {"type": "call", "seq": seq, "pid": 1, "tid": 1, "side": "client", "object": "h",
                "kind": "rpc_async_state", "api": api, "args": args, "code": code,
                "outputs": {}, "unknown": unknown, "invoked": seq, "responded": seq + 0.5}

    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in [
        call(1, "RpcAsyncInitializeHandle", 0, {"size": "exact"}, ["outputs.*"]),
        call(2, "RpcAsyncCancelCall", 12345, {}, ["args.abort"])]), encoding="utf-8")
    (case,) = [c for c in check(load([path])).cases if c.id == "trace/object/h"]
    assert case.verdict is Verdict.NOT_APPLICABLE and "undefined" in case.message, case.message


def test_overlapping_calls_an_undefined_step_explains_are_not_failed(tmp_path: Path) -> None:
    """Two fully recorded overlapping calls on a handle that carries no call: each order starts
    with a call the model leaves undefined there (RPC-INIT-06 is the client's duty), so anything
    may follow and no order can be ruled out: the group is not judged, never failed."""
    def call(seq: int, api: str, code: int, args: dict[str, object], at: float,
             until: float) -> dict[str, object]:
        return {"type": "call", "seq": seq, "pid": 1, "tid": seq, "side": "client",
                "object": "h", "kind": "rpc_async_state", "api": api, "args": args,
                "code": code, "outputs": {}, "invoked": at, "responded": until}

    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in [
        {**call(1, "RpcAsyncInitializeHandle", 0, {"size": "exact"}, 1.0, 1.5),
         "unknown": ["outputs.*"]},
        call(2, "RpcAsyncCancelCall", 12345, {"abort": True}, 2.0, 3.0),
        call(3, "RpcAsyncCancelCall", 12345, {"abort": False}, 2.1, 2.9)]), encoding="utf-8")
    (case,) = [c for c in check(load([path])).cases if c.id == "trace/object/h"]
    assert case.verdict is not Verdict.FAIL, case.message
    assert case.verdict is Verdict.NOT_APPLICABLE and "undefined" in case.message, case.message
