"""Shared test fixtures: where the specification lives beside the project; one lock for what
tests in different files share when `make test` runs them in several processes (pytest-xdist,
`--dist loadfile`: the tests of one file run in one worker; README "Running the tests")."""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from callgate.conformance.cases import sequences

ROOT = Path(__file__).resolve().parent.parent
C_EXAMPLE = ROOT / "examples" / "c-adapter"


@pytest.fixture(scope="module")
def plan() -> sequences.Plan:
    """The reference adapter's plan of every machine, built once per test
    module that asks for it (test_repeat.py, test_multi.py); a module's own `plan` fixture
    overrides it."""
    from callgate.conformance.cases import sequences
    from callgate.conformance.implementations.reference.adapter import ReferenceAdapter

    adapter = ReferenceAdapter()
    try:
        return sequences.plan(adapter.capabilities())
    finally:
        adapter.shutdown()


def domain_path() -> Path | None:
    """spec/DOMAIN.md: $CALLGATE_DOMAIN, or ../shared/spec/DOMAIN.md beside the checkout."""
    env = os.environ.get("CALLGATE_DOMAIN")
    candidates = [Path(env)] if env else []
    candidates.append(ROOT.parent / "shared" / "spec" / "DOMAIN.md")
    return next((p for p in candidates if p.is_file()), None)


@pytest.fixture(scope="session")
def domain_text() -> str:
    path = domain_path()
    if path is None:
        pytest.skip("spec/DOMAIN.md not found beside the checkout; set CALLGATE_DOMAIN to its path")
    return path.read_text(encoding="utf-8")


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold `folder`'s lock file (`.callgate.lock`, ignored by git) while the block runs: tests in
    other worker processes that take the same lock wait for it. The kernel drops the lock if the
    process dies."""
    with open(folder / ".callgate.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_c_example() -> subprocess.CompletedProcess[str]:
    """`make -C examples/c-adapter`, one build at a time across the test workers (on a fresh
    checkout two builds at once would write the same program)."""
    with exclusive(C_EXAMPLE):
        return subprocess.run(["make", "-C", str(C_EXAMPLE)], capture_output=True, text=True,
                              timeout=120, check=False)


@pytest.fixture(scope="session", autouse=True)
def graph_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The state graphs the tests build are cached (callgate.model.explorer.cache) in a folder
    of this session's own, not in the user's cache directory: no test reads what an earlier
    session left there. Tests that need another place set CALLGATE_CACHE_DIR themselves."""
    before = os.environ.get("CALLGATE_CACHE_DIR")
    os.environ["CALLGATE_CACHE_DIR"] = str(tmp_path_factory.mktemp("graph-cache"))
    yield
    if before is None:
        os.environ.pop("CALLGATE_CACHE_DIR", None)
    else:
        os.environ["CALLGATE_CACHE_DIR"] = before
