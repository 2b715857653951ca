"""The language of rule obligations: `Obligation`, its three kinds of check, and the views a check reads.

An obligation restates one or more MUST rules of spec/DOMAIN.md as a property of a machine, written
from the rule's text and not from the table rows (DESIGN.md principle 10). Its vocabulary:

* `Now`: one reachable state of a machine, as the checker found it: the table's fields (`now["phase"]`),
  what an `Observer` has seen happen on the way there (`now.seen`: the operations taken and their
  results, kept apart from the table's own fields so that a forgotten field update still shows),
  and the variation-point pins in force (`now.pin("cancelled_code")`). `now.probe(op, **args)`
  asks the table what `op` would do here.
* `After`: one allowed outcome of a step, its code, outputs and the `Now` it leads to.
* The checks: `Always` (a state predicate holds in every reachable state), `Whenever` (a transition
  property: wherever an operation is DEFINED, or must be, in states and with arguments the premise
  admits, every allowed outcome satisfies the conclusion, and each result the rules also allow is
  among the outcomes) and `Reach` (from every reachable state that satisfies `start`, a state
  satisfying `goal` is reachable, optionally through one actor's moves or avoiding some).

Codes are compared as sets: `only(spec, *codes)` holds when every value an outcome admits is one
of `codes`; `fails(spec)` when every value it admits is a failure; `may_be(spec, code)` when it
admits `code`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

from callgate.model import codes
from callgate.model.codes import Code, Family
from callgate.model.transitions import (
    Actor,
    Allowed,
    AnyFailure,
    AnySuccess,
    Args,
    CodeSpec,
    Exact,
    Kind,
    Machine,
    ModelError,
    Returns,
    State,
    Value,
    step,
)

H = TypeVar("H")

Pins = tuple[tuple[str, str], ...]


# --- codes as sets ------------------------------------------------------------------------


def admitted(spec: CodeSpec) -> frozenset[int] | None:
    """The values a code spec admits, or None when they are not a small finite set."""
    if isinstance(spec, Exact):
        return frozenset([spec.code.value])
    if isinstance(spec, Returns):
        return frozenset([spec.value])
    if isinstance(spec, AnySuccess) and spec.family is Family.RPC_STATUS:
        return frozenset([0])
    return None


def only(spec: CodeSpec, *values: Code | int) -> bool:
    """Every value the spec admits is one of `values`."""
    allowed = admitted(spec)
    wanted = {v.value if isinstance(v, Code) else v for v in values}
    return allowed is not None and allowed <= wanted


def fails(spec: CodeSpec) -> bool:
    """Every value the spec admits is a failure code."""
    if isinstance(spec, Exact):
        return spec.code.is_failure
    return isinstance(spec, AnyFailure)


def succeeds(spec: CodeSpec) -> bool:
    """Every value the spec admits is a success code."""
    if isinstance(spec, Exact):
        return not spec.code.is_failure
    return isinstance(spec, AnySuccess)


def may_be(spec: CodeSpec, code: Code | int) -> bool:
    """The spec admits this code."""
    return spec.admits(code.value if isinstance(code, Code) else code)


def as_pinned(n: Now[Any], point: str, a: After[Any]) -> bool:
    """A failure, and exactly the code the variation point's pinned choice names, if it names one."""
    pinned = n.pinned_code(point)
    return fails(a.code) and (pinned is None or only(a.code, pinned))


MISSING = object()


# --- what a check reads ---------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """What the table says `op(args)` does in one state under the pins: its kind and outcomes.

    `kind` is None when no row answers (a gap, or a row whose update leaves the field domains).
    """

    op: str
    args: Args
    kind: Kind | None
    outcomes: tuple[Allowed, ...]
    error: str = ""

    @property
    def defined(self) -> bool:
        return self.kind is Kind.DEFINED and bool(self.outcomes)

    def only(self, *values: Code | int) -> bool:
        """DEFINED, and every outcome's code is one of `values`."""
        return self.defined and all(only(a.code, *values) for a in self.outcomes)

    def fails(self) -> bool:
        """DEFINED, and every outcome is a failure."""
        return self.defined and all(fails(a.code) for a in self.outcomes)

    def succeeds(self) -> bool:
        """DEFINED, and every outcome is a success."""
        return self.defined and all(succeeds(a.code) for a in self.outcomes)

    def may_be(self, code: Code | int) -> bool:
        """DEFINED, and some outcome admits `code`."""
        return self.defined and any(may_be(a.code, code) for a in self.outcomes)

    def signature(self) -> tuple[object, ...]:
        """What a caller of this operation can tell: the kind, and each outcome's code and outputs."""
        return (self.kind, frozenset((str(a.code), a.outputs) for a in self.outcomes))


class NeedsPin(Exception):
    """A check asked about a variation point that the path has not fixed: the checker evaluates
    it again once per choice of `point`."""

    def __init__(self, point: str) -> None:
        super().__init__(point)
        self.point = point


def compatible(when: tuple[tuple[str, str], ...], pins: Mapping[str, str]) -> bool:
    """An outcome's variation-point condition holds under `pins` (an unpinned point admits all)."""
    return all(pins.get(point, choice) == choice for point, choice in when)


@dataclass(frozen=True)
class _Answer:
    """The table's unpinned answer, and the variation points its outcomes name."""

    kind: Kind | None
    outcomes: tuple[Allowed, ...]
    points: tuple[str, ...]
    error: str


class Tables:
    """Memoised probes of one machine: the unpinned step once per state and call, then the
    outcomes filtered by the pins of the points that step's outcomes name."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.params = {op.name: tuple(p.name for p in op.params) for op in machine.operations}
        self._answers: dict[tuple[State, str, Args], _Answer | Probe] = {}
        self._probes: dict[tuple[State, str, Args, tuple[str | None, ...]], Probe] = {}
        # Derived answers an obligation memoises per (state, pins, open points); dropped with
        # the rest by `forget`.
        self.memo: dict[tuple[object, ...], object] = {}

    @classmethod
    def of(cls, machine: Machine) -> Tables:
        """The memo for this machine object (kept while the checker runs; see `forget`)."""
        found = _TABLES.get(id(machine))
        if found is None or found.machine is not machine:
            found = _TABLES[id(machine)] = Tables(machine)
        return found

    @classmethod
    def forget(cls) -> None:
        """Drop every memo (the checker does, when it is done)."""
        _TABLES.clear()

    def probe(self, state: State, op: str, args: Args, pins: Mapping[str, str],
              open_points: frozenset[str] = frozenset()) -> Probe:
        """The outcomes under `pins`; raises NeedsPin if they depend on an open point."""
        key = (state, op, args)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers[key] = self._answer(state, op, args)
        if isinstance(answer, Probe):  # no outcome names a variation point
            return answer
        chosen = tuple(pins.get(p) for p in answer.points)
        for point, choice in zip(answer.points, chosen, strict=True):
            if choice is None and point in open_points:
                raise NeedsPin(point)
        pkey = (state, op, args, chosen)
        found = self._probes.get(pkey)
        if found is None:
            allowed = tuple(a for a in answer.outcomes if compatible(a.when, pins))
            found = self._probes[pkey] = Probe(op, args, answer.kind, allowed, answer.error)
        return found

    def _answer(self, state: State, op: str, args: Args) -> _Answer | Probe:
        try:
            result = step(self.machine, state, op, args)
        except ModelError as exc:
            return Probe(op, args, None, (), str(exc))
        points = tuple(sorted({p for a in result.allowed for p, _ in a.when}))
        if not points:
            return Probe(op, args, result.kind, result.allowed)
        return _Answer(result.kind, result.allowed, points, "")


_TABLES: dict[int, Tables] = {}  # by id() of the machine, which each entry keeps alive


def probe(machine: Machine, state: State, op: str, args: Args, pins: Mapping[str, str]) -> Probe:
    """The table's answer to `op(args)` in `state`, the outcomes filtered by `pins`."""
    return Tables.of(machine).probe(state, op, args, pins)


@dataclass(frozen=True)
class Now(Generic[H]):
    """One reachable state: the table's fields, what the observer has seen, and the pins.

    `open_points` are the variation points the path there has not fixed: asking about one (its
    pin, or a probe whose outcomes depend on it) makes the checker try each of its choices.
    """

    machine: Machine
    state: State
    seen: H
    pins: Mapping[str, str]
    open_points: frozenset[str] = frozenset()

    def __getitem__(self, name: str) -> Value:
        return self.state[self.machine.index(name)]

    def pin(self, point: str) -> str | None:
        """The choice pinned for a variation point (None if the tables do not name the point)."""
        choice = self.pins.get(point)
        if choice is None and point in self.open_points:
            raise NeedsPin(point)
        return choice

    def pinned_code(self, point: str) -> Code | None:
        """The code a variation point's pinned choice names, or None (unpinned, or not a code)."""
        choice = self.pin(point)
        if choice is None:
            return None
        try:
            return codes.by_name(choice)
        except KeyError:
            return None

    def probe(self, op: str, **args: Value) -> Probe:
        """What `op(**args)` does here under the pins."""
        tables = Tables.of(self.machine)
        names = tables.params.get(op)
        if names is None:
            self.machine.operation(op)  # raises, naming the operations there are
            names = ()
        return tables.probe(self.state, op, tuple((n, args[n]) for n in names), self.pins,
                            self.open_points)

    def describe(self) -> str:
        return self.machine.describe(self.state)


@dataclass(frozen=True)
class After(Generic[H]):
    """One allowed outcome of a step and the state it leads to."""

    outcome: Allowed
    next: Now[H]

    @property
    def code(self) -> CodeSpec:
        return self.outcome.code

    def output(self, name: str) -> object:
        """An output the outcome asserts, or MISSING."""
        return dict(self.outcome.outputs).get(name, MISSING)


ArgMap = Mapping[str, Value]
StatePredicate = Callable[[Now[Any]], bool]
Premise = Callable[[Now[Any], ArgMap], bool]
Conclusion = Callable[[Now[Any], ArgMap, After[Any]], bool]


# --- the checks -----------------------------------------------------------------------------


class ObligationKind(Enum):
    """The three forms a rule takes as a property."""

    STATE = "state"
    TRANSITION = "transition"
    LIVENESS = "liveness"


@dataclass(frozen=True)
class Always:
    """A state predicate that holds in every reachable state."""

    holds: StatePredicate


@dataclass(frozen=True)
class Whenever:
    """A transition property of the operations `ops`.

    Wherever `when(now, args)` holds: with `defined`, the operation must be DEFINED there (with at
    least one outcome under the pins); with `never_defined`, it must not be; every allowed outcome
    must satisfy `then(now, args, after)`; and each of `some` must be satisfied by at least one
    allowed outcome (where the rules allow several results, the table must allow each of them,
    or it would fail a conforming implementation). The premise counts as met (the obligation is
    not vacuous) where it holds and the operation is DEFINED, or `defined`/`never_defined` is
    asked.
    """

    ops: tuple[str, ...]
    when: Premise
    then: Conclusion | None = None
    defined: bool = False
    never_defined: bool = False
    some: tuple[Conclusion, ...] = ()


@dataclass(frozen=True)
class Reach:
    """From every reachable state satisfying `start`, a state satisfying `goal` is reachable.

    `actors` restricts the moves on the way (for example the client's alone; empty: anyone's), and
    `without` names operations the way may not take (for example starting another call).
    """

    start: StatePredicate
    goal: StatePredicate
    actors: tuple[Actor, ...] = ()
    without: tuple[str, ...] = ()


Check = Always | Whenever | Reach


@dataclass(frozen=True)
class Obligation:
    """One rule obligation: a property restated from the rules' text, checked against a machine."""

    id: str
    rules: tuple[str, ...]
    text: str
    machine: str
    check: Check
    points: tuple[str, ...] = ()  # the variation points the check reads (documentation)

    @property
    def kind(self) -> ObligationKind:
        if isinstance(self.check, Always):
            return ObligationKind.STATE
        if isinstance(self.check, Whenever):
            return ObligationKind.TRANSITION
        return ObligationKind.LIVENESS


@dataclass(frozen=True)
class Observer(Generic[H]):
    """What happened on the way to a state, in the rules' terms, computed from the operations
    taken and their results only (never from the table's fields).

    `after(seen, op, args, outcome)` returns the new record; it must be a pure function of its
    arguments (the checker memoises it).
    """

    machine: str
    start: H
    after: Callable[[H, str, ArgMap, Allowed], H]
