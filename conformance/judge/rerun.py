"""Run a recorded case again from its replay (`CaseResult.replay`): a sequential case (slots,
steps and the concrete values it ran with) or a parallel one (prefix, branches, suffix).

`callgate mutants` uses it to check that an `error` is the seeded fault's doing before it counts
it as a kill: the same case must pass against the correct reference and go wrong again against
the mutant (an adapter that timed out because the machine was loaded is not a finding).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callgate.conformance.judge.runner import Case, CaseRunner
from callgate.conformance.protocol.adapter import Adapter, SlotSpec
from callgate.conformance.results import CaseResult
from callgate.model.families import MACHINES
from callgate.model.transitions import Action, ModelError


class NotReplayable(ValueError):
    """The replay names no slots or steps, or operations the model does not have."""


def _actions(listed: object, machines: Mapping[str, str]) -> tuple[Action, ...]:
    if not isinstance(listed, list):
        raise NotReplayable("steps are not a list")
    found = []
    for step in listed:
        machine = MACHINES[machines[step["slot"]]]
        params = machine.operation(step["op"]).params
        found.append(Action(step["slot"], step["op"],
                            tuple((p.name, step["args"][p.name]) for p in params)))
    return tuple(found)


def rerun(adapter: Adapter, case_id: str, replay: Mapping[str, Any],
          step_timeout: float = 10.0, runs: int = 3) -> CaseResult:
    """The case of `replay` run once more against `adapter` (a parallel case `runs` times)."""
    try:
        slots = tuple(SlotSpec(s["name"], s["machine"], s.get("config", {}))
                      for s in replay["slots"])
        machines = {s.name: s.machine for s in slots}
        steps = _actions(replay["steps"], machines)
        branches = tuple(_actions(b, machines) for b in replay.get("branches") or [])
        suffix = _actions(replay.get("suffix") or [], machines)
    except (KeyError, TypeError, ValueError, ModelError) as exc:
        raise NotReplayable(f"{case_id}: {exc!r}") from exc
    if not slots:
        raise NotReplayable(f"{case_id}: no slots")
    if branches:
        from callgate.conformance.cases.parallel import ParallelCase, replay_parallel
        return replay_parallel(adapter, ParallelCase(case_id, "rerun", slots, steps, branches,
                                                     suffix=suffix), step_timeout, runs=runs)
    runner = CaseRunner(adapter, adapter.capabilities(), step_timeout)
    try:
        return runner.run(Case(case_id, "rerun", "rerun", slots, steps,
                               values=replay.get("values")))
    finally:
        runner.close()
