"""The order in which a mutant's run takes the gate's units (`callgate.conformance.units`).

A mutant run stops at its first failing case, so the order of the units decides how long a kill
takes. The order uses only the rule the mutant is documented to break (what an implementer with
one failing rule knows), never the mutant's name or its code:

1. the units that cite the rule: a named race whose rules name it, the walk of a machine whose
   rows cite it, a multi-object walk of such a machine;
2. the units that drive the rule's machines without citing it: a race or a stateful round with
   an object of such a machine;
3. every other unit.

Within the first group the units go in three tiers: the units that do not wait (walks, races,
repetition cases, multi-object walks), then the units bound by waits (state identification,
merged-form continuations), then the later parts of a walk cut into parts (below). Within a tier
they go machine by machine, the smallest machine (fewest transitions) first, so a machine's walk
and its multi-object walk stay together, and a smaller machine's identification no longer comes
before a larger machine's walk. Within a machine, and within the other groups, the cheaper unit
goes first: the walk of a small machine (under `SMALL_WALK` transitions, well under a second),
then the named races (about a second each), then the walks of large machines (up to 30 s: most
faults they show they show in their first segments, but a fault only a race shows would pay for
the whole walk first), then the repetition cases and the multi-object walks (walks of steps that
do not wait), then the units bound by waits, the state identification and the merged-form
continuations, the stateful rounds and the generated parallel cases last.

A walk cut into parts (`walk-MACHINE-pI`, rpc_call's 8 parts) runs its first part in the walk's
place and its other parts after the machine's other units: the first part starts at the
initial states, where a fault in an operation every call makes shows, while each later part
costs as much as the machine's repetition, multi-object, identification and merged-form units
together, and those see what no single walk can (two objects, state identification). The later
parts go in the order of how many of their transitions cite the rule (`part_citing`), most
first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

from callgate.conformance.cases import multi, sequences
from callgate.conformance.cases.parallel.races import race_cases
from callgate.conformance.cases.walk import walk_parts
from callgate.conformance.units import Unit, stateful_slot_sets
from callgate.model.families import MACHINES
from callgate.model.transitions import find_row

# Groups of `order_units`, first to last.
CITES, MACHINE, REST = 0, 1, 2

# Within a group, the kinds of unit in the order they run (each kind's usual cost against the
# reference, measured: a named race about 0.2 to 2 s, a walk 0.1 to 30 s by machine, a
# multi-object walk 0.3 to 9 s, a stateful round 4 to 14 s, the generated parallel cases
# several s). A walk of a machine with fewer than `SMALL_WALK` transitions (the event,
# thread_cancel, rpc_order and rpc_pipe machines: each walk well under a second) comes first.
# After a machine's walk: its repetition cases (0.1 to 2.5 s), its multi-object walks (steps
# that do not wait), then the units bound by waits: its state identification (com_call's
# waits out 14 Cancel(ulSeconds=1) calls, about 11 s) and its merged-form continuations
# (forms-MACHINE: every step followed by the waits that may deliver; rpc_call's about 11 s);
# the later parts of a walk cut into parts after those.
KIND_RANK = {"small walk": 0, "race": 1, "walk": 2, "repeat": 3, "multi": 4, "ident": 5,
             "forms": 6, "later part": 7, "stateful": 8, "generated": 9}
SMALL_WALK = 100

# The tiers of the first group: every citing machine's units that do not wait (its walk, races,
# repetition cases, multi-object walks) come before any citing machine's units bound by waits
# (tier 1), and the later parts of a walk cut into parts after those (tier 2).
TIER = {"ident": 1, "forms": 1, "later part": 2}


@dataclass(frozen=True)
class Scheduled:
    """A unit in a mutant's order, with its group (`CITES`, `MACHINE` or `REST`) and why."""

    unit: Unit
    group: int
    why: str


def machines_citing(rule: str) -> frozenset[str]:
    """The machines with at least one row that cites `rule`."""
    return frozenset(name for name, m in MACHINES.items() if m.cited_rules().get(rule, 0))


def walk_machine(key: str) -> str:
    """The machine a walk unit's key names: the key itself, or the machine whose name begins a
    key that names a part of a machine's walk (the longest such name)."""
    if key in MACHINES:
        return key
    found = [m for m in MACHINES if key.startswith(m)]
    return max(found, key=len) if found else key


@cache
def _race_index() -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Each named race: the rules it names and the machines of its objects."""
    return {case.id: (frozenset(case.rules), frozenset(s.machine for s in case.slots))
            for case in race_cases()}


def unit_machines(unit: Unit, features: frozenset[str], coupled: bool = False
                  ) -> frozenset[str]:
    """The machines whose objects `unit` drives (empty when not known before it runs: the
    generated parallel cases)."""
    if unit.kind in ("walk", "ident", "repeat", "forms"):
        return frozenset({walk_machine(unit.key)})
    if unit.kind == "multi":
        return frozenset(c.machine for c in multi.COMPOSITIONS if c.name == unit.key)
    if unit.kind == "race":
        return _race_index().get(unit.key, (frozenset(), frozenset()))[1]
    if unit.kind == "stateful":
        sets = stateful_slot_sets(features, unit.index + 1, coupled)
        return frozenset(s.machine for s in sets[unit.index]) if unit.index < len(sets) \
            else frozenset()
    return frozenset()


def classify(unit: Unit, rule: str, citing: frozenset[str], features: frozenset[str],
             coupled: bool = False, race_rules: Mapping[str, frozenset[str]] | None = None
             ) -> Scheduled:
    """Which group `unit` falls in for a mutant that breaks `rule` (`citing`: the machines whose
    rows cite it; `race_rules`: each race's rules, the named races' by default)."""
    rules = race_rules if race_rules is not None else {
        k: v[0] for k, v in _race_index().items()}
    drives = unit_machines(unit, features, coupled)
    if unit.kind == "race" and rule in rules.get(unit.key, frozenset()):
        return Scheduled(unit, CITES, f"the race names {rule}")
    if unit.kind in ("walk", "ident", "repeat", "forms", "multi") and drives & citing:
        return Scheduled(unit, CITES, f"rows of {', '.join(sorted(drives & citing))} cite {rule}")
    if drives & citing:
        return Scheduled(unit, MACHINE, f"drives {', '.join(sorted(drives & citing))}")
    return Scheduled(unit, REST, "")


def order_units(rule: str, units: Sequence[Unit], features: frozenset[str],
                sizes: Mapping[str, int] | None = None, coupled: bool = False,
                race_rules: Mapping[str, frozenset[str]] | None = None,
                citing: frozenset[str] | None = None,
                parts_citing: Mapping[str, int] | None = None) -> list[Scheduled]:
    """`units` in the order a mutant that breaks `rule` runs them (see the module's text).
    `sizes` gives each machine's transitions (a walk's cost); `parts_citing` each walk part's
    transitions whose rows cite `rule` (`part_citing`; none known: the parts' own order); ties
    keep the run's order."""
    machines = machines_citing(rule) if citing is None else citing
    position = {u.id: i for i, u in enumerate(units)}
    scheduled = [classify(u, rule, machines, features, coupled, race_rules) for u in units]

    known = sizes or {}

    parts = parts_citing or {}

    def cost(s: Scheduled) -> tuple[int, int, int, int, int, int, int]:
        drives = unit_machines(s.unit, features, coupled)
        size = sum(known.get(m, 0) for m in drives)
        kind = s.unit.kind
        if kind == "walk" and 0 < size < SMALL_WALK:
            kind = "small walk"
        if kind == "walk" and s.unit.parts > 1 and s.unit.part > 1:
            kind = "later part"
        # The first group goes machine by machine, the smallest machine citing the rule first,
        # in tiers: the units that do not wait, then those bound by waits, then later parts.
        machine = min((known.get(m, 0) for m in drives & machines), default=0) \
            if s.group == CITES else 0
        tier = TIER.get(kind, 0) if s.group == CITES else 0
        return (s.group, tier, machine, KIND_RANK.get(kind, len(KIND_RANK)), size,
                -parts.get(s.unit.id, 0), position[s.unit.id])

    return sorted(scheduled, key=cost)


# Each machine plan's transitions with the rules their rows cite, and its walk's parts, built
# once per process (keyed by the plan's id, the plan kept to check it is the same one).
_CITED: dict[int, tuple[sequences.MachinePlan, dict[str, frozenset[str]]]] = {}
_PARTS: dict[tuple[int, int], tuple[sequences.MachinePlan, list[set[str]]]] = {}


def transition_rules(machine_plan: sequences.MachinePlan) -> dict[str, frozenset[str]]:
    """Each transition of the plan (by its coverage key) with the rules its row cites."""
    known = _CITED.get(id(machine_plan))
    if known is not None and known[0] is machine_plan:
        return known[1]
    machine = machine_plan.machine
    found = {key: frozenset(find_row(machine, state, action.op, action.args).cited_rules())
             for key, (state, action) in machine_plan.by_key.items()}
    _CITED[id(machine_plan)] = (machine_plan, found)
    return found


def _walk_parts(machine_plan: sequences.MachinePlan, count: int) -> list[set[str]]:
    known = _PARTS.get((id(machine_plan), count))
    if known is not None and known[0] is machine_plan:
        return known[1]
    found = walk_parts(machine_plan, count)
    _PARTS[(id(machine_plan), count)] = (machine_plan, found)
    return found


def part_citing(rule: str, units: Sequence[Unit], plan: sequences.Plan) -> dict[str, int]:
    """For each walk part among `units` (a walk cut into parts), how many of its transitions
    have a row that cites `rule` (for `order_units`)."""
    found: dict[str, int] = {}
    for unit in units:
        if unit.kind != "walk" or unit.parts <= 1 or unit.key not in plan.machines:
            continue
        machine_plan = plan.machines[unit.key]
        rules = transition_rules(machine_plan)
        part = _walk_parts(machine_plan, unit.parts)[unit.part - 1]
        found[unit.id] = sum(1 for key in part if rule in rules.get(key, ()))
    return found
