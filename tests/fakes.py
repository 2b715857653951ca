"""Small adapters for the harness's own tests: a correct event implementation and faulty twins."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from callgate.conformance.protocol.adapter import Capabilities, NotApplicable, Observation, Request, SlotSpec
from callgate.model import codes

PINS = {"event_wait_timeout_code": "RPC_S_CALLPENDING", "new_event_state": "nonsignaled"}


@dataclass
class _Event:
    kind: str = ""
    signaled: bool = False


@dataclass
class EventSession:
    """ISynchronize over plain fields; `fault` names a deliberate deviation."""

    fault: str
    events: dict[str, _Event] = field(default_factory=dict)

    def perform(self, request: Request) -> Observation:
        ev = self.events.setdefault(request.slot, _Event())
        op = request.op
        if op == "CoCreateInstance":
            if self.fault == "no_std_event" and request.args["clsid"] == "StdEvent":
                return Observation(codes.REGDB_E_CLASSNOTREG.value)  # as Wine 8.0 answers
            ev.kind = str(request.args["clsid"])
            ev.signaled = self.fault == "created_signaled"
            return Observation(codes.S_OK.value)
        if op == "Signal":
            ev.signaled = True
            return Observation(codes.S_OK.value)
        if op == "Reset":
            ev.signaled = False
            return Observation(codes.S_OK.value)
        if op == "Wait":
            if self.fault == "hang_on_wait":
                time.sleep(5)
            if self.fault == "crash_on_wait":
                raise RuntimeError("boom")
            if ev.signaled:
                if ev.kind == "StdEvent" and self.fault != "std_event_keeps_signal":
                    ev.signaled = False
                return Observation(codes.S_OK.value)
            return Observation(codes.RPC_S_CALLPENDING.value)
        if op == "GetHandle":
            return Observation(codes.S_OK.value, {"nonnull": True})
        raise NotApplicable(op)

    def close(self) -> None:
        pass


class EventAdapter:
    """An in-process adapter for the `event` machine only."""

    def __init__(self, fault: str = "") -> None:
        self.fault = fault
        self.sessions = 0
        self.lock = threading.Lock()

    def capabilities(self) -> Capabilities:
        return Capabilities("fake-events", "1", frozenset({
            "sync.event", "sync.manual_reset_event", "sync.std_event", "sync.handle"}), PINS)

    def open_session(self, slots: Sequence[SlotSpec]) -> EventSession:
        with self.lock:
            self.sessions += 1
        return EventSession(self.fault)

    def shutdown(self) -> None:
        pass


def std_event_keeps_signal() -> EventAdapter:
    """A deliberately failing adapter (for `callgate run --adapter tests.fakes:...`)."""
    return EventAdapter("std_event_keeps_signal")


def created_signaled() -> EventAdapter:
    """A deliberately failing adapter whose new events start signalled against its own pin."""
    return EventAdapter("created_signaled")
