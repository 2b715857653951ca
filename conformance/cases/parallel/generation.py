"""Hypothesis generation of parallel cases from the model, and running them with bounded shrinking.

`generated_cases` is the strategy: a prefix walked through the model, then branches whose every
interleaving keeps every action DEFINED. `run_generated` runs a budget of them; a failure is
shrunk by Hypothesis, within `SHRINK_CASES`, since a race does not fail on every run. The
generated cases pass together only if some run of some case overlapped (operations of different
branches in flight at once); only the rules of cases that overlapped count as exercised.
"""

from __future__ import annotations

import contextlib
import random
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace

import hypothesis.strategies as st
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky

from callgate.conformance.cases.parallel.case import (
    KIND,
    ParallelCase,
    describe,
    interleavings,
    prefix_states,
)
from callgate.conformance.cases.parallel.judging import parallel_result, run_parallel, serial_reason
from callgate.conformance.cases.slots import available, default_slot
from callgate.conformance.judge.linearizability import Linearizability
from callgate.conformance.judge.perform import action_features
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.protocol.adapter import SlotSpec
from callgate.conformance.results import CaseResult, Verdict
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, Pins

# Generated cases: how long the prefix and how many branch actions, at most.
MAX_PREFIX = 4
MAX_BRANCH_ACTIONS = 6
MAX_BRANCHES = 3
# How many cases Hypothesis may try while shrinking a failure. A race does not fail on every
# run, so shrinking a flaky failure can go on for long; past this the smallest failing case seen
# is reported.
SHRINK_CASES = 60
# And how long (seconds after the first failure) shrinking may take in all.
SHRINK_SECONDS = 30.0
# The slot sets generated cases draw from, by slot name (see `callgate.conformance.cases.slots`):
# each object kind alone (races on one object), and a call object beside an event (two objects
# of one session at once). Hypothesis draws an index into this list, so its order is part of
# what a seed generates.
GENERATION_SLOTS = (("c0",), ("e0",), ("r0",), ("k0",), ("c0", "e0"))


def generation_slots(features: frozenset[str]) -> list[tuple[SlotSpec, ...]]:
    """The slot sets of `GENERATION_SLOTS` whose kinds of object the adapter has."""
    sets = [tuple(default_slot(name) for name in names) for names in GENERATION_SLOTS]
    return [slots for slots in sets if available(slots, features)]


def _actions(slots: Sequence[SlotSpec], features: frozenset[str]) -> list[Action]:
    """Every action on the slots that the adapter's features allow."""
    out = []
    for slot in slots:
        machine = MACHINES[slot.machine]
        for operation in machine.operations:
            for args in operation.all_args():
                action = Action(slot.name, operation.name, args)
                if action_features(slot.machine, action) <= features:
                    out.append(action)
    return out


def _pick(draw: st.DrawFn, options: Sequence[Action], label: str) -> Action:
    """An action: first its slot and operation, then its arguments, so an operation with many
    argument values (QueryInterface) is not drawn more often than one with none (Begin_)."""
    names = sorted({(a.slot, a.op) for a in options})
    slot, op = draw(st.sampled_from(names), label=label)
    return draw(st.sampled_from([a for a in options if (a.slot, a.op) == (slot, op)]),
                label=f"{label} arguments")


def generated_cases(features: frozenset[str], pins: Pins,
                    slot_sets: Sequence[tuple[SlotSpec, ...]] | None = None
                    ) -> st.SearchStrategy[ParallelCase]:
    """Hypothesis strategy: a prefix walked through the model, then 2 or 3 branches whose every
    interleaving keeps every action DEFINED (PropEr's rule for parallel cases).

    Two biases make the races that matter likely, without excluding anything: the prefix
    prefers actions that change the model's state (so it gets somewhere: a call object with a
    call in flight, an event created), and a branch action is often one another branch already
    has (the same operation racing itself is where check-then-set races live)."""
    choices = list(slot_sets) if slot_sets is not None else generation_slots(features)

    @st.composite
    def build(draw: st.DrawFn) -> ParallelCase:
        slots = draw(st.sampled_from(choices))
        actions = _actions(slots, features)
        prefix: list[Action] = []
        for _ in range(draw(st.integers(0, MAX_PREFIX), label="prefix length")):
            before, _, _ = prefix_states(slots, prefix, pins)
            options = [a for a in actions if interleavings(slots, [*prefix, a], [], pins).sound]
            if not options:
                break
            moving = [a for a in options
                      if prefix_states(slots, [*prefix, a], pins)[0][a.slot] != before[a.slot]]
            prefer = draw(st.integers(0, 3), label="prefer a move")
            if moving and prefer:
                options = moving
            prefix.append(_pick(draw, options, "prefix action"))
        count = draw(st.integers(2, MAX_BRANCHES), label="branches")
        branches: list[list[Action]] = [[] for _ in range(count)]
        for _ in range(draw(st.integers(2, MAX_BRANCH_ACTIONS), label="branch actions")):
            b = draw(st.integers(0, count - 1), label="branch")
            options = [a for a in actions if interleavings(
                slots, prefix, [*branches[:b], [*branches[b], a], *branches[b + 1:]],
                pins).sound]
            if not options:
                continue
            elsewhere = {a for i, other in enumerate(branches) if i != b for a in other}
            same = [a for a in options if a in elsewhere]
            itself = draw(st.integers(0, 1), label="race an action with itself")
            if same and itself:
                options = same
            branches[b].append(_pick(draw, options, "branch action"))
        kept = tuple(tuple(b) for b in branches if b)
        assume(len(kept) >= 2)
        plan = interleavings(slots, prefix, kept, pins)
        return ParallelCase(
            "parallel-generated", "a generated parallel case", slots, tuple(prefix), kept,
            plan.rules)

    return build()


class ParallelFailed(AssertionError):
    """A generated parallel case failed (or erred); Hypothesis shrinks it."""


@dataclass(frozen=True)
class ParallelBudget:
    """How many generated cases, and how many runs of each case."""

    examples: int
    runs: int
    stagger: float = 0.001


def run_generated(runner: CaseRunner, budget: ParallelBudget, seed: int,
                  case_id: str = "parallel-generated",
                  slot_sets: Sequence[tuple[SlotSpec, ...]] | None = None) -> CaseResult:
    """Run `budget.examples` generated parallel cases over `slot_sets` (default: every kind the
    adapter supports, `generation_slots`); a failure comes back shrunk (the smallest failing case
    Hypothesis found), with its history."""
    started = time.perf_counter()
    features = frozenset(runner.capabilities.features)
    slot_sets = list(slot_sets) if slot_sets is not None else generation_slots(features)
    description = (f"{budget.examples} generated parallel cases, each run {budget.runs} times, "
                   f"with linearizability judged against the model (seed {seed})")
    empty = ParallelCase(case_id, description, (), (), ())
    if not slot_sets or budget.examples <= 0:
        return parallel_result(empty, Verdict.NOT_APPLICABLE, started, message=(
            "the adapter declares none of the features parallel cases drive"))
    if serial_reason(runner.capabilities):
        return parallel_result(empty, Verdict.NOT_APPLICABLE, started,
                               message=serial_reason(runner.capabilities))
    failures: list[tuple[ParallelCase, CaseResult]] = []
    counts = {"cases": 0, "ops": 0, "runs": 0, "overlapped_runs": 0, "overlapped_cases": 0}
    last: list[CaseResult] = []  # the latest case's result: its history is the one shown
    exercised: dict[str, None] = {}
    shrinking = {"runs": 0, "since": 0.0}
    rng = random.Random(seed)

    @settings(max_examples=budget.examples, deadline=None, database=None, derandomize=False,
              print_blob=False, report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck))
    @given(generated_cases(features, runner.capabilities.pins, slot_sets))
    def test(case: ParallelCase) -> None:
        if failures:
            if any(r.verdict is Verdict.ERROR for _, r in failures):
                return  # an error (a hang, a crash) is reported as seen, never shrunk through
            shrinking["runs"] += 1
            if (shrinking["runs"] > SHRINK_CASES
                    or time.perf_counter() - shrinking["since"] > SHRINK_SECONDS):
                return  # enough shrinking: the smallest failure so far is the answer
        result = run_parallel(runner, case, budget.runs, budget.stagger, rng.randrange(2 ** 32),
                              require_overlap=False)
        counts["cases"] += 1
        counts["ops"] += result.steps
        counts["runs"] += result.runs
        counts["overlapped_runs"] += result.overlapped_runs
        last[:] = [result]
        if result.overlapped_runs:
            counts["overlapped_cases"] += 1
            exercised.update(dict.fromkeys(case.rules))
        if result.verdict in (Verdict.FAIL, Verdict.ERROR):
            if not failures:
                shrinking["since"] = time.perf_counter()
            failures.append((case, result))
            if result.verdict is Verdict.FAIL:
                raise ParallelFailed(result.message)

    try:
        with contextlib.suppress(ParallelFailed, Flaky):
            hypothesis_seed(seed)(test)()
    except Exception as exc:  # the harness's own failure: the case's error, never a pass
        return parallel_result(empty, Verdict.ERROR, started,
                               evidence="".join(traceback.format_exception(exc)),
                               runs=counts["runs"], overlapped_runs=counts["overlapped_runs"],
                               message=f"the harness failed while running generated parallel "
                                       f"cases: {type(exc).__name__}: {exc}")
    rules = sorted(exercised)
    overlap_text = (f"{counts['overlapped_cases']} of them overlapped (operations of different "
                    f"branches in flight at once) in {counts['overlapped_runs']} of "
                    f"{counts['runs']} runs")
    if not failures:
        verdict = Verdict.PASS if counts["overlapped_runs"] else Verdict.ERROR
        message = (f"{counts['cases']} cases, {overlap_text}; {counts['ops']} concurrent "
                   f"operations: every history linearizable")
        if verdict is Verdict.ERROR:
            message = (f"the races were not exercised: no two branches' operations overlapped in "
                       f"{counts['runs']} runs of {counts['cases']} cases (every history was "
                       f"linearizable)")
        history = last[0].history if last else []
        return parallel_result(
            replace(empty, rules=tuple(rules)), verdict, started, steps=counts["ops"],
            history=history, trace=history if verdict is Verdict.ERROR else (),
            linearizability=Linearizability.LINEARIZABLE.value, runs=counts["runs"],
            overlapped_runs=counts["overlapped_runs"], message=message)
    # The smallest failing case seen: Hypothesis's shrinking result when it reproduced, else the
    # smallest one a race let through.
    case, result = min(failures, key=lambda f: (f[1].verdict is not Verdict.FAIL, f[0].size()))
    shown = replace(case, id=case_id, description=description + "; the smallest failing case: "
                    + describe(case))
    return replace(result, id=case_id, kind=KIND, description=shown.description,
                   rules=list(case.rules), replay=shown.replay(),
                   seconds=time.perf_counter() - started)
