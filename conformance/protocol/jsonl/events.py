"""Adapter events: the `event` lines an adapter writes, kept per open session and for a fault's evidence.

Protocol version 1 does not judge events (the runner observes notifications through the
`wait_notification` request); they are kept, bounded, for people and for later checkers.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from callgate.conformance.protocol.jsonl.messages import ProtocolError
from callgate.model.transitions import Value

# Events kept per session: the newest win; older ones are dropped. The last few of any session
# go into the evidence of a fault.
EVENTS_KEPT = 256
EVENTS_IN_EVIDENCE = 5


@dataclass(frozen=True)
class AdapterEvent:
    """An `event` line: something the adapter reported that no request asked about."""

    session: int
    kind: str
    slot: str = ""
    data: Mapping[str, Value] = field(default_factory=dict)
    message: str = ""
    received: float = 0.0  # time.monotonic() when it was read


class SessionEvents:
    """The events of each open session (the last EVENTS_KEPT each), and the newest of all. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[int, deque[AdapterEvent]] = {}
        self._opened: set[int] = set()
        self._recent: deque[AdapterEvent] = deque(maxlen=EVENTS_IN_EVIDENCE)

    def register(self, session: int) -> deque[AdapterEvent]:
        """Start keeping the events of `session`; the buffer they go to."""
        events: deque[AdapterEvent] = deque(maxlen=EVENTS_KEPT)
        with self._lock:
            self._sessions[session] = events
            self._opened.add(session)
        return events

    def forget(self, session: int) -> None:
        """Stop keeping the events of a closed session; its late events are dropped."""
        with self._lock:
            self._sessions.pop(session, None)

    def add(self, message: Mapping[str, Any]) -> None:
        """Keep one (schema-checked) event message; ProtocolError if its session was never opened."""
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
        self._recent.append(event)

    def describe_recent(self) -> str:
        """The newest events of any session, for the evidence of a fault; "" if there were none."""
        events = list(self._recent)
        if not events:
            return ""
        return "last events: " + "; ".join(
            f"session {e.session} {e.kind}{' ' + e.slot if e.slot else ''}"
            f"{' ' + json.dumps(dict(e.data)) if e.data else ''}"
            f"{': ' + e.message[:200] if e.message else ''}" for e in events)
