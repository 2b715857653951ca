"""How `make test` runs the tests (README "Running the tests"): the tests of one file in one
worker process, the tests that bound wall time afterwards and alone, and a lock for what tests in
different files share."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.conftest import ROOT, exclusive


def _overlap(tmp_path: Path, locked: bool) -> bool:
    """Two threads each hold the block for 0.2 s; True if both were inside at once."""
    inside: list[int] = []
    overlapped = threading.Event()

    def work() -> None:
        def body() -> None:
            inside.append(1)
            if len(inside) > 1:
                overlapped.set()
            time.sleep(0.2)
            inside.pop()
        if locked:
            with exclusive(tmp_path):
                body()
        else:
            body()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return overlapped.is_set()


def test_the_lock_lets_one_holder_in_at_a_time(tmp_path: Path) -> None:
    # flock locks belong to the open file, so two threads opening it are two holders.
    assert _overlap(tmp_path, locked=False), "without the lock the two blocks overlap"
    assert not _overlap(tmp_path, locked=True)
    assert (tmp_path / ".callgate.lock").is_file()


def test_make_test_runs_every_test_once_and_fails_when_a_part_ran_none() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\npytest:", 1)[1].split("\n\n", 1)[0]
    runs = [line for line in recipe.splitlines() if "-m pytest" in line]
    assert len(runs) == 2, recipe
    assert '-n $(PYTEST_WORKERS) --dist loadfile -m "not serial"' in runs[0]
    assert runs[1].split("-m pytest", 1)[1].split(";")[0].strip() == "-m serial"
    assert "$$rc -eq 5" in recipe and "$$rc2 -eq 5" in recipe
    assert recipe.rstrip().endswith("[ $$rc -eq 0 ] && [ $$rc2 -eq 0 ]")
