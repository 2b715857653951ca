"""Drawings of state graphs, the project's one diagram pipeline: projection on the fields a
machine's diagram shows (`Machine.diagram_fields`), Graphviz DOT and Mermaid text, and SVG
through Graphviz `dot`.

`callgate model graph` draws with it as it is; the conformance report's diagrams
(`callgate.conformance.report.diagrams`) draw the same pictures with their own `Arrow`s, which
carry a run's coverage and failures. Nothing here knows about runs.

A graph of at most `DRAW_LIMIT` states is drawn in full (the fields that vary across it); a
larger one, or any when `fields` is given, is drawn projected: one node per value of the shown
fields, one arrow per pair of nodes, labelled with the operations that move between them.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from callgate.model.explorer.graph import Node, StateGraph
from callgate.model.transitions import ModelError, State, Value

# The full drawing of rpc_call's hundreds of states takes Graphviz minutes and nobody can read it.
DRAW_LIMIT = 100

Key = tuple[tuple[Value, ...], ...]  # a drawn node: per slot, the values of the fields shown


class ToolMissing(Exception):
    """An external program (Graphviz `dot`) is not installed."""


def _project(indices: tuple[tuple[int, ...], ...], composite: bool, node: Node) -> Key:
    states: tuple[State, ...] = node if composite else (node,)  # type: ignore[assignment]
    return tuple(tuple(state[i] for i in shown) for shown, state in zip(indices, states, strict=True))


@dataclass(frozen=True)
class Picture:
    """A graph as drawn: states grouped by the fields shown, parallel edges merged."""

    name: str
    shown: tuple[tuple[str, ...], ...]  # per slot, the names of the fields drawn
    labels: dict[Key, str]
    initial: frozenset[Key]
    edges: dict[tuple[Key, Key], list[str]]  # (source, target) -> the operations, sorted
    note: str
    composite: bool = False
    indices: tuple[tuple[int, ...], ...] = field(default=(), repr=False)  # `shown`, by position

    def key(self, node: Node) -> Key:
        """The drawn node a state of the graph belongs to."""
        return _project(self.indices, self.composite, node)


@dataclass(frozen=True)
class Arrow:
    """One arrow of a DOT drawing: a Graphviz HTML-like label (markup, without the enclosing
    angle brackets) and further DOT attributes ('color="#333333", style=dashed')."""

    source: Key
    target: Key
    label: str
    attributes: str = ""


def _varying_fields(graph: StateGraph) -> list[list[int]]:
    """Per slot, the indices of fields that take more than one value in the graph."""
    result = []
    for position, (_, machine) in enumerate(graph.slots):
        values: list[set[object]] = [set() for _ in machine.fields]
        for node in graph.graph.nodes:
            for i, v in enumerate(graph.slot_states(node)[position]):
                values[i].add(v)
        result.append([i for i, vs in enumerate(values) if len(vs) > 1] or [0])
    return result


def _node_text(parts: list[str]) -> list[str]:
    """The lines of a node's label: a field a line, or three a line when there are more than
    three (a full drawing's boxes stay readable)."""
    if len(parts) <= 3:
        return parts
    return [" ".join(parts[j:j + 3]) for j in range(0, len(parts), 3)]


def picture(graph: StateGraph, fields: Mapping[str, Sequence[str]] | None = None,
            full: bool = False) -> Picture:
    """What to draw: every state (the fields that vary), or, for a graph over `DRAW_LIMIT` states
    or whenever `fields` is given (unless `full`), states projected per machine on `fields[name]`
    (default: each machine's `diagram_fields`; a machine without any keeps its varying fields)."""
    shown = _varying_fields(graph)
    chosen = ({m.name: m.diagram_fields for _, m in graph.slots} if fields is None
              else dict(fields))
    projected: list[str] = []
    if not full and (fields is not None or graph.states > DRAW_LIMIT):
        for position, (_, machine) in enumerate(graph.slots):
            wanted = tuple(chosen.get(machine.name, ()))
            if wanted:
                shown[position] = [machine.index(f) for f in wanted]
                projected.append(f"{machine.name} on {', '.join(wanted)}")
    indices = tuple(tuple(each) for each in shown)
    names = tuple(tuple(machine.fields[i].name for i in each)
                  for each, (_, machine) in zip(indices, graph.slots, strict=True))

    # Each node's drawn node, once (an edge's ends are looked up many times over).
    keys = {node: _project(indices, graph.composite, node) for node in graph.graph.nodes}
    key = keys.__getitem__

    labels: dict[Key, str] = {}
    for node in graph.graph.nodes:
        k = key(node)
        if k in labels:
            continue
        lines = []
        for (slot, _), slot_names, values in zip(graph.slots, names, k, strict=True):
            parts = [f"{n}={v}" for n, v in zip(slot_names, values, strict=True)]
            if graph.composite:
                lines.append(f"{slot}: " + " ".join(parts))
            elif len(parts) == 1:
                lines.append(str(values[0]))
            else:
                lines += _node_text(parts)
        labels[k] = "\n".join(lines)
    merged: dict[tuple[Key, Key], set[str]] = {}
    for e in graph.edges():
        name = f"{e.slot}.{e.op}" if graph.composite else e.op
        merged.setdefault((key(e.source), key(e.target)), set()).add(name)
    note = f"{graph.states} states, {graph.edge_count} edges"
    if projected:
        note += "; drawn projected: " + "; ".join(projected)
    return Picture(graph.name, names, labels, frozenset(key(n) for n in graph.initial),
                   {k: sorted(v) for k, v in merged.items()}, note, graph.composite, indices)


def node_label(graph: StateGraph, node: Node) -> str:
    """The fields of a state that vary across the graph, one slot per line."""
    shown = _varying_fields(graph)
    lines = []
    for position, ((slot, machine), state) in enumerate(
            zip(graph.slots, graph.slot_states(node), strict=True)):
        text = " ".join(f"{machine.fields[i].name}={state[i]}" for i in shown[position])
        lines.append(f"{slot}: {text}" if graph.composite else text)
    return "\n".join(lines)


# --- DOT ------------------------------------------------------------------------------------


def node_order(key: Key) -> tuple[str, ...]:
    """A drawn node's place in a drawing (Graphviz lays nodes out in the order it reads them)."""
    return tuple(str(v) for values in key for v in values)


def plain_arrows(drawn: Picture) -> list[Arrow]:
    """A picture's plain arrows: one per pair of nodes, its operations a line each."""
    pairs = sorted(drawn.edges, key=lambda pair: (node_order(pair[0]), node_order(pair[1])))
    return [Arrow(u, v, "<br/>".join(html.escape(op) for op in drawn.edges[(u, v)]))
            for u, v in pairs]


def _quote(text: str) -> str:
    """A DOT string; a newline in `text` becomes a centred line break."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _node_ids(drawn: Picture, prefix: str) -> dict[Key, str]:
    """Node names from the values drawn (Graphviz shows them as tooltips), made unique."""
    ids: dict[Key, str] = {}
    taken: set[str] = set()
    for k in sorted(drawn.labels, key=node_order):
        base = prefix + "n_" + "_".join(re.sub(r"\W", "_", v) for v in node_order(k))
        ident, n = base, 1
        while ident in taken:
            n += 1
            ident = f"{base}_{n}"
        taken.add(ident)
        ids[k] = ident
    return ids


def dot_text(pictures: Sequence[Picture], title: str = "",
             drawn_arrows: Sequence[Sequence[Arrow]] | None = None, captions: bool = True) -> str:
    """Graphviz DOT of one or more pictures (a cluster each, when there are several).

    `drawn_arrows`, one list per picture, replaces the pictures' `plain_arrows`; `captions` labels
    each picture with its name, size and projection.
    """
    lines = [f"digraph {_quote(title or pictures[0].name)} {{",
             '  graph [rankdir=LR, fontname="Helvetica", fontsize=11, nodesep=0.35, ranksep=0.6];',
             '  node [shape=box, style="rounded,filled", fillcolor="#f4f6f8", fontname="Helvetica",'
             ' fontsize=11];',
             '  edge [fontname="Helvetica", fontsize=9, arrowsize=0.7];']
    several = len(pictures) > 1
    indent = "    " if several else "  "
    for index, drawn in enumerate(pictures):
        ids = _node_ids(drawn, f"g{index}_" if several else "")
        if several:
            lines.append(f"  subgraph cluster_{index} {{")
        if several or captions:
            lines.append(f"{indent}label={_quote(drawn.name + ' (' + drawn.note + ')')};")
        for k, ident in ids.items():
            extra = ", peripheries=2" if k in drawn.initial else ""
            lines.append(f"{indent}{ident} [label={_quote(drawn.labels[k])}{extra}];")
        for arrow in (drawn_arrows[index] if drawn_arrows is not None else plain_arrows(drawn)):
            extra = f", {arrow.attributes}" if arrow.attributes else ""
            lines.append(f"{indent}{ids[arrow.source]} -> {ids[arrow.target]} "
                         f"[label=<{arrow.label}>{extra}];")
        if several:
            lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_dot(graphs: Sequence[StateGraph], title: str = "",
           fields: Mapping[str, Sequence[str]] | None = None, full: bool = False) -> str:
    """Graphviz DOT of one or more graphs (one cluster each); see `picture` for projection."""
    return dot_text([picture(graph, fields, full) for graph in graphs], title)


# --- Mermaid --------------------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    return text.replace('"', "'").replace("\n", "<br/>").replace("|", "/")


def _edge_label(ops: list[str]) -> str:
    return ", ".join(ops[:4]) + (f" +{len(ops) - 4}" if len(ops) > 4 else "")


def to_mermaid(graphs: Sequence[StateGraph], fields: Mapping[str, Sequence[str]] | None = None,
               full: bool = False) -> str:
    """A Mermaid flowchart (for Markdown) of one or more graphs; see `picture` for projection."""
    lines = ["flowchart LR"]
    for g_index, graph in enumerate(graphs):
        drawn = picture(graph, fields, full)
        ids = {k: f"g{g_index}s{i}" for i, k in enumerate(drawn.labels)}
        indent = "    " if len(graphs) > 1 else "  "
        if len(graphs) > 1:
            lines.append(f'  subgraph g{g_index}["{_mermaid_text(drawn.name)}"]')
        for k, ident in ids.items():
            lines.append(f'{indent}{ident}["{_mermaid_text(drawn.labels[k])}"]')
        for (u, v), ops in drawn.edges.items():
            lines.append(f'{indent}{ids[u]} -->|"{_mermaid_text(_edge_label(ops))}"| {ids[v]}')
        if len(graphs) > 1:
            lines.append("  end")
    return "\n".join(lines) + "\n"


# --- SVG ------------------------------------------------------------------------------------


DOT_HINT = ("Graphviz `dot` is not installed; install it with "
            "`tools/install-system-packages.sh graphviz:dot` (Debian: apt-get install graphviz)")


def dot_available() -> bool:
    """Graphviz `dot` is on PATH."""
    return shutil.which("dot") is not None


def render_svg(dot_text: str, dot: str | None = None, timeout: float = 120.0) -> str:
    """SVG from DOT text through Graphviz `dot -Tsvg`. Raises ToolMissing without `dot`, and
    ModelError when `dot` fails or takes longer than `timeout` seconds."""
    exe = dot or shutil.which("dot")
    if exe is None:
        raise ToolMissing(DOT_HINT)
    try:
        done = subprocess.run([exe, "-Tsvg"], input=dot_text, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise ToolMissing(DOT_HINT) from exc
    except subprocess.TimeoutExpired as exc:
        raise ModelError(f"dot took more than {timeout:.0f} s to lay the graph out; draw it "
                         "projected (the default) rather than in full") from exc
    if done.returncode != 0:
        raise ModelError(f"dot failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout
