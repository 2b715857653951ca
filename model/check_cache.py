"""A cache on disk of `callgate model check`'s definitive results, so that a run on an unchanged
model does not prove again what it proved before.

`callgate model check` runs its checks as jobs (model/verify.py: the table checks and invariant
proofs, bounded model checking, each machine's obligations, each machine's graph checks, ...).
A job whose every check ended definitively (PROVED, COUNTEREXAMPLE, or CONFLICT: a
counterexample to a known finding) is stored; a job with any UNKNOWN (a solver time-out) or
ERROR (a check that could not run) is never stored, so it runs again next time. A stored job is
taken instead of running it when its key matches; its checks say so (`CheckResult.cached`).

The key is a SHA-256 of everything the job's results depend on:

* every source and data file of the model package (`*.py`, `rules.toml`, `pinned_counts.json`):
  the tables, the invariants, the obligations, the liveness properties, and the code of every
  checker (the proofs, the explorer, the obligation checker, `verify` itself);
* the versions of Python, Z3 and networkx;
* the job: its function's name and its arguments (the machine, the part, the BMC depth, ...);
* for tables other than the registry's (a broken copy, a mutant), those tables written out field
  by field (`explorer.cache.canonical`). The registry's own tables are read from the source the
  first item covers (the pool's processes import them afresh from there, too).

Where: a `checks` folder beside the state graphs of `explorer/cache.py` (`$CALLGATE_CACHE_DIR`,
else `callgate/graphs` in the user's cache directory). `CALLGATE_CACHE=off` turns this cache off
as well; `callgate model check --no-cache` runs every check whatever the setting. Entries are
Python pickles, read only from that folder (it must be the user's own), written to a temporary
file renamed into place, and removed when not used for `explorer.cache.MAX_AGE_DAYS`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import TypeVar

import networkx
import z3

from callgate.model.explorer import cache as graph_cache
from callgate.model.proofs.results import CheckResult, Result
from callgate.model.transitions import Machine

FORMAT = 1  # bump when what is stored changes shape
# The results a job may hold to be stored: each one found by a finished proof or search.
DEFINITIVE = frozenset({Result.PROVED, Result.COUNTEREXAMPLE, Result.CONFLICT})
SUFFIXES = (".py", ".toml", ".json")
T = TypeVar("T")


def enabled() -> bool:
    """Whether the cache is on (`CALLGATE_CACHE` is not off)."""
    return graph_cache.enabled()


def folder() -> Path:
    """Where the results are kept: `checks` beside the graph cache's entries."""
    return graph_cache.cache_dir() / "checks"


def model_digest(root: Path | None = None) -> str:
    """A digest of every source and data file (`SUFFIXES`) of the model package at `root`
    (default: this one), by relative path and content."""
    return _model_digest(root or Path(__file__).resolve().parent)


@functools.cache
def _model_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in SUFFIXES and p.is_file()
                       and "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def versions() -> str:
    """The versions of what the checks run on."""
    return f"python {sys.version}; z3 {z3.get_full_version()}; networkx {networkx.__version__}"


def key(job: str, args: tuple[object, ...], tables: Mapping[str, Machine] | None) -> str:
    """The key of one job's results (see the module's doc). `tables` None: the registry's."""
    digest = hashlib.sha256()
    parts = [str(FORMAT), model_digest(), versions(), job, repr(args)]
    parts.append("registry" if tables is None else graph_cache.canonical(
        [tables[name] for name in sorted(tables)]))
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def checks_in(value: object) -> list[CheckResult]:
    """Every CheckResult a job's value holds (in lists, tuples and dataclasses)."""
    if isinstance(value, CheckResult):
        return [value]
    if isinstance(value, (list, tuple)):
        return [c for item in value for c in checks_in(item)]
    if is_dataclass(value) and not isinstance(value, type):
        return [c for f in fields(value) for c in checks_in(getattr(value, f.name))]
    return []


def definitive(value: object) -> bool:
    """Every check in the value ended with a definitive result (and there is one at least)."""
    found = checks_in(value)
    return bool(found) and all(c.result in DEFINITIVE for c in found)


def marked(value: T) -> T:
    """The value with each of its checks marked as taken from the cache."""
    if isinstance(value, CheckResult):
        return replace(value, cached=True)
    if isinstance(value, list):
        return [marked(v) for v in value]  # type: ignore[return-value]
    if isinstance(value, tuple):
        return tuple(marked(v) for v in value)  # type: ignore[return-value]
    if is_dataclass(value) and not isinstance(value, type) and checks_in(value):
        return replace(value, **{f.name: marked(getattr(value, f.name))
                                 for f in fields(value)})
    return value


def load(name: str) -> tuple[bool, object]:
    """(found, the stored value) of the entry `name`; an entry that cannot be read, or holds
    anything but a definitive value of that key, is not found."""
    path = folder() / f"{name}.pickle"
    try:
        stored = pickle.loads(path.read_bytes())
    except Exception:  # missing, truncated, from another version: run again
        return False, None
    if not (isinstance(stored, tuple) and len(stored) == 2 and stored[0] == name
            and definitive(stored[1])):
        return False, None
    with contextlib.suppress(OSError):
        os.utime(path)  # in use: not pruned
    return True, marked(stored[1])


def store(name: str, value: object) -> bool:
    """Keep a definitive value under `name` (anything else is not kept); whether it was."""
    if not definitive(value):
        return False
    data = pickle.dumps((name, value), protocol=pickle.HIGHEST_PROTOCOL)
    where = folder()
    try:
        where.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=where, prefix=".tmp-")
    except OSError:  # a read-only or full disk: the run goes on without the cache
        return False
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, where / f"{name}.pickle")
    except OSError:
        Path(temporary).unlink(missing_ok=True)
        return False
    _prune(where)
    return True


def _prune(where: Path) -> None:
    oldest = time.time() - graph_cache.MAX_AGE_DAYS * 86400
    for entry in where.iterdir():
        with contextlib.suppress(OSError):
            if entry.stat().st_mtime < oldest:
                entry.unlink()


def cached(fn: Callable[..., T], args: tuple[object, ...],
           tables: Mapping[str, Machine] | None) -> tuple[str, Callable[[], T] | None]:
    """(the job's key, a function giving the stored value) or (key, None) when not stored."""
    name = key(f"{fn.__module__}.{fn.__qualname__}", args, tables)
    found, value = load(name)
    if not found:
        return name, None
    return name, lambda: value  # type: ignore[return-value]
