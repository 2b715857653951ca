"""The bundled reference implementation reaches every transition the model defines for its
features: `make run` reports 100%. The machines with few transitions are walked here (about ten
seconds in all); the walks of rpc_call and container take minutes on a shared machine, so for
them (and for the run as a whole) the committed report of `make run` is read, checked against
the model's current universe for the walked machines so that a stale report does not pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callgate.conformance.cases import sequences
from callgate.conformance.cases.walk import walk_machine
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.results import Verdict
from callgate.model.families import MACHINES

REPORT = Path(__file__).resolve().parent.parent / "reports" / "reference" / "report.json"
WALKED = sorted(name for name in MACHINES if name not in ("rpc_call", "container"))


def _uncovered(names: list[str]) -> tuple[dict[str, list[str]], set[Verdict]]:
    adapter = ReferenceAdapter()
    caps = adapter.capabilities()
    plan = sequences.plan(caps, only=names)
    runner = CaseRunner(adapter, caps, step_timeout=10.0)
    left: dict[str, list[str]] = {}
    verdicts: set[Verdict] = set()
    try:
        for name in names:
            pending = set(plan.machines[name].transitions)
            verdicts |= {r.verdict for _, r in walk_machine(runner, plan.machines[name], pending)}
            left[name] = sorted(pending)
    finally:
        runner.close()
        adapter.shutdown()
    return left, verdicts


@pytest.mark.slow  # about 10 s of walks
def test_the_walk_covers_every_transition_of_the_reference() -> None:
    left, verdicts = _uncovered(WALKED)
    assert verdicts == {Verdict.PASS}
    assert left == {name: [] for name in WALKED}


@pytest.mark.slow  # plans the walked machines' graphs (several seconds on a shared machine)
def test_the_reference_report_of_make_run_covers_every_transition() -> None:
    report = json.loads(REPORT.read_text())
    coverage = report["coverage"]
    assert report["summary"]["exit_code"] == 0
    assert coverage["transitions_covered"] == coverage["transitions_total"]
    for name, counts in coverage["by_machine"].items():
        assert counts["covered"] == counts["total"], name
    # Not stale: the machines the walk checks have the totals the model gives them today.
    adapter = ReferenceAdapter()
    try:
        plan = sequences.plan(adapter.capabilities(), only=WALKED)
    finally:
        adapter.shutdown()
    assert {n: c["total"] for n, c in coverage["by_machine"].items() if n in WALKED} == \
        plan.totals()


def test_a_reference_that_never_reorders_leaves_transitions_uncovered(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: with the non-causal binding's reordering taken away (the reference's
    server entering the oldest waiting call), rpc_order's reordered states stay out of reach."""
    from callgate.conformance.implementations.reference import rpc_order

    def oldest_first(self: rpc_order.OrderedBinding) -> bool:
        if self._in_flight or not self._waiting:
            return False
        self._enter(self._waiting.pop(0))
        return True
    monkeypatch.setattr(rpc_order.OrderedBinding, "_receive", oldest_first)
    left, _ = _uncovered(["rpc_order"])
    assert left["rpc_order"] and all("True,issued," in key for key in left["rpc_order"])
