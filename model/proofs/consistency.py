"""Rule consistency: the documented claims of `callgate.model.claims` and the tables' answers in
their situations as named Z3 constraints; `check_consistency` matches each minimal conflict to a
known discrepancy, `check_tables_consistent` proves one implementation can satisfy every MUST
row and undisputed MUST claim. Unsat cores name the rule IDs and sources."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

import z3

from callgate.model import claims, codes
from callgate.model.codes import Family
from callgate.model.proofs.conflicts import Tracked, minimal_conflicts
from callgate.model.proofs.results import CheckResult, Conflict, Result
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
from callgate.model.transitions import Kind, Machine, ModelError, step
from callgate.model.variations import BY_NAME as POINTS


class _ClaimSpace:
    """Z3 terms shared by the claims: each situation's result, the pins, the undefined symbols."""

    def __init__(self, situations: Sequence[claims.Situation]) -> None:
        self.pins = pin_vars("cons")
        self.result = {s.key: z3.Int(f"result[{s.key}]") for s in situations}
        names = {u.name for u in codes.UNDEFINED_SYMBOLS}
        self.defined = {n: z3.Bool(f"defined[{n}]") for n in names}
        self.value = {n: z3.Int(f"value[{n}]") for n in names}
        self.base = [pins_in_domain(self.pins)]
        self.base += [z3.And(v >= 0, v < U32) for v in (*self.result.values(), *self.value.values())]
        # A name is one code: a symbol no header defines would denote none of the defined codes
        # (each of which has its own name).
        defined_values = sorted({c.value for c in codes.ALL})
        self.base += [z3.And([v != d for d in defined_values]) for v in self.value.values()]

    def says(self, key: str, says: claims.Says) -> z3.BoolRef:
        result = self.result[key]
        if isinstance(says, claims.IsCode):
            return result == _code_named(says.name).value
        if isinstance(says, claims.IsSymbol):
            if says.name not in self.value:
                raise ModelError(f"claim names {says.name}, which callgate.model.codes does not list as an "
                                 "undefined symbol; use IsCode for defined codes")
            return z3.And(self.defined[says.name], result == self.value[says.name])
        low = SEVERITY if says.family is Family.HRESULT else 1
        return z3.And(result >= low, result < U32)


def _code_named(name: str) -> codes.Code:
    for code in codes.ALL:
        if name == code.name or name in code.aliases:
            return code
    raise ModelError(f"no code named {name!r} in model/codes.py")


def _claim_rules(rule_ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(rule_ids))


def _situation_table(space: _ClaimSpace, situation: claims.Situation,
                     machines: Mapping[str, Machine]) -> Tracked | None:
    """What the model's table allows as the situation's result (None outside the model)."""
    if not situation.machine:
        return None
    machine = machines[situation.machine]
    state = machine.make(**dict(situation.state))
    args = tuple((p.name, dict(situation.args)[p.name])
                 for p in machine.operation(situation.op).params)
    taken = step(machine, state, situation.op, args)
    if taken.kind is not Kind.DEFINED:
        raise ModelError(f"claims.py situation {situation.key}: {situation.op} is "
                         f"{taken.kind.value} in {machine.describe(state)}; point the situation "
                         "at a DEFINED row")
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


def _explain(mus: Sequence[Tracked], known: Sequence[claims.KnownConflict],
             symbol_claims: set[str]) -> claims.KnownConflict | None:
    """The known conflict that explains a minimal conflict, if any.

    Its documented members (claims, facts) must all belong to the known conflict, and either
    there are two or more of them (the documents disagree; table rows at most carry the
    disagreement between situations through a shared variation point), or the one claim names
    an undefined symbol (the tables necessarily read it as a real code).
    """
    documented = {t.name for t in mus if not t.table}
    if not documented or (len(documented) < 2 and not documented <= symbol_claims):
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
    symbol_claims = {c.id for c in claim_list if isinstance(c.says, claims.IsSymbol)}
    try:
        space, tracked = claim_constraints(claim_list, machines)
        muses = minimal_conflicts(tracked, space.base, timeout_ms)
    except SolverUnknown as exc:
        return [unknown_result("consistency.claims", "consistency", start, exc)]
    elapsed = (time.perf_counter() - start) / max(1, len(muses) + 1)
    results: list[CheckResult] = []
    counters: dict[str, int] = {}
    seen: set[str] = set()
    for mus in sorted(muses, key=lambda m: tuple(t.name for t in m)):
        explained = _explain(mus, known, symbol_claims)
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
    conflict = _conflict(core, None)
    return CheckResult(name, "consistency", Result.CONFLICT, time.perf_counter() - start,
                       "these table rows and claims cannot all hold: " + ", ".join(conflict.members),
                       conflict.rules, conflict=conflict)
