"""How much of the model an implementation with known deviations can reach, and how much a run
covered of it: report.json's `coverage.with_deviations`.

A run's coverage counts transitions against every transition the model reaches under the
adapter's declared features and pins. An implementation that deviates cannot reach all of them:
where it answers something else, the model's next states are never entered, and what lies only
behind them is unreachable for any implementation that behaves the same way. For a run with an
expectations file, this module computes per machine, from the model, the recorded entries and
the run's cases:

* `features`: the transitions reachable under the adapter's features and pins (the run's
  universe, as the gate counts it);
* `reachable`: the transitions still reachable when the implementation behaves as the
  expectations and the run say. From each reachable state, every transition counts, and its
  successors are:
  - where an `[[deviation.instead]]` table describes the step (operation, arguments, state): if
    the model allows the described code there, the model's next states for that code; else the
    table's `next` state (the state the followed walk goes on from);
  - where the run could not go on past the step (a *dead end*, `dead_ends`): none. A dead end
    is the last step of a case that failed on something no `instead` table describes (what the
    implementation does next is not described), or a step the adapter answered not applicable
    (it cannot take it: the walk never gets behind it), taken from a single known state, that
    no case of the run took successfully. An entry with `dead_end = false` cuts nothing: its
    failure depends on something the state does not record (an earlier argument);
  - anywhere else: the model's next states.
  Steps that would fail but that the run never tried stay in, so `reachable` can only be too
  large, never too small: the percentage against it is a lower bound of the true one.
* `covered`: the run's covered transitions within `reachable`, and `covered_outside`: covered
  transitions outside it (a sign the expectations describe the implementation wrongly; normally
  0, and the report flags any).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from callgate.conformance.expectations import Expectations, Instead
from callgate.conformance.judge.runner import transition_key
from callgate.conformance.protocol.adapter import config_features_needed, features_needed
from callgate.conformance.results import CaseResult, RunRecord, Verdict
from callgate.model import explorer
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, Args, Machine, State

Step = tuple[State, str, Args]


def machine_graph(machine: Machine, features: Iterable[str],
                  pins: Mapping[str, str]) -> explorer.StateGraph | None:
    """The machine's graph as the gate builds it for an adapter (`sequences.plan`)."""
    return _graph(machine.name, frozenset(features), tuple(sorted(pins.items())))


@cache
def _graph(name: str, features: frozenset[str],
           pins: tuple[tuple[str, str], ...]) -> explorer.StateGraph | None:
    machine = MACHINES[name]
    initial = [s for s in machine.initial
               if config_features_needed(machine.name, machine.view(s)) <= features]

    def allow(op: str, args: Args) -> bool:
        return features_needed(machine.name, op, dict(args)) <= features

    if not initial:
        return None
    start = dataclasses.replace(machine, initial=tuple(initial))
    return explorer.build_graph(start, pins=dict(pins), allow=allow)


def dead_ends(machine: Machine, cases: Iterable[CaseResult],
              keep_open: Iterable[str] = ()) -> set[Step]:
    """The steps the run could not go on past, and that no case of the run took successfully:
    (state, op, args) of each failed or expected-fail case's last step (a deviation no `instead`
    table describes), and of each not-applicable case's last step (the adapter cannot take it),
    taken from a single known state of `machine`. (A step Wine sometimes gets right, such as a
    late server completion that wins its race, stays open.) A case that failed on a rule of
    `keep_open` cuts nothing: its failure depends on an argument the state does not record."""
    keep = set(keep_open)
    by_text = {machine.describe(s): s for s in itertools.product(*(f.domain
                                                                    for f in machine.fields))}
    failed: set[Step] = set()
    succeeded: set[Step] = set()
    stopping = (Verdict.FAIL, Verdict.EXPECTED_FAIL, Verdict.NOT_APPLICABLE)
    for case in cases:
        if not case.trace or set(case.slots.values()) != {machine.name}:
            continue
        for n, record in enumerate(case.trace):
            state = by_text.get(record.state_before)
            if state is None:  # several candidate states, or another machine's
                continue
            params = [p.name for p in machine.operation(record.op).params]
            step = (state, record.op,
                    tuple((name, record.args[name]) for name in params if name in record.args))
            if record.ok or record.deviation:
                succeeded.add(step)
            elif (n == len(case.trace) - 1 and not keep & set(case.failed_rules)
                  and case.verdict in stopping):
                failed.add(step)
    return failed - succeeded


def described(expect: Expectations | None, machine: str, state: State, op: str,
              args: Args) -> Instead | None:
    """The first `instead` table of `expect` that describes op(args) in `state`, if any."""
    if expect is None:
        return None
    for deviation in expect.deviations:
        for instead in deviation.instead:
            if instead.applies(machine, state, op, args):
                return instead
    return None


def reach(graph: explorer.StateGraph, machine: Machine, expect: Expectations | None,
          cut: set[Step]) -> set[str]:
    """The transition keys reachable from the graph's initial states with the deviations."""
    by_node: dict[State, list[Action]] = {}
    for node, action in graph.transitions:
        by_node.setdefault(node, []).append(action)  # type: ignore[arg-type]
    edges: dict[Step, list[explorer.Edge]] = {}
    for edge in graph.edges():
        edges.setdefault((edge.source, edge.op, edge.args), []).append(edge)  # type: ignore[arg-type]
    reached: set[str] = set()
    seen: set[State] = set(graph.initial)  # type: ignore[arg-type]
    frontier: deque[State] = deque(seen)
    while frontier:
        state = frontier.popleft()
        for action in by_node.get(state, []):
            reached.add(transition_key(machine.name, state, action))
            step = (state, action.op, action.args)
            model = edges.get(step, [])
            instead = described(expect, machine.name, state, action.op, action.args)
            if instead is not None:
                allowed = [e for e in model if e.allowed.code.admits(instead.code)]
                targets = [e.target for e in allowed] if allowed else [instead.leads_to(state)]
            elif step in cut:
                targets = []
            else:
                targets = [e.target for e in model]
            for target in targets:
                if target not in seen:
                    seen.add(target)  # type: ignore[arg-type]
                    frontier.append(target)  # type: ignore[arg-type]
    return reached


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def with_deviations(record: RunRecord, expect: Expectations | None,
                    keep_open: Iterable[str] = ()) -> dict[str, Any]:
    """Per machine of the run: the transitions under the features, those still reachable with
    the deviations, the covered ones within them and the percentage, and the covered ones
    outside them (with the first few keys, to look at). Entries with `dead_end = false` are
    kept open as `keep_open` rules are."""
    adapter = record.start.get("adapter") or {}
    features = set(adapter.get("capabilities") or [])
    pins = adapter.get("pins") or {}
    universe = set(record.start.get("transitions") or [])
    keep = set(keep_open) | {d.rule for d in (expect.deviations if expect else ())
                             if d.rule and not d.dead_end}
    covered: set[str] = set()
    for case in record.cases:
        covered.update(case.covered)
    covered &= universe
    machines: dict[str, Any] = {}
    outside_keys: list[str] = []
    for name in sorted(record.start.get("transitions_total") or {}):
        machine = MACHINES.get(name)
        graph = machine_graph(machine, features, pins) if machine is not None else None
        if machine is None or graph is None:
            continue
        total = {k for k in universe if k.startswith(name + "|")}
        reachable = reach(graph, machine, expect, dead_ends(machine, record.cases, keep)) & total
        mine = {k for k in covered if k.startswith(name + "|")}
        outside = sorted(mine - reachable)
        outside_keys += outside
        inside = len(mine) - len(outside)
        machines[name] = {"features": len(total), "reachable": len(reachable),
                          "covered": inside, "percent": _percent(inside, len(reachable)),
                          "covered_outside": len(outside)}
    totals = {key: sum(m[key] for m in machines.values())
              for key in ("features", "reachable", "covered", "covered_outside")}
    return {**totals, "percent": _percent(totals["covered"], totals["reachable"]),
            "kept_open": sorted(keep), "covered_outside_keys": outside_keys[:20],
            "by_machine": machines}
