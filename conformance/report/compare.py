"""Side-by-side comparison of implementations: rules as rows, one column per report.json.

Every input is checked against report.schema.json first, so a column never rests on a document
callgate did not write. A row differs when its verdicts are not all the same (a rule one report
does not list counts as a verdict of its own, "absent").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callgate.conformance.report.reporting import (
    ReportInvalid,
    report_problems,
    status_of,
    template_environment,
)
from callgate.model.rules import catalogue

ABSENT = "absent"
COMPARE_FILES = ("compare.html", "compare.md")


@dataclass(frozen=True)
class Column:
    """One implementation: where its report came from and its figures."""

    label: str
    path: str
    status: str
    complete: bool
    summary: dict[str, int]
    covered: int
    transitions: int


@dataclass(frozen=True)
class RuleRow:
    """One rule across the implementations: its verdict in each report (a row of the comparison)."""

    rule: str
    level: str
    summary: str
    verdicts: tuple[str, ...]

    @property
    def differs(self) -> bool:
        return len(set(self.verdicts)) > 1


@dataclass(frozen=True)
class Comparison:
    columns: tuple[Column, ...]
    rows: tuple[RuleRow, ...]

    @property
    def differing(self) -> int:
        return sum(r.differs for r in self.rows)


def load_report(path: Path) -> dict[str, Any]:
    """A report.json, checked against the schema; ReportInvalid says which file and why."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportInvalid(f"cannot read {path}: {exc.strerror or exc}; pass the report.json "
                            f"a run wrote (DIR/report.json)") from exc
    except json.JSONDecodeError as exc:
        raise ReportInvalid(f"{path} is not JSON ({exc}); pass a report.json written by callgate"
                            ) from exc
    problems = report_problems(document)
    if problems:
        raise ReportInvalid(f"{path} does not match report.schema.json (`callgate schema report`); "
                            f"render it again with `callgate report --from DIR/results.jsonl`:\n  "
                            + "\n  ".join(problems))
    report: dict[str, Any] = document
    return report


def _labels(reports: Sequence[tuple[Path, dict[str, Any]]]) -> list[str]:
    base = []
    for _, report in reports:
        adapter = report["adapter"]
        name = str(adapter.get("implementation") or adapter.get("name") or "implementation")
        version = str(adapter.get("version") or "")
        base.append(f"{name} {version}".strip())
    labels = []
    for i, ((path, _), label) in enumerate(zip(reports, base, strict=True)):
        if base.count(label) > 1:
            label = f"{label} [{path.parent.name or i + 1}]"
        labels.append(label)
    return [f"{label} #{i + 1}" if labels.count(label) > 1 else label
            for i, label in enumerate(labels)]


def compare(reports: Sequence[tuple[Path, dict[str, Any]]]) -> Comparison:
    """The matrix of rules by implementations, from validated report documents."""
    labels = _labels(reports)
    columns = []
    verdicts: list[dict[str, str]] = []
    info: dict[str, tuple[str, str]] = {}
    for (path, report), label in zip(reports, labels, strict=True):
        columns.append(Column(label, str(path), status_of(report), bool(report["complete"]),
                              dict(report["summary"]), report["coverage"]["transitions_covered"],
                              report["coverage"]["transitions_total"]))
        verdicts.append({r["id"]: r["verdict"] for r in report["rules"]})
        for rule in report["rules"]:
            info.setdefault(rule["id"], (rule["level"], rule["summary"]))
    known = [rule_id for rule_id in catalogue() if rule_id in info]
    order = known + sorted(set(info) - set(known))
    rows = tuple(RuleRow(rule_id, info[rule_id][0], info[rule_id][1],
                         tuple(v.get(rule_id, ABSENT) for v in verdicts)) for rule_id in order)
    return Comparison(tuple(columns), rows)


def write_comparison(paths: Sequence[Path], out: Path) -> list[Path]:
    """compare.html and compare.md for the given report.json files."""
    comparison = compare([(p, load_report(p)) for p in paths])
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, html in (("compare.html", True), ("compare.md", False)):
        text = template_environment(html).get_template(name + ".j2").render(c=comparison, absent=ABSENT)
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
