"""tools/deviation_reach.py: what an implementation with known deviations can still reach of the
model, on the event machine (small: 28 transitions under Wine's event features)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from callgate.conformance.expectations import parse
from callgate.conformance.results import CaseResult, StepRecord, Verdict
from callgate.model.families import MACHINES

ROOT = Path(__file__).resolve().parent.parent
FEATURES = {"sync.event", "sync.manual_reset_event", "sync.std_event", "sync.handle",
            "sync.set_event_handle"}
PINS = {"event_wait_timeout_code": "RPC_S_CALLPENDING", "new_event_state": "nonsignaled"}
EVENT = MACHINES["event"]
STD_EVENT = """
[[deviation]]
rule = "COM-SYNC-06"
verdict = "fail"
reason = "StdEvent is not registered"
[[deviation.instead]]
machine = "event"
op = "CoCreateInstance"
args = { clsid = "StdEvent" }
code = %s
"""


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deviation_reach",
                                                  ROOT / "tools" / "deviation_reach.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("deviation_reach", module)
    spec.loader.exec_module(module)
    return module


TOOL = _tool()


def _graph() -> object:
    graph = TOOL.machine_graph(EVENT, FEATURES, PINS)
    assert graph is not None
    return graph


def _kinds(keys: set[str]) -> set[str]:
    """The `kind` field of each transition's source state ('event|kind,signaled|op(args)')."""
    return {key.split("|")[1].split(",")[0] for key in keys}


def test_without_deviations_everything_under_the_features_is_reachable() -> None:
    graph = _graph()
    reached = TOOL.reach(graph, EVENT, None, set())
    assert len(reached) == len(graph.transitions) == 28  # type: ignore[attr-defined]
    assert _kinds(reached) == {"NONE", "ManualResetEvent", "StdEvent"}


def test_a_described_refusal_cuts_off_what_lies_behind_it() -> None:
    refused = parse(STD_EVENT % "0x80040154", Path("e.toml"))
    reached = TOOL.reach(_graph(), EVENT, refused, set())
    assert "StdEvent" not in _kinds(reached)
    assert "ManualResetEvent" in _kinds(reached)
    assert "event|NONE,False|CoCreateInstance(clsid=StdEvent)" in reached  # tried, refused


def test_a_described_code_the_model_allows_follows_the_model() -> None:
    # S_OK is what the model allows: the description is then no deviation, and the graph behind
    # it stays reachable (a table that cut it would make the figure claim too much).
    allowed = parse(STD_EVENT % "0", Path("e.toml"))
    assert "StdEvent" in _kinds(TOOL.reach(_graph(), EVENT, allowed, set()))


def _failed_case(case_id: str, ok: bool, failed_rules: list[str]) -> CaseResult:
    step = StepRecord("s0", "CoCreateInstance", {"clsid": "StdEvent"}, 0x80040154,
                      "REGDB_E_CLASSNOTREG", {}, [], ok, ["COM-SYNC-06"],
                      EVENT.describe(EVENT.make()))
    verdict = Verdict.PASS if ok else Verdict.EXPECTED_FAIL
    return CaseResult(case_id, "directed", "", [], verdict, 1, 0.0, trace=[step],
                      slots={"s0": "event"}, failed_rules=failed_rules)


def test_an_undescribed_failure_of_the_run_is_a_dead_end() -> None:
    cut = TOOL.dead_ends(EVENT, [_failed_case("a", False, ["COM-SYNC-06"])])
    assert cut == {(EVENT.make(), "CoCreateInstance", (("clsid", "StdEvent"),))}
    assert "StdEvent" not in _kinds(TOOL.reach(_graph(), EVENT, None, cut))


def test_a_step_that_also_succeeded_or_is_kept_open_cuts_nothing() -> None:
    both = [_failed_case("a", False, ["COM-SYNC-06"]), _failed_case("b", True, [])]
    assert TOOL.dead_ends(EVENT, both) == set()
    assert TOOL.dead_ends(EVENT, both[:1], keep_open=["COM-SYNC-06"]) == set()
