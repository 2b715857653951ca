"""A verdict never claims more than was shown: interrupted runs, errors beside failures, headlines,
coverage floors, usage errors, refused handshakes, a shared output directory, hostile text.

Each test here failed on the main before this change (a run stopped by Ctrl-C was reported
complete and conformant, an error hid two failures, `--step-timeout nan` was accepted, ...).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callgate.conformance.budgets import BUDGETS
from callgate.conformance.cli import run as cli_run
from callgate.conformance.cli.console import clean
from callgate.conformance.cli.main import main
from callgate.conformance.gate import RunAborted, RunOptions, Tick, run_gate
from callgate.conformance.outdir import LOCK_NAME, OutputBusy, OutputDir
from callgate.conformance.protocol.adapter import Capabilities, SlotSpec
from callgate.conformance.report import reporting
from callgate.conformance.results import CaseResult, RunRecord, Summary, Verdict, read_stream
from tests import streams
from tests.fakes import EventAdapter, EventSession

ROOT = Path(__file__).resolve().parent.parent


def _case(case_id: str, verdict: Verdict, rules: Sequence[str] = ("COM-SYNC-01",)) -> CaseResult:
    return CaseResult(case_id, "walk", case_id, list(rules), verdict, 1, 0.0,
                      message=f"{verdict.value} here", failed_rules=list(rules)
                      if verdict in (Verdict.FAIL, Verdict.ERROR) else [])


# --- exit codes and rule verdicts: failures decide, errors are listed beside them -------------


def test_failures_beside_an_error_exit_1_not_3() -> None:
    assert Summary(failed=2, errors=1).exit_code() == 1
    assert Summary(errors=1).exit_code() == 3
    assert Summary(passed=3).exit_code() == 0


def test_a_run_that_did_not_finish_never_exits_0() -> None:
    assert Summary(passed=5).exit_code(complete=False) == 3
    assert Summary(passed=5, failed=1).exit_code(complete=False) == 1


def test_a_rule_that_failed_and_erred_is_failed() -> None:
    matrix = {r["id"]: r["verdict"] for r in reporting.rules_matrix([
        _case("a", Verdict.FAIL), _case("b", Verdict.ERROR)])}
    assert matrix["COM-SYNC-01"] == "fail"


def test_a_rule_cited_only_by_an_errored_case_is_not_passed() -> None:
    erred = CaseResult("e", "walk", "e", ["COM-SYNC-02", "COM-SYNC-01"], Verdict.ERROR, 1, 0.0,
                       failed_rules=["COM-SYNC-01"])
    matrix = {r["id"]: r["verdict"] for r in reporting.rules_matrix([erred])}
    assert matrix["COM-SYNC-01"] == "error"
    assert matrix["COM-SYNC-02"] == "untested"


# --- the headline says what was shown ----------------------------------------------------------


def _record(tmp_path: Path, cases: Sequence[CaseResult], **start: object) -> RunRecord:
    header = streams.run_start() | dict(start)
    return read_stream(streams.write_stream(tmp_path / "results.jsonl", cases, start=header))


def test_a_run_with_known_deviations_and_partial_coverage_is_not_plainly_conformant(
        tmp_path: Path) -> None:
    cases = [_case("p", Verdict.PASS), _case("x", Verdict.EXPECTED_FAIL)]
    report = reporting.build_report(_record(tmp_path, cases))
    verdict = report["verdict"]
    assert verdict["status"] == "conformant, qualified" and verdict["exit_code"] == 0
    assert "1 cases with known deviations" in verdict["headline"]
    assert f"/{report['coverage']['transitions_total']} transitions" in verdict["headline"]
    md = reporting.render_markdown(report)
    assert "callgate: conformant, qualified" in md and "known deviations" in md


def test_min_coverage_fails_a_run_that_reached_too_little(tmp_path: Path) -> None:
    record = _record(tmp_path, [_case("p", Verdict.PASS)], min_coverage=50.0)
    report = reporting.build_report(record)
    assert report["verdict"]["status"] == "insufficient coverage"
    assert report["summary"]["exit_code"] == 1
    reporting.validate_report(report)


def test_an_aborted_run_says_why_in_every_view(tmp_path: Path) -> None:
    path = streams.write_stream(tmp_path / "results.jsonl", [_case("p", Verdict.PASS)])
    lines = path.read_text().splitlines()
    end = json.loads(lines[-1]) | {"aborted": {"reason": "interrupted (SIGINT)", "signal": "SIGINT"}}
    path.write_text("\n".join([*lines[:-1], json.dumps(end)]) + "\n")
    report = reporting.build_report(read_stream(path))
    reporting.validate_report(report)
    assert report["complete"] is False and report["aborted"]["signal"] == "SIGINT"
    assert report["verdict"]["status"] == "incomplete" and report["summary"]["exit_code"] == 3
    assert "interrupted (SIGINT)" in reporting.render_markdown(report)


# --- interrupted and aborted runs ------------------------------------------------------------


def _options(out: Path, **kwargs: object) -> RunOptions:
    return RunOptions("tests.fakes:EventAdapter", BUDGETS["quick"], 0, out, 5.0,
                      **kwargs)  # type: ignore[arg-type]


def test_an_exception_inside_the_harness_aborts_the_run_with_exit_3(tmp_path: Path) -> None:
    def progress(tick: Tick) -> None:
        if tick.result is not None and tick.cases == 2:
            raise RuntimeError("a bug in the harness")

    with pytest.raises(RunAborted) as caught:
        run_gate(EventAdapter(), _options(tmp_path), progress)
    assert caught.value.exit_code == 3 and "a bug in the harness" in caught.value.reason
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["complete"] is False and "RuntimeError" in report["aborted"]["reason"]
    assert len(report["cases"]) == 2 and report["summary"]["exit_code"] == 3


@pytest.mark.slow
@pytest.mark.serial  # signals: run in the plain process, not in a test worker
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_records_it_and_exits_128_plus_the_signal(
        tmp_path: Path, signum: int, code: int) -> None:
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "callgate", "run", "--adapter", "reference", "--budget", "standard",
         "--out", str(out)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    # The signal comes once the workers have finished a few units (the progress says so):
    # results are recorded in the units' order, so the first cases may be written much later.
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "units done" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert started.wait(120), "".join(lines)[-2000:]
    process.send_signal(signum)
    process.wait(timeout=120)
    reader.join(timeout=30)
    stderr = "".join(lines)
    assert process.returncode == code, stderr[-2000:]
    assert "ABORTED" in stderr and "Traceback" not in stderr
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] is False
    assert report["aborted"]["signal"] == signal.Signals(signum).name
    for name in ("junit.xml", "report.md", "report.html"):
        assert (out / name).is_file()
    again = subprocess.run([sys.executable, "-m", "callgate", "report", "--from", str(out),
                            "--out", str(tmp_path / "again")], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode != 0 and "INCOMPLETE" in again.stdout


# --- usage errors: exit 2, one line, no traceback --------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "soon"])
def test_a_step_timeout_that_is_not_a_positive_finite_number_is_a_usage_error(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, value: str) -> None:
    code, text = _cli(capsys, "run", "--adapter", "reference", "--step-timeout", value,
                      "--out", str(tmp_path))
    assert code == 2 and "Traceback" not in text and "--step-timeout" in text


def test_a_negative_stagger_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    code, text = _cli(capsys, "run", "--adapter", "reference", "--stagger-ms", "-5",
                      "--out", str(tmp_path))
    assert code == 2 and "Traceback" not in text


@pytest.mark.parametrize("make_out", [
    lambda tmp: tmp / "a-file",                 # a file, not a directory
    lambda tmp: tmp / "a-file" / "below",       # cannot be created
])
def test_an_output_path_that_cannot_hold_reports_is_a_usage_error(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, make_out: object) -> None:
    (tmp_path / "a-file").write_text("x")
    out = make_out(tmp_path)  # type: ignore[operator]
    code, text = _cli(capsys, "run", "--adapter", "reference", "--out", str(out))
    assert code == 2 and "Traceback" not in text and str(tmp_path) in text


def test_an_unbalanced_quote_in_adapter_cmd_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    code, text = _cli(capsys, "run", "--adapter-cmd", "python -c 'print(1)", "--out",
                      str(tmp_path))
    assert code == 2 and "quote" in text and "Traceback" not in text


class _GateStarted(BaseException):
    """The CLI accepted its arguments and started the gate (replaced in the property test)."""


OPTIONS = ["--adapter", "--adapter-cmd", "--budget", "--seed", "--out", "--step-timeout",
           "--parallel-runs", "--stagger-ms", "--jitter-ms", "--min-coverage", "--expectations",
           "--no-parallel", "--bogus", "-x"]
VALUES = ["reference", "nosuch", "no.such:Thing", "quick", "standard", "0", "-1", "1e309", "nan",
          "inf", "7", "150", "'unbalanced", "", "OUT", "FILE", "--", "x" * 40]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.lists(st.one_of(st.sampled_from(OPTIONS), st.sampled_from(VALUES)), max_size=8),
       command=st.sampled_from(["run", "replay", "report", "compare", "model", "mutants", "nosuch"]))
def test_every_argument_list_exits_0_to_3_and_a_usage_error_prints_no_traceback(
        argv: list[str], command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "FILE").write_text("not a directory")
    argv = [str(tmp_path / a) if a in ("OUT", "FILE") else a for a in argv]
    started: list[RunOptions] = []

    def fake_gate(adapter: object, options: RunOptions, progress: object = None) -> object:
        started.append(options)
        raise _GateStarted

    monkeypatch.setattr(cli_run, "run_gate", fake_gate)
    # Commands that would do long real work with valid arguments are not part of this property.
    if command in ("model", "mutants") and "--bogus" not in argv:
        argv = [*argv, "--bogus"]
    try:
        code = main([command, *argv])
    except SystemExit as exc:  # pragma: no cover - main must not let argparse exit
        pytest.fail(f"main raised SystemExit({exc.code}) for {argv}")
    except _GateStarted:
        code = 0  # the arguments were valid: the gate would have run
        assert started and started[0].step_timeout > 0
    captured = capsys.readouterr()
    assert code in (0, 1, 2, 3), (command, argv, code)
    assert "internal error" not in captured.err, (command, argv, captured.err[-1500:])
    if code == 2:
        assert "Traceback" not in captured.out + captured.err, (command, argv)


# --- a refused handshake still writes the reports ----------------------------------------------


class _BadFeatureAdapter(EventAdapter):
    def capabilities(self) -> Capabilities:
        caps = super().capabilities()
        return Capabilities(caps.implementation, caps.version, caps.features | {"no.such.feature"},
                            caps.pins)


def test_a_refused_handshake_writes_reports_with_one_error_case(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from callgate.conformance.protocol import loading

    monkeypatch.setattr(loading, "load", lambda spec: _BadFeatureAdapter())
    code, text = _cli(capsys, "run", "--adapter", "anything", "--out", str(tmp_path))
    assert code == 3 and "no.such.feature" in text
    report = json.loads((tmp_path / "report.json").read_text())
    assert [c["id"] for c in report["cases"]] == ["handshake"]
    assert report["cases"][0]["verdict"] == "error" and report["summary"]["exit_code"] == 3
    assert (tmp_path / "junit.xml").is_file() and (tmp_path / "report.md").is_file()


# --- one run per output directory, its files replaced as a set ---------------------------------


def test_a_second_run_on_a_held_output_directory_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with OutputDir(tmp_path):
        with pytest.raises(OutputBusy):
            OutputDir(tmp_path).__enter__()
        code, text = _cli(capsys, "run", "--adapter", "tests.fakes:EventAdapter", "--budget",
                          "quick", "--no-parallel", "--out", str(tmp_path))
    assert code == 2 and "another callgate run" in text
    assert (tmp_path / LOCK_NAME).exists()


def test_an_earlier_runs_files_do_not_survive_beside_new_reports(tmp_path: Path) -> None:
    (tmp_path / "compare.html").write_text("stale")
    (tmp_path / "notes.txt").write_text("the user's own file")
    outcome = run_gate(EventAdapter(), _options(tmp_path, parallel=False, stateful=False))
    assert outcome.exit_code == 0
    assert not (tmp_path / "compare.html").exists()
    assert (tmp_path / "notes.txt").read_text() == "the user's own file"


# --- adapter text is made inert before it reaches a terminal or a pull request ----------------


HOSTILE = "boom\x1b]0;owned\x07\x1b[2J\x1b[31m\rforged line\x9b"


def test_clean_removes_escape_sequences_and_control_characters() -> None:
    cleaned = clean(HOSTILE + "\nnext")
    assert "\x1b" not in cleaned and "\r" not in cleaned and "\x07" not in cleaned
    assert "\x9b" not in cleaned and cleaned.endswith("\nnext") and "forged line" in cleaned


class _HostileSession(EventSession):
    def perform(self, request: object) -> object:  # type: ignore[override]
        raise RuntimeError(HOSTILE)


class _HostileAdapter(EventAdapter):
    def open_session(self, slots: Sequence[SlotSpec]) -> EventSession:
        return _HostileSession("")


def test_adapter_text_reaches_the_terminal_without_escape_sequences(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    from callgate.conformance.protocol import loading

    monkeypatch.setattr(loading, "load", lambda spec: _HostileAdapter())
    code = main(["run", "--adapter", "x", "--budget", "quick", "--no-parallel", "--out",
                 str(tmp_path)])
    out, err = capfd.readouterr()
    assert code in (1, 3)
    assert "boom" in out + err and "\x1b]0;owned" not in out + err and "\x1b[2J" not in out + err


def test_report_md_does_not_ping_people_or_autolink(tmp_path: Path) -> None:
    case = _case("mention", Verdict.FAIL)
    case = CaseResult(**{**case.__dict__, "message": "cc @octocat see https://evil.example/x"})
    md = reporting.render_markdown(reporting.build_report(_record(tmp_path, [case])))
    assert "@octocat" not in md and "https://evil.example" not in md
    assert "@\u200boctocat" in md
