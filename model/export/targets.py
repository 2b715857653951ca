"""The machines and compositions the engines can be asked about, by name.

* a machine's name (`com_call`, `rpc_call`, ...): that machine alone;
* a composition `callgate model check` explores: `two_call_objects`, the coupled compositions of
  `callgate.model.coupled` (`call_with_event`, `calls_one_server`), the benchmark's
  `two_call_objects_and_container` and the bounded model checker's `clients`;
* `MACHINE*N`: N independent objects of one machine, in slots named by the machine's slot prefix
  (`com_call*5`: five call objects `c0` ... `c4`), for compositions too large for the explorer.
"""

from __future__ import annotations

import re

from callgate.model import coupled
from callgate.model.families import MACHINES
from callgate.model.transitions import Composition, Machine, ModelError

Target = Machine | Composition

_REPEATED = re.compile(r"^(?P<machine>[a-z_]+)\*(?P<count>[0-9]+)$")


def _named() -> dict[str, Composition]:
    from callgate.model import verify

    found = [verify.DEFAULT_COMPOSITION, *coupled.COUPLED, verify.LARGE_COMPOSITION,
             verify.BMC_COMPOSITION]
    return {c.name: c for c in found}


def names() -> list[str]:
    """Every fixed name `resolve` accepts (beside the `MACHINE*N` pattern)."""
    return [*MACHINES, *_named()]


def repeated(machine: Machine, count: int) -> Composition:
    """`count` independent objects of `machine`."""
    if count < 1:
        raise ModelError("a composition needs at least one object")
    prefix = machine.slot_prefix or machine.name[0]
    return Composition(f"{machine.name}*{count}",
                       tuple((f"{prefix}{i}", machine) for i in range(count)))


def resolve(name: str) -> Target:
    """The machine or composition called `name` (ModelError naming the choices if none)."""
    if name in MACHINES:
        return MACHINES[name]
    named = _named()
    if name in named:
        return named[name]
    match = _REPEATED.match(name)
    if match and match["machine"] in MACHINES:
        return repeated(MACHINES[match["machine"]], int(match["count"]))
    raise ModelError(f"no machine or composition {name!r}; known: {', '.join(names())}, or "
                     "MACHINE*N for N objects of one machine (com_call*5)")
