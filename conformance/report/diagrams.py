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
implementation did something else) are drawn as separate red edges, orange for a known deviation,
one per (source, target, colour), labelled with their number when there are more than two.

So that a reader can take a diagram in at a glance: a state's self-loop with more than two
operations is one loop labelled "N ops" (the names in its tooltip and in the list under the
diagram, `Diagram.loops`); a report draws only the machines the adapter implements; and a diagram
wider than the page is drawn top to bottom as well, the narrower kept, and never scaled below
MIN_SCALE (it scrolls instead), so its labels stay readable.

What depends on the model alone is kept between runs in the model's cache on disk
(`callgate.model.explorer.cache.cached_value`): each machine's projection (the picture and which
projected edge each of the machine's transitions is drawn on: seconds of work for the RPC call's
tens of thousands of transitions), keyed by the machine, the model's source and the code that
projects; and each SVG, keyed by its DOT text and the `dot` program that drew it, so a run whose
coverage and failures are those of an earlier run does not call Graphviz again. With the cache
off (`CALLGATE_CACHE=off`) everything is computed as before.

Only model data reaches Graphviz: a failing step's operation and state are matched against the
model's own edges, so nothing an adapter wrote can end up in the SVG.
"""

from __future__ import annotations

import functools
import hashlib
import html
import inspect
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from callgate.conformance.judge.runner import transition_key
from callgate.model.explorer import cache, cached_graph
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
__all__ = ["DOT_TIMEOUT", "Diagram", "Drawing", "FailingStep", "Loop", "diagrams", "dot_available",
           "dot_source", "drawing", "failing_edges", "svg_of"]

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
    failing_edges: int  # red: allowed by the model at a failing step
    deviation_edges: int = 0  # orange: the same at a known deviation
    loops: tuple[Loop, ...] = ()


@dataclass(frozen=True)
class _Projection:
    picture: Picture
    edges: frozenset[Edge]
    # transition key "machine|values|op(args)" (the runner's coverage unit) -> its projected edges
    by_key: Mapping[str, frozenset[Edge]]
    # (projected source, as text; op) -> edges
    by_source_op: Mapping[tuple[Values, str], frozenset[Edge]]
    # `edges` in the order they are drawn (`_edge_order`)
    ordered: tuple[Edge, ...] = ()


@functools.cache
def _code_digest() -> str:
    """What a projection depends on outside the model package: this module and the runner's
    coverage key (`transition_key`)."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(inspect.getsource(transition_key).encode())
    return digest.hexdigest()


@functools.cache
def _projection(name: str) -> _Projection:
    machine = MACHINES[name]
    return cache.cached_value("projection", (name, cache.key(machine), _code_digest()),
                              lambda: _project(name), _Projection)


def _project(name: str) -> _Projection:
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
                       {k: frozenset(v) for k, v in by_source_op.items()},
                       tuple(sorted(edges, key=_edge_order)))


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


# A self-loop with more operations than this is drawn as one loop labelled "N ops" (the names
# in its tooltip and in the list under the diagram): a node keeps one readable loop, not a wall
# of names.
LOOP_NAMES = 2
# A marked (red or orange) edge with more operations than this is labelled with their number.
MARKED_NAMES = 2


@dataclass(frozen=True)
class Loop:
    """The operations that leave a drawn node where it is, for the list under a diagram."""

    state: str
    performed: tuple[str, ...]
    not_performed: tuple[str, ...]
    failed: tuple[str, ...]
    deviations: tuple[str, ...]


@dataclass(frozen=True)
class Drawing:
    """A machine's DOT text, how many edges it marks, and its self-loops."""

    dot: str
    failing: int
    deviations: int
    loops: tuple[Loop, ...]


def _tooltip(ops: Iterable[str]) -> str:
    return 'tooltip="' + ", ".join(ops).replace("\\", "\\\\").replace('"', '\\"') + '"'


def drawing(machine: str, covered: Iterable[str], failing: Iterable[FailingStep]) -> Drawing:
    """A machine's diagram as DOT: ordinary edges styled by what the run performed, self-loops
    with more than LOOP_NAMES operations summarised, and the edges the model allowed at failing
    steps in red (orange for a known deviation), grouped per (source, target, colour)."""
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
    for source, target, op in projection.ordered:
        if (source, target, op) not in marked:
            groups[(source, target)].append(op)
    arrows = []
    loops: dict[Key, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for (source, target), ops in groups.items():  # in order: filled from the sorted edges
        hit = [(source, target, op) in covered_edges for op in ops]
        style = ('color="#333333"' if all(hit) else
                 'color="#666666", style=dashed' if any(hit) else 'color="#aaaaaa", style=dotted')
        if source == target:
            for op, h in zip(ops, hit, strict=True):
                loops[source]["performed" if h else "not_performed"].append(op)
        if source == target and len(ops) > LOOP_NAMES:
            done = sum(hit)
            label = f"{len(ops)} ops" + (f" ({done} run)" if 0 < done < len(ops) else "")
            arrows.append(Arrow(source, target, html.escape(label),
                                f"{style}, {_tooltip(ops)}"))
            continue
        # An HTML-like label, so uncovered operations can be greyed line by line.
        label = "<br/>".join(html.escape(op) if h else f'<font color="#9e9e9e">{html.escape(op)}</font>'
                             for op, h in zip(ops, hit, strict=True))
        arrows.append(Arrow(source, target, label, f"{style}, {_tooltip(ops)}"))
    for edges, what, many, colour in ((red, "failed", "failed", "#c62828"),
                                      (orange, "known deviation", "known deviations", "#e65100")):
        by_pair: dict[tuple[Key, Key], list[str]] = defaultdict(list)
        for source, target, op in sorted(edges, key=_edge_order):
            by_pair[(source, target)].append(op)
            if source == target:
                loops[source]["failed" if what == "failed" else "deviations"].append(op)
        for (source, target), ops in by_pair.items():
            label = ("<br/>".join(f"{html.escape(op)} ({what})" for op in ops)
                     if len(ops) <= MARKED_NAMES else f"{len(ops)} {many}")
            arrows.append(Arrow(source, target, f"<b>{label}</b>",
                                f'color="{colour}", fontcolor="{colour}", penwidth=2.4, '
                                f'{_tooltip(f"{op} ({what})" for op in ops)}'))
    listed = tuple(
        Loop(projection.picture.labels[node].replace("\n", " "), tuple(parts["performed"]),
             tuple(parts["not_performed"]), tuple(parts["failed"]), tuple(parts["deviations"]))
        for node, parts in sorted(loops.items(), key=lambda item: node_order(item[0])))
    return Drawing(dot_text([projection.picture], machine, [arrows], captions=False),
                   len(red), len(orange), listed)


def dot_source(machine: str, covered: Iterable[str], failing: Iterable[FailingStep]) -> tuple[str, int]:
    """The DOT text of a machine's diagram, and the number of failing (red) edges in it."""
    drawn = drawing(machine, covered, failing)
    return drawn.dot, drawn.failing


def svg_of(dot: str) -> str:
    """Graphviz's SVG for `dot`, without the XML prolog and doctype, ready to inline in HTML."""
    svg = render_svg(dot, timeout=DOT_TIMEOUT)
    start = svg.find("<svg")
    if start < 0:
        raise ModelError("dot produced no <svg> element")
    svg = svg[start:]
    # Comments carry Graphviz's banner; nothing in them is needed, and they may contain "--".
    return re.sub(r"<!--.*?-->", "", svg, flags=re.S)


# The report's content width at a 1280 px window, in Graphviz's points (3/4 px). A diagram drawn
# left to right that is wider is drawn top to bottom too, and the narrower one is kept.
PAGE_PT = 900
# The least a diagram is scaled down to fit the page (labels of 9 pt stay at 9.6 px or more); a
# diagram that would need more scrolls inside its figure.
MIN_SCALE = 0.8


def _width_pt(svg: str) -> float:
    found = re.search(r'<svg width="([0-9.]+)pt"', svg)
    return float(found.group(1)) if found else 0.0


def _dot_program() -> str:
    """Which `dot` draws: its path, size and modification time (an SVG cached from another
    Graphviz is not reused)."""
    exe = shutil.which("dot")
    if exe is None:
        return ""
    stat = os.stat(exe)
    return f"{os.path.realpath(exe)}:{stat.st_size}:{stat.st_mtime_ns}"


def cached_svg(dot: str) -> str:
    """`fitted_svg(dot)`, from the cache when the same DOT text was drawn by the same `dot`."""
    return cache.cached_value("svg", (_dot_program(), _code_digest(), dot),
                              lambda: fitted_svg(dot), str)


def fitted_svg(dot: str) -> str:
    """The SVG of `dot`, in whichever direction (left to right, else top to bottom) is narrower
    when the first is wider than the page, with a minimum width so its labels stay readable."""
    svg = svg_of(dot)
    if _width_pt(svg) > PAGE_PT and "rankdir=LR" in dot:
        other = svg_of(dot.replace("rankdir=LR", "rankdir=TB", 1))
        if _width_pt(other) < _width_pt(svg):
            svg = other
    return svg.replace("<svg ", f'<svg style="min-width: {_width_pt(svg) * 4 / 3 * MIN_SCALE:.0f}px" ',
                       1)


def diagrams(covered: Iterable[str], failing: Iterable[FailingStep], enabled: bool = True,
             machines: Iterable[str] | None = None) -> list[Diagram]:
    """A diagram per machine of every family (or of `machines` only: those the adapter
    implements). Without `dot` (or with `enabled` false) each one carries a note saying why there
    is no picture; nothing raises."""
    covered = list(covered)
    failing = list(failing)
    wanted = None if machines is None else set(machines)
    drawn = [(family, m) for family, ms in FAMILIES.items() for m in ms
             if wanted is None or m.name in wanted]
    sources = [drawing(m.name, covered, failing) for _, m in drawn]
    notes = [""] * len(drawn)
    svgs = [""] * len(drawn)
    if not drawn:
        return []
    if not enabled:
        notes = ["State diagrams were turned off for this report (--no-diagrams)."] * len(drawn)
    elif not dot_available():
        notes = ["Graphviz `dot` was not found on PATH, so this diagram is missing. Install "
                 "Graphviz (`make system`, or the Debian package graphviz) and render the report "
                 "again with `callgate report --from DIR/results.jsonl --out DIR`."] * len(drawn)
    else:
        with ThreadPoolExecutor(max_workers=len(drawn)) as pool:
            futures = [pool.submit(cached_svg, source.dot) for source in sources]
        for i, future in enumerate(futures):
            try:
                svgs[i] = future.result()
            except (OSError, ToolMissing, ModelError) as exc:
                notes[i] = f"Graphviz could not draw this diagram: {exc}"
    return [Diagram(family, m.name, m.title, _projection(m.name).picture.shown[0], svg, note,
                    len(_projection(m.name).edges), source.failing, source.deviations,
                    source.loops)
            for (family, m), source, svg, note in zip(drawn, sources, svgs, notes, strict=True)]
