"""The Promela text of a machine or a composition, generated from its transition tables.

One model, many checkers: every branch below comes from a `Row` of `callgate.model.tables` the way
`callgate.model.transitions.step` and `Composition.moves` read it, nothing is written by hand.

The encoding:

* each field of each slot is one global variable (`byte`, or `short` for large domains) holding
  the index of its value in the field's domain, as `callgate.model.symbolic` does for Z3;
* one process steps every slot: a `do` loop with one branch per (slot, operation, arguments,
  DEFINED row, outcome), except that outcomes whose statements are the same (every self-loop,
  for one) share one branch whose guard is the disjunction of theirs. A branch is a `d_step`
  whose first statement is its guard, so one branch is one indivisible transition and spin
  stores exactly the model's states (and one more: the state before the initial choice,
  `PRE_INITIAL`). Several outcomes of one row are several branches (unless their statements are
  the same): spin's nondeterministic choice is the model's set of allowed outcomes.
  UNDEFINED and NOT_OFFERED rows have no branch: the model never takes them;
* a coupled composition's link is one branch that updates the leader and its followers together
  (when the link's `pre` and `post` hold), and a branch for the leader alone otherwise; a follower
  that is not DEFINED there blocks the leader's outcome, as in `Composition.moves`. A shared field
  is copied from the slot that stepped to the other slots holding it. Hidden and follower actions
  never happen alone;
* a second process (`invariants`) asserts the state invariants of each slot (their Z3 formula,
  the form `callgate model check` proves, translated term by term) and the cross invariants of a
  coupled composition. A state that breaks one is reported as an assertion violation naming the
  invariant's flag (`holds_3`), and the first state breaking each prints `callgate: violated
  holds_3` (embedded C, since pan prints only the first error of a kind); since the monitor can
  then step, spin does not also count that state as a deadlock. A deadlock is a state with no
  successor (spin: an invalid end state).

Transition invariants are not exported (their codes are sets of values; the Z3 proofs and the
explorer check them); `Promela.not_exported` names them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import jinja2
import z3

from callgate.model import coupled
from callgate.model import invariants as model_invariants
from callgate.model.coupled import CrossInvariant
from callgate.model.invariants import StateInvariant
from callgate.model.symbolic import SymState, index_of
from callgate.model.transitions import (
    Action,
    Arg,
    Composition,
    Const,
    Expr,
    Kind,
    Link,
    Machine,
    ModelError,
    Outcome,
    Plus,
    Row,
    State,
    Value,
    Var,
)

PRE_INITIAL = 1  # the states spin stores beyond the model's: the one before the initial choice

Cond = bool | str


@dataclass(frozen=True)
class Checked:
    """One invariant the export asserts: its name (`inv[slot]` for a slot's state invariant),
    kind (`state` or `cross`), rules, the flag its assertion names, and its Promela formula."""

    name: str
    kind: str
    rules: tuple[str, ...]
    flag: str
    formula: str


@dataclass(frozen=True)
class Promela:
    """A generated Promela model."""

    name: str
    text: str
    invariants: tuple[Checked, ...]
    not_exported: tuple[tuple[str, str], ...]  # (invariant, why)
    outcomes: int  # (slot, operation, arguments, row, outcome) steps, links counted once
    branches: int  # after merging outcomes with the same statements
    initial_states: int


@dataclass(frozen=True)
class Planned:
    """An invariant checked on a target: a slot's state invariant or a cross invariant."""

    name: str
    kind: str
    rules: tuple[str, ...]
    slot: str
    state: StateInvariant | None
    cross: CrossInvariant | None


def slots_of(target: Machine | Composition) -> tuple[tuple[str, Machine], ...]:
    return ((target.name, target),) if isinstance(target, Machine) else target.slots


def plan_invariants(target: Machine | Composition,
                    state_invariants: Sequence[StateInvariant] | None = None,
                    cross_invariants: Sequence[CrossInvariant] | None = None
                    ) -> tuple[list[Planned], list[tuple[str, str]]]:
    """The invariants both engines check on `target` (default: the model's state invariants of
    each slot's machine and the cross invariants of a coupled composition), and the transition
    invariants that are not exported, with the reason."""
    states = [i for i in model_invariants.ALL if isinstance(i, StateInvariant)
              ] if state_invariants is None else list(state_invariants)
    cross = list(coupled.CROSS_INVARIANTS if cross_invariants is None else cross_invariants)
    planned: list[Planned] = []
    skipped: list[tuple[str, str]] = []
    machines = {m.name for _, m in slots_of(target)}
    for slot, machine in slots_of(target):
        for inv in states:
            if inv.machine == machine.name:
                name = inv.name if isinstance(target, Machine) else f"{inv.name}[{slot}]"
                planned.append(Planned(name, "state", inv.rules, slot, inv, None))
    if isinstance(target, Composition):
        for c in cross:
            if c.composition == target.name:
                planned.append(Planned(c.name, "cross", c.rules, "", None, c))
    for other in model_invariants.ALL:
        if not isinstance(other, StateInvariant) and other.machine in machines:
            skipped.append((other.name, "a transition invariant: its codes are sets of values; "
                                      "`callgate model check` proves it (Z3) and the explorer "
                                      "checks it"))
    return planned, skipped


# --- names and values -----------------------------------------------------------------------


def var_name(slot: str, field: str) -> str:
    return re.sub(r"\W", "_", f"{slot}_{field}")


def _index(domain: Sequence[Value], value: Value, where: str) -> int:
    i = index_of(domain, value)
    if i < 0:
        raise ModelError(f"{where}: {value!r} is outside {domain}")
    return i


def _member(var: str, indices: Iterable[int], size: int) -> Cond:
    chosen = sorted(set(indices))
    if len(chosen) == size:
        return True
    if not chosen:
        return False
    if len(chosen) > size // 2 + 1:
        missing = sorted(set(range(size)) - set(chosen))
        return " && ".join(f"{var} != {i}" for i in missing)
    return " || ".join(f"{var} == {i}" for i in chosen)


def _and(parts: Iterable[Cond]) -> Cond:
    texts = []
    for part in parts:
        if part is False:
            return False
        if part is not True:
            texts.append(f"({part})")
    return " && ".join(texts) if texts else True


def _not(cond: Cond) -> Cond:
    return (not cond) if isinstance(cond, bool) else f"!({cond})"


# --- one slot's part of a branch ------------------------------------------------------------


@dataclass(frozen=True)
class _Part:
    slot: str
    machine: Machine
    row: Row
    index: int  # the outcome's index in the row
    args: dict[str, Value]

    @property
    def outcome(self) -> Outcome:
        return self.row.outcomes[self.index]

    def var(self, field: str) -> str:
        return var_name(self.slot, field)

    def domain(self, field: str) -> tuple[Value, ...]:
        return self.machine.fields[self.machine.index(field)].domain

    def guard(self) -> Cond:
        return _and(_member(self.var(name), (_index(self.domain(name), v, self.where(name))
                                             for v in values), len(self.domain(name)))
                    for name, values in self.row.guard)

    def where(self, field: str) -> str:
        return f"{self.machine.name}.{self.row.op}.{field}"

    def _sources(self, field: str) -> list[Value]:
        """The values `field` may hold when this row applies (its guard's, or the domain)."""
        guard = dict(self.row.guard)
        domain = self.domain(field)
        return [v for v in domain if field not in guard or v in guard[field]]

    def next_value(self, field: str) -> tuple[str, int | None]:
        """The index `field` holds after this outcome, as a Promela expression over the state
        before the step, and the constant when it is one."""
        updates: dict[str, Expr] = dict(self.outcome.updates)
        target = self.domain(field)
        expr = updates.get(field)
        if expr is None:
            return self.var(field), None
        if isinstance(expr, (Const, Arg)):
            value = expr.value if isinstance(expr, Const) else self.args[expr.name]
            i = _index(target, value, self.where(field))
            return str(i), i
        assert isinstance(expr, (Var, Plus))
        source = expr.name
        shift = expr.k if isinstance(expr, Plus) else 0
        mapping = []
        for value in self._sources(source):
            moved: Value = value
            if shift:
                assert isinstance(value, int) and not isinstance(value, bool)
                moved = value + shift
            mapping.append((_index(self.domain(source), value, self.where(source)),
                            _index(target, moved, self.where(field))))
        if len({j for _, j in mapping}) == 1:
            j = mapping[0][1]
            return str(j), j
        if all(i == j for i, j in mapping) and len(mapping) == len(self.domain(source)):
            return self.var(source), None
        text = str(mapping[-1][1])
        for i, j in reversed(mapping[:-1]):
            text = f"({self.var(source)} == {i} -> {j} : {text})"
        return text, None

    def label(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.args.items())
        rules = ", ".join(dict.fromkeys(self.row.rules + self.outcome.rules))
        return f"{self.slot}.{self.row.op}({args}) -> {self.outcome.label} [{rules}]"


@dataclass(frozen=True)
class _Branch:
    guard: Cond
    parts: tuple[_Part, ...]
    link: str = ""


def _admits_args(row: Row, args: dict[str, Value]) -> bool:
    return all(args[n] in vs for n, vs in row.args)


def _defined(machine: Machine, op: str, args: dict[str, Value]) -> list[Row]:
    return [r for r in machine.rows_for(op) if r.kind is Kind.DEFINED and _admits_args(r, args)]


def _guard_on(part: _Part, guard: Iterable[tuple[str, tuple[Value, ...]]], after: bool) -> Cond:
    """A link's `pre` (on the state before the step) or `post` (after the leader's outcome)."""
    clauses: list[Cond] = []
    for name, values in guard:
        wanted = {_index(part.domain(name), v, part.where(name)) for v in values}
        if after:
            text, const = part.next_value(name)
            if const is not None:
                clauses.append(const in wanted)
                continue
            clauses.append(_member(f"({text})", wanted, len(part.domain(name))))
        else:
            clauses.append(_member(part.var(name), wanted, len(part.domain(name))))
    return _and(clauses)


def _branches(target: Machine | Composition) -> list[_Branch]:
    comp = target if isinstance(target, Composition) else None
    found: list[_Branch] = []
    for slot, machine in slots_of(target):
        for operation in machine.operations:
            for args_t in operation.all_args():
                action = Action(slot, operation.name, args_t)
                if comp is not None and not comp.offered(action):
                    continue
                args = dict(args_t)
                links = [] if comp is None else [k for k in comp.links if k.leader == action]
                if len(links) > 1:
                    raise ModelError(f"{action} leads {len(links)} links; the export takes one")
                for row in _defined(machine, operation.name, args):
                    for index in range(len(row.outcomes)):
                        lead = _Part(slot, machine, row, index, args)
                        if not links:
                            found.append(_Branch(lead.guard(), (lead,)))
                            continue
                        assert comp is not None
                        found += _linked(comp, links[0], lead)
    return found


def _linked(comp: Composition, link: Link, lead: _Part) -> list[_Branch]:
    applies = _and([_guard_on(lead, link.pre, False), _guard_on(lead, link.post, True)])
    found: list[_Branch] = []
    if applies is not False:
        choices: list[list[_Part]] = []
        for follower in link.followers:
            machine = comp.machine(follower.slot)
            args = dict(follower.args)
            choices.append([_Part(follower.slot, machine, row, i, args)
                            for row in _defined(machine, follower.op, args)
                            for i in range(len(row.outcomes))])
        slots = [f.slot for f in link.followers]
        if len(set(slots)) != len(slots):
            raise ModelError(f"link {link.name}: two followers in one slot; the export takes one")
        for combo in itertools.product(*choices):
            guard = _and([lead.guard(), applies, *(p.guard() for p in combo)])
            found.append(_Branch(guard, (lead, *combo), link.name))
    if applies is not True:
        found.append(_Branch(_and([lead.guard(), _not(applies)]), (lead,)))
    return found


def _body(branch: _Branch, comp: Composition | None) -> tuple[list[str], int]:
    """The statements of a branch after its guard, and the temporaries they use."""
    temps: list[str] = []
    direct: list[str] = []
    for part in branch.parts:
        for name, _ in part.outcome.updates:
            text, const = part.next_value(name)
            if const is not None:
                direct.append(f"{part.var(name)} = {const}")
            elif text != part.var(name):
                temps.append(f"t{len(temps)} = {text}")
                direct.append(f"{part.var(name)} = t{len(temps) - 1}")
    moved = {p.slot for p in branch.parts}
    for group in (comp.shared if comp is not None else ()):
        writers = [(slot, f) for slot, f in group.fields if slot in moved]
        if len(writers) > 1:
            raise ModelError(f"shared {group.name}: one step moves {len(writers)} of its slots; "
                             "the export takes one")
        if writers:
            source = var_name(*writers[0])
            direct += [f"{var_name(slot, f)} = {source}" for slot, f in group.fields
                       if (slot, f) != writers[0]]
    return temps + direct, len(temps)


# --- invariants -----------------------------------------------------------------------------


def z3_to_promela(term: z3.ExprRef, names: dict[str, str]) -> str:
    """A quantifier-free Z3 term over field indices as a Promela expression (ModelError for a
    term this translation does not know)."""
    def go(e: z3.ExprRef) -> str:
        kind = e.decl().kind()
        kids = [go(c) for c in e.children()]
        if z3.is_true(e):
            return "true"
        if z3.is_false(e):
            return "false"
        if z3.is_int_value(e):
            return str(e.as_long())
        if kind == z3.Z3_OP_UNINTERPRETED and not kids:
            name = e.decl().name()
            if name not in names:
                raise ModelError(f"the term names {name!r}, which is no field here")
            return names[name]
        binary = {z3.Z3_OP_EQ: "==", z3.Z3_OP_LE: "<=", z3.Z3_OP_LT: "<", z3.Z3_OP_GE: ">=",
                  z3.Z3_OP_GT: ">", z3.Z3_OP_ADD: "+", z3.Z3_OP_SUB: "-"}
        if kind in binary and len(kids) >= 2:
            return "(" + f" {binary[kind]} ".join(kids) + ")"
        if kind == z3.Z3_OP_AND:
            return "(" + " && ".join(kids) + ")" if kids else "true"
        if kind == z3.Z3_OP_OR:
            return "(" + " || ".join(kids) + ")" if kids else "false"
        if kind == z3.Z3_OP_NOT:
            return f"!({kids[0]})"
        if kind == z3.Z3_OP_IMPLIES:
            return f"(!({kids[0]}) || {kids[1]})"
        if kind == z3.Z3_OP_DISTINCT and len(kids) == 2:
            return f"({kids[0]} != {kids[1]})"
        if kind == z3.Z3_OP_ITE:
            return f"({kids[0]} -> {kids[1]} : {kids[2]})"
        raise ModelError(f"no Promela for the Z3 term {e.decl().name()}")
    return go(term)


def _formula(planned: Planned, target: Machine | Composition) -> str:
    if planned.state is not None:
        machine = dict(slots_of(target))[planned.slot]
        names = {f"{planned.slot}.{f.name}": var_name(planned.slot, f.name)
                 for f in machine.fields}
        return z3_to_promela(planned.state.formula(SymState(machine, planned.slot)), names)
    assert planned.cross is not None and isinstance(target, Composition)

    def atoms(group: tuple[coupled.Atom, ...]) -> Cond:
        clauses: list[Cond] = []
        for slot, name, values in group:
            machine = target.machine(slot)
            domain = machine.fields[machine.index(name)].domain
            clauses.append(_member(var_name(slot, name),
                                   (_index(domain, v, f"{slot}.{name}") for v in values),
                                   len(domain)))
        return _and(clauses)

    when, then = atoms(planned.cross.when), atoms(planned.cross.then)
    whole = _and([_not(_and([when, _not(then)]))])
    return "true" if whole is True else "false" if whole is False else str(whole)


# --- the text -------------------------------------------------------------------------------

_TEMPLATE = jinja2.Environment(
    autoescape=False, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
).from_string("""\
/* {{ name }}: generated by `callgate model export --promela` from the transition tables
 * (callgate.model.tables); do not edit. {{ outcomes }} outcomes in {{ branches }} branches
 * (outcomes with the same statements share one), {{ initial|length }} initial
 * state(s), {{ invariants|length }} invariant(s) asserted.
{% for line in doc %}
 * {{ line }}
{% endfor %}
 * Each variable holds the index of its field's value in the field's domain.
 */

{% for v in variables %}
{{ v.type }} {{ v.name }}; /* {{ v.slot }}.{{ v.field }}: {{ v.domain }} */
{% endfor %}
bit ready; /* 0 only in the state before the initial choice */
{% if temps %}
hidden short {{ temps|join(", ") }};
{% endif %}
{% if invariants %}
c_decl {
  /* prints each invariant's flag the first time pan finds a state that breaks it */
  int callgate_seen[{{ invariants|length }}];
  void callgate_violated(int k, const char *flag) {
    if (!callgate_seen[k]) { callgate_seen[k] = 1; printf("callgate: violated %s\\n", flag); }
  }
}
{% endif %}
{% for c in invariants %}
hidden byte {{ c.flag }} = 1; /* {{ c.kind }} invariant {{ c.name }} [{{ c.rules|join(", ") }}] */
{% endfor %}

active proctype model() {
  if
{% for init in initial %}
  :: d_step { {{ init|join("; ") }}; ready = 1 }
{% endfor %}
  fi;
  do
{% for b in branch_texts %}
{% for comment in b.comments %}
  /* {{ comment }} */
{% endfor %}
  :: d_step { {{ b.guard }} -> {{ b.body }} }
{% endfor %}
  od
}
{% if invariants %}

#ifndef NO_INVARIANTS
active proctype invariants() {
end_invariants:
  do
{% for c in invariants %}
  /* {{ c.name }} [{{ c.rules|join(", ") }}] */
  :: d_step { ready && !({{ c.formula }}) -> {{ c.flag }} = 0;
              c_code { callgate_violated({{ loop.index0 }}, "{{ c.flag }}"); };
              assert({{ c.flag }}) }
{% endfor %}
  od
}
#endif
{% endif %}
""")


def _domain_text(domain: Sequence[Value]) -> str:
    text = " ".join(f"{i}={v}" for i, v in enumerate(domain))
    return text if len(text) < 100 else f"0={domain[0]} .. {len(domain) - 1}={domain[-1]}"


def _comment(text: str) -> str:
    return text.replace("*/", "* /")


def export(target: Machine | Composition,
           state_invariants: Sequence[StateInvariant] | None = None,
           cross_invariants: Sequence[CrossInvariant] | None = None) -> Promela:
    """The Promela model of `target` with its invariants (see the module's text)."""
    slots = slots_of(target)
    comp = target if isinstance(target, Composition) else None
    variables = []
    for slot, machine in slots:
        for f in machine.fields:
            variables.append({"name": var_name(slot, f.name), "slot": slot, "field": f.name,
                              "type": "byte" if len(f.domain) <= 256 else "short",
                              "domain": _comment(_domain_text(f.domain))})
    if len({v["name"] for v in variables}) != len(variables):
        raise ModelError(f"{target.name}: two fields share a Promela name")
    initial_states: list[tuple[State, ...]] = comp.initial_states() if comp is not None else \
        [(s,) for s in target.initial] if isinstance(target, Machine) else []
    initial = []
    for parts in dict.fromkeys(initial_states):
        initial.append([f"{var_name(slot, f.name)} = {_index(f.domain, value, f.name)}"
                        for (slot, machine), slot_state in zip(slots, parts, strict=True)
                        for f, value in zip(machine.fields, slot_state, strict=True)])
    # Outcomes with the same statements lead to the same state wherever they are taken: one
    # branch whose guard is the disjunction of theirs (the same states, successors and
    # deadlocks, fewer transitions for spin to try), every outcome named in its comment.
    merged: dict[str, tuple[list[str], list[str]]] = {}
    most_temps = 0
    outcomes = 0
    for branch in _branches(target):
        if branch.guard is False:
            continue
        outcomes += 1
        body, temps = _body(branch, comp)
        most_temps = max(most_temps, temps)
        comment = "; ".join(p.label() for p in branch.parts)
        if branch.link:
            comment = f"link {branch.link}: {comment}"
        guards, comments = merged.setdefault("; ".join(body) if body else "skip", ([], []))
        guards.append("true" if branch.guard is True else branch.guard)
        comments.append(_comment(comment))
    branch_texts = [{"comments": comments, "body": body,
                     "guard": "true" if "true" in guards else
                     guards[0] if len(guards) == 1 else " || ".join(f"({g})" for g in guards)}
                    for body, (guards, comments) in merged.items()]
    planned, skipped = plan_invariants(target, state_invariants, cross_invariants)
    checked = []
    for i, p in enumerate(planned):
        try:
            formula = _formula(p, target)
        except ModelError as exc:
            skipped.append((p.name, f"not translated: {exc}"))
            continue
        checked.append(Checked(p.name, p.kind, p.rules, f"holds_{i}", formula))
    doc = [_comment(line) for line in
           (getattr(target, "doc", "") or "").replace(". ", ".\n").splitlines() if line.strip()]
    text = _TEMPLATE.render(name=target.name, doc=doc, variables=variables, initial=initial,
                            branch_texts=branch_texts, branches=len(branch_texts),
                            outcomes=outcomes,
                            temps=[f"t{i}" for i in range(most_temps)], invariants=checked)
    return Promela(target.name, text, tuple(checked), tuple(skipped), outcomes,
                   len(branch_texts), len(initial))
