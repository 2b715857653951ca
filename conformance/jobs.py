"""`callgate run --jobs N`: a run's units in N worker processes, recorded in the run's order.

The parent does the handshake, builds the plan and chooses the units once, shuts its own adapter
down, and then forks the workers (fork: each worker starts with the plan built, which takes
seconds; no live adapter or thread of the parent is in use across the fork). Each worker starts
its own adapter from the run's adapter factory (`RunOptions.adapter_factory`: the in-process
adapter built again from its spec, or a fresh adapter program for `--adapter-cmd`), checks that
it declares what the parent's declared, and runs the units it is handed one at a time, sending
each case's result back as it ends over its own pipe. Each worker calibrates its own waits
(`callgate.conformance.judge.waits`).

The parent hands the costliest units out first (`units.longest_first`: a long unit started last
would finish alone) and records results in the run's order: the results
of the unit next in line go to the stream as they arrive, those of a unit that finished early
wait until every unit before it is recorded. So results.jsonl, the verdicts and the reports are
the same whatever N is (only the timing differs).

With `--jobs auto` a run of several workers also starts one waiting worker (`waiting_workers`):
a worker that takes only units of the kinds that spend most of their time waiting (`WAITING`:
state identification, whose sequences include ICancelMethodCalls::Cancel with ulSeconds 1 and the
STA probe's finite wait; the races and the generated parallel cases, which stagger and wait on
purpose), the costliest first like every worker, and ends when none is left. Its units overlap
with the other workers' steps, which need the cores, instead of holding a core's worker idle
while they wait; the other workers still take any unit, waiting ones included, in the same
order. Which worker runs a unit never changes its cases (`units`), so the results do not either.

A worker that dies (a crash in the implementation under test, a kill) ends its unit with one
`error` case saying so; a new worker takes the next unit. A worker whose harness raises aborts
the run, as the same exception does in a plain run. A signal or a `StopRun` in the parent ends
the workers (SIGTERM, which lets each shut its adapter down; SIGKILL after a grace period).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from callgate.conformance import units
from callgate.conformance.cases import sequences
from callgate.conformance.cases.values import ValueChooser
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.judge.waits import WaitLengths
from callgate.conformance.protocol.adapter import Adapter, Capabilities
from callgate.conformance.results import CaseResult, Verdict

# How long stopped workers get to shut their adapters down before they are killed.
STOP_GRACE = 5.0
WORKER_KIND = "worker"

AdapterFactory = Callable[[], Adapter]


class WorkerFailed(Exception):
    """A worker's harness raised (or its adapter could not start): the run is aborted."""


class _Stop(BaseException):
    """SIGTERM in a worker: stop, shutting the adapter down on the way out."""


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_jobs() -> int:
    """`--jobs auto`: one worker per core, and one waiting worker (`waiting_workers`). More
    workers than cores that take any unit did not pay on the shared machine where it was
    measured (benchmarks/README.md): each worker's waits are calibrated on its own step times,
    which grow with every process competing for a core. The waiting worker takes only units
    that mostly wait, so it competes little for the cores."""
    return cores()


# Unit kinds whose time goes mostly to waiting, not to the processor (measured per unit: the
# identification of com_call spends 9 of its 10 s in 14 Cancel(ulSeconds 1) calls the test server
# holds; a race or the generated parallel cases sleep between their branches' steps).
WAITING = frozenset({"ident", "race", "generated"})


def waiting_workers(requested: int | None, workers: int, chosen: Sequence[units.Unit]) -> int:
    """How many waiting workers (see the module's doc) a run adds to its `workers`: one with
    `--jobs auto` (`requested` None) when it runs in several processes and has units of a
    `WAITING` kind; none when the number was given (`--jobs N` is N processes) or the run is in
    one process."""
    if requested is not None or workers <= 1:
        return 0
    return 1 if any(u.kind in WAITING for u in chosen) else 0


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def plan_workers(requested: int | None, caps: Capabilities, factory: AdapterFactory | None,
                 record_trace: bool, unit_count: int) -> tuple[int, str]:
    """How many workers a run uses (`requested` None: automatic), and a note when it is fewer
    than asked for, saying why."""
    wanted = auto_jobs() if requested is None else requested
    if wanted <= 1:
        return 1, ""
    reason = ""
    if caps.sessions != "many":
        reason = (f"the adapter declares sessions {caps.sessions!r}: it cannot run several "
                  f"sessions at once, so the run uses one process")
    elif factory is None:
        reason = "no way to start the adapter again in a worker process was given"
    elif record_trace:
        reason = "--record-trace writes one trace from one process"
    elif not can_fork():
        reason = "this platform cannot fork worker processes"
    if reason:
        return 1, f"--jobs {wanted} ran as --jobs 1: {reason}"
    return max(1, min(wanted, unit_count)), ""


# --- the worker ------------------------------------------------------------------------------


def _worker(conn: Connection, factory: AdapterFactory, caps: Capabilities,
            plan: sequences.Plan, options: Any) -> None:
    """A worker process: run the units the parent sends, one at a time, until it sends None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us

    def on_term(signum: int, frame: object) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, on_term)
    adapter: Adapter | None = None
    runner: CaseRunner | None = None
    try:
        adapter = factory()
        declared = adapter.capabilities()
        if declared != caps:
            raise WorkerFailed(f"the adapter started in a worker declared other capabilities "
                               f"than in the parent (parent: {caps}; worker: {declared})")
        runner = CaseRunner(adapter, caps, options.step_timeout,
                            ValueChooser(options.seed, fixed=options.fixed_values),
                            options.expectations,
                            waits=WaitLengths(calibrate=not options.full_waits))
        while (message := conn.recv()) is not None:
            index, unit = message

            def say(text: str, index: int = index) -> None:
                conn.send(("say", index, text))

            for result in units.run_unit(runner, plan, options, unit, say):
                conn.send(("case", index, result))
            conn.send(("done", index))
        runner.close()
        waits = runner.waits.summary()
        runner = None
        from callgate.conformance.gate import _left_behind

        conn.send(("bye", waits, _left_behind(adapter)))
    except (_Stop, EOFError, BrokenPipeError):
        pass  # stopped by the parent, or the parent is gone
    except BaseException as exc:  # reported to the parent, which aborts the run
        with contextlib.suppress(OSError, ValueError):
            conn.send(("fatal", f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=20)))
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the adapter shut down whole
        for close in ((runner.close if runner is not None else None),
                      (adapter.shutdown if adapter is not None else None)):
            with contextlib.suppress(Exception):  # an adapter already broken
                if close is not None:
                    close()
        conn.close()


# --- the parent ------------------------------------------------------------------------------


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    unit: int | None = None  # the index of the unit it runs
    cases: int = 0  # results it sent for that unit
    started: float = 0.0
    bye: bool = False
    waiting: bool = False  # takes only units of a WAITING kind


@dataclass
class ParallelRun:
    """Run `chosen` in `workers` processes. `record(index, result)` records a result (the run's
    order is kept here); `unit_done(unit, finished)` hears that a unit ended (in any order, with
    how many have), `say(index, text)` a worker's progress line."""

    factory: AdapterFactory
    caps: Capabilities
    plan: sequences.Plan
    options: Any
    chosen: Sequence[units.Unit]
    workers: int
    record: Callable[[int, CaseResult], None]
    unit_done: Callable[[units.Unit, int], None]
    say: Callable[[int, str], None]
    waiting: int = 0  # waiting workers besides `workers` (`waiting_workers`)
    waits: list[dict[str, Any]] = field(default_factory=list)
    orphans: list[dict[str, Any]] = field(default_factory=list)
    deaths: int = 0
    received: int = 0  # results the workers sent (recorded or still held back for the order)
    _pool: list[_Worker] = field(default_factory=list)
    _pending: list[int] = field(default_factory=list)
    _buffers: dict[int, list[CaseResult]] = field(default_factory=dict)
    _finished: set[int] = field(default_factory=set)
    _next: int = 0  # the first unit not yet recorded whole

    def run(self) -> None:
        """Run every unit; returns when all are recorded and every worker has said goodbye."""
        self._pending = units.longest_first(self.chosen)  # recorded in the run's order still
        self._buffers = {i: [] for i in self._pending}
        for _ in range(min(self.workers, len(self._pending))):
            self._start()
        for _ in range(self.waiting):
            if any(self.chosen[i].kind in WAITING for i in self._pending):
                self._start(waiting=True)
        while self._pool:
            conns: list[Any] = [w.conn for w in self._pool]
            ready = wait(conns + [w.process.sentinel for w in self._pool])
            for worker in list(self._pool):
                if worker.conn in ready:
                    self._read(worker)
                elif worker.process.sentinel in ready:
                    self._drain(worker)
                    self._gone(worker)
        if self._next < len(self.chosen):  # cannot happen: every unit ends recorded or errs
            raise WorkerFailed(f"the workers ended with unit {self.chosen[self._next].id} "
                               f"unrecorded")

    def stop(self) -> None:
        """End every worker still running (SIGTERM, then SIGKILL after `STOP_GRACE`)."""
        for worker in self._pool:
            if worker.process.is_alive():
                worker.process.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for worker in self._pool:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1.0)
            worker.conn.close()
        self._pool.clear()

    def flush(self) -> None:
        """Record what every unit not yet recorded sent (in the run's order): on an abort, so
        that what finished is kept."""
        for index in range(self._next, len(self.chosen)):
            for result in self._buffers.get(index, []):
                self.record(index, result)
            self._buffers[index] = []
        self._next = len(self.chosen)

    def _start(self, waiting: bool = False) -> None:
        context = multiprocessing.get_context("fork")
        parent, child = context.Pipe()
        process = context.Process(target=_worker, name="callgate-worker", daemon=True,
                                  args=(child, self.factory, self.caps, self.plan, self.options))
        process.start()
        child.close()
        worker = _Worker(process, parent, waiting=waiting)
        self._pool.append(worker)
        self._hand_out(worker)

    def _next_for(self, worker: _Worker) -> int | None:
        """The position in `_pending` of the next unit for `worker` (None: nothing for it)."""
        if not worker.waiting:
            return 0 if self._pending else None
        return next((n for n, i in enumerate(self._pending)
                     if self.chosen[i].kind in WAITING), None)

    def _hand_out(self, worker: _Worker) -> None:
        position = self._next_for(worker)
        if position is not None:
            index = self._pending.pop(position)
            worker.unit, worker.cases, worker.started = index, 0, time.perf_counter()
            message: tuple[int, units.Unit] | None = (index, self.chosen[index])
        else:
            worker.unit = message = None
        try:
            worker.conn.send(message)
        except OSError:  # it died: its unit (if any) is an error case, as for any death
            self._gone(worker)

    def _read(self, worker: _Worker) -> None:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            self._gone(worker)
            return
        self._handle(worker, message)

    def _drain(self, worker: _Worker) -> None:
        try:
            while worker.conn.poll():
                self._handle(worker, worker.conn.recv())
        except (EOFError, OSError):
            pass

    def _handle(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "case":
            worker.cases += 1
            self.received += 1
            self._buffers[message[1]].append(message[2])
            self._advance()
        elif kind == "say":
            self.say(message[1], message[2])
        elif kind == "done":
            self._unit_ended(message[1])
            self._hand_out(worker)
        elif kind == "bye":
            worker.bye = True
            self.waits.append(message[1])
            if message[2] is not None:
                self.orphans.append(message[2])
        elif kind == "fatal":
            raise WorkerFailed(f"in a worker process: {message[1]}\n{message[2]}")

    def _gone(self, worker: _Worker) -> None:
        """A worker's pipe closed: after its goodbye that is its end; before, it died."""
        if worker not in self._pool:
            return
        self._pool.remove(worker)
        worker.process.join(STOP_GRACE)
        worker.conn.close()
        if worker.bye or worker.unit is None:
            return
        self.deaths += 1
        index = worker.unit
        unit = self.chosen[index]
        code = worker.process.exitcode
        how = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exit code {code}")
        self._buffers[index].append(CaseResult(
            id=f"{unit.id}:worker", kind=WORKER_KIND,
            description=f"unit {unit.id}, run in a worker process", rules=[],
            verdict=Verdict.ERROR, steps=0,
            seconds=round(time.perf_counter() - worker.started, 3),
            message=(f"the worker process running unit {unit.id} died ({how}) after "
                     f"{worker.cases} of its cases: the rest of the unit did not run, so what "
                     f"it tests was not shown to hold"),
            evidence=f"worker pid {worker.process.pid}, {how}"))
        self._unit_ended(index)
        if self._pending:
            self._start(worker.waiting)

    def _unit_ended(self, index: int) -> None:
        self._finished.add(index)
        self.unit_done(self.chosen[index], len(self._finished))
        self._advance()

    def _advance(self) -> None:
        """Record what can be recorded in the run's order: the results of the first unrecorded
        unit, and of the units after it once it has ended."""
        while self._next < len(self.chosen):
            buffered = self._buffers[self._next]
            self._buffers[self._next] = []
            for result in buffered:
                self.record(self._next, result)
            if self._next not in self._finished:
                return
            self._next += 1


def merge_waits(summaries: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The waits of several worker sessions as one summary: the longest look any worker
    calibrated, the calibration steps and shortened waits added up, and each worker's own."""
    if not summaries:
        return None
    looks = [s["look_ms"] for s in summaries if s.get("look_ms") is not None]
    return {"calibrated": all(bool(s.get("calibrated")) for s in summaries),
            "look_ms": max(looks) if looks else None,
            "calibration_steps": sum(int(s.get("calibration_steps") or 0) for s in summaries),
            "shortened": sum(int(s.get("shortened") or 0) for s in summaries),
            "workers": list(summaries)}


def merge_orphans(found: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """What several adapters left behind, as one record (None when none starts processes)."""
    known = [f for f in found if f is not None]
    if not known:
        return None
    return {"killed": sum(int(f.get("killed") or 0) for f in known),
            "checked": all(bool(f.get("checked")) for f in known),
            "processes": [p for f in known for p in f.get("processes", [])][:20]}
