"""How long a notification wait in a parallel case waits, from what its run has already seen.

Before a run, each branch and suffix action's wait is fixed from every state any interleaving
may start it in (`threads.wait_times`): a `wait_notification` waits the full 2 s
(`perform.NOTIFY_EXPECTED_MS`) when a notification may arrive in one of them, else only the
short look (`perform.NOTIFY_ABSENT_MS`). That union is wider than the run: the second of two
waits on one branch is given the full 2 s because, in some interleaving, the first could have
timed out and left the notification for it, even in a run whose first wait has just received
it. A correct implementation then sends nothing, and the wait lasts its whole 2 s; the race
shrinker runs such candidates 8 times each (`callgate.conformance.judge.race_shrink`).

`ObservedWaits` decides again when the action is about to be sent, with what is known then:
the answers of the same branch's earlier actions (a branch's own actions happen in its order),
and for the suffix, which runs after every branch ended, the answers of every branch action and
of the suffix's earlier actions. It walks every interleaving of the branches from the states
the prefix led to, as `case.interleavings` does, but keeps of an answered action only the
outcomes that admit its answer (`Allowed.admits`, as the linearizability checker does). The
actions not answered yet (another branch's) keep every allowed outcome. So the states it finds
contain every state a linearization of the run can start the action in: the wait is shortened
to the look only when, in all of them, no notification can arrive, which is the rule the
sequential runner and `wait_times` already follow for a wait the model says nothing can
deliver. A wait is never made longer, and an answer no outcome admits (the implementation is
already wrong, the checker will say so) leaves the wait as it was.

What a shortened wait gives up is what the look gives up everywhere (`callgate.conformance.judge.waits`):
a notification the model forbids that a faulty implementation sends only after the look.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from callgate.conformance.cases.parallel.case import ParallelCase
from callgate.conformance.judge.perform import NOTIFY_EXPECTED_MS, slot_machines, wait_ms
from callgate.conformance.protocol.adapter import Observation
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, Allowed, Kind, Pins, State, step

Position = tuple[int, int]  # (branch, index); the suffix is branch len(branches)
Joint = tuple[State, ...]

# The operations whose wait this decides again (those `perform.wait_ms` gives the full
# notification wait when something may arrive).
NOTIFICATION_WAITS = frozenset({"wait_notification", "server_wait_notification"})


class ObservedWaits:
    """The waits of one run of `case`, from the states its prefix led to (`initial`, by slot)."""

    def __init__(self, case: ParallelCase, initial: Mapping[str, frozenset[State]],
                 pins: Pins) -> None:
        self.case = case
        self.pins = pins
        self.machines = slot_machines(case.slots)
        self.names = [s.name for s in case.slots]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.initial = initial

    def wait(self, position: Position, planned: int,
             answers: Mapping[Position, Observation]) -> int:
        """How long the action at `position` waits: `planned` (the wait fixed before the run),
        or the short look when, given `answers` (earlier actions' observations, by position),
        no state it may start in lets a notification arrive."""
        action = self._action(position)
        if action.op not in NOTIFICATION_WAITS or planned < NOTIFY_EXPECTED_MS or not answers:
            return planned
        allowed = self.allowed(position, answers)
        if allowed is None:
            return planned
        return min(planned, wait_ms(action.op, dict(action.args), allowed))

    def _action(self, position: Position) -> Action:
        b, k = position
        branches = self.case.branches
        return branches[b][k] if b < len(branches) else self.case.suffix[k]

    def _outcomes(self, state: State, action: Action, answer: Observation | None
                  ) -> list[Allowed] | None:
        """The outcomes of `action` from `state` that admit `answer` (all of them without
        one); None when the action is not DEFINED there."""
        machine = MACHINES[self.machines[action.slot]]
        result = step(machine, state, action.op, action.args, self.pins)
        if result.kind is not Kind.DEFINED:
            return None
        if answer is None:
            return list(result.allowed)
        outputs = dict(answer.outputs)
        return [a for a in result.allowed if a.admits(answer.code, outputs)]

    def _advance(self, joints: set[Joint], action: Action, answer: Observation | None
                 ) -> set[Joint]:
        si = self.index[action.slot]
        found: set[Joint] = set()
        for joint in joints:
            for allowed in self._outcomes(joint[si], action, answer) or ():
                found.add((*joint[:si], allowed.next_state, *joint[si + 1:]))
        return found

    def starts(self, position: Position, answers: Mapping[Position, Observation]
               ) -> set[Joint]:
        """Every joint state (one state per slot) the action at `position` may start in, over
        every interleaving whose answered actions gave `answers`."""
        branches = self.case.branches
        joints: set[Joint] = set(itertools.product(
            *(sorted(self.initial.get(n, frozenset()), key=repr) for n in self.names)))
        layer: dict[tuple[int, ...], set[Joint]] = {(0,) * len(branches): joints}
        found: set[Joint] = set()
        final: set[Joint] = set()
        target_b, target_k = position
        while layer:
            following: dict[tuple[int, ...], set[Joint]] = {}
            for at, states in layer.items():
                if not states:
                    continue
                if target_b < len(branches) and at[target_b] == target_k:
                    found |= states
                if all(k >= len(b) for k, b in zip(at, branches, strict=True)):
                    final |= states
                for b, branch in enumerate(branches):
                    k = at[b]
                    # The target's branch goes no further than the target: what follows it
                    # happens after it.
                    if k >= len(branch) or (b == target_b and k >= target_k):
                        continue
                    moved = (*at[:b], k + 1, *at[b + 1:])
                    following.setdefault(moved, set()).update(
                        self._advance(states, branch[k], answers.get((b, k))))
            layer = following
        if target_b < len(branches):
            return found
        for k in range(target_k):
            final = self._advance(final, self.case.suffix[k], answers.get((len(branches), k)))
        return final

    def allowed(self, position: Position, answers: Mapping[Position, Observation]
                ) -> list[Allowed] | None:
        """What the model allows the action at `position` from every state it may start in,
        given `answers`; None when no state is left (an answer the model does not allow)."""
        action = self._action(position)
        si = self.index[action.slot]
        states = {joint[si] for joint in self.starts(position, answers)}
        if not states:
            return None
        found: list[Allowed] = []
        for state in sorted(states, key=repr):
            outcomes = self._outcomes(state, action, None)
            if outcomes is None:
                return None
            found += outcomes
        return found

