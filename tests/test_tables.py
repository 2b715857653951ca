"""Every family table is total and deterministic, and the checks catch tables that are not."""

from __future__ import annotations

import dataclasses

import pytest

from callgate.model.codes import S_OK
from callgate.model.families import MACHINES
from callgate.model.tables.table import out, row
from callgate.model.transitions import (
    Exact,
    Kind,
    Machine,
    ModelError,
    find_row,
    reachable,
    step,
    table_problems,
)


@pytest.mark.parametrize("name", ["com_call", "event", "container"])
def test_small_tables_cover_every_field_combination_exactly_once(name: str) -> None:
    assert table_problems(MACHINES[name]) == []


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_tables_cover_every_reachable_state_exactly_once(name: str) -> None:
    machine = MACHINES[name]
    assert table_problems(machine, reachable(machine)) == []


def _without(machine: Machine, op: str, kind: Kind = Kind.DEFINED) -> Machine:
    rows = list(machine.rows)
    victim = next(r for r in rows if r.op == op and r.kind is kind)
    rows.remove(victim)
    return dataclasses.replace(machine, rows=tuple(rows))


def test_a_removed_row_is_reported_as_a_gap() -> None:
    broken = _without(MACHINES["com_call"], "Begin_")
    problems = table_problems(broken)
    assert problems and {p.kind for p in problems} == {"gap"}
    assert {p.op for p in problems} == {"Begin_"}


def test_an_extra_row_is_reported_as_an_overlap() -> None:
    machine = MACHINES["com_call"]
    extra = row("Begin_", ("COM-BEGIN-02",), out(Exact(S_OK), "accepted while pending"),
                state={"phase": "PENDING"})
    broken = dataclasses.replace(machine, rows=(*machine.rows, extra))
    problems = table_problems(broken)
    assert problems and {p.kind for p in problems} == {"overlap"}
    with pytest.raises(ModelError, match="rows cover"):
        find_row(broken, machine.make(phase="PENDING"), "Begin_", ())


def test_a_row_that_cites_no_rule_is_refused() -> None:
    machine = MACHINES["event"]
    bare = row("Signal", (), out(Exact(S_OK), "signalled"), state={"kind": "StdEvent"})
    with pytest.raises(ModelError, match="cites no rule"):
        dataclasses.replace(machine, rows=(*machine.rows, bare))


def test_a_guard_on_an_unknown_value_is_refused() -> None:
    machine = MACHINES["event"]
    bad = row("Signal", ("COM-SYNC-01",), out(Exact(S_OK), "x"), state={"kind": "Mutex"})
    with pytest.raises(ModelError, match="has no values"):
        dataclasses.replace(machine, rows=(*machine.rows, bad))


def test_step_refuses_arguments_outside_their_domain() -> None:
    machine = MACHINES["com_call"]
    with pytest.raises(ModelError, match="outside"):
        step(machine, machine.initial[0], "Wait", (("timeout", "forever"),))


def test_pins_that_exclude_every_outcome_are_an_error() -> None:
    machine = MACHINES["event"]
    state = machine.make(kind="StdEvent", signaled=False)
    with pytest.raises(ModelError, match="exclude every outcome"):
        step(machine, state, "Wait", (("timeout", "zero"),), {"event_wait_timeout_code": "nonsense"})


def test_undefined_situations_have_no_outcome() -> None:
    machine = MACHINES["com_call"]
    result = step(machine, machine.make(phase="PENDING", held=True), "Finish_")
    assert result.kind is Kind.UNDEFINED
    assert result.allowed == ()
    assert "COM-FIN-03" in result.rules
