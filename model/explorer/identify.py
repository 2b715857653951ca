"""State identification: per-state identifying sets (Wp method) over a machine's graph, adapted
to sets of allowed outcomes.

A conformance tour that takes every transition once sees a wrong return code at once, but not a
wrong next state: an implementation that forgets a soft cancel answers every later step as the
state without it would. The W / Wp methods (Chow 1978; Fujiwara et al. 1991) close that gap:
after a transition, apply a set of input sequences that tells the state the model reached apart
from every other state of the machine.

The model is not a deterministic machine with outputs: a step allows a set of outcomes (code,
outputs, next state), and several outcomes may look the same from outside. Identification is
therefore defined by what the judge (`Tracker`) can rule out. The model believes the
implementation is in state `s`; the implementation is really in state `t` (a fault that merged
or split states). An input sequence `w` *separates* `t` from `s` when some run of `t` along `w`
produces an observation that no outcome of the states the tracker then believes in admits: an
observation that rules `s` out. Outcome specifications such as "any failure" and `E_FAIL`
*overlap* (one observation satisfies both), so a separation never counts on them being told
apart. It is *certain* when every run of `t` along `w` is ruled out (for a `t` with one outcome
per step, possible and certain coincide up to overlaps).

Separation is not symmetric: a `t` that allows a subset of `s`'s outcomes everywhere is a valid
implementation of `s`, and no sequence rules it out. Only inputs DEFINED in every state the
tracker believes in are used (the harness never sends anything else), and only the `usable` ones
(the harness leaves out waits that cost time). A step DEFINED for `s` but not for `t` predicts
nothing for `t`, so it never counts as separating.

`Identifier.identifying_set(s)` is `W_s`: sequences (at most `max_length` steps, the shortest
found first) that together separate every state the bounded search can separate from `s`;
`Identifier.unseparated(s)` lists the others. Sets are computed on first use and cached: the
masks are Python integers used as bitsets over the machine's states, so the largest machine
(rpc_call, about 1,000 states) takes milliseconds per state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from callgate.model.codes import Code
from callgate.model.explorer.graph import StateGraph
from callgate.model.transitions import (
    AnyFailure,
    AnySuccess,
    Anything,
    Args,
    CodeOf,
    Exact,
    Returns,
    State,
)

Input = tuple[str, Args]  # (operation, arguments): one input of a machine
Sequence_ = tuple[Input, ...]
Key = tuple[object, tuple[tuple[str, object], ...]]  # (code spec, outputs) of an outcome

# Concrete values tried when deciding whether two outcome specifications overlap (one observation
# satisfying both): every single value either names, plus generic success and failure values
# that no table lists, so that two ranges ("any failure", "any failure except X") overlap.
_PROBES = (0, 1, 2, 0x1234, 0x7FFF1234, 0x80001234, 0x80004005, 0x8000FFFF, 0xC0001234)


def _single(spec: object) -> list[int]:
    if isinstance(spec, Exact):
        return [spec.code.value]
    if isinstance(spec, Returns):
        return [spec.value]
    if isinstance(spec, AnyFailure):
        return [c.value for c in spec.excluding]
    if isinstance(spec, int) and not isinstance(spec, bool):
        return [spec]
    if isinstance(spec, Code):
        return [spec.value]
    return []


def _admits(spec: object, value: int) -> bool:
    if isinstance(spec, (Exact, Returns, AnyFailure, AnySuccess, Anything)):
        return spec.admits(value)
    if isinstance(spec, CodeOf):  # resolved by step(); never seen here
        return True
    return spec == value


def value_overlap(a: object, b: object) -> bool:
    """Whether one observed value can satisfy both specifications (a code spec or a plain value)."""
    spec_types = (Exact, Returns, AnyFailure, AnySuccess, Anything, CodeOf)
    if not isinstance(a, spec_types) and not isinstance(b, spec_types):
        return a == b
    return any(_admits(a, value) and _admits(b, value) for value in (*_single(a), *_single(b), *_PROBES))


def keys_overlap(a: Key, b: Key) -> bool:
    """Whether one observation (code and outputs) can satisfy both outcome keys."""
    if not value_overlap(a[0], b[0]):
        return False
    theirs = dict(b[1])
    return all(value_overlap(v, theirs[n]) for n, v in a[1] if n in theirs)


def _bits(mask: int) -> Iterator[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


@dataclass(frozen=True)
class Separation:
    """How `sequence` tells a state `t` from the state `s` the model believes in."""

    sequence: Sequence_
    certain: bool  # every run of t along the sequence is ruled out, not only some


class Identifier:
    """Identifying sets of one machine's reachable graph (see the module docstring)."""

    def __init__(self, graph: StateGraph, usable: Callable[[str, Args], bool] | None = None,
                 max_length: int = 6, exhaustive: bool = False) -> None:
        if graph.composite:
            raise ValueError("state identification works on one machine's graph, not a "
                             "composition: build the graph of the machine alone")
        self.max_length = max_length
        self.exhaustive = exhaustive
        self._refined: list[list[int]] | None = None
        self._guide: dict[tuple[int, int, int], tuple[int, ...] | None] = {}
        self.states: list[State] = sorted(graph.graph.nodes, key=repr)
        self.index = {s: i for i, s in enumerate(self.states)}
        inputs = sorted({(a.op, a.args) for _, a in graph.transitions
                         if usable is None or usable(a.op, a.args)}, key=repr)
        self.inputs: list[Input] = inputs
        position = {x: j for j, x in enumerate(inputs)}
        self._keys: dict[Key, int] = {}
        # outcomes[i][j]: the (key id, next state index) outcomes of input j in state i, or None
        # where input j is not DEFINED there.
        self.outcomes: list[list[tuple[tuple[int, int], ...] | None]] = [
            [None] * len(inputs) for _ in self.states]
        gathered: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for node, action in graph.transitions:
            j = position.get((action.op, action.args))
            if j is not None:
                gathered.setdefault((self.index[node], j), [])  # type: ignore[index]
        for edge in graph.edges():
            j = position.get((edge.op, edge.args))
            if j is None:
                continue
            key: Key = (edge.allowed.code, tuple(edge.allowed.outputs))
            k = self._keys.setdefault(key, len(self._keys))
            gathered[(self.index[edge.source], j)].append(  # type: ignore[index]
                (k, self.index[edge.target]))  # type: ignore[index]
        self._key_list = list(self._keys)
        self.defined = [0] * len(inputs)  # per input: bitset of states where it is DEFINED
        self._has_key: list[dict[int, int]] = [{} for _ in inputs]  # input -> key -> sources
        self._pre: list[dict[int, dict[int, int]]] = [{} for _ in inputs]  # key -> next -> sources
        for (i, j), outs in gathered.items():
            unique = tuple(sorted(set(outs)))
            self.outcomes[i][j] = unique
            self.defined[j] |= 1 << i
            for k, n in unique:
                self._has_key[j][k] = self._has_key[j].get(k, 0) | 1 << i
                by_next = self._pre[j].setdefault(k, {})
                by_next[n] = by_next.get(n, 0) | 1 << i
        self._overlap: dict[tuple[int, int], bool] = {}
        self._possible: dict[tuple[Sequence_, frozenset[int]], int] = {}
        self._certain: dict[tuple[Sequence_, frozenset[int]], int] = {}
        self._sets: dict[int, tuple[Sequence_, ...]] = {}  # by class
        self._left: dict[int, int] = {}  # by class: bitset of the states not separated

    # --- the judge's view --------------------------------------------------------------------

    def _overlaps(self, a: int, b: int) -> bool:
        pair = (a, b) if a <= b else (b, a)
        found = self._overlap.get(pair)
        if found is None:
            found = self._overlap[pair] = keys_overlap(self._key_list[a],
                                                       self._key_list[b])
        return found

    def _believed(self, believed: frozenset[int], j: int) -> list[tuple[int, int]] | None:
        """The outcomes of input j in every believed state; None if one does not define it."""
        found: list[tuple[int, int]] = []
        for i in believed:
            outs = self.outcomes[i][j]
            if outs is None:
                return None
            found.extend(outs)
        return found

    def _after(self, believed_outs: list[tuple[int, int]], k: int) -> frozenset[int]:
        """The states the tracker believes in after an observation matching key k."""
        return frozenset(n for kb, n in believed_outs if self._overlaps(k, kb))

    def _inputs_of(self, seq: Sequence_) -> list[int]:
        position = {x: j for j, x in enumerate(self.inputs)}
        return [position[x] for x in seq]

    def possible(self, seq: Sequence_, believed: frozenset[int]) -> int:
        """Bitset of the states t whose runs along `seq` can be ruled out when the tracker
        believes in `believed` (some run of t meets an observation no believed state admits)."""
        if not seq:
            return 0
        memo = (seq, believed)
        if memo in self._possible:
            return self._possible[memo]
        (j,), rest = self._inputs_of(seq[:1]), seq[1:]
        theirs = self._believed(believed, j)
        mask = 0
        if theirs is not None:
            for k, sources in self._has_key[j].items():
                after = self._after(theirs, k)
                if not after:
                    mask |= sources  # an observation of this kind rules every believed state out
                elif rest:
                    sub = self.possible(rest, after)
                    if sub:
                        for n, from_ in self._pre[j][k].items():
                            if sub >> n & 1:
                                mask |= from_
        self._possible[memo] = mask
        return mask

    def certain(self, seq: Sequence_, believed: frozenset[int]) -> int:
        """Bitset of the states t every run of which along `seq` is ruled out."""
        if not seq:
            return 0
        memo = (seq, believed)
        if memo in self._certain:
            return self._certain[memo]
        (j,), rest = self._inputs_of(seq[:1]), seq[1:]
        theirs = self._believed(believed, j)
        mask = 0
        if theirs is not None:
            escape = 0
            for k, by_next in self._pre[j].items():
                after = self._after(theirs, k)
                if not after:
                    continue
                sub = self.certain(rest, after) if rest else 0
                for n, from_ in by_next.items():
                    if not sub >> n & 1:
                        escape |= from_
            mask = self.defined[j] & ~escape
        self._certain[memo] = mask
        return mask

    def separation(self, s: State, t: State, seq: Sequence_) -> Separation | None:
        """How `seq` separates `t` from `s` (None if it does not)."""
        believed = frozenset({self.index[s]})
        bit = 1 << self.index[t]
        if not self.possible(seq, believed) & bit:
            return None
        return Separation(seq, bool(self.certain(seq, believed) & bit))

    # --- searching ---------------------------------------------------------------------------

    def separate(self, s: State, t: State) -> Sequence_ | None:
        """A shortest sequence (at most `max_length` inputs) separating `t` from `s`, found by
        breadth-first search over (state of t, states the tracker believes in); None if none."""
        start = (self.index[t], frozenset({self.index[s]}))
        parent: dict[tuple[int, frozenset[int]], tuple[tuple[int, frozenset[int]], int] | None]
        parent = {start: None}
        queue = deque([(start, 0)])
        while queue:
            (ti, believed), depth = queue.popleft()
            if depth >= self.max_length:
                continue
            for j in range(len(self.inputs)):
                mine = self.outcomes[ti][j]
                theirs = self._believed(believed, j) if mine is not None else None
                if mine is None or theirs is None:
                    continue
                for k, n in mine:
                    after = self._after(theirs, k)
                    if not after:
                        path = [j]
                        at = parent[(ti, believed)]
                        while at is not None:
                            path.append(at[1])
                            at = parent[at[0]]
                        return tuple(self.inputs[x] for x in reversed(path))
                    nxt = (n, after)
                    if nxt not in parent:
                        parent[nxt] = ((ti, believed), j)
                        queue.append((nxt, depth + 1))
        return None

    def _levels(self) -> list[list[int]]:
        """Moore's partition refinement on what each input shows: level d gives each state a
        class, equal for states no sequence of d inputs tells apart by outcome kinds (outcome
        keys compared as labels, an input undefined in a state as a label of its own)."""
        if self._refined is None:
            classes = [0] * len(self.states)
            levels = [classes]
            count = 1
            while len(levels) <= self.max_length:
                signatures: dict[object, int] = {}
                nxt = []
                for i, row in enumerate(self.outcomes):
                    sig = (classes[i], tuple(None if outs is None else tuple(sorted(
                        (k, classes[n]) for k, n in outs)) for outs in row))
                    nxt.append(signatures.setdefault(sig, len(signatures)))
                classes = nxt
                levels.append(classes)
                if len(signatures) == count:
                    break
                count = len(signatures)
            self._refined = levels
        return self._refined

    def _guided(self, i: int, t: int, depth: int) -> tuple[int, ...] | None:
        """A sequence of input indices separating state t from state i, following the levels of
        the refinement (None where the levels differ only by definedness or by outcomes t lacks)."""
        memo = (i, t, depth)
        if memo in self._guide:
            return self._guide[memo]
        self._guide[memo] = None  # a cycle through this pair finds nothing new
        levels = self._levels()
        found: tuple[int, ...] | None = None
        for j in range(len(self.inputs)):
            mine, theirs = self.outcomes[t][j], self.outcomes[i][j]
            if mine is None or theirs is None:
                continue
            for k, n in mine:
                after = self._after(list(theirs), k)
                if not after:
                    found = (j,)
                    break
                if depth > 1 and len(after) == 1:
                    (m,) = after
                    if levels[depth - 1][m] != levels[depth - 1][n]:
                        rest = self._guided(m, n, depth - 1)
                        if rest is not None and (found is None or len(rest) + 1 < len(found)):
                            found = (j, *rest)
            if found is not None and len(found) == 1:
                break
        self._guide[memo] = found
        return found

    def candidate(self, s: State, t: State) -> Sequence_ | None:
        """A short sequence separating `t` from `s`, guided by the refinement (fast), or by the
        breadth-first search where the refinement's levels do not lead to one."""
        i, ti = self.index[s], self.index[t]
        levels = self._levels()
        depth = next((d for d, cls in enumerate(levels) if cls[i] != cls[ti]), None)
        if depth is not None:
            found = self._guided(i, ti, len(levels) - 1)
            if found is not None:
                seq = tuple(self.inputs[j] for j in found)
                if self.possible(seq, frozenset({i})) >> ti & 1:
                    return seq
        return self.separate(s, t) if self.exhaustive else None

    def classes(self) -> list[int]:
        """Each state's class in the final refinement: states of one class answer every
        sequence alike (outcome kinds as labels), so one identifying set serves a class."""
        return self._levels()[-1]

    def identifying_set(self, s: State) -> tuple[Sequence_, ...]:
        """W_s: sequences that together separate from `s` every state found separable.

        Greedy: single inputs first, each chosen for how many states it separates; then, for each
        state still left, a short sequence separating it (which may separate others too).
        Computed once per class of the refinement (every state of a class has the same set).
        """
        classes = self.classes()
        i = self.index[s]
        if classes[i] in self._sets:
            return self._sets[classes[i]]
        members: dict[int, int] = {}
        for x, c in enumerate(classes):
            members[c] = members.get(c, 0) | 1 << x
        believed = frozenset({i})
        left = ((1 << len(self.states)) - 1) & ~members[classes[i]]
        chosen: list[Sequence_] = []
        singles = {(x,): self.possible((x,), believed) for j, x in enumerate(self.inputs)
                   if self.outcomes[i][j] is not None}
        while left and singles:
            best = max(singles, key=lambda w: (bin(singles[w] & left).count("1"), repr(w)))
            if not singles[best] & left:
                break
            chosen.append(best)
            left &= ~singles.pop(best)
        unseparated = members[classes[i]]
        for t in _bits(left):
            if not left >> t & 1:
                continue
            seq = self.candidate(s, self.states[t])
            if seq is None:
                unseparated |= members[classes[t]]
                left &= ~members[classes[t]]
                continue
            chosen.append(seq)
            left &= ~self.possible(seq, believed)
            left &= ~members[classes[t]]
        self._sets[classes[i]] = tuple(chosen)
        self._left[classes[i]] = unseparated
        return self._sets[classes[i]]

    def unseparated(self, s: State) -> frozenset[State]:
        """The states other than `s` that no sequence found separates from `s` (the states of
        its own class, and the states that allow only outcomes `s` allows too)."""
        self.identifying_set(s)
        i = self.index[s]
        return frozenset(self.states[x] for x in _bits(self._left[self.classes()[i]]) if x != i)

    def describe(self, seq: Sequence_) -> str:
        return " . ".join(f"{op}({','.join(f'{k}={v}' for k, v in args)})" for op, args in seq)

