"""The JSON-lines transport, harness side: `CommandAdapter` drives an adapter program in any language.

DESIGN.md principle 8: an implementation in C, C++, Rust, C# or under Wine plugs in as a program
that reads requests on stdin and writes answers on stdout, one JSON object per line. The protocol
is written down for implementers in `docs/adapter-protocol.md`; every message has a JSON Schema
in `conformance/protocol/schemas/`, and every line the adapter writes is checked against it.

`CommandAdapter` survives the program under test: it may hang, crash, exit, print garbage or a
line of 100 MB, answer a request that was never asked, or send a code that is not a 32-bit
number. Each of these becomes an `AdapterFault` with evidence, so the case in progress gets the
verdict `error`; the process is killed, and the next `open_session` starts a fresh one.

The package, one concern a module, from the bytes up:
* `framing`: a message as one line; lines read in bounded memory; an offending line as evidence;
* `messages`: the message types of each side, their schemas, and `check_message`/`parse_line`;
* `process`: the child process in a group of its own, its stdin, its stdout and stderr readers;
* `reaper`, `reaping`: the supervisor program that starts it and ends whatever it leaves behind,
  and the harness's side of it (`Orphan`, `SharedProcess`);
* `handshake`: hello, the adapter's handshake, its protocol version and capabilities;
* `events`: the `event` lines, kept per session;
* `routing`: request ids, and handing each adapter line to whoever waits for it;
* `connection`: one process's conversation, its deadlines, its faults and their evidence;
* `session`: `CommandSession`, a case's open, requests and close;
* `command`: `CommandAdapter`, the program as an `Adapter` that restarts after a fault.

The names below are the transport's public surface; import them from here.
"""

from __future__ import annotations

from callgate.conformance.protocol.jsonl.command import PYTHON_NAMES, CommandAdapter
from callgate.conformance.protocol.jsonl.events import (
    EVENTS_IN_EVIDENCE,
    EVENTS_KEPT,
    AdapterEvent,
)
from callgate.conformance.protocol.jsonl.framing import (
    CHUNK_BYTES,
    DEFAULT_MAX_LINE_BYTES,
    EVIDENCE_LINE_BYTES,
    Overlong,
    describe_line,
    encode,
    read_lines,
)
from callgate.conformance.protocol.jsonl.messages import (
    ADAPTER_MESSAGES,
    CODE_MAX,
    HARNESS_MESSAGES,
    ID_MAX,
    INTEGER_FIELDS,
    VALID_SHAPES_KEPT,
    ProtocolError,
    check_message,
    inline_local_refs,
    parse_line,
    schemas,
    validators,
)
from callgate.conformance.protocol.jsonl.process import (
    EXIT_GRACE,
    POLL_SECONDS,
    STDERR_GRACE,
    STDERR_TAIL_BYTES,
    describe_exit,
)
from callgate.conformance.protocol.jsonl.reaping import ORPHANS_ENDED, Orphan, SharedProcess
from callgate.conformance.protocol.jsonl.session import CommandSession

__all__ = [
    "ADAPTER_MESSAGES",
    "CHUNK_BYTES",
    "CODE_MAX",
    "DEFAULT_MAX_LINE_BYTES",
    "EVENTS_IN_EVIDENCE",
    "EVENTS_KEPT",
    "EVIDENCE_LINE_BYTES",
    "EXIT_GRACE",
    "HARNESS_MESSAGES",
    "ID_MAX",
    "INTEGER_FIELDS",
    "ORPHANS_ENDED",
    "POLL_SECONDS",
    "PYTHON_NAMES",
    "STDERR_GRACE",
    "STDERR_TAIL_BYTES",
    "VALID_SHAPES_KEPT",
    "AdapterEvent",
    "CommandAdapter",
    "CommandSession",
    "Orphan",
    "Overlong",
    "ProtocolError",
    "SharedProcess",
    "check_message",
    "describe_exit",
    "describe_line",
    "encode",
    "inline_local_refs",
    "parse_line",
    "read_lines",
    "schemas",
    "validators",
]
