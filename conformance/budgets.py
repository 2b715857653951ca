"""The budgets of a gate run (quick, standard, deep): how much it does beyond the directed cases.

A module of its own, with no heavy imports, so that the pytest plugin can offer the names as
choices without loading the harness.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """How much a run does beyond the directed cases (which always cover every transition)."""

    name: str
    stateful_rounds: int
    stateful_examples: int
    stateful_steps: int
    # Parallel cases (callgate.conformance.cases.parallel): generated cases beyond the named races, and how
    # many times each case runs to sample schedules.
    parallel_examples: int = 0
    parallel_runs: int = 3
    # Multi-object cases (callgate.conformance.cases.multi): sessions per composition, and the
    # steps of each (0 sessions: none).
    multi_cases: int = 0
    multi_steps: int = 400
    # Stateful rounds over the multi-object cases' coupled sets too (two or three objects of
    # one kind: c0 c1 c2, r0 r1, e0 e1), after the usual ones.
    stateful_coupled: bool = False
    # The multi-object compositions left out (by name; callgate.conformance.cases.multi).
    multi_skip: tuple[str, ...] = ()
    # State identification after the walk (callgate.conformance.cases.identify): steps per
    # machine; whether every transition (not only each state's first) is followed by one more
    # input and then the identifying sequences (m-complete for one extra state).
    # The class phase first identifies each class of states once (its cheapest reached state),
    # within identify_class_steps steps per machine.
    identify_steps: int = 0
    identify_complete: bool = False
    identify_class_steps: int = 0
    # Merged-form continuations (callgate.conformance.cases.forms): steps per machine (0: none)
    # and how many state-changing steps each continuation takes after the form.
    forms_steps: int = 0
    forms_depth: int = 1


BUDGETS: dict[str, Budget] = {
    "quick": Budget("quick", 1, 15, 15, parallel_examples=10, parallel_runs=3,
                    multi_cases=3, multi_steps=150, multi_skip=("rpc_call-triple",),
                    identify_steps=1000, identify_class_steps=1000, forms_steps=300),
    "standard": Budget("standard", 1, 40, 20, parallel_examples=40, parallel_runs=3,
                       multi_cases=20, multi_steps=400, multi_skip=("rpc_call-triple",),
                       identify_steps=3000, identify_class_steps=10_000, forms_steps=1200),
    "deep": Budget("deep", 4, 300, 40, parallel_examples=300, parallel_runs=5,
                   multi_cases=60, multi_steps=800, stateful_coupled=True,
                   identify_steps=200_000, identify_complete=True,
                   identify_class_steps=10_000, forms_steps=20_000, forms_depth=2),
}
