"""The adapter protocol: how the harness drives an implementation, in-process or out-of-process.

The vocabulary is the model's. A case declares its slots (one object each: a call object with
its server object, an event, a container, an RPC call), and then sends requests `(slot, op,
args)` where `op` and `args` are exactly the operation and parameter names of the slot's machine
in the model (`callgate model show FAMILY` lists them). The adapter answers each request with an
`Observation`: the numeric return code and named outputs.

Operations whose name starts with `server_` are the harness-controlled test server's actions
(DESIGN.md principle 6): the adapter's test server holds every call (each Begin_, each async RPC
dispatch) until the harness sends one of them.

An adapter declares `Capabilities`: the features it implements (`FEATURES`, whose names and
meanings live in `protocol/features.py`), its choices for the model's variation points (`pins`)
and whether it serves several requests at once (`concurrent`). A request for a missing feature is
never sent; the cases that need it are reported `not_applicable`, and so are the parallel cases
when the adapter serves one request at a time. Importing this module loads no model table.

Adapters signal trouble with two exceptions: `NotApplicable` (the adapter declines the request:
a verdict of `not_applicable` only where the harness can check why, an earlier refusal in the
case; what an adapter cannot do it declares in `Capabilities.absent`, and any other decline is
an `error`: `callgate.conformance.judge.declines`) and `AdapterFault` (the adapter broke: crash,
garbage, protocol violation; a verdict of `error` with the evidence). A hang is caught by the
harness's per-step timeout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from callgate.conformance.protocol.features import (
    CONFIG_FEATURES,
    FEATURES,
    PARAM_FEATURES,
    config_features_needed,
    features_needed,
    operation_features,
)
from callgate.model.transitions import Value
from callgate.model.variations import expand_aliases

__all__ = [
    "CONFIG_FEATURES",
    "FEATURES",
    "FINITE_WAIT_MS",
    "PARAM_FEATURES",
    "PROTOCOL_VERSION",
    "Adapter",
    "AdapterFault",
    "Capabilities",
    "NotApplicable",
    "Observation",
    "Request",
    "Session",
    "SlotSpec",
    "config_features_needed",
    "features_needed",
    "operation_features",
]

PROTOCOL_VERSION = 1

# What `Capabilities.sessions` may say.
SESSIONS = ("many", "one")

# How long a "finite" ISynchronize::Wait / WaitMultiple waits, in milliseconds.
FINITE_WAIT_MS = 50


@dataclass(frozen=True)
class SlotSpec:
    """One object a case uses: its name, its machine, and its configuration.

    `config` is the slot's initial state as field values (for `com_call`: `factory`, whether the
    server object implements ICallFactory, and `cancellable`, whether cancellation is enabled on
    the thread that processes the call).
    """

    name: str
    machine: str
    config: Mapping[str, Value] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """One operation on one slot. `wait_ms` bounds operations that wait (a 'finite' timeout, or
    waiting for a notification); other operations ignore it."""

    slot: str
    op: str
    args: Mapping[str, Value] = field(default_factory=dict)
    wait_ms: int = FINITE_WAIT_MS


@dataclass(frozen=True)
class Observation:
    """What the implementation did: the return code (unsigned 32-bit for HRESULTs) and outputs."""

    code: int
    outputs: Mapping[str, Value] = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    """What an adapter declares about its implementation.

    `concurrent`: the adapter carries out several requests of one session at the same time, each
    on the harness thread (in process) or as it arrives (JSON lines), rather than one after the
    other. Parallel cases need that to exercise a race; an adapter that does not declare it gets
    them `not_applicable`. False unless declared: an adapter that queues requests behind one
    another would pass every race without running any.

    `sessions`: whether sessions of the adapter may run at the same time in separate processes
    (`callgate run --jobs N` starts the adapter once in each of N worker processes): "many"
    (the default: each worker has its own adapter, in its own process) or "one" (the adapter
    uses something only one process may hold at a time, such as a fixed endpoint name or port;
    the run then uses one process, with a note).
    """

    implementation: str
    version: str
    features: frozenset[str]
    pins: Mapping[str, str] = field(default_factory=dict)
    notes: str = ""
    concurrent: bool = False
    # What the adapter cannot do, each with why (an entry point the implementation lacks, ...):
    # features it does not declare (the report gives the rules only those features reach
    # `not_applicable` with that reason instead of `untested`), and operations `MACHINE.OP` and
    # argument forms `MACHINE.OP(PARAM=VALUE)` of declared features, which are never sent
    # (`callgate.conformance.judge.declines`).
    absent: Mapping[str, str] = field(default_factory=dict)
    sessions: str = "many"

    def __post_init__(self) -> None:
        # Old pin names (variations.ALIASES) stand for the points they were split into, so an
        # adapter written against them keeps working; `gate.check_capabilities` validates.
        object.__setattr__(self, "pins", expand_aliases(self.pins))

    def unknown_features(self) -> set[str]:
        return set(self.features) - FEATURES


class NotApplicable(Exception):
    """The adapter declines this request. The case is `not_applicable` only if an earlier request
    of the case refused the object this one needs; otherwise it is an `error` (declare what the
    adapter cannot do in `Capabilities.absent`)."""


class AdapterFault(Exception):
    """The adapter broke (crash, garbage, protocol violation). `evidence` is kept in the report."""

    def __init__(self, message: str, evidence: str = "") -> None:
        super().__init__(message)
        self.evidence = evidence


@runtime_checkable
class Session(Protocol):
    """One case's objects. The harness opens a fresh session per case and closes it after."""

    def perform(self, request: Request) -> Observation:
        """Carry out one request and report what happened."""
        ...

    def close(self) -> None:
        """Release every object and let every held server call go; must not block for long."""
        ...


@runtime_checkable
class Adapter(Protocol):
    """An implementation under test, as the harness sees it."""

    def capabilities(self) -> Capabilities:
        ...

    def open_session(self, slots: Sequence[SlotSpec]) -> Session:
        ...

    def shutdown(self) -> None:
        ...
