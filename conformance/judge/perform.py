"""One action sent to a session and recorded, as every kind of case does it: the features it needs,
its request and how long it may wait, the call and the check of the answer, and its step record.

The sequential runner (`callgate.conformance.judge.runner`) and the parallel cases
(`callgate.conformance.cases.parallel`) both go through these functions, so a case is judged
not applicable, a request is built, and an answer is checked and recorded the same way whether
its steps run one after another or on several threads at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from callgate.conformance.protocol.adapter import (
    FINITE_WAIT_MS,
    AdapterFault,
    Observation,
    Request,
    Session,
    SlotSpec,
    config_features_needed,
    features_needed,
)
from callgate.conformance.results import StepRecord
from callgate.model import codes
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, Allowed, Returns, Value

# How long wait_notification may wait when the model says a notification may arrive, and when it
# says none may: a missing notification needs a generous wait, a duplicate only a short look.
NOTIFY_EXPECTED_MS = 2000
NOTIFY_ABSENT_MS = 20

# The value of a timeout parameter that waits for ever (ISynchronize::Wait(INFINITE), ...).
INFINITE = "infinite"

# How a request reaches the session: directly, or through the step executor's `call` (which
# bounds it by the step timeout).
Call = Callable[[Callable[[], Observation]], Observation]


def slot_machines(slots: Iterable[SlotSpec]) -> dict[str, str]:
    """Each slot's machine, by slot name."""
    return {s.name: s.machine for s in slots}


def replay_slots(slots: Iterable[SlotSpec]) -> list[dict[str, Any]]:
    """The slots as `callgate replay` reads them back."""
    return [{"name": s.name, "machine": s.machine, "config": dict(s.config)} for s in slots]


def action_features(machine: str, action: Action) -> frozenset[str]:
    """The features an adapter must declare for `action` on a slot of `machine` to be sent."""
    key = (machine, action.op, action.args)
    known = _FEATURES.get(key)
    if known is None:
        known = _FEATURES[key] = frozenset(features_needed(machine, action.op, dict(action.args)))
    return known


# Asked at every step, for the few operations and arguments of each machine: worked out once.
_FEATURES: dict[tuple[str, str, tuple[tuple[str, Value], ...]], frozenset[str]] = {}
_BLOCKS: dict[tuple[str, str, tuple[tuple[str, Value], ...]], bool] = {}


def missing_features(slots: Sequence[SlotSpec], actions: Iterable[Action],
                     features: Iterable[str]) -> set[str]:
    """The features that the slots' configurations and the actions need and `features` lacks
    (empty: the case can run)."""
    machines = slot_machines(slots)
    needed: set[str] = set()
    for slot in slots:
        needed |= config_features_needed(slot.machine, slot.config)
    for action in actions:
        needed |= action_features(machines[action.slot], action)
    return needed - set(features)


def wait_ms(request_op: str, args: Mapping[str, Value], allowed: Sequence[Allowed]) -> int:
    """How long an operation that waits may wait, from what the model expects of it (`allowed`:
    the outcomes it allows in every state the operation may start in)."""
    if request_op in ("wait_notification", "server_wait_notification"):
        may_arrive = any(isinstance(a.code, Returns) and a.code.value == 1 for a in allowed)
        return NOTIFY_EXPECTED_MS if may_arrive else NOTIFY_ABSENT_MS
    return FINITE_WAIT_MS


def blocks(machine: str, action: Action) -> bool:
    """Whether `action` on a slot of `machine` may wait for ever: a timed operation given an
    INFINITE timeout. (An operation that may always wait, such as wait_notification, is sent with
    a bounded `wait_ms` instead; see `wait_ms`.)"""
    key = (machine, action.op, action.args)
    known = _BLOCKS.get(key)
    if known is None:
        timed, param = MACHINES[machine].timeout_param(action.op)
        known = _BLOCKS[key] = (timed and param is not None
                                and dict(action.args).get(param) == INFINITE)
    return known


def zero_wait(machine: str, action: Action) -> Action:
    """The same operation with a zero timeout: the non-blocking look at what `action` waits for."""
    _, param = MACHINES[machine].timeout_param(action.op)
    return Action(action.slot, action.op,
                  tuple((k, "zero" if k == param else v) for k, v in action.args))


def request_for(action: Action, wait: int) -> Request:
    """The request that performs `action`, waiting at most `wait` milliseconds if it waits."""
    return Request(action.slot, action.op, dict(action.args), wait)


def perform(session: Session, request: Request, call: Call | None = None) -> Observation:
    """Send `request` to `session` (through `call` when given) and check the answer's shape.

    Raises `AdapterFault`, with the answer as evidence, when the adapter returned something other
    than an `Observation` with an integer code; whatever the session or `call` raised (a
    `StepTimeout`, `NotApplicable`, anything) passes through for the caller to judge."""
    observation = session.perform(request) if call is None else call(lambda: session.perform(request))
    if not isinstance(observation, Observation) or not isinstance(observation.code, int):
        raise AdapterFault(f"the adapter returned {observation!r}, not an Observation",
                           repr(observation)[:4000])
    return observation


def code_name(code: int | None, machine: str) -> str:
    """A return code's name in the numbering `machine` uses ('' for no code)."""
    if code is None:
        return ""
    key = (code, machine)
    name = _CODE_NAMES.get(key)
    if name is None:
        if len(_CODE_NAMES) > 10_000:  # an implementation answering ever new numbers
            _CODE_NAMES.clear()
        name = _CODE_NAMES[key] = codes.describe(code, MACHINES[machine].codes)
    return name


# Every step's record names its code: a run sees a few dozen codes, each thousands of times.
_CODE_NAMES: dict[tuple[int, str], str] = {}


def step_record(action: Action, machine: str, observation: Observation | None, *,
                allowed: list[str], ok: bool, rules: list[str], state_before: str,
                seconds: float, started: float, ended: float, thread: str = "",
                sent: Mapping[str, Value] | None = None) -> StepRecord:
    """The report's record of one performed action (`observation` None: no answer came)."""
    return StepRecord(
        slot=action.slot, op=action.op, args=dict(action.args),
        code=observation.code if observation is not None else None,
        code_name=code_name(observation.code, machine) if observation is not None else "",
        outputs=dict(observation.outputs) if observation is not None else {},
        allowed=allowed, ok=ok, rules=rules, state_before=state_before, seconds=seconds,
        thread=thread, started=started, ended=ended, sent=dict(sent or {}))
