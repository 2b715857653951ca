"""The rule obligations: they cover the catalogue, hold on the real tables (but for the listed
findings), and each kind catches an error planted in a table, with a counterexample naming the rule."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import pytest

from callgate.conformance.cli.main import main
from callgate.model import codes, obligations
from callgate.model.codes import Family
from callgate.model.families import MACHINES
from callgate.model.obligations import (
    ALL,
    BY_ID,
    KNOWN_FINDINGS,
    UNSTATED,
    Obligation,
    ObligationKind,
    Whenever,
    check_machine,
    check_obligations,
    coverage_problems,
    must_rules_in_scope,
)
from callgate.model.proofs import CheckResult, Result
from callgate.model.tables.table import out
from callgate.model.transitions import AnySuccess, Exact, Kind, Machine, Outcome, Returns, Row, Value
from callgate.model.variations import BY_NAME as POINTS

COM, EVENT, CONTAINER, RPC = (MACHINES[n] for n in ("com_call", "event", "container", "rpc_call"))
Guard = dict[str, Value | tuple[Value, ...]]


# --- planting errors ----------------------------------------------------------------------


def _covers(row: Row, op: str, guard: Guard, args: Guard) -> bool:
    """The row is for `op` and its guard and argument guard pin exactly these values."""
    def same(pairs: tuple[tuple[str, frozenset[Value]], ...], wanted: Guard) -> bool:
        have = dict(pairs)
        return all(have.get(name) == frozenset(v if isinstance(v, tuple) else (v,))
                   for name, v in wanted.items())
    return row.op == op and same(row.guard, guard) and same(row.args, args)


def plant(machine: Machine, op: str, guard: Guard, new: Callable[[Row], Row],
          args: Guard | None = None, count: int | None = 1) -> Machine:
    """The machine with its rows of `op` under `guard` (and `args`) replaced by new(row)."""
    hits = [i for i, r in enumerate(machine.rows) if _covers(r, op, guard, args or {})]
    assert hits and (count is None or len(hits) == count), \
        f"{machine.name}.{op} {guard} {args}: {len(hits)} rows match"
    rows = list(machine.rows)
    for i in hits:
        rows[i] = new(rows[i])
    return dataclasses.replace(machine, rows=tuple(rows))


def outcomes(*items: Outcome) -> Callable[[Row], Row]:
    return lambda r: dataclasses.replace(r, outcomes=items, kind=Kind.DEFINED)


def without_update(name: str) -> Callable[[Row], Row]:
    return lambda r: dataclasses.replace(r, outcomes=tuple(
        dataclasses.replace(o, updates=tuple(u for u in o.updates if u[0] != name))
        for o in r.outcomes))


def not_offered(r: Row) -> Row:
    return dataclasses.replace(r, kind=Kind.NOT_OFFERED, outcomes=())


def result_of(results: list[CheckResult], obligation: str) -> CheckResult:
    return next(r for r in results if r.name == f"obligation[{obligation}]")


def assert_caught(machine: Machine, obligation: str, rule: str, op: str) -> CheckResult:
    """The obligation fails on the broken machine, with a trace whose last step is `op` (for a
    transition property), naming the rule."""
    result = result_of(check_machine(machine, known={}), obligation)
    assert result.result is Result.COUNTEREXAMPLE, result.detail
    assert rule in result.rules
    cex = result.counterexample
    assert cex is not None and cex.kind == "trace"
    assert obligation in cex.violated and rule in cex.violated
    if BY_ID[obligation].kind is ObligationKind.TRANSITION:
        assert cex.steps and cex.steps[-1].op == op
    return result


# --- the catalogue ------------------------------------------------------------------------


def test_every_in_scope_must_rule_has_an_obligation_or_a_reason() -> None:
    assert coverage_problems() == []
    stated = {rule for o in ALL for rule in o.rules}
    for rule_id in must_rules_in_scope():
        assert rule_id in stated or rule_id in UNSTATED, rule_id


def test_at_most_ten_rules_are_listed_as_unstatable() -> None:
    assert len(UNSTATED) <= 10
    assert all(UNSTATED.values())


def test_a_must_rule_with_neither_obligation_nor_reason_is_reported() -> None:
    rest = [o for o in ALL if "COM-FIN-02" not in o.rules]
    assert "COM-FIN-02 is an in-scope MUST rule with no obligation and no reason" in \
        coverage_problems(rest)


def test_eleven_reasons_are_too_many() -> None:
    rules = must_rules_in_scope()
    too_many = {r: "because" for r in rules[:11]}
    problems = coverage_problems([o for o in ALL if not set(o.rules) & set(too_many)], too_many)
    assert "11 rules are listed as unstated; at most 10 are allowed" in problems


def test_obligations_cite_catalogued_rules_and_name_real_variation_points() -> None:
    assert len({o.id for o in ALL}) == len(ALL)
    for o in ALL:
        assert o.machine in MACHINES, o.id
        assert set(o.points) <= set(POINTS), o.id
        assert o.text.endswith(".") and "\n" not in o.text, o.id


def test_the_rules_listing_gives_each_rule_its_obligations(capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    assert main(["model", "rules", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    by_id = {r["id"]: r for r in listing}
    assert "com.finish_without_call" in by_id["COM-FIN-02"]["obligations"]
    must = [r for r in listing if r["in_scope"] and "MUST" in r["split_levels"]]
    assert len(must) == len(must_rules_in_scope())
    assert all(r["obligations"] or r["obligation_reason"] for r in must)
    assert sum(1 for r in must if r["obligation_reason"]) <= 10


def test_the_human_rules_listing_counts_obligations(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "rules"]) == 0
    text = capsys.readouterr().out
    assert "obligations" in text
    stated = len(must_rules_in_scope()) - len(UNSTATED)
    assert f"{stated} stated as obligations, {len(UNSTATED)} listed with the reason" in text


# --- the real tables ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> list[CheckResult]:
    return check_obligations()


def test_obligations_hold_on_the_tables_but_for_the_known_findings(real: list[CheckResult]
                                                                   ) -> None:
    by_name = {r.name: r for r in real}
    assert by_name["obligation_coverage"].result is Result.PROVED
    for o in ALL:
        result = by_name[f"obligation[{o.id}]"]
        if o.id in KNOWN_FINDINGS:
            assert result.result is Result.CONFLICT and not result.failed, result.detail
            assert result.counterexample is not None and result.conflict is not None
            assert result.conflict.expected and result.conflict.note == KNOWN_FINDINGS[o.id]
        else:
            assert result.result is Result.PROVED, result.detail
    assert not [r.name for r in real if r.failed]


def test_known_findings_name_real_obligations() -> None:
    assert set(KNOWN_FINDINGS) <= set(BY_ID)
    assert all(KNOWN_FINDINGS.values())


def test_results_have_the_shape_of_the_other_checks(real: list[CheckResult]) -> None:
    assert all(r.kind == "obligation" for r in real)
    json.dumps([r.to_json() for r in real])
    # A known finding is reported as an expected conflict, with its counterexample.
    broken = plant(COM, "Finish_", {"phase": "IDLE"},
                   outcomes(out(Exact(codes.S_OK), "planted: finished nothing")))
    (finding,) = check_obligations({"com_call": broken}, [BY_ID["com.finish_without_call"]],
                                   known={"com.finish_without_call": "a planted finding"})
    assert finding.result is Result.CONFLICT and not finding.failed
    data = finding.to_json()
    assert data["expected"] is True and data["counterexample"]["steps"]  # type: ignore[index]


def test_a_known_finding_that_holds_is_called_stale() -> None:
    (result,) = check_obligations({"event": EVENT}, [BY_ID["event.signal"]],
                                  known={"event.signal": "thought broken"})
    assert result.result is Result.PROVED and "remove it from KNOWN_FINDINGS" in result.detail


# --- planted errors: transition properties ------------------------------------------------


def test_finish_without_a_call_returning_s_ok_is_caught() -> None:
    broken = plant(COM, "Finish_", {"phase": "IDLE"},
                   outcomes(out(Exact(codes.S_OK), "planted: finished nothing")))
    assert_caught(broken, "com.finish_without_call", "COM-FIN-02", "Finish_")


def test_a_second_begin_accepted_while_a_call_is_in_flight_is_caught() -> None:
    broken = plant(COM, "Begin_", {"phase": ("PENDING", "SIGNALED"), "cancel": False},
                   outcomes(out(AnySuccess(Family.HRESULT), "planted: accepted", phase="PENDING",
                                held=True)))
    assert_caught(broken, "com.one_call_at_a_time", "COM-BEGIN-02", "Begin_")


def test_a_wrong_exact_code_under_a_pinned_reading_is_caught() -> None:
    # D-02 pinned to RPC_S_CALLPENDING, but Begin_ answers RPC_E_TIMEOUT under that pin.
    broken = plant(COM, "Begin_", {"phase": ("PENDING", "SIGNALED"), "cancel": False},
                   outcomes(out(Exact(codes.RPC_E_TIMEOUT), "planted",
                                when={"begin_pending_code": "RPC_S_CALLPENDING"}),
                            out(Exact(codes.RPC_E_TIMEOUT), "planted",
                                when={"begin_pending_code": "any_failure"})))
    result = assert_caught(broken, "com.one_call_at_a_time", "COM-BEGIN-02", "Begin_")
    assert result.counterexample is not None
    assert "begin_pending_code=RPC_S_CALLPENDING" in result.counterexample.what


def test_a_cancel_accepted_but_forgotten_is_caught() -> None:
    # Cancel returns S_OK but does not record the cancel: TestCancel keeps saying "pending".
    broken = plant(COM, "Cancel", {"phase": "PENDING", "cancel": False, "cancellable": True},
                   without_update("cancel"), args={"seconds": (0, 1)})
    assert_caught(broken, "com.test_cancel", "COM-CANCEL-10", "TestCancel")


def test_a_std_event_that_stays_signalled_after_wait_is_caught() -> None:
    broken = plant(EVENT, "Wait", {"kind": "StdEvent", "signaled": True},
                   without_update("signaled"))
    assert_caught(broken, "event.std_event_resets", "COM-SYNC-03", "Wait")


def test_a_documented_alternative_the_table_drops_is_caught() -> None:
    # COM-CANCEL-01: a same-apartment call object may lack ICancelMethodCalls; the table must
    # allow E_NOINTERFACE there, or it fails a conforming implementation.
    broken = plant(COM, "QueryInterface", {"phase": ("IDLE", "PENDING", "SIGNALED")},
                   outcomes(out(Exact(codes.S_OK), "planted: always present")),
                   args={"iid": "ICancelMethodCalls"})
    result = assert_caught(broken, "com.query_cancel_methods", "COM-CANCEL-01", "QueryInterface")
    assert result.counterexample is not None
    assert "call_object_origin=same_apartment" in result.counterexample.what
    assert "no allowed outcome" in result.counterexample.what


# --- planted errors: state properties -----------------------------------------------------


def test_a_64th_member_accepted_is_caught_by_the_state_property() -> None:
    broken = plant(CONTAINER, "AddSynchronize", {"created": True, "count": 63},
                   outcomes(out(Exact(codes.S_OK), "planted: one more")))
    assert_caught(broken, "container.never_more_than_63", "COM-CONT-02", "AddSynchronize")
    assert_caught(broken, "container.full", "COM-CONT-02", "AddSynchronize")


# --- planted errors: liveness properties --------------------------------------------------


def test_an_sta_probe_that_is_never_offered_is_caught() -> None:
    broken = plant(COM, "probe_sta_wait", {"phase": "PENDING"}, not_offered)
    assert_caught(broken, "com.sta_wait_probe_offered", "COM-WAIT-06", "")


# --- planted errors in the RPC table -------------------------------------------------------
# The RPC machine is the largest: one copy carries five errors, in rows no two of the checked
# obligations share (each notification error under its own NotificationType), and each test
# shows its obligation fails through its own error (the obligations hold on the real table).


def _rpc_planted() -> Machine:
    notified = Returns(1, "notified")
    broken = plant(RPC, "wait_notification",  # Apc: a notification before the call completed
                   {"notify": "Apc", "phase": ("RAW", "INIT", "PENDING"), "notes": 0},
                   outcomes(out(notified, "planted: early", notes=1, outputs={"Event": 0})))
    broken = plant(broken, "wait_notification", {"notify": "Callback", "notes": 1},
                   outcomes(out(notified, "planted: again", outputs={"Event": 0})))
    broken = plant(broken, "wait_notification", {"notify": "Event"},  # Event: never notified
                   outcomes(out(Returns(0, "no notification"), "planted: silent")), count=None)
    broken = plant(broken, "RpcAsyncCompleteCall",
                   {"phase": "READY", "result": "cancelled", "may_cancel": False},
                   outcomes(out(Exact(codes.RPC_S_OK), "planted: completed", phase="DONE",
                                outputs={"resources_open": True})))
    return plant(broken, "RpcAsyncCancelCall", {"phase": "PENDING"},  # a soft cancel forgotten
                 without_update("cancel"), args={"abort": False})


@pytest.fixture(scope="module")
def rpc_planted() -> list[CheckResult]:
    return check_machine(_rpc_planted(), known={})


def caught_in(results: list[CheckResult], obligation: str, rule: str) -> CheckResult:
    result = result_of(results, obligation)
    assert result.result is Result.COUNTEREXAMPLE, result.detail
    cex = result.counterexample
    assert cex is not None and rule in result.rules and rule in cex.violated
    return result


def last_outcome(result: CheckResult) -> str:
    assert result.counterexample is not None
    return result.counterexample.steps[-1].outcome


def test_a_notification_before_completion_is_caught(rpc_planted: list[CheckResult]) -> None:
    result = caught_in(rpc_planted, "rpc.notified_after_completion[Apc]", "RPC-CLI-NOTIFY-02")
    assert last_outcome(result) == "planted: early"


def test_a_cancelled_rpc_call_completing_with_rpc_s_ok_is_caught(
        rpc_planted: list[CheckResult]) -> None:
    result = caught_in(rpc_planted, "rpc.cancelled_call_reports_cancelled", "RPC-CLI-COMPLETE-04")
    assert last_outcome(result) == "planted: completed"


def test_a_second_notification_is_caught_by_the_state_property(
        rpc_planted: list[CheckResult]) -> None:
    result = caught_in(rpc_planted, "rpc.one_notification_per_call", "RPC-CLI-NOTIFY-05")
    assert BY_ID["rpc.one_notification_per_call"].kind is ObligationKind.STATE
    assert last_outcome(result) == "planted: again"


def test_an_rpc_call_never_notified_is_caught_by_liveness(rpc_planted: list[CheckResult]) -> None:
    result = caught_in(rpc_planted, "rpc.notified_eventually[Event]", "RPC-CLI-NOTIFY-01")
    assert result.counterexample is not None
    assert "no state satisfying the goal" in result.counterexample.what
    assert "notify=Event" in result.counterexample.what


def test_a_soft_rpc_cancel_the_server_never_sees_is_caught_by_liveness(
        rpc_planted: list[CheckResult]) -> None:
    result = caught_in(rpc_planted, "rpc.cancel_reaches_the_server", "RPC-CLI-CANCEL-03")
    steps = result.counterexample.steps if result.counterexample else ()
    assert any(s.op == "RpcAsyncCancelCall" and s.args == (("abort", False),) for s in steps)


# --- what the checker itself guarantees ---------------------------------------------------


def test_a_gap_in_a_table_is_a_counterexample_not_a_crash() -> None:
    rows = tuple(r for r in COM.rows if not _covers(r, "Finish_", {"phase": "IDLE"}, {}))
    broken = dataclasses.replace(COM, rows=rows)
    result = result_of(check_machine(broken, known={}), "com.finish_without_call")
    assert result.result is Result.COUNTEREXAMPLE and result.counterexample is not None
    assert "no row answers" in result.counterexample.what
    assert result.counterexample.steps[-1].code == "gap"


def test_an_obligation_whose_premise_never_holds_is_vacuous_and_fails() -> None:
    never = Obligation("test.never", ("COM-FIN-02",), "Finish_ on a call object that is not one.",
                       "com_call", Whenever(("Finish_",), lambda n, a: False, defined=True))
    (result,) = check_obligations({"com_call": COM}, [never], known={})
    assert result.result is Result.COUNTEREXAMPLE and "vacuous" in result.detail


def test_an_obligation_for_a_missing_machine_cannot_be_checked() -> None:
    lost = dataclasses.replace(BY_ID["event.signal"], machine="no_such_machine")
    (result,) = check_obligations(MACHINES, [lost], known={})
    assert result.result is Result.COUNTEREXAMPLE and "no machine named" in result.detail


def test_the_whole_check_is_a_public_function_of_the_package() -> None:
    assert obligations.check_obligations is check_obligations
    kinds = {o.kind for o in ALL}
    assert kinds == set(ObligationKind)
    for family in ("com_call", "event", "rpc_call"):
        assert {o.kind for o in ALL if o.machine == family} >= {ObligationKind.TRANSITION}
