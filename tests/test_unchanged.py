"""`callgate run --keep-if-unchanged`: committed reports stay as they are when a run shows
nothing new, and change when it does."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from callgate.conformance.cli.main import main
from callgate.conformance.report.unchanged import FILES, Snapshot, shown


def _report() -> dict[str, Any]:
    return {
        "schema_version": 1, "complete": True, "aborted": None, "seed": 0, "budget": "quick",
        "started": "2026-01-01T00:00:00+00:00", "seconds": 12.5,
        "verdict": {"status": "conformant", "headline": "conformant: 10/10"},
        "summary": {"passed": 2, "failed": 0, "cases": 2, "steps": 40},
        "coverage": {"transitions_total": 10, "transitions_covered": 10},
        "rules": [{"id": "COM-WAIT-03", "verdict": "pass", "cases": 3, "failing_cases": []}],
        "cases": [
            {"id": "walk-1", "verdict": "pass", "seconds": 1.0, "steps": 20,
             "message": ""},
            {"id": "race-1", "verdict": "pass", "seconds": 2.0, "steps": 20, "message": "9 runs",
             "history": [{"started": 0.1, "ended": 0.2}],
             "orderings": {"classes": [{"ordering": "a < b", "observed": True,
                                        "observed_runs": 4},
                                       {"ordering": "b < a", "observed": True,
                                        "observed_runs": 5}]}},
        ],
    }


def test_timing_and_interleaving_details_are_not_what_a_run_shows() -> None:
    before, after = _report(), _report()
    after["started"], after["seconds"], after["summary"]["steps"] = "2027-01-01", 99.0, 41
    race = after["cases"][1]
    race["seconds"], race["message"], race["history"] = 7.0, "10 runs", [{"started": 5.0}]
    race["orderings"]["classes"][0]["observed_runs"] = 8
    after["rules"][0]["cases"] = 4  # a generated parallel case cited the rule in this run
    assert shown(before) == shown(after)


@pytest.mark.parametrize("change", ["verdict", "ordering", "failure message", "coverage", "rules",
                                    "failing cases"])
def test_anything_a_run_shows_differently_counts(change: str) -> None:
    before = _report()
    after = copy.deepcopy(before)
    if change == "verdict":
        after["cases"][0]["verdict"] = "fail"
    elif change == "ordering":
        after["cases"][1]["orderings"]["classes"][1]["observed"] = False
    elif change == "failure message":
        before["cases"][0]["verdict"] = after["cases"][0]["verdict"] = "fail"
        after["cases"][0]["message"] = "another step failed"
    elif change == "coverage":
        after["coverage"]["transitions_covered"] = 9
    elif change == "failing cases":
        after["rules"][0]["failing_cases"] = ["walk-1"]
    else:
        after["rules"] = [{"id": "COM-WAIT-03", "verdict": "fail"}]
    assert shown(before) != shown(after)


def _write(out: Path, report: dict[str, Any], covered: list[str]) -> None:
    out.mkdir(exist_ok=True)
    for name in FILES:
        (out / name).write_text(f"{name} {report['seconds']}\n", encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report), encoding="utf-8")
    (out / "results.jsonl").write_text(json.dumps(
        {"event": "case", "case": {"id": "walk-1", "covered": covered}}) + "\n", encoding="utf-8")


def test_the_snapshot_puts_the_files_back_only_when_nothing_new_was_shown(tmp_path: Path) -> None:
    first = _report()
    _write(tmp_path, first, ["a", "b"])
    kept = {n: (tmp_path / n).read_bytes() for n in FILES}
    snapshot = Snapshot(tmp_path)
    later = _report()
    later["seconds"] = 50.0
    _write(tmp_path, later, ["b", "a"])
    assert snapshot.restore_if_unchanged()
    assert {n: (tmp_path / n).read_bytes() for n in FILES} == kept
    snapshot = Snapshot(tmp_path)
    _write(tmp_path, later, ["a", "c"])  # another transition covered: the new reports stay
    assert not snapshot.restore_if_unchanged()
    assert "50.0" in (tmp_path / "report.md").read_text()  # the new files


@pytest.mark.slow
def test_a_second_identical_run_leaves_the_reports_byte_for_byte(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "--adapter", "tests.fakes:EventAdapter", "--budget", "quick", "--no-parallel",
            "--out", str(tmp_path), "--keep-if-unchanged"]
    assert main(argv) == 0
    kept = {n: (tmp_path / n).read_bytes() for n in FILES}
    capsys.readouterr()
    assert main(argv) == 0
    assert "only timing differs): kept them" in capsys.readouterr().out
    assert {n: (tmp_path / n).read_bytes() for n in FILES} == kept
    # A different implementation shows something else: its reports replace them.
    assert main([*argv[:2], "tests.fakes:created_signaled", *argv[3:]]) == 1
    assert (tmp_path / "report.json").read_bytes() != kept["report.json"]


def test_what_the_run_covered_counts_not_which_case_covered_it() -> None:
    from callgate.conformance.report.unchanged import covered

    def stream(*cases: tuple[str, list[str]]) -> bytes:
        return "".join(json.dumps({"event": "case", "case": {"id": i, "covered": c}}) + "\n"
                       for i, c in cases).encode()

    assert covered(stream(("w1", ["a", "b"]), ("w2", ["c"]))) == \
        covered(stream(("w1", ["a"]), ("w2", ["b", "c"])))  # a walk that went another way
    assert covered(stream(("w1", ["a", "b"]))) != covered(stream(("w1", ["a"])))
