#!/usr/bin/env python3
"""A minimal out-of-process callgate adapter in Python: system events over JSON lines.

It implements the `event` machine (CLSID_ManualResetEvent and CLSID_StdEvent: ISynchronize's
Signal, Reset and Wait, and ISynchronizeHandle::GetHandle) with the standard library only, as a
vendor would wrap their own implementation: replace `Event` with calls into yours. It speaks the
protocol of docs/adapter-protocol.md and imports nothing from callgate.

    callgate run --adapter-cmd "python3 examples/python-adapter/event_adapter.py" --out out

Each request runs on a thread of its own ("concurrent": true), so a Wait may block while a later
request signals the event, and callgate's parallel cases run against it.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

S_OK = 0
RPC_S_CALLPENDING = 0x80010115  # what ISynchronize::Wait returns when its timeout expires
INFINITE = 0xFFFFFFFF

write_lock = threading.Lock()


def send(message: dict[str, Any]) -> None:
    """One whole line per message, flushed at once; several threads may write."""
    line = json.dumps(message, separators=(",", ":"))
    with write_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Event:
    """The implementation under test: a manual-reset event, or an auto-reset one (StdEvent)."""

    def __init__(self, auto_reset: bool) -> None:
        self.auto_reset = auto_reset
        self.signaled = False  # a new event is not signalled
        self.changed = threading.Condition()

    def signal(self) -> int:
        with self.changed:
            self.signaled = True
            self.changed.notify_all()
        return S_OK

    def reset(self) -> int:
        with self.changed:
            self.signaled = False
        return S_OK

    def wait(self, milliseconds: int) -> int:
        timeout = None if milliseconds == INFINITE else milliseconds / 1000.0
        with self.changed:
            if not self.changed.wait_for(lambda: self.signaled, timeout):
                return RPC_S_CALLPENDING
            if self.auto_reset:
                self.signaled = False  # an auto-reset event lets one waiter through
            return S_OK


sessions: dict[int, dict[str, Event | None]] = {}


def perform(request: dict[str, Any]) -> dict[str, Any]:
    """Carry out one request and return its response (without the id)."""
    slots = sessions[request["session"]]
    op, args = request["op"], request["args"]
    if op == "CoCreateInstance":
        slots[request["slot"]] = Event(auto_reset=args["clsid"] == "StdEvent")
        return {"status": "ok", "code": S_OK}
    event = slots.get(request["slot"])
    if event is None:
        return {"status": "not_applicable", "message": "no event was created in this slot"}
    if op == "Signal":
        return {"status": "ok", "code": event.signal()}
    if op == "Reset":
        return {"status": "ok", "code": event.reset()}
    if op == "Wait":
        milliseconds = {"zero": 0, "infinite": INFINITE}.get(args["timeout"], request["wait_ms"])
        return {"status": "ok", "code": event.wait(milliseconds)}
    if op == "GetHandle":
        return {"status": "ok", "code": S_OK, "outputs": {"nonnull": True}}
    return {"status": "not_applicable", "message": f"{op} is not implemented by this example"}


def answer(message: dict[str, Any]) -> None:
    try:
        send({"type": "response", "id": message["id"], **perform(message)})
    except Exception as exc:  # an adapter bug: report it, keep serving
        send({"type": "response", "id": message["id"], "status": "error", "message": repr(exc)})


def main() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        kind = message["type"]
        if kind == "hello":
            send({"type": "handshake", "protocol": 1, "implementation": "example events (Python)",
                  "version": "1.0", "concurrent": True,
                  "features": ["sync.event", "sync.manual_reset_event", "sync.std_event",
                               "sync.handle"],
                  "pins": {"event_wait_timeout_code": "RPC_S_CALLPENDING"}})
        elif kind == "open":
            sessions[message["session"]] = {slot["name"]: None for slot in message["slots"]}
            send({"type": "response", "id": message["id"], "status": "ok"})
        elif kind == "request":
            threading.Thread(target=answer, args=(message,), daemon=True).start()
        elif kind == "close":
            for event in (sessions.pop(message["session"], None) or {}).values():
                if event is not None:
                    event.signal()  # release any waiter of the closed session
            send({"type": "response", "id": message["id"], "status": "ok"})
        elif kind == "shutdown":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
