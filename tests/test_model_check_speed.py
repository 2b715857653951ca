"""What makes `callgate model check` faster must not change what it checks: obligations judged in
parts merge to the whole in order, a memoised answer belongs to one machine and one pinning, the
one walk for every pinning and the `Reach` closure over bits answer as one walk and one closure
per pinning did (on the call object's table and its mutants), and the pins of compositions of
independent machines are checked against the products of their machines' pins."""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from callgate.model import verify
from callgate.model.families import MACHINES
from callgate.model.mutants import catalogue as mutant_catalogue
from callgate.model.obligations import ALL, OBSERVERS, checker
from callgate.model.obligations.core import Now, Reach, Tables, compatible
from callgate.model.obligations.rpc_handle import answers_elsewhere
from callgate.model.proofs import CheckResult, Result
from callgate.model.transitions import Machine, ModelError


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


# --- every pinning in one walk, Reach over bits: the same answers as one walk per pinning ---


def _walk_per_pinning(graph: checker.Graph, pins: Mapping[str, str]) -> dict[checker.Node, int]:
    """The depths one pinning reaches, walked on its own (the checker's former way)."""
    depth: dict[checker.Node, int] = {}
    queue: deque[checker.Node] = deque()
    for state in graph.machine.initial:
        if (state, 0) not in depth:
            depth[(state, 0)] = 0
            queue.append((state, 0))
    while queue:
        node = queue.popleft()
        for target, when, _, _ in graph.forward[node]:
            if target not in depth and compatible(when, pins):
                depth[target] = depth[node] + 1
                queue.append(target)
    return depth


def _reach_per_pinning(graph: checker.Graph, check: Reach) -> tuple[bool, object]:
    """A `Reach` judged once per pinning with its own backward closure (the former way):
    whether it applied, and its breach as (node, pins). Run after the checker judged it: its
    predecessors, read per pinning, must be the closure's."""
    def holds(predicate: Callable[[Now[Any]], bool], node: checker.Node,
              full: Mapping[str, str]) -> bool:
        leaves = checker.branches(graph, {}, lambda pins: predicate(graph.now(node, pins)))
        return any(ok and all(full[p] == c for p, c in pins.items()) for pins, ok in leaves)

    actor = {op.name: op.actor for op in graph.machine.operations}
    applied, found = False, None
    for pinned in graph.pinned:
        depth = _walk_per_pinning(graph, pinned.pins)
        begin = [n for n in graph.order if n in depth and holds(check.start, n, pinned.pins)]
        if not begin:
            continue
        applied = True
        back: dict[checker.Node, set[checker.Node]] = {}
        for source in depth:
            for target, when, move, _ in graph.forward[source]:
                if (move.op not in check.without and (not check.actors
                                                      or actor[move.op] in check.actors)
                        and compatible(when, pinned.pins)):
                    back.setdefault(target, set()).add(source)
        # The checker's predecessors over bits, read for this pinning, are these.
        bit = 1 << graph.pinned.index(pinned)
        mine = {t: {s for s, bits in found_preds if bits & bit}
                for t, found_preds in graph.preds[(check.actors, check.without)].items()}
        assert {t: ss for t, ss in mine.items() if ss} == back
        good = {n for n in graph.order if n in depth and holds(check.goal, n, pinned.pins)}
        frontier = list(good)
        while frontier:
            for source in back.get(frontier.pop(), ()):
                if source not in good:
                    good.add(source)
                    frontier.append(source)
        for node in sorted((n for n in begin if n not in good), key=depth.__getitem__)[:1]:
            if found is None or depth[node] < found[3]:
                found = (node, dict(pinned.pins), "reach", depth[node])
    return applied, None if found is None else found[:2]


# Two catalogued mutants of the call object that break one of its `Reach` obligations.
BREAKING_REACH = ("com_call.drop_outcome.row48.1",
                  "com_call.pin_changed.row48.1.call_wait_timeout_code")


def _com_calls() -> list[Machine]:
    """The call object's table, the mutants that break a `Reach` and four others."""
    mutants = [m for m in mutant_catalogue().values() if m.machine == "com_call"]
    chosen = [m for m in mutants if m.name in BREAKING_REACH]
    chosen += [m for m in mutants if m.name not in BREAKING_REACH][:4]
    assert len(chosen) == 6
    return [MACHINES["com_call"], *(m.build() for m in chosen)]


def test_one_walk_for_all_pinnings_gives_each_pinning_its_own_depths() -> None:
    observer = OBSERVERS["com_call"]
    for machine in _com_calls()[:4]:
        try:
            graph = checker.explore(machine, observer)
            assert len(graph.pinned) > 1
            for pinned in graph.pinned:
                assert pinned.depth == _walk_per_pinning(graph, pinned.pins)
                links = checker.parents(graph, pinned)
                assert set(links) == set(pinned.depth)
                for node, link in links.items():
                    assert (link is None) == (pinned.depth[node] == 0)
                    assert link is None or pinned.depth[link[0]] + 1 == pinned.depth[node]
        finally:
            Tables.forget()


def test_reach_over_bits_judges_as_a_closure_per_pinning_does() -> None:
    reaches = [o for o in ALL if o.machine == "com_call" and isinstance(o.check, Reach)]
    assert reaches
    observer = OBSERVERS["com_call"]
    breaches = 0
    for machine in _com_calls():
        try:
            graph = checker.explore(machine, observer)
            for obligation in reaches:
                assert isinstance(obligation.check, Reach)
                judged = checker.judge(graph, obligation)
                breach = (None if judged.breach is None
                          else (judged.breach.node, dict(judged.breach.under.pins)))
                assert (judged.applied, breach) == _reach_per_pinning(graph, obligation.check), \
                    (machine.name, obligation.id)
                breaches += breach is not None
        except ModelError:
            continue  # a mutant with a gap: the explorer's walk cannot run on it
        finally:
            Tables.forget()
    assert breaches  # some mutant breaks a Reach obligation, so breaches are compared too


# --- the pinned figures of compositions of independent machines ------------------------------


def test_a_composition_of_independent_machines_has_the_product_of_their_figures() -> None:
    from callgate.model import explorer
    from callgate.model.transitions import Composition
    names = ("com_call", "event", "thread_cancel")
    comp = Composition("trio", tuple((f"s{i}", MACHINES[n]) for i, n in enumerate(names)))
    whole = explorer.explore_counts(comp)
    parts = [explorer.build_graph(MACHINES[n]) for n in names]
    assert verify.product_counts([{"states": g.states, "edges": g.edge_count,
                                   "transitions": len(g.transitions)} for g in parts]) == {
        "states": whole.states, "edges": whole.edges, "transitions": whole.transitions}


def test_a_stale_composition_pin_fails_the_products_check() -> None:
    pins = verify.pinned_counts()
    assert verify.check_pinned_products(pins).result is Result.PROVED
    stale = json.loads(json.dumps(pins))
    stale["benchmark"]["two_call_objects_and_container"]["edges"] = 6_872_256  # before 36bd75b
    found = verify.check_pinned_products(stale)
    assert found.result is Result.COUNTEREXAMPLE and found.failed
    assert "benchmark.two_call_objects_and_container" in found.detail
    moved = json.loads(json.dumps(pins))
    moved["machines"]["com_call"]["edges"] += 1  # a machine's pin moved, its compositions' not
    found = verify.check_pinned_products(moved)
    assert found.failed and "compositions.two_call_objects" in found.detail
    del moved["machines"]["com_call"]
    assert verify.check_pinned_products(moved).result is Result.ERROR
