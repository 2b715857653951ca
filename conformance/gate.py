"""A gate run: every case against one adapter, streamed to disk, summarised, with an exit code."""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from callgate.conformance import jobs, units
from callgate.conformance.budgets import Budget
from callgate.conformance.cases import multi, sequences
from callgate.conformance.cases.values import ValueChooser
from callgate.conformance.expectations import Expectations
from callgate.conformance.judge.declines import parse_absent
from callgate.conformance.judge.runner import Case, CaseRunner
from callgate.conformance.judge.waits import WaitLengths
from callgate.conformance.outdir import OutputDir
from callgate.conformance.protocol.adapter import Adapter, AdapterFault, Capabilities
from callgate.conformance.report.reporting import write_reports
from callgate.conformance.results import CaseResult, ResultStream, Summary, Verdict, read_stream
from callgate.conformance.units import compositions as _compositions
from callgate.conformance.units import stateful_slot_sets as stateful_slot_sets
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
    # The least transition coverage (percent of the transitions the model defines for the
    # adapter's features) a run must reach to pass the gate; None: no floor.
    min_coverage: float | None = None
    # Send each abstract argument's single old value (a finite Wait 50 ms, [out] 1 and 2, ...)
    # instead of concrete values drawn from the seed (callgate.conformance.cases.values).
    fixed_values: bool = False
    # Multi-object cases: two objects of one kind in one session (callgate.conformance.cases.multi).
    multi: bool = True
    # State identification after each machine's walk (callgate.conformance.cases.identify).
    identify: bool = True
    # Shrink each failing case to a minimal counterexample (`callgate run --no-shrink`: report
    # failures as they were found, which is faster when many cases fail).
    shrink: bool = True
    # Keep every wait at its old length, where the model says nothing can arrive too
    # (callgate.conformance.judge.waits; `callgate run --full-waits`).
    full_waits: bool = False
    # `--record-trace FILE`: write the calls the run makes in the trace format (docs/traces.md).
    record_trace: Path | None = None
    # Run only these units, in this order (`callgate.conformance.units`; the IDs `plan_units`
    # gives); None: every unit. A run of some units does not judge the expectations file stale.
    units: tuple[str, ...] | None = None
    # `--jobs N`: run the units in N worker processes (None: automatic, `jobs.auto_jobs`; 1: in
    # this process, one after the other). The results are recorded in the same order either way.
    jobs: int | None = 1
    # How a worker starts its own adapter (the in-process adapter built again from its spec, a
    # fresh adapter program); without it the run uses one process.
    adapter_factory: Callable[[], Adapter] | None = None
    # `--shard I/N`: run only the I-th of N slices of the units (1-based; `shard_units`), for
    # `callgate report --merge` to join. A shard does not judge the expectations file stale.
    shard: tuple[int, int] | None = None


class StopRun(Exception):
    """Raised by a progress callback to end a run early (a mutant run stops at its first failing
    case). The stream's end says the run was stopped, so its report is marked incomplete."""


class Terminated(BaseException):
    """SIGTERM arrived (what CI sends on cancel): raised in the main thread, like
    KeyboardInterrupt for SIGINT, so the run records what it did before it stops."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# Exit codes of a run that a signal stopped: 128 + the signal number, as shells report it.
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}
EXIT_HARNESS = 3


@dataclass(frozen=True)
class RunOutcome:
    summary: Summary
    out: Path
    report: Path
    seconds: float
    exit_code: int = 0
    complete: bool = True


class RunAborted(Exception):
    """The run stopped before its end (a signal, or an exception inside the harness). Its
    stream says so, and its reports, marked incomplete, are written: `outcome` says where."""

    def __init__(self, outcome: RunOutcome, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason
        self.exit_code = exit_code


class HandshakeFailed(AdapterFault):
    """The adapter's capabilities were refused; the reports (one `error` case) are written."""

    def __init__(self, fault: AdapterFault, outcome: RunOutcome) -> None:
        super().__init__(str(fault), fault.evidence)
        self.outcome = outcome


@dataclass(frozen=True)
class Tick:
    """What a progress callback hears: a case ended (`result`), a unit ended, or a long piece of
    work (a shrinking) says where it is (`label` only). `units_done` of `units_total` is the
    progress of the run: the number of units is known before the first case runs, so the total
    never grows; `cases` counts the cases finished so far (with `--jobs`, also those whose results
    still wait to be recorded in the run's order)."""

    label: str
    cases: int
    units_done: int
    units_total: int
    result: CaseResult | None = None


Progress = Callable[[Tick], None]


def version() -> str:
    try:
        return metadata.version("callgate")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def environment() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(),
            # The program's name only: a path would put the machine's layout into reports.
            "machine": platform.machine(), "argv": [os.path.basename(a) for a in sys.argv[:1]]}


def check_capabilities(caps: Capabilities) -> None:
    """Refuse capabilities that name unknown features or pins: the message says which."""
    unknown = caps.unknown_features()
    if unknown:
        raise AdapterFault(f"the adapter declares unknown features {sorted(unknown)}",
                           "see callgate.conformance.protocol.adapter.FEATURES for the names callgate knows")
    absent = set(caps.absent)
    # Besides features, `absent` may name operations and argument forms (judge/declines.py).
    problems = parse_absent(caps.absent)[1]
    if problems:
        raise AdapterFault(f"the adapter declares unknown features, operations or forms absent: "
                           f"{'; '.join(problems)}",
                           "name in the handshake's absent only features callgate knows, "
                           "MACHINE.OP or MACHINE.OP(PARAM=VALUE) (callgate model ops)")
    if absent & set(caps.features):
        raise AdapterFault(f"the adapter declares features both implemented and absent "
                           f"{sorted(absent & set(caps.features))}",
                           "a feature is either in features or in absent, never in both")
    try:
        check_pins(caps.pins)
    except ValueError as exc:
        raise AdapterFault(f"the adapter's pins are invalid: {exc}") from exc


@contextmanager
def _signals_raise() -> Iterator[None]:
    """While the cases run, SIGTERM raises `Terminated` (SIGINT already raises
    KeyboardInterrupt). Only the main thread can take signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: object) -> None:
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _signals_held() -> Iterator[None]:
    """While the run's end and its reports are written, a second Ctrl-C or SIGTERM waits: what
    the run did must reach the disk whole."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: object) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def shard_units(chosen: Sequence[units.Unit], shard: tuple[int, int] | None
                ) -> list[units.Unit]:
    """The units of shard I of N: every N-th unit of the run's list, from the I-th on (1-based),
    so each shard gets some of every kind and the slices depend on the unit list alone."""
    if shard is None:
        return list(chosen)
    index, count = shard
    if not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count}: I must be between 1 and N")
    return [u for n, u in enumerate(chosen) if n % count == index - 1]


def _run_start(options: RunOptions, caps: Capabilities | None, plan: sequences.Plan | None,
               chosen: Sequence[units.Unit] = (), every: Sequence[units.Unit] = ()
               ) -> dict[str, Any]:
    adapter: dict[str, Any] = {"name": options.adapter_name}
    if caps is not None:
        adapter |= {"implementation": caps.implementation, "version": caps.version,
                    "capabilities": sorted(caps.features), "pins": dict(caps.pins),
                    "notes": caps.notes}
        if caps.absent:
            adapter["absent"] = dict(caps.absent)
    return {
        "event": "run_start", "schema": 1, "callgate_version": version(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": options.command, "seed": options.seed, "budget": options.budget.name,
        "adapter": adapter,
        "environment": environment(),
        "transitions_total": plan.totals() if plan is not None else {},
        "expectations": options.expectations.to_json() if options.expectations else None,
        "transitions": sorted(plan.transitions) if plan is not None else [],
        # A shard covers only its slice: the floor is the merged run's (`shard` keeps it).
        "min_coverage": None if options.shard else options.min_coverage,
        "pairs": _pair_universe(options, plan),
        "pairs_not_drivable": _pairs_not_drivable(options, plan),
        "units": [u.id for u in chosen],
    } | ({"shard": {"index": options.shard[0], "count": options.shard[1],
                    "all_units": [u.id for u in every],
                    "min_coverage": options.min_coverage}} if options.shard else {})


def _pair_universe(options: RunOptions, plan: sequences.Plan | None) -> dict[str, list[str]]:
    """The pairs each composition's multi-object walk aims at (empty when none run)."""
    if plan is None or not options.multi or not options.budget.multi_cases:
        return {}
    return {c.name: multi.pair_universe(plan.machines[c.machine], c)
            for c in _compositions(options, plan)}


def _pairs_not_drivable(options: RunOptions, plan: sequences.Plan | None
                        ) -> dict[str, dict[str, str]]:
    """Of those pairs, the ones no walk can take, each with the reason (empty when none)."""
    if plan is None or not options.multi or not options.budget.multi_cases:
        return {}
    found = {c.name: multi.not_drivable(plan.machines[c.machine], c)
             for c in _compositions(options, plan)}
    return {name: reasons for name, reasons in found.items() if reasons}


def _left_behind(adapter: Adapter) -> dict[str, Any] | None:
    """An out-of-process adapter's processes are ended with the run; what they left running
    (a grandchild that escaped with setsid) callgate had to end, and the report says so. None
    for an adapter that starts no processes."""
    if not hasattr(adapter, "orphans_killed"):
        return None
    adapter.shutdown()  # its last process ends here, so what it left behind is counted
    orphans = list(getattr(adapter, "orphans", []))
    return {"killed": len(orphans), "checked": bool(getattr(adapter, "orphans_checked", False)),
            "processes": [o.describe() if hasattr(o, "describe") else str(o)
                          for o in orphans][:20]}


def _run_end(stream: ResultStream, results: Sequence[CaseResult], seconds: float,
             aborted: dict[str, Any] | None, orphans: dict[str, Any] | None = None,
             waits: dict[str, Any] | None = None, extra: dict[str, Any] | None = None
             ) -> Summary:
    summary = Summary.of(results)
    end: dict[str, Any] = {
        "event": "run_end", "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "summary": {"passed": summary.passed, "failed": summary.failed,
                    "errors": summary.errors, "not_applicable": summary.not_applicable,
                    "expected_fail": summary.expected_fail,
                    "unexpected_pass": summary.unexpected_pass}}
    if aborted is not None:
        end["aborted"] = aborted
    if orphans is not None:
        end["orphans"] = orphans
    if waits is not None:
        end["waits"] = waits
    stream.emit(end | (extra or {}))
    return summary


def _finish(options: RunOptions, summary: Summary, seconds: float) -> RunOutcome:
    """Render the reports of the stream on disk (when asked) and say how the run ends."""
    results = options.out / "results.jsonl"
    record = read_stream(results)
    if not options.reports:
        return RunOutcome(summary, options.out, results, seconds,
                          summary.exit_code(record.complete), record.complete)
    paths = write_reports(record, options.out)
    exit_code = int(json_field(paths[0], "summary", "exit_code"))
    return RunOutcome(summary, options.out, paths[0], seconds, exit_code, record.complete)


def json_field(path: Path, *keys: str) -> Any:
    value: Any = json.loads(path.read_text(encoding="utf-8"))
    for key in keys:
        value = value[key]
    return value


def _handshake_failed(options: RunOptions, output: OutputDir, fault: AdapterFault,
                      started: float) -> HandshakeFailed:
    """Record a refused handshake as a run of one `error` case, so that a CI step that uploads
    the reports finds them, and say why."""
    stream = ResultStream(output.path / "results.jsonl")
    stream.emit(_run_start(options, None, None))
    result = CaseResult("handshake", "handshake",
                        "the adapter's hello: features, pins, protocol version", [], Verdict.ERROR,
                        0, round(time.perf_counter() - started, 3),
                        message=f"the adapter's handshake was refused: {fault}",
                        evidence=fault.evidence)
    stream.emit({"event": "case", "case": result.to_json()})
    seconds = time.perf_counter() - started
    summary = _run_end(stream, [result], seconds, None)
    stream.close()
    return HandshakeFailed(fault, _finish(options, summary, seconds))


def run_gate(adapter: Adapter, options: RunOptions, progress: Progress | None = None
             ) -> RunOutcome:
    """Run directed, stateful and parallel cases; every result goes to results.jsonl as it ends.

    The output directory is locked for the run (a second run on it is refused) and the files of
    an earlier run in it are removed first, so the reports are always one run's. A signal or an
    exception inside the harness ends the run early: its end records why, the reports of what
    ran are written (marked incomplete), and `RunAborted` says how to exit. A refused handshake
    raises `HandshakeFailed` after writing reports with one `error` case."""
    started = time.perf_counter()
    with OutputDir(options.out) as output:
        try:
            caps = adapter.capabilities()
            check_capabilities(caps)
        except AdapterFault as fault:
            raise _handshake_failed(options, output, fault, started) from fault
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # an in-process adapter that raised, or called sys.exit()
            raised = AdapterFault(f"the adapter's capabilities() raised {type(exc).__name__}: "
                                  f"{exc}", traceback.format_exc(limit=20))
            raise _handshake_failed(options, output, raised, started) from exc
        plan = options.plan if options.plan is not None else sequences.plan(caps)
        every = units.plan_units(plan, caps, options)
        chosen = shard_units(units.select(every, options.units), options.shard)
        workers, note = jobs.plan_workers(options.jobs, caps, options.adapter_factory,
                                          options.record_trace is not None, len(chosen))
        stream = ResultStream(output.path / "results.jsonl")
        stream.emit(_run_start(options, caps, plan, chosen, every))
        results: list[CaseResult] = []
        aborted: dict[str, Any] | None = None
        exit_code = 0
        runner = CaseRunner(adapter, caps, options.step_timeout,
                            ValueChooser(options.seed, fixed=options.fixed_values),
                            options.expectations, waits=WaitLengths(calibrate=not options.full_waits))
        parallel: jobs.ParallelRun | None = None
        if workers > 1:
            adapter.shutdown()  # no live adapter (or its threads) across the fork
            assert options.adapter_factory is not None
            parallel = _parallel(options.adapter_factory, caps, plan, options, chosen, workers,
                                 stream, results, progress)
        else:
            _record_trace(runner, options.record_trace)
        try:
            with _signals_raise():
                if parallel is not None:
                    parallel.run()
                    _record_stale(stream, results, progress, options, len(chosen))
                else:
                    _run_cases(runner, plan, options, chosen, stream, results, progress)
        except StopRun:
            aborted = {"reason": "stopped early at the caller's request (first failing case)"}
        except KeyboardInterrupt:
            aborted = {"reason": "interrupted (SIGINT)", "signal": "SIGINT"}
            exit_code = SIGNAL_EXIT["SIGINT"]
        except Terminated as exc:
            aborted = {"reason": f"terminated ({exc})", "signal": str(exc)}
            exit_code = SIGNAL_EXIT.get(str(exc), 128 + exc.signum)
        except Exception as exc:  # a bug in the harness: the run is aborted, nothing is lost
            aborted = {"reason": f"harness error: {type(exc).__name__}: {exc}",
                       "traceback": traceback.format_exc(limit=20)}
            exit_code = EXIT_HARNESS
        except BaseException as exc:  # SystemExit (an in-process adapter calling sys.exit()) or
            # another BaseException: whatever its exit status, the run did not get to its end.
            aborted = {"reason": f"{type(exc).__name__} raised inside the run ({exc!r}): an "
                                 f"in-process adapter stopped it",
                       "traceback": traceback.format_exc(limit=20)}
            exit_code = EXIT_HARNESS
        finally:
            with _signals_held():
                orphans = None
                waits: dict[str, Any] | None = runner.waits.summary()
                if parallel is not None:
                    parallel.stop()
                    if aborted is not None and "signal" in aborted:
                        parallel.flush()  # keep what the workers finished before the signal
                try:
                    runner.close()
                    orphans = _left_behind(adapter)
                except Exception as exc:  # closing sessions of a broken adapter
                    if aborted is not None:
                        aborted["close_error"] = f"{type(exc).__name__}: {exc}"
                if parallel is not None:
                    orphans = jobs.merge_orphans([orphans, *parallel.orphans])
                    waits = jobs.merge_waits(parallel.waits)
                seconds = time.perf_counter() - started
                extra: dict[str, Any] = {"jobs": {"requested": options.jobs, "workers": workers}
                                         | ({"note": note} if note else {})
                                         | ({"died": parallel.deaths} if parallel else {})
                                         | ({"waiting": parallel.waiting}
                                            if parallel and parallel.waiting else {})}
                if options.expectations is not None:
                    extra["expectations_tally"] = options.expectations.tally()
                summary = _run_end(stream, results, seconds, aborted, orphans, waits, extra)
                stream.close()
        with _signals_held():
            try:
                outcome = _finish(options, summary, seconds)
            finally:
                units.release_heap()  # what the units froze is the collector's again
    if exit_code:
        raise RunAborted(outcome, str(aborted["reason"] if aborted else ""), exit_code)
    return outcome


def _run_cases(runner: CaseRunner, plan: sequences.Plan, options: RunOptions,
               chosen: Sequence[units.Unit], stream: ResultStream, results: list[CaseResult],
               progress: Progress | None) -> None:
    """Run the run's units in order (`callgate.conformance.units`), recording each result as it
    ends; then, for a run that got to its end, the expectations that no case showed any more."""
    for done, unit in enumerate(chosen):
        def say(text: str, unit_done: int = done) -> None:
            if progress is not None:
                progress(Tick(text, len(results), unit_done, len(chosen)))

        for result in units.run_unit(runner, plan, options, unit, say):
            _record(stream, results, result, progress, (done, len(chosen)),
                    options.expectations, unit.id)
        if progress is not None:
            progress(Tick(unit.id, len(results), done + 1, len(chosen)))
    _record_stale(stream, results, progress, options, len(chosen))


def _parallel(factory: Callable[[], Adapter], caps: Capabilities, plan: sequences.Plan,
              options: RunOptions, chosen: Sequence[units.Unit], workers: int,
              stream: ResultStream, results: list[CaseResult], progress: Progress | None
              ) -> jobs.ParallelRun:
    """The run's units in `workers` processes (`callgate.conformance.jobs`), each result
    recorded in the order a plain run records it."""
    finished = {"units": 0}
    run: list[jobs.ParallelRun] = []

    def done() -> int:
        """The cases the workers have finished: results are recorded in the run's order, so
        the recorded ones can trail far behind while a long early unit runs."""
        return max(len(results), run[0].received if run else 0)

    def record(index: int, result: CaseResult) -> None:
        _record(stream, results, result, None, (finished["units"], len(chosen)),
                options.expectations, chosen[index].id)
        if progress is not None:
            progress(Tick(result.id, done(), finished["units"], len(chosen), results[-1]))

    def unit_done(unit: units.Unit, count: int) -> None:
        finished["units"] = count
        if progress is not None:
            progress(Tick(unit.id, done(), count, len(chosen)))

    def say(index: int, text: str) -> None:
        if progress is not None:
            progress(Tick(text, done(), finished["units"], len(chosen)))

    run.append(jobs.ParallelRun(factory, caps, plan, options, chosen, workers, record,
                                unit_done, say,
                                jobs.waiting_workers(options.jobs, workers, chosen)))
    return run[0]


def _record_stale(stream: ResultStream, results: list[CaseResult], progress: Progress | None,
                  options: RunOptions, total: int) -> None:
    """Listed deviations that no case showed any more: the expectations file is stale. Only a
    whole run that got this far may say so (a killed run, or a run of some units only or of one
    shard, proves nothing about the others; `callgate report --merge` judges the shards')."""
    if options.expectations is not None and options.units is None and options.shard is None:
        for stale in options.expectations.stale_results():
            _record(stream, results, stale, progress, (total, total), None)


def _record(stream: ResultStream, results: list[CaseResult], result: CaseResult,
            progress: Progress | None, units_done: tuple[int, int],
            expectations: Expectations | None, unit: str = "") -> None:
    if expectations is not None:
        result = expectations.apply(result)
    results.append(result)
    stream.emit({"event": "case", "case": result.to_json()} | ({"unit": unit} if unit else {}))
    if progress:
        progress(Tick(result.id, len(results), *units_done, result))


def shrink(runner: CaseRunner, plan: sequences.Plan | None, case: Case | None,
           failed: CaseResult, expectations: Expectations | None = None,
           enabled: bool = True) -> CaseResult:
    """`callgate.conformance.units.shrink`, without progress lines."""
    return units.shrink(runner, plan, case, failed, None, expectations, enabled)


def run_cases(adapter: Adapter, cases: Sequence[Case], step_timeout: float = 10.0,
              expectations: Expectations | None = None, keep_traces: bool = False,
              record_trace: Path | None = None) -> list[CaseResult]:
    """Run given cases (replay, pytest items) without the stream; with `expectations`, listed
    deviations are followed and judged as the gate judges them (`expected_fail`);
    `record_trace`: write the calls they make in the trace format there."""
    caps = adapter.capabilities()
    check_capabilities(caps)
    runner = CaseRunner(adapter, caps, step_timeout, expectations=expectations,
                        keep_traces=keep_traces)
    _record_trace(runner, record_trace)
    try:
        results = [runner.run(c) for c in cases]
    finally:
        runner.close()
    return results if expectations is None else [expectations.apply(r) for r in results]


def _record_trace(runner: CaseRunner, path: Path | None) -> None:
    """Have `runner` write the trace of what it performs to `path` (none: nothing recorded)."""
    if path is not None:
        from callgate.conformance.trace.record import TraceRecorder

        runner.recorder = TraceRecorder(path, runner.capabilities.pins)
