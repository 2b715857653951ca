"""`callgate run --record-trace FILE`: the calls a gate run made, in the trace format.

The runner hands each step it performs to `TraceRecorder.step`, and each finished session to
`TraceRecorder.close_case`; a parallel case's run hands its branches' actions to
`TraceRecorder.branches` (each with its branch as the thread and its own times, so the calls of
different branches overlap in the trace as they did). Every slot of every session is one object
("CASE#N/SLOT"), declared with its machine, its configuration and the concrete numbers that
stood for the model's echoed values. The harness's `server_*` actions are written as the
server's calls (side "server"). Each line is checked against the trace schema before it is written.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from callgate.conformance.trace.format import KIND_MACHINES, TraceInvalid, header, problems
from callgate.model.families import MACHINES
from callgate.model.transitions import Actor, Value

MACHINE_KINDS = {machine: kind for kind, machine in KIND_MACHINES.items()}


class TraceRecorder:
    """Writes a gate run's trace to `path`, one JSON line per call, flushed as it goes."""

    def __init__(self, path: Path, pins: Mapping[str, str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] = path.open("w", encoding="utf-8")
        self._lock = threading.Lock()
        self._seq = 0
        self._sessions = 0
        self._write(header("callgate run --record-trace", pins))

    def _write(self, line: Mapping[str, Any]) -> None:
        found = problems(line)
        if found:  # a bug in callgate: its own trace breaks the schema
            raise TraceInvalid(f"callgate wrote a trace line that breaks the schema: {found}")
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()

    def session(self, case_id: str) -> str:
        """A fresh prefix for the objects of one session (a case may open several)."""
        with self._lock:
            self._sessions += 1
            return f"{case_id}#{self._sessions}"

    def step(self, prefix: str, slot: str, machine: str, op: str, args: Mapping[str, Value],
             sent: Mapping[str, int], code: int | None, outputs: Mapping[str, Any],
             invoked: float, responded: float | None, tid: int | str | None = None) -> None:
        """One performed step: the abstract arguments with the concrete values sent in place."""
        server = MACHINES[machine].operation(op).actor is Actor.SERVER
        values = dict(args)
        for param, concrete in sent.items():
            values[param] = concrete
        for param, value in args.items():  # a zero or INFINITE timeout as the number it is
            if param not in sent and value in ("zero", "infinite") and \
                    MACHINES[machine].timeout_param(op)[1] == param:
                values[param] = 0 if value == "zero" else 0xFFFFFFFF
        name = f"{prefix}/{slot}"
        with self._lock:
            self._seq += 1
            line: dict[str, Any] = {
                "type": "call", "seq": self._seq, "pid": os.getpid(),
                "tid": threading.get_ident() if tid is None else tid,
                "side": "server" if server else "client",
                "object": name}
            if machine in MACHINE_KINDS:  # the object line names the machine in any case
                line["kind"] = MACHINE_KINDS[machine]
            line |= {"call_id": name, "api": op, "args": values, "code": code,
                     "outputs": {k: v for k, v in outputs.items()
                                 if v is None or isinstance(v, (str, int, bool))},
                     "invoked": invoked, "responded": responded}
            self._write(line)

    def branches(self, prefix: str, machines: Mapping[str, str], records: Iterable[Any],
                 wall_base: float, branch_count: int) -> None:
        """A parallel case's run after its prefix: each branch action (and the suffix's) as its
        branch thread performed it, with its times (`wall_base` + the records' clock) and the
        branch as the thread ("branch N", "suffix"). An action that never answered has no
        response."""
        for record in sorted(records, key=lambda r: r.invoked):
            observation = record.observation
            action = record.action
            self.step(prefix, action.slot, machines[action.slot], action.op, dict(action.args),
                      {}, observation.code if observation is not None else None,
                      observation.outputs if observation is not None else {},
                      wall_base + record.invoked,
                      wall_base + record.returned if observation is not None
                      and record.returned is not None else None,
                      tid=f"branch {record.branch + 1}" if record.branch < branch_count
                      else "suffix")

    def close_case(self, prefix: str, case_id: str, slots: Mapping[str, tuple[str, Any]],
                   values: Mapping[str, Mapping[str, int]]) -> None:
        """Declare a session's objects: machine, configuration, the echoed values' numbers."""
        with self._lock:
            for slot, (machine, config) in slots.items():
                self._write({"type": "object", "object": f"{prefix}/{slot}", "machine": machine,
                             "config": dict(config), "values": {k: dict(v)
                                                                for k, v in values.items()},
                             "case": case_id})

    def close(self) -> None:
        with self._lock:
            self._file.close()
