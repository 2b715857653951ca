"""Who waits for what the adapter writes: the handshake, each request by id, each session's events.

`Router.route` takes one line of the adapter's stdout and hands it on: the first line must be
the handshake; a response goes to the thread waiting for the request whose id it echoes; an
event goes to its session. A line that breaks these rules is a `ProtocolError`. Ids are given
out here, so several requests may be in flight from several threads at once.
"""

from __future__ import annotations

import threading
from typing import Any

from callgate.conformance.protocol.adapter import AdapterFault
from callgate.conformance.protocol.jsonl.events import SessionEvents
from callgate.conformance.protocol.jsonl.messages import ADAPTER_MESSAGES, ProtocolError, parse_line


class Pending:
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


class Router:
    """The waiters for one adapter's lines. Thread-safe; `route` is called by the one reader."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, Pending] = {}
        self._next_id = 0
        self._handshaken = False
        self.handshake = Pending(None, "the handshake")
        self.events = SessionEvents()

    def expect(self, session: int | None, what: str) -> tuple[int, Pending]:
        """A fresh request id, and the waiter its response will go to."""
        with self._lock:
            self._next_id += 1
            pending = Pending(session, what)
            self._pending[self._next_id] = pending
            return self._next_id, pending

    def has_pending(self, session: int) -> bool:
        with self._lock:
            return any(p.session == session for p in self._pending.values())

    def take_pending(self) -> list[Pending]:
        """Every outstanding request's waiter, which no response will reach any more."""
        with self._lock:
            waiting = list(self._pending.values())
            self._pending.clear()
        return waiting

    def route(self, line: bytes) -> None:
        """Hand one line of the adapter's stdout to whoever waits for it, or raise ProtocolError."""
        message = parse_line(line, ADAPTER_MESSAGES)
        kind = message["type"]
        if not self._handshaken:
            if kind != "handshake":
                raise ProtocolError(f"the adapter's first line must be its handshake, not a {kind} "
                                    f"message")
            self._handshaken = True
            self.handshake.resolve(message)
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
            self.events.add(message)
