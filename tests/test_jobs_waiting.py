"""`--jobs auto`'s waiting worker (conformance/jobs.py): one more process than cores that takes
only the units that mostly wait; the cases and verdicts are those of a one-process run."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

from callgate.conformance import jobs, units
from callgate.conformance.gate import run_gate
from tests.fakes import std_event_keeps_signal
from tests.test_jobs import _cases, _coverage, _events, _options

CHOSEN = [units.Unit("walk-a", "walk", "a", cost=9), units.Unit("ident-a", "ident", "a", cost=5),
          units.Unit("race-x", "race", "x", cost=7), units.Unit("walk-b", "walk", "b", cost=1)]


def _run(waiting: int) -> jobs.ParallelRun:
    def ignore(*args: Any) -> None:
        return None

    run = jobs.ParallelRun(std_event_keeps_signal, std_event_keeps_signal().capabilities(),
                           None, None, CHOSEN, 2, ignore, ignore, ignore, waiting)  # type: ignore[arg-type]
    run._pending = units.longest_first(CHOSEN)  # walk-a, race-x, ident-a, walk-b
    return run


def test_the_waiting_worker_takes_only_waiting_units_costliest_first() -> None:
    run = _run(1)
    waiting = jobs._Worker(None, None, waiting=True)  # type: ignore[arg-type]
    other = jobs._Worker(None, None)  # type: ignore[arg-type]
    assert [CHOSEN[run._pending[run._next_for(other) or 0]].id] == ["walk-a"]
    position = run._next_for(waiting)
    assert position is not None and CHOSEN[run._pending[position]].id == "race-x"
    run._pending = [i for i in run._pending if CHOSEN[i].kind not in jobs.WAITING]
    assert run._next_for(waiting) is None  # no waiting unit left: it ends
    assert run._next_for(other) == 0


def test_a_waiting_worker_is_added_only_by_jobs_auto_to_a_run_with_waiting_units() -> None:
    assert jobs.waiting_workers(None, 2, CHOSEN) == 1
    assert jobs.waiting_workers(2, 2, CHOSEN) == 0  # --jobs N: N processes
    assert jobs.waiting_workers(None, 1, CHOSEN) == 0  # a run in one process
    walks = [u for u in CHOSEN if u.kind == "walk"]
    assert jobs.waiting_workers(None, 2, walks) == 0


def test_jobs_auto_with_a_waiting_worker_gives_the_cases_of_jobs_1(tmp_path: Path,
                                                                     monkeypatch: Any) -> None:
    monkeypatch.setattr(jobs, "auto_jobs", lambda: 2)  # whatever this machine has
    ran: dict[str, list[str]] = {"waiting": [], "other": []}
    handed = jobs.ParallelRun._hand_out

    def hand_out(self: jobs.ParallelRun, worker: Any) -> None:
        handed(self, worker)
        if worker.unit is not None:
            ran["waiting" if worker.waiting else "other"].append(self.chosen[worker.unit].kind)

    monkeypatch.setattr(jobs.ParallelRun, "_hand_out", hand_out)
    one = run_gate(std_event_keeps_signal(), _options(tmp_path / "one", jobs=1))
    auto = run_gate(std_event_keeps_signal(), _options(tmp_path / "auto", jobs=None))
    assert _cases(tmp_path / "one") == _cases(tmp_path / "auto")
    assert one.summary == auto.summary and one.summary.failed > 0
    assert _coverage(tmp_path / "one") == _coverage(tmp_path / "auto") != set()
    used = _events(tmp_path / "auto")[-1]["jobs"]
    assert used["workers"] == 2 and used["waiting"] == 1 and used["died"] == 0
    assert ran["waiting"] and set(ran["waiting"]) <= jobs.WAITING  # it ran waiting units only
    assert ran["other"]
    assert multiprocessing.active_children() == []


