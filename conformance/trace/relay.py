"""`callgate import-relay`: Wine's relay log (`WINEDEBUG=+relay,+pid,+tid`) as a trace.

Wine's relay channel writes one line when a program calls an exported function of a built-in DLL
and one when it returns::

    0020:0024:Call rpcrt4.RpcAsyncCancelCall(0021fb40,00000000) ret=1400017c9
    0020:0024:Ret  rpcrt4.RpcAsyncCancelCall() retval=0000077a ret=1400017c9

(`PID:TID:` with `+pid`, `TID:` without; an optional `SECONDS.MS:` first with `+timestamp`).
The importer pairs each Call line with its Ret line on the same thread and writes the calls of
the in-scope entry points (`IN_SCOPE`) in the trace format (docs/traces.md). What a relay log
does not show is written as unknown (`"unknown"` in the call line), and `check-trace` then says
what it could not judge instead of passing:

* times: the line numbers of the Call and Ret lines. A Call line is written before the function
  runs and the Ret line after it returned, so the interval holds the call; lines of one log
  share one order.
* arguments are the numbers the relay line prints; an argument passed through a structure (the
  `NotificationType` of an `RPC_ASYNC_STATE`) is not seen, nor is any [out] value (the reply of
  `RpcAsyncCompleteCall`).
* the asynchronous call itself: MIDL's client stub calls `NdrAsyncClientCall`, which takes
  variable arguments, and Wine's relay does not log such functions, so the log never shows the
  call being issued. The program can say when it issues one (below); otherwise the importer
  adds an `AsyncCall` that may or may not have happened anywhere after `RpcAsyncInitializeHandle`.
* COM vtable calls (`ISynchronize::Wait`, `Begin_`/`Finish_`, `ICancelMethodCalls`) are calls
  through interface pointers, not exports, and never appear in a relay log.

Objects: an `RPC_ASYNC_STATE` is named by its address and process, and a new object starts at
each `RpcAsyncInitializeHandle` on it (`ADDR@PID#N`): a handle is initialised for each call. A
handle the process never initialised that `RpcAsyncCompleteCall`, `RpcAsyncAbortCall` or
`RpcRaiseException` is called on inside the server stub `NdrAsyncServerCall` is a server's handle;
its calls are the server's (`thread` "routine" inside the stub on that thread, "later" outside).

Ties. A server's handle is not the client's, and nothing in the relay log ties them. A program
may write its own tag with `OutputDebugStringA` (the relay log shows the string):
`callgate-tie call=N side=client async=ADDR` on the client's thread right before it issues call
N on the handle at ADDR, and `callgate-tie call=N side=server async=ADDR` in the manager routine.
The importer then gives both handles the call_id `call-N`, writes the client's `AsyncCall` from
the tag to the thread's next in-scope call, and, since the server received the call, writes it
with a good binding and `RPC_S_OK`. Without tags the server's calls are written without a call_id
and `check-trace` lists them as unclaimed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from callgate.conformance.trace.format import TraceInvalid, header, problems

# sizeof(RPC_ASYNC_STATE) in a 64-bit program (the importer reads 64-bit programs' logs).
RPC_ASYNC_STATE_SIZE = 112
SOURCE = "callgate import-relay (Wine relay log)"
CLOCK = "line numbers of the relay log (Call line: invoked, Ret line: responded)"

# The entry points the importer writes, by DLL; other calls are counted, not written.
IN_SCOPE = {
    "rpcrt4": ("RpcAsyncInitializeHandle", "RpcAsyncGetCallStatus", "RpcAsyncCompleteCall",
               "RpcAsyncCancelCall", "RpcAsyncAbortCall", "RpcServerTestCancel",
               "RpcRaiseException"),
    "ole32": ("CoEnableCallCancellation", "CoDisableCallCancellation", "CoCancelCall",
              "CoTestCancel", "CoWaitForMultipleHandles"),
    "combase": ("CoEnableCallCancellation", "CoDisableCallCancellation", "CoCancelCall",
                "CoTestCancel", "CoWaitForMultipleHandles"),
}
# Seen to find the server's manager routines and handles, not written.
SERVER_STUB = "NdrAsyncServerCall"
CALL_HANDLE = "RpcAsyncGetCallHandle"
TIE = re.compile(r'"callgate-tie call=(\S+) side=(client|server) async=([0-9A-Fa-fx]+)"')

LINE = re.compile(
    r"^(?:\d+\.\d+:)?(?:(?P<pid>[0-9a-f]{4,8}):)?(?P<tid>[0-9a-f]{4,8}):"
    r"(?P<kind>Call|Ret) +(?P<dll>[A-Za-z0-9_]+)\.(?P<func>[A-Za-z_][A-Za-z0-9_]*)"
    r"\((?P<args>.*)\)(?: retval=(?P<retval>[0-9a-f]+))?(?: ret=[0-9a-f]+)?\s*$")


@dataclass
class RelayCall:
    """One Call line and, if it returned, its Ret line."""

    pid: int
    tid: int
    dll: str
    func: str
    args: list[str]
    text: str
    invoked: int
    responded: int | None = None
    retval: int | None = None
    inside: list[RelayCall] = field(default_factory=list)  # calls made while this one ran
    parent: RelayCall | None = None


@dataclass
class Imported:
    """What an import wrote and what it left out."""

    lines: list[dict[str, Any]]
    skipped: Counter[str]  # relayed calls outside the scope, per DLL
    unmatched: int  # Call lines with no Ret line (the thread never returned, or died)
    notes: list[str]


def _hex(text: str) -> int | None:
    token = text.strip().split(" ", 1)[0]
    try:
        return int(token, 16)
    except ValueError:
        return None


def _split_args(text: str) -> list[str]:
    """The top-level arguments of a relay line (strings may hold commas)."""
    parts, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    if current or parts:
        parts.append("".join(current))
    return parts


RELEVANT = frozenset({f for funcs in IN_SCOPE.values() for f in funcs}
                     | {SERVER_STUB, CALL_HANDLE, "OutputDebugStringA"})


def parse(lines: Iterable[str], skipped: Counter[str] | None = None
          ) -> tuple[list[RelayCall], int]:
    """Pair Call and Ret lines per thread; the calls the importer looks at in the order they were
    made, and how many of them never returned. Other relayed calls are counted per DLL in
    `skipped` and not kept (a relay log has hundreds of thousands)."""
    calls: list[RelayCall] = []
    stacks: dict[tuple[int, int], list[RelayCall]] = {}
    for number, raw in enumerate(lines, start=1):
        at = raw.find(":Call ")
        if at < 0:
            at = raw.find(":Ret  ")
            if at < 0:
                continue
        name = raw[at + 6:raw.find("(", at)].strip()
        dll, _, func = name.partition(".")
        if func not in RELEVANT:
            if skipped is not None and raw[at + 1] == "C" and func:
                skipped[dll.lower()] += 1
            continue
        match = LINE.match(raw.rstrip("\n"))
        if match is None:
            continue
        pid = int(match["pid"], 16) if match["pid"] else 0
        tid = int(match["tid"], 16)
        stack = stacks.setdefault((pid, tid), [])
        if match["kind"] == "Call":
            call = RelayCall(pid, tid, match["dll"].lower(), match["func"],
                             _split_args(match["args"]), match["args"], number,
                             parent=stack[-1] if stack else None)
            if stack:
                stack[-1].inside.append(call)
            stack.append(call)
            calls.append(call)
            continue
        dll, func = match["dll"].lower(), match["func"]
        for depth in range(len(stack) - 1, -1, -1):
            if stack[depth].dll == dll and stack[depth].func == func:
                # Frames above it never returned normally (an exception unwound them).
                done = stack[depth]
                done.responded = number
                done.retval = int(match["retval"], 16) if match["retval"] else None
                del stack[depth:]
                break
    return calls, sum(1 for c in calls if c.responded is None)


def _in_scope(call: RelayCall) -> bool:
    if call.func not in IN_SCOPE.get(call.dll, ()):
        return False
    # ole32 forwards to combase: the inner call of a forwarded pair is the same call.
    parent = call.parent
    return not (parent is not None and parent.func == call.func and parent.dll != call.dll)


def _routine(call: RelayCall) -> RelayCall | None:
    """The server stub a call was made inside, on its thread."""
    parent = call.parent
    while parent is not None:
        if parent.func == SERVER_STUB:
            return parent
        parent = parent.parent
    return None


def _code(value: int | None) -> int | None:
    return None if value is None else value & 0xFFFFFFFF


class _Importer:
    def __init__(self, calls: list[RelayCall]) -> None:
        self.calls = calls
        self.lines: list[dict[str, Any]] = []
        self.objects: dict[str, dict[str, Any]] = {}
        self.seq = 0
        self.incarnation: dict[tuple[int, int], str] = {}  # (pid, address) -> current object
        self.generation: Counter[tuple[int, int]] = Counter()
        self.client_tie: dict[str, str] = {}  # object -> call_id
        self.server_tie: dict[tuple[int, int, int], str] = {}  # (pid, stub line, address) -> id
        self.server_ids: set[str] = set()
        self.call_handles: dict[tuple[int, int], int] = {}  # (pid, binding) -> server handle
        self.notes: list[str] = []

    def run(self) -> list[dict[str, Any]]:
        # Server ties first: a client's AsyncCall is written as received when the server got it.
        for call in self.calls:
            tie = self._tie(call)
            if tie is not None and tie[1] == "server":
                stub = _routine(call)
                self.server_tie[(call.pid, stub.invoked if stub else -1, tie[2])] = tie[0]
                self.server_ids.add(tie[0])
        pending_issue: dict[tuple[int, int], tuple[str, RelayCall, str]] = {}
        for call in self.calls:
            tie = self._tie(call)
            if tie is not None and tie[1] == "client":
                name = self._object(call.pid, tie[2])
                self.client_tie[name] = tie[0]
                pending_issue[(call.pid, call.tid)] = (name, call, tie[0])
                continue
            if call.dll == "rpcrt4" and call.func == CALL_HANDLE and call.retval is not None:
                handle = _hex(call.args[0]) if call.args else None
                if handle is not None:
                    self.call_handles[(call.pid, call.retval)] = handle
                continue
            if not _in_scope(call):
                continue
            issue = pending_issue.pop((call.pid, call.tid), None)
            if issue is not None:
                self._async_call(*issue, until=call.invoked)
            self._write(call)
        for name, tie_call, call_id in pending_issue.values():
            self._async_call(name, tie_call, call_id, until=None)
        self._untied_issues()
        out = [header(SOURCE, {}) | {"clock": CLOCK}]
        out += [self.objects[k] for k in sorted(self.objects)]
        out += sorted(self.lines, key=lambda line: (line["invoked"], line["seq"]))
        return out

    @staticmethod
    def _tie(call: RelayCall) -> tuple[str, str, int] | None:
        if call.func != "OutputDebugStringA":
            return None
        match = TIE.search(call.text)
        if match is None:
            return None
        return match[1], match[2], int(match[3], 16)

    def _object(self, pid: int, address: int, *, new: bool = False) -> str:
        key = (pid, address)
        if new or key not in self.incarnation:
            self.generation[key] += 1
            name = f"{address:#x}@{pid:#x}#{self.generation[key]}"
            self.incarnation[key] = name
            self.objects[name] = {"type": "object", "object": name, "machine": "rpc_call"}
        return self.incarnation[key]

    def _emit(self, call: RelayCall | None, *, pid: int, tid: int, side: str, obj: str,
              kind: str, api: str, args: dict[str, Any], code: int | None,
              invoked: float, responded: float | None, unknown: Iterable[str] = (),
              call_id: str = "", ids: dict[str, str] | None = None) -> None:
        self.seq += 1
        line: dict[str, Any] = {"type": "call", "seq": self.seq, "pid": pid, "tid": tid,
                                "side": side}
        if side == "server":
            # The server's handle is not the client's object: its calls join the client's object
            # through the call_id, or, with no tie, are listed as unclaimed.
            call_id = call_id or f"untied-{invoked}"
        else:
            line["object"] = obj
        line["kind"] = kind
        if ids:
            line["ids"] = ids
        if call_id:
            line["call_id"] = call_id
        line |= {"api": api, "args": args, "code": code, "outputs": {}}
        if unknown:
            line["unknown"] = sorted(set(unknown))
        line |= {"invoked": float(invoked),
                 "responded": None if responded is None else float(responded)}
        self.lines.append(line)

    def _async_call(self, name: str, tie: RelayCall, call_id: str, until: int | None) -> None:
        """The client's call N, issued right after its tag (the relay log does not show it)."""
        received = call_id in self.server_ids
        unknown = ["args.notify", "args.hThread"] + ([] if received else ["args.binding", "code"])
        self._emit(None, pid=tie.pid, tid=tie.tid, side="client", obj=name,
                   kind="rpc_async_state", api="AsyncCall",
                   args={"binding": "good"} if received else {},
                   code=0 if received else None,
                   invoked=tie.responded if tie.responded is not None else tie.invoked,
                   responded=until if until is not None else None, unknown=unknown,
                   call_id=call_id)
        self.objects[name]["issued"] = True

    def _untied_issues(self) -> None:
        """A handle with calls after its initialisation but no tag: its call was issued at some
        point the log does not show; written as a call that may or may not have happened."""
        for name, obj in self.objects.items():
            if obj.pop("issued", False) or name in self.client_tie:
                continue
            mine = [ln for ln in self.lines if ln.get("object") == name]
            init = [ln for ln in mine if ln["api"] == "RpcAsyncInitializeHandle"]
            rest = [ln for ln in mine if ln["api"] != "RpcAsyncInitializeHandle"]
            if not init or not rest or init[0]["responded"] is None:
                continue
            self._emit(None, pid=init[0]["pid"], tid=init[0]["tid"], side="client", obj=name,
                       kind="rpc_async_state", api="AsyncCall", args={}, code=None,
                       invoked=init[0]["responded"], responded=None,
                       unknown=["args.notify", "args.binding", "args.hThread"])
            obj["server_unseen"] = True
            self.notes.append(f"{name}: no tag says when its call was issued nor ties the "
                              f"server's calls to it: written as an AsyncCall that may have "
                              f"happened at any point after RpcAsyncInitializeHandle, and "
                              f"check-trace judges nothing from there on")
        for obj in self.objects.values():
            obj.pop("issued", None)

    def _server_handle(self, call: RelayCall, address: int) -> tuple[str, str, str] | None:
        """("", call_id, thread) when `address` is a server's handle in this call, else None.

        Inside the server stub on this thread, a handle the process never initialised (or one a
        server tag names) is the server's; outside it, only one a server tag named before (a
        completion from another thread after the routine returned)."""
        stub = _routine(call)
        if stub is not None:
            call_id = self.server_tie.get((call.pid, stub.invoked, address), "")
        else:
            earlier = [v for (pid, line, a), v in self.server_tie.items()
                       if pid == call.pid and a == address and line < call.invoked]
            call_id = earlier[-1] if earlier else ""
        initialised = (call.pid, address) in self.incarnation
        if not call_id and (initialised or stub is None):
            return None
        return ("", call_id, "routine" if stub is not None else "later")

    def _write(self, call: RelayCall) -> None:
        numbers = [_hex(a) for a in call.args]
        first = numbers[0] if numbers else None
        code = _code(call.retval) if call.responded is not None else None
        common: dict[str, Any] = {"pid": call.pid, "tid": call.tid, "invoked": call.invoked,
                                  "responded": call.responded, "code": code}
        api = call.func
        args: dict[str, Any]
        if call.dll == "rpcrt4":
            if first is None and api != "RpcRaiseException":
                return
            if api == "RpcAsyncInitializeHandle":
                size = numbers[1] if len(numbers) > 1 else None
                name = self._object(call.pid, int(first or 0), new=True)
                args = {} if size is None else {"size": "exact" if size == RPC_ASYNC_STATE_SIZE
                                                else "smaller" if size < RPC_ASYNC_STATE_SIZE
                                                else "larger"}
                self._emit(call, side="client", obj=name, kind="rpc_async_state", api=api,
                           args=args, unknown=["outputs.*"] + ([] if args else ["args.size"]),
                           ids={"rpc_async_state": f"{first:#x}"}, **common)
                return
            if api == "RpcServerTestCancel":
                handle = self.call_handles.get((call.pid, int(first or 0)))
                stub = _routine(call)
                server = None
                if handle is not None:
                    server = self._server_handle(call, handle)
                elif first == 0 and stub is not None:  # NULL: the thread's current call
                    tied = [v for (pid, line, _), v in self.server_tie.items()
                            if pid == call.pid and line == stub.invoked]
                    server = ("", tied[0], "routine") if tied else None
                self._emit(call, side="server", obj="", kind="rpc_async_state", api=api,
                           args={}, unknown=["args.timeout"],
                           call_id=server[1] if server else "", **common)
                return
            if api == "RpcRaiseException":
                stub = _routine(call)
                pairs = [(a, v) for (pid, line, a), v in self.server_tie.items()
                         if stub is not None and pid == call.pid and line == stub.invoked]
                if not pairs:
                    return  # an exception outside a server routine the importer can tie
                raised_on, raised_id = pairs[0]
                self._emit(call, side="server", obj="", kind="rpc_async_state", api=api,
                           args={"code": first, "thread": "routine"}, call_id=raised_id,
                           ids={"rpc_async_state": f"{raised_on:#x}"}, **common)
                return
            address = int(first or 0)
            server = self._server_handle(call, address) \
                if api in ("RpcAsyncCompleteCall", "RpcAsyncAbortCall") else None
            if server is not None:
                obj, call_id, thread = server
                args = {"thread": thread}
                unknown = []
                if api == "RpcAsyncAbortCall":
                    args["code"] = numbers[1] if len(numbers) > 1 else None
                else:
                    unknown.append("args.reply")  # passed by reference
                self._emit(call, side="server", obj=obj, kind="rpc_async_state", api=api,
                           args={k: v for k, v in args.items() if v is not None},
                           unknown=unknown, call_id=call_id,
                           ids={"rpc_async_state": f"{address:#x}"}, **common)
                return
            name = self._object(call.pid, address)
            args = {}
            unknown = []
            if api == "RpcAsyncCancelCall" and len(numbers) > 1 and numbers[1] is not None:
                args["abort"] = bool(numbers[1])
            if api == "RpcAsyncCompleteCall":
                unknown.append("outputs.*")  # the reply, through a pointer
            self._emit(call, side="client", obj=name, kind="rpc_async_state", api=api,
                       args={k: v for k, v in args.items() if v is not None}, unknown=unknown,
                       call_id=self.client_tie.get(name, ""),
                       ids={"rpc_async_state": f"{address:#x}"}, **common)
            return
        # ole32 / combase
        thread_object = f"thread {call.tid:#x}@{call.pid:#x}"
        if api in ("CoEnableCallCancellation", "CoDisableCallCancellation"):
            self._emit(call, side="client", obj=thread_object, kind="thread", api=api,
                       args={"pReserved": "NULL" if not first else "non_NULL"}, **common)
        elif api == "CoCancelCall":
            target = first if first else call.tid
            self._emit(call, side="client", obj=f"thread {target:#x}@{call.pid:#x}",
                       kind="thread", api=api, args={}, **common)
        elif api == "CoTestCancel":
            self._emit(call, side="server", obj="", kind="thread", api=api, args={}, **common)
        elif api == "CoWaitForMultipleHandles":
            names = ("dwFlags", "dwTimeout", "cHandles", "pHandles", "lpdwindex")
            self._emit(call, side="client", obj=f"cowait {call.tid:#x}@{call.pid:#x}",
                       kind="wait", api=api,
                       args={n: v for n, v in zip(names, numbers, strict=False)
                             if v is not None}, unknown=["outputs.*"], **common)


def import_log(lines: Iterable[str]) -> Imported:
    """The trace lines of a relay log, every one checked against the trace schema."""
    skipped: Counter[str] = Counter()
    calls, unmatched = parse(lines, skipped)
    importer = _Importer(calls)
    out = importer.run()
    for line in out:
        found = problems(line)
        if found:  # a bug in the importer
            raise TraceInvalid(f"import-relay wrote a line that breaks the trace schema: "
                               f"{found}: {line}")
    skipped.update(c.dll for c in calls if not _in_scope(c) and c.func not in (
        SERVER_STUB, CALL_HANDLE, "OutputDebugStringA"))
    return Imported(out, skipped, unmatched, importer.notes)


def write(imported: Imported, handle: IO[str]) -> None:
    for line in imported.lines:
        handle.write(json.dumps(line) + "\n")


def read_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        yield from handle
