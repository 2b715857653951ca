"""The model's fast paths give the answers of the slow ones: `find_row` through bit sets is the
scan of every row with `Row.admits`, and a pinned step taken from the unpinned one is the step
`_step` resolves under the pins."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from callgate.model import transitions as T
from callgate.model.families import MACHINES

SMALL = ("com_call", "event", "container", "cowait", "thread_cancel")
PINS = {"call_wait_timeout_code": "RPC_S_CALLPENDING", "event_wait_timeout_code": "RPC_S_CALLPENDING",
        "cancel_after_signal": "RPC_E_CALL_COMPLETE", "new_event_state": "nonsignaled",
        "cancelled_code": "RPC_E_CALL_CANCELED", "cowait_null_handles_code": "E_INVALIDARG"}


def _scan(machine: T.Machine, state: T.State, op: str, args: T.Args) -> T.Row | None:
    fields, argmap = machine.view(state), dict(args)
    matches = [r for r in machine.rows_for(op) if r.admits(fields, argmap)]
    return matches[0] if len(matches) == 1 else None


def _states(machine: T.Machine, limit: int) -> list[T.State]:
    """At most `limit` states spread evenly over every combination of field values."""
    total = 1
    for f in machine.fields:
        total *= len(f.domain)
    return list(itertools.islice(machine.all_states(), 0, None, max(1, total // limit)))[:limit]


@pytest.mark.parametrize("name", SMALL)
def test_find_row_by_bit_sets_is_the_scan(name: str) -> None:
    machine = MACHINES[name]
    for state in _states(machine, 120):
        for op in machine.operations:
            for args in op.all_args():
                try:
                    found: T.Row | None = T._find_row(machine, state, op.name, args)
                except T.ModelError:
                    found = None
                assert found == _scan(machine, state, op.name, args), (state, op.name, args)


def test_find_row_by_bit_sets_reports_a_gap_and_an_overlap() -> None:
    machine = MACHINES["event"]
    row = machine.rows_for("Signal")[0]
    state = next(s for s in machine.all_states()
                 if row.admits(machine.view(s), {}))
    # A machine without that row has a gap there; with it twice, an overlap.
    for rows, says in (([r for r in machine.rows if r is not row], "no row covers"),
                       ([*machine.rows, row], "2 rows cover")):
        broken = dataclasses.replace(machine, rows=tuple(rows))
        with pytest.raises(T.ModelError, match=says):
            T.find_row(broken, state, "Signal", ())


@pytest.mark.parametrize("name", SMALL)
def test_a_pinned_step_from_the_unpinned_one_is_the_resolved_one(name: str) -> None:
    machine = MACHINES[name]
    for state in _states(machine, 150):
        for op in machine.operations:
            for args in op.all_args():
                try:
                    direct: object = T._step(machine, state, op.name, args, PINS)
                except T.ModelError as exc:
                    direct = str(exc)
                try:
                    derived: object = T._pinned(machine, state, op.name, args, PINS)
                except T.ModelError as exc:
                    derived = str(exc)
                assert derived == direct, (state, op.name, args)


def test_a_pin_that_excludes_an_outcome_removes_it_from_the_derived_step() -> None:
    machine = MACHINES["com_call"]
    for state in machine.all_states():
        for op in machine.operations:
            for args in op.all_args():
                try:
                    full = T.step(machine, state, op.name, args)
                except T.ModelError:
                    continue
                pinned = [a for a in full.allowed if a.when]
                if not pinned:
                    continue
                point, choice = pinned[0].when[0]
                other = next(o for w in (x.when for x in full.allowed) for p, o in w
                             if p == point and o != choice) if any(
                    p == point and o != choice for x in full.allowed for p, o in x.when) else None
                if other is None:
                    continue
                step = T.step(machine, state, op.name, args, {point: other})
                assert pinned[0] not in step.allowed
                assert all(dict(a.when).get(point, other) == other for a in step.allowed)
                return
    pytest.fail("no outcome of com_call depends on a pin")


def test_trackers_share_steps_only_under_the_same_pins() -> None:
    """A tracker looks its steps up in a memo shared by the trackers of its machine and pins:
    under other pins (given at creation or set later) it answers what `step` says for those."""
    machine = MACHINES["com_call"]
    compared = differ = 0
    for state in _states(machine, 60):
        plain, pinned = T.Tracker(machine, {}, [state]), T.Tracker(machine, PINS, [state])
        later = T.Tracker(machine, {}, [state])
        later.pins = PINS
        for op in machine.operations:
            for args in op.all_args():
                try:
                    want = T.step(machine, state, op.name, args, PINS).allowed
                    unpinned = T.step(machine, state, op.name, args).allowed
                except T.ModelError:
                    continue
                assert pinned.expected(op.name, args) == want
                assert later.expected(op.name, args) == want
                assert plain.expected(op.name, args) == unpinned
                compared += 1
                differ += want != unpinned
    assert compared > 100 and differ > 0  # the pins do change some answers


def test_a_unit_starts_with_the_garbage_collected_and_the_living_frozen() -> None:
    """`settle_heap` (at the start of every unit) collects the cycles left before it and moves
    what is alive out of the collector's way; `release_heap` (at the end of a run) gives it
    back."""
    import gc
    import weakref

    from callgate.conformance.units import release_heap, settle_heap

    class Node:
        pass

    garbage, kept = Node(), Node()
    garbage.self = garbage  # type: ignore[attr-defined]
    gone = weakref.ref(garbage)
    del garbage
    try:
        settle_heap()
        assert gone() is None
        assert gc.get_freeze_count() > 0
        assert not any(each is kept for each in gc.get_objects())  # frozen: not tracked now
    finally:
        release_heap()
    assert gc.get_freeze_count() == 0
    assert any(each is kept for each in gc.get_objects())


def test_a_frozen_base_stays_frozen_across_runs_and_the_runs_own_cycles_are_collected() -> None:
    """`freeze_base` (the mutant runs' parent, before it forks): the base stays out of every
    collection across gate runs, while each run's own cycles are still collected and never
    frozen; `thaw_base` gives the base back."""
    import gc
    import weakref

    from callgate.conformance.units import freeze_base, release_heap, settle_heap, thaw_base

    class Node:
        pass

    base = Node()
    base.me = base  # type: ignore[attr-defined]
    try:
        freeze_base()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        for _ in range(2):  # two gate runs
            run_own = Node()
            run_own.me = run_own  # type: ignore[attr-defined]
            gone = weakref.ref(run_own)
            del run_own
            settle_heap()
            assert gone() is None  # the run's cycle was collected
            assert gc.get_freeze_count() == frozen  # and nothing of the run was frozen
            release_heap()
            assert gc.get_freeze_count() == frozen  # the base is still frozen after the run
    finally:
        thaw_base()
    assert gc.get_freeze_count() == 0
    assert any(each is base for each in gc.get_objects())
