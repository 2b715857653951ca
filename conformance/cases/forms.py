"""Merged-form continuations: each documented form of an argument driven to what observes it.

Some rows of a machine differ only in one argument's documented form and lead to the same
state: an RPC call made with `u.APC.hThread` an explicit handle or NULL (RPC-CLI-NOTIFY-02), a
call the server completes in its manager routine or later from another thread
(RPC-SRV-COMPLETE-07), a call object's Wait with a zero or a finite timeout on a signalled
call (both return S_OK and record the wait). The model does not record the form, so it
merges the two into one state. The walk takes every one of these rows, but what it does next
depends on where it is heading: it may follow the call made with hThread NULL by anything at
all, and look for its notification only after a call made with an explicit handle. A runtime
that loses the APC of a NULL-thread call (Wine does: D-14) then passes. Here every form gets
the same continuations.

A *group* is found from the machine's graph: transitions from one state with the same operation
and the same other arguments, whose argument `param` takes several values (the *forms*) and
whose allowed outcomes lead to the same set of states, a set other than the source alone (a step
that leaves the state as it is changes nothing a continuation could see, and is not a group
here). Groups with the same operation, argument, forms and targets are driven once, from the
source with the shortest way from an initial state, and of groups from one state that differ
only in another argument's value (a completion's reply 1 or 2, for the thread's forms) one is
kept. The values of a magnitude class
(`callgate.conformance.cases.values`: the concrete timeouts behind "finite") are merged by the
model too; they are drawn afresh for each session, boundaries first, so the continuations of a
finite-timeout form are driven with different concrete values.

For each group, form and target, the *continuations* are driven, each in a session of its own:

* one session takes, after the form, every step out of the target that leaves it as it is (the
  looks: status queries, a wait for a notification that has not come), one after another;
* one session per path of `depth` steps out of the target that change the state (a completion,
  a cancel, the server's reply), each step followed by the *look*: every cheap operation that
  leaves the reached state as it is and tells it from a neighbour (`multi.telling`), and every
  wait the model says has something to deliver (a notification that has come).

Every form of a group gets the same continuations in the same order, so a continuation that
passes for one form and fails for another shows a deviation the model cannot see in the state.
Every step is judged by the model like any other; each case cites the rules of its steps, the
form's row among them. The work is bounded by a budget of steps per machine (`Budget.forms_steps`)
and a depth (`Budget.forms_depth`): the (operation, argument) classes take turns, one whole
group each, the class whose form is taken nearest the start first (hThread NULL right after
RpcAsyncInitializeHandle), so that it is driven before the budget is spent; the summary case
says how many of the groups' continuations were driven.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import cast

from callgate.conformance.cases import multi
from callgate.conformance.cases.sequences import SLOT, MachinePlan, config_of
from callgate.conformance.judge.perform import blocks
from callgate.conformance.judge.runner import Case, CaseRunner, LiveCase
from callgate.conformance.judge.tally import Tally, on_plan
from callgate.conformance.protocol.adapter import SlotSpec
from callgate.conformance.results import CaseResult, Verdict
from callgate.model import explorer
from callgate.model.transitions import Action, Args, Kind, Machine, State, step

# The defaults of one machine's work (the budgets set their own: conformance/budgets.py).
STEPS = 1500
DEPTH = 1


@dataclass(frozen=True)
class Group:
    """Transitions from `source` by `op` that differ only in `param` (one per form, with the
    form's full arguments) and lead to the same `targets`; `rules` are their rows' rules."""

    source: State
    op: str
    param: str
    forms: tuple[Args, ...]
    targets: tuple[State, ...]
    rules: tuple[str, ...]

    def form(self, args: Args) -> str:
        return f"{self.param}={dict(args)[self.param]}"


@dataclass(frozen=True)
class Item:
    """One continuation of a group: from `target`, the looks (`path` empty) or a path of
    state-changing steps, driven once per form."""

    group: Group
    target: State
    path: tuple[Action, ...]


_GROUPS: dict[int, tuple[MachinePlan, list[Group]]] = {}


def groups(plan: MachinePlan) -> list[Group]:
    """Every group of the machine's graph (see the module's docstring), one per (operation,
    argument, forms, targets), from the source with the shortest way from an initial state;
    found once per plan (planning the units asks, and so does each run of the unit)."""
    known = _GROUPS.get(id(plan))
    if known is None or known[0] is not plan:
        known = _GROUPS[id(plan)] = (plan, _groups(plan))
    return known[1]


def _groups(plan: MachinePlan) -> list[Group]:
    machine = plan.machine
    ends: dict[tuple[State, str, Args], set[State]] = {}
    for edge in plan.graph.edges():
        ends.setdefault((cast(State, edge.source), edge.op, edge.args), set()).add(
            cast(State, edge.target))
    depth = _depths(plan)
    found: dict[tuple[str, str, tuple[object, ...], tuple[State, ...]], Group] = {}
    # Rows of one source and operation that differ in exactly one argument, by that argument:
    # (source, op, param, the other arguments, targets) -> the forms.
    split: dict[tuple[State, str, str, Args, frozenset[State]], list[Args]] = {}
    for (source, op, args), targets in ends.items():
        if targets == {source}:
            continue
        for i, (param, _) in enumerate(args):
            rest = args[:i] + args[i + 1:]
            split.setdefault((source, op, param, rest, frozenset(targets)), []).append(args)
    for (source, op, param, _, reached), forms in split.items():
        if len(forms) < 2:
            continue
        forms = sorted(forms, key=repr)
        values = tuple(repr(dict(f)[param]) for f in forms)
        ordered = tuple(sorted(reached, key=repr))
        key = (op, param, values, ordered)
        known = found.get(key)
        if known is not None and (depth[known.source], repr(known.source)) <= (
                depth[source], repr(source)):
            continue
        rules: dict[str, None] = {}
        for args in forms:
            rules.update(dict.fromkeys(step(machine, source, op, args, plan.capabilities.pins)
                                       .rules))
        found[key] = Group(source, op, param, tuple(forms), ordered, tuple(rules))
    # Groups that differ only in another argument's value (a completion's reply 1 or 2 with the
    # thread routine or later) drive the same forms from the same state: one is kept.
    one: dict[tuple[State, str, str, tuple[object, ...]], Group] = {}
    for group in sorted(found.values(), key=repr):
        kept = tuple(dict(f)[group.param] for f in group.forms)
        one.setdefault((group.source, group.op, group.param, kept), group)
    return sorted(one.values(), key=lambda g: (g.op, g.param, depth[g.source], repr(g)))


def _depths(plan: MachinePlan) -> dict[State, int]:
    tree = explorer.parents(plan.graph)
    depth: dict[State, int] = {}

    def of(state: State) -> int:
        if state not in depth:
            edge = tree[state]
            depth[state] = 0 if edge is None else of(cast(State, edge.source)) + 1
        return depth[state]

    for state in tree:
        of(cast(State, state))
    return depth


def _prefix(plan: MachinePlan, state: State) -> tuple[State, list[tuple[Action, State]]]:
    """The start and a shortest way (action, state before it) from an initial state."""
    tree = explorer.parents(plan.graph)
    way: list[tuple[Action, State]] = []
    here = state
    while (edge := tree[here]) is not None:
        way.append((Action(SLOT, edge.op, edge.args), cast(State, edge.source)))
        here = cast(State, edge.source)
    return here, way[::-1]


class _Moves:
    """What can be taken from a state: its looks, its state-changing steps, and its
    observers (every cheap informative one, and the waits that have something to deliver)."""

    @staticmethod
    def of(plan: MachinePlan, pins: Mapping[str, str]) -> _Moves:
        """The moves of `plan` under `pins`, built once (a mutant run drives the same plan
        again and again)."""
        key = (id(plan), tuple(sorted(pins.items())))
        known = _MOVES.get(key)
        if known is None or known[0] is not plan:
            known = _MOVES[key] = (plan, _Moves(plan, pins))
        return known[1]

    def __init__(self, plan: MachinePlan, pins: Mapping[str, str]) -> None:
        self.machine: Machine = plan.machine
        self.pins = pins
        self.observer = multi.observer(plan, pins)
        self.ends: dict[State, dict[Action, set[State]]] = {}
        for edge in plan.graph.edges():
            action = Action(SLOT, edge.op, edge.args)
            if blocks(self.machine.name, action):
                continue  # may wait for ever: sent by the walk after a zero-timeout look only
            self.ends.setdefault(cast(State, edge.source), {}).setdefault(action, set()).add(
                cast(State, edge.target))

    def loops(self, state: State) -> list[Action]:
        return sorted((a for a, e in self.ends.get(state, {}).items() if e == {state}), key=repr)

    def movers(self, state: State) -> list[tuple[Action, tuple[State, ...]]]:
        return sorted(((a, tuple(sorted(e, key=repr)))
                       for a, e in self.ends.get(state, {}).items() if e != {state}),
                      key=lambda m: repr(m[0]))

    def paths(self, state: State, depth: int) -> list[tuple[Action, ...]]:
        """Every path of up to `depth` state-changing steps from `state` (a path ends early
        where a state has none), each first step's first allowed outcome followed."""
        if depth <= 0:
            return [()]
        out: list[tuple[Action, ...]] = []
        for action, targets in self.movers(state):
            rest = self.paths(targets[0], depth - 1) if len(targets) == 1 else [()]
            out += [(action, *more) for more in rest]
        return out

    def look(self, state: State) -> list[Action]:
        """The observers of `state`: each wait the model says has something to deliver (no
        allowed outcome is the empty answer 0: a notification that has come), then every cheap
        informative operation that leaves it as it is (`multi.telling`)."""
        found: list[Action] = []
        for action in self.loops(state) + [a for a, _ in self.movers(state)]:
            timed, param = self.machine.timeout_param(action.op)
            if not timed or param is not None or action in found:
                continue
            result = step(self.machine, state, action.op, action.args, self.pins)
            if result.kind is Kind.DEFINED and result.allowed and not any(
                    a.code.admits(0) for a in result.allowed):
                found.append(action)
        # The waits first: what was delivered is what a form most often changes (where an APC
        # goes), and an observer that fails first would end the session before them.
        return found + [Action(SLOT, a.op, a.args) for a in self.observer.telling(state)]


_MOVES: dict[tuple[int, tuple[tuple[str, str], ...]], tuple[MachinePlan, _Moves]] = {}


def plan_items(plan: MachinePlan, depth: int = DEPTH) -> list[Item]:
    """Every continuation of every group, in the order they are driven: the (operation,
    argument) classes take turns, one whole group each (its groups nearest an initial state
    first); the class whose first group is nearest an initial state goes first (on a tie the
    class with the fewest groups). So a budget that stops early has driven every continuation
    of the first group of every class it reached, and a form taken right after the start
    (hThread NULL on a freshly initialised handle) first of all."""
    moves = _Moves.of(plan, plan.capabilities.pins)
    depths = _depths(plan)
    classes: dict[tuple[str, str], list[Group]] = {}
    for group in groups(plan):
        classes.setdefault((group.op, group.param), []).append(group)
    order = sorted(classes.values(), key=lambda gs: (
        min(depths[g.source] for g in gs), len(gs), gs[0].op, gs[0].param))
    items: list[Item] = []
    for turn in zip_longest(*order):
        for group in turn:
            if group is None:
                continue
            for target in group.targets:
                if moves.loops(target):
                    items.append(Item(group, target, ()))
                items += [Item(group, target, path) for path in moves.paths(target, depth)
                          if path]
    return items


def forms_machine(runner: CaseRunner, plan: MachinePlan, steps: int = STEPS,
                  depth: int = DEPTH, items: Sequence[Item] | None = None
                  ) -> Iterator[tuple[Case, CaseResult]]:
    """Drive every form of every group to the same continuations (`items`: these alone, in
    this order; by default `plan_items`), within `steps` steps; yields each failing session
    as its own case, then one summary case."""
    name = plan.machine.name
    started = time.perf_counter()
    moves = _Moves.of(plan, runner.capabilities.pins)
    items = plan_items(plan, depth) if items is None else list(items)
    tally = _Tally()
    # A step that failed for every form of an item is the implementation's, not a form's: it
    # is reported once and not taken again (a look skips it; a session that needs it stops).
    # A form that failed where another form of its group passed is not driven again in that
    # group: the deviation is the form's, reported once.
    avoid: set[tuple[State, Action]] = set()
    broken: set[tuple[Group, Args]] = set()
    for number, item in enumerate(items):
        if tally.steps >= steps:
            break
        tally.driven += 1
        ran: list[tuple[Args, Case, CaseResult, tuple[State, Action] | None]] = []
        for index, args in enumerate(item.group.forms):
            if (item.group, args) not in broken:
                ran.append(_session(runner, plan, moves, item, args,
                                    f"{name}-forms-{number:04d}-{index}", avoid, tally, started))
        passed = any(result.verdict is Verdict.PASS for _, _, result, _ in ran)
        for args, case, result, where in ran:
            if result.verdict is Verdict.PASS:
                continue
            if passed:
                broken.add((item.group, args))
            elif where is not None:
                avoid.add(where)
            if result.verdict is Verdict.NOT_APPLICABLE:
                tally.declined += 1
            else:
                tally.failed += 1
            yield case, result
    spec = SlotSpec(SLOT, name, config_of(plan.machine, plan.initial[0]))
    count = len({(i.group.op, i.group.param, i.group.forms, i.group.targets) for i in items})
    summary = (f"merged-form continuations of {name}: {tally.driven} of {len(items)} "
               f"continuations of {count} groups driven (depth {depth}, budget {steps} steps), "
               f"{tally.sessions} sessions, {tally.steps} steps; {tally.passed} passed in full"
               f"{f'; {tally.left} left the plan' if tally.left else ''}"
               f"{f'; {tally.failed} failed' if tally.failed else ''}"
               f"{f'; {tally.declined} not applicable' if tally.declined else ''}")
    case = Case(f"{name}-forms", "directed", summary, (spec,), (), tuple(tally.rules))
    if not items:
        yield case, runner.result(case, Verdict.NOT_APPLICABLE, started, [], set(),
                                  message="no transitions of the machine differ only in an "
                                          "argument's form and lead to the same states")
        return
    # The summary passes only for sessions that ran in full and passed; failing sessions are
    # reported apart, and a run where none passed shows nothing here.
    yield case, tally.summary(runner, case, started, tally.passed > 0,
                              "no session ran in full and passed")


@dataclass
class _Tally(Tally):
    """The sessions' tally, and how many continuations were driven, how many sessions failed
    and how many stopped at a declined request."""

    driven: int = 0
    failed: int = 0
    declined: int = 0


def _session(runner: CaseRunner, plan: MachinePlan, moves: _Moves, item: Item, args: Args,
             case_id: str, avoid: set[tuple[State, Action]], tally: _Tally, started: float
             ) -> tuple[Args, Case, CaseResult, tuple[State, Action] | None]:
    """One form of one item in a session of its own: its case, result, and the step it failed
    at (None when it did not fail at a step)."""
    name = plan.machine.name
    start, prefix = _prefix(plan, item.group.source)
    spec = SlotSpec(SLOT, name, config_of(plan.machine, start))
    form = Action(SLOT, item.group.op, args)
    live = tally.session(runner, case_id, (spec,), lambda live: _drive(
        live, moves, [*prefix, (form, item.group.source)], item, avoid))
    taken = tuple(Action(t.slot, t.op, tuple(t.args.items())) for t in live.trace)
    case = Case(case_id, "directed", _describe(item, args), (spec,), taken,
                tuple(dict.fromkeys([*item.group.rules,
                                     *(r for t in live.trace if t.ok for r in t.rules)])))
    result = runner.result(case, live.verdict, started, live.trace, live.covered,
                           message=live.message, evidence=live.evidence, values=live.values)
    return args, case, result, _failed_at(live)


def _failed_at(live: LiveCase) -> tuple[State, Action] | None:
    """The state and action of the step a session failed at: a step the model did not accept
    leaves its tracker where the step started."""
    states = live.trackers[SLOT].states
    if live.verdict is Verdict.PASS or not live.trace or live.trace[-1].ok or len(states) != 1:
        return None
    last = live.trace[-1]
    return next(iter(states)), Action(SLOT, last.op, tuple(last.args.items()))


def _describe(item: Item, args: Args) -> str:
    group = item.group
    after = (" then " + ", ".join(a.op for a in item.path)) if item.path else " then its looks"
    return (f"merged forms of {group.op}({group.param}): the form {group.form(args)}"
            f"{after}, each step followed by its state's observers")


def _drive(live: LiveCase, moves: _Moves, planned: list[tuple[Action, State]],
           item: Item, avoid: set[tuple[State, Action]]) -> bool:
    """The prefix, the form, then the item's continuation; False when the implementation left
    the plan by an allowed choice, a step on the way failed before, or a step failed (the
    verdict says which)."""
    tracker = live.trackers[SLOT]
    for action, before in planned:
        if not on_plan(live, action, before):
            live.note(f"the session left the plan before {action.op} (an allowed choice)")
            return False
        if (before, action) in avoid:
            live.note(f"{action.op} failed here before: not taken again")
            return False
        if not live.step(action):
            return False
    if tracker.states != {item.target}:
        live.note(f"{item.group.op} reached another of its allowed states")
        return False
    if not item.path:
        for action in moves.loops(item.target):
            if (item.target, action) not in avoid and not _take(live, action):
                return False
        return tracker.states == {item.target}
    for action in item.path:
        states = tracker.states
        if len(states) != 1 or (next(iter(states)), action) in avoid:
            live.note(f"{action.op} failed here before, or the state is not known")
            return False
        if not _take(live, action):
            return False
        states = tracker.states
        if len(states) != 1:
            live.note("the model cannot tell which state the implementation is in")
            return False
        (here,) = states
        for check in moves.look(here):
            if (here, check) not in avoid and not _take(live, check):
                return False
    return True


def _take(live: LiveCase, action: Action) -> bool:
    if live.kind(action) is not Kind.DEFINED or not live.offered(action):
        live.note(f"{action.op} is not offered here after the implementation's choices")
        return False
    return live.step(action)
