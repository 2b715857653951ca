"""State diagrams of the families for reports: the model's transitions projected on a few fields,
with the run's coverage and its failing transitions marked, drawn as inline SVG by Graphviz.

A machine's full state graph is too big to read (the RPC call has hundreds of states), so a
diagram shows one node per value of the machine's phase-like fields (`DIAGRAM_FIELDS`) and one
edge per (source, target) pair, labelled with the operations that move between them. An operation
counts as performed on an edge when the run covered at least one full transition that projects
onto it (the coverage table counts full transitions); an edge is solid when every operation on it
was performed, dashed when some were, dotted grey when none, and unperformed operations are
greyed. The transitions the model allowed at a failing step (the implementation did something
else) are drawn as separate red edges, orange for a known deviation.

Only model data reaches Graphviz: a failing step's operation and state are matched against the
model's own edges, so nothing an adapter wrote can end up in the SVG.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

from callgate.model.families import FAMILIES, MACHINES
from callgate.model.transitions import Machine, reachable, successors

# Fields a machine's diagram shows; a machine not listed shows its fields with at most 3 values.
DIAGRAM_FIELDS: dict[str, tuple[str, ...]] = {
    "com_call": ("phase",),
    "event": ("kind", "signaled"),
    "container": ("created", "sig0", "sig1"),
    "rpc_call": ("phase",),
}
DOT_TIMEOUT = 30.0

Node = tuple[str, ...]
Edge = tuple[Node, Node, str]  # source, target, operation


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
    fields: tuple[str, ...]
    edges: frozenset[Edge]
    # transition key "machine|values|op(args)" -> the projected edges it produces
    by_key: Mapping[str, frozenset[Edge]]
    # (projected source, op) -> edges
    by_source_op: Mapping[tuple[Node, str], frozenset[Edge]]


def diagram_fields(machine: Machine) -> tuple[str, ...]:
    chosen = DIAGRAM_FIELDS.get(machine.name)
    if chosen is None:
        chosen = tuple(f.name for f in machine.fields if len(f.domain) <= 3) or (
            machine.fields[0].name,)
    return chosen


@cache
def _projection(name: str) -> _Projection:
    machine = MACHINES[name]
    fields = diagram_fields(machine)
    index = [machine.index(f) for f in fields]
    by_key: dict[str, set[Edge]] = defaultdict(set)
    by_source_op: dict[tuple[Node, str], set[Edge]] = defaultdict(set)
    for state in reachable(machine):
        source = tuple(str(state[i]) for i in index)
        values = ",".join(map(str, state))
        for op, args, allowed in successors(machine, state):
            edge = (source, tuple(str(allowed.next_state[i]) for i in index), op)
            key = f"{name}|{values}|{op}({','.join(f'{k}={v}' for k, v in args)})"
            by_key[key].add(edge)
            by_source_op[(source, op)].add(edge)
    edges = frozenset(e for es in by_key.values() for e in es)
    return _Projection(fields, edges, {k: frozenset(v) for k, v in by_key.items()},
                       {k: frozenset(v) for k, v in by_source_op.items()})


def _parse_state(text: str, fields: tuple[str, ...]) -> list[Node]:
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
        for node in _parse_state(step.state, projection.fields):
            found |= projection.by_source_op.get((node, step.op), frozenset())
    return found


def _node_id(node: Node) -> str:
    return "n_" + "_".join(re.sub(r"\W", "_", v) for v in node)


def _quote(text: str) -> str:
    """A DOT string; a newline in `text` becomes a centred line break."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot_source(machine: str, covered: Iterable[str], failing: Iterable[FailingStep]) -> tuple[str, int]:
    """The DOT text of a machine's diagram, and the number of failing edges in it."""
    model = MACHINES[machine]
    projection = _projection(machine)
    covered_edges: set[Edge] = set()
    prefix = machine + "|"
    for key in covered:
        if key.startswith(prefix):
            covered_edges |= projection.by_key.get(key, frozenset())
    failing = list(failing)
    red = failing_edges(machine, (f for f in failing if not f.expected))
    orange = failing_edges(machine, (f for f in failing if f.expected)) - red
    initial = {tuple(str(s[model.index(f)]) for f in projection.fields) for s in model.initial}
    nodes = sorted({e[0] for e in projection.edges} | {e[1] for e in projection.edges} | initial)
    lines = [f"digraph {_quote(machine)} {{",
             '  graph [rankdir=LR, fontname="Helvetica", fontsize=11, nodesep=0.35, ranksep=0.6];',
             '  node [shape=box, style="rounded,filled", fillcolor="#f4f6f8", fontname="Helvetica",'
             ' fontsize=11];',
             '  edge [fontname="Helvetica", fontsize=9, arrowsize=0.7];']
    for node in nodes:
        label = "\n".join(f"{f}={v}" if len(node) > 1 else v
                           for f, v in zip(projection.fields, node, strict=True))
        extra = ", peripheries=2" if node in initial else ""
        lines.append(f"  {_node_id(node)} [label={_quote(label)}{extra}];")
    marked = red | orange
    groups: dict[tuple[Node, Node], list[str]] = defaultdict(list)
    for source, target, op in sorted(projection.edges):
        if (source, target, op) not in marked:
            groups[(source, target)].append(op)
    for (source, target), ops in sorted(groups.items()):
        hit = [(source, target, op) in covered_edges for op in ops]
        style = ('color="#333333"' if all(hit) else
                 'color="#666666", style=dashed' if any(hit) else 'color="#aaaaaa", style=dotted')
        # An HTML-like label, so uncovered operations can be greyed line by line. Operation
        # names are the model's identifiers: nothing in them needs escaping.
        label = "<br/>".join(op if h else f'<font color="#9e9e9e">{op}</font>'
                             for op, h in zip(ops, hit, strict=True))
        lines.append(f"  {_node_id(source)} -> {_node_id(target)} [label=<{label}>, {style}];")
    for edges, what, colour in ((red, "failed", "#c62828"), (orange, "known deviation", "#e65100")):
        for source, target, op in sorted(edges):
            lines.append(f"  {_node_id(source)} -> {_node_id(target)} "
                         f"[label=<<b>{op} ({what})</b>>, color=\"{colour}\", "
                         f"fontcolor=\"{colour}\", penwidth=2.4];")
    lines.append("}")
    return "\n".join(lines) + "\n", len(red)


def dot_available() -> bool:
    return shutil.which("dot") is not None


def svg_of(dot: str) -> str:
    """Graphviz's SVG for `dot`, without the XML prolog and doctype, ready to inline in HTML."""
    exe = shutil.which("dot")
    if exe is None:
        raise FileNotFoundError("Graphviz `dot` is not on PATH")
    done = subprocess.run([exe, "-Tsvg"], input=dot, capture_output=True, text=True,
                          timeout=DOT_TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"dot failed ({done.returncode}): {done.stderr.strip()[:500]}")
    svg = done.stdout
    start = svg.find("<svg")
    if start < 0:
        raise RuntimeError("dot produced no <svg> element")
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
            except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
                notes[i] = f"Graphviz could not draw this diagram: {exc}"
    return [Diagram(family, m.name, m.title, diagram_fields(m), svg, note,
                    len(_projection(m.name).edges), red)
            for (family, m), (_, red), svg, note in zip(machines, sources, svgs, notes, strict=True)]
