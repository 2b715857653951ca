"""Slots by name, from the machines' own facts: the machine a slot name holds, a slot's default
configuration, and the feature an adapter declares to have that kind of object at all.

Cases name their slots as the docs do (`c0` a call object, `e0` an event, `k0` a container,
`r0` an RPC call): the first letter is a machine's `slot_prefix`. Everything else about a slot
(its machine, its configuration, the feature it needs) is read from that machine, so no case
module restates a family's facts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from callgate.conformance.protocol.adapter import SlotSpec
from callgate.model.families import MACHINES
from callgate.model.transitions import Machine


def machine_of(slot: str) -> Machine:
    """The machine a slot named `slot` holds, by its first letter (the machine's `slot_prefix`)."""
    for machine in MACHINES.values():
        if machine.slot_prefix and slot.startswith(machine.slot_prefix):
            return machine
    known = ", ".join(f"{m.slot_prefix}: {m.name}" for m in MACHINES.values() if m.slot_prefix)
    raise ValueError(f"no machine holds a slot named {slot!r}: a slot name starts with a "
                     f"machine's slot prefix ({known})")


def default_slot(slot: str) -> SlotSpec:
    """The slot named `slot`, holding its machine in the machine's default configuration."""
    machine = machine_of(slot)
    return SlotSpec(slot, machine.name, dict(machine.slot_config))


def machine_feature(machine: Machine) -> str:
    """The feature an adapter declares to have this kind of object at all: the capability of the
    machine's first operation (each table lists first how a client first reaches the object:
    QueryInterface on the server object, CoCreateInstance, RpcAsyncInitializeHandle)."""
    return machine.operations[0].capability


def available(slots: Iterable[SlotSpec], features: Iterable[str]) -> bool:
    """Whether an adapter with `features` has every kind of object the slots hold."""
    have = set(features)
    return all(machine_feature(MACHINES[s.machine]) in have for s in slots)


def slots_named(names: Sequence[str], features: Iterable[str]) -> list[SlotSpec]:
    """The default slots named `names` whose kind of object the adapter has, in that order."""
    have = set(features)
    return [slot for slot in map(default_slot, names) if available((slot,), have)]
