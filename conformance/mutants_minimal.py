"""Where a mutant's fault acted: the faulty transition read from the fault's own code.

`callgate mutants` judges a kill minimal when the counterexample is no longer than a shortest
path to the *faulty transition*, that transition, and the steps after it that observe the fault.
Guessing that transition from the model's rows (`callgate.conformance.mutants.faulty_transition`)
misses a fault that acts in a step the model sees as ordinary: `call_event_never_reset` goes
wrong at a Finish_ whose row is fine, and shows two steps later at a Wait.

The reference implementation knows. A mutant consults `host.fault(name)` where its rule is
implemented, and each time the call returns True (the faulty branch is taken) the host counts it
(`Host.acted`); bookkeeping a fault needs later, which changes nothing by itself, asks
`host.carries(name)` and is not counted. `fault_site` runs the shrunk counterexample once more
against a fresh mutant, reading the count after every step: the steps during which the fault
acted. Then, for each of them from the latest back, the same steps are run with the fault
switched off before that step (`Host.suspended`: the build behaves as the correct reference until
then). The faulty transition is the latest step from which the fault alone, acting only from
there on, still fails the case the same way: everything before it ran as the correct reference
does, so a shortest path in the model's state graph is the honest measure of that prefix, and
everything from it on is where the implementation went wrong and showed it. A step where the
fault was consulted but changed nothing is not chosen (the fault switched on from there fails
only if a later step acts, and that later step was tried first).

The prefix is then measured by running too, for two reasons. A fault may need correct steps
before it: `finish_stale_out` hands out the previous call's [out], so it shows only after an
earlier call with another value, a history the model does not keep (its state before the faulty
Finish_ is reached in 3 steps, by no earlier call). And a fault may act where an object is made
(`std_event_no_auto_reset` makes a manual-reset event), long before any step that shows it, so
steps after the faulty transition can be a detour too. So, from the failing step back, the first
cut whose prefix already is a shortest way to the state it leads to ends the search; at any
other cut the prefix is replaced by shortest ways in the state graphs (object after object) and
that shorter case run against the mutant. If it fails the same way, the cut is where the needed
steps start, and this counterexample, longer, is not minimal; if not, the search goes one step
back. The bound is the shortest way to the cut plus the steps from it on (`needed_steps`); when
the cut is the faulty transition, that is a shortest way to it, the transition and the steps
that observe it.

This is only the mutant runner's instrument: it needs the in-process reference build, changes
nothing for other runs, and says so (None) when it cannot tell: no in-process host, a run that
does not fail the same way again, a hang, no step where the fault acted. The caller then falls
back on the model's rows (`transition_source` says which was used). Races keep their own
definition (`callgate.conformance.mutants.race_program`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from callgate.conformance.cases.sequences import Plan
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.implementations.reference.host import Host
from callgate.conformance.judge.rerun import NotReplayable, rerun
from callgate.conformance.judge.shrink import HUNG, Reason, observed_states
from callgate.conformance.protocol.adapter import Capabilities, Observation, Request, Session, SlotSpec
from callgate.conformance.results import CaseResult
from callgate.model import explorer
from callgate.model.families import MACHINES
from callgate.model.transitions import ModelError

# At most this many runs of one counterexample (one with the fault on throughout, then one per
# step where it acted, latest first); more means no answer, and the model's rows are used.
MAX_RUNS = 40

FAULT_SITE = "fault-site"
MODEL_ROWS = "model-rows"
RACE = "race"


@dataclass(frozen=True)
class Located:
    """The faulty transition found at the fault's site."""

    transition: str             # machine [slot]: state / operation, as faulty_transition gives it
    shortest_path: int | None   # to the state it starts from, summed over the objects driven
    observing_steps: int        # steps after it
    index: int                  # its step in the trace (0-based)
    acted: tuple[int, ...]      # the steps during which the fault acted (0-based)
    runs: int                   # counterexample runs it took
    # The steps from the cut on (see the module's docstring): no shortest way to a state after
    # the cut kept the failure; `shortest_path` is to the state before the cut.
    needed_steps: int = 0


class _MarkedSession:
    """A session that reads the host's count after each step, with the fault switched off
    before step `start`."""

    def __init__(self, inner: Session, host: Host, start: int, counts: list[int]) -> None:
        self.inner, self.host, self.start, self.counts = inner, host, start, counts

    def perform(self, request: Request) -> Observation:
        self.host.suspended = len(self.counts) < self.start
        try:
            return self.inner.perform(request)
        finally:
            self.counts.append(self.host.acted)

    def close(self) -> None:
        self.host.suspended = False
        self.inner.close()


class _MarkedAdapter:
    """The mutant as an adapter whose sessions are marked (see `_MarkedSession`)."""

    def __init__(self, inner: Any, host: Host, start: int) -> None:
        self.inner, self.host, self.start = inner, host, start
        self.baseline = 0
        self.counts: list[int] = []

    def capabilities(self) -> Capabilities:
        caps: Capabilities = self.inner.capabilities()
        return caps

    def open_session(self, slots: Sequence[SlotSpec]) -> Session:
        self.host.suspended = self.start > 0
        self.baseline = self.host.acted
        self.counts = []
        return _MarkedSession(self.inner.open_session(slots), self.host, self.start, self.counts)

    def shutdown(self) -> None:
        self.host.suspended = False


def acted_steps(baseline: int, counts: Sequence[int]) -> tuple[int, ...]:
    """The steps during which the count rose (what happened while a session opened counts for
    its first step)."""
    found, before = [], baseline
    for index, count in enumerate(counts):
        if count > before:
            found.append(index)
        before = count
    return tuple(found)


def same_failure(original: CaseResult, again: CaseResult | None, length: int | None = None
                 ) -> bool:
    """`again` fails as `original` did: the same verdict and reason, at the same step (at step
    `length` when given: a shorter run)."""
    steps = len(original.trace) if length is None else length
    return (again is not None and again.verdict is original.verdict
            and len(again.trace) == steps
            and Reason.of(again) is not None and Reason.of(again) == Reason.of(original))


def _step(slot: str, op: str, args: Mapping[str, object]) -> dict[str, Any]:
    return {"slot": slot, "op": op, "args": dict(args)}


def _replay(result: CaseResult, steps: Sequence[dict[str, Any]] | None = None
            ) -> dict[str, Any]:
    """The steps the failing trace took (or `steps`), with its slots and concrete values."""
    return {"slots": result.replay.get("slots", []),
            "steps": list(steps) if steps is not None else
            [_step(r.slot, r.op, r.args) for r in result.trace],
            "values": result.replay.get("values")}


def _shortcut(result: CaseResult, plan: Plan, index: int) -> list[dict[str, Any]] | None:
    """The trace with its steps before `index` replaced by shortest ways in the state graphs
    to the states every object was in before it (object after object); None if there is none."""
    states = _states_before(result, plan, index)
    if states is None:
        return None
    steps: list[dict[str, Any]] = []
    for spec in result.replay.get("slots", []):
        name = spec["name"]
        graph_plan = plan.machines.get(spec["machine"])
        found = states.get(name)
        if graph_plan is None or found is None or len(found) != 1:
            return None
        start = MACHINES[spec["machine"]].make(**dict(spec.get("config", {})))
        try:
            path = explorer.shortest_path(graph_plan.graph, [start], next(iter(found)))
        except ModelError:
            return None
        steps += [_step(name, e.op, dict(e.args)) for e in path]
    return steps + [_step(r.slot, r.op, r.args) for r in result.trace[index:]]


def fault_site(result: CaseResult, plan: Plan, name: str, step_timeout: float = 10.0,
               make_adapter: Callable[[str], Any] | None = None) -> Located | None:
    """The faulty transition of a sequential failing case against mutant `name`, found where
    the fault acted, and where the steps it needs start (see the module's docstring); None
    when the instrument cannot tell."""
    reason = Reason.of(result)
    if reason is None or reason.error == HUNG or not result.replay.get("slots"):
        return None
    adapter = (make_adapter or (lambda n: ReferenceAdapter(faults={n})))(name)
    host = getattr(adapter, "host", None)
    runs = 0
    try:
        if not isinstance(host, Host) or name not in host.faults:
            return None

        def run(start: int, steps: Sequence[dict[str, Any]] | None = None
                ) -> tuple[CaseResult, tuple[int, ...]] | None:
            nonlocal runs
            runs += 1
            marked = _MarkedAdapter(adapter, host, start)
            length = len(result.trace) if steps is None else len(steps)
            try:
                again = rerun(marked, result.id, _replay(result, steps), step_timeout)
            except NotReplayable:
                return None
            finally:
                host.suspended = False
            if not same_failure(result, again, length) or len(marked.counts) != length:
                return None
            return again, acted_steps(marked.baseline, marked.counts)

        full = run(0)
        if full is None or not full[1]:
            return None
        chosen, ran = full[1][0], full[0]  # switched off before its first act: the same run
        for index in reversed(full[1][1:]):
            if runs >= MAX_RUNS:
                return None
            later = run(index)
            if later is not None:
                chosen, ran = index, later[0]
                break
        # Where the needed steps start: the latest cut whose prefix is a shortest way already,
        # or whose prefix, replaced by a shortest way, still fails (a shorter counterexample:
        # this one is not minimal).
        cut = len(ran.trace) - 1
        while cut > 0:
            shortest = shortest_to(ran, plan, cut)
            if shortest is None:
                return None
            if cut <= shortest:
                break
            steps = _shortcut(ran, plan, cut)
            if steps is None or runs >= MAX_RUNS:
                return None  # no shortest way to try: whether one fails is not known
            if run(0, steps) is not None:
                break
            cut -= 1
    finally:
        adapter.shutdown()
    shortest = shortest_to(ran, plan, cut)
    step = ran.trace[chosen]
    machine = MACHINES.get(ran.slots.get(step.slot, ""))
    states = _states_before(ran, plan, chosen)
    if machine is None or states is None or len(states.get(step.slot, ())) != 1:
        return None
    args = ", ".join(f"{k}={v}" for k, v in step.args.items())
    slot = f" {step.slot}" if step.slot != ran.trace[-1].slot else ""
    text = (f"{machine.name}{slot}: {machine.describe(next(iter(states[step.slot])))} / "
            f"{step.op}({args})")
    return Located(text, shortest, len(ran.trace) - 1 - chosen, chosen, full[1], runs,
                   len(ran.trace) - cut)


def _states_before(result: CaseResult, plan: Plan, index: int
                   ) -> dict[str, frozenset[Any]] | None:
    """Every slot's model states before step `index` of `result`, as its answers show them."""
    slots = [SlotSpec(s["name"], s["machine"], s.get("config", {}))
             for s in result.replay.get("slots", [])]
    found = observed_states(slots, result.trace[:index], plan.capabilities.pins,
                            result.replay.get("values"))
    if len(found) != index + 1:
        return None  # a step before it was not accepted: no state to measure from
    return {s.name: states for s, states in zip(slots, found[index], strict=True)}


def shortest_to(result: CaseResult, plan: Plan, index: int) -> int | None:
    """Shortest paths in the state graphs, summed over the objects driven before step `index`
    (and the objects of that step and of the failing step), to the states they were in before
    it; None when a state is not one known state."""
    states = _states_before(result, plan, index)
    if states is None:
        return None
    driven = {r.slot for r in result.trace[:index]} | {result.trace[index].slot,
                                                        result.trace[-1].slot}
    return summed_shortest(plan, result.slots, {name: states.get(name) for name in driven})


def summed_shortest(plan: Plan, machines: Mapping[str, str],
                    states: Mapping[str, Collection[Any] | None]) -> int | None:
    """Shortest paths in the plan's state graphs to the states of these slots (`states`, each
    slot's machine in `machines`), added up (`explorer.summed_shortest_paths`); None when a
    slot's machine is not in the plan or its state is not one known state."""
    goals = []
    for name, found in states.items():
        graph_plan = plan.machines.get(machines.get(name, ""))
        if graph_plan is None:
            return None
        goals.append((graph_plan.graph, graph_plan.initial, found))
    return explorer.summed_shortest_paths(goals)

