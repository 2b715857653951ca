"""The pytest plugin: `pytest --callgate-adapter=module:attribute` runs the gate's cases as items.

For vendors who already run pytest. The plugin does nothing unless the option is given. Each of
the gate's work units (`callgate.conformance.units`: a machine's coverage walk and state
identification, a multi-object walk, a stateful round, a named race, the generated parallel
cases) becomes one item, `callgate::UNIT-ID`, and runs exactly as the gate runs it: the same
cases with the same IDs, the same concrete argument values (drawn from the seed and the unit),
the same shrinking, the same verdicts. The item fails when any of its cases fails or errs; its
failure shows each failing case's step table (operation, observed, allowed), and the item carries
its cases' IDs and verdicts and the failed rule IDs as user properties, so they land in pytest's
JUnit XML. A failure that the expectations file lists makes the item xfail. Under pytest-xdist
(`-n auto`) every worker opens its own adapter session and the items are spread over them.

The plugin is loaded through an entry point in every pytest session where callgate is installed,
so importing it must cost nothing: the harness (Hypothesis, networkx, z3, jinja2, jsonschema) is
imported only when `--callgate-adapter` is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from callgate.conformance.budgets import BUDGETS

if TYPE_CHECKING:
    from callgate.conformance.expectations import Expectations
    from callgate.conformance.results import CaseResult
    from callgate.conformance.units import Unit

_KEY = pytest.StashKey["_GateState"]()


class _GateState:
    """One adapter session, runner and plan for the whole pytest session (per xdist worker)."""

    def __init__(self, spec: str | None, command: str | None, budget: str, seed: int,
                 known: Expectations | None) -> None:
        from callgate.conformance.cases import sequences
        from callgate.conformance.gate import RunOptions, check_capabilities
        from callgate.conformance.judge.runner import CaseRunner
        from callgate.conformance.protocol import loading as adapters
        from callgate.conformance.protocol.jsonl import CommandAdapter
        from callgate.conformance.units import plan_units

        self.adapter = adapters.load(spec) if spec else CommandAdapter(str(command))
        caps = self.adapter.capabilities()
        check_capabilities(caps)
        self.expectations = known
        self.runner = CaseRunner(self.adapter, caps, expectations=known)
        self.plan = sequences.plan(caps)
        self.options = RunOptions(spec or f"cmd: {command}", BUDGETS[budget], seed,
                                  Path("."), expectations=known, reports=False)
        self.units = plan_units(self.plan, caps, self.options)

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
                    help="the gate's budget for the callgate items (default quick; `callgate "
                         "run` defaults to standard)")
    group.addoption("--callgate-seed", default=0, type=int,
                    help="the run's seed, as `callgate run --seed` (default 0)")


def pytest_configure(config: pytest.Config) -> None:
    spec = config.getoption("--callgate-adapter")
    command = config.getoption("--callgate-adapter-cmd")
    if not spec and not command:
        return
    if spec and command:
        raise pytest.UsageError("pass one of --callgate-adapter and --callgate-adapter-cmd")
    import shlex

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
    config.pluginmanager.register(_Outcomes(), "callgate-outcomes")


class _Outcomes:
    """Counts the callgate items that ran and those that showed something (passed, or xfailed
    on a listed deviation). A session whose items all skipped (every case not applicable: the
    adapter declared nothing the gate can test) showed nothing: it exits 5 (pytest's "no
    tests"), not 0, as `callgate run` exits 3 for such a run (docs/verdict.md)."""

    def __init__(self) -> None:
        self.ran = 0
        self.shown = 0

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.nodeid.startswith("callgate::"):
            self.ran += 1
            self.shown += bool(report.passed or hasattr(report, "wasxfail"))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus == pytest.ExitCode.OK and self.ran and not self.shown:
            session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.ran and not self.shown:
            terminalreporter.write_line("callgate: no item passed (every case was not "
                                        "applicable): nothing was shown to hold, exit code 5")


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_KEY, None)
    if state is not None:
        state.close()
        del config.stash[_KEY]


class CallgateCases(pytest.Collector):
    """The collector of callgate's items: their node IDs read `callgate::UNIT-ID`."""

    def collect(self) -> list[pytest.Item]:
        state: _GateState = self.config.stash[_KEY]
        return [CallgateItem.from_parent(self, name=unit.id, unit=unit) for unit in state.units]


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
    """A unit some of whose cases failed, erred or passed unexpectedly, with their results."""

    def __init__(self, failed: list[CaseResult]) -> None:
        super().__init__("; ".join(f"{r.id}: {r.message}" for r in failed))
        self.failed = failed


class CallgateItem(pytest.Item):
    """One of the gate's units as a pytest item."""

    def __init__(self, *, unit: Unit, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unit = unit

    def runtest(self) -> None:
        from callgate.conformance.results import Verdict
        from callgate.conformance.units import run_unit

        state: _GateState = self.config.stash[_KEY]
        results = list(run_unit(state.runner, state.plan, state.options, self.unit))
        if state.expectations is not None:
            results = [state.expectations.apply(r) for r in results]
        self.user_properties.append(("cases", " ".join(f"{r.id}={r.verdict.value}"
                                                        for r in results)))
        rules = sorted({rule for r in results for rule in r.rules})
        self.user_properties.append(("rules", " ".join(rules)))
        failed = [r for r in results if r.verdict in (Verdict.FAIL, Verdict.ERROR,
                                                      Verdict.UNEXPECTED_PASS)]
        if failed:
            self.user_properties.append(("failed_rules", " ".join(sorted(
                {rule for r in failed for rule in r.failed_rules}))))
            raise CallgateFailure(failed)
        expected = [r for r in results if r.verdict is Verdict.EXPECTED_FAIL]
        if expected:
            pytest.xfail("known deviation(s): " + "; ".join(
                f"{r.id} ({', '.join(r.failed_rules)}): {r.message}" for r in expected))
        if results and all(r.verdict is Verdict.NOT_APPLICABLE for r in results):
            pytest.skip("not applicable: " + "; ".join(r.message for r in results[:3]))
        if not results:
            pytest.skip("the unit ran no case")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, CallgateFailure):
            lines: list[str] = []
            for result in excinfo.value.failed:
                lines += [f"case {result.id}: {result.verdict.value}: {result.message}", ""]
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
                    lines += ["", f"also seen, {other.verdict.value} after {len(other.trace)} "
                                  f"steps: {other.message}"]
                lines.append("")
            return "\n".join(lines)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[str, int | None, str]:
        return "callgate", None, f"callgate unit {self.name}"


def iter_items(items: list[pytest.Item]) -> Iterator[CallgateItem]:
    return (i for i in items if isinstance(i, CallgateItem))
