"""Z3 proof obligations over the tables, one module per concern; this module re-exports the names
other modules use, so callers import `callgate.model.proofs` and need not know the layout.

Each obligation returns a `CheckResult` (a proof, or a counterexample as data) and is named for
what it proves (mypyvy style):

* `results`: `CheckResult`, `Counterexample`, `TraceStep`, `Conflict`, `Result`, `summarize`.
* `solver`: one timeout for every query; a solver answer of `unknown` is the result UNKNOWN,
  which is a failure, never a pass.
* `traces`: counterexample traces decoded from Z3 and re-checked by `step()`; `find_trace`.
* `induction`: `prove_invariants` (Houdini over the state invariants; each proof names the
  auxiliary invariants its unsat core used; a failure gets a reachable trace if one exists
  within the bound, else the induction step).
* `bmc`: `check_bmc`, bounded model checking of a composition to depth k.
* `tables`: `check_totality`, `check_determinism`, `check_well_formed`, symbolically over every
  field combination.
* `agreement`: `check_agreement` (each invariant's Python and Z3 forms agree on every reachable
  state and step) and `check_relation_agreement` (the Z3 relation reaches exactly the states
  `step()` reaches).
* `conflicts`: `minimal_conflicts` (MARCO) over named constraints (`Tracked`).
* `consistency`: `check_consistency`, `check_tables_consistent`, `check_pinned_codes` and
  `claim_constraints`, rule consistency from `callgate.model.claims` (unsat cores name the rule
  IDs and sources; a claim's situation the table does not define is a finding).
"""

from callgate.model.proofs.agreement import check_agreement, check_relation_agreement
from callgate.model.proofs.bmc import check_bmc
from callgate.model.proofs.conflicts import Tracked, minimal_conflicts
from callgate.model.proofs.consistency import (
    check_consistency,
    check_pinned_codes,
    check_tables_consistent,
    claim_constraints,
)
from callgate.model.proofs.induction import prove_invariants
from callgate.model.proofs.results import (
    CheckResult,
    Conflict,
    Counterexample,
    Fields,
    Result,
    TraceStep,
    fields_of,
    summarize,
)
from callgate.model.proofs.solver import DEFAULT_TIMEOUT_MS, SolverUnknown
from callgate.model.proofs.tables import check_determinism, check_totality, check_well_formed
from callgate.model.proofs.traces import TRACE_BOUND, find_trace

__all__ = [
    "DEFAULT_TIMEOUT_MS", "TRACE_BOUND",
    "CheckResult", "Conflict", "Counterexample", "Fields", "Result", "SolverUnknown", "TraceStep",
    "Tracked",
    "check_agreement", "check_bmc", "check_consistency", "check_determinism", "check_pinned_codes",
    "check_relation_agreement", "check_tables_consistent", "check_totality", "check_well_formed",
    "claim_constraints", "fields_of", "find_trace", "minimal_conflicts", "prove_invariants",
    "summarize",
]
