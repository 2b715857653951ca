"""Rule consistency: the documented claims of `callgate.model.claims` and the tables' answers in
their situations as named Z3 constraints; `check_consistency` matches each minimal conflict to a
known discrepancy, `check_tables_consistent` proves one implementation can satisfy every MUST
row and undisputed MUST claim, and `check_pinned_codes` that a variation point's code-valued
choice admits that code only. Unsat cores name the rule IDs and sources.

A claim naming a symbol no header defines (`IsSymbol`: RPC_E_CALL_PENDING, RPC_E_CALLPENDING,
RPC_S_CALL_CANCELED) says two things: that the source returns a symbol of its own (which the
fact that no header defines it contradicts: the documented D-xx discrepancy), and that the
result is what the symbol stands for, one reading per choice of the variation point that
`callgate.model.codes.UNDEFINED_SYMBOLS` names for it (a code named by the choice, or any
failure). A table's answer therefore conflicts with such a claim only when it gives no reading
under any pinning, and that conflict is never filed as expected; a wrong code under one pinning
is `check_pinned_codes`'s counterexample. A claim whose situation the table does not define is a
finding too, not a crash.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import z3

from callgate.model import claims, codes
from callgate.model.codes import Family
from callgate.model.proofs.conflicts import Tracked, minimal_conflicts
from callgate.model.proofs.results import (
    CheckResult,
    Conflict,
    Counterexample,
    Result,
    TraceStep,
    fields_of,
)
from callgate.model.proofs.solver import (
    DEFAULT_TIMEOUT_MS,
    SolverUnknown,
    is_sat,
    new_solver,
    unknown_result,
)
from callgate.model.symbolic import (
    SEVERITY,
    U32,
    ArgTerms,
    SymState,
    admitted,
    code_terms,
    pin_vars,
    pins_in_domain,
)
from callgate.model.transitions import (
    AnyFailure,
    CodeSpec,
    Exact,
    Kind,
    Machine,
    ModelError,
    Row,
    State,
    step,
)
from callgate.model.variations import BY_NAME as POINTS


@dataclass(frozen=True)
class Reading:
    """What an undefined symbol stands for under one choice of its variation point: a code the
    choice names, or (`code` None) any failure of `family`."""

    choice: str
    code: codes.Code | None
    family: Family

    def admits(self, spec: CodeSpec) -> bool:
        """Every value `spec` admits is this reading (CodeOf must be resolved first)."""
        if self.code is not None:
            return isinstance(spec, Exact) and spec.code.value == self.code.value \
                and spec.code.family is self.code.family
        if isinstance(spec, Exact):
            return spec.code.family is self.family and spec.code.is_failure
        return isinstance(spec, AnyFailure) and spec.family is self.family

    def term(self, result: z3.ArithRef) -> z3.BoolRef:
        if self.code is not None:
            return result == self.code.value
        low = SEVERITY if self.family is Family.HRESULT else 1
        return z3.And(result >= low, result < U32)

    def __str__(self) -> str:
        return str(self.code) if self.code is not None else f"any {self.family.value} failure"


ANY_FAILURE = "any_failure"


def choice_reading(point: str, choice: str, family: Family) -> Reading | None:
    """The code a variation point's choice names (`any_failure`: any failure of `family`), or
    None for a choice that names no code (`at_once`, `accepted`, ...)."""
    if choice == ANY_FAILURE:
        return Reading(choice, None, family)
    try:
        return Reading(choice, codes.by_name(choice), family)
    except KeyError:
        return None


def symbol_readings(name: str) -> tuple[str, tuple[Reading, ...]]:
    """The variation point that decides what the undefined symbol `name` stands for, and one
    reading per choice. A ModelError names what is missing."""
    symbol = next((u for u in codes.UNDEFINED_SYMBOLS if u.name == name), None)
    if symbol is None:
        raise ModelError(f"claim names {name}, which callgate.model.codes does not list as an "
                         "undefined symbol; use IsCode for defined codes")
    point = POINTS.get(symbol.variation)
    if point is None:
        raise ModelError(f"undefined symbol {name} names variation point {symbol.variation!r}, "
                         "which callgate.model.variations does not define")
    named = [codes.by_name(c) for c in point.choices if c != ANY_FAILURE and _is_code(c)]
    family = named[0].family if named else Family.HRESULT
    readings = []
    for choice in point.choices:
        reading = choice_reading(point.name, choice, family)
        if reading is None:
            raise ModelError(f"variation point {point.name!r} decides what {name} stands for, "
                             f"but its choice {choice!r} names no code")
        readings.append(reading)
    return point.name, tuple(readings)


def _is_code(name: str) -> bool:
    try:
        codes.by_name(name)
    except KeyError:
        return False
    return True


class _ClaimSpace:
    """Z3 terms shared by the claims: each situation's result, the pins, the undefined symbols."""

    def __init__(self, situations: Sequence[claims.Situation]) -> None:
        self.pins = pin_vars("cons")
        self.result = {s.key: z3.Int(f"result[{s.key}]") for s in situations}
        names = {u.name for u in codes.UNDEFINED_SYMBOLS}
        self.defined = {n: z3.Bool(f"defined[{n}]") for n in names}
        self.base = [pins_in_domain(self.pins)]
        self.base += [z3.And(v >= 0, v < U32) for v in self.result.values()]

    def says(self, key: str, says: claims.Says) -> z3.BoolRef:
        result = self.result[key]
        if isinstance(says, claims.IsCode):
            return result == _code_named(says.name).value
        if isinstance(says, claims.IsSymbol):
            # The source returns its own symbol (a fact may deny that any header defines it),
            # and the result is what the symbol stands for under the implementation's pinning.
            point, readings = symbol_readings(says.name)
            pin = self.pins[point]
            return z3.And(self.defined[says.name],
                          z3.Or([z3.And(pin == i, r.term(result)) for i, r in enumerate(readings)]))
        if isinstance(says, claims.MayBe):
            return z3.BoolVal(True)  # excludes nothing
        low = SEVERITY if says.family is Family.HRESULT else 1
        return z3.And(result >= low, result < U32)


def _code_named(name: str) -> codes.Code:
    for code in codes.ALL:
        if name == code.name or name in code.aliases:
            return code
    raise ModelError(f"no code named {name!r} in model/codes.py")


def _claim_rules(rule_ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(rule_ids))


def situation_problem(situation: claims.Situation, machines: Mapping[str, Machine]) -> str:
    """Why the table cannot answer a situation a claim is about ('' when it can): no such
    machine, a state or arguments outside its fields, a gap, or a row that is not DEFINED."""
    if not situation.machine:
        return ""
    machine = machines.get(situation.machine)
    if machine is None:
        return f"the situation is about machine {situation.machine!r}, which was not given"
    try:
        state = machine.make(**dict(situation.state))
        args = tuple((p.name, dict(situation.args)[p.name])
                     for p in machine.operation(situation.op).params)
        taken = step(machine, state, situation.op, args)
    except (ModelError, KeyError) as exc:
        return f"the table cannot answer it: {exc}"
    if taken.kind is not Kind.DEFINED:
        row = machine.rows.index(taken.row)
        return (f"{situation.op} is {taken.kind.value} in {machine.describe(state)} (row {row}, "
                f"{', '.join(taken.row.cited_rules())}), yet a source documents its result: "
                "define the row, or point the situation at a DEFINED one")
    return ""


def _situation_table(space: _ClaimSpace, situation: claims.Situation,
                     machines: Mapping[str, Machine]) -> Tracked | None:
    """What the model's table allows as the situation's result (None outside the model, or
    where `situation_problem` finds the table cannot answer)."""
    if not situation.machine or situation_problem(situation, machines):
        return None
    machine = machines[situation.machine]
    state = machine.make(**dict(situation.state))
    args = tuple((p.name, dict(situation.args)[p.name])
                 for p in machine.operation(situation.op).params)
    taken = step(machine, state, situation.op, args)
    dummy = SymState(machine, "cons.dummy")
    dummy_args = ArgTerms(machine, "cons.dummy")
    options = []
    for allowed in taken.allowed:
        pinned = [space.pins[p] == POINTS[p].choices.index(c) for p, c in allowed.when]
        options.append(z3.And(*pinned, code_terms(allowed.code, space.result[situation.key],
                                                   z3.Bool(f"cons.failure[{situation.key}]"),
                                                   dummy, dummy_args, situation.op)))
    row = machine.rows.index(taken.row)
    name = f"table:{machine.name}.{situation.op}#row{row}@{situation.key}"
    return Tracked(name, z3.Or(options), taken.row.cited_rules(), (f"model/tables ({machine.name})",), True)


def situation_findings(claim_list: Sequence[claims.Claim] | None = None,
                       machines: Mapping[str, Machine] | None = None,
                       situations: Sequence[claims.Situation] | None = None
                       ) -> list[CheckResult]:
    """One COUNTEREXAMPLE per situation some claim is about that the table cannot answer."""
    from callgate.model.families import MACHINES

    machines = machines if machines is not None else MACHINES
    situations = situations if situations is not None else claims.SITUATIONS
    claim_list = claim_list if claim_list is not None else claims.CLAIMS
    about: dict[str, list[claims.Claim]] = {}
    for claim in claim_list:
        about.setdefault(claim.situation, []).append(claim)
    results = []
    for situation in situations:
        if situation.key not in about:
            continue
        problem = situation_problem(situation, machines)
        if problem:
            named = about[situation.key]
            rules = tuple(dict.fromkeys(r for c in named for r in c.rules))
            results.append(CheckResult(
                f"consistency.situation[{situation.key}]", "consistency", Result.COUNTEREXAMPLE,
                0.0, f"claims {', '.join(c.id for c in named)} document the result of "
                     f"{situation.doc}, but {problem}", rules))
    return results


def claim_constraints(claim_list: Sequence[claims.Claim] | None = None,
                      machines: Mapping[str, Machine] | None = None,
                      situations: Sequence[claims.Situation] | None = None,
                      facts: Sequence[claims.SymbolUndefined] | None = None,
                      ) -> tuple[_ClaimSpace, list[Tracked]]:
    """Every claim, fact and table answer of the situations, as named Z3 constraints."""
    from callgate.model.families import MACHINES  # the registry imports every table; only needed here

    machines = machines if machines is not None else MACHINES
    situations = situations if situations is not None else claims.SITUATIONS
    claim_list = claim_list if claim_list is not None else claims.CLAIMS
    facts = facts if facts is not None else claims.FACTS
    space = _ClaimSpace(situations)
    by_key = {s.key: s for s in situations}
    tracked: list[Tracked] = []
    for claim in claim_list:
        if claim.situation not in by_key:
            raise ModelError(f"claim {claim.id} names unknown situation {claim.situation!r}")
        if isinstance(claim.says, claims.MayBe):
            continue  # one allowed result among others: nothing to assert
        tracked.append(Tracked(claim.id, space.says(claim.situation, claim.says),
                               _claim_rules(claim.rules), (claim.source,), False))
    for fact in facts:
        tracked.append(Tracked(fact.id, z3.Not(space.defined[fact.symbol]), (), (fact.source,),
                               False))
    used = {c.situation for c in claim_list}
    for situation in situations:
        if situation.key in used:
            table = _situation_table(space, situation, machines)
            if table is not None:
                tracked.append(table)
    return space, tracked


def _explain(mus: Sequence[Tracked], known: Sequence[claims.KnownConflict]
             ) -> claims.KnownConflict | None:
    """The known conflict that explains a minimal conflict, if any.

    Its documented members (claims, facts) must all belong to the known conflict, and there
    must be two or more of them (the documents disagree; table rows at most carry the
    disagreement between situations through a shared variation point). A claim naming an
    undefined symbol alone against the tables is not explained: its reading makes every
    documented code acceptable and no other, so the tables give none of them.
    """
    documented = {t.name for t in mus if not t.table}
    if len(documented) < 2:  # one source against the tables: the tables are wrong or the claim
        return None
    return next((k for k in known if documented <= k.members), None)


def _conflict(mus: Sequence[Tracked], known: claims.KnownConflict | None) -> Conflict:
    return Conflict(tuple(t.name for t in mus),
                    tuple(dict.fromkeys(r for t in mus for r in t.rules)),
                    tuple(dict.fromkeys(s for t in mus for s in t.sources)),
                    known.id if known else "", known is not None,
                    f"{known.note} ({known.found_by})" if known else "")


def check_consistency(claim_list: Sequence[claims.Claim] | None = None,
                      machines: Mapping[str, Machine] | None = None,
                      known: Sequence[claims.KnownConflict] | None = None,
                      timeout_ms: int = DEFAULT_TIMEOUT_MS) -> list[CheckResult]:
    """Every minimal set of documented claims (with the tables' answers in their situations)
    that cannot all hold, each matched to a known discrepancy; and whether each known
    discrepancy still shows up."""
    start = time.perf_counter()
    known = known if known is not None else claims.KNOWN_CONFLICTS
    claim_list = claim_list if claim_list is not None else claims.CLAIMS
    try:
        space, tracked = claim_constraints(claim_list, machines)
        muses = minimal_conflicts(tracked, space.base, timeout_ms)
    except SolverUnknown as exc:
        return [unknown_result("consistency.claims", "consistency", start, exc)]
    except ModelError as exc:
        return [CheckResult("consistency.claims", "consistency", Result.ERROR,
                            time.perf_counter() - start, f"could not run: {exc}"),
                *situation_findings(claim_list, machines),
                check_pinned_codes(machines, claim_list)]
    elapsed = (time.perf_counter() - start) / max(1, len(muses) + 1)
    results: list[CheckResult] = []
    counters: dict[str, int] = {}
    seen: set[str] = set()
    for mus in sorted(muses, key=lambda m: tuple(t.name for t in m)):
        explained = _explain(mus, known)
        label = explained.id if explained else "unexpected"
        counters[label] = counters.get(label, 0) + 1
        conflict = _conflict(mus, explained)
        if explained:
            seen.add(explained.id)
            detail = f"{explained.id}: " + " + ".join(conflict.members)
        else:
            detail = ("NEW: " + " + ".join(conflict.members) + " cannot all hold; explain it in "
                      "model/claims.py KNOWN_CONFLICTS, or fix the claims or the tables")
        results.append(CheckResult(f"consistency.{label}#{counters[label]}", "consistency",
                                   Result.CONFLICT, elapsed, detail, conflict.rules,
                                   conflict=conflict))
    results += situation_findings(claim_list, machines)
    results.append(check_pinned_codes(machines, claim_list))
    missing = [k.id for k in known if k.id not in seen]
    if missing:
        results.append(CheckResult("consistency.known_conflicts_found", "consistency",
                                   Result.COUNTEREXAMPLE, elapsed,
                                   f"known conflicts {', '.join(missing)} no longer show up: the "
                                   "claims that encode them changed"))
    else:
        results.append(CheckResult("consistency.known_conflicts_found", "consistency",
                                   Result.PROVED, elapsed,
                                   f"all {len(known)} known conflicts show up "
                                   f"({', '.join(k.id for k in known)})"))
    return results


def _must(rule_ids: Iterable[str]) -> bool:
    from callgate.model.rules import Level, catalogue

    rules = catalogue()
    return any(Level.MUST in rules[r].split_levels for r in rule_ids if r in rules)


def check_tables_consistent(machines: Mapping[str, Machine] | None = None,
                            claim_list: Sequence[claims.Claim] | None = None,
                            known: Sequence[claims.KnownConflict] | None = None,
                            timeout_ms: int = DEFAULT_TIMEOUT_MS) -> CheckResult:
    """One implementation can satisfy every table row that cites a MUST rule and every
    documented claim not involved in a known conflict: one global choice of the variation
    points gives every such row an outcome and agrees with every such claim."""
    from callgate.model.families import MACHINES

    start = time.perf_counter()
    name = "consistency.tables"
    machines = machines if machines is not None else MACHINES
    known = known if known is not None else claims.KNOWN_CONFLICTS
    disputed = set().union(*(k.members for k in known)) if known else set()
    claim_list = [c for c in (claim_list if claim_list is not None else claims.CLAIMS)
                  if c.id not in disputed and _must(c.rules)]
    try:
        space, tracked = claim_constraints(claim_list, machines)
        tracked = [t for t in tracked if t.name not in disputed]
        rows = 0
        for machine in machines.values():
            for r, row in enumerate(machine.rows):
                if row.kind is Kind.DEFINED and _must(row.cited_rules()):
                    rows += 1
                    tracked.append(Tracked(
                        f"{machine.name}.{row.op}#row{r}",
                        z3.Or([admitted(o, space.pins) for o in row.outcomes]),
                        row.cited_rules(), (f"model/tables ({machine.name})",), True))
        findings = situation_findings(claim_list, machines)
        if findings:
            return CheckResult(name, "consistency", Result.ERROR, time.perf_counter() - start,
                               "could not judge every claim: " + findings[0].detail,
                               findings[0].rules)
        solver = new_solver(timeout_ms, cores=True)
        solver.add(*space.base)
        flags = {}
        for t in tracked:
            flag = z3.Bool(f"track:{t.name}")
            flags[str(flag)] = t
            solver.assert_and_track(t.term, flag)
        if is_sat(solver):
            return CheckResult(name, "consistency", Result.PROVED, time.perf_counter() - start,
                               f"{rows} rows citing MUST rules and {len(claim_list)} undisputed "
                               "MUST claims hold together under one pinning")
        core = [flags[str(c)] for c in solver.unsat_core()]
    except SolverUnknown as exc:
        return unknown_result(name, "consistency", start, exc)
    except ModelError as exc:
        return CheckResult(name, "consistency", Result.ERROR, time.perf_counter() - start,
                           f"could not run: {exc}")
    conflict = _conflict(core, None)
    return CheckResult(name, "consistency", Result.CONFLICT, time.perf_counter() - start,
                       "these table rows and claims cannot all hold: " + ", ".join(conflict.members),
                       conflict.rules, conflict=conflict)


def _row_state(machine: Machine, row: Row) -> State:
    """A state the row's guard admits (the first in field order), to show where a row applies."""
    values = [tuple(v for v in f.domain if v in dict(row.guard).get(f.name, f.domain))
              for f in machine.fields]
    return tuple(vs[0] if vs else f.domain[0] for vs, f in zip(values, machine.fields, strict=True))


def _pinned_code_problems(machine: Machine) -> list[tuple[str, Counterexample]]:
    """Outcomes allowed by a code-valued choice of a variation point that return another code."""
    family = machine.codes or Family.HRESULT
    found = []
    for r, row in enumerate(machine.rows):
        for outcome in row.outcomes:
            for point, choice in outcome.when:
                outcome_family = getattr(outcome.code, "family", None)
                reading = choice_reading(point, choice,
                                         outcome_family if isinstance(outcome_family, Family)
                                         else family)
                if reading is None or reading.admits(outcome.code):
                    continue
                state = _row_state(machine, row)
                what = (f"{machine.name} row {r} ({', '.join(row.rules)}): {row.op} under "
                        f"{point}={choice} allows {outcome.code} [{outcome.label}], but that "
                        f"choice means {reading}")
                fields = fields_of(machine, state)
                found.append((what, Counterexample(
                    "table", f"{machine.name}.{row.op}", what, ((machine.name, fields),),
                    (TraceStep(machine.name, fields, row.op, (), outcome.label,
                               str(outcome.code), row.cited_rules(), ()),),
                    pins=((point, choice),))))
    return found


def _symbol_situation_problems(claim_list: Sequence[claims.Claim],
                               machines: Mapping[str, Machine]) -> list[str]:
    """In each situation a claim names an undefined symbol for, table outcomes that no choice of
    the symbol's variation point governs must each be a code some other claim there documents."""
    by_key = {s.key: s for s in claims.SITUATIONS}
    found = []
    for claim in claim_list:
        if not isinstance(claim.says, claims.IsSymbol) or claim.situation not in by_key:
            continue
        situation = by_key[claim.situation]
        if not situation.machine or situation_problem(situation, machines):
            continue
        point, readings = symbol_readings(claim.says.name)
        machine = machines[situation.machine]
        state = machine.make(**dict(situation.state))
        args = tuple((p.name, dict(situation.args)[p.name])
                     for p in machine.operation(situation.op).params)
        others = [c.says for c in claim_list
                  if c.situation == claim.situation and not isinstance(c.says, claims.IsSymbol)]
        for allowed in step(machine, state, situation.op, args).allowed:
            if point in dict(allowed.when):
                continue  # governed by the point: _pinned_code_problems judges it
            if any(_documents(says, allowed.code) for says in others):
                continue
            found.append(f"{situation.key}: {situation.op} may return {allowed.code} "
                         f"[{allowed.label}] whatever {point} is, yet {claim.id} documents "
                         f"{claim.says.name}, read as one of "
                         f"{', '.join(str(r) for r in readings)}, and no other source there "
                         "names that code")
    return found


def _documents(says: claims.Says, spec: CodeSpec) -> bool:
    if isinstance(says, claims.IsCode | claims.MayBe):
        return isinstance(spec, Exact) and spec.code.value == _code_named(says.name).value
    if isinstance(says, claims.IsFailure):
        return Reading("", None, says.family).admits(spec)
    return False


def check_pinned_codes(machines: Mapping[str, Machine] | None = None,
                       claim_list: Sequence[claims.Claim] | None = None) -> CheckResult:
    """Under a variation point's choice that names a code (or `any_failure`), every outcome the
    choice allows returns that code (a failure), in every row of every table; and where a claim
    names an undefined symbol, the table's other outcomes are codes another source documents.
    So an undefined symbol never makes a wrong code acceptable: under a pin, a wrong exact code
    is a counterexample."""
    from callgate.model.families import MACHINES

    start = time.perf_counter()
    name = "consistency.pinned_codes"
    machines = machines if machines is not None else MACHINES
    claim_list = claim_list if claim_list is not None else claims.CLAIMS
    try:
        problems = [p for m in machines.values() for p in _pinned_code_problems(m)]
        situations = _symbol_situation_problems(claim_list, machines)
    except ModelError as exc:
        return CheckResult(name, "consistency", Result.ERROR, time.perf_counter() - start,
                           f"could not run: {exc}")
    rules = tuple(dict.fromkeys(r for u in codes.UNDEFINED_SYMBOLS for r in u.rules))
    if problems:
        what, cex = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return CheckResult(name, "consistency", Result.COUNTEREXAMPLE,
                           time.perf_counter() - start, what + more, rules, counterexample=cex)
    if situations:
        more = f" (and {len(situations) - 1} more)" if len(situations) > 1 else ""
        return CheckResult(name, "consistency", Result.COUNTEREXAMPLE,
                           time.perf_counter() - start, situations[0] + more, rules)
    governed = sum(1 for m in machines.values() for row in m.rows for o in row.outcomes
                   if any(choice_reading(p, c, Family.HRESULT) is not None for p, c in o.when))
    return CheckResult(name, "consistency", Result.PROVED, time.perf_counter() - start,
                       f"{governed} outcomes allowed by a code-valued choice return that code; "
                       "in the situations of undefined symbols the tables answer only their "
                       "readings or codes another source documents", rules)
