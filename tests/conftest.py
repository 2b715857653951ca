"""Shared test fixtures: where the specification lives beside the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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
