"""The Promela export and the spin engine (issue 20, item 5): on compositions both engines explore,
spin's state count, deadlocks and invariant verdicts equal the Python explorer's; broken tables,
broken couplings and false invariants are reported by both; a missing spin or a search cut short
is an error, never a pass."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import pytest
import z3

from callgate.model import coupled
from callgate.model.coupled import CrossInvariant
from callgate.model.export import engines, promela, targets
from callgate.model.families import MACHINES
from callgate.model.invariants import StateInvariant
from callgate.model.transitions import Composition, Kind, Machine, ModelError, Row

needs_spin = pytest.mark.skipif(
    shutil.which("spin") is None,
    reason="spin is not installed: Debian's `spin` package (`make system` installs it)")


def both(target: Machine | Composition, **kwargs: object
         ) -> tuple[engines.EngineResult, engines.EngineResult]:
    spin = engines.spin_engine(target, optimize=False, **kwargs)  # type: ignore[arg-type]
    python = engines.python_engine(target, **kwargs)  # type: ignore[arg-type]
    assert spin.status != "error", spin.detail
    return spin, python


def agree(spin: engines.EngineResult, python: engines.EngineResult) -> None:
    assert (spin.states, spin.deadlocks, spin.invariants, spin.status) == (
        python.states, python.deadlocks, python.invariants, python.status)
    assert spin.not_checked == python.not_checked


@needs_spin
@pytest.mark.parametrize("name", ["com_call", "rpc_order", "call_with_event", "two_call_objects"])
def test_spin_agrees_with_the_explorer(name: str) -> None:
    spin, python = both(targets.resolve(name))
    agree(spin, python)
    assert spin.status == "ok" and spin.invariants  # the model's invariants all hold
    assert set(spin.invariants.values()) == {"holds"}


def _stuck_when_released(machine: Machine) -> Machine:
    """com_call whose released call object can do nothing at all (every row that admits
    phase=RELEASED loses it, and an UNDEFINED row takes it): a deadlock the model does not have."""
    rows: list[Row] = []
    stuck: dict[str, tuple[str, ...]] = {}
    for row in machine.rows:
        guard = dict(row.guard)
        phases = guard.get("phase", frozenset(machine.fields[machine.index("phase")].domain))
        if "RELEASED" not in phases:
            rows.append(row)
            continue
        stuck.setdefault(row.op, row.cited_rules())
        if phases - {"RELEASED"}:
            guard["phase"] = phases - {"RELEASED"}
            rows.append(dataclasses.replace(row, guard=tuple(guard.items())))
    rows += [Row(op, (("phase", frozenset({"RELEASED"})),), (), Kind.UNDEFINED, (), rules,
                 "test: stuck") for op, rules in stuck.items()]
    return dataclasses.replace(machine, rows=tuple(rows))


@needs_spin
def test_a_deadlock_in_a_broken_table_is_found_by_both() -> None:
    broken = _stuck_when_released(MACHINES["com_call"])
    spin, python = both(broken)
    agree(spin, python)
    assert spin.status == "violated" and spin.deadlocks and spin.deadlocks > 0


@needs_spin
def test_a_dropped_coupling_breaks_a_cross_invariant_in_both() -> None:
    broken = coupled.uncoupled(coupled.CALL_WITH_EVENT, "begin_resets")
    invariants = [dataclasses.replace(i, composition=broken.name)
                  for i in coupled.invariants_of(coupled.CALL_WITH_EVENT)]
    spin, python = both(broken, cross_invariants=invariants)
    agree(spin, python)
    assert spin.invariants["cross.call_event.pending_not_signaled"] == "violated"


@needs_spin
def test_a_false_state_invariant_and_a_false_cross_invariant_are_violated() -> None:
    never_signalled = StateInvariant(
        "test.never_signalled", "com_call", ("COM-SRV-05",), "false on purpose",
        holds=lambda s: s["phase"] != "SIGNALED",
        formula=lambda s: z3.Not(s.is_("phase", "SIGNALED")))
    never_pending = CrossInvariant(
        "test.never_pending", coupled.CALL_WITH_EVENT.name, ("COM-SRV-05",), "false on purpose",
        when=(("event", "kind", ("ManualResetEvent",)),), then=(("call", "phase", ("IDLE",)),))
    spin, python = both(coupled.CALL_WITH_EVENT, state_invariants=[never_signalled],
                        cross_invariants=[*coupled.CROSS_INVARIANTS, never_pending])
    agree(spin, python)
    assert spin.invariants["test.never_signalled[call]"] == "violated"
    assert spin.invariants["test.never_pending"] == "violated"
    assert spin.invariants["cross.call_event.pending_not_signaled"] == "holds"


@needs_spin
def test_a_search_cut_short_is_an_error_not_a_pass() -> None:
    result = engines.spin_engine(MACHINES["com_call"], max_depth=3, optimize=False)
    assert result.status == "error" and result.states is None
    assert "did not search the whole state space" in result.detail


def test_without_spin_the_engine_says_which_package_to_install(monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    monkeypatch.setenv("PATH", "")
    result = engines.spin_engine(MACHINES["event"])
    assert result.status == "error" and result.states is None and not result.invariants
    assert "`spin` package" in result.detail
    assert not result.ok


def test_the_export_cites_rules_links_and_every_invariant() -> None:
    model = promela.export(coupled.CALL_WITH_EVENT)
    assert "link begin_resets: call.Begin_" in model.text
    assert "COM-SYNC-06" in model.text and "assert(holds_" in model.text
    planned, skipped = promela.plan_invariants(coupled.CALL_WITH_EVENT)
    assert [c.name for c in model.invariants] == [p.name for p in planned]
    assert len(skipped) == len(model.not_exported)
    assert model.initial_states == len(coupled.CALL_WITH_EVENT.initial_states())


def test_an_untranslatable_term_is_refused() -> None:
    x = z3.Int("a.x")
    assert promela.z3_to_promela(z3.Implies(x == 1, x != 2), {"a.x": "a_x"}) == \
        "(!((a_x == 1)) || (a_x != 2))"
    with pytest.raises(ModelError):
        promela.z3_to_promela(x * x == 4, {"a.x": "a_x"})
    with pytest.raises(ModelError):
        promela.z3_to_promela(x == 1, {})


def test_targets_by_name() -> None:
    assert targets.resolve("com_call") is MACHINES["com_call"]
    five = targets.resolve("com_call*5")
    assert isinstance(five, Composition) and len(five.slots) == 5
    with pytest.raises(ModelError, match="MACHINE\\*N"):
        targets.resolve("no_such_thing")


@needs_spin
def test_cli_check_with_spin_on_a_coupled_composition_agrees_with_the_explorer() -> None:
    """The acceptance of issue 20: `callgate model check --engine spin --json` on a coupled
    composition (two call objects sharing their server's fields) agrees with the explorer."""
    done = subprocess.run([sys.executable, "-m", "callgate", "model", "check", "--engine", "spin",
                           "--composition", "calls_one_server", "--json"],
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    python = engines.python_engine(coupled.CALLS_ONE_SERVER).to_json()
    assert data["engine"] == "spin" and data["status"] == "ok"
    for key in ("composition", "states", "deadlocks", "invariants", "not_checked"):
        assert data[key] == python[key], key
    assert "cross.one_server.factory" in data["invariants"]
