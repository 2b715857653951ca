"""The state graph: its counts, tours that cover everything, shortest paths, deadlock freedom,
adapters' restrictions, and the drawings. (The pinned counts are reported by `callgate model
check`, never a verdict: tests/test_cli_model_check.py.)"""

from __future__ import annotations

import ast
import itertools
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import networkx as nx
import pytest

from callgate.model import explorer, verify
from callgate.model.explorer import Edge, StateGraph, build_graph, shortest_path, tour
from callgate.model.explorer import paths as paths_module
from callgate.model.families import MACHINES
from callgate.model.tables.table import not_offered
from callgate.model.transitions import Composition, Machine, ModelError, reachable
from tests.test_invariants import COM, EVENT, change


def _counts(graph: StateGraph) -> dict[str, int]:
    return {"states": graph.states, "edges": graph.edge_count,
            "transitions": len(graph.transitions)}


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_machine_graphs_hold_exactly_the_reachable_states(name: str) -> None:
    graph = build_graph(MACHINES[name])
    assert set(graph.graph.nodes) == reachable(MACHINES[name])
    lean = explorer.explore_counts(MACHINES[name])
    assert (lean.states, lean.edges, lean.transitions) == tuple(_counts(graph).values())


def test_the_lean_counts_of_the_default_composition_match_its_graph() -> None:
    graph = build_graph(verify.DEFAULT_COMPOSITION)
    lean = explorer.explore_counts(verify.DEFAULT_COMPOSITION)
    assert (lean.states, lean.edges, lean.transitions) == (graph.states, graph.edge_count,
                                                           len(graph.transitions))
    assert graph.states == len(build_graph(MACHINES["com_call"]).graph) ** 2


@pytest.mark.slow
def test_the_benchmark_composition_passes_100000_states() -> None:
    figures = explorer.explore_counts(verify.LARGE_COMPOSITION)
    assert figures.states >= 100_000


def test_a_composition_is_the_product_of_its_slots() -> None:
    pair = build_graph(Composition("pair", (("a", EVENT), ("b", EVENT))))
    single = build_graph(EVENT)
    assert pair.states == single.states ** 2
    assert pair.edge_count == 2 * single.edge_count * single.states
    node = next(iter(pair.graph.nodes))
    assert "a[" in pair.describe(node) and "b[" in pair.describe(node)


def _check_paths(graph: StateGraph, paths: list[list[Edge]], starts: set[object]) -> None:
    for path in paths:
        assert path and path[0].source in starts
        for before, after in itertools.pairwise(path):
            assert before.target == after.source
        for e in path:
            assert graph.graph.has_edge(e.source, e.target, key=e.key)


@pytest.mark.parametrize("name", [*sorted(MACHINES), "default"])
def test_the_edge_tour_covers_every_edge_from_the_initial_states(name: str) -> None:
    target = verify.DEFAULT_COMPOSITION if name == "default" else MACHINES[name]
    graph = build_graph(target)
    paths = tour(graph)
    _check_paths(graph, paths, set(graph.initial))
    assert len(explorer.covered_edges(paths)) == graph.edge_count
    # No longer than the naive tour (each edge reached by its own shortest path from an initial
    # state), and within twice the edges where every state can reach every other again; a
    # machine with dead ends (rpc_pipe: a failed call) must start over after each.
    parent = paths_module.parents(graph)
    naive = sum(paths_module._depth(parent, e.source) + 1 for e in graph.edges())
    assert graph.edge_count <= explorer.tour_length(paths) <= naive
    if name != "rpc_pipe":
        assert explorer.tour_length(paths) <= 2 * graph.edge_count


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_the_transition_tour_takes_every_defined_action(name: str) -> None:
    graph = build_graph(MACHINES[name])
    paths = tour(graph, cover="transitions")
    _check_paths(graph, paths, set(graph.initial))
    assert {(e.source, e.action) for p in paths for e in p} == set(graph.transitions)
    assert explorer.tour_length(paths) <= explorer.tour_length(tour(graph))


def test_a_tour_from_one_initial_state_covers_what_it_reaches() -> None:
    graph = build_graph(COM)
    start = COM.make(factory=False)
    paths = tour(graph, [start])
    _check_paths(graph, paths, {start})
    reached = set(nx.descendants(graph.graph, start)) | {start}
    assert len(explorer.covered_edges(paths)) == sum(
        1 for e in graph.edges() if e.source in reached)
    with pytest.raises(ValueError, match="cover"):
        tour(graph, cover="everything")  # type: ignore[arg-type]


def test_shortest_paths_reach_states_and_edges_in_the_fewest_steps() -> None:
    graph = build_graph(COM)
    target = COM.make(phase="SIGNALED", out=2, cancel=False, held=False)
    path = shortest_path(graph, None, target)
    assert path[0].source in graph.initial and path[-1].target == target
    best = min(nx.shortest_path_length(graph.graph, s, target) for s in graph.initial
               if nx.has_path(graph.graph, s, target))
    assert len(path) == best
    edge = next(e for e in graph.out_edges(target) if e.op == "Finish_")
    through = shortest_path(graph, graph.initial, edge)
    assert through[-1] == edge and len(through) == best + 1
    with pytest.raises(ModelError, match="not reachable"):
        shortest_path(graph, [COM.make(factory=False)], target)


def test_summed_shortest_paths_add_each_objects_shortest_path_or_say_unknown() -> None:
    com, event = build_graph(COM), build_graph(EVENT)
    target = COM.make(phase="SIGNALED", out=2, cancel=False, held=False)
    best = min(nx.shortest_path_length(com.graph, s, target) for s in com.initial
               if nx.has_path(com.graph, s, target))
    far = max(nx.shortest_path_length(event.graph, s, t) for s in event.initial
              for t in event.graph.nodes if nx.has_path(event.graph, s, t))
    other = next(t for t in event.graph.nodes if min(
        nx.shortest_path_length(event.graph, s, t) for s in event.initial
        if nx.has_path(event.graph, s, t)) == far)
    summed = explorer.summed_shortest_paths
    assert best > 0 and far > 0
    assert summed([(com, None, {target}), (event, None, [other])]) == best + far
    assert summed([]) == 0
    # An object whose state is not one known state, or cannot be reached: no sum.
    assert summed([(com, None, {target}), (event, None, set(event.graph.nodes))]) is None
    assert summed([(com, None, {target}), (event, None, None)]) is None
    assert summed([(com, [COM.make(factory=False)], {target})]) is None


def test_allow_drops_actions_an_adapter_cannot_perform() -> None:
    full = build_graph(COM)
    graph = build_graph(COM, allow=lambda op, args: op not in ("Cancel", "TestCancel"))
    assert all(e.op not in ("Cancel", "TestCancel") for e in graph.edges())
    assert graph.states < full.states
    assert all(a.op != "Cancel" for _, a in graph.transitions)


def test_pins_keep_only_the_outcomes_they_allow() -> None:
    pins = {"event_wait_timeout_code": "RPC_E_TIMEOUT"}
    graph = build_graph(EVENT, pins=pins)
    assert graph.edge_count < build_graph(EVENT).edge_count
    assert all(dict(e.allowed.when).get("event_wait_timeout_code", "RPC_E_TIMEOUT") == "RPC_E_TIMEOUT"
               for e in graph.edges())
    assert "RPC_S_CALLPENDING" not in {e.code.split(" ")[0] for e in graph.edges()}


def test_every_reachable_state_can_reach_a_quiescent_one() -> None:
    for machine in MACHINES.values():
        graph = build_graph(machine)
        assert explorer.unquiescent_states(graph) == []
        assert explorer.sink_states(graph) == []


def _stuck_com() -> Machine:
    # The test server never signals a late call: an abandoned call stays held forever.
    return change(COM, "server_signal_late", {"orphan": True},
                  lambda r: not_offered("server_signal_late", ("COM-REL-01",), "broken",
                                        state={"orphan": True}))


def test_a_call_the_server_never_ends_is_not_deadlock_free() -> None:
    graph = build_graph(_stuck_com())
    stuck = explorer.unquiescent_states(graph)
    assert stuck and all(_stuck_com().view(s)["orphan"] for s in stuck)  # type: ignore[arg-type]
    report = verify.graph_report(graph)
    check = verify.explorer_checks(report, graph)[0]
    assert check.result.value == "counterexample"
    assert check.counterexample is not None and check.counterexample.steps


def test_dot_and_mermaid_draw_every_state_and_merge_parallel_edges() -> None:
    graph = build_graph(COM)
    dot = explorer.to_dot([graph])
    assert dot.startswith('digraph "com_call"') and dot.rstrip().endswith("}")
    assert dot.count("[label=") >= graph.states
    pairs = {(u, v) for u, v in graph.graph.edges()}
    assert dot.count(" -> ") == len(pairs)
    mermaid = explorer.to_mermaid([graph, build_graph(EVENT)])
    assert mermaid.startswith("flowchart LR") and mermaid.count("subgraph") == 2
    assert mermaid.count("-->") == len(pairs) + len({(u, v) for u, v in
                                                     build_graph(EVENT).graph.edges()})


def test_large_graphs_are_drawn_on_the_fields_their_machine_names() -> None:
    rpc = MACHINES["rpc_call"]
    graph = build_graph(rpc)
    assert graph.states > explorer.DRAW_LIMIT
    drawn = explorer.picture(graph)
    assert drawn.shown == (rpc.diagram_fields,)
    assert "drawn projected: rpc_call on phase" in drawn.note
    wider = explorer.picture(graph, fields={"rpc_call": ("phase", "server")})
    assert wider.shown == (("phase", "server"),) and len(wider.labels) > len(drawn.labels)
    assert explorer.picture(graph, full=True).shown != drawn.shown


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_model_never_imports_the_harness() -> None:
    model = Path(explorer.__file__).resolve().parent.parent
    importing = sorted(str(p.relative_to(model)) for p in model.rglob("*.py")
                       if any(n.startswith("callgate.conformance") for n in _imports(p)))
    assert importing == [], "callgate.model must not depend on callgate.conformance"


def test_svg_through_graphviz_is_valid_xml() -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed (tools/install-system-packages.sh graphviz:dot)")
    svg = explorer.render_svg(explorer.to_dot([build_graph(EVENT)]))
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")


def test_svg_without_graphviz_says_how_to_install_it() -> None:
    with pytest.raises(explorer.ToolMissing, match=r"install-system-packages\.sh graphviz:dot"):
        explorer.render_svg("digraph {}", dot="/nonexistent/dot")
