"""How long the sequential runner lets a wait run when the model says nothing can arrive.

Some waits belong to the harness, not to the case: `wait_notification` (how long to look for a
notification), the RPC server's `server_test_cancel` poll with a finite timeout, and a timed
operation whose finite value the case does not choose (`CoWaitForMultipleHandles`). Their
length is not an argument the model or the concrete values (`callgate.conformance.cases.values`)
test. Where the model allows something to arrive during such a wait, the runner waits as long
as before (`callgate.conformance.judge.perform.wait_ms`: 2 s for a notification, 50 ms for a
poll), or as long as a look (below) on an adapter so slow that a look is longer. Where it
allows nothing to arrive, the wait is only a look for something that should not
be there (a duplicate notification, a cancel nobody sent), and its length is a guess either way.
That look is then as long as this adapter needs: `look_ms`, calibrated at the start of the run.

Calibration: the first `CALIBRATION_STEPS` steps that do not wait (operations the model does not
list as timed) are timed, round trip through the adapter included; the look is `LOOK_FACTOR`
times their median, at least `LOOK_FLOOR_MS`. A slow adapter (Wine, an adapter over a pipe)
gets a long look, longer than the old fixed 20 ms if its steps are slow; the in-process
reference a short one. Until the calibration is done every wait keeps its old length.

"Nothing can arrive" is decided from the model, in every state the tracker may be in:

* `wait_notification`: no allowed outcome says a notification arrives (the same test that chose
  the old short 20 ms look; see `perform.wait_ms`).
* a timed operation with a finite timeout: the outcomes allowed with the finite timeout are the
  outcomes allowed with a zero timeout (code, outputs and next state), so a correct
  implementation answers the same whatever the wait's length.

Never shortened: a wait whose finite value the case chose (`ISynchronize::Wait`,
`ISynchronizeContainer::WaitMultiple`: the value itself is tested, values.py), any wait where
the model allows something to arrive, and the parallel cases (their timing is what they test;
their notification waits are decided from the answers before them instead,
`callgate.conformance.cases.parallel.observed_waits`).
What a shortened look gives up: a faulty implementation that produces something the model
forbids (a second notification, a cancel) only after `look_ms` but within the old wait would
have been caught by the old wait and is not by this one. Anything it produces before `look_ms`
is caught as before, and an answer a correct implementation gives cannot change.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from callgate.conformance.cases.values import class_of
from callgate.conformance.judge.perform import wait_ms
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, Allowed, ModelError, Tracker, Value

CALIBRATION_STEPS = 64
LOOK_FACTOR = 20
LOOK_FLOOR_MS = 2
ZERO = "zero"
FINITE = "finite"


def _outcomes(allowed: Sequence[Allowed]) -> set[tuple[object, ...]]:
    return {(a.code, a.outputs, a.next_state) for a in allowed}


def nothing_can_arrive(machine: str, action: Action, tracker: Tracker,
                       allowed: Sequence[Allowed]) -> bool:
    """Whether the model allows nothing to arrive during `action`'s wait (see the module's
    doc); False for an operation that does not wait."""
    if action.op == "wait_notification":
        return wait_ms(action.op, dict(action.args), allowed) == wait_ms(
            action.op, dict(action.args), ())
    timed, param = MACHINES[machine].timeout_param(action.op)
    args: dict[str, Value] = dict(action.args)
    if not timed or param is None or args.get(param) != FINITE:
        return False
    if class_of(machine, action.op, param, FINITE) is not None:  # the case chose the value
        return False
    zero = tuple((k, ZERO if k == param else v) for k, v in action.args)
    try:
        at_once = tracker.expected(action.op, zero)
    except ModelError:
        return False
    return bool(allowed) and _outcomes(allowed) == _outcomes(at_once)


@dataclass
class WaitLengths:
    """The run's wait lengths: `calibrate` False keeps every wait at its old length (what
    `callgate run --full-waits` does)."""

    calibrate: bool = True
    samples: list[float] = field(default_factory=list)
    look_ms: int | None = None
    shortened: int = 0  # how many waits were sent as a calibrated look

    def observe(self, machine: str, op: str, seconds: float) -> None:
        """A step's round trip, in seconds; counted while calibrating, if the step does not
        wait."""
        if not self.calibrate or self.look_ms is not None or MACHINES[machine].timeout_param(op)[0]:
            return
        self.samples.append(seconds)
        if len(self.samples) >= CALIBRATION_STEPS:
            self.look_ms = max(LOOK_FLOOR_MS,
                               math.ceil(LOOK_FACTOR * statistics.median(self.samples) * 1000))

    def wait_ms(self, machine: str, action: Action, tracker: Tracker,
                allowed: Sequence[Allowed]) -> int:
        """How long `action` may wait, in milliseconds."""
        full = wait_ms(action.op, dict(action.args), allowed)
        if self.look_ms is None or not MACHINES[machine].timeout_param(action.op)[0]:
            return full
        if not nothing_can_arrive(machine, action, tracker, allowed):
            return max(full, self.look_ms)  # never shorter than a look on this adapter
        self.shortened += 1
        return self.look_ms

    def summary(self) -> dict[str, object]:
        """What the report says of the waits."""
        return {"calibrated": self.calibrate, "look_ms": self.look_ms,
                "calibration_steps": len(self.samples), "shortened": self.shortened}
