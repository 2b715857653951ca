"""The gate's work units: the independent pieces a run is made of.

A run is a fixed list of units, known before any case runs, in a fixed order:

* `walk-MACHINE`: the coverage walk of one machine; for a machine with more than
  `WALK_PART_TRANSITIONS` transitions, `walk-MACHINE-pI` (I from 1 to N) instead: the walk of
  the I-th of N parts of its transitions (`walk.walk_parts`), each part from its own resets;
* `forms-MACHINE`: the machine's merged-form continuations (`cases/forms.py`): each form of an
  argument the model merges into one state, driven to the same continuations;
* `ident-MACHINE`: the machine's state identification, after every leg of the model's graph
  (`walk.model_legs`), not only those a walk took, so it needs no walk before it and runs
  beside the walk's parts in another process;
* `multi-COMPOSITION`: the multi-object walk of one composition (two or three objects);
* `stateful-NN-SLOTS`: one stateful round over one set of objects;
* `race-NAME`: one named parallel race; `parallel-generated`: the generated parallel cases.

A unit opens its own sessions and draws its own concrete argument values from a seed of its own
(`unit_seed`), so what a unit does depends on the run's seed and the unit alone, never on which
units ran before it or in which process. That is what lets `callgate run --jobs N` run units in
several processes, `--shard I/N` run a slice of them, and the pytest plugin make one item of each,
with the same cases and verdicts as one plain run.
"""

from __future__ import annotations

import gc
import itertools
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from callgate.conformance.cases import forms, multi, sequences
from callgate.conformance.cases.identify import IdentifyBudget, identify_machine
from callgate.conformance.cases.lifetimes import lifetimes_machine, limits_machine
from callgate.conformance.cases.parallel import ParallelBudget
from callgate.conformance.cases.parallel.generation import run_generated
from callgate.conformance.cases.parallel.judging import run_parallel
from callgate.conformance.cases.parallel.phase import RACE_RUNS_FACTOR
from callgate.conformance.cases.parallel.races import race_cases
from callgate.conformance.cases.repeat import repeat_machine
from callgate.conformance.cases.slots import slots_named
from callgate.conformance.cases.stateful import StatefulBudget, default_slots, run_stateful
from callgate.conformance.cases.values import ValueChooser
from callgate.conformance.cases.walk import Leg, model_legs, walk_machine, walk_parts
from callgate.conformance.expectations import Expectations
from callgate.conformance.judge.runner import Case, CaseRunner
from callgate.conformance.judge.shrink import shrink_case
from callgate.conformance.protocol.adapter import Capabilities, SlotSpec
from callgate.conformance.results import CaseResult, Verdict

if TYPE_CHECKING:
    from callgate.conformance.gate import RunOptions

# What a unit says while it works on something long (a shrinking): a line of text.
Say = Callable[[str], None]

KINDS = ("walk", "ident", "repeat", "forms", "multi", "stateful", "race", "generated")

# A machine with more transitions than this has its walk cut into parts of about this many
# transitions (rpc_call, about 16,000: 8 parts), each a unit of its own.
WALK_PART_TRANSITIONS = 2000


@dataclass(frozen=True)
class Unit:
    """One independent piece of a run. `key` names what it drives (a machine, a composition, a
    race); `index` is its stateful round's or race's number (the seed offset it always had).
    A walk unit covers part I (`part`) of N (`parts`) of its machine's transitions, 1-based;
    1 of 1 is the whole walk (0 of 0, which `plan_units` no longer gives, is the whole walk
    followed by the identification after the legs it took). `cost` is a rough guess of the
    unit's work (steps, a wait weighing more), used only to start long units first."""

    id: str
    kind: str
    key: str = ""
    index: int = 0
    part: int = 0
    parts: int = 0
    cost: int = 0


def unit_seed(seed: int, unit_id: str) -> int:
    """The seed a unit draws its concrete argument values from: the run's seed and the unit's
    ID, nothing else (so a unit draws the same values alone, in a shard or in another process)."""
    return (seed * 0x1_0000_0001 + zlib.crc32(unit_id.encode())) & 0xFFFF_FFFF_FFFF


def stateful_slot_sets(features: frozenset[str], rounds: int, coupled: bool = False
                       ) -> list[list[SlotSpec]]:
    """What each stateful round drives: every object kind alone (so a random walk spends its
    steps where one object's wrong next state shows), then all together, and with `coupled`
    each set of the multi-object cases (the largest of each kind: c0 c1 c2, r0 r1 r2, e0 e1),
    `rounds` times over."""
    mixed = default_slots(features)
    singles = [[s] for s in mixed if s.name != "c1"]
    sets = [*singles, mixed] if len(mixed) > 1 else [mixed]
    if coupled:
        largest: dict[str, tuple[str, ...]] = {}
        for composition in multi.COMPOSITIONS:
            if len(composition.slots) > len(largest.get(composition.machine, ())):
                largest[composition.machine] = composition.slots
        sets += [found for names in largest.values()
                 if len(found := slots_named(names, features)) == len(names)]
    return [slots for _ in range(rounds) for slots in sets]


def compositions(options: RunOptions, plan: sequences.Plan) -> list[multi.Composition]:
    """The multi-object compositions the run walks: those of the adapter's kinds of object
    that the budget does not leave out."""
    return [c for c in multi.COMPOSITIONS
            if c.machine in plan.machines and c.name not in options.budget.multi_skip]


def _stateful_id(round_: int, slots: Sequence[SlotSpec]) -> str:
    return f"stateful-{round_:02d}-{'-'.join(s.name for s in slots)}"


def plan_units(plan: sequences.Plan, caps: Capabilities, options: RunOptions) -> list[Unit]:
    """Every unit of a run with these options, in the order a plain run takes them."""
    units: list[Unit] = []
    budget = options.budget
    identify = budget.identify_steps + budget.identify_class_steps if options.identify else 0
    if options.directed:
        for machine, machine_plan in plan.machines.items():
            size = len(machine_plan.transitions)
            parts = walk_part_count(size)
            units += [Unit(f"walk-{machine}" + (f"-p{part}" if parts > 1 else ""), "walk",
                           machine, part=part, parts=parts, cost=3 * size // parts)
                      for part in range(1, parts + 1)]
            if identify:
                # Its sequences wait (timed waits, notifications): weighed above a walk part.
                units.append(Unit(f"ident-{machine}", "ident", machine, cost=identify))
            # The repetition cases (cases/repeat.py): each cycle of the rest state, lapped.
            units.append(Unit(f"repeat-{machine}", "repeat", machine, cost=size // 2))
            if budget.forms_steps and forms.groups(machine_plan):
                # Merged-form continuations (cases/forms.py): sessions of their own, with waits.
                units.append(Unit(f"forms-{machine}", "forms", machine,
                                  cost=2 * budget.forms_steps))
    if options.multi and budget.multi_cases:
        units += [Unit(f"multi-{c.name}", "multi", c.name,
                       cost=budget.multi_cases * budget.multi_steps // 2
                       // (1 if c.only is None else multi.CLASS_SHARE))
                  for c in compositions(options, plan)]
    rounds = budget.stateful_rounds if options.stateful else 0
    for round_, slots in enumerate(stateful_slot_sets(caps.features, rounds,
                                                      budget.stateful_coupled)):
        units.append(Unit(_stateful_id(round_, slots), "stateful", "", round_,
                          cost=budget.stateful_examples * budget.stateful_steps))
    if options.parallel:
        # A race waits on purpose (staggers, runs); weighed as a few hundred steps each.
        units += [Unit(case.id, "race", case.id, number, cost=_WAITING * budget.parallel_runs)
                  for number, case in enumerate(race_cases())]
        if budget.parallel_examples:
            units.append(Unit("parallel-generated", "generated",
                              cost=_WAITING * budget.parallel_examples // 4))
    return units


# How many steps one waiting piece of a unit (a race's run) weighs in `Unit.cost`.
_WAITING = 100


def walk_part_count(transitions: int) -> int:
    """How many parts a machine's walk is cut into (1: not cut)."""
    return max(1, -(-transitions // WALK_PART_TRANSITIONS))


def longest_first(chosen: Sequence[Unit]) -> list[int]:
    """The indexes of `chosen` in the order to start them on several workers: the costliest
    first (longest processing time first: the long units do not end up last, alone on one
    worker), ties in the run's order. Their results are still recorded in the run's order."""
    return sorted(range(len(chosen)), key=lambda i: (-chosen[i].cost, i))


def select(units: Sequence[Unit], wanted: Sequence[str] | None) -> list[Unit]:
    """The units named in `wanted`, in that order (all of them for None). An unknown name is a
    mistake the caller must hear about, with the names there are."""
    if wanted is None:
        return list(units)
    by_id = {u.id: u for u in units}
    unknown = [w for w in wanted if w not in by_id]
    if unknown:
        raise ValueError(f"no such unit(s) in this run: {', '.join(unknown)}; the run's units: "
                         f"{', '.join(by_id)}")
    return [by_id[w] for w in wanted]


def settle_heap() -> None:
    """Collect what the units before left for the garbage collector, then exempt what is still
    alive (the model's graphs and memos, the plan, the results so far) from later collections
    (`gc.freeze`). Those objects number hundreds of thousands and most live to the end of the
    run, yet every full collection walked them all again (in a run of four units, two parts of
    `rpc_call`'s walk, `container`'s walk and a stateful round, full collections took 3.6 s of
    15.3 s of CPU time). Frozen objects are still freed when nothing refers to them; only a
    reference cycle among them that becomes garbage later is kept, until the run ends
    (`release_heap`)."""
    gc.collect()
    if not _BASE_FROZEN:
        gc.freeze()


def release_heap() -> None:
    """Give what `settle_heap` froze back to the garbage collector (at the end of a run, so a
    process that runs the gate again and again, as the tests do, keeps no cycles for ever)."""
    if not _BASE_FROZEN:
        gc.unfreeze()


_BASE_FROZEN = False


def freeze_base() -> None:
    """For a process that runs the gate again and again on one plan (the parent of forked mutant
    workers, before it forks): collect, then exempt what is alive now (the plan, the model's
    graphs and memos, the walks' caches) from every later collection, for the life of the
    process and its children. `settle_heap` then only collects, which walks no more than the
    runs' own objects, and `release_heap` leaves the base as it is. Without this each mutant's
    gate run froze the heap at its first unit and gave it back at its end, so every mutant
    walked the whole heap again (about 0.6 s a mutant, most of a quick kill)."""
    global _BASE_FROZEN
    gc.collect()
    gc.freeze()
    _BASE_FROZEN = True


def thaw_base() -> None:
    """Undo `freeze_base` (in the parent, once its forked workers are done)."""
    global _BASE_FROZEN
    if _BASE_FROZEN:
        gc.unfreeze()
        _BASE_FROZEN = False


def run_unit(runner: CaseRunner, plan: sequences.Plan, options: RunOptions, unit: Unit,
             say: Say | None = None) -> Iterator[CaseResult]:
    """Run one unit: yield each of its cases' results as they end, failures shrunk (unless
    `options.shrink` is off). Expectations are not applied here: the caller applies them in
    the run's order (`Expectations.apply`), so a stale entry is found the same way however the
    units were spread."""
    settle_heap()
    runner.values = ValueChooser(unit_seed(options.seed, unit.id), fixed=options.fixed_values)
    budget = options.budget

    def shrunk(result: CaseResult, case: Case | None = None,
               with_plan: sequences.Plan | None = None) -> CaseResult:
        return shrink(runner, with_plan, case, result, say, options.expectations,
                      options.shrink)

    caps = runner.capabilities
    identify = IdentifyBudget(budget.identify_steps, extra_step=budget.identify_complete,
                              every_transition=budget.identify_complete,
                              class_steps=budget.identify_class_steps)
    identifies = options.identify and bool(identify.steps or identify.class_steps)
    if unit.kind == "walk" and unit.parts:
        machine_plan = plan.machines[unit.key]
        pending = walk_parts(machine_plan, unit.parts)[unit.part - 1]
        label = f"p{unit.part}" if unit.parts > 1 else ""
        for case, result in walk_machine(runner, machine_plan, pending, label=label):
            yield shrunk(result, case, plan)
    elif unit.kind == "walk":
        machine_plan = plan.machines[unit.key]
        pending = set(machine_plan.transitions)
        taken: list[Leg] = []
        cases = itertools.chain(
            walk_machine(runner, machine_plan, pending, taken=taken),
            identify_machine(runner, machine_plan, taken, identify) if identifies else ())
        for case, result in cases:
            yield shrunk(result, case, plan)
    elif unit.kind == "ident":
        machine_plan = plan.machines[unit.key]
        if identifies:
            for case, result in identify_machine(runner, machine_plan, model_legs(machine_plan),
                                                 identify):
                yield shrunk(result, case, plan)
    elif unit.kind == "repeat":
        # The lifetime and limit cases (cases/lifetimes.py) ride with the repetition cases: many
        # objects of the machine ended one after another, where the model has an end; one
        # object filled to a bound beside another, where the model has a bounded count.
        for case, result in itertools.chain(repeat_machine(runner, plan.machines[unit.key]),
                                            lifetimes_machine(runner, plan.machines[unit.key]),
                                            limits_machine(runner, plan.machines[unit.key])):
            yield shrunk(result, case, plan)
    elif unit.kind == "forms":
        for case, result in forms.forms_machine(runner, plan.machines[unit.key],
                                                budget.forms_steps, budget.forms_depth):
            yield shrunk(result, case, plan)
    elif unit.kind == "multi":
        composition = next(c for c in multi.COMPOSITIONS if c.name == unit.key)
        for _, result in multi.walk_pairs(runner, plan.machines[composition.machine],
                                          composition, multi.MultiBudget(
                                              budget.multi_cases, budget.multi_steps)):
            yield shrunk(result)
    elif unit.kind == "stateful":
        slots = stateful_slot_sets(caps.features, unit.index + 1,
                                   budget.stateful_coupled)[unit.index]
        yield shrunk(run_stateful(
            runner, StatefulBudget(budget.stateful_examples, budget.stateful_steps),
            seed=options.seed + unit.index, slots=slots, case_id=unit.id))
    elif unit.kind == "race":
        race = race_cases()[unit.index]
        runs = options.parallel_runs or budget.parallel_runs
        yield shrunk(run_parallel(runner, race, runs * RACE_RUNS_FACTOR, options.stagger,
                                  options.seed + unit.index))
    elif unit.kind == "generated":
        runs = options.parallel_runs or budget.parallel_runs
        yield shrunk(run_generated(runner, ParallelBudget(budget.parallel_examples, runs,
                                                          options.stagger), options.seed))
    else:
        raise ValueError(f"unknown unit kind {unit.kind!r} (known: {', '.join(KINDS)})")


def shrink(runner: CaseRunner, plan: sequences.Plan | None, case: Case | None,
           failed: CaseResult, say: Say | None = None,
           expectations: Expectations | None = None, enabled: bool = True) -> CaseResult:
    """A failing case (or one the implementation's error ended) shrunk to a counterexample no
    single step of which can be removed (`callgate.conformance.judge.shrink`); a directed case
    first tries the shortest path in the model's graph to its failing transition. Other verdicts,
    and failures that `expectations` lists as known deviations, come back as they are; so does
    everything when shrinking is off (`enabled` False: `callgate run --no-shrink`)."""
    if not enabled or failed.verdict not in (Verdict.FAIL, Verdict.ERROR):
        return failed
    if expectations is not None and expectations.explains(failed):
        return failed  # a listed deviation: its entry says what happens (and with what evidence)
    shorter = plan.shortest_case(case, failed) if plan is not None and case is not None else None
    if shorter is not None:  # the same concrete argument values as the failing run
        shorter = replace(shorter, values=failed.replay.get("values"))
    return shrink_case(runner, failed, shorter, progress=say)
