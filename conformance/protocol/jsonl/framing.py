"""Line framing: a message as one line, lines read in bounded memory, an offending line as evidence.

Framing knows nothing of what a line says (that is `messages`); it is shared by both sides of
the JSON-lines protocol: the harness reading an adapter's stdout, and `jsonl_server` reading the
harness's lines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_LINE_BYTES = 1 << 20
CHUNK_BYTES = 1 << 16
# How much of an offending line goes into the evidence of a fault.
EVIDENCE_LINE_BYTES = 2048


def encode(message: Mapping[str, Any]) -> bytes:
    """One message as one line: compact UTF-8 JSON and a newline."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


@dataclass(frozen=True)
class Overlong:
    """A line longer than the limit: its first bytes, and how many bytes it had when abandoned."""

    prefix: bytes
    seen: int


def read_lines(read: Callable[[int], bytes], max_line_bytes: int) -> Iterator[bytes | Overlong]:
    """Lines (without "\\n") from a byte stream, in bounded memory.

    A line that passes `max_line_bytes` is yielded as an `Overlong` at once, before its end
    arrives; if the consumer goes on reading, the rest of that line is skipped unbuffered. So the
    buffer never holds more than the limit plus one chunk. A last line without "\\n" is yielded
    at end of stream.
    """
    buffer = bytearray()
    skipping = False
    while True:
        chunk = read(CHUNK_BYTES)
        if not chunk:
            if buffer and not skipping:
                yield bytes(buffer)
            return
        view = memoryview(chunk)
        start = 0
        while start < len(chunk):
            newline = chunk.find(b"\n", start)
            end = len(chunk) if newline < 0 else newline
            if not skipping:
                buffer += view[start:end]
                if len(buffer) > max_line_bytes:
                    seen = len(buffer)
                    prefix = bytes(buffer[:EVIDENCE_LINE_BYTES])
                    buffer.clear()
                    skipping = True
                    yield Overlong(prefix, seen)
            if newline < 0:
                break
            if not skipping:
                yield bytes(buffer)
            buffer.clear()
            skipping = False
            start = newline + 1


def describe_line(line: bytes, size: str = "") -> str:
    """An offending line for the evidence: its size and its first EVIDENCE_LINE_BYTES bytes."""
    shown = line[:EVIDENCE_LINE_BYTES].decode("utf-8", "backslashreplace")
    size = size or f"{len(line)} bytes"
    cut = f", first {EVIDENCE_LINE_BYTES} shown" if len(line) > EVIDENCE_LINE_BYTES or "more" in size \
        else ""
    return f"offending line ({size}{cut}): {shown}"
