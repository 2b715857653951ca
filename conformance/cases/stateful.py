"""Stateful cases: a Hypothesis `RuleBasedStateMachine` generated from the model's tables.

No rule is written by hand: for every slot and every operation of the slot's machine, one rule is
made whose arguments are drawn from the operation's parameter domains. A rule runs only where the
model has the operation DEFINED in the slot's current state and the adapter has the features it
needs (PropEr-style preconditions). Each step asks the model for the allowed outcomes, checks the
observed one, and lets the model follow it; invariants are the model's own judgement at each
step.

What a case reports is read from every program it ran, not from Hypothesis's final word:

* Every distinct failure seen (by verdict, failing operation and its machine, the rules of the
  failing step, and how it went wrong) is kept, with its shortest trace. Each kind raises its own
  exception class, so Hypothesis shrinks each one on its own (`report_multiple_bugs`) instead of
  slipping from one to another and dropping the first.
* An `error` (a hang, an adapter fault, an exception in callgate itself) stops the case at once:
  shrinking it would cost one step timeout per attempt. It is reported with its unshrunk trace.
* Shrinking is bounded by wall-clock time (`SHRINK_SECONDS` from the first failure); then the
  smallest failing program seen so far is reported.
* Hypothesis prints nothing (quiet verbosity): the gate's output is the gate's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, Phase, Verbosity, assume, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky
from hypothesis.stateful import RuleBasedStateMachine, get_state_machine_test, precondition, rule

from callgate.conformance.cases.slots import slots_named
from callgate.conformance.cases.values import merge_used
from callgate.conformance.judge.execution import StepTimeout
from callgate.conformance.judge.runner import Case, CaseRunner, LiveCase, harness_evidence
from callgate.conformance.protocol.adapter import AdapterFault, NotApplicable, SlotSpec
from callgate.conformance.results import CaseResult, Failure, StepRecord, Verdict
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, Args

# How long a stateful case may go on after its first failure (shrinking it, and looking for
# other failures), in seconds; then the smallest failing program seen is what is reported.
SHRINK_SECONDS = 30.0


class CaseFailed(AssertionError):
    """A step's observation fell outside the model's allowed outcomes. Each kind of failure
    raises its own subclass (see `FailureBook.exception`), so Hypothesis tells them apart."""


class StopCase(BaseException):
    """Ends the Hypothesis run at once (an error, or the shrink budget spent). A BaseException,
    so that Hypothesis neither treats it as a failure to shrink nor swallows it."""


@dataclass(frozen=True)
class StatefulBudget:
    """How much stateful testing to do."""

    examples: int
    steps: int


@dataclass(frozen=True)
class Signature:
    """What makes two failures the same failure: the verdict, how it went wrong, and the failing
    step's operation, its machine, and the rules it cites. Slots and arguments are left out: a
    shrunk program may use c1 where the first used c0, or a zero timeout for a finite one."""

    verdict: Verdict
    failure: str
    machine: str
    op: str
    rules: tuple[str, ...]

    @staticmethod
    def of(live: LiveCase) -> Signature:
        if not live.trace:  # the session itself could not be opened or closed
            return Signature(live.verdict, live.failure, "", "", ())
        last = live.trace[-1]
        return Signature(live.verdict, live.failure, live.machines.get(last.slot, ""), last.op,
                         tuple(sorted(last.rules)))


@dataclass
class Seen:
    """Every program that went wrong one way: the first and the shortest."""

    signature: Signature
    first: LiveCase
    shortest: LiveCase
    programs: int = 1


@dataclass
class FailureBook:
    """The failures a stateful case saw, as they happened (during generation and shrinking)."""

    shrink_seconds: float = SHRINK_SECONDS
    seen: dict[Signature, Seen] = field(default_factory=dict)
    first_failure: float | None = None
    stopped: str = ""  # why the case was stopped early, if it was
    _classes: dict[Signature, type[CaseFailed]] = field(default_factory=dict)

    def record(self, live: LiveCase) -> BaseException:
        """Keep a failed or erred program; the exception its rule raises: `StopCase` for an
        error (or once the budget is spent), else the failure's own `CaseFailed` class."""
        signature = Signature.of(live)
        entry = self.seen.get(signature)
        if entry is None:
            self.seen[signature] = Seen(signature, live, live)
        else:
            entry.programs += 1
            if len(live.trace) < len(entry.shortest.trace):
                entry.shortest = live
        if self.first_failure is None:
            self.first_failure = time.monotonic()
        if live.verdict is not Verdict.FAIL:
            self.stopped = f"stopped at the first error ({live.failure}): not shrunk"
            return StopCase(live.message)
        return self.over_budget() or self.exception(signature)(live.message)

    def exception(self, signature: Signature) -> type[CaseFailed]:
        if signature not in self._classes:
            self._classes[signature] = type(f"CaseFailed{len(self._classes)}", (CaseFailed,), {})
        return self._classes[signature]

    def over_budget(self) -> StopCase | None:
        """`StopCase` once the case has gone on `shrink_seconds` past its first failure."""
        if self.first_failure is None or \
                time.monotonic() - self.first_failure <= self.shrink_seconds:
            return None
        self.stopped = (f"shrinking stopped after {self.shrink_seconds:g} s: the smallest "
                        f"failing program seen is reported")
        return StopCase(self.stopped)

    def failures(self) -> list[Seen]:
        """Failures first (they decide the verdict), then errors; each in the order seen."""
        entries = list(self.seen.values())
        return ([e for e in entries if e.signature.verdict is Verdict.FAIL]
                + [e for e in entries if e.signature.verdict is not Verdict.FAIL])


def _rule_name(slot: str, op: str) -> str:
    return f"{slot}__{op}"


def build_machine(runner: CaseRunner, slots: Sequence[SlotSpec], runs: list[LiveCase],
                  book: FailureBook | None = None) -> type[RuleBasedStateMachine]:
    """A state-machine class driving `slots` through `runner`; every run is appended to `runs`
    and every one that goes wrong is recorded in `book`."""
    failures = book if book is not None else FailureBook()

    class CallgateMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            stop = failures.over_budget()
            if stop is not None:
                raise stop
            self.live = _open(runner, f"stateful-{len(runs)}", slots, failures)
            runs.append(self.live)
            # What each rule may send now, worked out once per step: Hypothesis asks every
            # rule's precondition (often more than once) before each step, and the rule
            # chosen asks again. Nothing a rule reads changes until a step is taken, and every
            # step taken adds to the trace.
            self.offers: dict[tuple[str, str], list[Args]] = {}
            self.offers_at = 0

        def teardown(self) -> None:
            self.live.close()
            if self.live.verdict is Verdict.ERROR and Signature.of(self.live) not in failures.seen:
                raise failures.record(self.live)  # closing the session failed

    def make_rule(slot: str, op: str, choices: list[Args]) -> Callable[..., None]:
        def offered(self: CallgateMachine) -> list[Args]:
            if self.offers_at != len(self.live.trace):
                self.offers.clear()
                self.offers_at = len(self.live.trace)
            known = self.offers.get((slot, op))
            if known is not None:
                return known
            try:
                known = self.offers[(slot, op)] = [
                    a for a in choices if self.live.offered(Action(slot, op, a))]
                return known
            except Exception as exc:  # callgate's own code: an error, not a failure to shrink
                self.live.harness_error(exc)
                raise failures.record(self.live) from exc

        def body(self: CallgateMachine, data: st.DataObject) -> None:
            args = data.draw(st.sampled_from(offered(self)), label="args")
            if not self.live.step(Action(slot, op, args)):
                if self.live.verdict in (Verdict.FAIL, Verdict.ERROR):
                    raise failures.record(self.live)
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


def _open(runner: CaseRunner, case_id: str, slots: Sequence[SlotSpec],
          book: FailureBook) -> LiveCase:
    """Open a session; a session that cannot be opened stops the case (an error)."""
    try:
        return runner.open(case_id, slots)
    except (StepTimeout, AdapterFault, NotApplicable) as exc:
        book.stopped = f"opening a session failed: {exc}"
        raise StopCase(book.stopped) from exc


# The objects a stateful example holds, by slot name (see `callgate.conformance.cases.slots`):
# two call objects, so two calls can be in flight at once, and one object of each other kind.
STATEFUL_SLOTS = ("c0", "c1", "e0", "k0", "r0")


def default_slots(features: frozenset[str]) -> list[SlotSpec]:
    """The objects a stateful example uses: `STATEFUL_SLOTS` of the kinds the adapter supports."""
    return slots_named(STATEFUL_SLOTS, features)


def run_stateful(runner: CaseRunner, budget: StatefulBudget, seed: int,
                 slots: Sequence[SlotSpec] | None = None, case_id: str = "stateful",
                 shrink_seconds: float = SHRINK_SECONDS) -> CaseResult:
    """Run the generated state machine. A failure comes back shrunk, with its minimal trace;
    every other distinct failure seen comes back beside it (`CaseResult.other_failures`)."""
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
    try:
        return _run_stateful(runner, budget, seed, chosen, case, started, shrink_seconds)
    except Exception as exc:  # callgate's own code around the programs: this case's error
        return runner.result(case, Verdict.ERROR, started, [], set(),
                             message=f"harness error: {type(exc).__name__}: {exc}",
                             evidence=harness_evidence(exc))


def _run_stateful(runner: CaseRunner, budget: StatefulBudget, seed: int,
                  chosen: list[SlotSpec], case: Case, started: float,
                  shrink_seconds: float) -> CaseResult:
    runs: list[LiveCase] = []
    book = FailureBook(shrink_seconds)
    machine_class = build_machine(runner, chosen, runs, book)
    test = get_state_machine_test(machine_class, settings=settings(
        max_examples=budget.examples, stateful_step_count=budget.steps, deadline=None,
        database=None, derandomize=False, print_blob=False, report_multiple_bugs=True,
        verbosity=Verbosity.quiet, suppress_health_check=list(HealthCheck),
        # No explain phase: it reruns programs to say which draws mattered, which the trace
        # already shows, and costs more than the shrinking.
        phases=(Phase.explicit, Phase.generate, Phase.shrink)))
    test = hypothesis_seed(seed)(test)
    unexplained: BaseException | None = None
    try:
        test()
    except StopCase:
        pass  # the book says why
    except Exception as exc:  # CaseFailed (or several), Flaky, or something the book lacks
        unexplained = exc
    finally:
        for live in runs:
            live.close()  # a program Hypothesis left open when it was stopped
    covered: set[str] = set()
    steps = 0
    for live in runs:
        covered |= live.covered
        steps += len(live.trace)
    values = merge_used(live.values for live in runs)
    failures = book.failures()
    if not failures:
        if unexplained is not None or book.stopped:
            # Hypothesis stopped on something no program recorded: callgate's own code, or a
            # session that could not be opened. Never a pass.
            reason = repr(unexplained) if unexplained is not None else book.stopped
            evidence = harness_evidence(unexplained) if unexplained is not None else ""
            return replace(runner.result(case, Verdict.ERROR, started, [], covered,
                                         message=f"the stateful run stopped: {reason}",
                                         evidence=evidence), steps=steps, values=values)
        return replace(runner.result(case, Verdict.PASS, started, [], covered,
                                     message=f"{len(runs)} programs, {steps} steps"),
                       steps=steps, values=values)
    first, *others = failures
    result = _failure_result(runner, case, first, started, covered)
    if unexplained is not None and not isinstance(unexplained, (CaseFailed, Flaky,
                                                                ExceptionGroup)):
        # Hypothesis ended on something other than the failures recorded: say so beside them.
        result = replace(result, evidence=(f"{result.evidence}\nthe run then stopped on: "
                                           f"{harness_evidence(unexplained)}").strip()[-4000:])
    message = result.message
    if others:
        message += f" (and {len(others)} other failure{'s' if len(others) > 1 else ''})"
    if book.stopped:
        message += f"; {book.stopped}"
    return replace(result, steps=steps, message=message, values=values,
                   other_failures=[Failure.of(_failure_result(runner, case, seen, started,
                                                              set()), seen.programs)
                                   for seen in others])


def _failure_result(runner: CaseRunner, case: Case, seen: Seen, started: float,
                    covered: set[str]) -> CaseResult:
    """The result of one kind of failure: its shortest program, as a replayable case."""
    live = seen.shortest
    shrunk = Case(case.id, "stateful", case.description, case.slots,
                  tuple(Action(s.slot, s.op, tuple(s.args.items())) for s in live.trace))
    result = runner.result(shrunk, live.verdict, started, list(live.trace), covered,
                           message=live.message, evidence=live.evidence, values=live.values)
    longest = len(seen.first.trace)
    return replace(result, original_length=longest if longest > len(live.trace) else 0)


def trace_script(trace: Sequence[StepRecord]) -> str:
    """A failing trace as a replayable step script in Hypothesis's style."""
    lines = ["state = CallgateMachine()"]
    for step in trace:
        args: Any = tuple(step.args.items())
        lines.append(f"state.{_rule_name(step.slot, step.op)}(data=data(args={args!r}))")
    lines.append("state.teardown()")
    return "\n".join(lines)
