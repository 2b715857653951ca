"""Shrinks a failing case until no single step can be removed without losing the failure.

A case that fails is rarely the shortest way to show its fault: a coverage walk reaches the
failing transition after hundreds of steps, a generated program carries steps that do nothing.
The shrinker turns it into a 1-minimal counterexample, in three passes, every candidate run
again against a fresh session of the adapter:

1. Cycles. The steps between two moments at which the implementation was observed in the same
   model state (every slot's tracker the same) are cut out, the longest cycle first.
2. The shortest observed way. Every run (the original and every candidate) adds what the
   implementation was seen to do to a graph: observed state, action, observed next state. The
   steps before a step are replaced by a shortest path in that graph, not the model's, from the
   initial state to the state the step starts from: first before the failing step, then before
   each earlier one, latest first (a fault that corrupts a state the model does not have acts
   at an earlier step and shows later: the way to that step is what can be shortened).
3. Delta debugging (ddmin, on complements): chunks of steps are removed, halving the chunk size
   until single steps; then every single step is removed in turn once more, until none can go.
   The shortest observed ways are tried once more on the result (the candidates' runs taught
   the graph more ways), and in a case of several objects each object's own shortest observed
   way before a step, in the places of its last steps there (see `Shrinker.slot_paths`); if
   one is taken, pass 3 runs again on it.

A candidate is kept only if it fails for the same reason (`Reason`: a `fail` verdict whose last
step is the same operation, on the same machine, citing the same rules) and its run took fewer
steps than the counterexample so far. A candidate that passes, errs, or fails another way is
dropped (a flaky or different failure never replaces the one being shrunk). What a candidate's
run took is what counts: if the harness adds a look before a wait for ever (see
`LiveCase.lookout`), the look is part of the counterexample.

An `error` verdict is shrunk the same way when the error is the implementation's: its last step
is one the adapter did not answer properly (it raised, broke the protocol, or did not answer
within the step timeout: the trace's last record has no code), and a candidate must end with the
same kind of error (`Reason.error`, "adapter fault" or "adapter hung") on the same operation,
machine and rules. An error of callgate's own code (a harness error) says nothing about the
implementation and is never shrunk. Every candidate that hangs costs a step timeout, so a hang's
shrinking stops after `ShrinkBudget.hangs` candidates hung (its seconds are raised by as many
step timeouts).

The shrinking has a budget (reruns and seconds). `Shrunk.one_minimal` is True only when the last
pass ran every single-step removal of the final counterexample and none of them failed the same
way; when the budget runs out first, the counterexample is the smallest seen and `note` says so.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from callgate.conformance.cases.values import replayed
from callgate.conformance.judge.runner import (
    ADAPTER_FAULT,
    ADAPTER_HUNG,
    HARNESS_ERROR,
    Case,
    CaseRunner,
    initial_state,
)
from callgate.conformance.protocol.adapter import SlotSpec
from callgate.conformance.results import CaseResult, StepRecord, Verdict
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, Args, Kind, State, Tracker

# How often, at most, a long shrinking says where it is (seconds).
PROGRESS_EVERY = 2.0

# The first pass of shortest observed ways gives up after this many candidates in a row that do
# not fail the same way (the trace is long then: delta debugging shortens it more cheaply); the
# pass after delta debugging, on a short trace, tries every step.
PREFIX_TRIES = 8

# The default budget: reruns, and wall-clock seconds.
RERUNS = 400
SECONDS = 30.0
HANGS = 4


@dataclass(frozen=True)
class ShrinkBudget:
    """How much one shrinking may cost: candidate runs, and seconds."""

    reruns: int = RERUNS
    seconds: float = SECONDS
    hangs: int = HANGS  # candidates that hung (each cost a step timeout)


@dataclass(frozen=True)
class Reason:
    """Why a case failed: what a candidate must show again to replace it."""

    machine: str
    op: str
    rules: tuple[str, ...]
    error: str = ""  # an `error` verdict: the kind of error ("adapter fault")

    @staticmethod
    def of(result: CaseResult) -> Reason | None:
        """The reason of a `fail` result whose last step went wrong, or of an `error` result
        whose last step the adapter did not answer properly; None for anything else (a pass, a
        harness error, an error with no step to blame)."""
        if not result.trace or result.trace[-1].ok:
            return None
        last = result.trace[-1]
        if result.verdict is Verdict.FAIL:
            error = ""
        elif result.verdict is Verdict.ERROR and last.code is None:
            error = implementation_error(result.message)
            if not error:
                return None
        else:
            return None
        return Reason(result.slots.get(last.slot, ""), last.op, tuple(sorted(last.rules)), error)


HUNG = "adapter hung"


def implementation_error(message: str) -> str:
    """The kind of an `error` verdict the adapter caused at a step that the shrinker reruns
    ("adapter fault", or "adapter hung": no answer within the step timeout), read from the
    runner's message; "" for any other error (a harness error)."""
    if HARNESS_ERROR in message:
        return ""
    if ADAPTER_HUNG in message:
        return HUNG
    return "adapter fault" if ADAPTER_FAULT in message else ""


@dataclass(frozen=True)
class Shrunk:
    """The outcome of one shrinking."""

    result: CaseResult        # the smallest failing run seen (the original if none was smaller)
    length_before: int
    length_after: int
    reruns: int
    seconds: float
    one_minimal: bool         # shown: no single step of `result` can be removed
    note: str = ""            # why it is not shown minimal, when it is not
    rejected: dict[str, int] = field(default_factory=dict)  # candidates dropped, by why

    def to_json(self) -> dict[str, Any]:
        return {"length_before": self.length_before, "length_after": self.length_after,
                "reruns": self.reruns, "seconds": round(self.seconds, 3),
                "one_minimal": self.one_minimal, "note": self.note,
                "rejected": dict(sorted(self.rejected.items()))}


Key = tuple[frozenset[State], ...]  # every slot's model states, in slot order


def actions_of(trace: Sequence[StepRecord]) -> tuple[Action, ...]:
    """The actions a trace took, in order."""
    return tuple(Action(t.slot, t.op, tuple(t.args.items())) for t in trace)


def _ordered(machine: str, op: str, values: Mapping[str, Any]) -> Args:
    return tuple((p.name, values[p.name])
                 for p in MACHINES[machine].operation(op).params)


def observed_states(slots: Sequence[SlotSpec], trace: Sequence[StepRecord],
                    pins: Mapping[str, str],
                    values: Mapping[str, Mapping[str, int]] | None = None) -> list[Key]:
    """The model states of every slot before each step of `trace` and after its last accepted
    step, found by following the recorded answers through the model (what the implementation
    was observed in). Stops at the first step the model does not accept."""
    machines = {s.name: s.machine for s in slots}
    trackers = {s.name: Tracker(MACHINES[s.machine], pins,
                                [initial_state(MACHINES[s.machine], s.config)]) for s in slots}
    names = [s.name for s in slots]
    binding = replayed(values)  # echoed values mapped back to the abstract ones

    def key() -> Key:
        return tuple(trackers[n].states for n in names)

    states = [key()]
    for record in trace:
        if record.code is None or record.slot not in trackers:
            break
        code, outputs = binding.observed(machines[record.slot], record.op, record.code,
                                         record.outputs)
        judgement = trackers[record.slot].observe(
            record.op, _ordered(machines[record.slot], record.op, record.args), code, outputs)
        if not judgement.ok:
            break
        states.append(key())
    return states


Progress = Callable[[str], None]


class Shrinker:
    """Shrinks one failing case of `slots` (see the module's docstring)."""

    def __init__(self, runner: CaseRunner, case: Case, reason: Reason,
                 budget: ShrinkBudget | None = None, progress: Progress | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.runner = runner
        self.case = case
        self.reason = reason
        self.budget = budget or ShrinkBudget()
        self.progress = progress
        self.clock = clock
        self.started = clock()
        self.reruns = 0
        self.hangs = 0
        self.stopped = ""
        self.rejected: dict[str, int] = {}
        self._cache: dict[tuple[Action, ...], CaseResult | None] = {}
        self._edges: dict[Key, dict[Key, Action]] = {}
        # The same, one object at a time (a multi-object case), shared by the objects of one
        # machine and configuration: kind -> state -> next state -> action.
        self._slot_edges: dict[str, dict[frozenset[State], dict[frozenset[State],
                                                               list[Action]]]] = {}
        self._slots = [s.name for s in case.slots]
        self._kind = {s.name: f"{s.machine} {sorted(s.config.items())}" for s in case.slots}
        self._last_report = self.started

    def tried(self, steps: Sequence[Action]) -> bool:
        """Whether `steps` has been run (or was the case itself)."""
        return tuple(steps) in self._cache

    # --- running candidates ------------------------------------------------------------------

    def over(self) -> bool:
        """The budget is spent (and `stopped` says so)."""
        if not self.stopped:
            spent = self.clock() - self.started
            if self.reruns >= self.budget.reruns:
                self.stopped = f"the shrinking budget ran out ({self.reruns} reruns)"
            elif self.hangs >= self.budget.hangs:
                self.stopped = (f"the shrinking budget ran out ({self.hangs} candidates hung, "
                                f"each a step timeout)")
            elif spent >= self.budget.seconds:
                self.stopped = (f"the shrinking budget ran out ({spent:.1f} s, "
                                f"{self.reruns} reruns)")
        return bool(self.stopped)

    def learn(self, trace: Sequence[StepRecord],
              values: Mapping[str, Mapping[str, int]] | None = None) -> list[Key]:
        """Add what a run was seen to do to the observed graph; its states, step by step.
        `values`: the concrete values the run sent, through which its echoed values read back
        (default: the case's; a shrunk counterexample may have sent others)."""
        states = observed_states(self.case.slots, trace, self.runner.capabilities.pins,
                                 values if values is not None else self.case.values)
        for i, action in enumerate(actions_of(trace[:len(states) - 1])):
            self._edges.setdefault(states[i], {}).setdefault(states[i + 1], action)
            if action.slot in self._slots:
                k = self._slots.index(action.slot)
                found = self._slot_edges.setdefault(self._kind[action.slot], {}).setdefault(
                    states[i][k], {}).setdefault(states[i + 1][k], [])
                if action not in found:
                    found.append(action)
        return states

    def run(self, steps: Sequence[Action]) -> CaseResult | None:
        """Run `steps` in a fresh session; its result if it failed, else None. Cached: the same
        candidate is run once."""
        key = tuple(steps)
        if key in self._cache:
            return self._cache[key]
        self.reruns += 1
        started = time.perf_counter()
        failed: CaseResult | None = None
        try:
            live = self.runner.open(f"{self.case.id}-shrink", self.case.slots, self.case.values)
        except Exception:  # a session that cannot be opened: this candidate shows nothing
            self._reject("error")
            self._cache[key] = None
            return None
        try:
            for action in steps:
                if live.kind(action) is not Kind.DEFINED or not live.step(action):
                    break
        except Exception as exc:  # callgate's own code: this candidate shows nothing
            live.harness_error(exc)
        finally:
            live.close()
        if ADAPTER_HUNG in live.message:
            self.hangs += 1
        self.learn(live.trace, live.values.as_json() if live.values is not None else None)
        if live.verdict in (Verdict.FAIL, Verdict.ERROR):
            candidate = Case(self.case.id, self.case.kind, self.case.description,
                             self.case.slots, actions_of(live.trace), self.case.rules,
                             values=self.case.values)
            # With the values it sent: the counterexample replays with them, and its echoed
            # values read back as the model's.
            failed = self.runner.result(candidate, live.verdict, started, live.trace,
                                        live.covered, message=live.message,
                                        evidence=live.evidence, values=live.values)
            if Reason.of(failed) != self.reason:
                self._reject("failed another way" if live.verdict is Verdict.FAIL else "error")
                if live.verdict is Verdict.ERROR:
                    failed = None
        elif live.verdict is not Verdict.PASS:
            self._reject("error")
        else:
            self._reject("passed")
        self._cache[key] = failed
        self._say(len(steps))
        return failed

    def _reject(self, why: str) -> None:
        self.rejected[why] = self.rejected.get(why, 0) + 1

    def _say(self, length: int) -> None:
        now = self.clock()
        if self.progress is not None and now - self._last_report >= PROGRESS_EVERY:
            self._last_report = now
            self.progress(f"shrinking {self.case.id}: trying {length} steps, "
                          f"{self.reruns} reruns, {now - self.started:.0f} s")

    def better(self, steps: Sequence[Action], than: CaseResult) -> CaseResult | None:
        """The run of `steps` if it fails for the same reason in fewer steps than `than`."""
        if not self.tried(steps) and self.over():
            return None
        got = self.run(steps)
        if got is None or Reason.of(got) != self.reason:
            return None
        return got if len(got.trace) < len(than.trace) else None

    # --- the passes ----------------------------------------------------------------------------

    def cycles(self, best: CaseResult) -> CaseResult:
        """Cut out stretches that return to a state observed before, the longest first."""
        improved = True
        while improved and not self.over():
            improved = False
            steps = actions_of(best.trace)
            # the state before each step
            states = self.learn(best.trace, best.replay.get("values"))[:len(steps)]
            first: dict[Key, int] = {}
            last: dict[Key, int] = {}
            for i, key in enumerate(states):
                first.setdefault(key, i)
                last[key] = i
            spans = sorted(((first[k], last[k]) for k in first if last[k] > first[k]),
                           key=lambda span: (span[0] - span[1], span))
            for i, j in spans:
                got = self.better((*steps[:i], *steps[j:]), best)
                if got is not None:
                    best, improved = got, True
                    break
        return best

    def observed_way(self, start: Any, target: Any, slot: str = "",
                     prefer: Sequence[Action] = ()) -> list[Action] | None:
        """A shortest way in the graph of observed states from `start` to `target`. With
        `slot`: in that object's own graph, by the moves the actions in `prefer` (the
        counterexample's own, of any object) made if they lead there (a long walk's graph has
        other ways, through actions the fault may not answer alike), else by any; each move
        taken by such an action where one made it."""
        known = {(a.op, a.args) for a in prefer}
        if slot and known:
            edges = {node: {nxt: [a for a in moves if (a.op, a.args) in known]
                            for nxt, moves in out.items()
                            if any((a.op, a.args) in known for a in moves)}
                     for node, out in self._slot_edges.get(self._kind[slot], {}).items()}
            way = self._way(edges, start, target)
            if way is None:
                way = self._way(self._slot_edges.get(self._kind[slot], {}), start, target)
            if way is None:
                return None
            chosen = [next((a for a in moves if (a.op, a.args) in known), moves[0])
                      for moves in way]
            return [Action(slot, a.op, a.args) for a in chosen]
        if slot:
            way = self._way(self._slot_edges.get(self._kind[slot], {}), start, target)
            return None if way is None else [Action(slot, m[0].op, m[0].args) for m in way]
        return self._way(self._edges, start, target)

    @staticmethod
    def _way(edges: Mapping[Any, Mapping[Any, Any]], start: Any, target: Any
             ) -> list[Any] | None:
        """A shortest path from `start` to `target` in `edges` (node -> next -> move), as its
        moves."""
        parent: dict[Any, tuple[Any, Any] | None] = {start: None}
        queue = deque([start])
        while queue and target not in parent:
            node = queue.popleft()
            for nxt, action in edges.get(node, {}).items():
                if nxt not in parent:
                    parent[nxt] = (node, action)
                    queue.append(nxt)
        if target not in parent:
            return None
        path: list[Any] = []
        at = target
        while (link := parent[at]) is not None:
            at, action = link
            path.append(action)
        path.reverse()
        return path

    def slot_paths(self, best: CaseResult) -> CaseResult:
        """In a case of several objects: before a step, replace one object's steps by the
        shortest way in its own observed graph (shared by the objects of its machine and
        configuration) to the state it was in, the new steps taking the
        places of its last ones (so what the other objects did after them stays after them:
        a fault between objects may need that order). Latest step first; the first candidate
        that fails the same way is taken, and the pass starts again from it."""
        if len(self._slots) < 2:
            return best
        while not self.over():
            steps = actions_of(best.trace)
            states = self.learn(best.trace, best.replay.get("values"))

            got = self.first_better(best, self._slot_candidates(steps, states))
            if got is None:
                break
            best = got
        return best

    def _slot_candidates(self, steps: Sequence[Action], states: Sequence[Key]
                         ) -> Iterator[tuple[Action, ...]]:
        """`slot_paths`' candidates for `steps` (with their observed `states`), in its order."""
        for i in range(min(len(steps), len(states)) - 1, 0, -1):
            for k, slot in enumerate(self._slots):
                places = [j for j in range(i) if steps[j].slot == slot]
                path = self.observed_way(states[0][k], states[i][k], slot, steps)
                if path is None or len(path) >= len(places):
                    continue
                new = dict(zip(places[len(places) - len(path):], path, strict=True))
                yield tuple(new.get(j, a) for j, a in enumerate(steps)
                            if j not in places or j in new)

    def observed_path(self, best: CaseResult, tries: int | None = None) -> CaseResult:
        """Replace the steps before a step by the shortest way, in the graph of observed
        states, to the state that step starts from; the step and all after it are kept. The
        failing step is tried first (the shortest way to where the failure shows), then each
        earlier step, latest first: a fault that corrupts hidden state acts at an earlier step
        and shows later, so the way to the step where it acts is the one to shorten. The first
        candidate that fails the same way is taken, and the pass starts again from it. `tries`:
        at most this many candidates in a row that do not (None: no limit)."""
        while not self.over():
            steps = actions_of(best.trace)
            states = self.learn(best.trace, best.replay.get("values"))
            ways = ((self.observed_way(states[0], states[i]), i)
                    for i in range(min(len(steps), len(states)) - 1, 0, -1))
            got = self.first_better(best, ((*path, *steps[i:]) for path, i in ways
                                           if path is not None and len(path) < i), tries)
            if got is None:
                break
            best = got
        return best

    def first_better(self, best: CaseResult, candidates: Iterable[tuple[Action, ...]],
                     tries: int | None = None) -> CaseResult | None:
        """The first of `candidates` not run before that fails the same way in fewer steps
        than `best`; None when none does, the budget runs out, or `tries` candidates in a row
        did not (None: no limit)."""
        left = tries
        for candidate in candidates:
            if self.tried(candidate):
                continue
            got = self.better(candidate, best)
            if got is not None:
                return got
            if self.over() or (left is not None and (left := left - 1) <= 0):
                return None
        return None

    def ddmin(self, best: CaseResult) -> CaseResult:
        """Remove chunks of steps (complements), halving the chunk size down to single steps."""
        chunks = 2
        while not self.over():
            steps = actions_of(best.trace)
            if len(steps) < 2:
                return best
            chunks = min(chunks, len(steps))
            size = len(steps) / chunks
            bounds = [(round(k * size), round((k + 1) * size)) for k in range(chunks)]
            for lo, hi in bounds:
                got = self.better((*steps[:lo], *steps[hi:]), best)
                if got is not None:
                    best = got
                    chunks = max(chunks - 1, 2)
                    break
            else:
                if chunks >= len(steps):
                    return best
                chunks = min(chunks * 2, len(steps))
        return best

    def one_minimal(self, best: CaseResult) -> tuple[CaseResult, bool]:
        """Remove each single step in turn until none can go: True when that was shown."""
        i = 0
        while i < len(best.trace):
            steps = actions_of(best.trace)
            candidate = (*steps[:i], *steps[i + 1:])
            got = self.better(candidate, best)
            if got is not None:
                best, i = got, 0
                continue
            if not self.tried(candidate):  # the budget ran out before it could run
                return best, False
            i += 1
        return best, True

    def shrink(self, failed: CaseResult) -> Shrunk:
        """Shrink `failed` (a result of `self.case` that fails for `self.reason`)."""
        self._cache[actions_of(failed.trace)] = failed
        best = self.cycles(failed)
        best = self.observed_path(best, tries=PREFIX_TRIES)
        best = self.ddmin(best)
        best, minimal = self.one_minimal(best)
        # Every run taught the observed graph more ways: a shorter way to where the fault acts
        # may be known now. If one is taken, the single-step pass runs again on the result.
        shorter = self.slot_paths(self.observed_path(best))
        if shorter is not best:
            best, minimal = self.one_minimal(self.ddmin(shorter))
        seconds = self.clock() - self.started
        note = "" if minimal else (self.stopped or "not shown minimal")
        if minimal and self.reruns == 0:
            note = "a single step: nothing to remove"
        return Shrunk(best, len(failed.trace), len(best.trace), self.reruns, seconds, minimal,
                      note, dict(self.rejected))


def shrink_failure(runner: CaseRunner, failed: CaseResult, slots: Sequence[SlotSpec],
                   budget: ShrinkBudget | None = None, progress: Progress | None = None,
                   clock: Callable[[], float] = time.monotonic) -> Shrunk | None:
    """Shrink a failing sequential case (directed, identifying, multi-object or stateful) run
    on `slots`; None when it cannot be (see `Reason.of`)."""
    reason = Reason.of(failed)
    if reason is None or not slots:
        return None
    case = Case(failed.id, failed.kind, failed.description, tuple(slots),
                actions_of(failed.trace), tuple(failed.rules), values=failed.replay.get("values"))
    return Shrinker(runner, case, reason, budget, progress, clock).shrink(failed)


def replay_slot_specs(result: CaseResult) -> tuple[SlotSpec, ...]:
    """The slots a result ran on, read back from its replay."""
    return tuple(SlotSpec(s["name"], s["machine"], dict(s.get("config", {})))
                 for s in result.replay.get("slots", []))


def _prefix_failure(result: CaseResult) -> bool:
    """A parallel case that failed in its prefix, before any branch ran: a sequential failure."""
    return bool(result.trace) and all(t.thread == "prefix" for t in result.trace)


def shrink_case(runner: CaseRunner, failed: CaseResult, shorter: Case | None = None,
                budget: ShrinkBudget | None = None, progress: Progress | None = None,
                clock: Callable[[], float] = time.monotonic) -> CaseResult:
    """`failed` with its trace shrunk and the shrinking reported (`length_before`,
    `length_after`, `shrink`). `fail` verdicts, and `error` verdicts the implementation caused
    at a step (see `Reason`), are shrunk; anything else comes back as it is.

    `shorter` is a candidate to start from (a directed case's shortest path in the model's
    graph to the failing transition, possibly from another initial state): it is run first,
    and kept if it fails for the same reason in fewer steps. A parallel case that failed in
    its prefix is shrunk as a sequential case; one that failed among its concurrent branches is
    shrunk as a program, each candidate run several times (`callgate.conformance.judge.race_shrink`).
    """
    reason = Reason.of(failed)
    if reason is None:
        return failed
    before = max(failed.original_length, len(failed.trace))
    if failed.history and not _prefix_failure(failed):
        from callgate.conformance.judge.race_shrink import RaceBudget, shrink_race
        # A race's own default budget unless one is given (its candidates run N times each).
        race_budget = RaceBudget() if budget is None else RaceBudget(runs=budget.reruns,
                                                                      seconds=budget.seconds)
        return shrink_race(runner, failed, race_budget, clock=clock)
    started = clock()
    start, slots, extra, hung = failed, replay_slot_specs(failed), 0, 0
    if shorter is not None and len(shorter.steps) < len(failed.trace):
        extra = 1
        again = runner.run(shorter)
        hung = int(ADAPTER_HUNG in again.message)
        if Reason.of(again) == reason and len(again.trace) < len(failed.trace):
            start, slots = again, shorter.slots
    left = budget or ShrinkBudget()
    if reason.error == HUNG:  # each candidate that hangs again waits out a step timeout
        left = replace(left, seconds=left.seconds + left.hangs * runner.step_timeout)
    spent = clock() - started
    shrunk = shrink_failure(runner, start, slots,
                            ShrinkBudget(max(0, left.reruns - extra), left.seconds - spent,
                                         max(0, left.hangs - hung)),
                            progress, clock)
    if shrunk is None:
        return failed
    best = shrunk.result
    info = shrunk.to_json() | {"length_before": before, "reruns": shrunk.reruns + extra,
                               "seconds": round(shrunk.seconds + spent, 3)}
    return replace(
        failed, trace=best.trace, replay=best.replay, message=best.message,
        evidence=best.evidence, failed_rules=best.failed_rules,
        covered=sorted(set(failed.covered) | set(best.covered)),
        original_length=before if len(best.trace) < before else 0,
        length_before=before, length_after=len(best.trace), shrink=info)
