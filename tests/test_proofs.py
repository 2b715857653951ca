"""The proof obligations: each proves the real model and fails, with data, on broken input."""

from __future__ import annotations

import dataclasses

import pytest
import z3

from callgate.model import claims, codes, proofs
from callgate.model.codes import Family
from callgate.model.explorer import build_graph, parents
from callgate.model.families import MACHINES
from callgate.model.invariants import BY_NAME, StateInvariant, Transition, TransitionInvariant
from callgate.model.proofs import (
    CheckResult,
    Result,
    check_agreement,
    check_bmc,
    check_consistency,
    check_determinism,
    check_relation_agreement,
    check_tables_consistent,
    check_totality,
    check_well_formed,
    prove_invariants,
)
from callgate.model.tables.table import not_offered, out, row
from callgate.model.transitions import (
    Composition,
    Exact,
    Kind,
    Machine,
    Plus,
    State,
    reachable,
    step,
    table_problems,
)
from tests.test_invariants import COM, CONTAINER, EVENT, MUTANTS, RPC, change, outcomes

OK = Exact(codes.S_OK)


def _without(machine: Machine, op: str) -> Machine:
    rows = list(machine.rows)
    rows.remove(next(r for r in rows if r.op == op and r.kind is Kind.DEFINED))
    return dataclasses.replace(machine, rows=tuple(rows))


# --- invariants ---------------------------------------------------------------------------


def test_invariant_proofs_name_the_auxiliary_invariants_they_needed() -> None:
    results = {r.name: r for r in prove_invariants(COM)}
    assert all(r.result is Result.PROVED and r.kind == "invariant" for r in results.values())
    keeps_finish = results["com.cancel_keeps_finish"]
    assert "com.pending_call_is_held" in keeps_finish.support
    assert "strengthened by" in keeps_finish.detail
    assert results["com.begin_only_when_idle"].support == ()


def test_a_true_but_not_inductive_invariant_is_reported_with_its_induction_step() -> None:
    # Without its auxiliary invariants, cancel_keeps_finish is true but not inductive.
    alone = [BY_NAME["com.cancel_keeps_finish"]]
    (result,) = prove_invariants(COM, alone, trace_bound=4)
    assert result.result is Result.COUNTEREXAMPLE
    assert result.counterexample is not None and result.counterexample.kind == "induction"
    assert "strengthen" in result.counterexample.what
    assert len(result.counterexample.steps) == 1


def test_an_initial_state_that_breaks_an_invariant_is_a_zero_step_trace() -> None:
    odd = dataclasses.replace(COM, initial=(COM.make(phase="IDLE", held=True),))
    results = {r.name: r for r in prove_invariants(odd)}
    result = results["com.one_outstanding_call"]
    assert result.result is Result.COUNTEREXAMPLE and result.counterexample is not None
    assert result.counterexample.steps == () and result.counterexample.kind == "trace"


def test_a_solver_unknown_is_an_error_never_a_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(z3.Solver, "check", lambda self, *a: z3.unknown)
    monkeypatch.setattr(z3.Solver, "reason_unknown", lambda self: "timeout (simulated)")
    results = prove_invariants(EVENT)
    assert results and all(r.result is Result.UNKNOWN and r.failed for r in results)
    assert check_totality(EVENT).result is Result.UNKNOWN
    assert check_bmc(Composition("e", (("e", EVENT),)), 1).result is Result.UNKNOWN


# --- bounded model checking ---------------------------------------------------------------


def test_bmc_proves_a_composition_of_several_objects() -> None:
    composition = Composition("pair", (("a", COM), ("b", COM), ("ev", EVENT), ("rpc", RPC)))
    result = check_bmc(composition, 3)
    assert result.result is Result.PROVED and result.kind == "bmc"
    assert "k=3" in result.name


def test_bmc_finds_the_shortest_run_that_breaks_a_slot_invariant() -> None:
    broken = MUTANTS["com.begin_only_when_idle"]()
    composition = Composition("pair", (("ev", EVENT), ("b", broken)))
    result = check_bmc(composition, 4)
    assert result.result is Result.COUNTEREXAMPLE
    cex = result.counterexample
    assert cex is not None and cex.kind == "trace"
    assert "b: com.begin_only_when_idle" in cex.what
    assert [s.op for s in cex.steps] == ["CreateCall", "Begin_", "Begin_"]
    assert {s.slot for s in cex.steps} == {"b"}
    state = dict(cex.initial)["b"]
    current: State = tuple(v for _, v in state)
    for s in cex.steps:
        allowed = step(broken, current, s.op, s.args).allowed
        current = tuple(v for _, v in s.next_state)
        assert current in {a.next_state for a in allowed}


# --- table checks -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_real_tables_are_total_deterministic_and_well_formed(name: str) -> None:
    machine = MACHINES[name]
    for check in (check_totality, check_determinism, check_well_formed):
        result = check(machine)
        assert result.result is Result.PROVED, result.detail
        assert result.kind == "table"


def test_totality_is_proved_symbolically_for_every_field_combination_of_rpc_call() -> None:
    result = check_totality(RPC)
    assert result.result is Result.PROVED
    assert "139968 field combinations" in result.detail


def test_a_removed_row_is_a_gap_that_brute_force_confirms() -> None:
    broken = _without(COM, "Begin_")
    result = check_totality(broken)
    assert result.result is Result.COUNTEREXAMPLE and result.counterexample is not None
    (gap,) = result.counterexample.steps
    assert gap.op == "Begin_"
    state = tuple(v for _, v in gap.state)
    problems = table_problems(broken, [state])
    assert problems and problems[0].kind == "gap"


def test_an_overlapping_row_is_reported_with_both_rows() -> None:
    extra = row("Begin_", ("COM-BEGIN-02",), out(OK, "accepted while pending"),
                state={"phase": "PENDING"})
    broken = dataclasses.replace(COM, rows=(*COM.rows, extra))
    result = check_determinism(broken)
    assert result.result is Result.COUNTEREXAMPLE
    assert "2 rows cover Begin_" in result.detail and "COM-BEGIN-02" in result.detail


def test_an_update_outside_its_domain_is_not_well_formed() -> None:
    broken = change(CONTAINER, "AddSynchronize", {"created": True, "count": tuple(range(63))},
                    outcomes(out(OK, "two at once", count=Plus("count", 2))))
    result = check_well_formed(broken)
    assert result.result is Result.COUNTEREXAMPLE
    assert "leaves the domain" in result.detail


def test_a_row_that_some_pinning_leaves_without_outcome_is_not_well_formed() -> None:
    broken = change(EVENT, "Wait", {"kind": ("ManualResetEvent", "StdEvent"), "signaled": False},
                    outcomes(out(Exact(codes.RPC_E_TIMEOUT), "timed out",
                                 when={"event_wait_timeout_code": "RPC_E_TIMEOUT"})),
                    args={"timeout": ("zero", "finite")})
    result = check_well_formed(broken)
    assert result.result is Result.COUNTEREXAMPLE
    assert "RPC_S_CALLPENDING" in result.detail


# --- rule consistency ---------------------------------------------------------------------


def _conflicts(results: list[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.result is Result.CONFLICT]


def test_every_known_discrepancy_shows_up_and_no_other_conflict() -> None:
    results = check_consistency()
    conflicts = _conflicts(results)
    assert conflicts and all(not r.failed for r in conflicts)
    found = {r.conflict.discrepancy for r in conflicts if r.conflict is not None}
    assert found == {k.id for k in claims.KNOWN_CONFLICTS}
    assert {"D-01", "D-02", "D-03", "D-12"} <= found
    final = results[-1]
    assert final.name == "consistency.known_conflicts_found" and final.result is Result.PROVED
    d12 = [r for r in conflicts if r.conflict is not None and r.conflict.discrepancy == "D-12"]
    assert any(set(r.conflict.members) == {"RPC-CLI-STATUS-04@S-RAGCS:unused",  # type: ignore[union-attr]
                                           "RPC-CLI-STATUS-04@W-T-RPCASYNC:unused"} for r in d12)


def test_claims_cite_catalogued_rules_and_real_situations() -> None:
    from callgate.model.rules import catalogue

    keys = {s.key for s in claims.SITUATIONS}
    for claim in claims.CLAIMS:
        assert set(claim.rules) <= set(catalogue()), claim.id
        assert claim.situation in keys, claim.id
        assert claim.id.split("@")[0] in claim.rules, claim.id
    ids = {c.id for c in claims.CLAIMS} | {f.id for f in claims.FACTS}
    for known in claims.KNOWN_CONFLICTS:
        assert known.members <= ids, known.id
    _, tracked = proofs.claim_constraints()
    assert any(t.table for t in tracked)


def test_a_new_conflicting_rule_pair_is_an_unsat_core_naming_both() -> None:
    rogue = claims.Claim("COM-FIN-04@S-FAKE", ("COM-FIN-04",), "S-FAKE", "com.finish_idle",
                         claims.IsCode("S_OK"))
    results = check_consistency([*claims.CLAIMS, rogue])
    new = [r.conflict for r in _conflicts(results) if r.failed and r.conflict is not None]
    # the rogue claim contradicts the documented claim, and the table's answer too
    assert new and all("COM-FIN-04@S-FAKE" in c.members and not c.expected for c in new)
    pair = next(c for c in new if set(c.members) == {"COM-FIN-04@S-FAKE", "COM-FIN-02@S-COM-MAKE"})
    assert set(pair.rules) == {"COM-FIN-04", "COM-FIN-02"}
    assert set(pair.sources) == {"S-FAKE", "S-COM-MAKE"}


def test_a_table_that_refuses_a_documented_code_conflicts_with_the_claim() -> None:
    machines = dict(MACHINES)
    machines["com_call"] = change(COM, "Finish_", {"phase": "IDLE"},
                                  outcomes(out(Exact(codes.E_FAIL), "no call")))
    results = check_consistency(machines=machines)
    new = [r for r in _conflicts(results) if r.failed]
    assert len(new) == 1 and new[0].conflict is not None
    members = new[0].conflict.members
    assert "COM-FIN-02@S-COM-MAKE" in members
    assert any(m.startswith("table:com_call.Finish_") for m in members)
    assert check_tables_consistent(machines).result is Result.CONFLICT


def test_a_known_discrepancy_that_vanishes_is_reported() -> None:
    kept = [c for c in claims.CLAIMS if c.id != "COM-CCAN-04@W-COMBASE"]
    results = check_consistency(kept)
    final = results[-1]
    assert final.result is Result.COUNTEREXAMPLE and "D-10" in final.detail


def test_the_tables_must_rows_hold_together_under_one_pinning() -> None:
    result = check_tables_consistent()
    assert result.result is Result.PROVED, result.detail


def test_must_rows_demanding_different_pins_are_a_conflict_naming_both_rules() -> None:
    # Each row alone has an outcome; no single implementation choice serves both. (The real
    # tables give the call object's Wait and the event's separate points; these broken rows
    # both name the call object's.)
    only_timeout = outcomes(out(Exact(codes.RPC_E_TIMEOUT), "timed out",
                                when={"call_wait_timeout_code": "RPC_E_TIMEOUT"}))
    only_pending = outcomes(out(Exact(codes.RPC_S_CALLPENDING), "timed out",
                                when={"call_wait_timeout_code": "RPC_S_CALLPENDING"}))
    machines = dict(MACHINES)
    machines["event"] = change(EVENT, "Wait", {"kind": ("ManualResetEvent", "StdEvent"),
                                               "signaled": False}, only_timeout,
                               args={"timeout": ("zero", "finite")})
    machines["com_call"] = change(COM, "Wait", {"phase": "PENDING"},
                                  only_pending, args={"timeout": ("zero", "finite")})
    result = check_tables_consistent(machines, claim_list=[])
    assert result.result is Result.CONFLICT and result.failed
    assert result.conflict is not None
    assert {"COM-SYNC-03", "COM-WAIT-09"} <= set(result.conflict.rules)
    assert any(m.startswith("event.Wait") for m in result.conflict.members)
    assert any(m.startswith("com_call.Wait") for m in result.conflict.members)


# --- agreement ----------------------------------------------------------------------------


def _graph_inputs(machine: Machine) -> tuple[list[State], list[Transition],
                                             dict[State, Transition | None]]:
    graph = build_graph(machine)
    states = list(graph.graph.nodes)
    steps = [Transition(machine, e.source, e.op, e.args, e.outcome, e.allowed)  # type: ignore[arg-type]
             for e in graph.edges()]
    tree = {n: (None if e is None else Transition(machine, e.source, e.op, e.args,  # type: ignore[arg-type]
                                                  e.outcome, e.allowed))
            for n, e in parents(graph).items()}
    return states, steps, tree  # type: ignore[return-value]


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_python_and_z3_forms_agree_on_the_real_tables(name: str) -> None:
    machine = MACHINES[name]
    states, steps, tree = _graph_inputs(machine)
    assert check_agreement(machine, states, steps).result is Result.PROVED
    assert check_relation_agreement(machine, states, tree).result is Result.PROVED


def test_an_invariant_whose_forms_disagree_is_caught() -> None:
    honest = BY_NAME["com.one_outstanding_call"]
    assert isinstance(honest, StateInvariant)
    liar = dataclasses.replace(honest, name="com.liar", formula=lambda s: s.is_("held", False))
    states, steps, _ = _graph_inputs(COM)
    result = check_agreement(COM, states, steps, [liar])
    assert result.result is Result.COUNTEREXAMPLE and "com.liar" in result.detail
    assert result.counterexample is not None and result.counterexample.kind == "disagreement"

    step_honest = BY_NAME["com.begin_only_when_idle"]
    assert isinstance(step_honest, TransitionInvariant)
    step_liar = dataclasses.replace(step_honest, name="com.step_liar",
                                    holds=lambda t: t.op != "Begin_")
    result = check_agreement(COM, states, steps, [step_liar])
    assert result.result is Result.COUNTEREXAMPLE and "com.step_liar" in result.detail


def test_a_reachable_set_that_misses_a_state_disagrees_with_the_relation() -> None:
    states, _, tree = _graph_inputs(EVENT)
    missing = next(s for s in states if s not in EVENT.initial)
    result = check_relation_agreement(EVENT, [s for s in states if s != missing],
                                      {k: v for k, v in tree.items() if k != missing})
    assert result.result is Result.COUNTEREXAMPLE
    assert "never reaches" in result.detail


def test_results_serialise_to_plain_json() -> None:
    broken = MUTANTS["sync.auto_reset_wait"]()
    results = prove_invariants(broken, traces_for={"sync.auto_reset_wait"})
    data = [r.to_json() for r in results]
    bad = next(d for d in data if d["name"] == "sync.auto_reset_wait")
    assert bad["result"] == "counterexample"
    cex = bad["counterexample"]
    assert isinstance(cex, dict) and cex["kind"] == "trace" and cex["steps"]
    assert proofs.summarize(results)["counterexample"] >= 1
    assert reachable(broken)


def test_any_failure_code_is_a_failure_in_both_forms() -> None:
    # A rejected Begin_ admits any failure HRESULT: the Z3 code term ranges over them all.
    extra = out(Exact(codes.E_FAIL), "rejected, and moved", phase="IDLE")
    broken = change(COM, "Begin_", {"phase": ("PENDING", "SIGNALED"), "cancel": True},
                    outcomes(extra))
    results = {r.name: r for r in prove_invariants(broken, traces_for=set())}
    assert results["com.rejected_begin_changes_nothing"].result is Result.COUNTEREXAMPLE
    assert Family.HRESULT.value == "HRESULT"


def test_not_offered_rows_are_not_transitions() -> None:
    broken = change(EVENT, "Signal", {"kind": ("ManualResetEvent", "StdEvent")},
                    lambda r: not_offered("Signal", ("COM-SYNC-01",), "broken",
                                          state={"kind": ("ManualResetEvent", "StdEvent")}))
    results = {r.name: r for r in prove_invariants(broken)}
    assert all(r.result is Result.PROVED for r in results.values())
