"""Known deviations of one implementation (an expectations file) and how they change verdicts.

An expectations file is TOML, one per implementation:

    implementation = "wine-ole32"          # optional: the adapter's implementation name

    [[deviation]]
    rule = "COM-SYNC-03"                   # or: case = "event-tour-003" (exactly one of the two)
    verdict = "fail"                       # "fail" or "error": the verdict the deviation gives
    reason = "StdEvent keeps its signal after a satisfied Wait"
    evidence = "bug 4711"                  # optional

Semantics (DESIGN.md, Verdicts):

* A case listed by ID: if its verdict is the listed one it becomes `expected_fail`; if it passes,
  `unexpected_pass` (the file is stale). Any other verdict is left alone.
* A rule listed by ID: a case whose verdict is the listed one *and whose failing step cites the
  rule* becomes `expected_fail`. Passing cases are left alone, because a rule is exercised by many
  transitions and a deviation shows at only some of them: a passing case that merely cites the
  rule says nothing. A rule entry is stale when cases exercised the rule during the run and none
  failed on it; `stale_results()` turns each such entry into one `unexpected_pass` result for the
  stream, so the gate fails until the entry is removed.
* Anything not listed keeps its verdict: the gate still fails on it.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from callgate.conformance.results import CaseResult, Verdict
from callgate.model.rules import catalogue

VERDICTS: dict[str, Verdict] = {"fail": Verdict.FAIL, "error": Verdict.ERROR}
ENTRY_KEYS = frozenset({"case", "rule", "verdict", "reason", "evidence"})
TOP_KEYS = frozenset({"implementation", "deviation"})
STALE_KIND = "expectation"
_HEADER = re.compile(r"^\s*\[\[\s*deviation\s*\]\]")


class ExpectationsError(ValueError):
    """An expectations file that cannot be used; the message names the file, entry and fix."""


@dataclass(frozen=True)
class Deviation:
    """One entry: a case or a rule expected to give `verdict`, and why."""

    case: str
    rule: str
    verdict: Verdict
    reason: str
    evidence: str = ""
    line: int = 0

    @property
    def key(self) -> str:
        return f"case {self.case}" if self.case else f"rule {self.rule}"

    def matches_failure(self, result: CaseResult) -> bool:
        """True if this entry explains `result`'s failure (its verdict and case or rule)."""
        if result.verdict is not self.verdict:
            return False
        if self.case:
            return result.id == self.case
        return self.rule in failing_rules(result)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"verdict": self.verdict.value, "reason": self.reason}
        data["case" if self.case else "rule"] = self.case or self.rule
        if self.evidence:
            data["evidence"] = self.evidence
        return data


def failing_rules(result: CaseResult) -> list[str]:
    """The rules a failed or erred case went wrong on: the rules cited by its last step."""
    if result.failed_rules:
        return list(result.failed_rules)
    if result.verdict in (Verdict.ERROR, Verdict.FAIL, Verdict.EXPECTED_FAIL) and result.trace:
        return list(result.trace[-1].rules)
    return []


def exercised_rules(result: CaseResult) -> set[str]:
    """The rules a case that ran (not `not_applicable`) cites: its own and its steps'."""
    if result.verdict is Verdict.NOT_APPLICABLE:
        return set()
    return set(result.rules) | {r for s in result.trace for r in s.rules} | set(result.failed_rules)


@dataclass
class Expectations:
    """The entries of one file, and what they matched during a run (apply() records it)."""

    path: Path
    deviations: tuple[Deviation, ...]
    implementation: str = ""
    _matched: dict[Deviation, int] = field(default_factory=dict, repr=False)
    _exercised: dict[Deviation, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_case = {d.case: d for d in self.deviations if d.case}
        self._by_rule = [d for d in self.deviations if d.rule]

    def apply(self, result: CaseResult) -> CaseResult:
        """The result with a listed failure turned `expected_fail`, or a listed case that now
        passes turned `unexpected_pass`; any other result unchanged."""
        listed = self._by_case.get(result.id)
        if listed is not None:
            if listed.matches_failure(result):
                self._count(self._matched, listed)
                return replace(result, verdict=Verdict.EXPECTED_FAIL, expectation=listed.reason)
            if result.verdict is Verdict.PASS:
                self._count(self._matched, listed)
                return replace(result, verdict=Verdict.UNEXPECTED_PASS, expectation=listed.reason,
                               message=self._stale_message(listed, "the case passed"))
        exercised = exercised_rules(result)
        for deviation in self._by_rule:
            if deviation.rule in exercised:
                self._count(self._exercised, deviation)
        for deviation in self._by_rule:
            if deviation.matches_failure(result) and self._explains_others(result):
                self._count(self._matched, deviation)
                return replace(result, verdict=Verdict.EXPECTED_FAIL, expectation=deviation.reason)
        return result

    def _explains_others(self, result: CaseResult) -> bool:
        """Every other failure the case saw is a listed deviation too: one unlisted failure
        keeps the case failed, however well its first failure is known."""
        return all(any(d.verdict is other.verdict and d.rule in other.failed_rules
                       for d in self._by_rule) for other in result.other_failures)

    def stale_results(self) -> list[CaseResult]:
        """One `unexpected_pass` result per rule entry that cases exercised without failing on it.

        Call once, after the last case; a killed run never gets here, which is right: a rule may
        only be called fixed after every case that could fail on it has run."""
        stale = []
        for d in self._by_rule:
            if self._matched.get(d) or not self._exercised.get(d):
                continue
            stale.append(CaseResult(
                id=f"{STALE_KIND}:{d.rule}", kind=STALE_KIND,
                description=f"known deviation of {d.rule} listed in {self.path.name}",
                rules=[d.rule], verdict=Verdict.UNEXPECTED_PASS, steps=0, seconds=0.0,
                message=self._stale_message(
                    d, f"{self._exercised[d]} cases exercised the rule and none gave {d.verdict.value}"),
                expectation=d.reason))
        return stale

    def unused(self) -> list[Deviation]:
        """Entries that matched nothing: a case that never ran (or ran with another verdict), a
        rule that no case exercised. Not an error: a smaller budget or a missing capability skips
        cases. Rule entries that were exercised but never failed are `stale_results()` instead."""
        return [d for d in self.deviations
                if not self._matched.get(d) and not (d.rule and self._exercised.get(d))]

    def to_json(self) -> dict[str, Any]:
        """What a run_start event records, so reports can show the entries (see `entry_matches`)."""
        return {"file": str(self.path), "implementation": self.implementation,
                "deviations": [d.to_json() for d in self.deviations]}

    def mismatch(self, implementation: str) -> str:
        """A warning if the file names another implementation than the adapter's, else ''."""
        if self.implementation and implementation and self.implementation != implementation:
            return (f"{self.path} lists deviations of {self.implementation!r}, but the adapter is "
                    f"{implementation!r}: pass the expectations file of this implementation")
        return ""

    def _stale_message(self, d: Deviation, what: str) -> str:
        return (f"{d.key} is listed in {self.path} as a known deviation ({d.verdict.value}: "
                f"{d.reason}), but {what}: it is fixed, so remove the entry (line {d.line})")

    @staticmethod
    def _count(counter: dict[Deviation, int], d: Deviation) -> None:
        counter[d] = counter.get(d, 0) + 1


def entry_matches(entry: Mapping[str, Any], case: Mapping[str, Any]) -> bool:
    """For reports: did a recorded entry (Deviation.to_json) explain a report case?

    `case` is a case of report.json (`id`, `verdict`, `failed_rules`)."""
    verdict = case.get("verdict")
    if "case" in entry:
        return bool(case.get("id") == entry["case"]
                    and verdict in (Verdict.EXPECTED_FAIL.value, Verdict.UNEXPECTED_PASS.value))
    rule = entry.get("rule")
    if verdict == Verdict.EXPECTED_FAIL.value:
        return rule in case.get("failed_rules", [])
    return bool(verdict == Verdict.UNEXPECTED_PASS.value and case.get("kind") == STALE_KIND
                and case.get("id") == f"{STALE_KIND}:{rule}")


def load(path: Path) -> Expectations:
    """Read and check an expectations file; any problem raises ExpectationsError saying where."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExpectationsError(f"cannot read expectations file {path}: {exc.strerror or exc}") \
            from exc
    return parse(text, path)


def parse(text: str, path: Path) -> Expectations:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ExpectationsError(f"{path}: not valid TOML: {exc}; see README.md, 'Known deviations'"
                                ) from exc
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ExpectationsError(f"{path}: unknown top-level keys {unknown}; an expectations file "
                                f"has 'implementation' and [[deviation]] tables only")
    implementation = data.get("implementation", "")
    if not isinstance(implementation, str):
        raise ExpectationsError(f"{path}: 'implementation' must be a string")
    entries = data.get("deviation", [])
    if not isinstance(entries, list):
        raise ExpectationsError(f"{path}: 'deviation' must be an array of tables: write each "
                                f"entry under its own [[deviation]] header")
    lines = [i for i, line in enumerate(text.splitlines(), 1) if _HEADER.match(line)]
    problems: list[str] = []
    deviations: list[Deviation] = []
    seen: dict[str, Deviation] = {}
    for n, entry in enumerate(entries, 1):
        line = lines[n - 1] if n <= len(lines) else 0
        where = f"{path}:{line}: deviation #{n}" if line else f"{path}: deviation #{n}"
        try:
            deviation = _entry(entry, line)
        except ExpectationsError as exc:
            problems.append(f"{where}: {exc}")
            continue
        where += f" ({deviation.key})"
        earlier = seen.get(deviation.key)
        if earlier is not None:
            problems.append(f"{where}: duplicate of the entry at line {earlier.line}: keep one")
            continue
        seen[deviation.key] = deviation
        deviations.append(deviation)
    if problems:
        raise ExpectationsError("\n".join(problems))
    return Expectations(path, tuple(deviations), implementation)


def _entry(entry: object, line: int) -> Deviation:
    if not isinstance(entry, dict):
        raise ExpectationsError("is not a table")
    unknown = sorted(set(entry) - ENTRY_KEYS)
    if unknown:
        raise ExpectationsError(f"unknown keys {unknown}; allowed: {sorted(ENTRY_KEYS)}")
    for key in ENTRY_KEYS:
        if key in entry and not isinstance(entry[key], str):
            raise ExpectationsError(f"{key} must be a string, not {type(entry[key]).__name__}")
    case, rule = entry.get("case", "").strip(), entry.get("rule", "").strip()
    if bool(case) == bool(rule):
        raise ExpectationsError("give exactly one of case = \"CASE-ID\" or rule = \"RULE-ID\"")
    if rule:
        _check_rule(rule)
    verdict = entry.get("verdict", "")
    if verdict not in VERDICTS:
        raise ExpectationsError(f"unknown verdict {verdict!r}: a known deviation gives "
                                f"{' or '.join(repr(v) for v in VERDICTS)}")
    reason = entry.get("reason", "").strip()
    if not reason:
        raise ExpectationsError("missing reason: say why the implementation deviates (a bug "
                                "number, a design decision), so the entry can be reviewed")
    return Deviation(case, rule, VERDICTS[verdict], reason, entry.get("evidence", "").strip(), line)


def _check_rule(rule_id: str) -> None:
    rules = catalogue()
    if rule_id not in rules:
        close = _similar(rule_id, rules)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ExpectationsError(f"unknown rule {rule_id!r}{hint}; `callgate model rules` lists "
                                f"the rule IDs")
    if not rules[rule_id].in_scope:
        raise ExpectationsError(f"rule {rule_id} is out of scope, so no case exercises it: "
                                f"remove the entry")


def _similar(rule_id: str, rules: Iterable[str]) -> list[str]:
    return difflib.get_close_matches(rule_id.upper(), list(rules), n=3, cutoff=0.8)


def apply_all(expectations: Expectations | None, results: Sequence[CaseResult]) -> list[CaseResult]:
    """Apply to every result and append the stale rule entries (tests and offline use)."""
    if expectations is None:
        return list(results)
    done = [expectations.apply(r) for r in results]
    return done + expectations.stale_results()
