"""callgate.conformance.report.reach: what an implementation with known deviations can still
reach of the model, and the report's `coverage.with_deviations` (on the event machine: small,
28 transitions under Wine's event features)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from callgate.conformance.cases import sequences
from callgate.conformance.cases.walk import WalkBudget, walk_machine
from callgate.conformance.expectations import Expectations, from_record, parse
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.protocol.adapter import Capabilities, Observation, Request, Session, SlotSpec
from callgate.conformance.report import reach
from callgate.conformance.report.reporting import build_report, render_markdown, validate_report
from callgate.conformance.results import CaseResult, RunRecord, StepRecord, Verdict
from callgate.model.families import MACHINES

FEATURES = {"sync.event", "sync.manual_reset_event", "sync.std_event", "sync.handle",
            "sync.set_event_handle"}
PINS = {"event_wait_timeout_code": "RPC_S_CALLPENDING", "new_event_state": "nonsignaled"}
EVENT = MACHINES["event"]
REGDB_E_CLASSNOTREG = 0x80040154
STD_EVENT = """
[[deviation]]
rule = "COM-SYNC-06"
verdict = "fail"
reason = "StdEvent is not registered"
%s
[[deviation.instead]]
machine = "event"
op = "CoCreateInstance"
args = { clsid = "StdEvent" }
code = %s
"""


def _graph() -> Any:
    graph = reach.machine_graph(EVENT, FEATURES, PINS)
    assert graph is not None
    return graph


def _kinds(keys: set[str]) -> set[str]:
    """The `kind` field of each transition's source state ('event|kind,signaled|op(args)')."""
    return {key.split("|")[1].split(",")[0] for key in keys}


def test_without_deviations_everything_under_the_features_is_reachable() -> None:
    graph = _graph()
    reached = reach.reach(graph, EVENT, None, set())
    assert len(reached) == len(graph.transitions) == 28
    assert _kinds(reached) == {"NONE", "ManualResetEvent", "StdEvent"}


def test_a_described_refusal_cuts_off_what_lies_behind_it() -> None:
    refused = parse(STD_EVENT % ("", "0x80040154"), Path("e.toml"))
    reached = reach.reach(_graph(), EVENT, refused, set())
    assert "StdEvent" not in _kinds(reached)
    assert "ManualResetEvent" in _kinds(reached)
    assert "event|NONE,False|CoCreateInstance(clsid=StdEvent)" in reached  # tried, refused


def test_a_described_code_the_model_allows_follows_the_model() -> None:
    # S_OK is what the model allows: the description is then no deviation, and the graph behind
    # it stays reachable (a table that cut it would make the figure claim too much).
    allowed = parse(STD_EVENT % ("", "0"), Path("e.toml"))
    assert "StdEvent" in _kinds(reach.reach(_graph(), EVENT, allowed, set()))


def _case(case_id: str, ok: bool, failed_rules: list[str],
          verdict: Verdict | None = None) -> CaseResult:
    step = StepRecord("s0", "CoCreateInstance", {"clsid": "StdEvent"}, 0x80040154,
                      "REGDB_E_CLASSNOTREG", {}, [], ok, ["COM-SYNC-06"],
                      EVENT.describe(EVENT.make()))
    verdict = verdict or (Verdict.PASS if ok else Verdict.EXPECTED_FAIL)
    return CaseResult(case_id, "directed", "", [], verdict, 1, 0.0, trace=[step],
                      slots={"s0": "event"}, failed_rules=failed_rules)


def test_an_undescribed_failure_of_the_run_is_a_dead_end() -> None:
    cut = reach.dead_ends(EVENT, [_case("a", False, ["COM-SYNC-06"])])
    assert cut == {(EVENT.make(), "CoCreateInstance", (("clsid", "StdEvent"),))}
    assert "StdEvent" not in _kinds(reach.reach(_graph(), EVENT, None, cut))


def test_a_step_the_adapter_could_not_take_is_a_dead_end() -> None:
    # A walk never gets behind a step its adapter answers not applicable (Wine's CreateCall
    # without an ICallFactory): what lies only behind it is not reachable for this run.
    cut = reach.dead_ends(EVENT, [_case("a", False, [], Verdict.NOT_APPLICABLE)])
    assert cut == {(EVENT.make(), "CoCreateInstance", (("clsid", "StdEvent"),))}
    assert reach.dead_ends(EVENT, [_case("a", False, [], Verdict.PASS)]) == set()


def test_a_step_that_also_succeeded_or_is_kept_open_cuts_nothing() -> None:
    both = [_case("a", False, ["COM-SYNC-06"]), _case("b", True, [])]
    assert reach.dead_ends(EVENT, both) == set()
    assert reach.dead_ends(EVENT, both[:1], keep_open=["COM-SYNC-06"]) == set()


def test_dead_end_false_is_recorded_and_keeps_the_rule_open() -> None:
    known = parse(STD_EVENT % ("dead_end = false", "0x80040154"), Path("e.toml"))
    assert not known.deviations[0].dead_end
    again = from_record(known.to_json())
    assert again.deviations == tuple(
        d.__class__(**{**d.__dict__, "line": 0}) for d in known.deviations)
    record = _record([_case("a", False, ["COM-SYNC-06"])], known, covered=False)
    assert reach.with_deviations(record, again)["kept_open"] == ["COM-SYNC-06"]


# --- in the report: a seeded fault and the expectations that describe it -------------------------


def _record(cases: list[CaseResult], known: Expectations | None, covered: bool = True
            ) -> RunRecord:
    plan = sequences.plan(Capabilities("reference", "1", frozenset(FEATURES), PINS))
    universe = sorted(plan.machines["event"].transitions)
    start: dict[str, Any] = {
        "adapter": {"name": "reference", "capabilities": sorted(FEATURES), "pins": PINS},
        "transitions": universe, "transitions_total": {"event": len(universe)},
        "expectations": known.to_json() if known is not None else None}
    return RunRecord(start, cases, {"finished": "now"})


class _Unregistered:
    """A session of the reference implementation with a fault seeded: CLSID_StdEvent is not
    registered (CoCreateInstance answers REGDB_E_CLASSNOTREG), as on Wine 8.0."""

    def __init__(self, inner: Session) -> None:
        self.inner = inner

    def perform(self, request: Request) -> Observation:
        if request.op == "CoCreateInstance" and request.args.get("clsid") == "StdEvent":
            return Observation(REGDB_E_CLASSNOTREG)
        return self.inner.perform(request)

    def close(self) -> None:
        self.inner.close()


class _Adapter:
    def __init__(self, seeded: bool) -> None:
        self.inner, self.seeded = ReferenceAdapter(), seeded

    def capabilities(self) -> Capabilities:
        caps = self.inner.capabilities()
        return Capabilities("reference", caps.version, frozenset(FEATURES), {**caps.pins, **PINS})

    def open_session(self, slots: Sequence[SlotSpec]) -> Any:
        session = self.inner.open_session(slots)
        return _Unregistered(session) if self.seeded else session

    def shutdown(self) -> None:
        self.inner.shutdown()


def _walk(seeded: bool, known: Expectations | None) -> list[CaseResult]:
    adapter = _Adapter(seeded)
    caps = adapter.capabilities()
    plan = sequences.plan(caps).machines["event"]
    runner = CaseRunner(adapter, caps, step_timeout=5.0, expectations=known)
    try:
        return [known.apply(r) if known else r
                for _, r in walk_machine(runner, plan, set(plan.transitions),
                                         WalkBudget(case_steps=40, cases=6))]
    finally:
        runner.close()
        adapter.shutdown()


def test_a_described_seeded_fault_shrinks_the_reachable_set_in_the_report() -> None:
    known = parse(STD_EVENT % ("", "0x80040154"), Path("faulty.toml"))
    cases = _walk(True, known)
    assert any(r.deviations == ["COM-SYNC-06"] for r in cases)
    report = build_report(_record(cases, known))
    validate_report(report)
    figures = report["coverage"]["with_deviations"]
    assert figures["features"] == 28
    assert 0 < figures["reachable"] < figures["features"]
    assert figures["covered_outside"] == 0 and figures["covered"] > 0
    assert "still reachable with the listed deviations" in report["verdict"]["headline"]
    assert "Of what the listed deviations leave reachable" in render_markdown(report)
    # Without an expectations file there is no such figure: nothing to follow.
    plain = build_report(_record(cases, None))
    assert "with_deviations" not in plain["coverage"]


def test_a_covered_transition_outside_the_reachable_set_is_flagged() -> None:
    # Expectations that describe the implementation wrongly: they say StdEvent is refused,
    # but the (fault-free) implementation made one and the run covered what lies behind it.
    wrong = parse(STD_EVENT % ("", "0x80040154"), Path("wrong.toml"))
    cases = _walk(False, None)
    assert any("StdEvent" in _kinds(set(r.covered) - {k for k in r.covered
                                                      if "CoCreateInstance" in k})
               for r in cases)
    report = build_report(_record(cases, wrong))
    validate_report(report)
    figures = report["coverage"]["with_deviations"]
    assert figures["covered_outside"] > 0 and figures["by_machine"]["event"]["covered_outside"]
    assert figures["covered_outside_keys"]
    assert "lie outside what the listed deviations leave reachable" in \
        report["verdict"]["headline"]
    assert "covered transitions lie outside it" in render_markdown(report)
