"""A session over JSON lines: open, request and close of one case's objects, their timeouts and events.

Every open, request and close has its own deadline (`request_timeout`, plus the request's
`wait_ms`), enforced by the connection and not only by the runner's Executor, so a hung program is
killed instead of leaking. A response with status `not_applicable` becomes `NotApplicable`; one
with status `error` an `AdapterFault` with the adapter's evidence and the tail of its stderr.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from callgate.conformance.protocol.adapter import (
    AdapterFault,
    NotApplicable,
    Observation,
    Request,
    SlotSpec,
)
from callgate.conformance.protocol.jsonl.connection import Connection
from callgate.conformance.protocol.jsonl.events import AdapterEvent
from callgate.conformance.protocol.jsonl.framing import encode
from callgate.model.transitions import Value


def _values(data: Mapping[str, Any]) -> dict[str, Value]:
    return {str(k): v for k, v in data.items()}


def check_status(connection: Connection, reply: Mapping[str, Any], what: str) -> None:
    """Raise what a response's status says: NotApplicable, or AdapterFault for `error`."""
    status = reply["status"]
    if status == "not_applicable":
        raise NotApplicable(reply["message"])
    if status == "error":
        evidence = reply.get("evidence", "")
        tail = connection.process.stderr.text()
        if tail:
            evidence = f"{evidence}\nstderr (last bytes):\n{tail}".lstrip("\n")
        raise AdapterFault(f"the adapter reported an error on {what}: {reply['message']}", evidence)


class CommandSession:
    """One case's objects inside the adapter process. Thread-safe: requests may overlap."""

    def __init__(self, connection: Connection, session: int, request_timeout: float,
                 events: deque[AdapterEvent]) -> None:
        self.connection = connection
        self.session = session
        self.request_timeout = request_timeout
        self._events = events
        self.closed = False

    @classmethod
    def open(cls, connection: Connection, session: int, slots: Sequence[SlotSpec],
             request_timeout: float) -> CommandSession:
        """Open session number `session` with these slots in the adapter process."""
        events = connection.events.register(session)
        what = f"open of session {session}"
        message = {"type": "open", "session": session,
                   "slots": [{"name": s.name, "machine": s.machine, "config": dict(s.config)}
                             for s in slots]}
        reply = connection.call(message, request_timeout, what, session)
        check_status(connection, reply, what)
        return cls(connection, session, request_timeout, events)

    def perform(self, request: Request) -> Observation:
        what = f"request {request.slot}.{request.op}"
        message = {"type": "request", "session": self.session, "slot": request.slot,
                   "op": request.op, "args": dict(request.args), "wait_ms": request.wait_ms}
        reply = self.connection.call(message, self.request_timeout + request.wait_ms / 1000,
                                     what, self.session)
        check_status(self.connection, reply, what)
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
            check_status(connection, reply, f"close of session {self.session}")
        finally:
            connection.events.forget(self.session)
