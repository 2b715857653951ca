"""Shared test fixtures: where the specification lives beside the project; how tests are grouped
when `make test` spreads them over several processes (pytest-xdist, `--dist loadgroup`).

Grouping: tests that share a module- or class-scoped fixture are kept in one worker process, so
an expensive fixture (a gate run, a model check, a build) is made once, not once per worker.
Tests that must not run at the same time as each other (one Wine prefix, one build folder) carry
`pytest.mark.xdist_group(name)` with the same name; the README's "Running the tests" says when.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The scopes of fixtures that are made once for several tests of one module.
_SHARED_SCOPES = frozenset({"module", "class", "package"})


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


def shares_a_fixture(item: pytest.Item) -> bool:
    """True if the test uses a fixture made once per module, class or package."""
    if not isinstance(item, pytest.Function):
        return False
    return any(defs and defs[-1].scope in _SHARED_SCOPES
               for defs in item._fixtureinfo.name2fixturedefs.values())


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put each test that uses a shared fixture in its module's xdist group (unless it names a
    group of its own), so that the fixture is made by one worker only. Without `--dist loadgroup`
    the mark does nothing."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None and shares_a_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
