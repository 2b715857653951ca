"""A misbehaving adapter program for the transport's fault-injection tests.

    python tests/fault_adapter.py MODE [--at N] [--once FILE] [--fake-fault NAME]
                                       [--orphan FILE [--orphan-how HOW]]

It serves `tests.fakes.EventAdapter` over the JSON-lines protocol (through
`callgate.conformance.protocol.jsonl_server.serve`) correctly, except that at the N-th response to a `request`
(opens and closes are not counted) it breaks the protocol the way MODE says. With `--once FILE`
it misbehaves only if FILE does not exist yet, and creates it first: the adapter that the harness
restarts after the fault then behaves, so a test can check that the run goes on.

Modes that break the protocol (each must cost one case, as an `error` with evidence):
  hang               never answer request N
  crash              write a last word to stderr and exit with code 3 (os._exit: no clean-up)
  exit               exit with code 0 instead of answering, as if done
  garbage            write a line that is not JSON instead of the response
  huge_line          write one line of 100 MB (in 1 MB chunks) instead of the response
  wrong_id           answer with an id nobody asked for
  code_out_of_range  answer with code 2**32
  code_negative      answer with a signed HRESULT (-2147417835 for 0x80010115)
  code_string        answer with the code's name instead of its number
  bad_handshake      declare protocol version 99 (at start, not at request N)
  no_handshake       write to stderr and exit with code 2 before the handshake
Modes that stay within the protocol (every case must pass):
  none               behave
  stderr_flood       write 20 MB to stderr before response N, then behave
  events             write an `event` line before every response
  latch              serve `LatchAdapter`: an event Wait(infinite) really blocks until Signal,
                     so a test can hold one request in flight while others are answered
`--fake-fault NAME` passes NAME to EventAdapter (its deliberate deviations, tests/fakes.py);
`--with-events` writes an `event` line before every response in any mode.

`--orphan FILE` (any mode) leaves a process behind that escapes the adapter's process group: at
start, before the handshake, a child of the adapter leaves the group with `setsid()` and becomes
`sleep 300` (argv[0] `callgate-orphan`), holding the adapter's stdout and stderr open; its pid is
written to FILE (with `--once`, only while the `--once` file does not exist). `--orphan-how` says how:
  setsid       the adapter's own child calls setsid() and sleeps (orphaned when the adapter exits)
  double_fork  that child forks again and exits, so the sleeper is orphaned at once and has no
               link left to the adapter (no parent, group or session in common)
  ignore_term  as double_fork, and the sleeper ignores SIGTERM (only SIGKILL ends it)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callgate.conformance.protocol.adapter import Observation, Request, SlotSpec
from callgate.conformance.protocol.jsonl_server import serve
from callgate.model import codes
from tests.fakes import EventAdapter, EventSession

BREAKING = ("hang", "crash", "exit", "garbage", "huge_line", "wrong_id", "code_out_of_range",
            "code_negative", "code_string", "bad_handshake", "no_handshake")
BEHAVING = ("none", "stderr_flood", "events", "latch")
HUGE_LINE_BYTES = 100 * (1 << 20)
FLOOD_BYTES = 20 * (1 << 20)


class LatchSession(EventSession):
    """EventSession whose Wait(infinite) blocks until another request signals the event."""

    def __init__(self, fault: str) -> None:
        super().__init__(fault)
        self.latches: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def _latch(self, slot: str) -> threading.Event:
        with self.lock:
            return self.latches.setdefault(slot, threading.Event())

    def perform(self, request: Request) -> Observation:
        if request.op == "Wait" and request.args.get("timeout") == "infinite":
            self._latch(request.slot).wait()
            return Observation(codes.S_OK.value)
        if request.op == "Signal":
            self._latch(request.slot).set()
        return super().perform(request)


class LatchAdapter(EventAdapter):
    def open_session(self, slots: Sequence[SlotSpec]) -> LatchSession:
        super().open_session(slots)
        return LatchSession(self.fault)


def first_time(once: Path | None) -> bool:
    """True unless `once` names a file that exists; creates it, so later runs behave."""
    if once is None:
        return True
    try:
        once.open("x").close()
    except FileExistsError:
        return False
    return True


class Listening:
    """stdin passed through unchanged, remembering the type and session of each message id."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.rest = b""
        self.seen: dict[int, tuple[str, int]] = {}

    def read1(self, size: int) -> bytes:
        data = self.raw.read1(size)  # type: ignore[attr-defined]
        assert isinstance(data, bytes)
        *lines, self.rest = (self.rest + data).split(b"\n")
        for line in lines:
            try:
                message = json.loads(line)
                self.seen[message["id"]] = (message["type"], message["session"])
            except (ValueError, KeyError, TypeError):
                pass  # hello, shutdown: no id
        return data


class Misbehaving:
    """stdout that breaks the protocol at the N-th response to a request."""

    def __init__(self, out: BinaryIO, stdin: Listening, mode: str, at: int, once: Path | None,
                 events: bool = False) -> None:
        self.out = out
        self.events = events or mode == "events"
        self.stdin = stdin
        self.mode = mode
        self.at = at
        self.once = once
        self.requests = 0

    def armed(self) -> bool:
        return first_time(self.once)

    def write(self, data: bytes) -> int:
        message: dict[str, Any] = json.loads(data)
        if message["type"] == "handshake" and self.mode == "bad_handshake" and self.armed():
            message["protocol"] = 99
            return self._send(message)
        if message["type"] != "response":
            return self._send(message)
        kind, session = self.stdin.seen.get(message["id"], ("", 0))
        if self.events and session:
            self._send({"type": "event", "session": session, "kind": "log",
                        "message": f"about to answer {message['id']}"})
        if kind != "request":
            return self._send(message)
        self.requests += 1
        if self.requests == self.at and self.mode in (*BREAKING, "stderr_flood") and self.armed():
            return self._misbehave(message)
        return self._send(message)

    def _misbehave(self, message: dict[str, Any]) -> int:
        mode, rid = self.mode, message["id"]
        if mode == "hang":
            time.sleep(3600)
        if mode == "crash":
            sys.stderr.write(f"fault_adapter: simulated crash at request {rid}\n")
            sys.stderr.flush()
            os._exit(3)
        if mode == "exit":
            os._exit(0)
        if mode == "garbage":
            return self._raw(b"this is not json\n")
        if mode == "huge_line":
            self._raw(b'{"type":"response","id":%d,"status":"ok","pad":"' % rid)
            chunk = b"x" * (1 << 20)
            for _ in range(HUGE_LINE_BYTES // len(chunk)):
                self._raw(chunk)
            return self._raw(b'"}\n')
        if mode == "stderr_flood":
            block = b"fault_adapter: chatter\n" * 4096
            for _ in range(FLOOD_BYTES // len(block)):
                sys.stderr.buffer.write(block)
            sys.stderr.flush()
            return self._send(message)
        if mode == "wrong_id":
            message["id"] = rid + 1000
        elif mode == "code_out_of_range":
            message["code"] = 1 << 32
        elif mode == "code_negative":
            message["code"] = -2147417835
        elif mode == "code_string":
            message["code"] = "S_OK"
        return self._send(message)

    def _send(self, message: dict[str, Any]) -> int:
        return self._raw(json.dumps(message).encode() + b"\n")

    def _raw(self, data: bytes) -> int:
        self.out.write(data)
        self.out.flush()
        return len(data)

    def flush(self) -> None:
        self.out.flush()


ORPHAN_HOWS = ("setsid", "double_fork", "ignore_term")


def leave_orphan(pid_file: Path, how: str) -> None:
    """Start a `sleep 300` that escapes this process's group and session; its pid goes to
    `pid_file` (written whole, by rename, before this returns)."""
    child = os.fork()
    if child:
        if how != "setsid":
            os.waitpid(child, 0)  # the middle process exits at once
        deadline = time.monotonic() + 10
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return
    try:
        os.setsid()
        if how != "setsid" and os.fork():
            os._exit(0)  # the middle process: its child is orphaned now
        if how == "ignore_term":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stays ignored across exec
        partial = pid_file.with_name(pid_file.name + ".partial")
        partial.write_text(str(os.getpid()))
        partial.rename(pid_file)
        os.execv("/bin/sleep", ["callgate-orphan", "300"])
    finally:
        os._exit(1)  # exec failed: never return into the adapter's code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("mode", choices=BREAKING + BEHAVING)
    parser.add_argument("--at", type=int, default=1, help="which request's response (from 1)")
    parser.add_argument("--once", type=Path, help="misbehave only if this file does not exist")
    parser.add_argument("--fake-fault", default="", help="EventAdapter's deliberate deviation")
    parser.add_argument("--with-events", action="store_true",
                        help="write an event line before every response, whatever the mode")
    parser.add_argument("--orphan", type=Path,
                        help="leave a process behind that escapes the group; its pid goes here")
    parser.add_argument("--orphan-how", choices=ORPHAN_HOWS, default="double_fork")
    args = parser.parse_args(argv)
    if args.orphan is not None and (args.once is None or not args.once.exists()):
        leave_orphan(args.orphan, args.orphan_how)
    if args.mode == "no_handshake" and first_time(args.once):
        sys.stderr.write("fault_adapter: cannot start (simulated)\n")
        return 2
    adapter = LatchAdapter(args.fake_fault) if args.mode == "latch" else EventAdapter(args.fake_fault)
    stdin = Listening(sys.stdin.buffer)
    stdout = Misbehaving(sys.stdout.buffer, stdin, args.mode, args.at, args.once,
                         args.with_events)
    return serve(adapter, stdin, stdout)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
