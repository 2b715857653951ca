"""Keep a run's previous reports when a new run of the same command shows nothing new.

Reports committed to a repository (reports/reference, reports/wine) would otherwise change on
every run: timestamps, durations, and the interleavings a parallel case happened to produce.
`callgate run --keep-if-unchanged` snapshots the report files in OUT before the run and, after
it, compares what the two runs showed (`shown`): per case its verdict, the rules it failed, the
ordering classes of a race it observed, and for a case that did not pass its message; the
transitions the run covered (from results.jsonl, as a set); the summary's counts, coverage, the
rules' verdicts and failing cases (not how many cases cited each) and the adapter. If that is
equal the previous files are put back byte for byte; anything else (a verdict, a failure's
message, one covered transition) keeps the new reports. Timing never decides a verdict, so
what is ignored cannot hide a change in one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from callgate.conformance.report.reporting import REPORT_FILES

FILES = (*REPORT_FILES, "results.jsonl")


def shown(report: dict[str, Any]) -> dict[str, Any]:
    """What a report shows, without timing: equal for two runs that showed the same."""
    cases = []
    for case in report.get("cases", []):
        orderings = case.get("orderings") or {}
        cases.append({
            "id": case.get("id"),
            "verdict": case.get("verdict"),
            "failed_rules": sorted(case.get("failed_rules") or []),
            "observed_orderings": sorted(c.get("ordering") for c in orderings.get("classes", [])
                                         if c.get("observed")),
            "message": case.get("message") if case.get("verdict") != "pass" else None,
        })
    summary = {k: v for k, v in (report.get("summary") or {}).items() if k != "steps"}
    return {
        "schema_version": report.get("schema_version"),
        "complete": report.get("complete"),
        "aborted": report.get("aborted"),
        "verdict": report.get("verdict"),
        "seed": report.get("seed"),
        "budget": report.get("budget"),
        "adapter": report.get("adapter"),
        "summary": summary,
        "coverage": report.get("coverage"),
        "pair_coverage": report.get("pair_coverage"),
        # A rule's verdict and failing cases, not how many cases cited it: a race's or a
        # generated parallel case's cited rules follow the interleavings its runs produced.
        "rules": [{k: v for k, v in rule.items() if k != "cases"} if isinstance(rule, dict)
                  else rule for rule in report.get("rules") or []],
        "expectations": report.get("expectations"),
        "cases": cases,
    }


def covered(stream: bytes) -> set[str]:
    """Every transition the run covered, from a results stream (report.json has only counts).
    Which case covered which is left out: an adaptive walk follows the implementation's
    choices, which may depend on timing, while what the run as a whole covered does not."""
    found: set[str] = set()
    for line in stream.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "case":
            case = event.get("case") or {}
            found.update(str(k) for k in case.get("covered") or [])
    return found


class Snapshot:
    """The report files of OUT as they were before a run."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.files = {name: (out / name).read_bytes() for name in FILES if (out / name).is_file()}

    def previous(self) -> dict[str, Any] | None:
        raw = self.files.get("report.json")
        if raw is None or set(self.files) != set(FILES):
            return None
        try:
            loaded: dict[str, Any] = json.loads(raw)
        except ValueError:
            return None
        return loaded

    def restore_if_unchanged(self) -> bool:
        """Put the previous files back if the new run showed the same; True if it did."""
        before = self.previous()
        try:
            after = json.loads((self.out / "report.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if before is None or shown(before) != shown(after):
            return False
        try:
            stream = (self.out / "results.jsonl").read_bytes()
        except OSError:
            return False
        if covered(self.files["results.jsonl"]) != covered(stream):
            return False
        for name, data in self.files.items():
            (self.out / name).write_bytes(data)
        return True
