"""Serves any in-process Adapter over the JSON-lines protocol: the adapter side of `protocol.jsonl`.

`serve(adapter, stdin, stdout)` answers the harness's hello with the adapter's capabilities, then
turns each `open`, `request` and `close` line into a call of the `Adapter`/`Session` protocol and
writes the `response` line. `python -m callgate.conformance.protocol.jsonl_server SPEC` serves the
adapter SPEC names (a built-in name or `module:attribute`, as `callgate run --adapter` takes it), e.g.
`python -m callgate.conformance.protocol.jsonl_server tests.fakes:EventAdapter`.

Each open, request and close runs on a worker thread of its own (workers are reused), because
several requests may be in flight and one may wait for the effect of another. Lines go out whole
under one lock. Serving adds no queue of its own, so the handshake's `concurrent` is the served
adapter's own declaration (the reference implementation's is true). A Python adapter's negative
HRESULT is sent in its unsigned form, as the protocol wants; the model reads codes modulo 2**32
anyway, so verdicts do not change.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO, TextIO

from callgate.conformance.protocol import loading as adapters
from callgate.conformance.protocol.adapter import (
    Adapter,
    AdapterFault,
    NotApplicable,
    Request,
    Session,
    SlotSpec,
)
from callgate.conformance.protocol.jsonl import (
    CODE_MAX,
    DEFAULT_MAX_LINE_BYTES,
    HARNESS_MESSAGES,
    Overlong,
    ProtocolError,
    check_message,
    encode,
    parse_line,
    read_lines,
)
from callgate.conformance.protocol.jsonl.handshake import handshake_message

# How long, after shutdown or end of input, requests still running may take to finish.
DRAIN_SECONDS = 5.0
MESSAGE_CHARS = 9000
EVIDENCE_CHARS = 8000


class _Workers:
    """Threads that grow with demand and are reused: a held call occupies one until it ends."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._state = threading.Condition()
        self._idle = 0
        self._busy = 0
        self._threads = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self._state:
            self._busy += 1
            if self._idle:
                self._idle -= 1
                self._jobs.put(job)
                return
            self._threads += 1
        threading.Thread(target=self._run, args=(job,), daemon=True,
                         name=f"callgate-serve-{self._threads}").start()

    def _run(self, job: Callable[[], None] | None) -> None:
        while job is not None:
            try:
                job()
            except Exception:  # a worker that died would strand the jobs queued for it
                traceback.print_exc()
            finally:
                with self._state:
                    self._busy -= 1
                    self._idle += 1
                    self._state.notify_all()
            job = self._jobs.get()

    def drain(self, timeout: float) -> bool:
        """Wait until no job runs; False if some still run after `timeout` seconds."""
        with self._state:
            return self._state.wait_for(lambda: self._busy == 0, timeout)

    def stop(self) -> None:
        with self._state:
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._jobs.put(None)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit // 2] + "\n[...]\n" + text[-limit // 2:]


class _Server:
    """The state of one served connection: open sessions and the output lock."""

    def __init__(self, adapter: Adapter, stdout: BinaryIO, log: TextIO) -> None:
        self.adapter = adapter
        self.stdout = stdout
        self.log = log
        self.sessions: dict[int, Session] = {}
        self.lock = threading.Lock()
        self.write_lock = threading.Lock()

    def write(self, message: Mapping[str, Any]) -> None:
        data = encode(message)
        with self.write_lock:
            self.stdout.write(data)
            self.stdout.flush()

    def error(self, request_id: int, message: str, evidence: str = "") -> None:
        reply: dict[str, Any] = {"type": "response", "id": request_id, "status": "error",
                                 "message": _cut(message, MESSAGE_CHARS)}
        if evidence:
            reply["evidence"] = _cut(evidence, EVIDENCE_CHARS)
        self.write(reply)

    def handshake(self) -> None:
        message = handshake_message(self.adapter.capabilities())
        self.write(check_message(message, ("handshake",)))

    def reject(self, line: bytes, problem: ProtocolError) -> None:
        """A line the harness should not have sent: answer it if it has an id, else log it."""
        request_id = None
        try:
            candidate = json.loads(line)
            if isinstance(candidate, dict) and type(candidate.get("id")) is int \
                    and candidate["id"] >= 1:
                request_id = candidate["id"]
        except ValueError:
            pass
        if request_id is None:
            print(f"callgate adapter: ignored a line from the harness: {problem}", file=self.log,
                  flush=True)
        else:
            self.error(request_id, f"the adapter could not read this message: {problem}")

    def handle(self, message: dict[str, Any]) -> None:
        """Carry out one open, request or close and write its response; never raises."""
        request_id: int = message["id"]
        try:
            reply = self._carry_out(message)
        except NotApplicable as exc:
            reply = {"status": "not_applicable", "message": _cut(str(exc) or "not applicable",
                                                                 MESSAGE_CHARS)}
        except AdapterFault as exc:
            self.error(request_id, f"adapter fault: {exc}", exc.evidence)
            return
        except Exception as exc:  # any bug of the served adapter is that request's error
            self.error(request_id, f"the adapter raised {type(exc).__name__}: {exc}",
                       "".join(traceback.format_exception(exc)))
            return
        response = {"type": "response", "id": request_id, **reply}
        try:
            check_message(response, ("response",))
        except ProtocolError as exc:
            self.error(request_id, f"the adapter's answer cannot be sent: {exc}", repr(reply))
            return
        self.write(response)

    def _carry_out(self, message: dict[str, Any]) -> dict[str, Any]:
        kind = message["type"]
        session_id: int = message["session"]
        if kind == "open":
            slots = [SlotSpec(s["name"], s["machine"], dict(s.get("config", {})))
                     for s in message["slots"]]
            with self.lock:
                if session_id in self.sessions:
                    raise AdapterFault(f"session {session_id} is already open; the harness "
                                       f"opens each session id once")
            session = self.adapter.open_session(slots)
            with self.lock:
                self.sessions[session_id] = session
            return {"status": "ok"}
        with self.lock:
            found = self.sessions.get(session_id)
            if kind == "close":
                self.sessions.pop(session_id, None)
        if found is None:
            raise AdapterFault(f"no open session {session_id}: open it first")
        if kind == "close":
            found.close()
            return {"status": "ok"}
        observation = found.perform(Request(message["slot"], message["op"],
                                              dict(message["args"]), message["wait_ms"]))
        code = observation.code
        if isinstance(code, int) and not isinstance(code, bool) and -(1 << 31) <= code < 0:
            code &= CODE_MAX  # a signed HRESULT: the wire carries it unsigned
        reply: dict[str, Any] = {"status": "ok", "code": code}
        if observation.outputs:
            reply["outputs"] = dict(observation.outputs)
        return reply

    def close_all(self) -> None:
        with self.lock:
            sessions = list(self.sessions.values())
            self.sessions.clear()
        for session in sessions:
            try:
                session.close()
            except Exception as exc:  # shutting down: report and go on with the others
                print(f"callgate adapter: closing a session failed: {exc!r}", file=self.log,
                      flush=True)


def serve(adapter: Adapter, stdin: BinaryIO, stdout: BinaryIO, *, log: TextIO | None = None,
          max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> int:
    """Serve `adapter` until shutdown or end of input; the exit code for the process."""
    log = log if log is not None else sys.stderr
    server = _Server(adapter, stdout, log)
    workers = _Workers()
    # read1 returns what is there rather than waiting for a full chunk.
    read: Callable[[int], bytes] = stdin.read1 if hasattr(stdin, "read1") else stdin.read
    greeted = False
    try:
        for item in read_lines(read, max_line_bytes):
            if isinstance(item, Overlong):
                print(f"callgate adapter: ignored a line longer than {max_line_bytes} bytes",
                      file=log, flush=True)
                continue
            if not item.strip():
                continue
            try:
                message = parse_line(item, HARNESS_MESSAGES)
            except ProtocolError as exc:
                server.reject(item, exc)
                continue
            kind = message["type"]
            if kind == "shutdown":
                break
            if kind == "hello":
                if greeted:
                    print("callgate adapter: ignored a second hello", file=log, flush=True)
                    continue
                try:
                    server.handshake()
                except Exception:
                    print("callgate adapter: cannot declare capabilities:\n"
                          + traceback.format_exc(), file=log, flush=True)
                    return 1
                greeted = True
            elif not greeted:
                server.error(message["id"], "the harness must send hello before anything else")
            else:
                workers.submit(lambda m=message: server.handle(m))  # type: ignore[misc]
    except BrokenPipeError:
        return 0  # the harness went away: nobody is left to answer
    finally:
        if not workers.drain(DRAIN_SECONDS):
            print(f"callgate adapter: requests still running {DRAIN_SECONDS} s after shutdown",
                  file=log, flush=True)
        server.close_all()
        try:
            adapter.shutdown()
        finally:
            workers.stop()
    return 0


def run(adapter: Adapter) -> int:
    """Serve `adapter` on this process's stdin and stdout.

    Anything the served code prints (a stray `print`) would corrupt the protocol, so the real
    stdout is kept for protocol lines only and file descriptor 1 is pointed at stderr.
    """
    protocol_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        return serve(adapter, sys.stdin.buffer, protocol_out)
    finally:
        with contextlib.suppress(BrokenPipeError):  # the harness went first
            protocol_out.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m callgate.conformance.protocol.jsonl_server",
        description="Serve an in-process callgate adapter over the JSON-lines protocol "
                    "(docs/adapter-protocol.md) on stdin and stdout.")
    parser.add_argument("adapter", help="a built-in adapter name or module:attribute naming an "
                                        "Adapter class or factory")
    args = parser.parse_args(argv)
    try:
        adapter = adapters.load(args.adapter)
    except adapters.AdapterNotFound as exc:
        print(f"callgate adapter: {exc}", file=sys.stderr)
        return 2
    return run(adapter)


if __name__ == "__main__":
    sys.exit(main())
