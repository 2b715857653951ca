"""The pytest plugin: `pytest --callgate-adapter=module:attribute` runs the gate's cases as items.

For vendors who already run pytest. The plugin does nothing unless the option is given. Each
directed case becomes one item named by its case ID; the stateful cases become items too. A
failing item shows the step table (operation, observed, allowed) and carries the rule IDs as
user properties, so they land in pytest's JUnit XML.

The plugin is loaded through an entry point in every pytest session where callgate is installed,
so importing it must cost nothing: the harness (Hypothesis, networkx, z3, jinja2, jsonschema) is
imported only when `--callgate-adapter` is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from callgate.conformance.budgets import BUDGETS

if TYPE_CHECKING:
    from callgate.conformance.expectations import Expectations
    from callgate.conformance.judge.runner import Case
    from callgate.conformance.results import CaseResult

_KEY = pytest.StashKey["_GateState"]()


class _GateState:
    """One adapter and runner for the whole pytest session."""

    def __init__(self, spec: str | None, command: str | None, budget: str, seed: int,
                 known: Expectations | None) -> None:
        from callgate.conformance.cases import sequences
        from callgate.conformance.gate import check_capabilities
        from callgate.conformance.judge.runner import CaseRunner
        from callgate.conformance.protocol import loading as adapters
        from callgate.conformance.protocol.jsonl import CommandAdapter

        self.adapter = adapters.load(spec) if spec else CommandAdapter(str(command))
        caps = self.adapter.capabilities()
        check_capabilities(caps)
        self.expectations = known
        self.runner = CaseRunner(self.adapter, caps, expectations=known)
        self.budget = BUDGETS[budget]
        self.seed = seed
        self.plan = sequences.plan(caps)

    def close(self) -> None:
        self.runner.close()
        self.adapter.shutdown()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("callgate", "callgate conformance gate")
    group.addoption("--callgate-adapter", default=None, metavar="ADAPTER",
                    help="run callgate's cases against this adapter (built-in name or "
                         "module:attribute)")
    group.addoption("--callgate-adapter-cmd", default=None, metavar="COMMAND",
                    help="run callgate's cases against this adapter program speaking JSON lines "
                         "(docs/adapter-protocol.md), e.g. \"./my-adapter --flag\"")
    group.addoption("--callgate-expectations", default=None, metavar="FILE",
                    help="known deviations (TOML): an item failing on a listed deviation is "
                         "xfail")
    group.addoption("--callgate-budget", default="quick", choices=sorted(BUDGETS),
                    help="stateful budget for the callgate items (default quick)")
    group.addoption("--callgate-seed", default=0, type=int, help="seed of the stateful items")


def pytest_configure(config: pytest.Config) -> None:
    spec = config.getoption("--callgate-adapter")
    command = config.getoption("--callgate-adapter-cmd")
    if not spec and not command:
        return
    if spec and command:
        raise pytest.UsageError("pass one of --callgate-adapter and --callgate-adapter-cmd")
    import shlex
    from pathlib import Path

    from callgate.conformance import expectations
    from callgate.conformance.protocol import loading as adapters

    if command is not None:
        try:
            if not shlex.split(command):
                raise ValueError("it is empty")
        except ValueError as exc:
            raise pytest.UsageError(f"--callgate-adapter-cmd: {exc}") from exc
    known = None
    listed = config.getoption("--callgate-expectations")
    if listed:
        try:
            known = expectations.load(Path(listed))
        except expectations.ExpectationsError as exc:
            raise pytest.UsageError(str(exc)) from exc
    try:
        config.stash[_KEY] = _GateState(spec, command, config.getoption("--callgate-budget"),
                                        config.getoption("--callgate-seed"), known)
    except adapters.AdapterNotFound as exc:
        raise pytest.UsageError(str(exc)) from exc


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_KEY, None)
    if state is not None:
        state.close()
        del config.stash[_KEY]


class CallgateCases(pytest.Collector):
    """The collector of callgate's items: their node IDs read `callgate::CASE-ID`."""

    def collect(self) -> list[pytest.Item]:
        state: _GateState = self.config.stash[_KEY]
        found: list[pytest.Item] = [CallgateItem.from_parent(self, name=case.id, case=case)
                                    for case in state.plan.cases]
        found += [CallgateItem.from_parent(self, name=f"stateful-{round_:02d}", case=None,
                                           round_=round_)
                  for round_ in range(state.budget.stateful_rounds)]
        return found


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect: they must see callgate's items
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    state = config.stash.get(_KEY, None)
    if state is None:
        return
    collector = CallgateCases.from_parent(session, name="callgate", nodeid="callgate")
    report = pytest.CollectReport(collector.nodeid, "passed", None, list(collector.collect()))
    # Reported as any collector's result, so that pytest counts the items ("collected N
    # items", --collect-only) as it counts those it found in files.
    session.ihook.pytest_collectreport(report=report)
    items.extend(item for item in report.result if isinstance(item, pytest.Item))


class CallgateFailure(Exception):
    """A callgate case that failed or erred, with its result."""

    def __init__(self, result: CaseResult) -> None:
        super().__init__(result.message)
        self.result = result


class CallgateItem(pytest.Item):
    """One gate case as a pytest item."""

    def __init__(self, *, case: Case | None, round_: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.round = round_
        if case is not None:
            self.user_properties.append(("rules", " ".join(case.rules)))

    def runtest(self) -> None:
        from callgate.conformance.cases.stateful import StatefulBudget, default_slots, run_stateful
        from callgate.conformance.results import Verdict

        state: _GateState = self.config.stash[_KEY]
        if self.case is not None:
            result = state.runner.run(self.case)
        else:
            budget = StatefulBudget(state.budget.stateful_examples, state.budget.stateful_steps)
            result = run_stateful(state.runner, budget, state.seed + self.round,
                                  default_slots(state.runner.capabilities.features), self.name)
        if state.expectations is not None:
            result = state.expectations.apply(result)
        if result.verdict is Verdict.NOT_APPLICABLE:
            pytest.skip(f"not applicable: {result.message}")
        if result.verdict is Verdict.EXPECTED_FAIL:
            pytest.xfail(f"known deviation ({', '.join(result.failed_rules)}): {result.message}")
        if result.verdict is Verdict.UNEXPECTED_PASS:
            raise CallgateFailure(result)
        if result.verdict in (Verdict.FAIL, Verdict.ERROR):
            self.user_properties.append(("failed_rules", " ".join(result.failed_rules)))
            raise CallgateFailure(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, CallgateFailure):
            result = excinfo.value.result
            lines = [f"{result.verdict.value}: {result.message}", ""]
            for i, step in enumerate(result.trace, 1):
                mark = "ok " if step.ok else "BAD"
                lines.append(f"{mark} {i:3d}. {step.slot}.{step.op}({step.args}) -> "
                             f"{step.code_name or step.code} {step.outputs or ''}")
                if not step.ok:
                    lines.append(f"         allowed: {'; '.join(step.allowed)}")
                    lines.append(f"         rules: {', '.join(step.rules)}")
            if result.evidence:
                lines += ["", "evidence:", result.evidence]
            for other in result.other_failures:
                lines += ["", f"also seen, {other.verdict.value} after {len(other.trace)} steps: "
                              f"{other.message}"]
            return "\n".join(lines)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[str, int | None, str]:
        return "callgate", None, f"callgate case {self.name}"


def iter_items(items: list[pytest.Item]) -> Iterator[CallgateItem]:
    return (i for i in items if isinstance(i, CallgateItem))
