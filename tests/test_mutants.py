"""The seeded-fault mutants: the catalogue is well formed, the report's figures are computed right,
and a representative set of mutants still dies (a change that blinds the suite fails here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callgate.conformance import mutants
from callgate.conformance.budgets import BUDGETS
from callgate.conformance.cli.main import main
from callgate.conformance.implementations.reference.host import FAULTS, Fault
from callgate.conformance.mutants import MutantResult, MutantsReport
from callgate.conformance.results import CaseResult, Verdict
from callgate.model.rules import Level, catalogue


def test_the_catalogue_has_at_least_50_faults_each_citing_a_rule() -> None:
    assert len(FAULTS) >= 50
    assert all(f.rule and f.effect for f in FAULTS.values())


def test_the_catalogue_is_well_formed() -> None:
    # Every fault cites an in-scope rule, every observable in-scope MUST rule has a mutant, and
    # every fault is consulted by a host.fault(...) call in the reference implementation.
    assert mutants.catalogue_problems(FAULTS, mutants.reference_sources()) == []


def test_a_fault_citing_an_unknown_rule_is_reported() -> None:
    broken = {**FAULTS, "made_up": Fault("made_up", "COM-NOPE-99", "nothing")}
    problems = mutants.catalogue_problems(broken)
    assert any("made_up cites unknown rule COM-NOPE-99" in p for p in problems)


def test_a_must_rule_without_a_mutant_is_reported() -> None:
    without = {n: f for n, f in FAULTS.items() if f.rule != "COM-FIN-02"}
    problems = mutants.catalogue_problems(without)
    assert any("COM-FIN-02 has no mutant" in p for p in problems)


def test_a_fault_no_code_consults_is_reported(tmp_path: Path) -> None:
    source = tmp_path / "impl.py"
    source.write_text('if host.fault("begin_accepts_second"):\n    pass\n', encoding="utf-8")
    faults = {n: FAULTS[n] for n in ("begin_accepts_second", "finish_idle_ok")}
    problems = mutants.catalogue_problems(faults, [source])
    assert [p for p in problems if "consulted" in p] == [
        "fault finish_idle_ok is not consulted by any host.fault(...) call"]


def test_a_rule_called_unobservable_that_a_mutant_breaks_is_reported() -> None:
    problems = mutants.catalogue_problems(
        FAULTS, unobservable={**mutants.UNOBSERVABLE, "COM-FIN-02": "claimed unobservable"})
    assert any(p.startswith("COM-FIN-02 is listed as unobservable but mutant(s) finish_idle_ok")
               for p in problems)


def test_unobservable_rules_are_in_scope_must_rules() -> None:
    rules = catalogue()
    for rule_id in mutants.UNOBSERVABLE:
        assert rules[rule_id].in_scope and Level.MUST in {rules[rule_id].level,
                                                          *rules[rule_id].split_levels}
        assert rule_id not in mutants.observable_must_rules()


def _killed(name: str, seconds: float, length: int, shortest: int | None) -> MutantResult:
    return MutantResult(name, FAULTS[name].rule, "", True, seconds, 3, verdict="fail",
                        killed_by="x-walk-000", kind="directed", seconds_to_kill=seconds,
                        counterexample_length=length, shortest_path=shortest,
                        minimal=None if shortest is None else length == shortest + 1)


def test_the_report_counts_a_survivor_and_computes_the_totals() -> None:
    survivor = MutantResult("finish_idle_ok", "COM-FIN-02", "", False, 40.0, 70,
                            reason=mutants.survivor_reason("finish_idle_ok", mutants.KINDS))
    report = MutantsReport("quick", 0, mutants.KINDS, (
        _killed("begin_accepts_second", 1.0, 3, 2),      # minimal
        _killed("wait_ok_before_signal", 5.0, 7, 2),     # longer than the shortest path + 1
        _killed("notification_twice", 2.0, 4, None),     # shortest path unknown
        survivor), 50.0)
    data = report.to_json()
    assert data["total"] == 4
    assert data["killed"] == 3
    assert data["survivors"] == [{"name": "finish_idle_ok", "rule": "COM-FIN-02",
                                  "reason": survivor.reason}]
    assert "blind spot" in survivor.reason
    assert data["median_seconds_to_kill"] == 2.0
    assert data["minimal_counterexamples"] == 1
    assert data["kill_rate"] == 0.75
    assert [r.name for r in report.unexpected_survivors] == ["finish_idle_ok"]


def test_the_report_gives_each_class_its_kills_by_kind_of_case() -> None:
    from dataclasses import replace
    race = replace(_killed("cancel_lost_after_test", 3.0, 8, 7), kind="parallel")
    survivor = MutantResult("finish_out_byte", FAULTS["finish_out_byte"].rule, "", False, 40.0, 9)
    report = MutantsReport("quick", 0, mutants.KINDS, (
        _killed("rewait_loses_out", 1.0, 3, 2), race, survivor,
        _killed("begin_accepts_second", 1.0, 3, 2)), 50.0)
    data = report.to_json()
    assert data["by_kind"] == {"directed": 2, "parallel": 1}
    assert data["by_class"]["race"] == {"total": 1, "killed": 1, "minimal_counterexamples": 1,
                                        "by_kind": {"parallel": 1}, "survivors": []}
    assert data["by_class"]["argument-value"]["survivors"] == ["finish_out_byte"]
    assert data["by_class"]["argument-value"]["killed"] == 0
    assert data["by_class"]["forgotten-state"]["by_kind"] == {"directed": 1}
    assert data["by_class"]["cross-object"]["total"] == 0
    assert sum(len(m) for m in mutants.CLASSES.values()) >= 20
    assert mutants.catalogue_problems() == []


def test_an_equivalent_survivor_is_expected_and_says_why() -> None:
    name = next(iter(mutants.EQUIVALENT))
    reason = mutants.survivor_reason(name, mutants.KINDS)
    assert reason.startswith("equivalent: ")
    report = MutantsReport("quick", 0, mutants.KINDS, (
        MutantResult(name, FAULTS[name].rule, "", False, 1.0, 1, reason=reason),), 1.0)
    assert report.unexpected_survivors == []
    assert report.to_json()["survivors"][0]["reason"] == reason


def test_a_concurrency_fault_without_parallel_cases_is_explained() -> None:
    reason = mutants.survivor_reason("wait_lost_wakeup", ("directed", "stateful"))
    assert "only parallel cases" in reason


def test_a_killed_mutant_reports_a_minimal_counterexample_and_its_transition() -> None:
    result = mutants.run_mutant("begin_accepts_second", BUDGETS["quick"], 0, ("directed",))
    assert result.killed and result.verdict == "fail" and result.kind == "directed"
    assert result.transition.startswith("com_call: ") and result.transition.endswith("Begin_()")
    assert "phase=PENDING" in result.transition
    # CreateCall, Begin_ to reach PENDING, then the faulty Begin_.
    assert (result.counterexample_length, result.shortest_path, result.minimal) == (3, 2, True)
    # Found where the fault acted: the second Begin_ (tests/test_mutants_minimal.py).
    assert result.transition_source == "fault-site" and result.fault_steps == [2]
    assert "COM-BEGIN-02" in result.failed_rules
    # Where its seconds went: the shrinking is part of the time to kill, and the CPU is counted.
    assert result.seconds_to_kill is not None
    assert 0 < result.shrink_seconds <= result.seconds_to_kill
    assert result.cpu_seconds > 0 and result.to_json()["cpu_seconds"] == result.cpu_seconds


# Mutants that must die, each with the kind of case that kills it on its own: a fast sample over
# the three families, wrong codes and wrong next states (the walk's state check), a stateful-only
# check and the two concurrency faults. About 40 s.
KILL_CHECK = [
    ("begin_accepts_second", "directed"),
    ("finish_idle_ok", "directed"),
    ("cancel_signals_at_once", "directed"),
    ("cancelled_signal_discarded", "directed"),
    ("cancel_not_forwarded", "directed"),
    ("finish_stale_out", "directed"),
    ("std_event_no_auto_reset", "directed"),
    ("manual_event_auto_resets", "directed"),
    ("signal_pulses", "directed"),
    ("new_event_signalled", "directed"),
    ("container_accepts_64th", "directed"),
    ("wait_multiple_off_by_one", "directed"),
    ("init_zeroes_user_info", "directed"),
    ("server_test_cancel_consumes", "directed"),
    ("abort_code_lost", "directed"),
    ("finish_idle_ok", "stateful"),
    ("begin_check_then_set_race", "parallel"),
    ("wait_lost_wakeup", "parallel"),
]


@pytest.mark.parametrize("name,kind", KILL_CHECK)
def test_a_representative_mutant_dies(name: str, kind: str) -> None:
    result = mutants.run_mutant(name, BUDGETS["quick"], 0, (kind,))
    assert result.killed, f"{name} survived the {kind} cases: the suite went blind to " \
                          f"{FAULTS[name].rule} ({FAULTS[name].effect})"
    assert result.kind == kind


def test_the_cli_lists_and_runs_mutants_as_json(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    assert main(["mutants", "--list"]) == 0
    assert "begin_accepts_second" in capsys.readouterr().out
    code = main(["mutants", "--json", "--only", "begin_accepts_second", "--workers", "1",
                 "--kinds", "directed", "--out", str(tmp_path)])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (data["total"], data["killed"], data["survivors"]) == (1, 1, [])
    assert json.loads((tmp_path / "mutants.json").read_text())["killed"] == 1


def test_the_cli_refuses_an_unknown_mutant(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mutants", "--only", "no_such_fault", "--workers", "1"]) == 2
    assert "unknown mutant(s) no_such_fault" in capsys.readouterr().err


def test_the_kill_check_fails_when_the_suite_cannot_see_the_fault() -> None:
    # The same run against the correct reference (as if the suite had gone blind to the fault):
    # the mutant is reported as surviving, with a reason that says it is a blind spot.
    from callgate.conformance.implementations.reference.adapter import ReferenceAdapter

    result = mutants.run_mutant("begin_check_then_set_race", BUDGETS["quick"], 0, ("parallel",),
                                adapter_factory=lambda name: ReferenceAdapter())
    assert not result.killed
    assert "blind spot" in result.reason


def _erred(steps: list[dict[str, object]]) -> CaseResult:

    return CaseResult("event-x", "directed", "", [], Verdict.ERROR, len(steps), 0.1,
                      message="a step did not answer", replay={
                          "slots": [{"name": "e0", "machine": "event", "config": {}}],
                          "steps": steps})


def test_an_error_counts_as_a_kill_only_when_the_fault_caused_it() -> None:
    """An `error` against a mutant is a kill only if the same case passes against the correct
    reference and goes wrong again against the mutant; otherwise it is load or a harness limit."""
    from callgate.conformance.implementations.reference.adapter import ReferenceAdapter

    steps: list[dict[str, object]] = [
        {"slot": "e0", "op": "CoCreateInstance", "args": {"clsid": "ManualResetEvent"}},
        {"slot": "e0", "op": "Wait", "args": {"timeout": "zero"}}]
    faulty = ReferenceAdapter(faults={"new_event_signalled"})
    correct = ReferenceAdapter()
    try:
        assert mutants.error_not_the_faults(_erred(steps), faulty, 5.0) == ""
        why = mutants.error_not_the_faults(_erred(steps), correct, 5.0)
        assert "did not repeat" in why
        bogus: list[dict[str, object]] = [{"slot": "e0", "op": "NoSuchOp", "args": {}}]
        assert "cannot be run again" in mutants.error_not_the_faults(_erred(bogus), faulty, 5.0)
    finally:
        faulty.shutdown()
        correct.shutdown()


# --- the jobs of one mutant ----------------------------------------------------------------------


def test_a_mutants_jobs_start_with_the_machine_of_its_rule() -> None:
    assert mutants.machines_of("RPC-CLI-CALL-01")[0] == "rpc_call"
    assert mutants.machines_of("COM-CCAN-03")[0] == "thread_cancel"
    plan_order = ["com_call", "thread_cancel", "event", "rpc_call"]
    jobs = mutants.jobs_for("RPC-CLI-CALL-01", plan_order, mutants.KINDS)
    assert [j.name for j in jobs] == ["rpc_call", mutants.LAST_JOB, "com_call", "thread_cancel",
                                      "event"]
    assert [j.name for j in mutants.jobs_for("RPC-CLI-CALL-01", plan_order, ("stateful",))] == [
        mutants.LAST_JOB]
    assert [j.name for j in mutants.jobs_for("COM-BEGIN-01", plan_order, ("directed",))] == [
        "com_call", "thread_cancel", "event", "rpc_call"]
    # COM-SYNC-01 is cited by rows of three machines: with their sizes, the smallest walks first.
    assert set(mutants.machines_of("COM-SYNC-01")) == {"com_call", "event", "container"}
    sizes = {"com_call": 318, "thread_cancel": 85, "event": 28, "container": 1938,
             "rpc_call": 15914}
    jobs = mutants.jobs_for("COM-SYNC-01", [*plan_order, "container"], ("directed",), sizes)
    assert [j.name for j in jobs] == ["event", "com_call", "container", "thread_cancel",
                                      "rpc_call"]


def test_the_schedule_stops_at_the_first_kill_and_counts_the_jobs_before_it() -> None:
    jobs = [mutants.Job(n, n) for n in ("a", "b", "c", "d")]
    ran: list[str] = []
    failing = CaseResult("c-walk-000", "directed", "", [], Verdict.FAIL, 3, 0.5)

    def run_job(job: mutants.Job) -> mutants.JobOutcome:
        ran.append(job.name)
        return mutants.JobOutcome(job, 10.0, 4, (failing, 2.5) if job.name == "c" else None)

    outcomes, kill = mutants.schedule(jobs, run_job)
    assert ran == ["a", "b", "c"]  # d never runs
    assert kill is not None and kill[0] is failing
    assert kill[1] == 22.5  # a and b ran to their end (20 s), the kill came 2.5 s into c
    assert [o.to_json()["killed"] for o in outcomes] == [False, False, True]


def test_a_mutant_survives_the_schedule_only_when_every_job_ran() -> None:
    jobs = [mutants.Job(n, n) for n in ("a", "b", "c")]
    ran: list[str] = []

    def run_job(job: mutants.Job) -> mutants.JobOutcome:
        ran.append(job.name)
        return mutants.JobOutcome(job, 1.0, 2)

    outcomes, kill = mutants.schedule(jobs, run_job)
    assert kill is None and ran == ["a", "b", "c"] and len(outcomes) == 3


@pytest.fixture()
def small_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant runs with a plan of three small machines (the whole plan takes long to build)."""
    from callgate.conformance.cases import sequences

    plans: dict[str, sequences.Plan] = {}

    def plan_for(caps: object) -> sequences.Plan:
        if "p" not in plans:
            plans["p"] = sequences.plan(caps, only={"event", "thread_cancel", "com_call"})  # type: ignore[arg-type]
        return plans["p"]

    monkeypatch.setattr(mutants, "plan_for", plan_for)


@pytest.mark.usefixtures("small_plan")
def test_a_kill_on_a_later_machine_counts_with_the_time_of_the_jobs_before_it() -> None:
    # begin_reports_pending breaks a com_call rule; run the event and thread_cancel machines
    # first: they pass, and the com_call walk kills.
    result = mutants.run_mutant("begin_reports_pending", BUDGETS["quick"], 0, ("directed",),
                                machines=["event", "thread_cancel", "com_call"])
    assert result.killed and result.killed_by.startswith("com_call-walk-")
    assert [(j["job"], j["killed"]) for j in result.jobs] == [
        ("event", False), ("thread_cancel", False), ("com_call", True)]
    before = sum(j["seconds"] for j in result.jobs[:2])
    assert result.seconds_to_kill is not None and result.seconds_to_kill >= before
    assert result.cases == sum(j["cases"] for j in result.jobs)


@pytest.mark.usefixtures("small_plan")
def test_a_surviving_mutant_ran_every_machine() -> None:
    result = mutants.run_mutant("wait_multiple_last_member", BUDGETS["quick"], 0, ("directed",))
    assert not result.killed and result.reason.startswith("equivalent")
    # A job per unit of the run (the directed cases: each machine's walk and repetition cases,
    # and the merged-form continuations of the machines that have merged forms).
    assert sorted(j["job"] for j in result.jobs) == [
        "forms-com_call", "forms-event",
        "repeat-com_call", "repeat-event", "repeat-thread_cancel",
        "walk-com_call", "walk-event", "walk-thread_cancel"]
    assert not any(j["killed"] for j in result.jobs)


@pytest.mark.usefixtures("small_plan")
def test_the_units_run_as_one_gate_run_until_the_first_kill_each_with_its_seconds() -> None:
    from callgate.conformance.gate import Tick
    from callgate.conformance.implementations.reference.adapter import ReferenceAdapter

    adapter = ReferenceAdapter(faults={"begin_reports_pending"})
    order = ["walk-event", "walk-thread_cancel", "walk-com_call", "repeat-com_call"]
    jobs = [mutants.Job(u, unit=u) for u in order]
    plan = mutants.plan_for(adapter.capabilities())
    options = mutants._unit_options("begin_reports_pending", BUDGETS["quick"], 0, Path("."),
                                    10.0, ("directed",), plan)

    def kill_of(tick: Tick) -> CaseResult | None:
        failed = tick.result is not None and tick.result.verdict is Verdict.FAIL
        return tick.result if failed else None

    try:
        ran, kill = mutants.run_units(adapter, jobs, options, kill_of)
    finally:
        adapter.shutdown()
    # The two walks before pass to their end, the com_call walk kills, the last never runs.
    assert [(o.job.name, o.kill is not None) for o in ran] == [
        ("walk-event", False), ("walk-thread_cancel", False), ("walk-com_call", True)]
    assert kill is not None and kill[0].id.startswith("com_call-walk-")
    before = sum(o.seconds for o in ran[:2])
    assert all(o.cases > 0 and o.seconds > 0 for o in ran)
    assert kill[1] >= before + ran[2].kill[1] - 1e-6  # type: ignore[index]
    # Every unit passing: each one's outcome, no kill.
    correct = ReferenceAdapter()
    try:
        ran, kill = mutants.run_units(correct, jobs[:2], options, kill_of)
    finally:
        correct.shutdown()
    assert kill is None and [o.job.name for o in ran] == order[:2]


def test_the_pool_starts_the_mutants_of_the_largest_machines_first() -> None:
    sizes = {"com_call": 318, "event": 28, "rpc_call": 15914}
    names = ["new_event_signalled", "begin_accepts_second", "abort_code_lost", "finish_idle_ok"]
    assert mutants.start_order(names, sizes) == [
        "abort_code_lost", "begin_accepts_second", "finish_idle_ok", "new_event_signalled"]
    assert sorted(mutants.start_order(sorted(FAULTS), sizes)) == sorted(FAULTS)


@pytest.mark.slow
def test_a_pool_of_forked_workers_kills_as_one_process_does() -> None:
    # Two workers forked from a process that built the plan and its caches (`warm`): the same
    # kills, by the same cases, as the mutants run one after the other in this process.
    names = ["new_event_signalled", "begin_accepts_second"]
    pooled = mutants.run_mutants(names, budget="quick", workers=2)
    alone = mutants.run_mutants(names, budget="quick", workers=1)
    assert [(r.name, r.killed, r.killed_by) for r in pooled.results] == [
        (r.name, r.killed, r.killed_by) for r in alone.results]
    assert all(r.killed and r.minimal for r in pooled.results)
