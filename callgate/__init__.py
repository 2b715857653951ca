"""callgate's public face: the names a vendor's adapter and CI need, and nothing else.

A formal model of COM asynchronous call objects and asynchronous RPC (`callgate.model`) and a
conformance gate that runs any implementation against it (`callgate.conformance`). The names
below are the supported API, pinned by a test; everything else under `callgate.model` and
`callgate.conformance` is internal and may move between releases.

The names are loaded on first use (PEP 562), so `import callgate` (and the pytest plugin, which
pytest loads in every session where callgate is installed) costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that defines it
_PUBLIC: dict[str, str] = {
    # the adapter protocol (in-process adapters implement these)
    "Adapter": "callgate.conformance.protocol.adapter",
    "Session": "callgate.conformance.protocol.adapter",
    "Request": "callgate.conformance.protocol.adapter",
    "Observation": "callgate.conformance.protocol.adapter",
    "Capabilities": "callgate.conformance.protocol.adapter",
    "SlotSpec": "callgate.conformance.protocol.adapter",
    "NotApplicable": "callgate.conformance.protocol.adapter",
    "AdapterFault": "callgate.conformance.protocol.adapter",
    # an adapter program in any language, spoken to in JSON lines
    "CommandAdapter": "callgate.conformance.protocol.jsonl",
    # running the gate from Python
    "run_gate": "callgate.conformance.gate",
    "RunOptions": "callgate.conformance.gate",
    "Budget": "callgate.conformance.budgets",
    "BUDGETS": "callgate.conformance.budgets",
    "Expectations": "callgate.conformance.expectations",
    # what a run says
    "Verdict": "callgate.conformance.results",
    "CaseResult": "callgate.conformance.results",
    "Summary": "callgate.conformance.results",
}

__all__ = [
    "BUDGETS", "Adapter", "AdapterFault", "Budget", "Capabilities", "CaseResult", "CommandAdapter",
    "Expectations", "NotApplicable", "Observation", "Request", "RunOptions", "Session", "SlotSpec",
    "Summary", "Verdict", "__version__", "run_gate",
]

if TYPE_CHECKING:
    from callgate.conformance.budgets import BUDGETS, Budget
    from callgate.conformance.expectations import Expectations
    from callgate.conformance.gate import RunOptions, run_gate
    from callgate.conformance.protocol.adapter import (
        Adapter,
        AdapterFault,
        Capabilities,
        NotApplicable,
        Observation,
        Request,
        Session,
        SlotSpec,
    )
    from callgate.conformance.protocol.jsonl import CommandAdapter
    from callgate.conformance.results import CaseResult, Summary, Verdict


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib import metadata

        try:
            return metadata.version("callgate")
        except metadata.PackageNotFoundError:  # run from a checkout that is not installed
            return "0+unknown"
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'callgate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
