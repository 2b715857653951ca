"""Stateful cases: a Hypothesis `RuleBasedStateMachine` generated from the model's tables.

No rule is written by hand: for every slot and every operation of the slot's machine, one rule is
made whose arguments are drawn from the operation's parameter domains. A rule runs only where the
model has the operation DEFINED in the slot's current state and the adapter has the features it
needs (PropEr-style preconditions). Each step asks the model for the allowed outcomes, checks the
observed one, and lets the model follow it; invariants are the model's own judgement at each
step. Failures shrink, and Hypothesis prints the minimal failing program as a replayable script.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, assume, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky
from hypothesis.stateful import RuleBasedStateMachine, get_state_machine_test, precondition, rule

from callgate.conformance.cases.slots import slots_named
from callgate.conformance.judge.runner import Case, CaseRunner, LiveCase
from callgate.conformance.protocol.adapter import SlotSpec
from callgate.conformance.results import CaseResult, StepRecord, Verdict
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, Args


class CaseFailed(AssertionError):
    """A step's observation fell outside the model's allowed outcomes (or the adapter broke)."""


@dataclass(frozen=True)
class StatefulBudget:
    """How much stateful testing to do."""

    examples: int
    steps: int


def _rule_name(slot: str, op: str) -> str:
    return f"{slot}__{op}"


def build_machine(runner: CaseRunner, slots: Sequence[SlotSpec],
                  runs: list[LiveCase]) -> type[RuleBasedStateMachine]:
    """A state-machine class driving `slots` through `runner`; every run is appended to `runs`."""

    class CallgateMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.live = runner.open(f"stateful-{len(runs)}", slots)
            runs.append(self.live)

        def teardown(self) -> None:
            self.live.close()

    def make_rule(slot: str, op: str, choices: list[Args]) -> Callable[..., None]:
        def offered(self: CallgateMachine) -> list[Args]:
            return [a for a in choices if self.live.offered(Action(slot, op, a))]

        def body(self: CallgateMachine, data: st.DataObject) -> None:
            args = data.draw(st.sampled_from(offered(self)), label="args")
            if not self.live.step(Action(slot, op, args)):
                if self.live.verdict in (Verdict.FAIL, Verdict.ERROR):
                    raise CaseFailed(self.live.message)
                assume(False)  # not applicable after all: discard this example

        body.__name__ = _rule_name(slot, op)
        guarded = precondition(lambda self: bool(offered(self)))(body)
        return rule(data=st.data())(guarded)

    for spec in slots:
        machine = MACHINES[spec.machine]
        for operation in machine.operations:
            setattr(CallgateMachine, _rule_name(spec.name, operation.name),
                    make_rule(spec.name, operation.name, operation.all_args()))
    return CallgateMachine


# The objects a stateful example holds, by slot name (see `callgate.conformance.cases.slots`):
# two call objects, so two calls can be in flight at once, and one object of each other kind.
STATEFUL_SLOTS = ("c0", "c1", "e0", "k0", "r0")


def default_slots(features: frozenset[str]) -> list[SlotSpec]:
    """The objects a stateful example uses: `STATEFUL_SLOTS` of the kinds the adapter supports."""
    return slots_named(STATEFUL_SLOTS, features)


def run_stateful(runner: CaseRunner, budget: StatefulBudget, seed: int,
                 slots: Sequence[SlotSpec] | None = None, case_id: str = "stateful") -> CaseResult:
    """Run the generated state machine; a failure comes back shrunk, with its minimal trace."""
    chosen = list(slots) if slots is not None else default_slots(runner.capabilities.features)
    case = Case(case_id, "stateful",
                f"{budget.examples} generated programs of up to {budget.steps} steps over "
                f"{', '.join(s.name + ':' + s.machine for s in chosen)} (seed {seed})",
                tuple(chosen), ())
    started = time.perf_counter()
    if not chosen:
        return runner.result(case, Verdict.NOT_APPLICABLE, started, [], set(),
                             message="the adapter declares none of the features stateful "
                                     "testing drives")
    runs: list[LiveCase] = []
    machine_class = build_machine(runner, chosen, runs)
    test = get_state_machine_test(machine_class, settings=settings(
        max_examples=budget.examples, stateful_step_count=budget.steps, deadline=None,
        database=None, derandomize=False, print_blob=False, report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck)))
    test = hypothesis_seed(seed)(test)
    failure: BaseException | None = None
    try:
        test()
    except (CaseFailed, Flaky) as exc:
        failure = exc
    except Exception as exc:  # the adapter raised something the runner did not expect
        failure = exc
    covered: set[str] = set()
    steps = 0
    for live in runs:
        covered |= live.covered
        steps += len(live.trace)
    if failure is None:
        result = runner.result(case, Verdict.PASS, started, [], covered,
                               message=f"{len(runs)} programs, {steps} steps")
        return _with_steps(result, steps)
    # Hypothesis replays the minimal failing program last, so the last run is the shrunk one.
    last = next((r for r in reversed(runs) if r.verdict in (Verdict.FAIL, Verdict.ERROR)), None)
    if last is None:
        return runner.result(case, Verdict.ERROR, started, [], covered,
                             message=f"the stateful run stopped: {failure!r}")
    shrunk = Case(case_id, "stateful", case.description, tuple(chosen),
                  tuple(Action(s.slot, s.op, tuple(s.args.items())) for s in last.trace))
    result = runner.result(shrunk, last.verdict, started, list(last.trace), covered,
                           message=last.message, evidence=last.evidence)
    return _with_steps(result, steps)


def _with_steps(result: CaseResult, steps: int) -> CaseResult:
    from dataclasses import replace
    return replace(result, steps=steps)


def trace_script(trace: Sequence[StepRecord]) -> str:
    """A failing trace as a replayable step script in Hypothesis's style."""
    lines = ["state = CallgateMachine()"]
    for step in trace:
        args: Any = tuple(step.args.items())
        lines.append(f"state.{_rule_name(step.slot, step.op)}(data=data(args={args!r}))")
    lines.append("state.teardown()")
    return "\n".join(lines)
