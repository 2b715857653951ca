"""A gate run: every case against one adapter, streamed to disk, summarised, with an exit code."""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from callgate.conformance.budgets import Budget
from callgate.conformance.cases import sequences
from callgate.conformance.cases.parallel import ParallelBudget, parallel_count, parallel_phase
from callgate.conformance.cases.stateful import StatefulBudget, default_slots, run_stateful
from callgate.conformance.cases.walk import walk_machine
from callgate.conformance.expectations import Expectations
from callgate.conformance.judge.runner import Case, CaseRunner
from callgate.conformance.protocol.adapter import Adapter, AdapterFault, Capabilities, SlotSpec
from callgate.conformance.report.reporting import write_reports
from callgate.conformance.results import CaseResult, ResultStream, Summary, Verdict, read_stream
from callgate.model.variations import check_pins


@dataclass(frozen=True)
class RunOptions:
    """What `callgate run` was asked to do."""

    adapter_name: str
    budget: Budget
    seed: int
    out: Path
    step_timeout: float = 10.0
    command: str = ""
    stateful: bool = True
    directed: bool = True
    # Parallel cases, and the longest random pause (seconds) before each branch action.
    parallel: bool = True
    stagger: float = 0.001
    parallel_runs: int | None = None
    expectations: Expectations | None = None
    # A plan already built for these capabilities (mutant runs share one), and whether to render
    # the reports at the end (a mutant run only needs the verdicts).
    plan: sequences.Plan | None = None
    reports: bool = True


class StopRun(Exception):
    """Raised by a progress callback to end a run early (a mutant run stops at its first failing
    case); the run closes its stream as if it had ended, with the cases done so far."""


@dataclass(frozen=True)
class RunOutcome:
    summary: Summary
    out: Path
    report: Path
    seconds: float


Progress = Callable[[str, int, int, CaseResult | None], None]


def version() -> str:
    try:
        return metadata.version("callgate")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def environment() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "argv": sys.argv[:1]}


def check_capabilities(caps: Capabilities) -> None:
    """Refuse capabilities that name unknown features or pins: the message says which."""
    unknown = caps.unknown_features()
    if unknown:
        raise AdapterFault(f"the adapter declares unknown features {sorted(unknown)}",
                           "see callgate.conformance.protocol.adapter.FEATURES for the names callgate knows")
    try:
        check_pins(caps.pins)
    except ValueError as exc:
        raise AdapterFault(f"the adapter's pins are invalid: {exc}") from exc


def run_gate(adapter: Adapter, options: RunOptions, progress: Progress | None = None
             ) -> RunOutcome:
    """Run directed then stateful cases; every result goes to results.jsonl as it ends."""
    started = time.perf_counter()
    caps = adapter.capabilities()
    check_capabilities(caps)
    plan = options.plan if options.plan is not None else sequences.plan(caps)
    options.out.mkdir(parents=True, exist_ok=True)
    stream = ResultStream(options.out / "results.jsonl")
    stream.emit({
        "event": "run_start", "schema": 1, "callgate_version": version(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": options.command, "seed": options.seed, "budget": options.budget.name,
        "adapter": {"name": options.adapter_name, "implementation": caps.implementation,
                    "version": caps.version, "capabilities": sorted(caps.features),
                    "pins": dict(caps.pins), "notes": caps.notes},
        "environment": environment(),
        "transitions_total": plan.totals(),
        "expectations": options.expectations.to_json() if options.expectations else None,
        "transitions": sorted(plan.transitions),
    })
    runner = CaseRunner(adapter, caps, options.step_timeout)
    results: list[CaseResult] = []
    stateful_cases = (len(stateful_slot_sets(caps.features, options.budget.stateful_rounds))
                      if options.stateful else 0)
    stateful_cases += parallel_count(options.budget.parallel_examples) if options.parallel else 0
    total = len(plan.machines) + stateful_cases
    try:
        if options.directed:
            for machine_plan in plan.machines.values():
                pending = set(machine_plan.transitions)
                for case, result in walk_machine(runner, machine_plan, pending):
                    if result.verdict is Verdict.FAIL:
                        result = shrink(runner, plan, case, result)
                    total = max(total, len(results) + 1 + stateful_cases)
                    _record(stream, results, result, progress, total, options.expectations)
        total = len(results) + stateful_cases
        rounds = options.budget.stateful_rounds if options.stateful else 0
        for round_, slots in enumerate(stateful_slot_sets(caps.features, rounds)):
            result = run_stateful(
                runner, StatefulBudget(options.budget.stateful_examples,
                                       options.budget.stateful_steps),
                seed=options.seed + round_, slots=slots,
                case_id=f"stateful-{round_:02d}-{'-'.join(s.name for s in slots)}")
            _record(stream, results, result, progress, total, options.expectations)
        if options.parallel:
            runs = options.parallel_runs or options.budget.parallel_runs
            for result in parallel_phase(runner, ParallelBudget(
                    options.budget.parallel_examples, runs, options.stagger), options.seed):
                _record(stream, results, result, progress, total, options.expectations)
        if options.expectations is not None:
            # Listed deviations that no case showed any more: the expectations file is stale.
            # Only a run that got this far may say so (a killed run proves nothing).
            for stale in options.expectations.stale_results():
                _record(stream, results, stale, progress, total, None)
    except StopRun:
        pass
    finally:
        runner.close()
        seconds = time.perf_counter() - started
        summary = Summary.of(results)
        stream.emit({"event": "run_end", "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                     "seconds": round(seconds, 3),
                     "summary": {"passed": summary.passed, "failed": summary.failed,
                                 "errors": summary.errors, "not_applicable": summary.not_applicable,
                                 "expected_fail": summary.expected_fail,
                                 "unexpected_pass": summary.unexpected_pass}})
        stream.close()
    if not options.reports:
        return RunOutcome(summary, options.out, options.out / "results.jsonl", seconds)
    paths = write_reports(read_stream(options.out / "results.jsonl"), options.out)
    report = paths[0]
    return RunOutcome(summary, options.out, report, seconds)


def stateful_slot_sets(features: frozenset[str], rounds: int) -> list[list[SlotSpec]]:
    """What each stateful round drives: every object kind alone (so a random walk spends its
    steps where one object's wrong next state shows), then all together, `rounds` times over."""
    mixed = default_slots(features)
    singles = [[s] for s in mixed if s.name != "c1"]
    return [slots for _ in range(rounds) for slots in ([*singles, mixed] if len(mixed) > 1
                                                       else [mixed])]


def _record(stream: ResultStream, results: list[CaseResult], result: CaseResult,
            progress: Progress | None, total: int, expectations: Expectations | None) -> None:
    if expectations is not None:
        result = expectations.apply(result)
    results.append(result)
    stream.emit({"event": "case", "case": result.to_json()})
    if progress:
        progress(result.id, len(results), total, result)


def shrink(runner: CaseRunner, plan: sequences.Plan, case: Case, failed: CaseResult) -> CaseResult:
    """Replace a failing directed case by the shortest path to the failing transition, if that
    path fails too (the counterexample is then no longer than the shortest path in the graph)."""
    shorter = plan.shortest_case(case, failed)
    if shorter is None or len(shorter.steps) >= len(case.steps):
        return failed
    again = runner.run(shorter)
    if again.verdict is not Verdict.FAIL or again.trace[-1].op != failed.trace[-1].op:
        return failed
    return replace(again, id=case.id, description=case.description, rules=list(case.rules),
                   original_length=len(failed.trace), covered=sorted(set(failed.covered)
                                                                    | set(again.covered)))


def run_cases(adapter: Adapter, cases: Sequence[Case], step_timeout: float = 10.0
              ) -> list[CaseResult]:
    """Run given cases (replay, pytest items) without the stream."""
    caps = adapter.capabilities()
    check_capabilities(caps)
    runner = CaseRunner(adapter, caps, step_timeout)
    try:
        return [runner.run(c) for c in cases]
    finally:
        runner.close()
