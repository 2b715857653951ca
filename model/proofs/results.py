"""The results of proof obligations as data: `CheckResult`, its `Counterexample` (trace steps, a
lasso) or `Conflict` (an unsat core of claims), and the result kinds.

A solver answer of `unknown` is the result UNKNOWN, and a check that could not run on the tables
given (a gap the explorer ran into, a condition naming a field the table lacks) is ERROR: both
count as failures, never as a pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from callgate.model.transitions import Args, Machine, State, Value


class Result(Enum):
    """The result of a check."""

    PROVED = "proved"
    COUNTEREXAMPLE = "counterexample"
    UNKNOWN = "unknown"
    CONFLICT = "conflict"
    ERROR = "error"


Fields = tuple[tuple[str, Value], ...]


def fields_of(machine: Machine, state: State) -> Fields:
    return tuple((f.name, v) for f, v in zip(machine.fields, state, strict=True))


@dataclass(frozen=True)
class TraceStep:
    """One step of a counterexample: what was done in which slot, and what the model allowed."""

    slot: str
    state: Fields
    op: str
    args: Args
    outcome: str
    code: str
    rules: tuple[str, ...]
    next_state: Fields

    def to_json(self) -> dict[str, object]:
        return {"slot": self.slot, "state": dict(self.state), "op": self.op,
                "args": dict(self.args), "outcome": self.outcome, "code": self.code,
                "rules": list(self.rules), "next_state": dict(self.next_state)}


@dataclass(frozen=True)
class Counterexample:
    """Why a check failed, as data.

    kind: "trace" (reachable from an initial state: `initial`, then `steps`; the last state or
    step breaks `violated`), "induction" (a state satisfying the other invariants whose one step
    breaks `violated`; no reachable trace was found within the bound), "table" (a state and
    operation a table gets wrong), "disagreement" (the Python and Z3 forms differ there); for
    liveness, "lasso" (`steps` from an initial state, then `cycle` repeated forever), "deadlock"
    (`steps`, then nothing is defined) and "path" (`steps`, the last one wrong). `pins` is the
    pinning of the variation points the counterexample needs (empty: any).
    """

    kind: str
    violated: str
    what: str
    initial: tuple[tuple[str, Fields], ...] = ()
    steps: tuple[TraceStep, ...] = ()
    cycle: tuple[TraceStep, ...] = ()
    pins: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"kind": self.kind, "violated": self.violated, "what": self.what,
                                   "initial": {slot: dict(f) for slot, f in self.initial},
                                   "steps": [s.to_json() for s in self.steps]}
        if self.kind == "lasso" or self.cycle:
            data["cycle"] = [s.to_json() for s in self.cycle]
        if self.pins:
            data["pins"] = dict(self.pins)
        return data


@dataclass(frozen=True)
class Conflict:
    """A set of documented claims and table constraints that cannot all hold (an unsat core)."""

    members: tuple[str, ...]
    rules: tuple[str, ...]
    sources: tuple[str, ...]
    discrepancy: str
    expected: bool
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return {"members": list(self.members), "rules": list(self.rules),
                "sources": list(self.sources), "discrepancy": self.discrepancy,
                "expected": self.expected, "note": self.note}


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, kind, result, time, and the evidence."""

    name: str
    kind: str
    result: Result
    seconds: float
    detail: str = ""
    rules: tuple[str, ...] = ()
    support: tuple[str, ...] = ()
    counterexample: Counterexample | None = None
    conflict: Conflict | None = None
    # Taken from `callgate model check`'s cache of definitive results (model/check_cache.py),
    # not checked in this run; `seconds` is then what checking it took when it was checked.
    cached: bool = field(default=False, compare=False)

    @property
    def failed(self) -> bool:
        """A counterexample, an unknown, an error, or a conflict nobody expected."""
        if self.result is Result.CONFLICT:
            return self.conflict is None or not self.conflict.expected
        return self.result is not Result.PROVED

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"name": self.name, "kind": self.kind,
                                   "result": self.result.value, "seconds": round(self.seconds, 4),
                                   "detail": self.detail, "rules": list(self.rules),
                                   "checked": "cache" if self.cached else "now"}
        if self.support:
            data["support"] = list(self.support)
        if self.counterexample is not None:
            data["counterexample"] = self.counterexample.to_json()
        if self.conflict is not None:
            data["conflict"] = self.conflict.to_json()
            data["expected"] = self.conflict.expected
        return data



def summarize(results: Iterable[CheckResult]) -> dict[str, int]:
    """Counts of results by value."""
    counts = {r.value: 0 for r in Result}
    for r in results:
        counts[r.result.value] += 1
    return counts
