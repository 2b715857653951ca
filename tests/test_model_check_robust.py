"""`callgate model check` on broken tables reports findings and exits 1, never a traceback; and
the consistency check stays honest about undefined symbols and pinned codes."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from collections.abc import Callable

import pytest

from callgate.conformance.cli.main import main
from callgate.model import claims, codes, verify
from callgate.model.families import MACHINES
from callgate.model.liveness import check_liveness
from callgate.model.proofs import (
    CheckResult,
    Result,
    check_consistency,
    check_pinned_codes,
    check_tables_consistent,
)
from callgate.model.tables.table import out, row
from callgate.model.transitions import AnyFailure, Exact, Kind, Machine, Outcome, Row, Value

COM = MACHINES["com_call"]
OK = Exact(codes.S_OK)


def _admits(r: Row, field: str, value: Value) -> bool:
    return value in dict(r.guard).get(field, frozenset([value]))


def _pick(op: str, kind: Kind | None = Kind.DEFINED, **guard: Value) -> Callable[[Row], bool]:
    return lambda r: (r.op == op and (kind is None or r.kind is kind)
                      and all(_admits(r, f, v) for f, v in guard.items()))


def _edit(machine: Machine, pick: Callable[[Row], bool], new: Callable[[Row], Row]) -> Machine:
    assert any(pick(r) for r in machine.rows), "the edit matches no row"
    return dataclasses.replace(machine, rows=tuple(new(r) if pick(r) else r for r in machine.rows))


def _without(machine: Machine, pick: Callable[[Row], bool]) -> Machine:
    (gone,) = [r for r in machine.rows if pick(r)]
    return dataclasses.replace(machine, rows=tuple(r for r in machine.rows if r is not gone))


def _recode(when: tuple[str, str], code: Exact) -> Callable[[Row], Row]:
    """The row with the outcome allowed by the choice `when` returning `code` instead."""
    def edit(o: Outcome) -> Outcome:
        return dataclasses.replace(o, code=code) if when in o.when else o
    return lambda r: dataclasses.replace(r, outcomes=tuple(edit(o) for o in r.outcomes))


def _by_name(checks: list[CheckResult] | tuple[CheckResult, ...]) -> dict[str, CheckResult]:
    return {c.name: c for c in checks}


# --- a gap: the whole run, through the command ----------------------------------------------


@pytest.fixture(scope="module")
def gap() -> tuple[verify.Report, dict[str, object], int]:
    """`callgate model check --json` run in process on the tables with com_call's Begin_ row
    for an idle call object removed (a gap): the report, the JSON printed, the exit code."""
    broken = _without(COM, _pick("Begin_", phase="IDLE"))
    tables = {**MACHINES, "com_call": broken}
    reports: list[verify.Report] = []
    real_run = verify.run

    def run(**kwargs: object) -> verify.Report:
        reports.append(real_run(bmc_depth=1, machines=tables))
        return reports[-1]

    text = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(text):
        patch.setattr(verify, "run", run)
        code = main(["model", "check", "--json"])
    return reports[0], json.loads(text.getvalue()), code


def test_a_gap_is_a_totality_counterexample_with_state_operation_and_arguments(
        gap: tuple[verify.Report, dict[str, object], int]) -> None:
    report, _, _ = gap
    totality = _by_name(report.checks)["totality[com_call]"]
    assert totality.result is Result.COUNTEREXAMPLE and totality.counterexample is not None
    (where,) = totality.counterexample.steps
    assert where.op == "Begin_" and where.args == () and dict(where.state)["phase"] == "IDLE"


def test_checks_that_need_the_graph_are_errors_and_the_rest_still_runs(
        gap: tuple[verify.Report, dict[str, object], int]) -> None:
    report, _, _ = gap
    checks = _by_name(report.checks)
    errors = {c.name for c in report.checks if c.result is Result.ERROR}
    assert {"agreement.relation[com_call]", "deadlock_free[com_call]", "tour[com_call]",
            "com.begun_call_is_finished", "deadlock_free[two_call_objects]"} <= errors
    for name in errors:
        assert "no row covers Begin_" in checks[name].detail \
            or "no state graph of com_call" in checks[name].detail, name
        assert checks[name].failed
    for name in ("totality[rpc_call]", "rpc.call_completed_exactly_once",
                 "rpc.server_ends_every_call", "tour[rpc_call]", "consistency.tables"):
        assert checks[name].result is Result.PROVED, name
    assert not report.ok and "totality[com_call]" in report.failed


def test_model_check_exits_1_and_prints_the_findings_not_a_traceback(
        gap: tuple[verify.Report, dict[str, object], int], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    report, data, code = gap
    assert code == 1
    assert data["ok"] is False and "totality[com_call]" in data["failed"]  # type: ignore[operator]
    errors = [entry for entry in data["liveness"]  # type: ignore[attr-defined]
              if entry["name"] == "com.begun_call_is_finished"]
    assert errors and errors[0]["result"] == "error"
    monkeypatch.setattr(verify, "run", lambda **kwargs: report)
    assert main(["model", "check"]) == 1
    text = capsys.readouterr().out
    assert "Traceback" not in text
    assert "no row covers Begin_" in text and "FAILED" in text


def test_an_overlap_stops_the_liveness_check_with_an_error() -> None:
    extra = row("Begin_", ("COM-BEGIN-02",), out(OK, "accepted while pending"),
                state={"phase": "PENDING"})
    broken = dataclasses.replace(COM, rows=(*COM.rows, extra))
    results = check_liveness(broken)
    assert results and all(r.result is Result.ERROR for r in results)
    assert "2 rows cover Begin_" in results[0].detail


# --- claims over rows that are not DEFINED ----------------------------------------------------


def test_a_claim_over_a_row_that_is_not_defined_is_a_finding() -> None:
    broken = _edit(COM, _pick("Finish_", phase="IDLE"),
                   lambda r: dataclasses.replace(r, kind=Kind.UNDEFINED, outcomes=()))
    machines = {**MACHINES, "com_call": broken}
    results = _by_name(check_consistency(machines=machines))
    finding = results["consistency.situation[com.finish_idle]"]
    assert finding.result is Result.COUNTEREXAMPLE and finding.failed
    assert "COM-FIN-02@S-COM-MAKE" in finding.detail and "undefined" in finding.detail
    assert "COM-FIN-02" in finding.rules
    tables = check_tables_consistent(machines)
    assert tables.result is Result.ERROR and "COM-FIN-02@S-COM-MAKE" in tables.detail


def test_a_claim_naming_an_unknown_symbol_is_an_error_not_a_crash() -> None:
    rogue = claims.Claim("COM-BEGIN-02@S-ROGUE", ("COM-BEGIN-02",), "S-ROGUE",
                         "com.begin_in_flight", claims.IsSymbol("RPC_E_NO_SUCH_THING"))
    results = check_consistency([*claims.CLAIMS, rogue])
    assert results[0].result is Result.ERROR and "RPC_E_NO_SUCH_THING" in results[0].detail


# --- undefined symbols make no wrong code acceptable ------------------------------------------


def test_the_real_tables_give_each_pinned_choice_its_own_code() -> None:
    result = check_pinned_codes()
    assert result.result is Result.PROVED, result.detail


def test_a_wrong_exact_code_under_a_pin_is_a_counterexample() -> None:
    # D-02: Begin_ while a call is in flight; pinned to RPC_S_CALLPENDING, the row says E_FAIL.
    pin = ("begin_pending_code", "RPC_S_CALLPENDING")
    broken = _edit(COM, _pick("Begin_", phase="PENDING", cancel=False),
                   _recode(pin, Exact(codes.E_FAIL)))
    results = _by_name(check_consistency(machines={**MACHINES, "com_call": broken}))
    found = results["consistency.pinned_codes"]
    assert found.result is Result.COUNTEREXAMPLE and found.failed
    assert "E_FAIL" in found.detail and "begin_pending_code=RPC_S_CALLPENDING" in found.detail
    assert found.counterexample is not None and found.counterexample.pins == (pin,)
    assert found.counterexample.steps[0].op == "Begin_"
    # the documented D-02 conflict is still expected, and is all that is
    assert not [r for r in results.values() if r.result is Result.CONFLICT and r.failed]


def test_a_wrong_cancelled_code_under_a_pin_is_a_counterexample() -> None:
    # D-03: Finish_ of a cancelled call; the HRESULT_FROM_WIN32 reading replaced by E_FAIL.
    pin = ("cancelled_code", "HRESULT_FROM_WIN32(RPC_S_CALL_CANCELLED)")
    broken = _edit(COM, lambda r: r.op == "Finish_" and any(pin in o.when for o in r.outcomes),
                   _recode(pin, Exact(codes.E_FAIL)))
    found = check_pinned_codes({**MACHINES, "com_call": broken})
    assert found.result is Result.COUNTEREXAMPLE and "E_FAIL" in found.detail


def test_a_table_that_gives_no_reading_of_a_symbol_is_an_unexpected_conflict() -> None:
    # Before, any code here conflicted with the undefined symbol and was filed as expected.
    broken = _edit(COM, _pick("Begin_", phase="PENDING", cancel=False),
                   lambda r: dataclasses.replace(r, outcomes=(out(OK, "accepted again"),)))
    results = check_consistency(machines={**MACHINES, "com_call": broken})
    new = [r for r in results if r.result is Result.CONFLICT and r.failed]
    assert new and new[0].conflict is not None
    assert "COM-BEGIN-02@S-COM-MAKE" in new[0].conflict.members
    assert any(m.startswith("table:com_call.Begin_") for m in new[0].conflict.members)
    pinned = _by_name(results)["consistency.pinned_codes"]
    assert pinned.result is Result.COUNTEREXAMPLE and "S_OK" in pinned.detail


def test_any_failure_is_a_reading_only_of_the_any_failure_choice() -> None:
    pin = ("begin_pending_code", "RPC_S_CALLPENDING")
    broken = _edit(COM, _pick("Begin_", phase="PENDING", cancel=False),
                   lambda r: dataclasses.replace(r, outcomes=tuple(
                       dataclasses.replace(o, code=AnyFailure(codes.Family.HRESULT))
                       if pin in o.when else o for o in r.outcomes)))
    found = check_pinned_codes({**MACHINES, "com_call": broken})
    assert found.result is Result.COUNTEREXAMPLE and "any HRESULT failure" in found.detail
