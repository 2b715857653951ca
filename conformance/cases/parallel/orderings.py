"""Which orderings of a race's conflicting operations the model allows, and which a run showed.

A named race declares its conflicting operations (`ParallelCase.conflict`, by position: branch
and index; by default the first action of each branch). An ordering is a sequence of them that
keeps each branch's own order. Two orderings the model answers alike are one outcome: for each
ordering, `ordering_classes` walks every interleaving of the whole case (the other branch
actions anywhere, then the suffix) through the model, with every allowed outcome, and collects
the observations it allows (each action's allowed code and outputs, in position order); orderings
with the same set of observations are one class (two timed Waits that both time out, in either
order, are one). A class none of whose observations is its own alone (every one is also allowed
for another class) is `distinguishable` false: no run can show it.

What a run showed (`observed_classes`): the run's history is checked by linearizability once per
ordering, with the conflicting operations required to take effect in that order; the classes
with some consistent ordering are the ones the run is consistent with. A run consistent with
exactly one class observed it; a run consistent with several (its observations could not tell
them apart) observed none of them, and is counted as ambiguous. This is stricter than taking
the order of the checker's witness, which picks one order even when the observations allow
several.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from callgate.conformance.cases.parallel.case import ParallelCase
from callgate.conformance.cases.parallel.threads import Gate
from callgate.conformance.judge.linearizability import HistoryOp, Linearizability, check
from callgate.conformance.judge.perform import slot_machines
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, Kind, Machine, Pins, State, step

Position = tuple[int, int]
# One allowed observation of every branch and suffix action, in position order.
Signature = tuple[object, ...]


@dataclass(frozen=True)
class OrderingClass:
    """Orderings of the conflicting operations that no observation tells apart."""

    label: str
    orderings: tuple[tuple[Position, ...], ...]
    distinguishable: bool


def conflict_positions(case: ParallelCase) -> tuple[Position, ...]:
    """The race's conflicting operations: `case.conflict`, or each branch's first action."""
    if case.conflict:
        return case.conflict
    return tuple((b, 0) for b in range(len(case.branches)))


def _action(case: ParallelCase, position: Position) -> Action:
    b, k = position
    return case.suffix[k] if b == len(case.branches) else case.branches[b][k]


def _name(case: ParallelCase, position: Position) -> str:
    action = _action(case, position)
    args = ", ".join(f"{n}={v}" for n, v in action.args)
    return f"{action.op}({args}) [branch {position[0] + 1}]"


def ordering_label(case: ParallelCase, ordering: Sequence[Position]) -> str:
    return " < ".join(_name(case, p) for p in ordering)


def orderings(case: ParallelCase) -> list[tuple[Position, ...]]:
    """Every order of the conflicting operations that keeps each branch's own order."""
    conflict = conflict_positions(case)
    found = []
    for perm in itertools.permutations(conflict):
        if all(not (a[0] == b[0] and a[1] > b[1])
               for i, a in enumerate(perm) for b in perm[i + 1:]):
            found.append(perm)
    return found


def _interleavings_with(case: ParallelCase, ordering: Sequence[Position]
                        ) -> list[tuple[Position, ...]]:
    """Every interleaving of all branch actions in which the conflicting ones come in `ordering`."""
    conflict = set(conflict_positions(case))
    out: list[tuple[Position, ...]] = []

    def walk(position: list[int], done: list[Position], next_conflict: int) -> None:
        if all(k >= len(b) for k, b in zip(position, case.branches, strict=True)):
            out.append(tuple(done))
            return
        for b, branch in enumerate(case.branches):
            k = position[b]
            if k >= len(branch):
                continue
            here = (b, k)
            if here in conflict:
                if next_conflict >= len(ordering) or ordering[next_conflict] != here:
                    continue
                nxt = next_conflict + 1
            else:
                nxt = next_conflict
            position[b] += 1
            done.append(here)
            walk(position, done, nxt)
            done.pop()
            position[b] -= 1

    walk([0] * len(case.branches), [], 0)
    return out


def signatures(case: ParallelCase, ordering: Sequence[Position], pins: Pins,
               start: Mapping[str, frozenset[State]]) -> frozenset[Signature]:
    """Every observation the model allows when the conflicting operations come in `ordering`."""
    machines = slot_machines(case.slots)
    names = [s.name for s in case.slots]
    index = {n: i for i, n in enumerate(names)}
    suffix = [(len(case.branches), k) for k in range(len(case.suffix))]
    found: set[Signature] = set()
    for joint0 in itertools.product(*(sorted(start[n], key=repr) for n in names)):
        for sequence in _interleavings_with(case, ordering):
            steps = [*sequence, *suffix]
            order = sorted(range(len(steps)), key=lambda i: steps[i])

            def walk(i: int, joint: tuple[State, ...], seen: list[object],
                     steps: list[Position] = steps, order: list[int] = order) -> None:
                if i == len(steps):
                    found.add(tuple(seen[j] for j in order))
                    return
                action = _action(case, steps[i])
                si = index[action.slot]
                machine: Machine = MACHINES[machines[action.slot]]
                result = step(machine, joint[si], action.op, action.args, pins)
                if result.kind is not Kind.DEFINED:
                    seen.append(("not defined", result.kind.value))
                    walk(i + 1, joint, seen)
                    seen.pop()
                    return
                for allowed in result.allowed:
                    seen.append((allowed.code, allowed.outputs))
                    walk(i + 1, (*joint[:si], allowed.next_state, *joint[si + 1:]), seen)
                    seen.pop()

            walk(0, tuple(joint0), [])
    return frozenset(found)


def ordering_classes(case: ParallelCase, pins: Pins,
                     start: Mapping[str, frozenset[State]]) -> list[OrderingClass]:
    """The race's orderings, grouped by what the model lets a run observe of each."""
    groups: dict[frozenset[Signature], list[tuple[Position, ...]]] = {}
    for ordering in orderings(case):
        groups.setdefault(signatures(case, ordering, pins, start), []).append(ordering)
    classes = []
    for sigs, members in groups.items():
        others = set().union(*(s for s in groups if s != sigs)) if len(groups) > 1 else set()
        label = " | ".join(ordering_label(case, o) for o in members)
        classes.append(OrderingClass(label, tuple(members), bool(sigs - others)))
    return classes


def consistent_classes(case: ParallelCase, classes: Sequence[OrderingClass],
                       ops: Sequence[HistoryOp], where: Sequence[Position],
                       initial: Mapping[str, frozenset[State]], pins: Pins,
                       budget: int) -> list[int] | None:
    """The indexes of the classes this run's history is consistent with; None when a
    conflicting operation's outcome is unknown (the run shows no ordering)."""
    ids = {position: op.id for op, position in zip(ops, where, strict=True)}
    conflict = conflict_positions(case)
    if any(p not in ids for p in conflict):
        return None
    by_id = {op.id: op for op in ops}
    if any(by_id[ids[p]].unknown for p in conflict):
        return None
    machines = {s.name: MACHINES[s.machine] for s in case.slots}
    found = []
    for number, klass in enumerate(classes):
        for ordering in klass.orderings:
            outcome = check(ops, machines, initial, pins, budget, shrink=False,
                            order=tuple(ids[p] for p in ordering))
            if outcome.verdict is Linearizability.LINEARIZABLE:
                found.append(number)
                break
    return found


def directed_gates(ordering: Sequence[Position], returned: bool, delay: float
                   ) -> dict[Position, Gate]:
    """A schedule that steers a run towards `ordering`: each conflicting operation waits for the
    one before it (in another branch) to have been invoked (`returned` false: they still overlap,
    the earlier one leads by `delay`) or to have answered (`returned` true: they come in that
    order for sure, `delay` apart)."""
    gates: dict[Position, Gate] = {}
    for before, after in itertools.pairwise(ordering):
        if before[0] != after[0]:
            gates[after] = Gate(before, returned, delay)
    return gates


@dataclass
class OrderingTally:
    """What a race's runs showed of its ordering classes."""

    classes: list[OrderingClass]
    observed: list[int]
    consistent: list[int]
    classified_runs: int = 0
    ambiguous_runs: int = 0
    unknown_runs: int = 0
    directed_runs: int = 0

    @staticmethod
    def of(classes: Sequence[OrderingClass]) -> OrderingTally:
        return OrderingTally(list(classes), [0] * len(classes), [0] * len(classes))

    def add(self, found: list[int] | None) -> None:
        """Count one run: the classes it was consistent with (None: it showed no ordering)."""
        if found is None:
            self.unknown_runs += 1
            return
        self.classified_runs += 1
        for number in found:
            self.consistent[number] += 1
        if len(found) == 1:
            self.observed[found[0]] += 1
        elif len(found) > 1:
            self.ambiguous_runs += 1

    def missing(self) -> list[int]:
        """The classes not yet observed (one the observations cannot show may still show by real
        time: a directed schedule that runs the operations one after the other)."""
        return [i for i in range(len(self.classes)) if not self.observed[i]]

    def to_json(self, case: ParallelCase) -> dict[str, Any]:
        classes = []
        for i, klass in enumerate(self.classes):
            entry: dict[str, Any] = {
                "ordering": klass.label, "observed": self.observed[i] > 0,
                "observed_runs": self.observed[i], "consistent_runs": self.consistent[i],
                "distinguishable": klass.distinguishable}
            if not self.observed[i]:
                if not klass.distinguishable:
                    entry["reason"] = ("the case's observations cannot show it (every outcome "
                                       "the model allows for it is also allowed for another "
                                       "ordering), and no run showed it by real time")
                elif self.consistent[i]:
                    entry["reason"] = (f"{self.consistent[i]} runs were consistent with it, but "
                                       f"each also with another ordering")
                else:
                    entry["reason"] = (f"not produced in {self.classified_runs} runs "
                                       f"({self.directed_runs} directed at missing orderings)")
            classes.append(entry)
        return {"conflict": [_name(case, p) for p in conflict_positions(case)],
                "classes": classes, "observed": sum(1 for n in self.observed if n),
                "allowed": len(self.classes), "classified_runs": self.classified_runs,
                "ambiguous_runs": self.ambiguous_runs, "unknown_runs": self.unknown_runs,
                "directed_runs": self.directed_runs}

    def summary(self) -> str:
        shown = sum(1 for n in self.observed if n)
        text = f"orderings observed {shown} of {len(self.classes)}"
        if self.ambiguous_runs:
            text += f" ({self.ambiguous_runs} runs could not tell two orderings apart)"
        return text
