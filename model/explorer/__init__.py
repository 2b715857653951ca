"""The explorer: the reachable state graph of a machine or composition (networkx), its deadlock
freedom, paths and tours through it, and its drawings; this module re-exports their names.

The explorer is a package of one module per concern, and the harness, `callgate.model.verify`
and the tests import `callgate.model.explorer` as one name space (`explorer.build_graph`,
`explorer.tour`, ...), so the package re-exports every public name instead of sending callers to
the modules:

* `graph`: `build_graph` -> `StateGraph` (nodes are states, each edge an `Edge`: one allowed
  outcome of one action), and `explore_counts` for compositions too large to hold as a graph.
* `cache`: `cached_graph`, `build_graph` of a single machine kept on disk between runs (keyed by
  the model's source, the machine, the pins and what `allow` admits).
* `compiled`: the fast explorers of independent slots, on tables compiled into integer codes
  (`explore_compiled` sweeps codes one by one, `explore_bitset` steps sets of codes at once);
  `build_graph` is their reference (tests/test_explorer_compiled.py).
* `quiescence`: deadlock freedom (`unquiescent_states`: from every reachable state a quiescent
  one, by `Machine.is_quiescent`, is reachable) and `sink_states`.
* `paths`: `shortest_path`, `summed_shortest_paths` (over several objects), the breadth-first
  `parents`, and `tour` (Chinese postman over edges,
  or over transitions).
* `drawing`: projection on `Machine.diagram_fields`, DOT, Mermaid and SVG (through Graphviz),
  the one pipeline the conformance report's diagrams draw with too.
"""

from callgate.model.explorer.cache import cached_graph
from callgate.model.explorer.compiled import (
    Exploration,
    SlotInvariant,
    explore_bitset,
    explore_compiled,
)
from callgate.model.explorer.drawing import (
    DOT_HINT,
    DRAW_LIMIT,
    Arrow,
    Key,
    Picture,
    ToolMissing,
    dot_available,
    dot_text,
    node_label,
    picture,
    plain_arrows,
    render_svg,
    to_dot,
    to_mermaid,
)
from callgate.model.explorer.graph import (
    Allow,
    Edge,
    Figures,
    Node,
    StateGraph,
    build_graph,
    explore_counts,
)
from callgate.model.explorer.paths import (
    Cover,
    covered_edges,
    parents,
    shortest_path,
    summed_shortest_paths,
    tour,
    tour_length,
)
from callgate.model.explorer.quiescence import is_quiescent, sink_states, unquiescent_states

__all__ = [
    "DOT_HINT", "DRAW_LIMIT",
    "Allow", "Arrow", "Cover", "Edge", "Exploration", "Figures", "Key", "Node", "Picture",
    "SlotInvariant", "StateGraph", "ToolMissing",
    "build_graph", "cached_graph", "covered_edges", "dot_available", "dot_text",
    "explore_bitset", "explore_compiled", "explore_counts", "is_quiescent",
    "node_label", "parents", "picture", "plain_arrows", "render_svg", "shortest_path",
    "sink_states", "summed_shortest_paths", "to_dot", "to_mermaid", "tour", "tour_length",
    "unquiescent_states",
]
