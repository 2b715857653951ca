"""A fast explorer: the tables compiled into integer-coded transition arrays (issue 20, item 5).

`build_graph` (the reference) steps the tables at every state it meets and keeps a networkx
graph; it is the explorer for small compositions, and this module is checked against it
(tests/test_explorer_compiled.py). Here each slot's machine is stepped once per slot state,
through the same `_moves` the reference uses, and the result is compiled:

* a slot's reachable states get small integer indices, and each index gets the offsets that
  reach its distinct successors, the number of its edges (allowed outcomes) and of its DEFINED
  transitions, and whether it is quiescent;
* a state of the composition is one integer, its slots' indices in mixed radix (the first slot
  most significant), so a step of slot i from index a to b adds (b - a) * stride_i;
* the set of states seen is a `bytearray` with one byte per possible code (0 unseen, 1 waiting,
  2 explored): `bytearray.find` picks the next waiting state at C speed, and no queue of Python
  objects is held. Memory is about two bytes per possible code (forward and backward marks).

`explore_compiled(target, pins=None, allow=None, invariants=())` returns an `Exploration`:
states, edges and DEFINED transitions reachable (the reference's `Figures`), the states that
cannot reach a quiescent state (deadlock freedom: none), and each `SlotInvariant`'s verdict with
a reachable state that breaks it. An invariant names the slots it reads; it is evaluated once per
combination of those slots' indices, and a combination that breaks it is a violation only if a
reachable state holds it.

Only independent slots are compiled: a coupled composition (links, shared fields, hidden
actions) raises `ModelError` and is explored by `build_graph` (or spin).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import networkx as nx

from callgate.model.explorer.graph import Allow, Figures, _moves, _slots
from callgate.model.transitions import Composition, Machine, ModelError, Pins, State

WAITING, DONE = 1, 2
# A composition with more possible codes than this is refused (two bytes each).
MAX_CODES = 1 << 31


@dataclass(frozen=True)
class CompiledSlot:
    """One slot's machine compiled: index -> state, and per index its successor offsets
    (already multiplied by the slot's stride), predecessor offsets, edge and DEFINED counts."""

    slot: str
    machine: Machine
    states: tuple[State, ...]
    stride: int
    forward: tuple[tuple[int, ...], ...]
    backward: tuple[tuple[int, ...], ...]
    edges: tuple[int, ...]
    defined: tuple[int, ...]
    quiescent: tuple[int, ...]  # the indices of the quiescent states

    @property
    def size(self) -> int:
        return len(self.states)


@dataclass(frozen=True)
class SlotInvariant:
    """A property of every reachable state that reads the states of `slots` only:
    `holds(states)` gets their states in that order. `rules` are the rule IDs it restates."""

    name: str
    slots: tuple[str, ...]
    holds: Callable[[tuple[State, ...]], bool]
    rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """An invariant's verdict: `holds`, or a reachable state (slot states) that breaks it."""

    name: str
    holds: bool
    witness: tuple[State, ...] | None = None


@dataclass(frozen=True)
class Exploration:
    """What the compiled explorer found."""

    name: str
    states: int
    edges: int
    transitions: int
    unquiescent: int
    seconds: float
    verdicts: tuple[Verdict, ...] = ()
    # A reachable state from which no quiescent state is reachable, when there is one.
    stuck: tuple[State, ...] | None = None

    def figures(self) -> Figures:
        return Figures(self.states, self.edges, self.transitions, self.seconds)

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else float("inf")


def compile_slot(slot: str, machine: Machine, stride: int, pins: Pins,
                 allow: Allow | None = None) -> CompiledSlot:
    """The slot's states reachable from its machine's initial states, indexed in the order
    found, with their steps as offsets of `stride`."""
    states: list[State] = list(dict.fromkeys(machine.initial))
    index = {s: i for i, s in enumerate(states)}
    targets: list[list[int]] = []
    edges: list[int] = []
    defined: list[int] = []
    frontier = deque(states)
    while frontier:
        state = frontier.popleft()
        found, ok = _moves(machine, state, pins, allow)
        nexts: list[int] = []
        for _, _, _, allowed in found:
            nxt = allowed.next_state
            if nxt not in index:
                index[nxt] = len(states)
                states.append(nxt)
                frontier.append(nxt)
            nexts.append(index[nxt])
        targets.append(nexts)
        edges.append(len(found))
        defined.append(len(ok))
    preds: list[set[int]] = [set() for _ in states]
    for source, nexts in enumerate(targets):
        for target in nexts:
            preds[target].add(source)
    forward = tuple(tuple((t - s) * stride for t in dict.fromkeys(nexts) if t != s)
                    for s, nexts in enumerate(targets))
    backward = tuple(tuple((p - s) * stride for p in sorted(ps) if p != s)
                     for s, ps in enumerate(preds))
    quiescent = tuple(i for i, s in enumerate(states) if machine.is_quiescent(s))
    return CompiledSlot(slot, machine, tuple(states), stride, forward, backward, tuple(edges),
                        tuple(defined), quiescent)


def compile_target(target: Machine | Composition, pins: Pins | None = None,
                   allow: Allow | None = None) -> tuple[CompiledSlot, ...]:
    """Every slot compiled, strides in mixed radix (the last slot's stride is 1)."""
    if isinstance(target, Composition) and target.coupled:
        raise ModelError(f"composition {target.name} is coupled (links or shared fields): the "
                         "compiled explorer takes independent slots only; use build_graph")
    slots, _ = _slots(target)
    pins = dict(pins or {})
    # Sizes first (a slot's size does not depend on its stride), then the offsets.
    sizes = [len(compile_slot(slot, m, 1, pins, allow).states) for slot, m in slots]
    strides = [1] * len(slots)
    for i in range(len(slots) - 2, -1, -1):
        strides[i] = strides[i + 1] * sizes[i + 1]
    return tuple(compile_slot(slot, m, stride, pins, allow)
                 for (slot, m), stride in zip(slots, strides, strict=True))


def _code(compiled: Sequence[CompiledSlot], indices: Sequence[int]) -> int:
    return sum(c.stride * i for c, i in zip(compiled, indices, strict=True))


def _decode(compiled: Sequence[CompiledSlot], code: int) -> tuple[State, ...]:
    return tuple(c.states[code // c.stride % c.size] for c in compiled)


def _sweep_source(name: str, compiled: Sequence[CompiledSlot], guard: str) -> str:
    """The text of a sweep specialised to this layout: one loop per slot, strides and radices
    as constants (the slots' offset tables are the arguments T0, T1, ...)."""
    lines = [f"def {name}(marks, seen, {', '.join(f'T{i}' for i in range(len(compiled)))}):",
             "    find = marks.find",
             f"    pos = find({WAITING})",
             "    while pos >= 0:",
             "        while pos >= 0:",
             f"            marks[pos] = {DONE}"]
    for i, c in enumerate(compiled):
        if c.stride == 1:
            local = f"pos % {c.size}"
        elif i == 0:
            local = f"pos // {c.stride}"
        else:
            local = f"pos // {c.stride} % {c.size}"
        lines += [f"            for offset in T{i}[{local}]:",
                  "                nxt = pos + offset",
                  f"                if {guard}:",
                  f"                    marks[nxt] = {WAITING}"]
    lines += [f"            pos = find({WAITING}, pos + 1)",
              f"        pos = find({WAITING})  # states found behind the sweep"]
    return "\n".join(lines) + "\n"


def _sweep(name: str, compiled: Sequence[CompiledSlot], guard: str
           ) -> Callable[..., None]:
    namespace: dict[str, object] = {}
    exec(compile(_sweep_source(name, compiled, guard), f"<compiled {name}>", "exec"),
         namespace)
    return namespace[name]  # type: ignore[return-value]


def _forward(seen: bytearray, compiled: Sequence[CompiledSlot]) -> None:
    """Explore from the WAITING codes to every reachable one."""
    _sweep("forward", compiled, "not marks[nxt]")(seen, seen, *(c.forward for c in compiled))


def _backward(back: bytearray, seen: bytearray, compiled: Sequence[CompiledSlot]) -> None:
    """From the WAITING codes of `back`, mark every explored state that reaches one."""
    _sweep("backward", compiled, f"seen[nxt] == {DONE} and not marks[nxt]")(
        back, seen, *(c.backward for c in compiled))


def _histogram(seen: bytearray, c: CompiledSlot) -> list[int]:
    """How many explored states hold each index of slot `c`, by counting slices at C speed:
    the codes with index a are blocks of `stride` codes every `stride * size` codes, taken
    either block by block or as `stride` strided columns, whichever is fewer slices."""
    period = c.stride * c.size
    blocks = len(seen) // period
    counts = []
    for a in range(c.size):
        first = a * c.stride
        if blocks <= c.stride:
            n = sum(seen[first + k * period:first + k * period + c.stride].count(DONE)
                    for k in range(blocks))
        else:
            n = sum(seen[first + j::period].count(DONE) for j in range(c.stride))
        counts.append(n)
    return counts


def _first_difference(a: bytearray, b: bytearray) -> int:
    """The first index where two equal-length byte arrays differ (-1: nowhere)."""
    diff = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    if not diff:
        return -1
    return len(a) - (diff.bit_length() + 7) // 8


def _reached_with(seen: bytearray, compiled: Sequence[CompiledSlot], fixed: dict[int, int]
                  ) -> int:
    """A reachable code whose slots at the positions of `fixed` hold those indices (-1: none)."""
    free = [range(c.size) if p not in fixed else (fixed[p],) for p, c in enumerate(compiled)]
    for indices in itertools.product(*free):
        code = _code(compiled, indices)
        if seen[code] == DONE:
            return code
    return -1


def _verdict(invariant: SlotInvariant, seen: bytearray, compiled: Sequence[CompiledSlot],
             positions: dict[str, int]) -> Verdict:
    try:
        where = [positions[s] for s in invariant.slots]
    except KeyError as exc:
        raise ModelError(f"invariant {invariant.name}: no slot {exc.args[0]!r}") from None
    for indices in itertools.product(*(range(compiled[p].size) for p in where)):
        states = tuple(compiled[p].states[i] for p, i in zip(where, indices, strict=True))
        if invariant.holds(states):
            continue
        code = _reached_with(seen, compiled, dict(zip(where, indices, strict=True)))
        if code >= 0:
            return Verdict(invariant.name, False, _decode(compiled, code))
    return Verdict(invariant.name, True)


def _masks(compiled: Sequence[CompiledSlot], position: int, total: int) -> list[int]:
    """Per index a of the slot at `position`: the set of codes (bits of an int of `total` bits)
    whose slot holds a. Built by doubling: a block of `stride` ones every `stride * size`."""
    c = compiled[position]
    period = c.stride * c.size
    repeats = total // period
    full = (1 << total) - 1
    masks = []
    for a in range(c.size):
        bits = ((1 << c.stride) - 1) << (a * c.stride)
        done = 1
        while done < repeats:
            bits |= bits << (period * done)
            done *= 2
        masks.append(bits & full)
    return masks


def _image(bits: int, masks: Sequence[int], moves: Sequence[Sequence[int]], stride: int) -> int:
    """`bits` and every code one slot's steps reach from it, in any number of steps.

    The codes with index a, moved to index 0, are the slot's fibre at a. The fibre a reaches
    is the union of the fibres of every index that reaches it: in the slot's local graph
    (`moves[a]`: offsets in units of the stride) condensed to its strongly connected
    components, one union per component and per edge between components, in topological
    order."""
    size = len(masks)
    local = nx.DiGraph()
    local.add_nodes_from(range(size))
    local.add_edges_from((a, a + d) for a in range(size) for d in moves[a])
    condensed = nx.condensation(local)
    component = condensed.graph["mapping"]
    union = [0] * condensed.number_of_nodes()
    for a, mask in enumerate(masks):
        union[component[a]] |= (bits & mask) >> (a * stride)
    for c in nx.topological_sort(condensed):
        for before in condensed.predecessors(c):
            union[c] |= union[before]
    out = 0
    for a in range(size):
        out |= union[component[a]] << (a * stride)
    return out


def _closure(bits: int, compiled: Sequence[CompiledSlot], total: int, backward: bool) -> int:
    """Every code reachable from `bits` (or, backward, reaching it) by any interleaving of the
    slots' steps. The slots are independent, so steps of different slots commute and any path
    can be reordered slot by slot: one closure per slot, in turn, reaches the same set."""
    for p, c in enumerate(compiled):
        table = c.backward if backward else c.forward
        moves = [[o // c.stride for o in offs] for offs in table]
        bits = _image(bits, _masks(compiled, p, total), moves, c.stride)
    return bits


def _code_of(bits: int) -> int:
    """The lowest code in a non-empty set."""
    return (bits & -bits).bit_length() - 1


def explore_bitset(target: Machine | Composition, pins: Pins | None = None,
                   allow: Allow | None = None,
                   invariants: Sequence[SlotInvariant] = ()) -> Exploration:
    """The same as `explore_compiled`, with sets of codes as bits of one Python int: each slot's
    steps are applied to every state at once (shifts of masked sets), so the work grows with
    the slots' local graphs, and the cost of a set operation with the number of codes."""
    start = time.perf_counter()
    compiled = compile_target(target, pins, allow)
    total = 1
    for c in compiled:
        total *= c.size
    indices = [{s: i for i, s in enumerate(c.states)} for c in compiled]
    if isinstance(target, Composition):
        initial = [tuple(idx[s] for idx, s in zip(indices, states, strict=True))
                   for states in target.initial_states()]
    else:
        initial = [(indices[0][s],) for s in target.initial]
    bits = 0
    for start_indices in initial:
        bits |= 1 << _code(compiled, start_indices)
    reached = _closure(bits, compiled, total, backward=False)
    edges = transitions = 0
    for p, c in enumerate(compiled):
        for mask, e, d in zip(_masks(compiled, p, total), c.edges, c.defined, strict=True):
            count = (reached & mask).bit_count()
            edges += count * e
            transitions += count * d
    quiet = (1 << total) - 1  # the codes whose every slot is quiescent: one mask per slot
    for p, c in enumerate(compiled):
        slot_masks = _masks(compiled, p, total)
        either = 0
        for a in c.quiescent:
            either |= slot_masks[a]
        quiet &= either
    reaching = _closure(quiet & reached, compiled, total, backward=True) & reached
    stuck_bits = reached & ~reaching
    stuck = _decode(compiled, _code_of(stuck_bits)) if stuck_bits else None
    positions = {c.slot: p for p, c in enumerate(compiled)}
    verdicts = []
    for inv in invariants:
        try:
            where = [positions[s] for s in inv.slots]
        except KeyError as exc:
            raise ModelError(f"invariant {inv.name}: no slot {exc.args[0]!r}") from None
        masks = {p: _masks(compiled, p, total) for p in set(where)}
        verdict = Verdict(inv.name, True)
        for combo in itertools.product(*(range(compiled[p].size) for p in where)):
            if inv.holds(tuple(compiled[p].states[i] for p, i in zip(where, combo, strict=True))):
                continue
            hit = reached
            for p, i in zip(where, combo, strict=True):
                hit &= masks[p][i]
            if hit:
                verdict = Verdict(inv.name, False, _decode(compiled, _code_of(hit)))
                break
        verdicts.append(verdict)
    states = reached.bit_count()
    return Exploration(target.name, states, edges, transitions, stuck_bits.bit_count(),
                       time.perf_counter() - start, tuple(verdicts), stuck)


def explore_compiled(target: Machine | Composition, pins: Pins | None = None,
                     allow: Allow | None = None,
                     invariants: Sequence[SlotInvariant] = ()) -> Exploration:
    """Every state reachable from the initial states, the states that cannot reach a quiescent
    one, and each invariant's verdict (see the module's doc)."""
    start = time.perf_counter()
    compiled = compile_target(target, pins, allow)
    size = 1
    for c in compiled:
        size *= c.size
    if size > MAX_CODES:
        raise ModelError(f"{target.name}: {size} possible codes, over the compiled explorer's "
                         f"{MAX_CODES}")
    seen = bytearray(size)
    indices = [{s: i for i, s in enumerate(c.states)} for c in compiled]
    if isinstance(target, Composition):
        initial = [tuple(idx[s] for idx, s in zip(indices, states, strict=True))
                   for states in target.initial_states()]
    else:
        initial = [(indices[0][s],) for s in target.initial]
    for start_indices in initial:
        seen[_code(compiled, start_indices)] = WAITING
    _forward(seen, compiled)
    states = seen.count(DONE)
    edges = transitions = 0
    for c in compiled:  # each explored state's edges and DEFINED transitions, slot by slot
        for count, e, d in zip(_histogram(seen, c), c.edges, c.defined, strict=True):
            edges += count * e
            transitions += count * d
    back = bytearray(size)
    for quiet in itertools.product(*(c.quiescent for c in compiled)):
        code = _code(compiled, quiet)
        if seen[code] == DONE:
            back[code] = WAITING
    _backward(back, seen, compiled)
    reaching = back.count(DONE)
    stuck = None
    if reaching != states:
        stuck = _decode(compiled, _first_difference(seen, back))
    positions = {c.slot: p for p, c in enumerate(compiled)}
    verdicts = tuple(_verdict(inv, seen, compiled, positions) for inv in invariants)
    return Exploration(target.name, states, edges, transitions, states - reaching,
                       time.perf_counter() - start, verdicts, stuck)
