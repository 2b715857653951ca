"""Parallel cases: a sequential prefix, then branches run at once on real threads, judged by
linearizability against the model.

A `ParallelCase` declares its slots, a prefix (run and judged step by step, as any case) and two
or more branches. After the prefix, one thread per branch performs its actions against the same
session, all released together by a barrier; every action's invocation and response are recorded
with timestamps in a history. `callgate.conformance.judge.linearizability` then asks whether some
sequential order of the history, respecting real time, is one the model allows (DESIGN.md
principle 1: the model is the sequential specification).

Each case runs several times (`runs`) to sample schedules; `stagger` adds a random pause of up to
that many seconds before each branch action, and the reference adapter's own `jitter` pauses
inside the implementation, to widen the races. An action that does not answer within the step
timeout, or whose adapter call raises, has an unknown outcome: the checker treats it as Knossos
treats `info` (it may or may not have taken effect), and the case is an `error` unless the
history is not linearizable even so.

The package, one concern a module:

* `case`: the `ParallelCase` type, and `interleavings` (is every interleaving sound?);
* `races`: the named directed races, `race_cases`;
* `generation`: `generated_cases`, the Hypothesis strategy that builds cases from the model, and
  `run_generated`, which runs them and shrinks a failure within its bounds;
* `threads`: running the branches on threads (`execute_branches`) and recording the history;
* `judging`: `run_parallel`, a case run several times and judged by linearizability (a pass
  needs a run whose branches overlapped; an adapter that serves one request at a time gets
  every parallel case `not_applicable`, `SERIAL_ADAPTER`);
* `phase`: `parallel_phase`, what the gate calls, and `replay_parallel`.

This module re-exports the names callers use, so they import from `cases.parallel` alone.
"""

from callgate.conformance.cases.parallel.case import (
    KIND,
    Interleavings,
    ParallelCase,
    describe,
    interleavings,
    prefix_states,
)
from callgate.conformance.cases.parallel.generation import (
    ParallelBudget,
    ParallelFailed,
    generated_cases,
    generation_slots,
    run_generated,
)
from callgate.conformance.cases.parallel.judging import SERIAL_ADAPTER, run_parallel
from callgate.conformance.cases.parallel.phase import (
    parallel_count,
    parallel_phase,
    replay_parallel,
)
from callgate.conformance.cases.parallel.races import _a, race_cases
from callgate.conformance.cases.parallel.threads import execute_branches

__all__ = [
    "KIND",
    "SERIAL_ADAPTER",
    "Interleavings",
    "ParallelBudget",
    "ParallelCase",
    "ParallelFailed",
    "_a",
    "describe",
    "execute_branches",
    "generated_cases",
    "generation_slots",
    "interleavings",
    "parallel_count",
    "parallel_phase",
    "prefix_states",
    "race_cases",
    "replay_parallel",
    "run_generated",
    "run_parallel",
]
