"""How `callgate model check` runs its jobs (model/verify.py): each job's CPU and wall time in
the report, the cycle collector off while a job runs and back after, and workers forked from a
parent that has checked nothing yet giving the results spawned workers give."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest

from callgate.model import verify
from callgate.model.families import MACHINES
from callgate.model.transitions import Machine, successors

ROOT = Path(__file__).resolve().parent.parent


def _collector_seen(tables: Mapping[str, Machine] | None, seen: list[bool]) -> str:
    seen.append(gc.isenabled())
    return "done"


def _raises(tables: Mapping[str, Machine] | None) -> None:
    raise ValueError("broken job")


def test_a_job_runs_with_the_collector_off_and_leaves_it_as_it_was() -> None:
    seen: list[bool] = []
    was = gc.isenabled()
    try:
        gc.enable()
        value, cpu, wall, pid = verify._timed_job(_collector_seen, None, seen)
        assert (value, seen, gc.isenabled(), pid) == ("done", [False], True, os.getpid())
        assert cpu >= 0.0 and wall >= 0.0
        with pytest.raises(ValueError, match="broken job"):
            verify._timed_job(_raises, None)
        assert gc.isenabled()  # back on after a job that raised
        gc.disable()
        verify._timed_job(_collector_seen, None, seen)
        assert not gc.isenabled()  # off before: left off
    finally:
        if was:
            gc.enable()
        else:
            gc.disable()


def test_each_job_reports_its_cpu_and_wall_time_in_submission_order() -> None:
    jobs = verify._Jobs(MACHINES, pooled=False)
    try:
        obligations = jobs.submit(verify._obligation_checks, "event")
        machine = jobs.submit(verify._machine_checks, "event")
        assert jobs.times == [None, None]  # not run before they are asked for
        machine()
        checks = obligations()
    finally:
        jobs.close()
    assert checks and [t.job for t in jobs.times if t] == [
        "obligation_checks('event')", "machine_checks('event')"]
    for t in jobs.times:
        assert t is not None and t.checked == "now" and t.worker == 0
        assert t.cpu_seconds > 0.0 and t.wall_seconds > 0.0
    report = verify.Report((), None, (), 1.0, jobs=tuple(t for t in jobs.times if t))
    data = report.to_json()["jobs"]
    assert isinstance(data, dict) and data["workers"] == "none"
    assert [j["job"] for j in data["each"]] == [t.job for t in jobs.times if t]
    assert data["cpu_seconds"] == pytest.approx(sum(t.cpu_seconds for t in jobs.times if t),
                                                abs=0.01)


def test_a_parent_that_has_checked_something_is_not_fresh() -> None:
    # In this process other tests may have run Z3 or started threads: it is seldom fresh, and
    # once a table answered a step it never is.
    machine = MACHINES["event"]
    assert list(successors(machine, machine.initial[0]))
    assert not verify.fresh_parent()
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not verify.fresh_parent()
    finally:
        stop.set()
        thread.join()


# Runs in a fresh interpreter: fork is allowed there, and the same jobs are run again in spawned
# workers; what each gives is printed as JSON.
SCRIPT = """
import json, sys
from callgate.model import verify
from callgate.model.families import MACHINES
fresh = verify.fresh_parent()
def run(force_spawn):
    if force_spawn:
        verify.fresh_parent = lambda: False
    jobs = verify._Jobs(MACHINES, pooled=True)
    try:
        gets = [jobs.submit(verify._obligation_checks, "event"),
                jobs.submit(verify._machine_checks, "event")]
        obligations, machine = gets[0](), gets[1]()
    finally:
        jobs.close()
    checks = obligations + machine.agreement + machine.explorer + machine.liveness
    return jobs.method, [[c.name, c.kind, c.result.value, c.detail] for c in checks], \\
        sorted({t.worker for t in jobs.times})
forked = run(False)
spawned = run(True)
json.dump({"fresh": fresh, "forked": forked, "spawned": spawned}, sys.stdout)
"""


@pytest.mark.skipif(sys.platform != "linux" or (os.cpu_count() or 1) < 2,
                    reason="fork and two workers are what this compares")
def test_forked_workers_give_the_results_spawned_ones_give() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CALLGATE_CACHE": "off"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["fresh"] is True  # a new interpreter that imported the model is fresh
    (fork_method, forked, fork_workers), (spawn_method, spawned, _) = (data["forked"],
                                                                        data["spawned"])
    assert (fork_method, spawn_method) == ("fork", "spawn")
    assert 0 not in fork_workers  # the jobs ran in the pool, not here
    assert forked and forked == spawned
    assert {c[2] for c in forked} == {"proved"}
