"""Concrete argument values: which number the harness sends for each abstract argument class.

The model abstracts arguments into classes: a timeout is zero, finite or INFINITE; Cancel's
ulSeconds is 0, a finite number of seconds or INFINITE; the [out] value a server signals is "1"
or "2"; an RPC abort code is one of two non-zero codes. The model's outcome does not depend on
which concrete value stands for a class, so a conforming implementation answers alike for all of
them; a faulty one may not (a timeout converted with an overflow, an [out] value truncated to a
byte, an exception code with its high bit mishandled). So the harness sends several concrete
values per class, drawn deterministically from the run's seed, boundaries first.

The table, `CLASSES`, is the one place these values live. Two kinds of class:

* A *magnitude* (the finite timeout, Cancel's finite ulSeconds): one concrete number per case.
  Each operation that uses the class (a Wait on a call object, a Wait on an event) has its own
  value. Each class has two lists. `anywhere` is sent whatever the state. `at_once` holds large
  values too
  (INFINITE-1, 0x7FFFFFFF, ...), sent only where the model says the operation returns without
  waiting: in every candidate state the same operation with INFINITE is offered and allowed the
  same outcomes (a signalled object, a completed call). Elsewhere a large value would make a
  correct implementation wait that long. A faulty implementation that waits anyway is caught by
  the step timeout (`error`, never `pass`).
* An *echo* class ([out], reply, abort code): the implementation gives the value back (Finish_'s
  `out`, RpcAsyncCompleteCall's `reply`, the final completion's code). Each case binds every
  abstract value of the class to a distinct concrete one at its first use; the request carries
  the concrete value, and what comes back is mapped to the abstract value before the model
  judges it (`Binding.observed`). The mapping is a bijection, so an answer matches the abstract
  value exactly when it equals the concrete value that was sent for it.

Draws: for each class, list and (for a magnitude) operation, the first draws of a run take the
list in its order (the boundaries are listed first), then draws are random from the whole list,
with a generator seeded from the run's seed and the class's name. `ValueChooser(fixed=True)`
sends the single value each class had before (a finite Wait 50 ms, Cancel 1 s, [out] 1 and 2,
...): what `--fixed-values` runs, and what shows a mutant is caught only because of the new
values.

Not varied (documented in docs/adapter-protocol.md): `wait_ms` of `probe_sta_wait`,
`wait_notification` and the RPC `server_test_cancel` poll (a bounded poll for a cancel that must
arrive needs its full time), and the parallel cases, which keep the single values.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from callgate.model import codes
from callgate.model.codes import Family
from callgate.model.tables.com_call import INFINITE as SECONDS_INFINITE
from callgate.model.tables.rpc_handle import ABORT_CODES
from callgate.model.transitions import Action, Kind, Tracker, Value

FINITE_WAIT_MS = 50  # the single finite timeout sent before (protocol.adapter.FINITE_WAIT_MS)
INFINITE_MS = 0xFFFFFFFF

MAGNITUDE = "magnitude"
ECHO = "echo"


@dataclass(frozen=True)
class Use:
    """Where a class appears: an operation's parameter of one machine, when it has `abstract`
    (for a magnitude; every value of the parameter for an echo class)."""

    machine: str
    op: str
    param: str
    abstract: Value | None = None


@dataclass(frozen=True)
class ValueClass:
    """One abstract argument class and its concrete values.

    `to`: where the concrete value goes in the request, "wait_ms" or "args". `infinite`: the
    parameter's INFINITE member (magnitudes), used to tell where the operation returns at once.
    `outputs`: for an echo class, the (machine, output) pairs that give the value back;
    `codes`: the (machine, op) pairs whose return code gives it back. `legacy`: the value(s)
    sent before, by abstract value."""

    name: str
    kind: str
    uses: tuple[Use, ...]
    anywhere: tuple[int, ...]
    legacy: Mapping[Value, int]
    why: str
    at_once: tuple[int, ...] = ()
    to: str = "args"
    infinite: Value | None = None
    outputs: tuple[tuple[str, str], ...] = ()
    codes: tuple[tuple[str, str], ...] = ()
    domain: tuple[Value, ...] = ()


def _meaningful_rpc_codes() -> frozenset[int]:
    """RPC_STATUS codes the model gives a meaning of their own: never sent as an abort code."""
    return frozenset(c.value for c in codes.ALL if c.family is Family.RPC_STATUS) - set(ABORT_CODES)


# The [out] and reply values: 32-bit numbers. Boundaries first (0, all bits, the sign bit, just
# past a byte and a 16-bit word), then typical ones, then the values sent before.
_NUMBERS = (0, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 0x100, 0x10000, 0xFF, 0x12345678, 42, 1, 2)
# Abort and exception codes: non-zero (RPC-SRV-ABORT-03 leaves 0 undefined), none that the model
# gives a meaning of its own, and no exception code an RPC runtime refuses to catch (access
# violation, stack overflow, breakpoint...: RpcExceptionFilter lets those crash the server).
_ABORT = tuple(c for c in (0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 1, 0xE0000001, 0x10000, 0x1234,
                           *ABORT_CODES, 1000)
               if c not in _meaningful_rpc_codes())

CLASSES: tuple[ValueClass, ...] = (
    ValueClass(
        "timeout.finite", MAGNITUDE,
        (Use("com_call", "Wait", "timeout", "finite"), Use("event", "Wait", "timeout", "finite"),
         Use("container", "WaitMultiple", "timeout", "finite")),
        anywhere=(1, FINITE_WAIT_MS, 2, 10, 100),
        at_once=(0xFFFFFFFE, 0x80000000, 0x7FFFFFFF, 4294968, 429497, 1, FINITE_WAIT_MS, 60000),
        legacy={"finite": FINITE_WAIT_MS}, to="wait_ms", infinite="infinite",
        why="dwMilliseconds other than 0 and INFINITE (COM-WAIT-03, COM-WAIT-05): 1 ms, the "
            "largest values below INFINITE and around 2^31, and values whose conversion to "
            "microseconds or 100-ns units overflows 32 bits"),
    ValueClass(
        "cancel.seconds.finite", MAGNITUDE, (Use("com_call", "Cancel", "seconds", 1),),
        anywhere=(1,),
        at_once=(0xFFFFFFFE, 0x80000000, 0x7FFFFFFF, 2, 4294968, 1, 60),
        legacy={1: 1}, infinite=SECONDS_INFINITE,
        why="ulSeconds other than 0 and INFINITE (COM-CANCEL-05, COM-CANCEL-08); while the "
            "test server holds the call only 1, since the client waits that long"),
    ValueClass(
        "out", ECHO, (Use("com_call", "server_signal", "out"), Use("com_call", "sync_call", "out")),
        anywhere=_NUMBERS, legacy={1: 1, 2: 2}, outputs=(("com_call", "out"),), domain=(1, 2),
        why="the [out] value the server sets; Finish_ and the synchronous call deliver it "
            "(COM-FIN-01, COM-SRV-03)"),
    ValueClass(
        "reply", ECHO,
        (Use("rpc_call", "server_complete", "reply"), Use("rpc_call", "sync_call", "reply")),
        anywhere=_NUMBERS, legacy={1: 1, 2: 2}, outputs=(("rpc_call", "reply"),), domain=(1, 2),
        why="the procedure's return value; the client's final RpcAsyncCompleteCall delivers it "
            "(RPC-SRV-COMPLETE-02, RPC-CLI-COMPLETE-02)"),
    ValueClass(
        "abort.code", ECHO,
        (Use("rpc_call", "server_abort", "code"), Use("rpc_call", "server_raise", "code")),
        anywhere=_ABORT, legacy={c: c for c in ABORT_CODES},
        codes=(("rpc_call", "RpcAsyncCompleteCall"), ("rpc_call", "RpcAsyncGetCallStatus")),
        domain=ABORT_CODES,
        why="RpcAsyncAbortCall's and the raised exception's code, non-zero (RPC-SRV-ABORT-01, "
            "RPC-SRV-ABORT-03, RPC-SRV-EXC-01); the client's completion returns it"),
)

BY_NAME = {c.name: c for c in CLASSES}


def class_of(machine: str, op: str, param: str, abstract: Value) -> ValueClass | None:
    """The class an argument belongs to, or None (sent as it is)."""
    for vc in CLASSES:
        for use in vc.uses:
            if (use.machine, use.op, use.param) == (machine, op, param) and \
                    (use.abstract is None or use.abstract == abstract):
                return vc
    return None


def legacy_echo_values() -> dict[str, dict[str, int]]:
    """Every echo class bound to the single values sent before ([out] 1 and 2 as 1 and 2, ...):
    the preset of a parallel case's session. Its branches send the abstract values as they are
    and the linearizability check judges what comes back as it is, so the prefix must send
    those same numbers: an [out] value the prefix's server_signal sent as 0 for abstract 1 would
    come back from a branch's Finish_ as 0, which no order allows."""
    return {vc.name: {str(a): vc.legacy[a] for a in vc.domain} for vc in CLASSES
            if vc.kind == ECHO}


class ValueChooser:
    """The run's draws: one cursor per (class, list), boundaries first, then seeded choices."""

    def __init__(self, seed: int = 0, *, fixed: bool = False) -> None:
        self.seed = seed
        self.fixed = fixed
        self._drawn: dict[tuple[str, str], int] = {}
        self._rngs: dict[tuple[str, str], random.Random] = {}

    def draw(self, vc: ValueClass, tier: str, where: str = "") -> int:
        """The next value of `vc`'s `tier` list for the operation `where` ("machine op"): each
        operation that uses a class has its own cursor, so each sees the boundaries first."""
        values = vc.at_once if tier == "at_once" else vc.anywhere
        key = (f"{vc.name} {where}".strip(), tier)
        n = self._drawn.get(key, 0)
        self._drawn[key] = n + 1
        if n < len(values):
            return values[n]
        rng = self._rngs.setdefault(key, random.Random(f"{self.seed}:{key[0]}:{tier}"))
        return rng.choice(values)

    def draw_distinct(self, vc: ValueClass, count: int) -> list[int]:
        chosen: list[int] = []
        while len(chosen) < count:
            value = self.draw(vc, "anywhere")
            if value not in chosen:
                chosen.append(value)
        return chosen

    def binding(self, preset: Mapping[str, Mapping[str, int]] | None = None) -> Binding:
        """A case's binding; `preset` (a failed case's `Binding.as_json()`) replays its values."""
        return Binding(self, {k: dict(v) for k, v in (preset or {}).items()})


@dataclass
class Binding:
    """One case's concrete values: per class, abstract value (or tier) → concrete number. Values
    are drawn at first use, so the run's cursors move only for classes a case uses."""

    chooser: ValueChooser
    bound: dict[str, dict[str, int]] = field(default_factory=dict)
    # What was sent, for the report: "machine op param=abstract" → the concrete values.
    used: dict[str, set[int]] = field(default_factory=dict)

    def as_json(self) -> dict[str, dict[str, int]]:
        return {k: dict(v) for k, v in sorted(self.bound.items())}

    def describe(self) -> str:
        """The binding for people: `out 1=255 2=0; timeout.finite anywhere=1`."""
        return "; ".join(f"{name} " + " ".join(f"{k}={v}" for k, v in values.items())
                         for name, values in sorted(self.bound.items()))

    def used_json(self) -> dict[str, list[int]]:
        return {k: sorted(v) for k, v in sorted(self.used.items())}

    def _echo(self, vc: ValueClass) -> dict[str, int]:
        if vc.name not in self.bound:
            if self.chooser.fixed:
                self.bound[vc.name] = {str(a): vc.legacy[a] for a in vc.domain}
            else:
                drawn = self.chooser.draw_distinct(vc, len(vc.domain))
                self.bound[vc.name] = {str(a): c for a, c in zip(vc.domain, drawn, strict=True)}
        return self.bound[vc.name]

    def _magnitude(self, vc: ValueClass, where: str, abstract: Value, tier: str) -> int:
        if self.chooser.fixed:
            return vc.legacy[abstract]
        slot = self.bound.setdefault(f"{vc.name} {where}", {})
        if tier not in slot:
            slot[tier] = self.chooser.draw(vc, tier, where)
        return slot[tier]

    def concrete(self, machine: str, action: Action, tracker: Tracker | None,
                 wait_ms: int) -> tuple[dict[str, Value], int, dict[str, int]]:
        """The request's args and wait_ms for `action`, and the concrete values it carries by
        parameter (empty when nothing was substituted)."""
        args = dict(action.args)
        sent: dict[str, int] = {}
        for param, abstract in action.args:
            vc = class_of(machine, action.op, param, abstract)
            if vc is None:
                continue
            if vc.kind == ECHO:
                value = self._echo(vc)[str(abstract)]
            else:
                tier = "at_once" if returns_at_once(tracker, action, param, vc) else "anywhere"
                value = self._magnitude(vc, f"{machine} {action.op}", abstract, tier)
            if vc.to == "wait_ms":
                wait_ms = value
            else:
                args[param] = value
            sent[param] = value
            self.used.setdefault(f"{machine} {action.op} {param}={abstract}", set()).add(value)
        return args, wait_ms, sent

    def _inverse(self, vc: ValueClass, value: int) -> int:
        """The bijection from what came back to the abstract value it stands for: a concrete
        value sent for `a` maps to `a`; an abstract value that was not itself sent maps to a
        concrete value that stands for nothing; anything else is left as it is."""
        mapping = self.bound.get(vc.name)
        if not mapping:
            return value
        back = {c: int(a) for a, c in mapping.items()}
        if value in back:
            return back[value]
        labels = sorted(int(a) for a in mapping)
        strays = [a for a in labels if a not in back]
        spare = sorted(c for c in back if c not in labels)
        if value in strays:
            return spare[strays.index(value)]
        return value

    def observed(self, machine: str, op: str, code: int,
                 outputs: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """The code and outputs as the model sees them: echoed values mapped back."""
        outputs = dict(outputs)
        for vc in CLASSES:
            if vc.kind != ECHO:
                continue
            for m, name in vc.outputs:
                if m == machine and isinstance(outputs.get(name), int) and \
                        not isinstance(outputs[name], bool):
                    outputs[name] = self._inverse(vc, outputs[name])
            if (machine, op) in vc.codes:
                code = self._inverse(vc, code)
        return code, outputs


def merge_used(bindings: Iterable[Binding]) -> dict[str, list[int]]:
    """The values several sessions sent (a stateful case's programs), as `Binding.used_json`."""
    merged: dict[str, set[int]] = {}
    for binding in bindings:
        for key, values in binding.used.items():
            merged.setdefault(key, set()).update(values)
    return {k: sorted(v) for k, v in sorted(merged.items())}


def returns_at_once(tracker: Tracker | None, action: Action, param: str, vc: ValueClass) -> bool:
    """True where the model says `action` does not wait: in every candidate state the same
    operation with INFINITE is offered and allowed exactly the same outcomes."""
    if tracker is None or vc.infinite is None:
        return False
    forever = tuple((k, vc.infinite if k == param else v) for k, v in action.args)
    if tracker.kind(action.op, action.args) is not Kind.DEFINED or \
            tracker.kind(action.op, forever) is not Kind.DEFINED:
        return False

    def outcomes(args: tuple[tuple[str, Value], ...]) -> set[tuple[str, Any]]:
        return {(str(a.code), a.next_state) for a in tracker.expected(action.op, args)}

    return outcomes(action.args) == outcomes(forever)


def replayed(values: Mapping[str, Mapping[str, int]] | None) -> Binding:
    """The binding a finished case ran with (its `replay["values"]`), to read its trace as the
    model sees it: echoed values ([out], reply, an abort code) mapped back to the abstract ones."""
    return ValueChooser().binding(values)


def as_modelled(binding: Binding, machine: str, op: str, code: int,
                outputs: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    """A recorded step's code and outputs as the model judges them (see `Binding.observed`)."""
    return binding.observed(machine, op, code, outputs)
