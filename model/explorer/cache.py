"""A cache on disk of single machines' state graphs, so that a run does not rebuild them.

Every gate run builds the same graphs: the plan's (each machine under the adapter's pins and
features) and the report's diagrams' (each machine unpinned). For the RPC call machine that is
tens of thousands of model steps, seconds of work, with the same answer each time.
`cached_graph(machine, pins, allow)` returns what `build_graph` returns, loading it from the
cache when an entry with the same key is there and storing it otherwise.

The key is a SHA-256 of everything the graph depends on:

* the source of the model package (every `.py` file under `callgate/model`: the tables, the
  step semantics, the explorer), so that any change to the model's code is a new key;
* the machine itself, written out field by field in a canonical form (a machine changed at run
  time, as a test or a mutant does, gets its own key);
* the pins, and which (operation, arguments) pairs `allow` admits (so the adapter's features
  are part of the key through what they allow, whatever decides it).

An entry that cannot be read, or holds anything but the graph of that key, is ignored and
built again. Writes go to a temporary file renamed into place, so processes that share the
cache (parallel jobs, the mutant pool) never read a half-written entry.

Where: `$CALLGATE_CACHE_DIR` if set, else `callgate/graphs` in the user's cache directory
(`$XDG_CACHE_HOME`, by default `~/.cache`; `%LOCALAPPDATA%` on Windows), never the working
directory. `CALLGATE_CACHE=off` (or `0`, `no`) turns the cache off: every graph is built.
Entries are Python pickles, read only from that directory: it must be the user's own. Entries
not used for `MAX_AGE_DAYS` are removed when a new one is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import gc
import hashlib
import os
import pickle
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar, cast

from callgate.model.explorer.graph import Allow, StateGraph, build_graph
from callgate.model.transitions import Machine, Pins

FORMAT = 1  # bump when what is stored changes shape
MAX_AGE_DAYS = 30
OFF = {"0", "off", "no", "false"}
T = TypeVar("T")


def enabled() -> bool:
    """Whether the cache is on (`CALLGATE_CACHE` is not one of `OFF`)."""
    return os.environ.get("CALLGATE_CACHE", "").strip().lower() not in OFF


def cache_dir() -> Path:
    """Where the graphs are kept (see the module's doc)."""
    explicit = os.environ.get("CALLGATE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "callgate" / "graphs"


@functools.cache
def _source_digest() -> str:
    """A digest of every Python file of the model package."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def canonical(value: object) -> str:
    """`value` written out the same way in every process: dataclasses field by field (their
    private fields, memos and indexes, left out), sets sorted. Anything else by `repr`."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        inner = ",".join(f"{f.name}={canonical(getattr(value, f.name))}"
                         for f in dataclasses.fields(value) if not f.name.startswith("_"))
        return f"{type(value).__qualname__}({inner})"
    if isinstance(value, (frozenset, set)):
        return "{" + ",".join(sorted(canonical(v) for v in value)) + "}"
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(sorted(f"{canonical(k)}:{canonical(v)}"
                                     for k, v in value.items())) + "}"
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    return repr(value)


# canonical(machine) of each live machine object: a run asks for the keys of one machine several
# times (the plan's graphs under its pins, the report's unpinned ones), and writing a machine out
# takes a good part of a second for the RPC call's table. A machine is frozen; one changed at run
# time is another object (`dataclasses.replace`), and an entry goes when its machine does.
_CANONICAL: dict[int, tuple[weakref.ReferenceType[Machine], str]] = {}


def canonical_machine(machine: Machine) -> str:
    """`canonical(machine)`, computed once per machine object."""
    found = _CANONICAL.get(id(machine))
    if found is not None and found[0]() is machine:
        return found[1]
    text = canonical(machine)
    ident = id(machine)
    _CANONICAL[ident] = (weakref.ref(machine, lambda _: _CANONICAL.pop(ident, None)), text)
    return text


def key(machine: Machine, pins: Pins | None = None, allow: Allow | None = None) -> str:
    """The cache key of `build_graph(machine, pins, allow)` (see the module's doc)."""
    admitted = [(op.name, args) for op in machine.operations for args in op.all_args()
                if allow is None or allow(op.name, args)]
    digest = hashlib.sha256()
    for part in (str(FORMAT), _source_digest(), canonical_machine(machine),
                 canonical(dict(pins or {})), canonical(admitted)):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _load(path: Path, name: str, machine: Machine) -> StateGraph | None:
    started = time.perf_counter()
    collecting = gc.isenabled()
    gc.disable()  # a graph is many small objects and no cycles to collect while loading
    try:
        stored = pickle.loads(path.read_bytes())
    except Exception:  # missing, truncated, from another version: built again
        return None
    finally:
        if collecting:
            gc.enable()
    if not (isinstance(stored, tuple) and len(stored) == 2 and stored[0] == name
            and isinstance(stored[1], StateGraph)):
        return None
    graph: StateGraph = stored[1]
    with contextlib.suppress(OSError):
        os.utime(path)  # in use: not pruned
    return dataclasses.replace(graph, slots=((machine.name, machine),),
                               seconds=time.perf_counter() - started, _adjacency=None)


def _store(path: Path, name: str, graph: StateGraph) -> None:
    # The machine is not stored (the caller holds it, with its memos); the adjacency is rebuilt.
    bare = dataclasses.replace(graph, slots=(), _adjacency=None)
    _write(path, pickle.dumps((name, bare), protocol=pickle.HIGHEST_PROTOCOL))


def _write(path: Path, data: bytes) -> None:
    """Store `data` at `path` through a temporary file renamed into place; prune old entries."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    except OSError:  # a read-only or full disk: the run goes on without the cache
        return
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
        return
    _prune(path.parent)


def _prune(where: Path) -> None:
    """Remove entries (and stray temporary files) not used for `MAX_AGE_DAYS`."""
    oldest = time.time() - MAX_AGE_DAYS * 86400
    for entry in where.iterdir():
        with contextlib.suppress(OSError):
            if entry.stat().st_mtime < oldest:
                entry.unlink()


def value_key(tag: str, parts: Iterable[str]) -> str:
    """The cache key of a value derived from the model (`cached_value`): `tag`, the model
    package's source, and `parts` (whatever else the value depends on, written out as text)."""
    digest = hashlib.sha256()
    for part in (str(FORMAT), tag, _source_digest(), *parts):
        digest.update(part.encode())
        digest.update(b"\0")
    return f"{tag}-{digest.hexdigest()}"


def cached_value(tag: str, parts: Iterable[str], build: Callable[[], T],
                 kind: type | tuple[type, ...] = object) -> T:
    """`build()`, from the cache when it holds an entry of the same key (`value_key`), else built
    and stored; with the cache off, just `build()`. For values derived from the model that take
    seconds to compute and the same every run (the report's diagram projections). `parts` must
    name everything the value depends on besides the model's source; an entry that cannot be
    read, or holds another key or anything but a `kind`, is built again."""
    if not enabled():
        return build()
    name = value_key(tag, parts)
    path = cache_dir() / f"{name}.pickle"
    collecting = gc.isenabled()
    gc.disable()
    try:
        stored = pickle.loads(path.read_bytes())
    except Exception:  # missing, truncated, from another version: built again
        stored = None
    finally:
        if collecting:
            gc.enable()
    if isinstance(stored, tuple) and len(stored) == 2 and stored[0] == name \
            and isinstance(stored[1], kind):
        with contextlib.suppress(OSError):
            os.utime(path)  # in use: not pruned
        return cast(T, stored[1])
    value = build()
    _write(path, pickle.dumps((name, value), protocol=pickle.HIGHEST_PROTOCOL))
    return value


def cached_graph(machine: Machine, pins: Pins | None = None,
                 allow: Allow | None = None) -> StateGraph:
    """`build_graph(machine, pins, allow)`, from the cache when it holds it (see the module's
    doc); with the cache off, just `build_graph`."""
    if not enabled():
        return build_graph(machine, pins=pins, allow=allow)
    name = key(machine, pins, allow)
    path = cache_dir() / f"{name}.pickle"
    found = _load(path, name, machine)
    if found is not None:
        return found
    graph = build_graph(machine, pins=pins, allow=allow)
    _store(path, name, graph)
    return graph
