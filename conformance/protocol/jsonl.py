"""The JSON-lines transport, harness side: `CommandAdapter` drives an adapter program in any language.

DESIGN.md principle 8: an implementation in C, C++, Rust, C# or under Wine plugs in as a program
that reads requests on stdin and writes answers on stdout, one JSON object per line. The protocol
is written down for implementers in `docs/adapter-protocol.md`; every message has a JSON Schema
in `conformance/protocol/schemas/`, and every line the adapter writes is checked against it.

`CommandAdapter` is a `callgate.conformance.protocol.adapter.Adapter` like any in-process one, so the
runner and the gate do not know the difference. What it adds is survival: the program under test may hang,
crash, exit, print garbage or a line of 100 MB, answer a request that was never asked, or send a
code that is not a 32-bit number. Each of these becomes an `AdapterFault` with evidence (the
offending line cut to 2 KB, the exit status, the last 4 KB of stderr), so the case in progress
gets the verdict `error`; the process is killed, and the next `open_session` starts a fresh one
(with a fresh handshake) so the run goes on with the next case.

How it stays bounded and unblocked:
* stdout is read by one thread in 64 KB chunks; a line past `max_line_bytes` is a fault as soon
  as it passes the limit, so memory never holds more than the limit plus one chunk;
* stderr is read by another thread into a ring of the last few KB, so a chatty adapter never
  blocks on a full pipe and never fills the harness's memory;
* every request has its own deadline (`request_timeout` plus the request's `wait_ms`), enforced
  here and not only by the runner's Executor, so a hung program is killed instead of leaking;
* responses are matched to requests by id and handed to the waiting thread, so several requests
  may be in flight on one session from several threads at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

from callgate.conformance.protocol.adapter import (
    PROTOCOL_VERSION,
    AdapterFault,
    Capabilities,
    NotApplicable,
    Observation,
    Request,
    SlotSpec,
)
from callgate.model.transitions import Value

HARNESS_MESSAGES = ("hello", "open", "request", "close", "shutdown")
PYTHON_NAMES = ("python", "python3")
ADAPTER_MESSAGES = ("handshake", "response", "event")
DEFAULT_MAX_LINE_BYTES = 1 << 20
CHUNK_BYTES = 1 << 16
# How much of an offending line, and of stderr, goes into the evidence of a fault.
EVIDENCE_LINE_BYTES = 2048
STDERR_TAIL_BYTES = 4096
# Events kept per session: the newest win; older ones are dropped. The last few of any session
# go into the evidence of a fault.
EVENTS_KEPT = 256
EVENTS_IN_EVIDENCE = 5
CODE_MAX = (1 << 32) - 1
ID_MAX = (1 << 53) - 1  # ids and sessions stay exact in every JSON implementation
# How long to wait for a process to exit after its stdout closed or after `shutdown`, and for
# the stderr reader to take the last bytes a crashing process wrote.
EXIT_GRACE = 2.0
STDERR_GRACE = 1.0
# How often a waiting request checks that the process still runs.
POLL_SECONDS = 0.25
# Integer fields that must be JSON integers: the schemas' "integer" also admits 7.0.
INTEGER_FIELDS = ("id", "session", "code", "protocol", "wait_ms")
# Messages already found valid, with their ids set to 1 (see check_message); bounded. Shared by
# threads: a lost insertion only costs one more validation.
VALID_SHAPES_KEPT = 4096
_VALID_SHAPES: dict[tuple[str, str], None] = {}


class ProtocolError(Exception):
    """A line that is not a valid protocol message; the text says which rule it broke."""


@cache
def schemas() -> dict[str, dict[str, Any]]:
    """The published JSON Schema of each message type, by type."""
    folder = resources.files("callgate.conformance.protocol").joinpath("schemas")
    return {name: json.loads(folder.joinpath(f"{name}.json").read_text(encoding="utf-8"))
            for name in HARNESS_MESSAGES + ADAPTER_MESSAGES}


def inline_local_refs(node: Any, defs: Mapping[str, Any] | None = None) -> Any:
    """`node` with every `{"$ref": "#/$defs/NAME"}` replaced by that definition.

    The published schemas keep `$defs` for people; resolving `$ref` at every validation costs
    jsonschema more than the rest of the check, so the validators get the inlined form.
    """
    if defs is None and isinstance(node, dict):
        defs = node.get("$defs", {})
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.removeprefix("#/$defs/")
            if name == ref or defs is None or name not in defs:
                raise ValueError(f"only local references #/$defs/NAME are supported, not {ref!r}")
            return inline_local_refs(defs[name], defs)
        return {k: inline_local_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [inline_local_refs(v, defs) for v in node]
    return node


@cache
def validators() -> dict[str, Any]:
    """One compiled Draft 2020-12 validator per message type, from the published schemas."""
    compiled: dict[str, Any] = {}
    for name, published in schemas().items():
        Draft202012Validator.check_schema(published)
        compiled[name] = Draft202012Validator(inline_local_refs(published))
    return compiled


def _check_code(message: Mapping[str, Any]) -> None:
    """Codes travel as unsigned 32-bit numbers; say so plainly rather than quote the schema."""
    if "code" not in message:
        return
    code = message["code"]
    if isinstance(code, bool) or not isinstance(code, int):
        raise ProtocolError(
            f"response code {code!r} is not a number: codes travel as unsigned 32-bit integers "
            f"(S_OK is 0, RPC_S_CALLPENDING 0x80010115 is 2147549461); a name may go in `name`")
    if not 0 <= code <= CODE_MAX:
        hint = f" (as unsigned: {code & CODE_MAX})" if -(1 << 31) <= code < 0 else ""
        raise ProtocolError(
            f"response code {code} is not an unsigned 32-bit number (0..{CODE_MAX}){hint}: "
            f"send HRESULTs unsigned, e.g. printf(\"%lu\", (unsigned long)(ULONG)hr)")


def check_message(message: object, allowed: Sequence[str]) -> dict[str, Any]:
    """`message` if it is a valid protocol message of one of the `allowed` types, else ProtocolError."""
    if not isinstance(message, dict):
        raise ProtocolError(f"a line must hold one JSON object, not a JSON {type(message).__name__}")
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in allowed:
        raise ProtocolError(f"a message of type {kind!r} is not expected here; this side accepts "
                            f"{', '.join(allowed)} (docs/adapter-protocol.md)")
    if kind == "response":
        _check_code(message)
    # Messages repeat but for their id, so the schema's verdict on the message with its id set
    # to 1 is remembered, and the id (the same integer range in every schema) checked here.
    probe: dict[str, Any] = message
    if "id" in message:
        request_id = message["id"]
        if type(request_id) is not int or not 1 <= request_id <= ID_MAX:
            raise ProtocolError(f"{kind}.id must be an integer from 1 to {ID_MAX}, without "
                                f"fraction or exponent; got {request_id!r}")
        probe = {**message, "id": 1}
    key = (kind, json.dumps(probe, sort_keys=True))
    if key not in _VALID_SHAPES:
        validator = validators()[kind]
        if not validator.is_valid(probe):
            error = best_match(validator.iter_errors(message))
            where = "/".join(str(p) for p in error.absolute_path) or "the message"
            what = error.message
            if error.validator == "additionalProperties" and isinstance(error.instance, dict):
                known = set(error.schema.get("properties", {}))
                extra = sorted(k for k in error.instance if k not in known
                               and not k.startswith("x_"))
                what = (f"unknown member(s) {', '.join(map(repr, extra))}; only the documented "
                        f"members and x_ extensions are allowed")
            raise ProtocolError(f"{kind} message invalid at {where}: {what} (schema: "
                                f"conformance/protocol/schemas/{kind}.json)")
        if len(_VALID_SHAPES) >= VALID_SHAPES_KEPT:
            _VALID_SHAPES.clear()
        _VALID_SHAPES[key] = None
    for field_name in INTEGER_FIELDS:
        if field_name in message and type(message[field_name]) is not int:
            raise ProtocolError(f"{kind}.{field_name} must be a JSON integer, without fraction "
                                f"or exponent; got {message[field_name]!r}")
    return message


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_line(line: bytes, allowed: Sequence[str]) -> dict[str, Any]:
    """Decode one line (without its newline) into a checked message, or raise ProtocolError."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"the line is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        message = json.loads(text, parse_constant=_no_constants)
    except ValueError as exc:
        raise ProtocolError(f"the line is not JSON ({exc}); stdout must carry protocol lines "
                            f"only: write diagnostics to stderr") from exc
    return check_message(message, allowed)


def encode(message: Mapping[str, Any]) -> bytes:
    """One message as one line: compact UTF-8 JSON and a newline."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


@dataclass(frozen=True)
class Overlong:
    """A line longer than the limit: its first bytes, and how many bytes it had when abandoned."""

    prefix: bytes
    seen: int


def read_lines(read: Callable[[int], bytes], max_line_bytes: int) -> Iterator[bytes | Overlong]:
    """Lines (without "\\n") from a byte stream, in bounded memory.

    A line that passes `max_line_bytes` is yielded as an `Overlong` at once, before its end
    arrives; if the consumer goes on reading, the rest of that line is skipped unbuffered. So the
    buffer never holds more than the limit plus one chunk. A last line without "\\n" is yielded
    at end of stream.
    """
    buffer = bytearray()
    skipping = False
    while True:
        chunk = read(CHUNK_BYTES)
        if not chunk:
            if buffer and not skipping:
                yield bytes(buffer)
            return
        view = memoryview(chunk)
        start = 0
        while start < len(chunk):
            newline = chunk.find(b"\n", start)
            end = len(chunk) if newline < 0 else newline
            if not skipping:
                buffer += view[start:end]
                if len(buffer) > max_line_bytes:
                    seen = len(buffer)
                    prefix = bytes(buffer[:EVIDENCE_LINE_BYTES])
                    buffer.clear()
                    skipping = True
                    yield Overlong(prefix, seen)
            if newline < 0:
                break
            if not skipping:
                yield bytes(buffer)
            buffer.clear()
            skipping = False
            start = newline + 1


def describe_line(line: bytes, size: str = "") -> str:
    """An offending line for the evidence: its size and its first EVIDENCE_LINE_BYTES bytes."""
    shown = line[:EVIDENCE_LINE_BYTES].decode("utf-8", "backslashreplace")
    size = size or f"{len(line)} bytes"
    cut = f", first {EVIDENCE_LINE_BYTES} shown" if len(line) > EVIDENCE_LINE_BYTES or "more" in size \
        else ""
    return f"offending line ({size}{cut}): {shown}"


def describe_exit(code: int | None) -> str:
    """An exit status as people read it."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-code} ({name})"
    return f"exited with code {code}"


class _Tail:
    """The last `limit` bytes written to a stream, and how many bytes there were in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._data = bytearray()
        self._lock = threading.Lock()

    def add(self, chunk: bytes) -> None:
        with self._lock:
            self.total += len(chunk)
            self._data += chunk[-self.limit:]
            if len(self._data) > self.limit:
                del self._data[:len(self._data) - self.limit]

    def text(self) -> str:
        with self._lock:
            return self._data.decode("utf-8", "replace")


@dataclass(frozen=True)
class AdapterEvent:
    """An `event` line: something the adapter reported that no request asked about."""

    session: int
    kind: str
    slot: str = ""
    data: Mapping[str, Value] = field(default_factory=dict)
    message: str = ""
    received: float = 0.0  # time.monotonic() when it was read


class _Pending:
    """One outstanding open, request or close, and the thread waiting for its response."""

    def __init__(self, session: int | None, what: str) -> None:
        self.session = session
        self.what = what
        self.done = threading.Event()
        self.reply: dict[str, Any] = {}
        self.fault: AdapterFault | None = None

    def resolve(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self.done.set()

    def fail(self, fault: AdapterFault) -> None:
        self.fault = fault
        self.done.set()


class _Connection:
    """One adapter process: its pipes, its reader threads, its outstanding requests.

    A connection is used until its first fault; then it is dead for good (the process is
    killed) and `CommandAdapter` starts another.
    """

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None, cwd: str | None,
                 max_line_bytes: int) -> None:
        self.label = shlex.join(argv)
        self.max_line_bytes = max_line_bytes
        try:
            # A session of its own: killing the group also kills what the program started
            # (a `wine` loader's children, a shell script's program).
            self.process = subprocess.Popen(
                list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                bufsize=0, env=dict(env) if env is not None else None, cwd=cwd,
                start_new_session=True)
        except OSError as exc:
            raise AdapterFault(
                f"cannot start the adapter command {self.label}: {exc.strerror or exc}",
                "check that the program exists and is executable; the command is split like a "
                "shell would split it, but no shell runs it (no pipes, no variables)") from exc
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._next_id = 0
        self._sessions: dict[int, deque[AdapterEvent]] = {}
        self._opened: set[int] = set()
        self._recent_events: deque[AdapterEvent] = deque(maxlen=EVENTS_IN_EVIDENCE)
        self._handshake = _Pending(None, "the handshake")
        self._handshaken = False
        self._failing = False
        self._failed = threading.Event()
        self._closing = False
        self.fault: AdapterFault | None = None
        self.stderr = _Tail(STDERR_TAIL_BYTES)
        self._stderr_thread = threading.Thread(target=self._pump_stderr, daemon=True,
                                               name=f"callgate-adapter-stderr-{self.process.pid}")
        self._stdout_thread = threading.Thread(target=self._pump_stdout, daemon=True,
                                               name=f"callgate-adapter-stdout-{self.process.pid}")
        self._stderr_thread.start()
        self._stdout_thread.start()

    @property
    def usable(self) -> bool:
        return not self._failing and not self._closing

    # --- reading ----------------------------------------------------------------------------

    def _pump_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        fd = stream.fileno()
        try:
            while chunk := os.read(fd, CHUNK_BYTES):
                self.stderr.add(chunk)
        except OSError:
            pass  # the pipe broke with the process; what was read is kept
        finally:
            stream.close()

    def _pump_stdout(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        fd = stream.fileno()
        try:
            for item in read_lines(lambda n: os.read(fd, n), self.max_line_bytes):
                if self._failing or self._closing:
                    return  # what follows a fault or a shutdown is not judged
                if isinstance(item, Overlong):
                    self.fail(f"the adapter wrote a line longer than {self.max_line_bytes} bytes "
                              f"(the limit, max_line_bytes); it was abandoned unread",
                              line=item.prefix, size=f"more than {item.seen} bytes")
                    return
                if not item.strip():
                    continue  # blank lines carry nothing
                try:
                    self._dispatch(item)
                except ProtocolError as exc:
                    self.fail(f"protocol violation: {exc}", line=item)
                    return
            if not self._closing:
                self.fail("the adapter closed its stdout: it exited or crashed", exited=True)
        except OSError as exc:
            if not self._closing:
                self.fail(f"reading the adapter's stdout failed: {exc}")
        finally:
            stream.close()

    def _dispatch(self, line: bytes) -> None:
        message = parse_line(line, ADAPTER_MESSAGES)
        kind = message["type"]
        if not self._handshaken:
            if kind != "handshake":
                raise ProtocolError(f"the adapter's first line must be its handshake, not a {kind} "
                                    f"message")
            self._handshaken = True
            self._handshake.resolve(message)
        elif kind == "handshake":
            raise ProtocolError("a second handshake: the adapter sends exactly one, first")
        elif kind == "response":
            with self._lock:
                pending = self._pending.pop(message["id"], None)
                outstanding = sorted(self._pending)
            if pending is None:
                raise ProtocolError(f"a response with id {message['id']}, which is the id of no "
                                    f"outstanding request (outstanding: {outstanding or 'none'}); "
                                    f"echo the id of the request you answer")
            pending.resolve(message)
        else:
            self._event(message)

    def _event(self, message: Mapping[str, Any]) -> None:
        session = message["session"]
        with self._lock:
            buffer = self._sessions.get(session)
            opened = session in self._opened
        if buffer is None:
            if opened:
                return  # a late event of a closed session: nobody listens any more
            raise ProtocolError(f"an event for session {session}, which the harness never opened")
        event = AdapterEvent(session, message["kind"], message.get("slot", ""),
                             dict(message.get("data", {})), message.get("message", ""),
                             time.monotonic())
        buffer.append(event)
        self._recent_events.append(event)

    # --- writing and waiting ----------------------------------------------------------------

    def _write(self, message: Mapping[str, Any]) -> None:
        data = memoryview(encode(message))
        stdin = self.process.stdin
        assert stdin is not None
        try:
            with self._write_lock:
                fd = stdin.fileno()
                while data:
                    data = data[os.write(fd, data):]
        except (OSError, ValueError) as exc:
            raise self.fail(f"the adapter no longer reads its stdin ({exc})", exited=True) from exc

    def start(self, timeout: float) -> Capabilities:
        """Say hello and read the handshake: the adapter's capabilities."""
        self._write({"type": "hello", "protocol": PROTOCOL_VERSION, "harness": "callgate"})
        self._await(self._handshake, timeout,
                    f"no handshake within {timeout:g} s of starting the adapter; it must answer "
                    f"the hello line with its handshake at once")
        if self._handshake.fault is not None:
            raise self._handshake.fault
        message = self._handshake.reply
        if message["protocol"] != PROTOCOL_VERSION:
            raise self.fail(f"the adapter speaks protocol version {message['protocol']}; this "
                            f"harness speaks version {PROTOCOL_VERSION}", line=encode(message))
        return Capabilities(message["implementation"], message["version"],
                            frozenset(message["features"]), dict(message.get("pins", {})),
                            message.get("notes", ""))

    def register_session(self, session: int) -> deque[AdapterEvent]:
        events: deque[AdapterEvent] = deque(maxlen=EVENTS_KEPT)
        with self._lock:
            self._sessions[session] = events
            self._opened.add(session)
        return events

    def forget_session(self, session: int) -> None:
        with self._lock:
            self._sessions.pop(session, None)

    def has_pending(self, session: int) -> bool:
        with self._lock:
            return any(p.session == session for p in self._pending.values())

    def call(self, message: Mapping[str, Any], timeout: float, what: str,
             session: int | None) -> dict[str, Any]:
        """Send one message that expects a response, and wait for that response."""
        with self._lock:
            if self._failing or self._closing:
                raise self._dead(what)
            self._next_id += 1
            request_id = self._next_id
            pending = _Pending(session, what)
            self._pending[request_id] = pending
        self._write({"type": message["type"], "id": request_id,
                     **{k: v for k, v in message.items() if k != "type"}})
        self._await(pending, timeout, f"no response to {what} (request id {request_id}) within "
                                      f"{timeout:.3g} s: the adapter hangs; callgate killed it")
        if pending.fault is not None:
            raise pending.fault
        return pending.reply

    def _await(self, pending: _Pending, timeout: float, hang_message: str) -> None:
        """Wait for `pending`; fail the connection with `hang_message` after `timeout` seconds,
        or at once if the process is gone.

        The end of stdout normally reports an exit; but a child the adapter started (a Wine
        server, say) may hold stdout open after the adapter died, so the process is also
        polled while waiting.
        """
        deadline = time.monotonic() + timeout
        while not pending.done.wait(min(POLL_SECONDS, max(0.0, deadline - time.monotonic()))):
            if self.process.poll() is not None:
                if pending.done.wait(POLL_SECONDS):  # what it wrote before exiting
                    return
                raise self.fail("the adapter exited or crashed without answering", exited=True)
            if time.monotonic() >= deadline:
                raise self.fail(hang_message)

    def _dead(self, what: str) -> AdapterFault:
        if self._failing:
            self._failed.wait(EXIT_GRACE + STDERR_GRACE + 1.0)
        fault = self.fault
        if fault is None:
            return AdapterFault(f"{what}: the adapter process is shutting down", "")
        return AdapterFault(f"{what}: the adapter process had already failed: {fault}",
                            fault.evidence)

    # --- failing and stopping ---------------------------------------------------------------

    def fail(self, message: str, *, line: bytes | None = None, size: str = "",
             exited: bool = False) -> AdapterFault:
        """Mark the connection dead with a fault and its evidence; kill the process; wake every
        waiter. The first fault wins: later calls return it."""
        with self._lock:
            first = not self._failing
            self._failing = True
        if not first:
            self._failed.wait(EXIT_GRACE + STDERR_GRACE + 1.0)
            return self.fault or AdapterFault(message)
        code: int | None = None
        if exited:
            try:
                code = self.process.wait(EXIT_GRACE)
            except subprocess.TimeoutExpired:
                code = None
        else:
            code = self.process.poll()
        status = describe_exit(code)
        if code is None:
            status += " when the fault was found; callgate killed it"
        # The whole process group goes, also when the adapter exited by itself: what it started
        # would otherwise live on and hold the pipes open.
        self._kill()
        # Once the process is gone its stderr ends: let the reader take the last bytes (a
        # crashing program's last words) before they go into the evidence.
        self._stderr_thread.join(STDERR_GRACE)
        fault = AdapterFault(message, self.evidence(status, line, size))
        with self._lock:
            self.fault = fault
            waiting = [*self._pending.values(), self._handshake]
            self._pending.clear()
        self._failed.set()
        for pending in waiting:
            if not pending.done.is_set():
                pending.fail(fault)
        return fault

    def evidence(self, status: str, line: bytes | None = None, size: str = "") -> str:
        parts = [f"adapter command: {self.label}", f"process: {status}"]
        if line is not None:
            parts.append(describe_line(line, size))
        events = list(self._recent_events)
        if events:
            parts.append("last events: " + "; ".join(
                f"session {e.session} {e.kind}{' ' + e.slot if e.slot else ''}"
                f"{' ' + json.dumps(dict(e.data)) if e.data else ''}"
                f"{': ' + e.message[:200] if e.message else ''}" for e in events))
        tail = self.stderr.text()
        if tail:
            more = f"last {STDERR_TAIL_BYTES} of {self.stderr.total} bytes" \
                if self.stderr.total > STDERR_TAIL_BYTES else f"{self.stderr.total} bytes"
            parts.append(f"stderr ({more}):\n{tail}")
        else:
            parts.append("stderr: (empty)")
        return "\n".join(parts)

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
            os.killpg(self.process.pid, signal.SIGKILL)
        # A process in uninterruptible sleep outlives SIGKILL for a while: its daemon readers
        # are left behind rather than blocking the run.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(EXIT_GRACE)

    def shutdown(self, grace: float) -> None:
        """Ask the adapter to exit, give it `grace` seconds, then kill it; wake any waiter."""
        if self._failing:
            # Let a fault being recorded finish first, so its evidence has the true exit status.
            self._failed.wait(EXIT_GRACE + STDERR_GRACE + 1.0)
        with self._lock:
            self._closing = True
            waiting = list(self._pending.values())
            self._pending.clear()
        stdin = self.process.stdin
        if stdin is not None:
            # An adapter that is gone already cannot read this, which is what shutdown wants.
            with contextlib.suppress(OSError, ValueError), self._write_lock:
                if not self._failing:
                    stdin.write(encode({"type": "shutdown"}))
                stdin.close()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self._kill()
        else:
            self._kill()  # whatever the adapter left running in its process group
        self._stdout_thread.join(STDERR_GRACE)
        self._stderr_thread.join(STDERR_GRACE)
        for pending in waiting:
            pending.fail(AdapterFault(f"{pending.what}: the harness shut the adapter down"))


def _values(data: Mapping[str, Any]) -> dict[str, Value]:
    return {str(k): v for k, v in data.items()}


class CommandSession:
    """One case's objects inside the adapter process. Thread-safe: requests may overlap."""

    def __init__(self, connection: _Connection, session: int, request_timeout: float,
                 events: deque[AdapterEvent]) -> None:
        self.connection = connection
        self.session = session
        self.request_timeout = request_timeout
        self._events = events
        self.closed = False

    def perform(self, request: Request) -> Observation:
        what = f"request {request.slot}.{request.op}"
        message = {"type": "request", "session": self.session, "slot": request.slot,
                   "op": request.op, "args": dict(request.args), "wait_ms": request.wait_ms}
        reply = self.connection.call(message, self.request_timeout + request.wait_ms / 1000,
                                     what, self.session)
        _check_status(self.connection, reply, what)
        if "code" not in reply:
            raise self.connection.fail(
                f"protocol violation: the response to {what} has status ok but no code; a "
                f"request's response carries its return code", line=encode(reply))
        return Observation(reply["code"], _values(reply.get("outputs", {})))

    def events(self) -> list[AdapterEvent]:
        """The session's `event` lines so far (the last EVENTS_KEPT), oldest first.

        Protocol version 1 does not judge events: the runner observes notifications through the
        `wait_notification` request. They are kept for people and for later checkers.
        """
        return list(self._events)

    def close(self) -> None:
        """Close the session. If requests of this session are still outstanding, the harness has
        abandoned them (its step timeout fired first): the process is killed so that the next
        session starts in a fresh one rather than behind a stuck call."""
        if self.closed:
            return
        self.closed = True
        connection = self.connection
        if not connection.usable:
            return
        if connection.has_pending(self.session):
            connection.fail(f"session {self.session} was closed with requests still outstanding "
                            f"(the harness stopped waiting for them)")
            return
        try:
            reply = connection.call({"type": "close", "session": self.session},
                                    self.request_timeout, f"close of session {self.session}",
                                    self.session)
            _check_status(connection, reply, f"close of session {self.session}")
        finally:
            connection.forget_session(self.session)


def _check_status(connection: _Connection, reply: Mapping[str, Any], what: str) -> None:
    status = reply["status"]
    if status == "not_applicable":
        raise NotApplicable(reply["message"])
    if status == "error":
        evidence = reply.get("evidence", "")
        tail = connection.stderr.text()
        if tail:
            evidence = f"{evidence}\nstderr (last bytes):\n{tail}".lstrip("\n")
        raise AdapterFault(f"the adapter reported an error on {what}: {reply['message']}", evidence)


class CommandAdapter:
    """An adapter program, started on first use, spoken to in JSON lines (docs/adapter-protocol.md).

    `command` is a command line (split like a shell would, without running a shell) or an
    argument list; a command that starts with `python` or `python3` runs with the harness's
    own interpreter (`sys.executable`). `request_timeout` bounds each open, request and close
    (a request may also wait its `wait_ms`); `start_timeout` bounds starting the program and
    its handshake.
    `max_line_bytes` is the longest line the adapter may write. `env` and `cwd` are the
    program's environment and working directory.

    After any fault the process is killed; the next `open_session` starts a new one, which must
    declare the same capabilities. `starts` counts the processes started.
    """

    def __init__(self, command: str | Sequence[str], *, request_timeout: float = 10.0,
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, env: Mapping[str, str] | None = None,
                 cwd: str | os.PathLike[str] | None = None, start_timeout: float = 30.0) -> None:
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not argv:
            raise ValueError("the adapter command is empty: pass a program and its arguments, "
                             "e.g. 'python -m callgate.conformance.implementations.reference.serve'")
        if argv[0] in PYTHON_NAMES:
            # The harness's own interpreter: the environment callgate is installed in is the
            # one `python -m callgate.conformance.implementations.reference.serve` needs, activated or not.
            argv[0] = sys.executable
        if request_timeout <= 0 or start_timeout <= 0:
            raise ValueError(f"timeouts must be positive seconds; got request_timeout="
                             f"{request_timeout}, start_timeout={start_timeout}")
        if max_line_bytes < 1024:
            raise ValueError(f"max_line_bytes must be at least 1024, got {max_line_bytes}: a "
                             f"handshake alone may need hundreds of bytes")
        self.argv = tuple(argv)
        self.request_timeout = request_timeout
        self.start_timeout = start_timeout
        self.max_line_bytes = max_line_bytes
        self.env = env
        self.cwd = os.fspath(cwd) if cwd is not None else None
        self.starts = 0
        self._lock = threading.Lock()
        self._connection: _Connection | None = None
        self._capabilities: Capabilities | None = None
        self._next_session = 0

    def __repr__(self) -> str:
        return f"CommandAdapter({shlex.join(self.argv)!r})"

    def _live(self) -> _Connection:
        """The running connection, starting a process (and its handshake) when there is none."""
        with self._lock:
            connection = self._connection
            if connection is not None and connection.usable:
                return connection
            if connection is not None:
                connection.shutdown(0)  # dead already: reap it and its readers
                self._connection = None
            connection = _Connection(self.argv, env=self.env, cwd=self.cwd,
                                     max_line_bytes=self.max_line_bytes)
            self.starts += 1
            try:
                capabilities = connection.start(self.start_timeout)
            except AdapterFault:
                connection.shutdown(0)
                raise
            if self._capabilities is None:
                self._capabilities = capabilities
            elif capabilities != self._capabilities:
                connection.shutdown(0)
                raise AdapterFault(
                    "after a restart the adapter declared other capabilities than at its first "
                    "start; an adapter must declare the same ones every time",
                    f"first: {self._capabilities}\nnow: {capabilities}")
            self._connection = connection
            return connection

    def capabilities(self) -> Capabilities:
        self._live()
        assert self._capabilities is not None
        return self._capabilities

    def open_session(self, slots: Sequence[SlotSpec]) -> CommandSession:
        connection = self._live()
        with self._lock:
            self._next_session += 1
            session = self._next_session
        events = connection.register_session(session)
        what = f"open of session {session}"
        message = {"type": "open", "session": session,
                   "slots": [{"name": s.name, "machine": s.machine, "config": dict(s.config)}
                             for s in slots]}
        reply = connection.call(message, self.request_timeout, what, session)
        _check_status(connection, reply, what)
        return CommandSession(connection, session, self.request_timeout, events)

    def shutdown(self) -> None:
        """Send shutdown, wait briefly for the program to exit, then kill it."""
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.shutdown(EXIT_GRACE)
