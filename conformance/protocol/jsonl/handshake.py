"""The handshake: hello, the adapter's answer, and the capabilities and protocol version it declares.

The harness writes `hello` first; the adapter's first line is its `handshake`, declaring its
implementation, the features it implements, its pins, whether it serves requests concurrently
and the protocol version it speaks (docs/adapter-protocol.md, section 3). `concurrent` joined
version 1 as an optional member: a handshake without it declares false, so an adapter written
before it keeps working, with its parallel cases not applicable. After a restart the handshake
must declare the same capabilities again. `jsonl_server` builds the adapter's side from the same
rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callgate.conformance.protocol.adapter import PROTOCOL_VERSION, AdapterFault, Capabilities


def hello() -> dict[str, Any]:
    """The harness's first line."""
    return {"type": "hello", "protocol": PROTOCOL_VERSION, "harness": "callgate"}


def handshake_message(capabilities: Capabilities) -> dict[str, Any]:
    """The adapter's answer to hello, declaring `capabilities` (the adapter side's first line)."""
    message: dict[str, Any] = {
        "type": "handshake", "protocol": PROTOCOL_VERSION,
        "implementation": capabilities.implementation, "version": capabilities.version,
        "features": sorted(capabilities.features), "pins": dict(capabilities.pins),
        "concurrent": capabilities.concurrent}
    if capabilities.sessions != "many":
        message["sessions"] = capabilities.sessions
    if capabilities.notes:
        message["notes"] = capabilities.notes
    if capabilities.absent:
        message["absent"] = dict(capabilities.absent)
    return message


def version_mismatch(message: Mapping[str, Any]) -> str:
    """Why a (schema-checked) handshake cannot be accepted for its protocol version; "" if it can."""
    if message["protocol"] == PROTOCOL_VERSION:
        return ""
    return (f"the adapter speaks protocol version {message['protocol']}; this harness speaks "
            f"version {PROTOCOL_VERSION}")


def declared(message: Mapping[str, Any]) -> Capabilities:
    """The capabilities a (schema-checked) handshake declares."""
    return Capabilities(message["implementation"], message["version"],
                        frozenset(message["features"]), dict(message.get("pins", {})),
                        message.get("notes", ""), message.get("concurrent", False),
                        dict(message.get("absent", {})), message.get("sessions", "many"))


def changed_on_restart(first: Capabilities, now: Capabilities) -> AdapterFault | None:
    """The fault when a restarted adapter declares other capabilities than at its first start."""
    if now == first:
        return None
    return AdapterFault("after a restart the adapter declared other capabilities than at its first "
                        "start; an adapter must declare the same ones every time",
                        f"first: {first}\nnow: {now}")
