"""How the tests are spread over worker processes (tests/conftest.py, README "Running the tests"):
a test that uses a module-scoped fixture is put in its module's xdist group, so one worker makes
the fixture once; a test that names its own group keeps it; other tests carry no group."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT, shares_a_fixture

MODULE = "tests/test_grouping.py"


@pytest.fixture(scope="module")
def made_once() -> int:
    return 1


@pytest.fixture
def made_each_time() -> int:
    return 2


def _groups(node: pytest.Item) -> list[object]:
    return [mark.args[0] if mark.args else mark.kwargs.get("name")
            for mark in node.iter_markers("xdist_group")]


def test_a_test_using_a_module_fixture_is_in_its_modules_group(request: pytest.FixtureRequest,
                                                                 made_once: int) -> None:
    assert shares_a_fixture(request.node)
    assert _groups(request.node) == [MODULE]


def test_a_test_without_shared_fixtures_has_no_group(request: pytest.FixtureRequest,
                                                       made_each_time: int, tmp_path: Path) -> None:
    assert not shares_a_fixture(request.node)
    assert _groups(request.node) == []


@pytest.mark.xdist_group("elsewhere")
def test_a_test_naming_its_own_group_keeps_only_that_one(request: pytest.FixtureRequest,
                                                          made_once: int) -> None:
    assert shares_a_fixture(request.node)
    assert _groups(request.node) == ["elsewhere"]


def test_make_test_runs_every_test_once_and_fails_when_a_part_ran_none() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\npytest:", 1)[1].split("\n\n", 1)[0]
    runs = [line for line in recipe.splitlines() if "-m pytest" in line]
    assert len(runs) == 2, recipe
    assert "-n $(PYTEST_WORKERS) --dist loadgroup -m \"not serial\"" in runs[0]
    assert runs[1].split("-m pytest", 1)[1].split(";")[0].strip() == "-m serial"
    assert "$$rc -eq 5" in recipe and "$$rc2 -eq 5" in recipe
    assert recipe.rstrip().endswith("[ $$rc -eq 0 ] && [ $$rc2 -eq 0 ]")
