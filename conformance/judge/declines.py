"""When an adapter may decline a request (`not_applicable`), and what a decline is worth.

An adapter that could answer `not_applicable` to whatever it liked could hide every failure: it
would decline exactly the requests whose answers fail, and the run would pass. So a decline counts
only in two cases (docs/adapter-protocol.md, "Declining a request"):

* **declared**: the handshake's `absent` names the request before the run, as a feature (then no
  case that needs it is sent), an operation `MACHINE.OP`, or an argument form
  `MACHINE.OP(PARAM=VALUE)`. callgate does not send a request its operation or form names: the
  case ends there, `not_applicable` with the declared reason, as if the adapter had declined it.
* **checked**: an earlier request of the same case, on the same slot, that gives the slot an
  object (`ACQUIRING`: a CreateCall, a CoCreateInstance, a subscription...) was answered with a
  refusal (a failure code or a raise), the object was not made since, and the declined request
  needs that object: "an earlier refusal took this object away". This is judged per object: a
  declined request that would itself make an object (one of `ACQUIRING`) needs only the objects
  `NEEDS` names (a `CreateCall` needs the factory `QueryInterface(iid=ICallFactory)` gives), so
  a `CreateCall` with `riid` async declined after one with `riid` sync was refused is not
  checked: the refusal took away nothing that request needs, it would make the call object
  again. A request that makes no object is taken to need every object of its slot (which object
  each operation needs is not written down per operation).

Any other decline, of a request or of a session's `open`, is an adapter fault: the case is an
`error` naming the request and the adapter's message, and the run cannot exit 0.
`DeclineGuard` wraps every session the runner opens and applies these rules, so that every kind
of case (walks, multi-object, repetition, identification, stateful, parallel prefixes) is held
to them.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from callgate.conformance.protocol.adapter import (
    AdapterFault,
    NotApplicable,
    Observation,
    Request,
    Session,
    SlotSpec,
)
from callgate.conformance.protocol.features import FEATURES
from callgate.model.codes import Family
from callgate.model.transitions import Value

# What the messages of declined requests start with (the report groups by them).
DECLARED = "declared absent in the handshake"
CHECKED = "declined after an earlier refusal"
UNDECLARED = "declined without declaration"

# The operations that give a slot its objects, by machine, as `OP` or `OP(PARAM=VALUE)`: a
# refusal of one of them (a failure code, or a raise) may take away what later requests on the
# slot need. A call object's own QueryInterface is not one: refusing an interface of it leaves the
# call object. Literal, checked against the model by tests/test_hostile_verdict.py.
ACQUIRING: dict[str, frozenset[str]] = {
    "com_call": frozenset({"QueryInterface(iid=ICallFactory)", "CreateCall"}),
    "thread_cancel": frozenset({"reinitialize", "start_sync_call", "CoSetCancelObject"}),
    "event": frozenset({"CoCreateInstance"}),
    "container": frozenset({"CoCreateInstance", "AddSynchronize"}),
    "cowait": frozenset(),
    # Not AsyncCall: a refused call leaves the handle, and the model goes on defining what
    # follows on it (RpcAsyncCompleteCall, RpcAsyncCancelCall, a new AsyncCall: RPC-INIT-08).
    "rpc_call": frozenset({"RpcAsyncInitializeHandle"}),
    "rpc_notif": frozenset({"notif_call", "RpcServerSubscribeForNotification"}),
    "rpc_order": frozenset({"RpcBindingSetOption", "issue_async"}),
    "rpc_pipe": frozenset({"start_call"}),
}

# The objects an acquiring request needs, by machine: `OP` or `OP(PARAM=VALUE)` of `ACQUIRING`
# -> the entries of `ACQUIRING` whose objects it needs (an entry not listed needs the object of
# no other entry). Literal, checked against `ACQUIRING` by tests/test_hostile_verdict.py.
NEEDS: dict[str, dict[str, frozenset[str]]] = {
    "com_call": {"CreateCall": frozenset({"QueryInterface(iid=ICallFactory)"})},
    # A failed re-initialisation leaves the thread without COM: no call, no cancel object.
    "thread_cancel": {"start_sync_call": frozenset({"reinitialize"}),
                      "CoSetCancelObject": frozenset({"reinitialize"})},
    "container": {"AddSynchronize": frozenset({"CoCreateInstance"})},
    "rpc_notif": {"RpcServerSubscribeForNotification": frozenset({"notif_call"})},
}

_KEY = re.compile(r"^(?P<machine>[A-Za-z][A-Za-z0-9_]*)\.(?P<op>[A-Za-z][A-Za-z0-9_]*)"
                  r"(?:\((?P<param>[A-Za-z][A-Za-z0-9_]*)=(?P<value>[A-Za-z0-9_]+)\))?$")


def value_text(value: Value) -> str:
    """An argument value as an `absent` key writes it: `true`/`false`, numbers and names as is."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Absence:
    """One `absent` entry that names a request rather than a feature: an operation of a machine,
    or one argument form of it (`param` = `value`, as the model writes the value)."""

    machine: str
    op: str
    param: str = ""
    value: str = ""
    reason: str = ""

    def covers(self, machine: str, op: str, args: Mapping[str, Value]) -> bool:
        if machine != self.machine or op != self.op:
            return False
        return not self.param or (self.param in args and value_text(args[self.param]) == self.value)


def parse_absent(absent: Mapping[str, str]) -> tuple[list[Absence], list[str]]:
    """The operation and form entries of a handshake's `absent`, and its problems (a key that is
    neither a known feature nor names an operation, parameter and value of the model, or a form
    of a parameter whose concrete numbers callgate chooses: such a form could never match)."""
    from callgate.conformance.cases.values import CLASSES
    from callgate.model.families import MACHINES

    # Parameters whose abstract value the request carries as a concrete number.
    numbered = {(u.machine, u.op, u.param) for c in CLASSES if c.to == "args" for u in c.uses}
    found: list[Absence] = []
    problems: list[str] = []
    for key, reason in absent.items():
        if key in FEATURES:
            continue
        match = _KEY.match(key)
        machine = MACHINES.get(match["machine"]) if match else None
        if match is None or machine is None:
            problems.append(f"{key!r} is neither a feature nor MACHINE.OP or MACHINE.OP(PARAM=VALUE) "
                            f"of a known machine")
            continue
        ops = {o.name: o for o in machine.operations}
        operation = ops.get(match["op"])
        if operation is None:
            problems.append(f"{key!r}: {machine.name} has no operation {match['op']!r}")
            continue
        param, value = match["param"] or "", match["value"] or ""
        if param:
            params = {p.name: p for p in operation.params}
            if param not in params:
                problems.append(f"{key!r}: {operation.name} has no parameter {param!r}")
                continue
            domain = [value_text(v) for v in params[param].domain]
            if value not in domain:
                problems.append(f"{key!r}: {param} takes {', '.join(domain)}")
                continue
            if (machine.name, operation.name, param) in numbered:
                problems.append(f"{key!r}: callgate sends {param} as a concrete number, so a form "
                                f"of it can never match; declare the operation")
                continue
        found.append(Absence(machine.name, operation.name, param, value, reason))
    return found, problems


def declared(absences: Sequence[Absence], machine: str, op: str,
             args: Mapping[str, Value]) -> Absence | None:
    """The declaration that covers this request, if any."""
    return next((a for a in absences if a.covers(machine, op, args)), None)


def refused(family: Family | None, observation: Observation) -> bool:
    """Whether an answer refuses: a raise, or a failure code of the machine's numbering (an
    HRESULT with the severity bit set; an RPC_STATUS other than RPC_S_OK)."""
    if observation.outputs.get("raised") is True:
        return True
    if family is Family.RPC_STATUS:
        return observation.code != 0
    return bool(observation.code & 0x80000000)


def acquiring(machine: str, op: str, args: Mapping[str, Value]) -> str | None:
    """The entry of `ACQUIRING` this request is (`OP` or `OP(PARAM=VALUE)`), if any: the object
    it makes (every form of `OP` makes the same one)."""
    entries = ACQUIRING.get(machine, frozenset())
    if op in entries:
        return op
    return next((e for k, v in args.items() if (e := f"{op}({k}={value_text(v)})") in entries),
                None)


def excuse(machine: str, made: str | None, refusals: Mapping[str, str]) -> str | None:
    """The earlier refusal that took away an object the declined request needs, as text, or None:
    `made` is the entry of `ACQUIRING` the declined request is (None: it makes no object, and
    needs every object of its slot), `refusals` the slot's refused entries not made since."""
    if made is None:
        return next(iter(refusals.values()), None)
    needed = NEEDS.get(machine, {}).get(made, frozenset())
    return next((text for entry, text in refusals.items() if entry in needed), None)


def request_text(request: Request) -> str:
    args = ", ".join(f"{k}={value_text(v)}" for k, v in request.args.items())
    return f"{request.slot}.{request.op}({args})"


class DeclineGuard:
    """A session whose declines are held to the rules above (see the module's docstring)."""

    def __init__(self, session: Session, slots: Sequence[SlotSpec],
                 absences: Sequence[Absence]) -> None:
        from callgate.model.families import MACHINES

        self.session = session
        self.machines = {s.name: s.machine for s in slots}
        self.families = {s.name: MACHINES[s.machine].codes for s in slots}
        self.absences = tuple(absences)
        # Per slot: each entry of `ACQUIRING` that was refused and not made since -> the first
        # such refusal, as text.
        self._refusals: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def perform(self, request: Request) -> Observation:
        machine = self.machines.get(request.slot, "")
        absence = declared(self.absences, machine, request.op, request.args) \
            if self.absences else None
        if absence is not None:
            raise NotApplicable(f"{DECLARED}: {absence.reason}")
        made = acquiring(machine, request.op, request.args)
        try:
            observation = self.session.perform(request)
        except NotApplicable as exc:
            with self._lock:
                refusals = dict(self._refusals.get(request.slot, {}))
            earlier = excuse(machine, made, refusals)
            if earlier is not None:
                raise NotApplicable(f"{CHECKED} ({earlier}): {exc}") from exc
            why = (f"no earlier request on {request.slot} was refused" if not refusals else
                   f"the earlier refusal on {request.slot} ({next(iter(refusals.values()))}) "
                   f"took away no object this request needs: it would make one itself")
            raise AdapterFault(
                f"{UNDECLARED}: the adapter answered not_applicable to {request_text(request)} "
                f"({exc}), but its handshake does not declare the request absent and {why}; "
                f"declare it in the handshake's absent (docs/adapter-protocol.md)",
                str(exc)) from exc
        if made is not None and isinstance(observation, Observation) and \
                isinstance(observation.code, int):
            with self._lock:
                slot = self._refusals.setdefault(request.slot, {})
                if refused(self.families.get(request.slot), observation):
                    slot.setdefault(
                        made, f"{request_text(request)} answered {observation.code:#010x}"
                        + (" (raised)" if observation.outputs.get("raised") is True else ""))
                else:  # made after all: that refusal takes nothing away any more
                    slot.pop(made, None)
        return observation

    def close(self) -> None:
        self.session.close()


def open_guarded(open_session: Callable[[], Session], slots: Sequence[SlotSpec],
                 absences: Sequence[Absence]) -> DeclineGuard:
    """Open a session through `open_session`; a declined `open` is an adapter fault (what an
    adapter cannot set up, it declares: the features of a slot's configuration)."""
    try:
        session = open_session()
    except NotApplicable as exc:
        names = ", ".join(f"{s.name}:{s.machine}" for s in slots)
        raise AdapterFault(
            f"{UNDECLARED}: the adapter answered not_applicable to opening a session of "
            f"{names} ({exc}); what it cannot set up it leaves out of its features",
            str(exc)) from exc
    return DeclineGuard(session, slots, absences)
