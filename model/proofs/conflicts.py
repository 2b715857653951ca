"""Minimal conflicts: every minimal set of named Z3 constraints (`Tracked`) that cannot hold
together, by MARCO (Liffiton et al., "Fast, flexible MUS enumeration", Constraints 2016) run on
each group of constraints that share variables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import z3

from callgate.model.proofs.solver import DEFAULT_TIMEOUT_MS, SolverUnknown, new_solver


@dataclass(frozen=True)
class Tracked:
    """A named constraint of the consistency problem: a claim, a fact, or a table's answer."""

    name: str
    term: z3.BoolRef = field(compare=False)
    rules: tuple[str, ...]
    sources: tuple[str, ...]
    table: bool


def _variables(term: z3.ExprRef) -> set[str]:
    found: set[str] = set()
    todo = [term]
    seen: set[int] = set()
    while todo:
        t = todo.pop()
        if t.get_id() in seen:
            continue
        seen.add(t.get_id())
        if z3.is_const(t) and t.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            found.add(str(t))
        todo.extend(t.children())
    return found


def _components(items: Sequence[Tracked]) -> list[list[Tracked]]:
    """Groups of constraints that share no variable with other groups."""
    owner: dict[str, int] = {}
    root = list(range(len(items)))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for i, item in enumerate(items):
        for var in _variables(item.term):
            if var in owner:
                a, b = find(i), find(owner[var])
                root[a] = b
            else:
                owner[var] = i
    groups: dict[int, list[Tracked]] = {}
    for i, item in enumerate(items):
        groups.setdefault(find(i), []).append(item)
    return list(groups.values())


def minimal_conflicts(items: Sequence[Tracked], base: Sequence[z3.BoolRef],
                      timeout_ms: int = DEFAULT_TIMEOUT_MS) -> list[tuple[Tracked, ...]]:
    """Every minimal set of constraints that cannot hold together (MARCO, per component)."""
    found: list[tuple[Tracked, ...]] = []
    for group in _components(items):
        found += _marco(group, base, timeout_ms)
    return found


def _marco(group: Sequence[Tracked], base: Sequence[z3.BoolRef], timeout_ms: int
           ) -> list[tuple[Tracked, ...]]:
    check = new_solver(timeout_ms)
    check.add(*base)
    use = {t.name: z3.Bool(f"use:{t.name}") for t in group}
    by_flag = {str(flag): name for name, flag in use.items()}
    for t in group:
        check.add(z3.Implies(use[t.name], t.term))
    by_name = {t.name: t for t in group}

    def sat(names: Iterable[str]) -> bool:
        answer = check.check(*[use[n] for n in names])
        if answer == z3.unknown:
            raise SolverUnknown(check.reason_unknown())
        return bool(answer == z3.sat)

    if sat(by_name):
        return []
    seeds = z3.Solver()
    select = {n: z3.Bool(f"select:{n}") for n in by_name}
    muses: list[tuple[Tracked, ...]] = []
    while seeds.check() == z3.sat:
        model = seeds.model()
        seed = [n for n in by_name if not z3.is_false(model.eval(select[n]))]
        if sat(seed):
            grown = set(seed)
            for n in by_name:
                if n not in grown and sat(grown | {n}):
                    grown.add(n)
            seeds.add(z3.Or([select[n] for n in by_name if n not in grown]))
            continue
        core = [by_flag[str(c)] for c in check.unsat_core()]
        for n in list(core):
            trial = [x for x in core if x != n]
            if not sat(trial):
                core = [by_flag[str(c)] for c in check.unsat_core()] if check.unsat_core() \
                    else trial
        muses.append(tuple(by_name[n] for n in sorted(core)))
        seeds.add(z3.Not(z3.And([select[n] for n in core])))
    return muses
