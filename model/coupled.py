"""Coupled compositions (issue 18): objects that are joined in a real implementation, and the
invariants that span them.

A plain `Composition` puts independent objects side by side: nothing one slot does changes
another, so no invariant spans two slots. Here the compositions say what joins the objects,
with the two means `Composition` has (see `callgate.model.transitions`):

* a `Link`: an action of one slot that performs actions of other slots in the same step (a
  synchronous product on shared actions; the followers never happen alone);
* a `Shared` field: one property of one object that several slots see (one variable).

`COUPLED` holds the compositions, `CROSS_INVARIANTS` the invariants that span their slots. Each
invariant is written from DOMAIN.md's text, cites its rules, and is data: "when every `when`
atom holds, every `then` atom holds", an atom being (slot, field, values). The same data gives
the Python predicate (`holds`, checked on every state the explorer reaches) and the Z3 formula
(`formula`, proved inductive by `callgate.model.proofs.coupled`), so the two cannot drift apart.

`uncoupled(composition, name)` drops one link or shared field: the tests feed the proofs these
broken compositions and show the counterexample each invariant then has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import z3

from callgate.model.families import MACHINES
from callgate.model.symbolic import SymState
from callgate.model.tables.com_call import LIVE
from callgate.model.transitions import (
    Action,
    Composition,
    Link,
    Machine,
    ModelError,
    Shared,
    State,
    Value,
)

Atom = tuple[str, str, tuple[Value, ...]]  # (slot, field, values the field may hold)

COM_CALL = MACHINES["com_call"]
EVENT = MACHINES["event"]
MRE = "ManualResetEvent"


def _act(slot: str, op: str, **args: Value) -> Action:
    return Action(slot, op, tuple(args.items()))


# --- a call object and the system event it aggregates (COM-SYNC-06) --------------------------

_SIGNALS = tuple(
    Link(f"signal[out={out}, then_impersonate={imp}]",
         _act("call", "server_signal", out=out, then_impersonate=imp),
         (_act("event", "Signal"),),
         ("COM-SRV-05", "COM-SYNC-06", "COM-SYNC-01"),
         "the server's Signal on the call object is ISynchronize::Signal on its event",
         pre=(("phase", ("PENDING",)),), post=(("phase", ("SIGNALED",)),))
    for out in (1, 2) for imp in (False, True))

_CREATES = tuple(
    Link(f"create[aggregate={aggregate}]",
         _act("call", "CreateCall", riid="async", aggregate=aggregate),
         (_act("event", "CoCreateInstance", clsid=MRE),),
         ("COM-SYNC-06", "COM-WAIT-01"),
         "a call object that CreateCall returns has aggregated a ManualResetEvent",
         pre=(("phase", ("NONE",)),), post=(("phase", ("IDLE",)),))
    for aggregate in (False, True))

BEGIN_RESETS = Link(
    "begin_resets", _act("call", "Begin_"), (_act("event", "Reset"),),
    ("COM-SYNC-06", "COM-SYNC-04", "COM-SYNC-05", "COM-WAIT-03"),
    "a Begin_ that starts a call resets the call object's event: a ManualResetEvent stays "
    "signaled until someone resets it (COM-SYNC-04), and a Wait on the new pending call must "
    "not return S_OK (COM-WAIT-03)",
    pre=(("phase", ("IDLE",)),), post=(("phase", ("PENDING",)),))

CALL_WITH_EVENT = Composition(
    "call_with_event",
    (("call", COM_CALL), ("event", EVENT)),
    links=(*_CREATES, BEGIN_RESETS, *_SIGNALS),
    hidden=(_act("event", "SetEventHandle"), _act("event", "CoCreateInstance", clsid="StdEvent")),
    doc="One call object and the system event it aggregates for ISynchronize (COM-SYNC-06): "
        "the `event` slot is that object, so the client's Wait and GetHandle on it are Waits on "
        "the call. The call object's own state changes drive the event's (links); the client "
        "does not reach ISynchronizeEvent::SetEventHandle through the call object (COM-WAIT-01 "
        "names ISynchronize; COM-SYNC-09 leaves the rest open), so it is hidden; nor does anyone "
        "but the call object create its event (a CoCreateInstance of StdEvent is hidden).")


# --- several call objects behind one server object (COM-CF-10) -------------------------------

SAME_FACTORY = Shared(
    "server_object", (("call_a", "factory"), ("call_b", "factory")),
    ("COM-CF-10", "COM-SRV-01", "COM-CF-01"),
    "both call objects come from CreateCall on one server object, so whether it implements "
    "ICallFactory is one fact")
SAME_THREAD = Shared(
    "server_thread", (("call_a", "cancellable"), ("call_b", "cancellable")),
    ("COM-CANCEL-07", "COM-CCAN-02"),
    "the server object processes both calls on one thread, and whether cancellation is enabled "
    "is a property of that thread")

CALLS_ONE_SERVER = Composition(
    "calls_one_server",
    (("call_a", COM_CALL), ("call_b", COM_CALL)),
    shared=(SAME_FACTORY, SAME_THREAD),
    doc="Two call objects that CreateCall returned from one server object (COM-CF-10: several "
        "concurrent calls need several call objects), whose calls the server processes on one "
        "thread.")

COUPLED: tuple[Composition, ...] = (CALL_WITH_EVENT, CALLS_ONE_SERVER)


# --- the invariants that span them -----------------------------------------------------------


@dataclass(frozen=True)
class CrossInvariant:
    """A state invariant over several slots of one coupled composition: when every `when` atom
    holds, every `then` atom holds."""

    name: str
    composition: str
    rules: tuple[str, ...]
    doc: str
    when: tuple[Atom, ...]
    then: tuple[Atom, ...]

    def slots(self) -> set[str]:
        return {slot for slot, _, _ in (*self.when, *self.then)}

    def holds(self, comp: Composition, state: tuple[State, ...]) -> bool:
        def atom(slot: str, name: str, values: tuple[Value, ...]) -> bool:
            machine = comp.machine(slot)
            return state[comp.position(slot)][machine.index(name)] in values
        return not all(atom(*a) for a in self.when) or all(atom(*a) for a in self.then)

    def formula(self, states: Mapping[str, SymState]) -> z3.BoolRef:
        def atom(slot: str, name: str, values: tuple[Value, ...]) -> z3.BoolRef:
            return states[slot].is_(name, *values)
        return z3.Implies(z3.And([atom(*a) for a in self.when]),
                          z3.And([atom(*a) for a in self.then]))

    def describe(self) -> str:
        def text(atoms: tuple[Atom, ...]) -> str:
            return " and ".join(f"{s}.{f} in {list(v)}" for s, f, v in atoms)
        return f"if {text(self.when)} then {text(self.then)}"


CROSS_INVARIANTS: tuple[CrossInvariant, ...] = (
    CrossInvariant(
        "cross.call_event.created_with_call", CALL_WITH_EVENT.name,
        ("COM-SYNC-06", "COM-WAIT-01"),
        "a live call object has its system event: it got ISynchronize by aggregating a "
        "ManualResetEvent",
        when=(("call", "phase", LIVE),), then=(("event", "kind", (MRE,)),)),
    CrossInvariant(
        "cross.call_event.no_event_before_call", CALL_WITH_EVENT.name,
        ("COM-SYNC-06",),
        "before CreateCall returned the call object there is no event behind it",
        when=(("call", "phase", ("NONE",)),), then=(("event", "kind", ("NONE",)),)),
    CrossInvariant(
        "cross.call_event.pending_not_signaled", CALL_WITH_EVENT.name,
        ("COM-SYNC-06", "COM-WAIT-03", "COM-SYNC-04", "COM-SRV-05"),
        "while the call is pending its event is not signaled, so a Wait on the event (the "
        "call object's ISynchronize) does not return S_OK before the server signals",
        when=(("call", "phase", ("PENDING",)),), then=(("event", "signaled", (False,)),)),
    CrossInvariant(
        "cross.call_event.signaled_together", CALL_WITH_EVENT.name,
        ("COM-SYNC-06", "COM-SRV-05", "COM-SYNC-01", "COM-WAIT-02"),
        "once the server has signalled the call, the event behind it is signaled, so a Wait "
        "on it returns S_OK (Begin_ processing is over)",
        when=(("call", "phase", ("SIGNALED",)),), then=(("event", "signaled", (True,)),)),
    CrossInvariant(
        "cross.one_server.factory", CALLS_ONE_SERVER.name,
        ("COM-CF-10", "COM-SRV-01", "COM-CF-01"),
        "a live call object proves the server object implements ICallFactory, so the other "
        "call object's server object (the same one) does too",
        when=(("call_a", "phase", LIVE),), then=(("call_b", "factory", (True,)),)),
    CrossInvariant(
        "cross.one_server.cancel_thread", CALLS_ONE_SERVER.name,
        ("COM-CANCEL-07", "COM-CCAN-02"),
        "a Cancel accepted for one call shows cancellation is enabled on the server thread, so "
        "it is enabled for the other call processed on that thread",
        when=(("call_a", "cancel", (True,)),), then=(("call_b", "cancellable", (True,)),)),
)


def composition(name: str) -> Composition:
    for comp in COUPLED:
        if comp.name == name:
            return comp
    raise ModelError(f"no coupled composition {name!r}")


def invariants_of(comp: Composition,
                  invariants: tuple[CrossInvariant, ...] = CROSS_INVARIANTS
                  ) -> tuple[CrossInvariant, ...]:
    return tuple(i for i in invariants if i.composition == comp.name)


def with_machines(comp: Composition, machines: Mapping[str, Machine]) -> Composition:
    """The composition over the given tables (a model mutant's), by machine name."""
    missing = sorted({m.name for _, m in comp.slots} - set(machines))
    if missing:
        raise ModelError(f"composition {comp.name} needs machines {missing}, which were not given")
    return dataclasses.replace(comp, slots=tuple((slot, machines[m.name])
                                                 for slot, m in comp.slots))


def uncoupled(comp: Composition, name: str) -> Composition:
    """The composition without the link, shared field or hidden action named `name` (links are
    named by prefix: "signal" drops every signal link)."""
    links = tuple(link for link in comp.links if not link.name.startswith(name))
    shared = tuple(s for s in comp.shared if s.name != name)
    hidden = tuple(a for a in comp.hidden if str(a) != name)
    if (links, shared, hidden) == (comp.links, comp.shared, comp.hidden):
        raise ModelError(f"{comp.name} has no coupling {name!r}")
    return dataclasses.replace(comp, name=f"{comp.name}-without-{name}", links=links,
                               shared=shared, hidden=hidden)
