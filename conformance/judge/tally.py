"""The bookkeeping of a summary case: sessions run one after another, counted into one case.

The merged-form continuations (`callgate.conformance.cases.forms`), the identifying sequences
(`callgate.conformance.cases.identify`) and the repetition cases
(`callgate.conformance.cases.repeat`) each run many sessions of their own, report every failing
session as a case apart, and sum the rest up in one summary case. `Tally` is that sum: it opens
each session, drives it, closes it (a raise in callgate's own code makes the session an error,
as in any case), and counts its sessions, steps and covered transitions. The summary cites only
the rules of accepted steps of passing sessions: a request that was declined or not accepted
was never shown to hold, so its rules must not come out `pass` through a summary
(docs/verdict.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from callgate.conformance.judge.runner import Case, CaseRunner, LiveCase
from callgate.conformance.protocol.adapter import SlotSpec
from callgate.conformance.results import CaseResult, Verdict
from callgate.model.transitions import Action, Kind, State


@dataclass
class Tally:
    """What a summary case's sessions did: how many, their steps, the transitions they covered,
    and the rules the accepted steps of the passing ones cite. `passed` counts the passing
    sessions that ran their plan in full, `left` the passing ones that left it by an allowed
    choice (what `session`'s `drive` said)."""

    sessions: int = 0
    steps: int = 0
    passed: int = 0
    left: int = 0
    covered: set[str] = field(default_factory=set)
    rules: dict[str, None] = field(default_factory=dict)

    def session(self, runner: CaseRunner, case_id: str, slots: Sequence[SlotSpec],
                drive: Callable[[LiveCase], bool]) -> LiveCase:
        """Open a session, let `drive` take its steps (True: it ran its plan in full), close
        it and count it; the closed session, for its verdict and trace."""
        live = runner.open(case_id, slots)
        went = False
        try:
            went = drive(live)
        except Exception as exc:
            live.harness_error(exc)
        finally:
            live.close()
        self.count(live, went)
        return live

    def count(self, live: LiveCase, went: bool = True) -> None:
        """Count a closed session; `went`: it ran its plan in full."""
        self.sessions += 1
        self.steps += len(live.trace)
        self.covered |= live.covered
        if live.verdict is Verdict.PASS:  # a summary that passes cites only what passed
            self.rules.update(dict.fromkeys(r for t in live.trace if t.ok for r in t.rules))
            self.passed += went
            self.left += not went

    def summary(self, runner: CaseRunner, case: Case, started: float, shown: bool,
                why: str) -> CaseResult:
        """The summary case's result: `pass` when `shown` (a session the summary speaks for
        passed), else `not_applicable` with `why`; it covers what every session covered."""
        return runner.result(case, Verdict.PASS if shown else Verdict.NOT_APPLICABLE, started,
                             [], self.covered, executed=self.steps,
                             message="" if shown else why)


def on_plan(live: LiveCase, action: Action, before: State) -> bool:
    """Whether a planned step can be taken as planned: the model follows its slot in `before`
    alone, and the action is defined and offered there after the implementation's choices."""
    return live.trackers[action.slot].states == {before} \
        and live.kind(action) is Kind.DEFINED and live.offered(action)
