"""Directed cases from the model's state graph: a tour that exercises every transition.

A transition is a (state, action) pair whose row is DEFINED, in the machine's reachable graph
under the adapter's pins and features. The tour is a set of paths from initial states that
together exercise every transition; each path is one directed case, with its metadata (id,
description, rules it covers, and the outcome sets the model allows at each step).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import cast

from callgate.conformance.cases.values import replayed
from callgate.conformance.judge.runner import Case, transition_key
from callgate.conformance.protocol.adapter import (
    Capabilities,
    SlotSpec,
    config_features_needed,
    features_needed,
)
from callgate.conformance.results import CaseResult
from callgate.model import explorer
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, Args, Machine, ModelError, State, Tracker, Value, step

SLOT = "s0"


def _state(node: object) -> State:
    """A node of a single machine's graph is that machine's state."""
    return cast(State, node)


def config_of(machine: Machine, state: State) -> dict[str, Value]:
    """A slot configuration that starts the machine in `state`."""
    return machine.view(state)


@dataclass
class MachinePlan:
    """What the gate does for one machine: its graph, transitions and directed cases."""

    machine: Machine
    graph: explorer.StateGraph
    initial: list[State]
    # The adapter's capabilities, for the tour cases; those are built on first use: a gate run
    # walks the graph instead (`callgate.conformance.cases.walk`) and never asks for them.
    capabilities: Capabilities
    _cases: list[Case] | None = field(default=None, repr=False)

    @property
    def cases(self) -> list[Case]:
        """The transition tour of the graph, one directed case per path."""
        if self._cases is None:
            self._cases = _tour_cases(self.machine, self.graph, self.initial,
                                      self.capabilities)
        return self._cases

    @property
    def transitions(self) -> set[str]:
        return set(self.by_key)

    @property
    def by_key(self) -> dict[str, tuple[State, Action]]:
        """Each transition by its coverage key."""
        if not self._by_key:
            for state, action in self.graph.transitions:
                self._by_key[transition_key(self.machine.name, state, action)] = (  # type: ignore[arg-type]
                    state, Action(SLOT, action.op, action.args))  # type: ignore[assignment]
        return self._by_key

    _by_key: dict[str, tuple[State, Action]] = field(default_factory=dict)


@dataclass
class Plan:
    """The directed part of a gate run for one adapter."""

    capabilities: Capabilities
    machines: dict[str, MachinePlan]

    @property
    def cases(self) -> list[Case]:
        return [c for m in self.machines.values() for c in m.cases]

    @property
    def transitions(self) -> set[str]:
        return {t for m in self.machines.values() for t in m.transitions}

    def totals(self) -> dict[str, int]:
        return {name: len(m.graph.transitions) for name, m in self.machines.items()}

    def shortest_case(self, case: Case, failed: CaseResult) -> Case | None:
        """The shortest path from an initial state to the state where `failed` went wrong,
        followed by the failing action; None if the case is not one of this plan's."""
        if len(case.slots) != 1 or case.slots[0].machine not in self.machines or not failed.trace:
            return None
        spec = case.slots[0]
        plan = self.machines[spec.machine]
        tracker = Tracker(plan.machine, self.capabilities.pins,
                          [plan.machine.make(**dict(spec.config))])
        binding = replayed(failed.replay.get("values"))
        for record in failed.trace[:-1]:
            args = _args(plan.machine, record.op, record.args)
            if record.code is None:
                return None
            code, outputs = binding.observed(plan.machine.name, record.op, record.code,
                                             record.outputs)
            if not tracker.observe(record.op, args, code, outputs).ok:
                return None
        if len(tracker.states) != 1:
            return None
        (target,) = tracker.states
        last = failed.trace[-1]
        try:
            path = explorer.shortest_path(plan.graph, plan.initial, target)
        except ModelError:
            return None
        start = _state(path[0].source) if path else target
        steps = [Action(SLOT, e.op, e.args) for e in path]
        steps.append(Action(SLOT, last.op, _args(plan.machine, last.op, last.args)))
        return _case(plan.machine, start, steps, f"{case.id}-short", self.capabilities,
                     "shortest path to the failing transition", plan.graph,
                     [_state(e.source) for e in path] + [target])


def _args(machine: Machine, op: str, values: Mapping[str, object]) -> Args:
    return tuple((p.name, values[p.name]) for p in machine.operation(op).params)  # type: ignore[misc]


def _case(machine: Machine, start: State, steps: list[Action], case_id: str,
          caps: Capabilities, description: str, graph: explorer.StateGraph | None = None,
          sources: list[State] | None = None) -> Case:
    rules: dict[str, None] = {}
    state = start
    expected: list[tuple[str, ...]] = []
    for action in steps:
        result = step(machine, state, action.op, action.args, caps.pins)
        rules.update(dict.fromkeys(result.rules))
        expected.append(tuple(a.describe() for a in result.allowed))
        if result.allowed:
            state = result.allowed[0].next_state
    ops = ", ".join(a.op for a in steps[:8]) + (", ..." if len(steps) > 8 else "")
    return Case(case_id, "directed", f"{description}: {ops}",
                (SlotSpec(SLOT, machine.name, config_of(machine, start)),), tuple(steps),
                tuple(rules), tuple(expected), graph, tuple(sources or ()))


def plan(caps: Capabilities, only: Collection[str] | None = None) -> Plan:
    """Graphs, transitions and the tour cases of every machine the adapter can drive (`only`:
    of these machines alone)."""
    features = set(caps.features)
    machines: dict[str, MachinePlan] = {}
    wanted = set(only) if only is not None else set(MACHINES)
    for machine in MACHINES.values():
        if machine.name not in wanted:
            continue
        initial = [s for s in machine.initial
                   if config_features_needed(machine.name, machine.view(s)) <= features]

        def allow(op: str, args: Args, name: str = machine.name) -> bool:
            return features_needed(name, op, dict(args)) <= features

        if not initial or not any(allow(op.name, a) for op in machine.operations
                                  for a in op.all_args()):
            continue
        # Only the configurations the adapter supports are starting points.
        start = dataclasses.replace(machine, initial=tuple(initial))
        graph = explorer.cached_graph(start, pins=caps.pins, allow=allow)
        if not graph.transitions:
            continue
        machines[machine.name] = MachinePlan(machine, graph, initial, caps)
    return Plan(caps, machines)


def _tour_cases(machine: Machine, graph: explorer.StateGraph, initial: list[State],
                caps: Capabilities) -> list[Case]:
    cases = []
    for i, path in enumerate(explorer.tour(graph, initial, cover="transitions")):
        if not path:
            continue
        steps = [Action(SLOT, e.op, e.args) for e in path]
        cases.append(_case(machine, _state(path[0].source), steps,
                           f"{machine.name}-tour-{i:03d}", caps,
                           f"transition tour of {machine.name}, path {i}",
                           graph, [_state(e.source) for e in path]))
    return cases
