"""Finding adapters: the built-in names, and `module:attribute` for anyone else's."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from callgate.conformance.protocol.adapter import Adapter


class AdapterNotFound(Exception):
    """The adapter spec does not name a loadable adapter; the message says what to pass."""


@dataclass(frozen=True)
class BuiltIn:
    """A built-in adapter: its name, where it lives, and one line about it."""

    name: str
    target: str
    about: str


BUILT_INS: dict[str, BuiltIn] = {
    b.name: b for b in (
        BuiltIn("reference", "callgate.conformance.implementations.reference.adapter:ReferenceAdapter",
                "callgate's own concurrent reference implementation, in process"),
        BuiltIn("wine", "callgate.conformance.implementations.wine:make_adapter",
                "Wine's ole32 and rpcrt4 through a native adapter program (`make wine` sets it "
                "up)"),
    )
}


def _usage(spec: str, why: str) -> str:
    names = ", ".join(BUILT_INS)
    return (f"cannot load adapter {spec!r}: {why}. Pass a built-in name ({names}; see "
            f"`callgate adapters`) or module:attribute naming an Adapter class or factory, e.g. "
            f"--adapter callgate.conformance.implementations.reference.adapter:ReferenceAdapter; "
            f"for a program in another "
            f"language use --adapter-cmd \"COMMAND ...\".")


def load(spec: str) -> Adapter:
    """Build the adapter `spec` names: a built-in name, or `module:attribute` (class or factory)."""
    target = BUILT_INS[spec].target if spec in BUILT_INS else spec
    if ":" not in target:
        raise AdapterNotFound(_usage(spec, "it is neither a built-in name nor module:attribute"))
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AdapterNotFound(_usage(spec, f"module {module_name!r} cannot be imported ({exc})")) \
            from exc
    factory: Callable[[], object] | None = getattr(module, attribute, None)
    if factory is None:
        raise AdapterNotFound(_usage(spec, f"module {module_name!r} has no {attribute!r}"))
    try:
        adapter = factory() if callable(factory) else factory
    except TypeError as exc:
        raise AdapterNotFound(_usage(spec, f"{target} cannot be called without arguments ({exc}); "
                                           f"it did not give an Adapter")) from exc
    if not isinstance(adapter, Adapter):
        raise AdapterNotFound(_usage(spec, f"{target} did not give an Adapter (it gave "
                                           f"{type(adapter).__name__}; an adapter has "
                                           f"capabilities(), open_session() and shutdown())"))
    return adapter
