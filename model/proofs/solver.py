"""Z3 solvers as every obligation uses them: one timeout, and an `unknown` answer raised as
`SolverUnknown` and reported as the result UNKNOWN (an error, never a pass)."""

from __future__ import annotations

import time

import z3

from callgate.model.proofs.results import CheckResult, Result

DEFAULT_TIMEOUT_MS = 30_000


class SolverUnknown(Exception):
    """Z3 answered unknown (a timeout or an incomplete theory): an error, never a pass."""


def new_solver(timeout_ms: int = DEFAULT_TIMEOUT_MS, cores: bool = False) -> z3.Solver:
    """A solver with the timeout set; `cores` asks for minimized unsat cores."""
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    if cores:
        solver.set("core.minimize", True)
    return solver


def is_sat(solver: z3.Solver) -> bool:
    """True for sat, False for unsat; unknown raises."""
    answer = solver.check()
    if answer == z3.unknown:
        raise SolverUnknown(solver.reason_unknown())
    return bool(answer == z3.sat)


def unknown_result(name: str, kind: str, start: float, exc: SolverUnknown,
                   rules: tuple[str, ...] = ()) -> CheckResult:
    """The result UNKNOWN for a check whose query Z3 could not decide."""
    return CheckResult(name, kind, Result.UNKNOWN, time.perf_counter() - start,
                       f"Z3 answered unknown ({exc}); raise the timeout or simplify the query",
                       rules)
