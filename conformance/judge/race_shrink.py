"""Shrinks a parallel case that failed among its concurrent branches.

A race does not fail on every run, so the sequential shrinker's rule (run a candidate once, keep
it if it fails) does not apply. Here a candidate is a smaller *program* (prefix, branches,
suffix: the `ParallelCase` read back from the failing result's replay), and it is run up to
`RaceBudget.attempts` times (N), each run against a fresh session and judged by linearizability
as the parallel cases are (`run_parallel`, one run at a time). It is accepted when one of those
runs fails for the same reason as the case being shrunk (`Reason`: a `fail` whose culprit is the
same operation on the same machine, citing the same rules).

The passes, on the program:

1. Whole parts: the suffix, each branch, then the prefix from its end, are dropped if the
   failure survives without them.
2. Single steps: every step of the prefix, of each branch and of the suffix is removed in turn;
   an accepted removal starts the pass again, until no single removal is accepted.

A candidate whose every interleaving the model does not keep DEFINED (a branch action that needs
a prefix step just removed) is not run: it is not a valid case, so that removal is not possible
(`rejected["unsound"]`). A branch left empty is dropped; a candidate keeps at least one branch.

What "1-minimal" means here, and it is a probabilistic claim: `one_minimal` is True when every
single-step removal of the final program was either not a valid case or was run N times without
failing the same way. A removal that loses the race only most of the time could still have been
accepted with more runs; with a reproduction rate p, a removal that reproduces as often as the
original escapes N runs with probability (1 - p)^N. So the result reports the final program's
reproduction rate (`reproduced` of `reproduce_runs` fresh runs, after shrinking) beside N
(`attempts`), and the note says the claim is probabilistic.

The shrinking has its own budget (`RaceBudget`: runs in all, and seconds); when it runs out, the
smallest program that failed is reported with `one_minimal` False and the note says why.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from callgate.conformance.cases.parallel.case import ParallelCase, describe, interleavings
from callgate.conformance.cases.parallel.judging import run_parallel
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.judge.shrink import Reason, replay_slot_specs
from callgate.conformance.protocol.adapter import SlotSpec
from callgate.conformance.results import CaseResult, Verdict
from callgate.model.families import MACHINES
from callgate.model.transitions import Action

# N: how many runs a candidate gets to fail the same way (and the final program's reruns that
# measure its reproduction rate).
ATTEMPTS = 8
# The budget of one race's shrinking: runs in all, and wall-clock seconds. Each candidate may
# run N times, and a run that fails at a notification the model requires waits the full 2 s
# (`perform.NOTIFY_EXPECTED_MS`): showing a 6-step program 1-minimal when two of its removals
# fail another way there takes 2 x 8 x 2 s alone (`abort_cancel_not_rushed`, whose shrinking
# ran out of a 30 s budget at a load average of 8 to 17 and was then not minimal).
RUNS = 400
SECONDS = 60.0

Program = tuple[tuple[Action, ...], tuple[tuple[Action, ...], ...], tuple[Action, ...]]


@dataclass(frozen=True)
class RaceBudget:
    """How much one race's shrinking may cost, and how often each candidate is run."""

    attempts: int = ATTEMPTS
    runs: int = RUNS
    seconds: float = SECONDS
    stagger: float = 0.001


def size(program: Program) -> int:
    prefix, branches, suffix = program
    return len(prefix) + sum(len(b) for b in branches) + len(suffix)


def program_of(result: CaseResult) -> tuple[tuple[SlotSpec, ...], Program] | None:
    """The slots and the program of a parallel result, read back from its replay; None when the
    replay has no branches (not a parallel case)."""
    replay = result.replay
    if not replay.get("branches"):
        return None

    def actions(steps: Sequence[Mapping[str, Any]]) -> tuple[Action, ...]:
        out = []
        for s in steps:
            machine = MACHINES[result.slots[s["slot"]]]
            params = [p.name for p in machine.operation(s["op"]).params]
            out.append(Action(s["slot"], s["op"], tuple((n, s["args"][n]) for n in params)))
        return tuple(out)

    program = (actions(replay.get("steps", [])),
               tuple(actions(b) for b in replay["branches"]),
               actions(replay.get("suffix", [])))
    return replay_slot_specs(result), program


def single_removals(program: Program) -> Iterator[Program]:
    """Every program with one step fewer (an emptied branch dropped, at least one branch kept)."""
    prefix, branches, suffix = program
    for i in range(len(prefix)):
        yield (prefix[:i] + prefix[i + 1:], branches, suffix)
    for b, branch in enumerate(branches):
        for i in range(len(branch)):
            cut = branch[:i] + branch[i + 1:]
            kept = tuple(x for x in (*branches[:b], cut, *branches[b + 1:]) if x)
            if kept:
                yield (prefix, kept, suffix)
    for i in range(len(suffix)):
        yield (prefix, branches, suffix[:i] + suffix[i + 1:])


def part_removals(program: Program) -> Iterator[Program]:
    """Bigger cuts first: the suffix, each whole branch, the prefix's tail (halves)."""
    prefix, branches, suffix = program
    if suffix:
        yield (prefix, branches, ())
    if len(branches) > 1:
        for b in range(len(branches)):
            yield (prefix, branches[:b] + branches[b + 1:], suffix)
    for keep in sorted({0, len(prefix) // 2}):
        if keep < len(prefix):
            yield (prefix[:keep], branches, suffix)


@dataclass
class RaceShrinker:
    """Shrinks one parallel case that failed among its branches (see the module's docstring)."""

    runner: CaseRunner
    template: ParallelCase
    reason: Reason
    budget: RaceBudget = field(default_factory=RaceBudget)
    seed: int = 0
    clock: Callable[[], float] = time.monotonic
    runs: int = 0
    stopped: str = ""
    rejected: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.started = self.clock()
        self.rng = random.Random(self.seed)
        self._tried: dict[Program, CaseResult | None] = {}

    def case(self, program: Program) -> ParallelCase:
        prefix, branches, suffix = program
        plan = interleavings(self.template.slots, prefix, branches, self.runner.capabilities.pins,
                             suffix)
        return replace(self.template, prefix=prefix, branches=branches, suffix=suffix,
                       rules=plan.rules, conflict=())

    def over(self) -> bool:
        if not self.stopped:
            spent = self.clock() - self.started
            if self.runs >= self.budget.runs:
                self.stopped = f"the race shrinking budget ran out ({self.runs} runs)"
            elif spent >= self.budget.seconds:
                self.stopped = f"the race shrinking budget ran out ({spent:.1f} s, {self.runs} runs)"
        return bool(self.stopped)

    def _reject(self, why: str) -> None:
        self.rejected[why] = self.rejected.get(why, 0) + 1

    def run_once(self, case: ParallelCase) -> CaseResult:
        self.runs += 1
        return run_parallel(self.runner, case, 1, self.budget.stagger,
                            self.rng.randrange(2 ** 32), require_overlap=False)

    def same(self, result: CaseResult) -> bool:
        return result.verdict is Verdict.FAIL and Reason.of(result) == self.reason

    def attempt(self, program: Program) -> CaseResult | None:
        """Run `program` up to N times; its first run that fails the same way, else None. A
        program the budget stopped before all N runs is not recorded as tried."""
        if program in self._tried:
            return self._tried[program]
        prefix, branches, suffix = program
        if not interleavings(self.template.slots, prefix, branches,
                             self.runner.capabilities.pins, suffix).sound:
            self._reject("unsound")
            self._tried[program] = None
            return None
        case = self.case(program)
        why = "passed"
        for _ in range(self.budget.attempts):
            if self.over():
                return None
            result = self.run_once(case)
            if self.same(result):
                self._tried[program] = result
                return result
            if result.verdict is Verdict.FAIL:
                why = "failed another way"
            elif result.verdict in (Verdict.ERROR, Verdict.NOT_APPLICABLE):
                why = result.verdict.value  # a hang or a refused case: this candidate shows nothing
                break
        self._reject(why)
        self._tried[program] = None
        return None

    def tried(self, program: Program) -> bool:
        return program in self._tried

    def shrink(self, program: Program, failed: CaseResult) -> tuple[Program, CaseResult, bool]:
        """The smallest program that failed the same way, its failing run, and whether it was
        shown 1-minimal (every single removal tried N times, or not a valid case)."""
        self._tried[program] = failed
        best, best_result = program, failed
        improved = True
        while improved and not self.over():
            improved = False
            for candidate in part_removals(best):
                got = self.attempt(candidate)
                if got is not None:
                    best, best_result, improved = candidate, got, True
                    break
        while not self.over():
            for candidate in single_removals(best):
                got = self.attempt(candidate)
                if got is not None:
                    best, best_result = candidate, got
                    break
                if not self.tried(candidate):
                    return best, best_result, False
            else:
                return best, best_result, True
        return best, best_result, False

    def reproduction(self, program: Program) -> int:
        """How many of N fresh runs of `program` fail the same way (not limited by the budget:
        it is what the report states about the counterexample)."""
        case = self.case(program)
        return sum(1 for _ in range(self.budget.attempts) if self.same(self.run_once(case)))


def not_shrunk(failed: CaseResult, why: str) -> CaseResult:
    """`failed` as it is, reported as not shrunk (and so not shown minimal), with why."""
    length = len(failed.trace)
    return replace(failed, length_before=length, length_after=length, shrink={
        "length_before": length, "length_after": length, "reruns": 0, "seconds": 0.0,
        "one_minimal": False, "rejected": {}, "note": f"not shrunk: {why}"})


def shrink_race(runner: CaseRunner, failed: CaseResult, budget: RaceBudget | None = None,
                seed: int = 0, clock: Callable[[], float] = time.monotonic) -> CaseResult:
    """`failed` (a parallel case that failed among its branches) with its program shrunk, the
    failing run of the smallest program as its trace and history, and the shrinking reported
    (`length_before` and `length_after` count the program's steps: prefix, branches, suffix)."""
    reason = Reason.of(failed)
    if reason is None:
        return failed
    read = program_of(failed)
    if reason.error or read is None:
        return not_shrunk(failed, "an error among concurrent branches" if reason.error
                          else "the replay holds no program to run again")
    slots, program = read
    budget = budget or RaceBudget()
    template = ParallelCase(failed.id, failed.description, slots, program[0], program[1],
                            tuple(failed.rules), program[2], failed.kind)
    shrinker = RaceShrinker(runner, template, reason, budget, seed, clock)
    best, result, minimal = shrinker.shrink(program, failed)
    reproduced = shrinker.reproduction(best)
    seconds = clock() - shrinker.started
    before, after = size(program), size(best)
    if minimal:
        note = (f"probabilistic: every single-step removal was run {budget.attempts} times "
                f"(or is not a valid case) without failing the same way")
    else:
        note = shrinker.stopped or "not shown minimal"
    shown = shrinker.case(best)
    return replace(
        failed, trace=result.trace, history=result.history, message=result.message,
        evidence=result.evidence, failed_rules=result.failed_rules, runs=result.runs,
        overlapped_runs=result.overlapped_runs,
        description=f"{failed.description}; shrunk to: {describe(shown)}",
        replay=shown.replay(), covered=sorted(set(failed.covered) | set(result.covered)),
        original_length=before if after < before else 0,
        length_before=before, length_after=after,
        shrink={"length_before": before, "length_after": after,
                "reruns": shrinker.runs + budget.attempts, "seconds": round(seconds, 3),
                "one_minimal": minimal, "note": note,
                "rejected": dict(sorted(shrinker.rejected.items())),
                "attempts": budget.attempts, "reproduced": reproduced,
                "reproduce_runs": budget.attempts})
