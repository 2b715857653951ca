"""The linearizability checker: is some sequential order of a concurrent history allowed by the model?

A history is a set of operations, each with the real time it was invoked and the real time it
returned (or `None`: its outcome is unknown because it timed out or the adapter crashed). It is
linearizable if the operations can be put in one sequential order that respects real time (an
operation that returned before another was invoked comes first) and in which every operation's
observed result is one the model allows in the state the order leads to (DESIGN.md principle 1:
the model is the sequential specification).

How the search works:

* **Partitioned per slot**, as Porcupine does: slots are independent objects in the model (their
  composition is a product, `callgate.model.transitions.Composition`), so a history is linearizable if and
  only if each slot's sub-history is, and each is searched alone.
* **Wing & Gong's search with Lowe's memoisation**: a depth-first search over which operations
  have been linearized; a configuration (the set linearized so far, the model state) that was
  already explored is never explored again. The model state is a *set* of candidate states, as the
  `Tracker` keeps it, so unobservable choices of the model do not multiply the search.
* **Model as specification**: from a state set, an operation can take effect only in the states
  where the model has it DEFINED and one of the allowed outcomes admits the observed code and
  outputs; the next state set is the union of those outcomes' next states. An operation the model
  has NOT_OFFERED (it would block) or UNDEFINED in a state cannot linearize there.
* **Unknown outcomes** are Knossos's `info` operations: they may have taken effect, with any
  outcome the model allows, at any point after their invocation, or never.
* **Timed waits** that timed out decided so at their deadline, so such an operation is given
  `not_before` (its invocation plus its timeout): it may only linearize after that. This is what
  lets a lost wake-up show: a Wait that timed out although a Signal had returned well before its
  deadline has no place in any order.
* **Answers that say a time passed** (`waited`): an accepted ICancelMethodCalls::Cancel with a
  finite ulSeconds says the server did not finish within ulSeconds of the request (COM-CANCEL-05,
  -08), so it takes effect no earlier than its invocation plus ulSeconds, even if it returned
  before that. Such an answer that came back early has no place in any order.

Verdicts: `linearizable` (with a witness order), `not_linearizable` (with the shortest
non-linearizable sub-history: the history cut at the earliest response after which no order
exists, the operations still running at the cut being allowed to have taken effect or not), and
`unknown` when the search budget ran out (reported, never counted as a pass).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from callgate.model.transitions import Args, Kind, Machine, Pins, State, Value, step

# How many configurations a search may visit per slot before it answers `unknown`.
DEFAULT_BUDGET = 200_000
# Timer slack when a timed-out wait is placed at its deadline: clocks of two threads and the
# granularity of a timed wait may disagree by this much.
DEADLINE_SLACK = 0.002

INF = float("inf")


class Linearizability(Enum):
    """The checker's verdict on a history."""

    LINEARIZABLE = "linearizable"
    NOT_LINEARIZABLE = "not_linearizable"
    UNKNOWN = "unknown"


def _word(value: Value) -> str:
    """An output value as a message shows it: true/false, not Python's True/False."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class HistoryOp:
    """One operation of a concurrent history.

    `invoked` and `returned` are times in seconds on one clock; `returned` is None when the
    outcome is unknown (the operation timed out or the adapter crashed). `not_before` is the
    earliest time the operation may take effect (a timed-out wait: its deadline). `optional`
    marks an operation whose response lies beyond the end of a cut history: it may or may not
    have taken effect, with its observed result if it did.
    """

    id: int
    slot: str
    thread: str
    op: str
    args: Args
    invoked: float
    returned: float | None
    code: int | None = None
    outputs: tuple[tuple[str, Value], ...] = ()
    not_before: float | None = None
    optional: bool = False
    # `not_before` is a time the answer itself says passed (not only when a timed wait gave
    # up): the operation takes effect no earlier, even if it returned before it.
    waited: bool = False

    @property
    def unknown(self) -> bool:
        return self.returned is None or self.code is None

    @property
    def start(self) -> float:
        """The earliest time this operation may take effect."""
        if self.not_before is None:
            return self.invoked
        if self.waited:
            return max(self.invoked, self.not_before)
        end = INF if self.returned is None else self.returned
        return min(max(self.invoked, self.not_before), end)

    def describe(self, code_name: Callable[[str, int], str] | None = None) -> str:
        """One line: thread, call and outcome; `code_name(slot, code)` names the code."""
        inner = ", ".join(f"{k}={v}" for k, v in self.args)
        result = "unknown outcome" if self.unknown or self.code is None else (
            code_name(self.slot, self.code) if code_name else f"code {self.code}")
        if self.outputs and not self.unknown:
            result += " with " + ", ".join(f"{k} {_word(v)}" for k, v in self.outputs)
        return f"{self.thread}: {self.slot}.{self.op}({inner}) -> {result}"


@dataclass(frozen=True)
class SlotVerdict:
    """The verdict on one slot's sub-history.

    `order` is a witness (the operation ids in a sequential order the model allows) when the
    verdict is linearizable; `counterexample` the shortest non-linearizable sub-history, and
    `culprit` the operation whose response made it so, when it is not; `partial` the longest
    order found before the search gave up."""

    slot: str
    verdict: Linearizability
    operations: int
    explored: int
    order: tuple[int, ...] = ()
    counterexample: tuple[HistoryOp, ...] = ()
    culprit: HistoryOp | None = None
    partial: tuple[int, ...] = ()


@dataclass(frozen=True)
class LinearizabilityResult:
    """The verdict on a whole history: the worst of its slots' verdicts."""

    verdict: Linearizability
    slots: tuple[SlotVerdict, ...]
    seconds: float
    explored: int = field(default=0)

    def failing(self) -> SlotVerdict | None:
        for slot in self.slots:
            if slot.verdict is Linearizability.NOT_LINEARIZABLE:
                return slot
        return None

    def undecided(self) -> SlotVerdict | None:
        for slot in self.slots:
            if slot.verdict is Linearizability.UNKNOWN:
                return slot
        return None

    def summary(self, code_name: Callable[[str, int], str] | None = None) -> str:
        """One line for a report; `code_name(slot, code)` names a code in the slot's numbering."""
        failing = self.failing()
        if failing is not None:
            culprit = failing.culprit.describe(code_name) if failing.culprit else "?"
            return (f"not linearizable: on slot {failing.slot} no sequential order of the "
                    f"{len(failing.counterexample)} operations up to the response of "
                    f"[{culprit}] is allowed by the model")
        undecided = self.undecided()
        if undecided is not None:
            return (f"unknown: the search on slot {undecided.slot} gave up after "
                    f"{undecided.explored} configurations (not a pass)")
        return (f"linearizable: {sum(s.operations for s in self.slots)} operations on "
                f"{len(self.slots)} slots, {self.explored} configurations explored")


class _Search:
    """Wing & Gong's depth-first search with memoisation, over one slot's operations."""

    def __init__(self, machine: Machine, pins: Pins, ops: Sequence[HistoryOp],
                 initial: frozenset[State], budget: int, order: Sequence[int] = ()) -> None:
        self.machine = machine
        # Operation ids that must take effect in this order (a race's conflicting operations,
        # `callgate.conformance.cases.parallel.orderings`); empty: no constraint.
        self.rank = {op_id: r for r, op_id in enumerate(order)}
        self.pins = dict(pins)
        self.initial = initial
        self.budget = budget
        # Required operations must all be linearized; optional ones (unknown outcome, or running
        # past a cut) may be left out.
        self.ops = sorted(ops, key=lambda o: (o.start, o.id))
        n = len(self.ops)
        self.required = [i for i in range(n) if not self._optional(self.ops[i])]
        self.optional = [i for i in range(n) if self._optional(self.ops[i])]
        self.by_end = sorted(self.required, key=lambda i: self._end(i))
        self.starts = [o.start for o in self.ops]
        self.keys = [(o.op, o.args, o.code, o.outputs, o.unknown) for o in self.ops]
        self.explored = 0
        self._apply_memo: dict[tuple[frozenset[State], int], frozenset[State]] = {}
        self.longest: tuple[int, ...] = ()

    @staticmethod
    def _optional(op: HistoryOp) -> bool:
        return op.unknown or op.optional

    def _end(self, i: int) -> float:
        returned = self.ops[i].returned
        return INF if returned is None else returned

    def apply(self, states: frozenset[State], i: int) -> frozenset[State]:
        """The states after operation i takes effect from `states` (empty: it cannot)."""
        memo_key = (states, i)
        done = self._apply_memo.get(memo_key)
        if done is not None:
            return done
        op = self.ops[i]
        outputs = dict(op.outputs)
        nxt: set[State] = set()
        for state in states:
            result = step(self.machine, state, op.op, op.args, self.pins)
            if result.kind is not Kind.DEFINED:
                continue
            for allowed in result.allowed:
                if op.unknown or (op.code is not None and allowed.admits(op.code, outputs)):
                    nxt.add(allowed.next_state)
        frozen = frozenset(nxt)
        self._apply_memo[memo_key] = frozen
        return frozen

    def run(self) -> tuple[Linearizability, tuple[int, ...]]:
        """The verdict, and a witness order (operation ids) when linearizable.

        The linearized set is kept as (c, rel, opt): every required operation before position c
        (in start order) is linearized, `rel` has a bit for each one from c on, and `opt` a bit
        per optional operation. Only a window of operations around c is ever in flight, so the
        sets stay small integers however long the history is."""
        required = self.required
        optional = self.optional
        starts = self.starts
        n_required = len(required)
        if n_required == 0:
            return Linearizability.LINEARIZABLE, ()
        position = {op: k for k, op in enumerate(required)}
        by_end = [position[i] for i in self.by_end]  # required positions, by response time
        ends = [self._end(i) for i in required]
        seen: set[tuple[int, int, int, frozenset[State]]] = set()
        path: list[int] = []
        longest = 0
        dirty = False
        # A frame: (c, rel, opt, states, e, candidates, next candidate index, how many of the
        # constrained operations are linearized). `e` is the first
        # unlinearized required operation in response order. A candidate k >= 0 is the required
        # operation at position k, and -(q + 1) the optional operation q.
        Frame = tuple[int, int, int, frozenset[State], int, list[int], int, int]
        rank = [self.rank.get(o.id, -1) for o in self.ops]
        stack: list[Frame] = []

        def done(c: int, rel: int, k: int) -> bool:
            return k < c or bool(rel >> (k - c) & 1)

        def frame(c: int, rel: int, opt: int, states: frozenset[State], e: int,
                  progress: int) -> Frame:
            while e < n_required and done(c, rel, by_end[e]):
                e += 1
            limit = ends[by_end[e]] if e < n_required else INF
            candidates = []
            j = c
            while j < n_required and starts[required[j]] <= limit:
                if not rel >> (j - c) & 1:
                    candidates.append(j)
                j += 1
            candidates.extend(-(q + 1) for q, i in enumerate(optional)
                              if not opt >> q & 1 and starts[i] <= limit)
            return c, rel, opt, states, e, candidates, 0, progress

        stack.append(frame(0, 0, 0, self.initial, 0, 0))
        while stack:
            c, rel, opt, states, e, candidates, k, progress = stack[-1]
            if e >= n_required:
                return Linearizability.LINEARIZABLE, tuple(self.ops[i].id for i in path)
            if k >= len(candidates):
                if dirty:  # backtracking from the deepest order so far: keep it
                    self.longest = tuple(self.ops[i].id for i in path)
                    dirty = False
                stack.pop()
                if path:
                    path.pop()
                continue
            stack[-1] = (c, rel, opt, states, e, candidates, k + 1, progress)
            chosen = candidates[k]
            i = required[chosen] if chosen >= 0 else optional[-chosen - 1]
            if rank[i] >= 0 and rank[i] != progress:
                continue  # a constrained operation out of its turn
            nxt = self.apply(states, i)
            if not nxt:
                continue
            new_c, new_rel, new_opt = c, rel, opt
            if chosen >= 0:
                new_rel |= 1 << (chosen - c)
                while new_rel & 1:
                    new_rel >>= 1
                    new_c += 1
            else:
                new_opt |= 1 << (-chosen - 1)
            key = (new_c, new_rel, new_opt, nxt)
            if key in seen:
                continue
            seen.add(key)
            self.explored += 1
            if self.explored > self.budget:
                return Linearizability.UNKNOWN, ()
            path.append(i)
            if len(path) > longest:
                longest, dirty = len(path), True
            stack.append(frame(new_c, new_rel, new_opt, nxt, e,
                               progress + (rank[i] >= 0)))
        return Linearizability.NOT_LINEARIZABLE, ()


def check_slot(machine: Machine, ops: Sequence[HistoryOp], initial: Iterable[State],
               pins: Pins | None = None, budget: int = DEFAULT_BUDGET,
               shrink: bool = True, order: Sequence[int] = ()) -> SlotVerdict:
    """The verdict on one slot's operations, starting from the candidate states `initial`;
    with `order`, only sequential orders in which those operation ids come in that order count."""
    start_states = frozenset(initial)
    slot = ops[0].slot if ops else ""
    search = _Search(machine, pins or {}, ops, start_states, budget, order)
    verdict, order = search.run()
    if verdict is not Linearizability.NOT_LINEARIZABLE:
        return SlotVerdict(slot, verdict, len(ops), search.explored, order=order,
                           partial=search.longest)
    explored = search.explored
    if not shrink:
        return SlotVerdict(slot, verdict, len(ops), explored, counterexample=tuple(ops),
                           partial=search.longest)
    cut, culprit, more = shortest_cut(machine, ops, start_states, pins or {}, budget)
    return SlotVerdict(slot, verdict, len(ops), explored + more, counterexample=cut,
                       culprit=culprit, partial=search.longest)


def cut_history(ops: Sequence[HistoryOp], at: float) -> list[HistoryOp]:
    """The history as it stood at time `at`: operations invoked by then; those that had not
    returned yet become optional (they may or may not have taken effect)."""
    from dataclasses import replace

    kept = []
    for op in ops:
        if op.invoked > at:
            continue
        if op.returned is not None and op.returned > at:
            op = replace(op, optional=True)
        kept.append(op)
    return kept


def shortest_cut(machine: Machine, ops: Sequence[HistoryOp], initial: frozenset[State],
                 pins: Pins, budget: int) -> tuple[tuple[HistoryOp, ...], HistoryOp | None, int]:
    """The shortest non-linearizable cut of a non-linearizable history, by bisection over its
    response times (a cut of a linearizable cut is linearizable, so the property is monotone).

    Returns the cut's operations, the operation whose response is the cut point, and how many
    configurations the bisection explored."""
    responses = sorted({o.returned for o in ops if o.returned is not None})
    explored = 0
    lo, hi = 0, len(responses) - 1  # responses[hi] is known to fail (the whole history)
    while lo < hi:
        mid = (lo + hi) // 2
        search = _Search(machine, pins, cut_history(ops, responses[mid]), initial, budget)
        verdict, _ = search.run()
        explored += search.explored
        if verdict is Linearizability.NOT_LINEARIZABLE:
            hi = mid
        else:
            lo = mid + 1  # linearizable or undecided: look later
    if not responses:
        return tuple(ops), None, explored
    at = responses[lo]
    cut = tuple(sorted(cut_history(ops, at), key=lambda o: (o.invoked, o.id)))
    culprit = next((o for o in cut if o.returned == at and not o.optional), None)
    return cut, culprit, explored


def check(ops: Sequence[HistoryOp], machines: Mapping[str, Machine],
          initial: Mapping[str, Iterable[State]], pins: Pins | None = None,
          budget: int = DEFAULT_BUDGET, shrink: bool = True,
          order: Sequence[int] = ()) -> LinearizabilityResult:
    """The verdict on a history over several slots: each slot's sub-history is checked alone.

    `machines` and `initial` map each slot to its machine and its candidate states at the start
    of the history (after a sequential prefix, the states the tracker holds). `order`: operation
    ids, all on one slot, that must take effect in that order (no constraint if empty)."""
    started = time.perf_counter()
    by_slot: dict[str, list[HistoryOp]] = {}
    for op in ops:
        if op.slot not in machines:
            raise ValueError(f"operation {op.id} is on slot {op.slot!r}, which the history does "
                             f"not declare; declared slots: {', '.join(sorted(machines))}")
        by_slot.setdefault(op.slot, []).append(op)
    constrained = set(order)
    verdicts = tuple(check_slot(machines[slot], slot_ops, initial[slot], pins, budget, shrink,
                                [i for i in order if any(o.id == i for o in slot_ops)]
                                if constrained else ())
                     for slot, slot_ops in sorted(by_slot.items()))
    found = {v.verdict for v in verdicts}
    if Linearizability.NOT_LINEARIZABLE in found:
        overall = Linearizability.NOT_LINEARIZABLE
    elif Linearizability.UNKNOWN in found:
        overall = Linearizability.UNKNOWN
    else:
        overall = Linearizability.LINEARIZABLE
    return LinearizabilityResult(overall, verdicts, time.perf_counter() - started,
                       sum(v.explored for v in verdicts))
