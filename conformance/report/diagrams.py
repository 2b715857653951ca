"""The run's overlay on the model's state diagrams for reports: which transitions the run
covered, and which the model allowed at a failing step; drawn by the model's one diagram
pipeline (`callgate.model.explorer.drawing`) and inlined as SVG.

The pictures are the model's: each machine's reachable graph projected on its
`Machine.diagram_fields`, one node per value of those fields and one edge per (source, target)
pair, labelled with the operations that move between them. This module only decides how each
edge looks. An operation counts as performed on an edge when the run covered at least one full
transition that projects onto it (the coverage table counts full transitions); an edge is solid
when every operation on it was performed, dashed when some were, dotted grey when none, and
unperformed operations are greyed. The transitions the model allowed at a failing step (the
implementation did something else) are drawn as separate red edges, orange for a known deviation.

Only model data reaches Graphviz: a failing step's operation and state are matched against the
model's own edges, so nothing an adapter wrote can end up in the SVG.
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

from callgate.conformance.judge.runner import transition_key
from callgate.model.explorer import cached_graph
from callgate.model.explorer.drawing import (
    Arrow,
    Key,
    Picture,
    ToolMissing,
    dot_available,
    dot_text,
    node_order,
    picture,
    render_svg,
)
from callgate.model.families import FAMILIES, MACHINES
from callgate.model.transitions import Action, ModelError

# `dot_available` is the drawing pipeline's, asked here by the report and its tests.
__all__ = ["DOT_TIMEOUT", "Diagram", "FailingStep", "diagrams", "dot_available", "dot_source",
           "failing_edges", "svg_of"]

DOT_TIMEOUT = 30.0

Edge = tuple[Key, Key, str]  # source, target, operation
Values = tuple[str, ...]  # a drawn node's values as text, as a step record writes them


@dataclass(frozen=True)
class FailingStep:
    """Where a case went wrong: the slot's machine, the state(s) before, the operation."""

    machine: str
    state: str  # StepRecord.state_before: "field=value ..." candidates joined by " | "
    op: str
    expected: bool = False  # a known deviation (expected_fail): drawn orange, not red


@dataclass(frozen=True)
class Diagram:
    """One machine's diagram: the SVG, or why there is none."""

    family: str
    machine: str
    title: str
    fields: tuple[str, ...]
    svg: str
    note: str
    edges: int
    failing_edges: int


@dataclass(frozen=True)
class _Projection:
    picture: Picture
    edges: frozenset[Edge]
    # transition key "machine|values|op(args)" (the runner's coverage unit) -> its projected edges
    by_key: Mapping[str, frozenset[Edge]]
    # (projected source, as text; op) -> edges
    by_source_op: Mapping[tuple[Values, str], frozenset[Edge]]


@cache
def _projection(name: str) -> _Projection:
    machine = MACHINES[name]
    graph = cached_graph(machine)
    drawn = picture(graph, {name: machine.diagram_fields})
    by_key: dict[str, set[Edge]] = defaultdict(set)
    by_source_op: dict[tuple[Values, str], set[Edge]] = defaultdict(set)
    keys = {node: drawn.key(node) for node in graph.graph.nodes}  # once per state
    for e in graph.edges():
        source = keys[e.source]
        edge = (source, keys[e.target], e.op)
        by_key[transition_key(name, e.source, Action(name, e.op, e.args))].add(edge)  # type: ignore[arg-type]
        by_source_op[(node_order(source), e.op)].add(edge)
    edges = frozenset(e for es in by_key.values() for e in es)
    return _Projection(drawn, edges, {k: frozenset(v) for k, v in by_key.items()},
                       {k: frozenset(v) for k, v in by_source_op.items()})


def _parse_state(text: str, fields: tuple[str, ...]) -> list[Values]:
    nodes = []
    for candidate in text.split(" | "):
        values = dict(part.split("=", 1) for part in candidate.split() if "=" in part)
        if all(f in values for f in fields):
            nodes.append(tuple(values[f] for f in fields))
    return nodes


def failing_edges(machine: str, steps: Iterable[FailingStep]) -> set[Edge]:
    """The model's edges out of each failing step's state by its operation."""
    projection = _projection(machine)
    found: set[Edge] = set()
    for step in steps:
        if step.machine != machine:
            continue
        for node in _parse_state(step.state, projection.picture.shown[0]):
            found |= projection.by_source_op.get((node, step.op), frozenset())
    return found


def _edge_order(edge: Edge) -> tuple[Values, Values, str]:
    return (node_order(edge[0]), node_order(edge[1]), edge[2])


def dot_source(machine: str, covered: Iterable[str], failing: Iterable[FailingStep]) -> tuple[str, int]:
    """The DOT text of a machine's diagram, and the number of failing edges in it."""
    projection = _projection(machine)
    covered_edges: set[Edge] = set()
    prefix = machine + "|"
    for key in covered:
        if key.startswith(prefix):
            covered_edges |= projection.by_key.get(key, frozenset())
    failing = list(failing)
    red = failing_edges(machine, (f for f in failing if not f.expected))
    orange = failing_edges(machine, (f for f in failing if f.expected)) - red
    marked = red | orange
    groups: dict[tuple[Key, Key], list[str]] = defaultdict(list)
    for source, target, op in sorted(projection.edges, key=_edge_order):
        if (source, target, op) not in marked:
            groups[(source, target)].append(op)
    arrows = []
    for (source, target), ops in groups.items():  # in order: filled from the sorted edges
        hit = [(source, target, op) in covered_edges for op in ops]
        style = ('color="#333333"' if all(hit) else
                 'color="#666666", style=dashed' if any(hit) else 'color="#aaaaaa", style=dotted')
        # An HTML-like label, so uncovered operations can be greyed line by line.
        label = "<br/>".join(html.escape(op) if h else f'<font color="#9e9e9e">{html.escape(op)}</font>'
                             for op, h in zip(ops, hit, strict=True))
        arrows.append(Arrow(source, target, label, style))
    for edges, what, colour in ((red, "failed", "#c62828"), (orange, "known deviation", "#e65100")):
        for source, target, op in sorted(edges, key=_edge_order):
            arrows.append(Arrow(source, target, f"<b>{html.escape(op)} ({what})</b>",
                                f'color="{colour}", fontcolor="{colour}", penwidth=2.4'))
    return dot_text([projection.picture], machine, [arrows], captions=False), len(red)


def svg_of(dot: str) -> str:
    """Graphviz's SVG for `dot`, without the XML prolog and doctype, ready to inline in HTML."""
    svg = render_svg(dot, timeout=DOT_TIMEOUT)
    start = svg.find("<svg")
    if start < 0:
        raise ModelError("dot produced no <svg> element")
    svg = svg[start:]
    # Comments carry Graphviz's banner; nothing in them is needed, and they may contain "--".
    return re.sub(r"<!--.*?-->", "", svg, flags=re.S)


def diagrams(covered: Iterable[str], failing: Iterable[FailingStep], enabled: bool = True
             ) -> list[Diagram]:
    """A diagram per machine of every family. Without `dot` (or with `enabled` false) each one
    carries a note saying why there is no picture; nothing raises."""
    covered = list(covered)
    failing = list(failing)
    machines = [(family, m) for family, ms in FAMILIES.items() for m in ms]
    sources = [dot_source(m.name, covered, failing) for _, m in machines]
    notes = [""] * len(machines)
    svgs = [""] * len(machines)
    if not enabled:
        notes = ["State diagrams were turned off for this report (--no-diagrams)."] * len(machines)
    elif not dot_available():
        notes = ["Graphviz `dot` was not found on PATH, so this diagram is missing. Install "
                 "Graphviz (`make system`, or the Debian package graphviz) and render the report "
                 "again with `callgate report --from DIR/results.jsonl --out DIR`."] * len(machines)
    else:
        with ThreadPoolExecutor(max_workers=len(machines)) as pool:
            futures = [pool.submit(svg_of, source) for source, _ in sources]
        for i, future in enumerate(futures):
            try:
                svgs[i] = future.result()
            except (OSError, ToolMissing, ModelError) as exc:
                notes[i] = f"Graphviz could not draw this diagram: {exc}"
    return [Diagram(family, m.name, m.title, _projection(m.name).picture.shown[0], svg, note,
                    len(_projection(m.name).edges), red)
            for (family, m), (_, red), svg, note in zip(machines, sources, svgs, notes, strict=True)]
