"""One conversation with one adapter process: its requests and their deadlines, its faults and evidence.

The connection writes the harness's lines, hands each line the adapter writes to its `Router`
(the handshake first, a response to the request whose id it echoes, an event to its session),
and waits for each answer with a deadline: a program that hangs, exits, or writes a line that
breaks the protocol fails the connection.

A connection is used until its first fault; then it is dead for good: the process is killed,
every waiter gets the same `AdapterFault` with its evidence (the offending line cut to 2 KB, the
exit status, the processes it left behind that were ended, the last events, the last 4 KB of
stderr), and `CommandAdapter` starts another.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from callgate.conformance.protocol.adapter import AdapterFault, Capabilities
from callgate.conformance.protocol.jsonl import handshake
from callgate.conformance.protocol.jsonl.events import SessionEvents
from callgate.conformance.protocol.jsonl.framing import Overlong, describe_line, encode
from callgate.conformance.protocol.jsonl.messages import ProtocolError
from callgate.conformance.protocol.jsonl.process import (
    EXIT_GRACE,
    STDERR_GRACE,
    AdapterProcess,
    describe_exit,
)
from callgate.conformance.protocol.jsonl.reaping import SharedProcess
from callgate.conformance.protocol.jsonl.routing import Pending, Router

# How long a second fault, or a shutdown, waits for the first fault's evidence to be recorded.
FAULT_GRACE = EXIT_GRACE + STDERR_GRACE + 1.0


class Connection:
    """One adapter process and the protocol spoken with it, from hello to its end."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None, cwd: str | None,
                 max_line_bytes: int, shared: Sequence[SharedProcess] = ()) -> None:
        self.process = AdapterProcess(argv, env=env, cwd=cwd, shared=shared)
        self.label = self.process.label
        self.max_line_bytes = max_line_bytes
        self._lock = threading.Lock()
        self._router = Router()
        self.events: SessionEvents = self._router.events  # each open session's event lines
        self._failing = False
        self._failed = threading.Event()
        self._closing = False
        self.fault: AdapterFault | None = None
        self.process.start_reading(max_line_bytes, self._receive, self._ended)

    @property
    def usable(self) -> bool:
        return not self._failing and not self._closing

    # --- reading ----------------------------------------------------------------------------

    def _receive(self, item: bytes | Overlong) -> bool:
        """Take one line of the adapter's stdout; False to stop reading."""
        if self._failing or self._closing:
            return False  # what follows a fault or a shutdown is not judged
        if isinstance(item, Overlong):
            self.fail(f"the adapter wrote a line longer than {self.max_line_bytes} bytes "
                      f"(the limit, max_line_bytes); it was abandoned unread",
                      line=item.prefix, size=f"more than {item.seen} bytes")
            return False
        if not item.strip():
            return True  # blank lines carry nothing
        try:
            self._router.route(item)
        except ProtocolError as exc:
            self.fail(f"protocol violation: {exc}", line=item)
            return False
        return True

    def _ended(self, error: OSError | None) -> None:
        if self._closing:
            return
        if error is None:
            self.fail("the adapter closed its stdout: it exited or crashed", exited=True)
        else:
            self.fail(f"reading the adapter's stdout failed: {error}")

    # --- writing and waiting ----------------------------------------------------------------

    def _write(self, message: Mapping[str, Any]) -> None:
        try:
            self.process.write(encode(message))
        except (OSError, ValueError) as exc:
            raise self.fail(f"the adapter no longer reads its stdin ({exc})", exited=True) from exc

    def start(self, timeout: float) -> Capabilities:
        """Say hello and read the handshake: the adapter's capabilities."""
        self._write(handshake.hello())
        self._await(self._router.handshake, timeout,
                    f"no handshake within {timeout:g} s of starting the adapter; it must answer "
                    f"the hello line with its handshake at once")
        if self._router.handshake.fault is not None:
            raise self._router.handshake.fault
        message = self._router.handshake.reply
        mismatch = handshake.version_mismatch(message)
        if mismatch:
            raise self.fail(mismatch, line=encode(message))
        return handshake.declared(message)

    def has_pending(self, session: int) -> bool:
        return self._router.has_pending(session)

    def call(self, message: Mapping[str, Any], timeout: float, what: str,
             session: int | None) -> dict[str, Any]:
        """Send one message that expects a response, and wait for that response."""
        with self._lock:
            if self._failing or self._closing:
                raise self._dead(what)
            request_id, pending = self._router.expect(session, what)
        self._write({"type": message["type"], "id": request_id,
                     **{k: v for k, v in message.items() if k != "type"}})
        self._await(pending, timeout, f"no response to {what} (request id {request_id}) within "
                                      f"{timeout:.3g} s: the adapter hangs; callgate killed it")
        if pending.fault is not None:
            raise pending.fault
        return pending.reply

    def _await(self, pending: Pending, timeout: float, hang_message: str) -> None:
        """Wait for `pending`; fail the connection with `hang_message` after `timeout` seconds,
        or at once if the process is gone."""
        outcome = self.process.wait_for(pending.done, timeout)
        if outcome == "exited":
            raise self.fail("the adapter exited or crashed without answering", exited=True)
        if outcome == "hung":
            raise self.fail(hang_message)

    def _dead(self, what: str) -> AdapterFault:
        if self._failing:
            self._failed.wait(FAULT_GRACE)
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
            self._failed.wait(FAULT_GRACE)
            return self.fault or AdapterFault(message)
        code = self.process.exit_code(exited=exited)
        status = describe_exit(code)
        if code is None:
            status += " when the fault was found; callgate killed it"
        # The whole process group goes, also when the adapter exited by itself, and whatever it
        # left behind outside the group: it would otherwise live on and hold the pipes open.
        self.process.kill()
        # Once the process is gone its stderr ends: let the reader take the last bytes (a
        # crashing program's last words) before they go into the evidence.
        self.process.join_stderr()
        fault = AdapterFault(message, self.evidence(status, line, size))
        with self._lock:
            self.fault = fault
            waiting = [*self._router.take_pending(), self._router.handshake]
        self._failed.set()
        for pending in waiting:
            if not pending.done.is_set():
                pending.fail(fault)
        return fault

    def evidence(self, status: str, line: bytes | None = None, size: str = "") -> str:
        parts = [f"adapter command: {self.label}", f"process: {status}"]
        if line is not None:
            parts.append(describe_line(line, size))
        orphans = self.process.orphans_evidence()
        if orphans:
            parts.append(orphans)
        events = self.events.describe_recent()
        if events:
            parts.append(events)
        parts.append(self.process.stderr_evidence())
        return "\n".join(parts)

    def shutdown(self, grace: float) -> None:
        """Ask the adapter to exit, give it `grace` seconds, then kill it; wake any waiter."""
        if self._failing:
            # Let a fault being recorded finish first, so its evidence has the true exit status.
            self._failed.wait(FAULT_GRACE)
        with self._lock:
            self._closing = True
            waiting = self._router.take_pending()
        # An adapter that failed is not asked: what it reads no longer matters.
        self.process.close_stdin(None if self._failing else encode({"type": "shutdown"}))
        self.process.end(grace)
        for pending in waiting:
            pending.fail(AdapterFault(f"{pending.what}: the harness shut the adapter down"))
