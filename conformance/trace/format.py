"""The trace format: one JSON object per line (docs/traces.md, schemas/trace.schema.json).

`load` reads trace files and checks every line against the schema with `jsonschema`; a line that
is not JSON or breaks the schema raises `TraceInvalid` naming the file, the line and the problem.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

FORMAT = "callgate-trace"
VERSION = 1
SCHEMA_RESOURCE = "schemas/trace.schema.json"

# The object kinds a recorder can name, and the model's machine for each.
KIND_MACHINES = {
    "call_object": "com_call",
    "rpc_async_state": "rpc_call",
    "event": "event",
    "container": "container",
    "thread": "thread_cancel",
    "wait": "cowait",
}


class TraceInvalid(ValueError):
    """A trace line that is not JSON or breaks the trace schema."""


@dataclass(frozen=True)
class Call:
    """One recorded API call (a "call" line)."""

    line: str  # "FILE:N", for messages
    seq: int
    pid: int
    tid: int | str
    side: str
    api: str
    args: dict[str, Any]
    code: int | None
    outputs: dict[str, Any]
    invoked: float
    responded: float | None
    object: str = ""
    kind: str = ""
    call_id: str = ""
    ids: dict[str, str] = field(default_factory=dict)
    # What the recorder could not see: "code", "args.NAME", "outputs.NAME" (a relay log shows no
    # [out] value and no argument an API takes through a structure).
    unknown: frozenset[str] = frozenset()

    @property
    def thread(self) -> str:
        return f"{self.pid}:{self.tid}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": "call", "seq": self.seq, "pid": self.pid, "tid": self.tid,
            "side": self.side}
        if self.object:
            data["object"] = self.object
        if self.kind:
            data["kind"] = self.kind
        if self.ids:
            data["ids"] = dict(self.ids)
        if self.call_id:
            data["call_id"] = self.call_id
        data |= {"api": self.api, "args": dict(self.args), "code": self.code,
                 "outputs": dict(self.outputs)}
        if self.unknown:
            data["unknown"] = sorted(self.unknown)
        data |= {"invoked": self.invoked, "responded": self.responded}
        return data


@dataclass(frozen=True)
class ObjectInfo:
    """An "object" line: what the recorder knows of an object (its machine, configuration,
    and the concrete numbers that stood for the model's echoed values)."""

    object: str
    machine: str
    config: dict[str, Any] = field(default_factory=dict)
    values: dict[str, dict[str, int]] | None = None  # None: the line gives none
    case: str = ""
    server_unseen: bool = False  # the server's actions on it were not recorded


@dataclass
class Trace:
    """The lines of one or more trace files."""

    pins: dict[str, str] = field(default_factory=dict)
    objects: dict[str, ObjectInfo] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def schema() -> dict[str, Any]:
    text = resources.files("callgate.conformance.trace").joinpath(SCHEMA_RESOURCE)
    loaded: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return loaded


@cache
def _validator() -> Draft202012Validator:
    document = schema()
    Draft202012Validator.check_schema(document)
    return Draft202012Validator(document)


def problems(line: Any) -> list[str]:
    """Where one parsed line breaks the schema ('path: message'; empty when it is valid)."""
    found = []
    for error in sorted(_validator().iter_errors(line), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(line)"
        # oneOf hides the useful detail: name the branch the line's "type" selects.
        if error.validator == "oneOf" and isinstance(line, dict):
            branch = {"header": 0, "object": 1, "call": 2}.get(str(line.get("type")))
            if branch is not None:
                sub = sorted(_validator().evolve(schema=schema()["$defs"][
                    ("header", "object", "call")[branch]]).iter_errors(line),
                    key=lambda e: list(e.absolute_path))
                return [f"{'/'.join(str(p) for p in e.absolute_path) or '(line)'}: {e.message}"
                        for e in sub] or [f"{where}: {error.message}"]
            return [f"{where}: \"type\" must be one of header, object, call"]
        found.append(f"{where}: {error.message}")
    return found


def load(paths: Iterable[Path]) -> Trace:
    """Read trace files into one `Trace`; raise `TraceInvalid` at the first bad line."""
    trace = Trace()
    for path in paths:
        trace.sources.append(str(path))
        with path.open(encoding="utf-8") as handle:
            for n, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                where = f"{path}:{n}"
                try:
                    data = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise TraceInvalid(f"{where}: not JSON: {exc}") from exc
                found = problems(data)
                if found:
                    raise TraceInvalid(f"{where}: breaks the trace schema: " + "; ".join(found))
                _add(trace, data, where)
    return trace


def _add(trace: Trace, data: Mapping[str, Any], where: str) -> None:
    kind = data["type"]
    if kind == "header":
        trace.pins.update(data.get("pins", {}))
    elif kind == "object":
        if data["object"] in trace.objects:
            raise TraceInvalid(f"{where}: object {data['object']!r} is declared twice")
        trace.objects[data["object"]] = ObjectInfo(
            data["object"], data["machine"], dict(data.get("config", {})),
            {k: dict(v) for k, v in data["values"].items()} if "values" in data else None,
            data.get("case", ""), bool(data.get("server_unseen", False)))
    else:
        trace.calls.append(Call(
            line=where, seq=data["seq"], pid=data["pid"], tid=data["tid"], side=data["side"],
            api=data["api"], args=dict(data["args"]), code=data["code"],
            outputs=dict(data.get("outputs", {})), invoked=float(data["invoked"]),
            responded=None if data["responded"] is None else float(data["responded"]),
            object=data.get("object", ""), kind=data.get("kind", ""),
            call_id=data.get("call_id", ""), ids=dict(data.get("ids", {})),
            unknown=frozenset(data.get("unknown", ()))))


def header(source: str, pins: Mapping[str, str]) -> dict[str, Any]:
    return {"type": "header", "format": FORMAT, "version": VERSION, "source": source,
            "pins": dict(pins), "clock": "seconds since the epoch"}
