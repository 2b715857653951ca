"""The Z3 encoding of the family tables: symbolic states, the transition relation, enabledness.

Everything here is read generically from `Machine` data (fields, operations, rows, outcomes,
`Outcome.when`); no expected transition is written a second time (DESIGN.md principle 1). A field
or argument is a Z3 `Int` holding the index of its value in the field's (or parameter's) domain;
a variation point is an `Int` index into its choices; a guard is a set of indices; an update
(`Const`, `Var`, `Arg`, `Plus`) becomes an index expression, -1 when the value falls outside the
target domain (the table checks prove that never happens). Return codes are unsigned 32-bit
values in an `Int`, constrained by the outcome's `CodeSpec`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import z3

from callgate.model import codes
from callgate.model.codes import Family
from callgate.model.transitions import (
    AnyFailure,
    AnySuccess,
    Anything,
    Arg,
    Args,
    CodeOf,
    CodeSpec,
    Const,
    Exact,
    Expr,
    Kind,
    Machine,
    ModelError,
    Outcome,
    Plus,
    Returns,
    Row,
    State,
    Value,
    Var,
)
from callgate.model.variations import BY_NAME as POINTS

U32 = 1 << 32
SEVERITY = 1 << 31

CodeTest = Callable[[CodeSpec], bool]


def index_of(domain: Sequence[Value], value: Value) -> int:
    """The index of `value` in `domain`, -1 if absent. Type-aware: True is not 1."""
    for i, candidate in enumerate(domain):
        if type(candidate) is type(value) and candidate == value:
            return i
    return -1


def _connect(make: Callable[..., z3.Ast], fallback: Callable[..., z3.BoolRef],
             args: tuple[object, ...]) -> z3.BoolRef:
    """`fallback(*args)` (z3.And or z3.Or) for Boolean terms of one context, made directly: the
    same term (Z3 shares equal terms), without the per-argument sort checks and casts of Z3's
    Python layer, which cost more than the term here. Anything else goes to `fallback`."""
    items = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
    if not items:
        return fallback(*args)
    ctx = getattr(items[0], "ctx", None)
    count = len(items)
    asts = (z3.Ast * count)()
    for i, term in enumerate(items):
        if not isinstance(term, z3.BoolRef) or term.ctx is not ctx:
            return fallback(*args)
        asts[i] = term.as_ast()
    assert ctx is not None
    return z3.BoolRef(make(ctx.ref(), count, asts), ctx)


def And(*args: object) -> z3.BoolRef:
    """`z3.And`, built faster for Boolean terms (see `_connect`)."""
    return _connect(z3.z3core.Z3_mk_and, z3.And, args)


def Or(*args: object) -> z3.BoolRef:
    """`z3.Or`, built faster for Boolean terms (see `_connect`)."""
    return _connect(z3.z3core.Z3_mk_or, z3.Or, args)


def _is_int(value: Value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _if_chain(selector: z3.ArithRef, results: Sequence[z3.ArithRef | int], default: int
              ) -> z3.ArithRef:
    """results[selector] as a Z3 term; `default` outside the range."""
    term: z3.ArithRef = z3.IntVal(default)
    for i in reversed(range(len(results))):
        term = z3.If(selector == i, results[i], term)
    return term


def _any(terms: Iterable[z3.BoolRef]) -> z3.BoolRef:
    items = list(terms)
    if not items:
        return z3.BoolVal(False)
    return items[0] if len(items) == 1 else Or(items)


def _all(terms: Iterable[z3.BoolRef]) -> z3.BoolRef:
    items = list(terms)
    if not items:
        return z3.BoolVal(True)
    return items[0] if len(items) == 1 else And(items)


# --- states ---------------------------------------------------------------------------------


class SymState:
    """A machine state as Z3 terms: one Int per field, the index of its value in the domain.

    Field variables are named `prefix.field`; a step's own variables `prefix:...`, so a state
    and a step may share a prefix (field names never contain a colon).
    """

    def __init__(self, machine: Machine, prefix: str) -> None:
        self.machine = machine
        self.prefix = prefix
        self.vars: dict[str, z3.ArithRef] = {f.name: z3.Int(f"{prefix}.{f.name}")
                                             for f in machine.fields}

    def __getitem__(self, name: str) -> z3.ArithRef:
        return self.vars[name]

    def domain(self, name: str) -> tuple[Value, ...]:
        return self.machine.fields[self.machine.index(name)].domain

    def in_domain(self) -> z3.BoolRef:
        """Each field's index lies within its domain."""
        return _all(And(v >= 0, v < len(self.domain(n))) for n, v in self.vars.items())

    def is_(self, name: str, *values: Value) -> z3.BoolRef:
        """The field holds one of `values`."""
        domain = self.domain(name)
        indices = []
        for value in values:
            i = index_of(domain, value)
            if i < 0:
                raise ModelError(f"{self.machine.name}.{name} has no value {value!r}")
            indices.append(i)
        if len(set(indices)) == len(domain):
            return z3.BoolVal(True)
        return _any(self.vars[name] == i for i in sorted(set(indices)))

    def value(self, name: str) -> z3.ArithRef:
        """The integer value of a field whose domain holds integers (a counter, a code)."""
        domain = self.domain(name)
        if not all(_is_int(v) for v in domain):
            raise ModelError(f"{self.machine.name}.{name} is not an integer field")
        if list(domain) == list(range(len(domain))):
            return self.vars[name]
        return _if_chain(self.vars[name], [int(v) for v in domain], -1)

    def equals(self, state: State) -> z3.BoolRef:
        """This symbolic state is the concrete `state`."""
        return _all(self.vars[f.name] == index_of(f.domain, v)
                    for f, v in zip(self.machine.fields, state, strict=True))

    def among(self, states: Iterable[State]) -> z3.BoolRef:
        """This symbolic state is one of `states` (a set of concrete states).

        Built as a decision tree over the fields (states sharing a prefix share its test), which
        is smaller than one conjunction per state and easy for the solver.
        """
        rows = sorted({tuple(index_of(f.domain, v) for f, v in
                             zip(self.machine.fields, st, strict=True)) for st in states})
        names = [f.name for f in self.machine.fields]
        atoms = [[self.vars[f.name] == i for i in range(len(f.domain))] for f in self.machine.fields]

        def tree(items: list[tuple[int, ...]], depth: int) -> z3.BoolRef:
            if depth == len(names):
                return z3.BoolVal(True)
            groups: dict[int, list[tuple[int, ...]]] = {}
            for item in items:
                groups.setdefault(item[depth], []).append(item)
            if depth == len(names) - 1:
                return _any(atoms[depth][value] for value in groups)
            return _any(And(atoms[depth][value], tree(group, depth + 1))
                        for value, group in groups.items())

        return tree(rows, 0) if rows else z3.BoolVal(False)

    def same_as(self, other: SymState, fields: Iterable[str] | None = None) -> z3.BoolRef:
        names = list(fields) if fields is not None else list(self.vars)
        return _all(self.vars[n] == other.vars[n] for n in names)

    def initial(self) -> z3.BoolRef:
        return _any(self.equals(s) for s in self.machine.initial)

    def decode(self, model: z3.ModelRef) -> State:
        """The concrete state a Z3 model assigns."""
        values: list[Value] = []
        for f in self.machine.fields:
            i = model.eval(self.vars[f.name], model_completion=True).as_long()
            values.append(f.domain[i] if 0 <= i < len(f.domain) else f.domain[0])
        return tuple(values)


def pin_vars(prefix: str, points: Iterable[str] | None = None) -> dict[str, z3.ArithRef]:
    """One Int per variation point: the index of the choice an implementation made."""
    names = list(points) if points is not None else list(POINTS)
    return {name: z3.Int(f"{prefix}:pin.{name}") for name in names}


def pins_in_domain(pins: Mapping[str, z3.ArithRef]) -> z3.BoolRef:
    return _all(And(v >= 0, v < len(POINTS[n].choices)) for n, v in pins.items())


def admitted(outcome: Outcome, pins: Mapping[str, z3.ArithRef] | None) -> z3.BoolRef:
    """The outcome is allowed under the pins (every outcome, when there are no pin terms)."""
    if pins is None:
        return z3.BoolVal(True)
    terms = []
    for point, choice in outcome.when:
        if point not in POINTS or choice not in POINTS[point].choices:
            raise ModelError(f"outcome {outcome.label!r} names an unknown variation point choice "
                             f"{point}={choice}; see model/variations.py")
        terms.append(pins[point] == POINTS[point].choices.index(choice))
    return _all(terms)


def guard(row: Row, pre: SymState) -> z3.BoolRef:
    """The row's state guard over a symbolic state."""
    return _all(pre.is_(name, *values) for name, values in row.guard)


def row_args(row: Row, args: ArgTerms) -> z3.BoolRef:
    """The row's argument guard over symbolic arguments."""
    return _all(args.is_(row.op, name, *values) for name, values in row.args)


# --- expressions ----------------------------------------------------------------------------


class ArgTerms:
    """The argument terms of one step: one Int per (operation, parameter)."""

    def __init__(self, machine: Machine, prefix: str) -> None:
        self.machine = machine
        self.vars: dict[str, dict[str, z3.ArithRef]] = {
            op.name: {p.name: z3.Int(f"{prefix}:arg.{op.name}.{p.name}") for p in op.params}
            for op in machine.operations}

    def domain(self, op: str, name: str) -> tuple[Value, ...]:
        for p in self.machine.operation(op).params:
            if p.name == name:
                return p.domain
        raise ModelError(f"{self.machine.name}.{op} has no parameter {name!r}")

    def in_domain(self) -> z3.BoolRef:
        return _all(And(v >= 0, v < len(self.domain(op, n)))
                    for op, params in self.vars.items() for n, v in params.items())

    def is_(self, op: str, name: str, *values: Value) -> z3.BoolRef:
        domain = self.domain(op, name)
        return _any(self.vars[op][name] == index_of(domain, v) for v in values)

    def equals(self, op: str, args: Args) -> z3.BoolRef:
        return _all(self.vars[op][n] == index_of(self.domain(op, n), v) for n, v in args)

    def decode(self, op: str, model: z3.ModelRef) -> Args:
        result = []
        for p in self.machine.operation(op).params:
            i = model.eval(self.vars[op][p.name], model_completion=True).as_long()
            result.append((p.name, p.domain[i] if 0 <= i < len(p.domain) else p.domain[0]))
        return tuple(result)


def index_term(expr: Expr, domain: Sequence[Value], pre: SymState, args: ArgTerms, op: str
               ) -> z3.ArithRef:
    """The index, in `domain`, of the value `expr` takes; -1 where it falls outside."""
    if isinstance(expr, Const):
        return z3.IntVal(index_of(domain, expr.value))
    if isinstance(expr, Var):
        source = pre.domain(expr.name)
        if tuple(source) == tuple(domain):
            return pre[expr.name]
        return _if_chain(pre[expr.name], [index_of(domain, v) for v in source], -1)
    if isinstance(expr, Arg):
        source = args.domain(op, expr.name)
        return _if_chain(args.vars[op][expr.name], [index_of(domain, v) for v in source], -1)
    source = pre.domain(expr.name)
    shifted = [index_of(domain, int(v) + expr.k) if _is_int(v) else -1 for v in source]
    return _if_chain(pre[expr.name], shifted, -1)


def int_term(expr: Expr, pre: SymState, args: ArgTerms, op: str) -> z3.ArithRef | None:
    """The integer value of `expr`, or None where it is not integer-valued."""
    if isinstance(expr, Const):
        return z3.IntVal(int(expr.value)) if _is_int(expr.value) else None
    if isinstance(expr, Var):
        domain = pre.domain(expr.name)
        return pre.value(expr.name) if all(_is_int(v) for v in domain) else None
    if isinstance(expr, Arg):
        domain = args.domain(op, expr.name)
        if not all(_is_int(v) for v in domain):
            return None
        return _if_chain(args.vars[op][expr.name], [int(v) for v in domain], -1)
    base = int_term(Var(expr.name), pre, args, op)
    return None if base is None else base + expr.k


def code_terms(spec: CodeSpec, code: z3.ArithRef, failure: z3.BoolRef, pre: SymState,
               args: ArgTerms, op: str) -> z3.BoolRef:
    """Constraints on a returned value (`code`) and on whether it is a failure, from a spec."""
    if isinstance(spec, Exact):
        return And(code == spec.code.value, failure == spec.code.is_failure)
    if isinstance(spec, Returns):
        return And(code == spec.value, z3.Not(failure))
    if isinstance(spec, AnyFailure):
        low = SEVERITY if spec.family is Family.HRESULT else 1
        terms = [code >= low, code < U32, failure]
        terms += [code != c.value for c in spec.excluding]
        return And(terms)
    if isinstance(spec, AnySuccess):
        high = SEVERITY if spec.family is Family.HRESULT else 1
        return And(code >= 0, code < high, z3.Not(failure))
    if isinstance(spec, Anything):
        return And(code >= 0, code < U32)
    value = int_term(spec.expr, pre, args, op)
    if value is None:
        raise ModelError(f"CodeOf({spec.expr}) is not integer-valued")
    failed = value >= SEVERITY if spec.family is Family.HRESULT else value != 0
    return And(code == value, failure == failed)


def resolved_specs(spec: CodeSpec, pre: SymState, args: ArgTerms, op: str
                   ) -> list[tuple[z3.BoolRef, CodeSpec]]:
    """The concrete specs a spec stands for, each with the condition under which it does.

    Only `CodeOf` depends on the state: it becomes one `Exact` per value its expression can take.
    """
    if not isinstance(spec, CodeOf):
        return [(z3.BoolVal(True), spec)]
    expr = spec.expr
    if isinstance(expr, Var):
        domain = pre.domain(expr.name)
        selector = pre[expr.name]
    elif isinstance(expr, Arg):
        domain = args.domain(op, expr.name)
        selector = args.vars[op][expr.name]
    else:  # pragma: no cover - the tables pass codes through fields or arguments only
        raise ModelError(f"CodeOf({expr}) must name a field or an argument")
    result: list[tuple[z3.BoolRef, CodeSpec]] = []
    for i, v in enumerate(domain):
        assert _is_int(v)
        known = next((c for c in codes.ALL if c.family is spec.family and c.value == v), None)
        code = known or codes.Code(int(v), codes.describe(int(v), spec.family), spec.family)
        result.append((selector == i, Exact(code)))
    return result


# --- steps ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """One DEFINED (row, outcome) pair: the unit the transition relation chooses among."""

    index: int
    row_index: int
    outcome_index: int
    row: Row
    outcome: Outcome


def choices(machine: Machine) -> list[Choice]:
    """Every DEFINED row's outcomes, numbered in table order."""
    result: list[Choice] = []
    for r, row in enumerate(machine.rows):
        if row.kind is Kind.DEFINED:
            for o, outcome in enumerate(row.outcomes):
                result.append(Choice(len(result), r, o, row, outcome))
    return result


class SymStep:
    """One symbolic step of a machine: pre and post states, the operation, its arguments, the
    chosen (row, outcome), the variation-point pins, the returned code and the outputs.

    `relation` is the transition relation: it holds exactly when the step is a DEFINED transition
    of the table (with every field the outcome does not update left unchanged). Without
    `with_codes` it leaves the code and the outputs unconstrained (the skeleton of the relation).
    """

    def __init__(self, machine: Machine, prefix: str, pre: SymState | None = None,
                 post: SymState | None = None,
                 pins: Mapping[str, z3.ArithRef] | None = None, with_codes: bool = True) -> None:
        self.machine = machine
        self.with_codes = with_codes
        self.prefix = prefix
        self.pre = pre or SymState(machine, f"{prefix}.pre")
        self.post = post or SymState(machine, f"{prefix}.post")
        self.pins = dict(pins) if pins is not None else pin_vars(prefix)
        self.args = ArgTerms(machine, prefix)
        self.op = z3.Int(f"{prefix}:op")
        self.choice = z3.Int(f"{prefix}:choice")
        self.code = z3.Int(f"{prefix}:code")
        self.failure = z3.Bool(f"{prefix}:failure")
        self.choices = choices(machine)
        self.op_names = [op.name for op in machine.operations]
        names = sorted({n for c in self.choices for n, _ in c.outcome.outputs})
        self.output_present = {n: z3.Bool(f"{prefix}:out.{n}") for n in names}
        self.output_value = {n: z3.Int(f"{prefix}:outv.{n}") for n in names}
        self.output_failure = {n: z3.Bool(f"{prefix}:outf.{n}") for n in names}
        if prefix == _TEMPLATE:
            self.relation = self._relation()
        else:
            # Building the relation through the Python API is slow; build it once per machine
            # and rename its variables (Z3 does that natively).
            template = _template(machine, with_codes)
            self.relation = z3.substitute(template.relation, *self.renaming(template))

    def variables(self) -> list[z3.ExprRef]:
        """Every variable of the step, in a fixed order (to rename one step into another)."""
        items: list[z3.ExprRef] = [*self.pre.vars.values(), *self.post.vars.values()]
        items += [self.pins[p] for p in sorted(self.pins)]
        items += [v for op in self.args.vars.values() for v in op.values()]
        items += [self.op, self.choice, self.code, self.failure]
        for table in (self.output_present, self.output_value, self.output_failure):
            items += [table[n] for n in sorted(table)]
        return items

    def renaming(self, other: SymStep) -> list[tuple[z3.ExprRef, z3.ExprRef]]:
        """Pairs (other's variable, this step's variable): substitute with them to move a
        formula over `other` onto this step."""
        return list(zip(other.variables(), self.variables(), strict=True))

    # -- building --

    def _outcome_terms(self, choice: Choice) -> z3.BoolRef:
        outcome, op = choice.outcome, choice.row.op
        terms: list[z3.BoolRef] = [self.choice == choice.index, admitted(outcome, self.pins)]
        updated = {name for name, _ in outcome.updates}
        for name, expr in outcome.updates:
            target = self.pre.domain(name)
            terms.append(self.post[name] == index_term(expr, target, self.pre, self.args, op))
        terms += [self.post[f.name] == self.pre[f.name]
                  for f in self.machine.fields if f.name not in updated]
        if not self.with_codes:
            return And(terms)
        terms.append(code_terms(outcome.code, self.code, self.failure, self.pre, self.args, op))
        given = dict(outcome.outputs)
        for name, present in self.output_present.items():
            if name not in given:
                terms.append(z3.Not(present))
                continue
            terms.append(present)
            spec = given[name]
            value = self.output_value[name]
            if isinstance(spec, (Const, Var, Arg, Plus)):
                term = int_term(spec, self.pre, self.args, op)
                if term is not None:
                    terms.append(value == term)
            else:
                terms.append(code_terms(spec, value, self.output_failure[name], self.pre,
                                        self.args, op))
        return And(terms)

    def choice_term(self, choice: Choice) -> z3.BoolRef:
        """The relation restricted to one (row, outcome): what makes this step that choice."""
        row = choice.row
        return And(self.op == self.op_names.index(row.op), guard(row, self.pre),
                      self.row_args(row), self._outcome_terms(choice))

    def _relation(self) -> z3.BoolRef:
        by_row: dict[int, list[Choice]] = {}
        for c in self.choices:
            by_row.setdefault(c.row_index, []).append(c)
        alternatives = []
        for r, items in by_row.items():
            row = self.machine.rows[r]
            alternatives.append(And(
                self.op == self.op_names.index(row.op),
                guard(row, self.pre),
                self.row_args(row),
                _any(self._outcome_terms(c) for c in items)))
        return And(self.pre.in_domain(), self.post.in_domain(), self.args.in_domain(),
                      pins_in_domain(self.pins), _any(alternatives))

    def row_args(self, row: Row) -> z3.BoolRef:
        return row_args(row, self.args)

    # -- what invariants say about a step --

    def op_is(self, *names: str) -> z3.BoolRef:
        for name in names:
            self.machine.operation(name)
        return _any(self.op == self.op_names.index(n) for n in names)

    def arg_is(self, op: str, name: str, *values: Value) -> z3.BoolRef:
        return self.args.is_(op, name, *values)

    def pin_is(self, point: str, choice: str) -> z3.BoolRef:
        return self.pins[point] == POINTS[point].choices.index(choice)

    def code_is(self, *values: int | codes.Code) -> z3.BoolRef:
        return _any(self.code == (v.value if isinstance(v, codes.Code) else v) for v in values)

    def has_output(self, name: str) -> z3.BoolRef:
        return self.output_present[name] if name in self.output_present else z3.BoolVal(False)

    def unchanged(self, fields: Iterable[str] | None = None) -> z3.BoolRef:
        return self.post.same_as(self.pre, fields)

    # -- reading a model back --

    def decode(self, model: z3.ModelRef) -> tuple[State, str, Args, Choice, State]:
        """(pre state, operation, arguments, chosen outcome, post state) of a Z3 model."""
        op = self.op_names[model.eval(self.op, model_completion=True).as_long()]
        choice = self.choices[model.eval(self.choice, model_completion=True).as_long()]
        return (self.pre.decode(model), op, self.args.decode(op, model), choice,
                self.post.decode(model))

    def equals(self, state: State, op: str, args: Args, choice_index: int) -> z3.BoolRef:
        """This step is the concrete (state, operation, arguments, outcome)."""
        return And(self.pre.equals(state), self.op == self.op_names.index(op),
                      self.args.equals(op, args), self.choice == choice_index)


_TEMPLATE = "tpl"
_TEMPLATES: dict[tuple[int, bool], tuple[Machine, SymStep]] = {}


def _template(machine: Machine, with_codes: bool) -> SymStep:
    """The machine's relation built once, over variables named `tpl.*`."""
    key = (id(machine), with_codes)
    hit = _TEMPLATES.get(key)
    if hit is None or hit[0] is not machine:
        hit = (machine, SymStep(machine, _TEMPLATE, pins=pin_vars(_TEMPLATE),
                                with_codes=with_codes))
        _TEMPLATES[key] = hit
    return hit[1]


def template(machine: Machine) -> SymStep:
    """The machine's template step (for formulas built once and renamed, see `renaming`)."""
    return _template(machine, True)


def template_skeleton(machine: Machine) -> SymStep:
    """The machine's template step without code and output constraints."""
    return _template(machine, False)


# --- enabledness ----------------------------------------------------------------------------


def enabled(machine: Machine, pre: SymState, op: str, where: CodeTest | None = None,
            args: Args | None = None) -> z3.BoolRef:
    """`op` is DEFINED in the state with an outcome whose code passes `where` (any outcome when
    `where` is None), for the given arguments or, when `args` is None, for some arguments.

    `where` is a Python test on a resolved `CodeSpec`; `callgate.model.invariants.enabled_here` applies the
    same test to `step()`'s outcomes, so both forms read the same table.
    """
    machine.operation(op)
    terms = []
    argmap = dict(args) if args is not None else None
    for row in machine.rows_for(op):
        if row.kind is not Kind.DEFINED:
            continue
        if argmap is not None and not all(argmap[n] in vs for n, vs in row.args):
            continue
        ok = []
        for outcome in row.outcomes:
            if where is None:
                ok.append(z3.BoolVal(True))
                continue
            dummy = ArgTerms(machine, "enabled")
            for condition, spec in resolved_specs(outcome.code, pre, dummy, op):
                if where(spec):
                    ok.append(condition)
        terms.append(And(guard(row, pre), _any(ok)))
    return _any(terms)
