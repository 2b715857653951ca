"""What a parallel case is, and what the model says about every interleaving of its branches.

A `ParallelCase` declares its slots, a prefix, two or more branches and an optional suffix.
Preconditions must hold in every interleaving (as PropEr requires of parallel state-machine
tests): `interleavings` walks every order of the branches' actions from every state the prefix
may lead to, and a case is sound only if each action is DEFINED in every state it may start in.
So no interleaving drives the implementation into undefined behaviour, and no action is sent to
a test server that might not hold a call. An action that is not one atomic step (`NOT_ATOMIC`)
never races another branch's action on its object: linearizability cannot judge it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from callgate.conformance.judge.perform import replay_slots, slot_machines
from callgate.conformance.judge.runner import initial_state
from callgate.conformance.protocol.adapter import SlotSpec
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, Kind, Pins, State, step

KIND = "parallel"


@dataclass(frozen=True)
class ParallelCase:
    """A prefix, then branches run concurrently; with its metadata (id, description, rules)."""

    id: str
    description: str
    slots: tuple[SlotSpec, ...]
    prefix: tuple[Action, ...]
    branches: tuple[tuple[Action, ...], ...]
    rules: tuple[str, ...] = ()
    # Run after every branch has ended, on one thread: its actions come last in real time, so
    # the checker judges them from every state the branches' orders may have left.
    suffix: tuple[Action, ...] = ()
    kind: str = KIND
    # A named race's conflicting operations, as (branch, index): the run reports which orders
    # of them it observed (`callgate.conformance.cases.parallel.orderings`); empty: the first
    # action of each branch.
    conflict: tuple[tuple[int, int], ...] = ()

    def size(self) -> int:
        return len(self.prefix) + sum(len(b) for b in self.branches) + len(self.suffix)

    def actions(self) -> tuple[Action, ...]:
        """Every action of the case: the prefix, each branch in turn, the suffix."""
        return (*self.prefix, *(a for b in self.branches for a in b), *self.suffix)

    def replay(self) -> dict[str, object]:
        """The case as data: `callgate replay` runs it again (prefix, then branches)."""
        def steps(actions: Sequence[Action]) -> list[dict[str, object]]:
            return [{"slot": a.slot, "op": a.op, "args": dict(a.args)} for a in actions]

        return {"slots": replay_slots(self.slots),
                "steps": steps(self.prefix),
                "branches": [steps(b) for b in self.branches],
                "suffix": steps(self.suffix)}


def describe(case: ParallelCase) -> str:
    """The case in one line: its prefix, then its branches side by side."""
    prefix = "; ".join(str(a) for a in case.prefix) or "nothing"
    branches = " || ".join("; ".join(str(a) for a in b) for b in case.branches)
    return f"prefix {prefix}, then {branches}"


# --- what the model says about every interleaving ----------------------------------------------


@dataclass(frozen=True)
class Interleavings:
    """Whether every interleaving of a case's branches keeps every action DEFINED; the states
    each branch action may start in; and the rules the case exercises."""

    sound: bool
    problem: str
    starts: Mapping[tuple[int, int], frozenset[State]]
    rules: tuple[str, ...]
    prefix_states: Mapping[str, frozenset[State]]


def prefix_states(slots: Sequence[SlotSpec], prefix: Sequence[Action], pins: Pins
                  ) -> tuple[dict[str, frozenset[State]], str, list[str]]:
    """Each slot's candidate states after the prefix, following every allowed outcome; a problem
    (an action not DEFINED in some state it may meet) is returned as text."""
    machines = slot_machines(slots)
    states = {s.name: frozenset({initial_state(MACHINES[s.machine], s.config)}) for s in slots}
    rules: list[str] = []
    for action in prefix:
        machine = MACHINES[machines[action.slot]]
        nxt: set[State] = set()
        for state in states[action.slot]:
            result = step(machine, state, action.op, action.args, pins)
            if result.kind is not Kind.DEFINED:
                return states, (f"prefix action {action} is {result.kind.value} in "
                                f"{machine.describe(state)}"), rules
            rules.extend(result.rules)
            nxt.update(a.next_state for a in result.allowed)
        states[action.slot] = frozenset(nxt)
    return states, "", rules


def interleavings(slots: Sequence[SlotSpec], prefix: Sequence[Action],
                  branches: Sequence[Sequence[Action]], pins: Pins,
                  suffix: Sequence[Action] = (),
                  start: Mapping[str, frozenset[State]] | None = None) -> Interleavings:
    """Walk every interleaving of `branches` after `prefix` through the model, then `suffix`
    (whose actions have the position (len(branches), k) in `starts`). With `start`, the walk
    begins from those slot states instead of stepping the prefix (after a prefix has run, the
    states the implementation's choices actually led to)."""
    key = None
    if start is None:
        key = (tuple((s.name, s.machine, tuple(sorted(s.config.items()))) for s in slots),
               tuple(prefix), tuple(tuple(b) for b in branches), tuple(sorted(pins.items())),
               tuple(suffix))
        known = _INTERLEAVINGS.get(key)
        if known is not None:
            return known
        if len(_INTERLEAVINGS) > 100_000:
            _INTERLEAVINGS.clear()
        found = _interleavings(slots, prefix, branches, pins, suffix, None)
        _INTERLEAVINGS[key] = found
        return found
    return _interleavings(slots, prefix, branches, pins, suffix, start)


# Generation asks the same questions many times over (Hypothesis replays and shrinks).
_INTERLEAVINGS: dict[object, Interleavings] = {}

# Operations that are not one atomic step, with the argument values for which they are: the
# model gives each one result from the state it starts in, but the implementation acts at its
# start and decides its result at its end. ICancelMethodCalls::Cancel with ulSeconds > 0 makes
# the request visible to the server at once (its TestCancel sees it), then waits up to ulSeconds
# and reports RPC_E_CALL_COMPLETE if the call completed meanwhile (COM-CANCEL-08): a history no
# sequential order explains, from a correct implementation. So such an action never races
# another branch's action on its object; it may run alone on its object, in the prefix or the
# suffix.
NOT_ATOMIC: dict[tuple[str, str], tuple[str, object]] = {
    ("com_call", "Cancel"): ("seconds", 0),
}
# The operations on the same object that may race a non-atomic action all the same: their
# outcomes do not depend on its early effect, and its end is judged by what its answer says
# (the server's Signal: ISynchronize::Signal returns S_OK whether or not a cancel was requested,
# and an accepted Cancel(ulSeconds) says ulSeconds passed without the call completing, which the
# checker holds it to: `threads.WAITED_ANSWERS`). Anything that could see the request itself (a
# TestCancel, a second Cancel) still may not race it.
MAY_RACE_NOT_ATOMIC: dict[tuple[str, str], frozenset[str]] = {
    ("com_call", "Cancel"): frozenset({"server_signal"}),
}


def not_atomic(machine: str, action: Action) -> bool:
    """Whether `action` (on a slot of `machine`) is not one atomic step (see `NOT_ATOMIC`)."""
    atomic = NOT_ATOMIC.get((machine, action.op))
    return atomic is not None and dict(action.args).get(atomic[0]) != atomic[1]


def _racing_non_atomic(branches: Sequence[Sequence[Action]], machines: Mapping[str, str]
                       ) -> str:
    """A branch action that is not atomic while another branch acts on its object ("" if none)."""
    for b, branch in enumerate(branches):
        others = {a.slot for c, other in enumerate(branches) if c != b for a in other}
        for action in branch:
            machine = machines[action.slot]
            harmless = MAY_RACE_NOT_ATOMIC.get((machine, action.op), frozenset())
            if all(a.op in harmless for c, other in enumerate(branches) if c != b
                   for a in other if a.slot == action.slot):
                continue
            if action.slot in others and not_atomic(machine, action):
                return (f"branch {b + 1} action {action} is not atomic (it acts at its start and "
                        f"decides its result at its end), so no sequential order can judge it "
                        f"against another branch's actions on {action.slot}")
    return ""


def _interleavings(slots: Sequence[SlotSpec], prefix: Sequence[Action],
                   branches: Sequence[Sequence[Action]], pins: Pins, suffix: Sequence[Action],
                   start: Mapping[str, frozenset[State]] | None) -> Interleavings:
    if start is None:
        after, problem, rules = prefix_states(slots, prefix, pins)
    else:
        after, problem, rules = dict(start), "", []
    if problem:
        return Interleavings(False, problem, {}, tuple(dict.fromkeys(rules)), after)
    machines = slot_machines(slots)
    racing = _racing_non_atomic(branches, machines)
    if racing:
        return Interleavings(False, racing, {}, tuple(dict.fromkeys(rules)), after)
    names = [s.name for s in slots]
    index = {name: i for i, name in enumerate(names)}
    joint0 = {tuple(c) for c in itertools.product(*(sorted(after[n], key=repr) for n in names))}
    layer: dict[tuple[int, ...], set[tuple[State, ...]]] = {(0,) * len(branches): joint0}
    starts: dict[tuple[int, int], set[State]] = {}
    seen_rules = dict.fromkeys(rules)
    final: set[tuple[State, ...]] = set()
    while layer:
        following: dict[tuple[int, ...], set[tuple[State, ...]]] = {}
        for position, joints in layer.items():
            if all(k >= len(b) for k, b in zip(position, branches, strict=True)):
                final |= joints
            for b, branch in enumerate(branches):
                k = position[b]
                if k >= len(branch):
                    continue
                action = branch[k]
                si = index[action.slot]
                machine = MACHINES[machines[action.slot]]
                moved = (*position[:b], k + 1, *position[b + 1:])
                target = following.setdefault(moved, set())
                for joint in joints:
                    state = joint[si]
                    result = step(machine, state, action.op, action.args, pins)
                    if result.kind is not Kind.DEFINED:
                        return Interleavings(
                            False, f"branch {b + 1} action {action} is {result.kind.value} in "
                                   f"{machine.describe(state)} in some interleaving",
                            {}, tuple(seen_rules), after)
                    starts.setdefault((b, k), set()).add(state)
                    seen_rules.update(dict.fromkeys(result.rules))
                    for allowed in result.allowed:
                        target.add((*joint[:si], allowed.next_state, *joint[si + 1:]))
        layer = following
    for k, action in enumerate(suffix):
        si = index[action.slot]
        machine = MACHINES[machines[action.slot]]
        after_action: set[tuple[State, ...]] = set()
        for joint in final:
            result = step(machine, joint[si], action.op, action.args, pins)
            if result.kind is not Kind.DEFINED:
                return Interleavings(
                    False, f"suffix action {action} is {result.kind.value} in "
                           f"{machine.describe(joint[si])} after some interleaving",
                    {}, tuple(seen_rules), after)
            starts.setdefault((len(branches), k), set()).add(joint[si])
            seen_rules.update(dict.fromkeys(result.rules))
            after_action.update((*joint[:si], a.next_state, *joint[si + 1:])
                                for a in result.allowed)
        final = after_action
    return Interleavings(True, "", {k: frozenset(v) for k, v in starts.items()},
                         tuple(seen_rules), after)
