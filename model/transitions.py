"""The model's generic machinery: table types, stepping to sets of allowed outcomes, composition.

A family module (`callgate.model.tables.com_call`, `callgate.model.tables.sync_object`,
`callgate.model.tables.rpc_handle`) declares, as data, a `Machine`: finite fields (the state),
operations with finite parameter domains, and `Row`s. A row says, for the states its guard admits
and the arguments it admits, whether the operation is DEFINED (with one or more allowed `Outcome`s),
UNDEFINED (the documentation gives no result: never driven in conformance runs) or NOT_OFFERED (the
harness cannot issue it there, for example signalling a call the test server does not hold). Every
row cites rule IDs.

Everything else (Z3 proofs, the state graph, the Hypothesis machine, generated cases) reads these
tables through `step()`; no expected result is written anywhere else.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from types import MappingProxyType

from callgate.model import codes
from callgate.model.codes import Code, Family

Value = str | int | bool
State = tuple[Value, ...]
Args = tuple[tuple[str, Value], ...]
Pins = Mapping[str, str]


class Kind(Enum):
    """What the documentation says about an operation in a state."""

    DEFINED = "defined"
    UNDEFINED = "undefined"
    NOT_OFFERED = "not_offered"


class Actor(Enum):
    """Who performs an operation: the client, or the harness-controlled test server."""

    CLIENT = "client"
    SERVER = "server"


class ModelError(Exception):
    """The tables are inconsistent with a request: a gap, an overlap, or an unknown name."""


# --- expressions (values of outputs and updates) --------------------------------------------



# The output with which an adapter says the operation raised instead of returning (the code is
# then the exception's): see `Allowed.admits`.
RAISED = "raised"

@dataclass(frozen=True)
class Const:
    """A literal value."""

    value: Value

    def eval(self, fields: Mapping[str, Value], args: Mapping[str, Value]) -> Value:
        return self.value

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Var:
    """The value of a field of the state before the step."""

    name: str

    def eval(self, fields: Mapping[str, Value], args: Mapping[str, Value]) -> Value:
        return fields[self.name]

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Arg:
    """The value of an argument of the operation."""

    name: str

    def eval(self, fields: Mapping[str, Value], args: Mapping[str, Value]) -> Value:
        return args[self.name]

    def __str__(self) -> str:
        return f"${self.name}"


@dataclass(frozen=True)
class Plus:
    """A numeric field plus a constant (counters)."""

    name: str
    k: int

    def eval(self, fields: Mapping[str, Value], args: Mapping[str, Value]) -> Value:
        value = fields[self.name]
        assert isinstance(value, int) and not isinstance(value, bool)
        return value + self.k

    def __str__(self) -> str:
        return f"{self.name}{self.k:+d}"


Expr = Const | Var | Arg | Plus


# --- code specifications (which return codes an outcome admits) -----------------------------


@dataclass(frozen=True)
class Exact:
    """Exactly this code."""

    code: Code

    def admits(self, value: int) -> bool:
        return (value & 0xFFFFFFFF) == self.code.value

    def __str__(self) -> str:
        return str(self.code)


@dataclass(frozen=True)
class Returns:
    """A plain return value that is not a status code (a reference count, an observation)."""

    value: int
    meaning: str = ""

    def admits(self, value: int) -> bool:
        return value == self.value

    def __str__(self) -> str:
        return f"{self.value} ({self.meaning})" if self.meaning else str(self.value)


@dataclass(frozen=True)
class AnyFailure:
    """Any failure code of a family, except the listed ones."""

    family: Family
    excluding: tuple[Code, ...] = ()

    def admits(self, value: int) -> bool:
        value &= 0xFFFFFFFF
        if any(value == c.value for c in self.excluding):
            return False
        if self.family is Family.HRESULT:
            return bool(value & 0x80000000)
        return value != 0

    def __str__(self) -> str:
        but = f" except {', '.join(c.name for c in self.excluding)}" if self.excluding else ""
        return f"any {self.family.value} failure{but}"


@dataclass(frozen=True)
class AnySuccess:
    """Any success code of a family (S_OK or another non-negative HRESULT)."""

    family: Family

    def admits(self, value: int) -> bool:
        value &= 0xFFFFFFFF
        if self.family is Family.HRESULT:
            return not value & 0x80000000
        return value == 0

    def __str__(self) -> str:
        return f"any {self.family.value} success"


@dataclass(frozen=True)
class Anything:
    """No constraint: the documentation says nothing checkable about this value."""

    why: str

    def admits(self, value: int) -> bool:
        return True

    def __str__(self) -> str:
        return f"anything ({self.why})"


@dataclass(frozen=True)
class CodeOf:
    """The code whose value a field or argument holds (an abort code passed through)."""

    expr: Expr
    family: Family

    def admits(self, value: int) -> bool:  # pragma: no cover - resolved before matching
        raise ModelError("CodeOf must be resolved against a state before matching")

    def __str__(self) -> str:
        return f"code in {self.expr}"


CodeSpec = Exact | Returns | AnyFailure | AnySuccess | Anything | CodeOf


def resolve_code(spec: CodeSpec, fields: Mapping[str, Value], args: Mapping[str, Value]) -> CodeSpec:
    """Replace a `CodeOf` by the exact code it names in this state; other specs are unchanged."""
    if isinstance(spec, CodeOf):
        value = spec.expr.eval(fields, args)
        assert isinstance(value, int)
        for code in codes.ALL:
            if code.family is spec.family and code.value == value:
                return Exact(code)
        return Exact(Code(value, codes.describe(value, spec.family), spec.family))
    return spec


# --- table declarations ---------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A state variable with a finite domain. The first value is listed first in tables."""

    name: str
    domain: tuple[Value, ...]
    doc: str


@dataclass(frozen=True)
class Param:
    """An operation parameter with the finite domain of values the harness uses."""

    name: str
    domain: tuple[Value, ...]
    doc: str


@dataclass(frozen=True)
class Operation:
    """An operation of a machine: a Microsoft API (named verbatim) or a harness action."""

    name: str
    actor: Actor
    doc: str
    params: tuple[Param, ...] = ()
    capability: str = ""

    def all_args(self) -> list[Args]:
        """Every combination of parameter values, in declaration order."""
        return list(self._all_args)

    @cached_property
    def _all_args(self) -> tuple[Args, ...]:
        # Computed once: the explorer asks for it in every state it steps.
        names = [p.name for p in self.params]
        return tuple(tuple(zip(names, values, strict=False))
                     for values in itertools.product(*(p.domain for p in self.params)))


@dataclass(frozen=True)
class Outcome:
    """One allowed result of a row: the code, the outputs, and the state update.

    `when` names the variation-point choices under which this outcome is allowed (empty: always).
    Output expectations are exact values (an `Expr`) or a `CodeSpec` for status-like outputs.
    """

    code: CodeSpec
    label: str
    updates: tuple[tuple[str, Expr], ...] = ()
    outputs: tuple[tuple[str, Expr | CodeSpec], ...] = ()
    rules: tuple[str, ...] = ()
    when: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Row:
    """One line of a transition table."""

    op: str
    guard: tuple[tuple[str, frozenset[Value]], ...]
    args: tuple[tuple[str, frozenset[Value]], ...]
    kind: Kind
    outcomes: tuple[Outcome, ...]
    rules: tuple[str, ...]
    note: str = ""

    def admits(self, fields: Mapping[str, Value], args: Mapping[str, Value]) -> bool:
        return (all(fields[n] in vs for n, vs in self.guard)
                and all(args[n] in vs for n, vs in self.args))

    def cited_rules(self) -> tuple[str, ...]:
        """The rule IDs this row cites, its own and its outcomes', without repeats."""
        seen = dict.fromkeys(self.rules)
        for outcome in self.outcomes:
            seen.update(dict.fromkeys(outcome.rules))
        return tuple(seen)


@dataclass(frozen=True)
class Machine:
    """A per-object state machine: the data a family module declares."""

    name: str
    family: str
    title: str
    doc: str
    fields: tuple[Field, ...]
    operations: tuple[Operation, ...]
    rows: tuple[Row, ...]
    initial: tuple[State, ...]
    # Facts about this machine that the generic modules (explorer, diagrams, cases, runner) use:
    # data on the machine, so that no generic module names a family.
    codes: Family | None = None  # which numbering its return codes use (None: either)
    # The states with nothing in flight (no call pending on a client, none held by the server):
    # field -> allowed values, as a row's guard. Empty: every state is quiescent.
    quiescent: tuple[tuple[str, tuple[Value, ...]], ...] = ()
    diagram_fields: tuple[str, ...] = ()  # the fields a state diagram shows; () for all varying
    slot_prefix: str = ""  # the first letter of a slot holding this machine ("c0", "r1")
    slot_config: tuple[tuple[str, Value], ...] = ()  # the configuration of a default slot
    # Operations that wait, and the parameter that says how long (None: they may always wait).
    timed: tuple[tuple[str, str | None], ...] = ()
    # Not init fields: `dataclasses.replace` must build fresh lookups, not share (and overwrite)
    # the original machine's.
    _index: dict[str, int] = field(default_factory=dict, init=False, compare=False, hash=False,
                                   repr=False)
    _by_op: dict[str, tuple[Row, ...]] = field(default_factory=dict, init=False, compare=False,
                                                hash=False, repr=False)
    # Memo of find_row and step: states are small tuples and every checker asks the same
    # questions many times over.
    _rows_memo: dict[tuple[State, str, Args], Row] = field(default_factory=dict, init=False,
                                                           compare=False, hash=False, repr=False)
    _step_memo: dict[tuple[State, str, Args, tuple[tuple[str, str], ...]], Step] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False)
    _row_masks: dict[str, _Masks] = field(default_factory=dict, init=False, compare=False,
                                          hash=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({f.name: i for i, f in enumerate(self.fields)})
        for name, _ in self.quiescent:
            if name not in self._index:
                raise ModelError(f"{self.name}: quiescent guard on unknown field {name!r}")
        for name in self.diagram_fields:
            if name not in self._index:
                raise ModelError(f"{self.name}: diagram field {name!r} is not a field")
        for op in self.operations:
            self._by_op[op.name] = tuple(r for r in self.rows if r.op == op.name)
        self._validate()

    def _validate(self) -> None:
        ops = {o.name: o for o in self.operations}
        for row in self.rows:
            if row.op not in ops:
                raise ModelError(f"{self.name}: row for unknown operation {row.op!r}")
            if not row.cited_rules():
                raise ModelError(f"{self.name}: a row for {row.op} cites no rule")
            params = {p.name: p for p in ops[row.op].params}
            for name, values in row.guard:
                if name not in self._index:
                    raise ModelError(f"{self.name}: guard on unknown field {name!r}")
                unknown = values - set(self.fields[self._index[name]].domain)
                if unknown:
                    raise ModelError(f"{self.name}.{row.op}: {name} has no values {unknown}")
            for name, values in row.args:
                if name not in params or values - set(params[name].domain):
                    raise ModelError(f"{self.name}.{row.op}: bad argument guard {name}={values}")
            if (row.kind is Kind.DEFINED) != bool(row.outcomes):
                raise ModelError(f"{self.name}.{row.op}: DEFINED rows, and only they, have outcomes")
            for outcome in row.outcomes:
                for name, _ in outcome.updates:
                    if name not in self._index:
                        raise ModelError(f"{self.name}.{row.op}: update of unknown field {name!r}")
        for state in self.initial:
            self.check_state(state)

    # -- state helpers --

    def index(self, name: str) -> int:
        return self._index[name]

    def operation(self, name: str) -> Operation:
        for op in self.operations:
            if op.name == name:
                return op
        known = ", ".join(o.name for o in self.operations)
        raise ModelError(f"{self.name} has no operation {name!r}; it has: {known}")

    def is_quiescent(self, state: State) -> bool:
        """Nothing is in flight in this state (the `quiescent` guard admits it)."""
        return all(state[self._index[name]] in values for name, values in self.quiescent)

    def timeout_param(self, op: str) -> tuple[bool, str | None]:
        """Whether `op` waits, and the parameter that says how long (None: it may always wait)."""
        for name, param in self.timed:
            if name == op:
                return True, param
        return False, None

    def view(self, state: State) -> dict[str, Value]:
        """The state as a mapping from field name to value."""
        return {f.name: v for f, v in zip(self.fields, state, strict=False)}

    def make(self, **values: Value) -> State:
        """A state from field values; fields not given take the first value of their domain."""
        unknown = set(values) - set(self._index)
        if unknown:
            raise ModelError(f"{self.name} has no fields {sorted(unknown)}")
        state = tuple(values.get(f.name, f.domain[0]) for f in self.fields)
        self.check_state(state)
        return state

    def check_state(self, state: State) -> None:
        if len(state) != len(self.fields):
            raise ModelError(f"{self.name}: a state has {len(self.fields)} fields, got {len(state)}")
        for f, v in zip(self.fields, state, strict=False):
            if v not in f.domain:
                raise ModelError(f"{self.name}: {f.name}={v!r} is outside {f.domain}")

    def describe(self, state: State) -> str:
        return " ".join(f"{f.name}={v}" for f, v in zip(self.fields, state, strict=False))

    def rows_for(self, op: str) -> tuple[Row, ...]:
        if op not in self._by_op:
            self.operation(op)
        return self._by_op[op]

    def all_states(self) -> Iterator[State]:
        """Every combination of field values (reachable or not): what totality ranges over."""
        return itertools.product(*(f.domain for f in self.fields))

    def cited_rules(self) -> dict[str, int]:
        """Rule ID to the number of rows citing it."""
        counts: dict[str, int] = {}
        for row in self.rows:
            for rule in row.cited_rules():
                counts[rule] = counts.get(rule, 0) + 1
        return counts


# --- stepping -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Allowed:
    """One allowed outcome of a step, resolved against the state and arguments."""

    code: CodeSpec
    outputs: tuple[tuple[str, Value | CodeSpec], ...]
    next_state: State
    rules: tuple[str, ...]
    label: str
    when: tuple[tuple[str, str], ...]

    def admits(self, code: int, outputs: Mapping[str, object]) -> bool:
        """True if an observed code and outputs fall within this outcome. An answer whose
        output `raised` is true says the operation raised (an exception escaped the call, an
        entry point missing) instead of returning: every outcome is a return, so none admits
        it, whatever its code (docs/adapter-protocol.md)."""
        if outputs.get(RAISED) is True:
            return False
        if not self.code.admits(code):
            return False
        for name, expected in self.outputs:
            if name not in outputs:
                return False
            seen = outputs[name]
            if isinstance(expected, (Exact, Returns, AnyFailure, AnySuccess, Anything)):
                if not isinstance(seen, int) or not expected.admits(seen):
                    return False
            elif seen != expected:
                return False
        return True

    def describe(self) -> str:
        outs = ", ".join(f"{n}={v}" for n, v in self.outputs)
        return f"{self.code}" + (f" with {outs}" if outs else "") + f" [{self.label}]"


@dataclass(frozen=True)
class Step:
    """What the model says about one operation in one state."""

    machine: str
    state: State
    op: str
    args: Args
    kind: Kind
    row: Row
    allowed: tuple[Allowed, ...]

    @property
    def rules(self) -> tuple[str, ...]:
        return self.row.cited_rules()


def _admitted(outcome: Outcome, pins: Pins) -> bool:
    return all(pins.get(point, choice) == choice for point, choice in outcome.when)


def find_row(machine: Machine, state: State, op: str, args: Args) -> Row:
    """The one row that covers `op(args)` in `state`. A gap or an overlap is a ModelError."""
    key = (state, op, args)
    found = machine._rows_memo.get(key)
    if found is not None:
        return found
    found = _find_row(machine, state, op, args)
    machine._rows_memo[key] = found
    return found


def _find_row(machine: Machine, state: State, op: str, args: Args) -> Row:
    argmap = dict(args)
    operation = machine.operation(op)
    expected = {p.name for p in operation.params}
    if set(argmap) != expected:
        raise ModelError(f"{machine.name}.{op} takes arguments {sorted(expected)}, "
                         f"got {sorted(argmap)}")
    for p in operation.params:
        if argmap[p.name] not in p.domain:
            raise ModelError(f"{machine.name}.{op}: {p.name}={argmap[p.name]!r} is outside "
                             f"{p.domain}")
    rows = machine.rows_for(op)
    masks = machine._row_masks.get(op)
    if masks is None:
        masks = machine._row_masks[op] = _row_masks(machine, operation, rows)
    by_field, by_arg = masks
    admitted = (1 << len(rows)) - 1
    for (values, free), value in zip(by_field, state, strict=False):
        admitted &= values.get(value, free)
    for name, (values, free) in by_arg.items():
        admitted &= values.get(argmap[name], free)
    if not admitted:
        raise ModelError(f"{machine.name}: no row covers {op}{dict(args)} in "
                         f"{machine.describe(state)}")
    if admitted & (admitted - 1):  # more than one bit: more than one row
        raise ModelError(f"{machine.name}: {admitted.bit_count()} rows cover {op}{dict(args)} "
                         f"in {machine.describe(state)}")
    return rows[admitted.bit_length() - 1]


# For each field (in order) and each parameter of an operation: value -> the rows that admit
# it, as a bit set over `rows_for(op)`, and the rows that do not guard it at all (`free`). A row
# admits a state and arguments exactly when its bit survives the intersection over every field
# and parameter: the same answer as `Row.admits` on each row, without scanning the rows.
_Masks = tuple[list[tuple[dict[Value, int], int]], dict[str, tuple[dict[Value, int], int]]]


def _row_masks(machine: Machine, operation: Operation, rows: tuple[Row, ...]) -> _Masks:
    def masks(name: str, domain: tuple[Value, ...],
              guards: list[dict[str, frozenset[Value]]]) -> tuple[dict[Value, int], int]:
        free = sum(1 << i for i, g in enumerate(guards) if name not in g)
        values = {v: free | sum(1 << i for i, g in enumerate(guards) if name in g and v in g[name])
                  for v in domain}
        return values, free

    field_guards = [dict(r.guard) for r in rows]
    arg_guards = [dict(r.args) for r in rows]
    return ([masks(f.name, f.domain, field_guards) for f in machine.fields],
            {p.name: masks(p.name, p.domain, arg_guards) for p in operation.params})


def step(machine: Machine, state: State, op: str, args: Args = (), pins: Pins | None = None) -> Step:
    """The allowed outcomes of `op(args)` in `state`, under the variation-point `pins`."""
    pins = pins or {}
    # The pins as given, unsorted: pins listed in another order only make another memo entry
    # with the same answer, and sorting them on every call cost more than the step.
    key = (state, op, args, tuple(pins.items()))
    done = machine._step_memo.get(key)
    if done is None:
        done = machine._step_memo[key] = _pinned(machine, state, op, args, pins) if pins else \
            _step(machine, state, op, args, pins)
    return done


def _pinned(machine: Machine, state: State, op: str, args: Args, pins: Pins) -> Step:
    """The step under `pins`, from the unpinned step when there is one: the same outcomes in the
    same order, less those whose `when` the pins exclude (what `_step` would skip). A run asks
    both (the plan and the runner pinned, the report's diagrams unpinned), so each row is
    resolved once."""
    try:
        full = step(machine, state, op, args)
    except ModelError:  # an outcome the pins exclude may be what fails: resolve only theirs
        return _step(machine, state, op, args, pins)
    if full.kind is not Kind.DEFINED:
        return full
    allowed = tuple(a for a in full.allowed
                    if all(pins.get(point, choice) == choice for point, choice in a.when))
    if not allowed:
        raise ModelError(f"{machine.name}.{op}: the pins {dict(pins)} exclude every outcome in "
                         f"{machine.describe(state)}")
    return Step(machine.name, state, op, args, full.kind, full.row, allowed)


def _step(machine: Machine, state: State, op: str, args: Args, pins: Pins) -> Step:
    row = find_row(machine, state, op, args)
    if row.kind is not Kind.DEFINED:
        return Step(machine.name, state, op, args, row.kind, row, ())
    fields = machine.view(state)
    argmap = dict(args)
    allowed = []
    for outcome in row.outcomes:
        if not _admitted(outcome, pins):
            continue
        nxt = list(state)
        for name, expr in outcome.updates:
            nxt[machine.index(name)] = expr.eval(fields, argmap)
        next_state = tuple(nxt)
        machine.check_state(next_state)
        outputs: list[tuple[str, Value | CodeSpec]] = []
        for name, spec in outcome.outputs:
            if isinstance(spec, (Const, Var, Arg, Plus)):
                outputs.append((name, spec.eval(fields, argmap)))
            else:
                outputs.append((name, resolve_code(spec, fields, argmap)))
        allowed.append(Allowed(
            code=resolve_code(outcome.code, fields, argmap),
            outputs=tuple(outputs),
            next_state=next_state,
            rules=tuple(dict.fromkeys(row.rules + outcome.rules)),
            label=outcome.label,
            when=outcome.when,
        ))
    if not allowed:
        raise ModelError(f"{machine.name}.{op}: the pins {dict(pins)} exclude every outcome in "
                         f"{machine.describe(state)}")
    return Step(machine.name, state, op, args, row.kind, row, tuple(allowed))


def successors(machine: Machine, state: State, pins: Pins | None = None
               ) -> Iterator[tuple[str, Args, Allowed]]:
    """Every DEFINED transition out of `state`: (operation, arguments, allowed outcome)."""
    for operation in machine.operations:
        for args in operation.all_args():
            result = step(machine, state, operation.name, args, pins)
            for allowed in result.allowed:
                yield operation.name, args, allowed


# --- following an implementation ------------------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    """The model's verdict on one observed step."""

    ok: bool
    kind: Kind
    allowed: tuple[Allowed, ...]
    matched: tuple[Allowed, ...]
    rules: tuple[str, ...]


_StepMemo = dict[tuple[State, str, Args], Step]
_TRACKED: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[Machine, _StepMemo]] = {}


class Tracker:
    """Follows an implementation through one machine.

    The model state is a set: where several allowed outcomes look the same from outside (an
    unobservable choice), every candidate state is kept until an observation tells them apart.
    """

    def __init__(self, machine: Machine, pins: Pins | None = None,
                 states: Iterable[State] | None = None) -> None:
        self.machine = machine
        self.pins = dict(pins or {})
        self.states: frozenset[State] = frozenset(states if states is not None
                                                  else machine.initial)
        if not self.states:
            raise ModelError(f"{machine.name}: a tracker needs at least one state")

    @property
    def pins(self) -> Mapping[str, str]:
        """Read only: set `pins` anew to change them (the shared step memo is keyed by them)."""
        return MappingProxyType(self._pins)

    @pins.setter
    def pins(self, pins: Mapping[str, str]) -> None:
        self._pins = dict(pins)
        # The steps under these pins, shared by every tracker of the machine with the same
        # pins: asked at every step of a run, without hashing the pins each time.
        key = (self.machine.name, tuple(sorted(self._pins.items())))
        known = _TRACKED.get(key)
        if known is None or known[0] is not self.machine:
            known = _TRACKED[key] = (self.machine, {})
        self._steps = known[1]

    def _step(self, state: State, op: str, args: Args) -> Step:
        done = self._steps.get((state, op, args))
        if done is None:
            done = self._steps[(state, op, args)] = step(self.machine, state, op, args,
                                                         self._pins)
        return done

    def kind(self, op: str, args: Args = ()) -> Kind:
        """DEFINED only if the operation is defined in every candidate state."""
        if len(self.states) == 1:  # the common case
            (state,) = self.states
            return find_row(self.machine, state, op, args).kind
        kinds = {find_row(self.machine, s, op, args).kind for s in self.states}
        if kinds == {Kind.DEFINED}:
            return Kind.DEFINED
        return Kind.UNDEFINED if Kind.UNDEFINED in kinds else Kind.NOT_OFFERED

    def expected(self, op: str, args: Args = ()) -> tuple[Allowed, ...]:
        if len(self.states) == 1:  # the common case: nothing to put in order
            (state,) = self.states
            return self._step(state, op, args).allowed
        result: list[Allowed] = []
        for state in sorted(self.states, key=repr):
            result.extend(self._step(state, op, args).allowed)
        return tuple(result)

    def observe(self, op: str, args: Args, code: int, outputs: Mapping[str, object]) -> Judgement:
        """Judge an observed result and, if allowed, advance to the states it leads to."""
        kind = self.kind(op, args)
        allowed = self.expected(op, args) if kind is Kind.DEFINED else ()
        matched = tuple(a for a in allowed if a.admits(code, outputs))
        rules = tuple(dict.fromkeys(r for a in allowed for r in a.rules))
        if matched:
            self.states = frozenset(a.next_state for a in matched)
        return Judgement(bool(matched), kind, allowed, matched, rules)


# --- composition ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """An operation on one slot of a composition."""

    slot: str
    op: str
    args: Args = ()

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.args)
        return f"{self.slot}.{self.op}({inner})"


Guard = tuple[tuple[str, tuple[Value, ...]], ...]


def guard_holds(machine: Machine, state: State, guard: Guard) -> bool:
    """Every (field, values) of the guard admits the state."""
    return all(state[machine.index(name)] in values for name, values in guard)


@dataclass(frozen=True)
class Link:
    """A synchronised action: when the `leader` action of one slot takes an outcome that starts
    in `pre` and ends in `post` (guards on the leader's machine), the `followers` (actions of other
    slots) happen in the same step. A follower action never happens alone: in the composition only
    its leader performs it (the synchronous product on shared actions). A follower that is not
    DEFINED where the leader needs it blocks that outcome of the leader, as in any synchronous
    product; the cross-object invariants are what catch a coupling that blocks or misfires."""

    name: str
    leader: Action
    followers: tuple[Action, ...]
    rules: tuple[str, ...]
    doc: str
    pre: Guard = ()
    post: Guard = ()


@dataclass(frozen=True)
class Shared:
    """Fields of several slots that are one variable (one object's property seen from several
    objects): initial states agree on it, and a step that writes it in one slot writes it in all.
    A step whose slots write different values to it cannot happen."""

    name: str
    fields: tuple[tuple[str, str], ...]  # (slot, field)
    rules: tuple[str, ...]
    doc: str


@dataclass(frozen=True)
class Composition:
    """Several objects side by side (call objects, events, handles), interleaved.

    The global state is the tuple of the slots' states; any slot may step next. Without `links`
    and `shared` the slots are independent and the reachable graph is the product of the slots'
    graphs. A coupled composition declares what joins them (issue 18): `links` (actions of
    several slots that happen as one step) and `shared` (fields of several slots that are one
    variable). `moves` is the one definition of a step that the explorer follows, and
    `callgate.model.proofs.coupled` encodes the same definition for Z3.
    """

    name: str
    slots: tuple[tuple[str, Machine], ...]
    links: tuple[Link, ...] = ()
    shared: tuple[Shared, ...] = ()
    doc: str = ""
    # Actions the composition never performs (its `doc` says why), beside the followers.
    hidden: tuple[Action, ...] = ()

    def __post_init__(self) -> None:
        names = [slot for slot, _ in self.slots]
        if len(set(names)) != len(names):
            raise ModelError(f"composition {self.name}: repeated slot names {names}")
        for link in self.links:
            for action in (link.leader, *link.followers):
                op = self.machine(action.slot).operation(action.op)
                if tuple(n for n, _ in action.args) != tuple(p.name for p in op.params):
                    raise ModelError(f"composition {self.name}, link {link.name}: {action} must "
                                     f"give every argument of {action.op} in order")
            if link.leader.slot in {f.slot for f in link.followers}:
                raise ModelError(f"link {link.name}: a follower is in the leader's slot")
            leader = self.machine(link.leader.slot)
            for name, _ in (*link.pre, *link.post):
                if name not in leader._index:
                    self._no_field(leader, name)
        for group in self.shared:
            domains = set()
            for slot, name in group.fields:
                machine = self.machine(slot)
                if name not in machine._index:
                    self._no_field(machine, name)
                domains.add(machine.fields[machine.index(name)].domain)
            if len(domains) != 1:
                raise ModelError(f"shared {group.name}: the fields' domains differ")

    @staticmethod
    def _no_field(machine: Machine, name: str) -> None:
        raise ModelError(f"{machine.name} has no field {name!r}")

    @property
    def coupled(self) -> bool:
        return bool(self.links or self.shared or self.hidden)

    def position(self, slot: str) -> int:
        for i, (name, _) in enumerate(self.slots):
            if name == slot:
                return i
        raise ModelError(f"composition {self.name} has no slot {slot!r}")

    def agrees(self, state: tuple[State, ...]) -> bool:
        """The shared fields hold one value each in `state`."""
        for group in self.shared:
            values = {state[self.position(slot)][self.machine(slot).index(name)]
                      for slot, name in group.fields}
            if len(values) > 1:
                return False
        return True

    def initial_states(self) -> list[tuple[State, ...]]:
        every = (tuple(s) for s in itertools.product(*(m.initial for _, m in self.slots)))
        return [s for s in every if self.agrees(s)]

    def machine(self, slot: str) -> Machine:
        for name, machine in self.slots:
            if name == slot:
                return machine
        raise ModelError(f"composition {self.name} has no slot {slot!r}")

    def is_follower(self, action: Action) -> bool:
        """The action happens only through a link's leader, never alone."""
        return any(action == f for link in self.links for f in link.followers)

    def offered(self, action: Action) -> bool:
        """The action is performed alone: neither a follower nor hidden."""
        return action not in self.hidden and not self.is_follower(action)

    def actions(self) -> list[Action]:
        """The actions a client or server performs alone (followers happen with their leader)."""
        return [a for a in (Action(slot, op.name, args)
                            for slot, machine in self.slots
                            for op in machine.operations
                            for args in op.all_args())
                if self.offered(a)]

    def _share(self, before: tuple[State, ...], after: list[State], stepped: Iterable[int]
               ) -> tuple[State, ...] | None:
        """`after` with each shared field set to the value the stepping slots hold after the step
        (None if they hold different values); untouched when no slot sharing it stepped."""
        moved = set(stepped)
        for group in self.shared:
            places = [(self.position(slot), self.machine(slot).index(name))
                      for slot, name in group.fields]
            written = {after[p][i] for p, i in places if p in moved}
            if len(written) > 1:
                return None
            if written:
                value = written.pop()
                for p, i in places:
                    state = list(after[p])
                    state[i] = value
                    after[p] = tuple(state)
        return tuple(after)

    def moves(self, state: tuple[State, ...], action: Action, pins: Pins | None = None
              ) -> list[tuple[tuple[tuple[Action, Allowed], ...], tuple[State, ...]]]:
        """The global steps of a (non-follower) action: for each allowed outcome of its slot,
        combined with each allowed outcome of the followers it drives, the (action, outcome)
        pairs, the leader's first, and the next global state. Empty when it is not DEFINED."""
        position = self.position(action.slot)
        machine = self.slots[position][1]
        result = step(machine, state[position], action.op, action.args, pins)
        links = [link for link in self.links if link.leader == action]
        found: list[tuple[tuple[tuple[Action, Allowed], ...], tuple[State, ...]]] = []
        for allowed in result.allowed:
            after = list(state)
            after[position] = allowed.next_state
            combos: list[tuple[tuple[tuple[Action, Allowed], ...], list[State], list[int]]] = [
                (((action, allowed),), after, [position])]
            for link in links:
                if not (guard_holds(machine, state[position], link.pre)
                        and guard_holds(machine, allowed.next_state, link.post)):
                    continue
                for follower in link.followers:
                    place = self.position(follower.slot)
                    taken = step(self.slots[place][1], state[place], follower.op, follower.args,
                                 pins)
                    grown = []
                    for done, partial, moved in combos:
                        for other in taken.allowed:  # none: the follower blocks this outcome
                            nxt = list(partial)
                            nxt[place] = other.next_state
                            grown.append(((*done, (follower, other)), nxt, [*moved, place]))
                    combos = grown
            for done, nxt, moved in combos:
                shared = self._share(state, nxt, moved)
                if shared is not None:
                    found.append((done, shared))
        return found

    def step(self, state: tuple[State, ...], action: Action, pins: Pins | None = None
             ) -> tuple[Step, list[tuple[State, ...]]]:
        """The slot's step, and the global successor state of each allowed outcome."""
        position = self.position(action.slot)
        result = step(self.slots[position][1], state[position], action.op, action.args, pins)
        if not self.coupled:
            nexts = [(*state[:position], a.next_state, *state[position + 1:])
                     for a in result.allowed]
            return result, nexts
        return result, [nxt for _, nxt in self.moves(state, action, pins)]


# --- table checks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TableProblem:
    """A state and operation that no row covers (a gap) or that several rows cover (an overlap)."""

    machine: str
    state: State
    op: str
    args: Args
    rows: tuple[Row, ...]

    @property
    def kind(self) -> str:
        return "gap" if not self.rows else "overlap"

    def __str__(self) -> str:
        return (f"{self.machine}: {self.kind} for {self.op}{dict(self.args)} in state "
                f"{self.state} ({len(self.rows)} rows)")


def table_problems(machine: Machine, states: Iterable[State] | None = None,
                   limit: int = 20) -> list[TableProblem]:
    """Gaps and overlaps of `machine`'s table over `states` (default: every field combination).

    A total, deterministic table has none: every state and operation is covered by exactly one
    row (DEFINED, UNDEFINED or NOT_OFFERED). Stops after `limit` problems.
    """
    problems: list[TableProblem] = []
    for state in (machine.all_states() if states is None else states):
        fields = machine.view(state)
        for operation in machine.operations:
            rows = machine.rows_for(operation.name)
            for args in operation.all_args():
                argmap = dict(args)
                matches = tuple(r for r in rows if r.admits(fields, argmap))
                if len(matches) != 1:
                    problems.append(TableProblem(machine.name, state, operation.name, args, matches))
                    if len(problems) >= limit:
                        return problems
    return problems


def reachable(machine: Machine, pins: Pins | None = None) -> set[State]:
    """Every state reachable from the initial states through DEFINED transitions."""
    seen = set(machine.initial)
    frontier = list(machine.initial)
    while frontier:
        state = frontier.pop()
        for _, _, allowed in successors(machine, state, pins):
            if allowed.next_state not in seen:
                seen.add(allowed.next_state)
                frontier.append(allowed.next_state)
    return seen
