"""A mutant's units in the order of the rule it breaks, and the equivalent mutants' policy."""

from __future__ import annotations

import pytest

from callgate.conformance import mutants
from callgate.conformance import mutants_schedule as schedule
from callgate.conformance.implementations.reference.host import FAULTS, Fault
from callgate.conformance.units import Unit

FEATURES = frozenset({"com.call", "com.cancel", "sync.event", "sync.manual_reset_event",
                      "sync.std_event", "rpc.call", "rpc.handle", "rpc.notify.Event"})

# A run's units in the run's own order (a made-up but well-formed list: walks, multi-object
# walks, two races, a stateful round, the generated parallel cases).
UNITS = [
    Unit("walk-com_call", "walk", "com_call"),
    Unit("walk-event", "walk", "event"),
    Unit("walk-rpc_call", "walk", "rpc_call"),
    Unit("multi-com_call-pair", "multi", "com_call-pair"),
    Unit("stateful-00-c0", "stateful", "", 0),
    Unit("race-begin-begin", "race", "race-begin-begin", 0),
    Unit("race-rpc-abort-complete", "race", "race-rpc-abort-complete", 5),
    Unit("parallel-generated", "generated"),
]


def test_a_rule_only_a_race_cites_runs_that_race_first() -> None:
    # A made-up catalogue entry: its rule is named by one race and cited by no machine's rows.
    fake = Fault("fake_race_only", "FAKE-RACE-01", "only a race shows it")
    races = {"race-rpc-abort-complete": frozenset({fake.rule}),
             "race-begin-begin": frozenset({"COM-BEGIN-02"})}
    assert schedule.machines_citing(fake.rule) == frozenset()
    order = schedule.order_units(fake.rule, UNITS, FEATURES, race_rules=races)
    assert order[0].unit.id == "race-rpc-abort-complete"
    assert order[0].group == schedule.CITES and "names FAKE-RACE-01" in order[0].why
    assert [s.group for s in order[1:]] == [schedule.REST] * (len(UNITS) - 1)
    # The rest keep the cheap kinds first: the other race, the walks, ..., the generated cases.
    assert [s.unit.id for s in order[1:3]] == ["race-begin-begin", "walk-com_call"]
    assert order[-1].unit.id == "parallel-generated"
    assert sorted(s.unit.id for s in order) == sorted(u.id for u in UNITS)


def test_a_rule_its_machine_cites_runs_its_walks_then_the_units_of_its_machine() -> None:
    sizes = {"com_call": 318, "event": 28, "rpc_call": 15914}
    races = {"race-begin-begin": frozenset({"COM-BEGIN-02"})}
    order = schedule.order_units("COM-BEGIN-02", UNITS, FEATURES, sizes, race_rules=races)
    ids = [s.unit.id for s in order]
    # The race naming the rule, the com_call walk and multi-object walk (rows cite it), then a
    # stateful round with a call object, then the rest (the walk of the small event machine,
    # the other race, the large rpc_call walk, the generated cases).
    assert ids[:3] == ["race-begin-begin", "walk-com_call", "multi-com_call-pair"]
    assert ids[3] == "stateful-00-c0" and order[3].group == schedule.MACHINE
    assert ids[4:] == ["walk-event", "race-rpc-abort-complete", "walk-rpc_call",
                       "parallel-generated"]
    # The order uses the rule alone: another rule of the same machine, cited by no race, puts
    # the race after the walks of its machine.
    ids = [s.unit.id for s in schedule.order_units("COM-FIN-02", UNITS, FEATURES, sizes,
                                                   race_rules=races)]
    assert ids[:2] == ["walk-com_call", "multi-com_call-pair"]


def test_the_units_citing_a_rule_go_machine_by_machine_the_smallest_first() -> None:
    # COM-SYNC-01 is cited by rows of the event, com_call and container machines and named by
    # race-signal-wait-event: the event machine's units (its small walk, its race, its
    # multi-object walk) run before any com_call unit.
    sizes = {"com_call": 318, "event": 28, "container": 1938}
    units = [Unit("walk-com_call", "walk", "com_call"), Unit("walk-event", "walk", "event"),
             Unit("multi-com_call-pair", "multi", "com_call-pair"),
             Unit("multi-event-pair", "multi", "event-pair"),
             Unit("race-signal-wait-event", "race", "race-signal-wait-event", 2),
             Unit("race-begin-begin", "race", "race-begin-begin", 0)]
    order = schedule.order_units("COM-SYNC-01", units, FEATURES, sizes)
    assert [s.unit.id for s in order] == [
        "walk-event", "race-signal-wait-event", "multi-event-pair", "walk-com_call",
        "multi-com_call-pair", "race-begin-begin"]
    assert [s.group for s in order] == [schedule.CITES] * 5 + [schedule.MACHINE]


def test_a_walk_split_into_parts_is_scheduled_by_its_machine() -> None:
    parts = [Unit("walk-event", "walk", "event"), Unit("walk-rpc_call-2", "walk", "rpc_call-2"),
             Unit("walk-rpc_call-1", "walk", "rpc_call-1")]
    assert schedule.walk_machine("rpc_call-2") == "rpc_call"
    order = schedule.order_units("RPC-CLI-CALL-01", parts, FEATURES, race_rules={})
    assert [s.unit.id for s in order] == ["walk-rpc_call-2", "walk-rpc_call-1", "walk-event"]


def test_the_named_races_rules_put_their_race_first_for_a_real_mutant() -> None:
    # The catalogue's own race fault: RPC-CLI-CANCEL-02 is named by race-rpc-abort-complete.
    rule = FAULTS["abort_during_complete_no_notify"].rule
    order = schedule.order_units(rule, UNITS, FEATURES)
    assert order[0].unit.id == "race-rpc-abort-complete"


# --- the equivalent mutants ----------------------------------------------------------------------


def test_the_standard_budget_leaves_the_equivalent_mutants_out_and_says_so() -> None:
    assert not mutants.runs_equivalent("standard") and not mutants.runs_equivalent("quick")
    assert mutants.runs_equivalent("deep")
    assert mutants.runs_equivalent("standard", include=True)
    assert not mutants.runs_equivalent("deep", include=False)
    name = "wait_multiple_last_member"
    report = mutants.run_mutants([name], budget="quick", workers=1)
    (result,) = report.results
    assert not result.ran and not result.killed and result.jobs == [] and result.cases == 0
    assert result.reason.startswith("equivalent, not run") and "COM-CONT-03" in result.reason
    data = report.to_json()
    assert data["not_run"] == [name] and data["killed"] == 0
    assert report.unexpected_survivors == []  # the exit code stays 0


def test_a_non_equivalent_mutant_is_never_left_out() -> None:
    report = mutants.run_mutants(["wait_multiple_last_member"], budget="quick", workers=1,
                                 include_equivalent=False)
    assert [r.name for r in report.results if not r.ran] == ["wait_multiple_last_member"]
    assert all(n in mutants.EQUIVALENT for n in report.to_json()["not_run"])
    with pytest.raises(ValueError, match="not an equivalent mutant"):
        mutants.not_run("begin_accepts_second", "standard")  # only an equivalent can be


def test_auto_workers_is_three_per_cpu_less_the_load_and_at_least_two() -> None:
    # Idle: three per CPU (the runs mostly wait); busy: one fewer per process already running.
    assert [mutants.auto_workers(n, load=0.0) for n in (1, 2, 8)] == [3, 6, 24]
    assert [mutants.auto_workers(2, load=x) for x in (0.4, 1.0, 2.6, 12.0)] == [6, 5, 3, 2]
    from callgate.conformance.cli.mutants import _workers

    assert _workers("auto") == "auto" and _workers("3") == "3"
    with pytest.raises(Exception, match="positive number or auto"):
        _workers("0")


def test_the_cli_reports_an_equivalent_mutant_as_not_run_and_exits_0(
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from callgate.conformance.cli.main import main

    name = "polled_status_stale"
    assert main(["mutants", "--json", "--only", name, "--workers", "1"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["not_run"] == [name] and data["mutants"][0]["ran"] is False
    assert data["survivors"][0]["reason"].startswith("equivalent, not run")
    assert "equivalent mutants not run" in captured.err


def test_a_machines_identification_unit_follows_its_walk_and_walk_parts_keep_their_machine(
        ) -> None:
    # State identification is a unit of its own (`ident-MACHINE`), and a large machine's walk
    # runs in parts: a rule its rows cite puts every part and the identification unit in the
    # first group, the identification after the walk's first part and before its later parts;
    # another machine's stay behind.
    sizes = {"com_call": 318, "rpc_call": 15914}
    units = [Unit("walk-rpc_call-p1", "walk", "rpc_call", part=1, parts=2),
             Unit("walk-rpc_call-p2", "walk", "rpc_call", part=2, parts=2),
             Unit("ident-rpc_call", "ident", "rpc_call"),
             Unit("walk-com_call", "walk", "com_call"),
             Unit("ident-com_call", "ident", "com_call")]
    order = schedule.order_units("RPC-CLI-CANCEL-01", units, FEATURES, sizes, race_rules={})
    assert [s.unit.id for s in order] == ["walk-rpc_call-p1", "ident-rpc_call",
                                          "walk-rpc_call-p2", "walk-com_call", "ident-com_call"]
    assert [s.group for s in order] == [schedule.CITES] * 3 + [schedule.REST] * 2


def test_a_split_walks_later_parts_follow_its_machines_units_most_citing_first() -> None:
    # The first part (from the initial states) runs first; the machine's identification,
    # repetition and multi-object units come before the later parts, and those go by how many
    # of their transitions cite the rule, ties in the parts' own order.
    sizes = {"rpc_call": 15914}
    parts = [Unit(f"walk-rpc_call-p{i}", "walk", "rpc_call", part=i, parts=4)
             for i in range(1, 5)]
    units = [*parts, Unit("ident-rpc_call", "ident", "rpc_call"),
             Unit("repeat-rpc_call", "repeat", "rpc_call"),
             Unit("multi-rpc_call-pair", "multi", "rpc_call-pair")]
    citing = {"walk-rpc_call-p1": 0, "walk-rpc_call-p2": 3, "walk-rpc_call-p3": 9,
              "walk-rpc_call-p4": 3}
    ids = [s.unit.id for s in schedule.order_units("RPC-CLI-CANCEL-03", units, FEATURES, sizes,
                                                   race_rules={}, parts_citing=citing)]
    assert ids == ["walk-rpc_call-p1", "repeat-rpc_call", "multi-rpc_call-pair",
                   "ident-rpc_call", "walk-rpc_call-p3", "walk-rpc_call-p2",
                   "walk-rpc_call-p4"]
    # No counts: the later parts keep their own order.
    ids = [s.unit.id for s in schedule.order_units("RPC-CLI-CANCEL-03", units, FEATURES, sizes,
                                                   race_rules={})]
    assert ids[4:] == ["walk-rpc_call-p2", "walk-rpc_call-p3", "walk-rpc_call-p4"]


def test_the_units_bound_by_waits_follow_the_machines_walks_of_steps_that_do_not_wait(
        ) -> None:
    # A cross-object fault shows in the multi-object walk: it no longer waits out the
    # identification (com_call's: 14 Cancel(ulSeconds=1) calls) and the merged-form
    # continuations first; a rule of another machine leaves them all behind.
    sizes = {"com_call": 318, "event": 40}
    units = [Unit("walk-com_call", "walk", "com_call"),
             Unit("ident-com_call", "ident", "com_call"),
             Unit("repeat-com_call", "repeat", "com_call"),
             Unit("forms-com_call", "forms", "com_call"),
             Unit("multi-com_call-pair", "multi", "com_call-pair"),
             Unit("walk-event", "walk", "event")]
    ids = [s.unit.id for s in schedule.order_units("COM-CANCEL-02", units, FEATURES, sizes,
                                                   race_rules={})]
    assert ids == ["walk-com_call", "repeat-com_call", "multi-com_call-pair", "ident-com_call",
                   "forms-com_call", "walk-event"]


def test_every_citing_machines_units_that_do_not_wait_come_before_any_bound_by_waits(
        ) -> None:
    # A rule two machines cite: the smaller machine's identification and merged-form units no
    # longer come before the larger machine's walk and multi-object walk.
    sizes = {"rpc_notif": 1305, "rpc_call": 15914}
    units = [Unit("walk-rpc_call-p1", "walk", "rpc_call", part=1, parts=2),
             Unit("walk-rpc_call-p2", "walk", "rpc_call", part=2, parts=2),
             Unit("ident-rpc_call", "ident", "rpc_call"),
             Unit("multi-rpc_call-pair", "multi", "rpc_call-pair"),
             Unit("walk-rpc_notif", "walk", "rpc_notif"),
             Unit("ident-rpc_notif", "ident", "rpc_notif"),
             Unit("repeat-rpc_notif", "repeat", "rpc_notif"),
             Unit("forms-rpc_notif", "forms", "rpc_notif")]
    ids = [s.unit.id for s in schedule.order_units(
        "A-RULE", units, FEATURES, sizes, race_rules={},
        citing=frozenset({"rpc_notif", "rpc_call"}))]
    assert ids == ["walk-rpc_notif", "repeat-rpc_notif", "walk-rpc_call-p1",
                   "multi-rpc_call-pair", "ident-rpc_notif", "forms-rpc_notif",
                   "ident-rpc_call", "walk-rpc_call-p2"]


def test_part_citing_counts_each_parts_transitions_whose_rows_cite_the_rule() -> None:
    from callgate.conformance.cases import sequences
    from callgate.conformance.cases.walk import walk_parts
    from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
    from callgate.model.transitions import find_row

    plan = sequences.plan(ReferenceAdapter().capabilities(), only={"com_call"})
    machine_plan = plan.machines["com_call"]
    units = [Unit(f"walk-com_call-p{i}", "walk", "com_call", part=i, parts=3)
             for i in (1, 2, 3)]
    rule = "COM-FIN-02"
    cited = {key for key, (state, action) in machine_plan.by_key.items()
             if rule in find_row(machine_plan.machine, state, action.op,
                                 action.args).cited_rules()}
    found = schedule.part_citing(rule, [*units, Unit("walk-com_call", "walk", "com_call")], plan)
    assert set(found) == {u.id for u in units}  # a walk not cut into parts has no count
    assert found == {u.id: len(cited & part)
                     for u, part in zip(units, walk_parts(machine_plan, 3), strict=True)}
    assert sum(found.values()) == len(cited) > 0 and len(set(found.values())) > 1
    assert set(schedule.part_citing("NO-SUCH-RULE", units, plan).values()) == {0}
