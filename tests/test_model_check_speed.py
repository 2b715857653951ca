"""What makes `callgate model check` faster must not change what it checks: obligations judged in
parts merge to the whole in order, and a memoised answer belongs to one machine and one pinning."""

from __future__ import annotations

import dataclasses

from callgate.model import verify
from callgate.model.families import MACHINES
from callgate.model.obligations import OBSERVERS
from callgate.model.obligations.core import Now, Tables
from callgate.model.obligations.rpc_handle import answers_elsewhere
from callgate.model.proofs import CheckResult


def _plain(checks: list[CheckResult]) -> list[tuple[object, ...]]:
    return [(c.name, c.result, c.detail, c.rules) for c in checks]


def test_obligations_in_two_parts_merge_to_the_whole_in_order() -> None:
    whole = verify._obligation_checks(None, "com_call")
    parts = [verify._obligation_checks(None, "com_call", i, 2) for i in range(2)]
    assert len(whole) > 2 and all(parts)
    assert _plain(verify._merged(parts)) == _plain(whole)
    assert _plain(verify._merged(parts[::-1])) != _plain(whole)  # the order is checked


def test_the_answers_memo_is_per_machine_pins_and_is_forgotten() -> None:
    machine = MACHINES["rpc_call"]
    state = machine.initial[0]
    seen = OBSERVERS["rpc_call"].start
    try:
        first = answers_elsewhere(Now(machine, state, seen, {}))
        assert answers_elsewhere(Now(machine, state, seen, {})) is first  # memoised
        # A copy with the rows of one operation gone answers differently in the same state.
        op = next(name for name, _, answer in first if any("DEFINED" in a for a in answer))
        broken = dataclasses.replace(machine, rows=tuple(r for r in machine.rows if r.op != op))
        other = answers_elsewhere(Now(broken, state, seen, {}))
        assert other != first
        assert answers_elsewhere(Now(machine, state, seen, {})) is first
    finally:
        Tables.forget()
    assert not Tables.of(machine).memo  # forgotten with the rest
    assert answers_elsewhere(Now(machine, state, seen, {})) == first
    Tables.forget()
