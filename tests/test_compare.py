"""`callgate compare`: one row per rule, one column per implementation, differences marked."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from callgate.conformance.report import compare, reporting
from callgate.conformance.results import RunRecord, Verdict
from callgate.model.rules import catalogue
from tests import streams
from tests.streams import HOSTILE

cli = streams.report_cli


def _write(directory: Path, implementation: str, fixed: bool) -> Path:
    """A report.json; `fixed` turns the com_call failure into a pass."""
    results = streams.sample_results()
    if fixed:
        results[-1] = replace(results[-1], verdict=Verdict.PASS, trace=[], failed_rules=[])
    start = streams.run_start(implementation=implementation)
    return reporting.write_report_json(RunRecord(start, results, {"finished": "x", "seconds": 1.0}),
                                       directory)


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("compare")
    return _write(base / "a", "impl-a", False), _write(base / "b", HOSTILE, True)


def test_the_matrix_has_one_row_per_rule_and_marks_the_rules_that_differ(
        two: tuple[Path, Path], tmp_path: Path) -> None:
    assert cli("compare", str(two[0]), str(two[1].parent), "--out", str(tmp_path)) == 0
    result = compare.compare([(p, compare.load_report(p)) for p in two])
    in_scope = [r.id for r in catalogue().values() if r.in_scope]
    assert [row.rule for row in result.rows] == in_scope
    differing = {row.rule: row.verdicts for row in result.rows if row.differs}
    assert differing == {"COM-FIN-01": ("fail", "pass"), "COM-FIN-04": ("fail", "pass")}
    html = (tmp_path / "compare.html").read_text(encoding="utf-8")
    assert html.count('<tr class="differs">') == result.differing
    assert html.count('<tr class="same">') == len(in_scope) - result.differing
    md = (tmp_path / "compare.md").read_text(encoding="utf-8")
    rule_rows = [line for line in md.splitlines() if re.match(r"\| (≠)? \| `", line)]
    assert len(rule_rows) == len(in_scope)
    assert "| ≠ | `COM-FIN-01` | MUST | **fail** | **pass** |" in md
    assert f"**{result.differing}** of {len(in_scope)} rules differ" in md


def test_adapter_text_is_escaped_in_both_formats(two: tuple[Path, Path], tmp_path: Path) -> None:
    paths = compare.write_comparison(list(two), tmp_path)
    html, md = (p.read_text(encoding="utf-8") for p in paths)
    assert "<script" not in html and "&lt;script&gt;" in html
    assert "<script" not in md and "&lt;script&gt;" in md


def test_columns_with_the_same_label_are_told_apart(two: tuple[Path, Path], tmp_path: Path) -> None:
    same = _write(tmp_path / "c", "impl-a", True)
    result = compare.compare([(p, compare.load_report(p)) for p in (two[0], same, two[0])])
    labels = [c.label for c in result.columns]
    assert len(set(labels)) == 3
    assert labels[1] == "impl-a 1 [c]"


def test_a_file_that_is_not_a_valid_report_is_refused_naming_it(
        two: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = json.loads(two[0].read_text(encoding="utf-8"))
    broken["rules"][0]["verdict"] = "ok"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken), encoding="utf-8")
    assert cli("compare", str(two[0]), str(bad), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "bad.json does not match report.schema.json" in err and "rules/0/verdict" in err
    assert not (tmp_path / "out").exists()
    (tmp_path / "text.json").write_text("not json")
    with pytest.raises(reporting.ReportInvalid, match=r"text\.json is not JSON"):
        compare.load_report(tmp_path / "text.json")
    assert cli("compare", str(two[0]), "--out", str(tmp_path / "out")) == 2
    assert "at least two" in capsys.readouterr().err
