"""Result records of a gate run, and the append-only event stream they are written to.

DESIGN.md principle 9: the runner emits one event per case as it ends and appends it to
`results.jsonl` at once (flushed), so a run that is killed still leaves a readable record of
what it did. Every report is a function of that stream.

Stream events, one JSON object per line, each with "event":
  run_start  {"event", "schema", "started", "command", "seed", "budget", "adapter", "pins",
              "environment", "transitions_total"}
  case       {"event", "case": CaseResult}
  run_end    {"event", "finished", "seconds", "summary"}
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any

STREAM_SCHEMA = 1


_ATOMS = (str, int, float, bool, type(None))


def _plain(value: Any) -> Any:
    """What `dataclasses.asdict` makes of `value` (dataclasses to dicts, lists, tuples and dicts
    copied, anything else deep-copied), without its per-item overhead on the strings and numbers
    a result is made of: a gate run writes every case's covered transitions and replay steps."""
    if isinstance(value, _ATOMS):
        return value
    kind = type(value)
    if kind is list:
        return [v if isinstance(v, _ATOMS) else _plain(v) for v in value]
    if kind is dict:
        return {_plain(k): v if isinstance(v, _ATOMS) else _plain(v) for k, v in value.items()}
    if kind is tuple:
        return tuple(_plain(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple, dict)):  # a subclass (a named tuple): the library's way
        return dataclasses.asdict(_Box(value))["value"]
    return copy.deepcopy(value)


def _fields(record: Any) -> dict[str, Any]:
    """`dataclasses.asdict(record)` (see `_plain`)."""
    return {f.name: _plain(getattr(record, f.name)) for f in dataclasses.fields(record)}


@dataclass(frozen=True)
class _Box:
    value: Any


class Verdict(Enum):
    """A case's verdict (DESIGN.md, Verdicts)."""

    PASS = "pass"
    FAIL = "fail"
    NOT_APPLICABLE = "not_applicable"
    ERROR = "error"
    EXPECTED_FAIL = "expected_fail"
    UNEXPECTED_PASS = "unexpected_pass"


OUTPUT_VALUE_LIMIT = 80


def outputs_text(outputs: Mapping[str, Any]) -> str:
    """An operation's outputs in words for a message: "returned false, waited_ms 300" (never a
    Python dict's repr); each value cut to OUTPUT_VALUE_LIMIT characters."""
    parts = []
    for name, value in outputs.items():
        if isinstance(value, bool) or value is None:
            text = json.dumps(value)
        elif isinstance(value, (int, float, str)):
            text = str(value)
        else:
            text = json.dumps(value, sort_keys=True, default=str)
        if len(text) > OUTPUT_VALUE_LIMIT:
            text = text[:OUTPUT_VALUE_LIMIT - 1] + "…"
        parts.append(f"{name} {text}")
    return ", ".join(parts)


@dataclass(frozen=True)
class StepRecord:
    """One executed step: what was asked, what came back, and what the model allowed."""

    slot: str
    op: str
    args: dict[str, Any]
    code: int | None
    code_name: str
    outputs: dict[str, Any]
    allowed: list[str]
    ok: bool
    rules: list[str]
    state_before: str
    seconds: float = 0.0
    thread: str = ""
    started: float = 0.0
    ended: float = 0.0
    # The concrete values the request carried for abstract arguments, by parameter (the
    # finite timeout under its parameter name, though it travels as `wait_ms`); see
    # callgate.conformance.cases.values. Empty: every argument was sent as it is.
    sent: dict[str, Any] = field(default_factory=dict)
    # A step the model rejected that a listed deviation describes (callgate.conformance
    # .expectations, `instead`): the rule of that entry. The case followed the implementation on.
    deviation: str = ""

    def to_json(self) -> dict[str, Any]:
        return _fields(self)


@dataclass(frozen=True)
class Failure:
    """Another distinct failure a case saw beside the one its verdict reports (a stateful case
    keeps every kind it met): its verdict, message, evidence, trace and replay, as a case has."""

    verdict: Verdict
    message: str
    trace: list[StepRecord]
    failed_rules: list[str]
    replay: dict[str, Any]
    evidence: str = ""
    original_length: int = 0  # the length of the first program seen to fail so, if longer
    programs: int = 1  # how many program runs failed this way (shrinking's included)

    @staticmethod
    def of(result: CaseResult, programs: int = 1) -> Failure:
        return Failure(result.verdict, result.message, list(result.trace),
                       list(result.failed_rules), dict(result.replay), result.evidence,
                       result.original_length, programs)

    def to_json(self) -> dict[str, Any]:
        data = _fields(self)
        data["verdict"] = self.verdict.value
        return data

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Failure:
        values = dict(data)
        values["verdict"] = Verdict(values["verdict"])
        values["trace"] = [StepRecord(**s) for s in values.get("trace", [])]
        known = set(Failure.__dataclass_fields__)
        return Failure(**{k: v for k, v in values.items() if k in known})


@dataclass(frozen=True)
class CaseResult:
    """A finished case. `trace` holds every step when the case failed or erred, else is empty."""

    id: str
    kind: str
    description: str
    rules: list[str]
    verdict: Verdict
    steps: int
    seconds: float
    message: str = ""
    evidence: str = ""
    trace: list[StepRecord] = field(default_factory=list)
    covered: list[str] = field(default_factory=list)
    slots: dict[str, str] = field(default_factory=dict)
    failed_rules: list[str] = field(default_factory=list)
    original_length: int = 0
    replay: dict[str, Any] = field(default_factory=dict)
    expectation: str = ""
    history: list[StepRecord] = field(default_factory=list)
    linearizability: str = ""
    # A parallel case: how many times its branches ran, and in how many of those runs operations
    # of different branches were in flight at the same time (only those exercised its race).
    runs: int = 0
    overlapped_runs: int = 0
    # A named race: the orderings of its conflicting operations the model allows, and which runs
    # observed (`callgate.conformance.cases.parallel.orderings.OrderingTally.to_json`).
    orderings: dict[str, Any] = field(default_factory=dict)
    # Other distinct failures the case saw (each with its own trace), beside the one above.
    other_failures: list[Failure] = field(default_factory=list)
    # A failing case after shrinking (callgate.conformance.judge.shrink): the length of the
    # first failing run and of the trace shown, and how the shrinking went (reruns, seconds,
    # one_minimal, note). Zero and empty when the case was not shrunk.
    length_before: int = 0
    length_after: int = 0
    shrink: dict[str, Any] = field(default_factory=dict)
    # The concrete values sent for abstract arguments: "machine op param=abstract" -> values.
    values: dict[str, list[int]] = field(default_factory=dict)
    # A multi-object case: the pairs it covered (see callgate.conformance.cases.multi).
    pairs: list[str] = field(default_factory=list)
    # The listed deviations (their rules) the case followed, in the order first met, and the
    # transitions it covered after the first of them: what it reached only by following them.
    deviations: list[str] = field(default_factory=list)
    covered_after_deviation: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = _fields(self)
        data["verdict"] = self.verdict.value
        data["other_failures"] = [f.to_json() for f in self.other_failures]
        return data

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> CaseResult:
        values = dict(data)
        values["verdict"] = Verdict(values["verdict"])
        values["trace"] = [StepRecord(**s) for s in values.get("trace", [])]
        values["history"] = [StepRecord(**s) for s in values.get("history", [])]
        values["other_failures"] = [Failure.from_json(f)
                                    for f in values.get("other_failures", [])]
        known = set(CaseResult.__dataclass_fields__)
        return CaseResult(**{k: v for k, v in values.items() if k in known})


@dataclass(frozen=True)
class Summary:
    """Counts of verdicts and coverage over a run."""

    passed: int = 0
    failed: int = 0
    errors: int = 0
    not_applicable: int = 0
    expected_fail: int = 0
    unexpected_pass: int = 0
    cases: int = 0
    steps: int = 0

    @staticmethod
    def of(cases: Iterable[CaseResult]) -> Summary:
        counts = {v: 0 for v in Verdict}
        total = steps = 0
        for case in cases:
            counts[case.verdict] += 1
            total += 1
            steps += case.steps
        return Summary(passed=counts[Verdict.PASS], failed=counts[Verdict.FAIL],
                       errors=counts[Verdict.ERROR], not_applicable=counts[Verdict.NOT_APPLICABLE],
                       expected_fail=counts[Verdict.EXPECTED_FAIL],
                       unexpected_pass=counts[Verdict.UNEXPECTED_PASS], cases=total, steps=steps)

    def exit_code(self, complete: bool = True) -> int:
        """0 conformant, 1 non-conformant, 3 harness or adapter error.

        A real failure decides the outcome: errors beside it are listed, not promoted (exit 3
        only when nothing failed but something could not be judged). A run that did not finish
        never exits 0: what it did not run was not shown to hold."""
        if self.failed or self.unexpected_pass:
            return 1
        if self.errors or not complete:
            return 3
        return 0


class ResultStream:
    """Appends events to `results.jsonl`, one line each, flushed and fsynced as they happen."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] = path.open("w", encoding="utf-8")

    def emit(self, event: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(event, sort_keys=False, default=str) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class RunRecord:
    """What a results stream says: the run's header, its cases, and its end (absent if killed)."""

    start: dict[str, Any]
    cases: list[CaseResult]
    end: dict[str, Any] | None

    @property
    def complete(self) -> bool:
        """The run got to its end: it has a run_end event that does not say it was aborted."""
        return self.end is not None and not self.end.get("aborted")

    @property
    def aborted(self) -> dict[str, Any] | None:
        """Why the run stopped early ({"reason", "signal"?}), when its end says so; a run killed
        outright has no end at all (see `complete`)."""
        if self.end is None:
            return {"reason": "the results stream has no end: the run was killed or crashed"}
        aborted = self.end.get("aborted")
        return dict(aborted) if isinstance(aborted, dict) else None


def read_stream(path: Path) -> RunRecord:
    """Read a results stream; a truncated last line (a killed run) is ignored."""
    start: dict[str, Any] | None = None
    cases: list[CaseResult] = []
    end: dict[str, Any] | None = None
    for line in _lines(path):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = event.get("event")
        if kind == "run_start":
            start = event
        elif kind == "case" and isinstance(event.get("case"), dict):
            try:
                cases.append(CaseResult.from_json(event["case"]))
            except (KeyError, TypeError, ValueError):
                continue  # a damaged case line: the rest of the stream still counts
        elif kind == "run_end":
            end = event
    if start is None:
        raise ValueError(f"{path} has no run_start event: is it a callgate results.jsonl?")
    return RunRecord(start, cases, _lost_cases(end, cases))


_COUNTED = ("passed", "failed", "errors", "not_applicable", "expected_fail", "unexpected_pass")


def _lost_cases(end: dict[str, Any] | None, cases: Sequence[CaseResult]
                ) -> dict[str, Any] | None:
    """The run's end, marked aborted when the counts it recorded are not those of the case lines
    that could be read (a line damaged or cut out of the middle of the stream): a lost case may
    have been a failure, so such a stream never reads as a complete run."""
    counted = (end or {}).get("summary")
    if end is None or end.get("aborted") or not isinstance(counted, dict):
        return end
    read = Summary.of(cases)
    lost = [f"{key} {counted[key]} recorded, {getattr(read, key)} readable" for key in _COUNTED
            if key in counted and counted[key] != getattr(read, key)]
    if not lost:
        return end
    return end | {"aborted": {"reason": "the results stream lost case lines (" + "; ".join(lost)
                              + "): a damaged stream is never a complete run"}}


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield line
