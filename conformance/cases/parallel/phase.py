"""The parallel phase the gate calls: every named race, then the generated cases; and the replay
of one parallel case.
"""

from __future__ import annotations

from collections.abc import Iterator

from callgate.conformance.cases.parallel.case import ParallelCase
from callgate.conformance.cases.parallel.generation import ParallelBudget, run_generated
from callgate.conformance.cases.parallel.judging import run_parallel
from callgate.conformance.cases.parallel.races import race_cases
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.protocol.adapter import Adapter
from callgate.conformance.results import CaseResult

# A named race runs this many times as often as the budget's runs of a generated case.
RACE_RUNS_FACTOR = 3


def replay_parallel(adapter: Adapter, case: ParallelCase, step_timeout: float = 10.0,
                    runs: int = 10) -> CaseResult:
    """`callgate replay` of a parallel case: run it `runs` times, stopping at a failure."""
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout)
    try:
        return run_parallel(runner, case, runs, stagger=0.001)
    finally:
        runner.close()


def parallel_count(examples: int) -> int:
    """How many results `parallel_phase` gives: one per named race, one for the generated cases."""
    return len(race_cases()) + (1 if examples else 0)


def parallel_phase(runner: CaseRunner, budget: ParallelBudget, seed: int
                   ) -> Iterator[CaseResult]:
    """The gate's parallel cases: every named race, then the generated cases. A named race is
    short and aims at one window, so it runs RACE_RUNS_FACTOR times as often as a generated case
    to sample more schedules."""
    for number, case in enumerate(race_cases()):
        yield run_parallel(runner, case, budget.runs * RACE_RUNS_FACTOR, budget.stagger,
                           seed + number)
    if budget.examples:
        yield run_generated(runner, budget, seed)
