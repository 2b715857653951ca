"""How much of the model an implementation with known deviations can reach, and how much a run
covered of it.

Usage: python tools/deviation_reach.py RESULTS.jsonl [--expectations FILE] [--json]

A run's coverage (report.json, `coverage`) counts transitions against every transition the model
reaches under the adapter's declared features and pins. An implementation that deviates cannot
reach all of them: where it answers something else, the model's next states are never entered,
and what lies only behind them is unreachable for any implementation that behaves the same way.
This script computes, per machine, from the model and the expectations file:

* `features`: the transitions reachable under the adapter's features and pins (the run's
  universe, as the gate counts it);
* `with_deviations`: the transitions still reachable when the implementation behaves as the
  expectations file and the run say. From each reachable state, every transition counts, and
  its successors are:
  - where a `[[deviation.instead]]` table describes the step (operation, arguments, state): if
    the model allows the described code there, the model's next states for that code; else the
    table's `next` state (the state the followed walk goes on from);
  - where the run saw the step fail on a listed deviation that no `instead` table describes (the
    last step of a failed or expected-fail case, in a single known state): none, since what
    the implementation does next is not described;
  - anywhere else: the model's next states.
  Steps that would fail but that the run never tried stay in, so `with_deviations` can only be
  too large, never too small: the percentage against it is a lower bound of the true one.
* `covered`: the run's covered transitions, and how many of them fall outside `with_deviations`
  (a sign the expectations describe the implementation wrongly; normally 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from callgate.conformance.expectations import Expectations, Instead, load
from callgate.conformance.judge.runner import transition_key
from callgate.conformance.protocol.adapter import config_features_needed, features_needed
from callgate.conformance.results import CaseResult, RunRecord, Verdict, read_stream
from callgate.model import explorer
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, Args, Machine, State


def machine_graph(machine: Machine, features: set[str],
                  pins: Mapping[str, str]) -> explorer.StateGraph | None:
    """The machine's graph as the gate builds it for an adapter (`sequences.plan`)."""
    initial = [s for s in machine.initial
               if config_features_needed(machine.name, machine.view(s)) <= features]

    def allow(op: str, args: Args) -> bool:
        return features_needed(machine.name, op, dict(args)) <= features

    if not initial:
        return None
    start = dataclasses.replace(machine, initial=tuple(initial))
    return explorer.build_graph(start, pins=dict(pins), allow=allow)


def dead_ends(machine: Machine, cases: Iterable[CaseResult],
              keep_open: Iterable[str] = ()) -> set[tuple[State, str, Args]]:
    """The steps where a case of the run failed on a deviation no `instead` table describes, and
    that no case of the run saw succeed: (state, op, args) of each failed or expected-fail case's
    last step, taken from a single known state of `machine`. (A step Wine sometimes gets right,
    such as a late server completion that wins its race, stays open.) A case that failed on a
    rule of `keep_open` cuts nothing: its failure depends on an argument the state does not
    record (Wine loses an APC only when the call named no thread, RPC-CLI-NOTIFY-02)."""
    keep = set(keep_open)
    by_text = {machine.describe(s): s for s in _all_states(machine)}
    failed: set[tuple[State, str, Args]] = set()
    succeeded: set[tuple[State, str, Args]] = set()
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
                  and case.verdict in (Verdict.FAIL, Verdict.EXPECTED_FAIL)):
                failed.add(step)
    return failed - succeeded


def _all_states(machine: Machine) -> Iterable[State]:
    import itertools
    return itertools.product(*(f.domain for f in machine.fields))


def described(expect: Expectations | None, machine: str, state: State, op: str,
              args: Args) -> Instead | None:
    if expect is None:
        return None
    for deviation in expect.deviations:
        for instead in deviation.instead:
            if instead.applies(machine, state, op, args):
                return instead
    return None


def reach(graph: explorer.StateGraph, machine: Machine, expect: Expectations | None,
          cut: set[tuple[State, str, Args]]) -> set[str]:
    """The transition keys reachable from the graph's initial states with the deviations."""
    by_node: dict[State, list[Action]] = {}
    for node, action in graph.transitions:
        by_node.setdefault(node, []).append(action)  # type: ignore[arg-type]
    edges: dict[tuple[State, str, Args], list[explorer.Edge]] = {}
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


def figures(record: RunRecord, expect: Expectations | None,
            keep_open: Iterable[str] = ()) -> dict[str, Any]:
    adapter = record.start.get("adapter") or {}
    features = set(adapter.get("capabilities") or [])
    pins = adapter.get("pins") or {}
    universe = set(record.start.get("transitions") or [])
    covered: set[str] = set()
    for case in record.cases:
        covered.update(case.covered)
    covered &= universe
    machines: dict[str, Any] = {}
    for name in sorted(record.start.get("transitions_total") or {}):
        machine = MACHINES[name]
        graph = machine_graph(machine, features, pins)
        if graph is None:
            continue
        total = {k for k in universe if k.startswith(name + "|")}
        reachable = reach(graph, machine, expect, dead_ends(machine, record.cases, keep_open)) & total
        mine = {k for k in covered if k.startswith(name + "|")}
        machines[name] = {"features": len(total), "with_deviations": len(reachable),
                          "covered": len(mine), "covered_outside": len(mine - reachable)}
    totals = {key: sum(m[key] for m in machines.values())
              for key in ("features", "with_deviations", "covered", "covered_outside")}
    return {"by_machine": machines, **totals}


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a run's results.jsonl")
    parser.add_argument("--expectations", type=Path,
                        help="the expectations file (default: the one the run recorded)")
    parser.add_argument("--keep-open", action="append", default=[], metavar="RULE",
                        help="a rule whose failures cut nothing (the failure depends on an "
                             "argument the model state does not record); repeatable")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    options = parser.parse_args(argv)
    record = read_stream(options.results)
    path = options.expectations
    if path is None:
        recorded = (record.start.get("expectations") or {}).get("file")
        path = Path(recorded) if recorded else None
    expect = load(path) if path is not None else None
    data = figures(record, expect, options.keep_open)
    if options.json:
        print(json.dumps(data, indent=1))
        return 0
    print(f"{'machine':10} {'features':>9} {'with dev.':>9} {'covered':>8}  "
          f"{'of features':>11} {'of with dev.':>12}")
    rows = [*data["by_machine"].items(), ("all", data)]
    for name, m in rows:
        print(f"{name:10} {m['features']:9} {m['with_deviations']:9} {m['covered']:8}  "
              f"{_percent(m['covered'], m['features']):>11} "
              f"{_percent(m['covered'] - m['covered_outside'], m['with_deviations']):>12}")
    if data["covered_outside"]:
        print(f"{data['covered_outside']} covered transitions lie outside what the deviations "
              f"leave reachable: the expectations do not describe the implementation",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
