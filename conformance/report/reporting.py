"""The reports of a run, all views of its results stream: report.json (checked against its
published schema), junit.xml, report.md and report.html.

DESIGN.md principle 9: `build_report` turns a `RunRecord` (what `read_stream` read from
results.jsonl, complete or cut short by a kill) into the report.json document, and every other
format is rendered from that document (plus, for the HTML diagrams, the transitions the stream
says were covered). Nothing here runs cases or reads anything but the stream and the model.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from markupsafe import Markup

from callgate.conformance.cases.slots import machine_feature
from callgate.conformance.expectations import entry_matches, failing_rules, from_record
from callgate.conformance.judge.declines import CHECKED, DECLARED, UNDECLARED
from callgate.conformance.judge.runner import ADAPTER_FAULT
from callgate.conformance.report import diagrams, junit, reach
from callgate.conformance.report import lanes as parallel_lanes
from callgate.conformance.results import (
    CaseResult,
    RunRecord,
    StepRecord,
    Summary,
    Verdict,
    outputs_text,
)
from callgate.model import codes
from callgate.model.families import MACHINES
from callgate.model.rules import catalogue

REPORT_SCHEMA_VERSION = 1
PACKAGE = "callgate.conformance.report"
SCHEMA_RESOURCE = "schemas/report.schema.json"
REPORT_FILES = ("report.json", "junit.xml", "report.md", "report.html")

# A rule's verdict over all the cases that cite it: the worst one wins.
# A real failure outranks an error beside it (an error is "could not judge", not "held").
_SEVERITY = [Verdict.FAIL, Verdict.UNEXPECTED_PASS, Verdict.ERROR, Verdict.EXPECTED_FAIL,
             Verdict.PASS, Verdict.NOT_APPLICABLE]
_FAILED = (Verdict.FAIL, Verdict.ERROR, Verdict.EXPECTED_FAIL)

# What a report says about a run as a whole (DESIGN.md, Verdicts; principle 11). "conformant"
# alone only when the run covered every transition the model defines for the adapter's features
# with no known deviation and nothing not applicable; otherwise the headline says on what.
STATUS_CONFORMANT = "conformant"
STATUS_QUALIFIED = "conformant, qualified"
STATUS_FAIL = "non-conformant"
STATUS_ERROR = "harness or adapter error"
STATUS_INCOMPLETE = "incomplete"
STATUS_LOW_COVERAGE = "insufficient coverage"
# Exit 3, never 0: a run in which no case passed (nor failed only as the expectations list)
# showed nothing to hold (every feature absent, a
# shard of no unit, an empty trace), and a shard alone shows only its slice of the run (the
# merged run, `callgate report --merge`, gets the gate's verdict).
STATUS_NOTHING = "nothing shown"
STATUS_SHARD = "shard only"

# How much of a run the Markdown summary lists: a pull-request comment holds 65,536 characters.
MD_FAILURES = 20
MD_TRACE_STEPS = 12
MD_RULES = 60
MD_LIMIT = 60_000


class ReportInvalid(ValueError):
    """A report document that does not match report.schema.json; the message lists where."""


# --- report.json ------------------------------------------------------------------------------


def rule_verdict(verdicts: Iterable[Verdict]) -> str:
    seen = set(verdicts)
    for verdict in _SEVERITY:
        if verdict in seen:
            return verdict.value
    return "untested"


def absent_rules(absent: Mapping[str, str]) -> dict[str, str]:
    """The rules that only machines the adapter declared absent reach, each with the reason:
    a machine is absent when the feature of its first operation (the way a client first
    reaches the object, `slots.machine_feature`) is one of `absent`'s."""
    reasons: dict[str, str] = {}
    for machine in MACHINES.values():
        feature = machine_feature(machine)
        if feature not in absent:
            continue
        for row in machine.rows:
            for rule_id in row.rules:
                reasons.setdefault(rule_id, f"{feature} declared absent: {absent[feature]}")
    return reasons


def rules_matrix(cases: Sequence[CaseResult],
                 absent: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Rule by rule: level, how many cases cite it, and the rule's verdict.

    A rule fails (or errs, or is an expected failure) when a case went wrong at a step that cites
    it; it passes only on evidence: a passing case cites it, or a step that cites it was taken
    and held in a case that went wrong later. A rule cited only by cases that went wrong before
    reaching it is `untested` (an error shows nothing held); `not_applicable` when only
    not-applicable cases cite it, and `untested` when none does."""
    cited_by: dict[str, list[int]] = defaultdict(list)
    failing_by: dict[str, list[int]] = defaultdict(list)
    held_by: dict[str, list[int]] = defaultdict(list)
    for i, case in enumerate(cases):
        wrong = failing_rules(case) if case.verdict in _FAILED else []
        # A case's other failures (a stateful case keeps every kind it saw) fail their rules too.
        wrong += [r for f in case.other_failures for r in f.failed_rules]
        cited = set(case.rules) | {r for step in case.trace for r in step.rules} | set(wrong)
        for rule_id in cited:
            cited_by[rule_id].append(i)
        for rule_id in dict.fromkeys(wrong):
            failing_by[rule_id].append(i)
        held = (set(case.rules) | {r for step in case.trace for r in step.rules}
                if case.verdict is Verdict.PASS
                else {r for step in case.trace if step.ok for r in step.rules})
        for rule_id in held - set(wrong):
            held_by[rule_id].append(i)
    matrix = []
    reasons = absent_rules(absent or {})
    for rule in catalogue().values():
        if not rule.in_scope:
            continue
        citing = [cases[i] for i in cited_by.get(rule.id, [])]
        failing = [cases[i] for i in failing_by.get(rule.id, [])]
        if failing:
            verdict = rule_verdict(c.verdict for c in failing)
        elif any(c.verdict is Verdict.UNEXPECTED_PASS for c in citing):
            verdict = Verdict.UNEXPECTED_PASS.value
        elif held_by.get(rule.id):
            verdict = Verdict.PASS.value
        elif any(c.verdict is not Verdict.NOT_APPLICABLE for c in citing):
            verdict = "untested"
        else:
            verdict = Verdict.NOT_APPLICABLE.value if citing else "untested"
        entry = {
            "id": rule.id, "level": rule.level.value, "summary": rule.summary,
            "cases": len(citing), "verdict": verdict,
            "failing_cases": [c.id for c in failing][:20],
        }
        if verdict == "untested" and not citing and rule.id in reasons:
            entry |= {"verdict": Verdict.NOT_APPLICABLE.value, "reason": reasons[rule.id]}
        matrix.append(entry)
    return matrix


def coverage(record: RunRecord) -> dict[str, Any]:
    total: dict[str, int] = record.start.get("transitions_total", {}) or {}
    covered_keys = covered_transitions(record)
    by_machine: dict[str, dict[str, int]] = {}
    for machine, n in total.items():
        hit = sum(1 for k in covered_keys if k.startswith(machine + "|"))
        by_machine[machine] = {"total": int(n), "covered": hit}
    data: dict[str, Any] = {
        "transitions_total": sum(m["total"] for m in by_machine.values()),
        "transitions_covered": sum(m["covered"] for m in by_machine.values()),
        "by_machine": by_machine,
    }
    only_after = covered_only_after_deviations(record) & covered_keys
    if only_after:
        data["covered_only_after_deviations"] = len(only_after)
    recorded = record.start.get("expectations")
    if isinstance(recorded, Mapping) and record.start.get("transitions"):
        # What the implementation can still reach with its listed deviations (issue 17's
        # measure): only for a run with an expectations file, whose entries the stream records.
        data["with_deviations"] = reach.with_deviations(record, from_record(recorded))
    return data


def covered_only_after_deviations(record: RunRecord, rule: str | None = None) -> set[str]:
    """Transitions no case covered before following a listed deviation (of `rule`, if given):
    what the run reached only by following the implementation past one."""
    clean: set[str] = set()
    after: set[str] = set()
    for case in record.cases:
        later = set(case.covered_after_deviation)
        clean.update(set(case.covered) - later)
        if rule is None or rule in case.deviations:
            after.update(later)
    return after - clean


def pair_coverage(record: RunRecord, missing_shown: int = 50) -> dict[str, Any]:
    """Per composition of the multi-object cases: the pairs covered of those aimed at (a
    transition of one object while the other is in an in-flight phase), and some that are
    missing. Empty when the run had no multi-object cases."""
    universe: dict[str, list[str]] = record.start.get("pairs", {}) or {}
    undrivable: dict[str, dict[str, str]] = record.start.get("pairs_not_drivable", {}) or {}
    covered: set[str] = set()
    for case in record.cases:
        covered.update(case.pairs)
    out: dict[str, Any] = {}
    for name, keys in sorted(universe.items()):
        reasons = undrivable.get(name, {})
        left = sorted(set(keys) - covered)
        missing = [k for k in left if k not in reasons]
        out[name] = {"total": len(keys), "covered": len(keys) - len(left),
                     "missing": [k.removeprefix(name + "|") for k in missing[:missing_shown]],
                     "missing_count": len(missing),
                     "not_drivable": [{"pair": k.removeprefix(name + "|"), "reason": reasons[k]}
                                      for k in left if k in reasons][:missing_shown],
                     "not_drivable_count": sum(1 for k in left if k in reasons)}
    return out


def covered_transitions(record: RunRecord) -> set[str]:
    """The transition keys the run's cases covered, within the run's universe if it names one."""
    covered: set[str] = set()
    for case in record.cases:
        covered.update(case.covered)
    universe = set(record.start.get("transitions", []) or [])
    return covered & universe if universe else covered


def reproduce_command(start: Mapping[str, Any]) -> str:
    """The command that runs the same cases again: the recorded one, with the seed and budget
    written out when it left them to their defaults (defaults may change between versions)."""
    command = str(start.get("command") or "")
    if not command:
        adapter = (start.get("adapter") or {}).get("name", "ADAPTER")
        command = f"callgate run --adapter {shlex.quote(str(adapter))}"
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    def given(option: str) -> bool:
        return any(w == option or w.startswith(option + "=") for w in words)

    extra = []
    if start.get("seed") is not None and not given("--seed"):
        extra += ["--seed", str(start["seed"])]
    if start.get("budget") and not given("--budget"):
        extra += ["--budget", str(start["budget"])]
    return command + "".join(" " + shlex.quote(w) for w in extra)


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def _declines(cases: Sequence[CaseResult]) -> list[str]:
    """What the headline says of requests the adapter declined (judge/declines.py): those it
    declared absent and those after an earlier refusal, counted; those it declined without
    declaration, each named (they are errors, and the run exits 3 or 1)."""
    undeclared = [c.message.partition(ADAPTER_FAULT)[0] for c in cases
                  if c.verdict is Verdict.ERROR and UNDECLARED in c.message]
    declared = sum(c.verdict is Verdict.NOT_APPLICABLE and DECLARED in c.message for c in cases)
    checked = sum(c.verdict is Verdict.NOT_APPLICABLE and CHECKED in c.message for c in cases)
    parts = []
    if undeclared:
        names = list(dict.fromkeys(undeclared))
        parts.append(f"{len(undeclared)} requests declined (not_applicable) without declaration, "
                     f"which is no pass: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}")
    if declared or checked:
        parts.append(f"{declared} cases stopped at a request the adapter declared absent, "
                     f"{checked} at a request declined after an earlier refusal on its object")
    return parts


def run_verdict(record: RunRecord, summary: Summary, cov: Mapping[str, Any],
                rules: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What the run showed, said no larger than it was (DESIGN.md principle 11): the status, the
    exit code, and a headline that names coverage, known deviations and what was not applicable.

    A failure decides the outcome (exit 1) even beside errors; an error with no failure is exit
    3; a run that did not finish never exits 0; a run below `--min-coverage` fails the gate; a run
    in which no case passed, and a shard alone, exit 3 (no verdict): neither showed the gate's
    claim (docs/verdict.md)."""
    covered, total = int(cov["transitions_covered"]), int(cov["transitions_total"])
    coverage_pct = _percent(covered, total)
    floor = record.start.get("min_coverage")
    min_coverage = float(floor) if isinstance(floor, int | float) else None
    rule_counts: dict[str, int] = defaultdict(int)
    for rule in rules:
        rule_counts[str(rule["verdict"])] += 1
    not_applicable: dict[str, int] = defaultdict(int)
    for case in record.cases:
        if case.verdict is Verdict.NOT_APPLICABLE:
            not_applicable[case.message or "not applicable"] += 1
    exit_code = summary.exit_code(record.complete)
    shard = record.start.get("shard") if isinstance(record.start.get("shard"), Mapping) else None
    below = min_coverage is not None and coverage_pct < min_coverage
    if not record.complete:
        status = STATUS_INCOMPLETE
    elif exit_code == 1:
        status = STATUS_FAIL
    elif exit_code == 3:
        status = STATUS_ERROR
    elif below:
        status, exit_code = STATUS_LOW_COVERAGE, 1
    elif not summary.passed and not summary.expected_fail:
        status, exit_code = STATUS_NOTHING, 3
    elif shard is not None:
        status, exit_code = STATUS_SHARD, 3
    elif covered < total or summary.expected_fail or not_applicable or total == 0:
        status = STATUS_QUALIFIED
    else:
        status = STATUS_CONFORMANT
    shown = (f"{covered}/{total} transitions ({coverage_pct:g}%) of the model for the adapter's "
             f"features, {rule_counts.get('pass', 0)} of {len(rules)} in-scope rules held")
    parts = [shown]
    reachable = cov.get("with_deviations")
    if isinstance(reachable, Mapping):
        parts.append(f"{reachable['covered']}/{reachable['reachable']} ({reachable['percent']:g}%) "
                     f"of the transitions still reachable with the listed deviations")
        if reachable["covered_outside"]:
            parts.append(f"{reachable['covered_outside']} covered transitions lie outside what "
                         f"the listed deviations leave reachable: the expectations describe the "
                         f"implementation wrongly")
    if summary.expected_fail:
        parts.append(f"{summary.expected_fail} cases with known deviations")
    if summary.failed or summary.unexpected_pass:
        parts.append(f"{summary.failed} failed, {summary.unexpected_pass} unexpected passes")
    if summary.errors:
        parts.append(f"{summary.errors} could not be judged (errors)")
    parts += _declines(record.cases)
    if not_applicable:
        parts.append(f"{sum(not_applicable.values())} cases not applicable")
    if below:
        parts.append(f"below the required {min_coverage:g}% coverage")
    orphans = (record.end or {}).get("orphans")
    killed = int(orphans["killed"]) if isinstance(orphans, dict) else None
    if killed:
        parts.append(f"{killed} processes the adapter left running had to be killed")
    if status == STATUS_NOTHING:
        parts.append("no case passed: nothing was shown to hold (a run needs at least one "
                     "passing case, or one that failed only as the expectations list, to be "
                     "conformant)")
    if shard is not None:
        parts.append(f"shard {shard.get('index')}/{shard.get('count')} only: "
                     f"{len(record.start.get('units') or [])} of "
                     f"{len(shard.get('all_units') or [])} units ran; the gate's verdict is the "
                     f"merged run's (callgate report --merge every shard)")
    if not record.complete:
        aborted = record.aborted or {}
        parts.append(f"the run did not finish ({aborted.get('reason', 'no end')}): "
                     f"only the {summary.cases} cases it completed are judged")
    return {
        "status": status,
        "exit_code": exit_code,
        "headline": f"{status}: " + "; ".join(parts),
        "coverage_percent": coverage_pct,
        "min_coverage": min_coverage,
        "rules": dict(sorted(rule_counts.items())),
        "known_deviations": summary.expected_fail,
        "not_applicable": [{"reason": reason, "cases": n}
                           for reason, n in sorted(not_applicable.items())],
        "orphans_killed": killed,
    }


def build_report(record: RunRecord) -> dict[str, Any]:
    """The whole report.json document, from the stream alone."""
    start, end = record.start, record.end
    summary = Summary.of(record.cases)
    cases = [_case_json(c) for c in record.cases]
    cov = coverage(record)
    rules = rules_matrix(record.cases, (start.get("adapter") or {}).get("absent") or {})
    verdict = run_verdict(record, summary, cov, rules)
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "tool": {"name": "callgate", "version": str(start.get("callgate_version", ""))},
        "complete": record.complete,
        "aborted": record.aborted if not record.complete else None,
        "verdict": verdict,
        "started": start.get("started"),
        "finished": end.get("finished") if end else None,
        "seconds": end.get("seconds") if end else None,
        "command": str(start.get("command", "")),
        "reproduce": reproduce_command(start),
        "seed": start.get("seed"),
        "budget": start.get("budget"),
        "environment": start.get("environment", {}) or {},
        "adapter": start.get("adapter", {}) or {},
        "summary": {
            "passed": summary.passed, "failed": summary.failed, "errors": summary.errors,
            "not_applicable": summary.not_applicable, "expected_fail": summary.expected_fail,
            "unexpected_pass": summary.unexpected_pass, "cases": summary.cases,
            "steps": summary.steps, "exit_code": verdict["exit_code"],
        },
        "coverage": cov,
        "argument_values": argument_values(record.cases),
        "pair_coverage": pair_coverage(record),
        "rules": rules,
        "cases": cases,
        "expectations": _expectations_json(start.get("expectations"), cases, record),
    }


def argument_values(cases: Iterable[CaseResult]) -> dict[str, dict[str, Any]]:
    """The concrete values sent for each abstract argument ("machine op param=abstract"), over
    the run, and how many cases sent each key (callgate.conformance.cases.values)."""
    values: dict[str, set[int]] = {}
    counts: dict[str, int] = {}
    for case in cases:
        for key, sent in case.values.items():
            values.setdefault(key, set()).update(sent)
            counts[key] = counts.get(key, 0) + 1
    return {k: {"values": sorted(values[k]), "cases": counts[k]} for k in sorted(values)}


def _case_json(case: CaseResult) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": case.id, "kind": case.kind, "description": case.description,
        "rules": case.rules, "verdict": case.verdict.value, "steps": case.steps,
        "seconds": round(case.seconds, 6), "slots": case.slots,
    }
    if case.message:
        data["message"] = case.message
    if case.expectation:
        data["expectation"] = case.expectation
    if case.verdict in _FAILED:
        data["trace"] = _trace_json(case.trace)
        data["failed_rules"] = failing_rules(case)
        data["replay"] = case.replay
        if case.evidence:
            data["evidence"] = case.evidence
        if case.original_length:
            data["original_length"] = case.original_length
        if case.shrink:
            data["length_before"], data["length_after"] = case.length_before, case.length_after
            data["shrink"] = case.shrink
    if case.deviations:
        data["deviations"] = case.deviations
        data["covered_after_deviation"] = case.covered_after_deviation
    if case.other_failures:
        data["other_failures"] = [{
            "verdict": f.verdict.value, "message": f.message, "trace": _trace_json(f.trace),
            "failed_rules": f.failed_rules, "replay": f.replay, "programs": f.programs,
            **({"evidence": f.evidence} if f.evidence else {}),
            **({"original_length": f.original_length} if f.original_length else {}),
        } for f in case.other_failures]
    if case.history:
        data["history"] = [s.to_json() for s in case.history]
        data["linearizability"] = case.linearizability
    if case.runs:
        data["runs"], data["overlapped_runs"] = case.runs, case.overlapped_runs
    if case.pairs:
        data["pairs"] = len(case.pairs)
    if case.orderings:
        data["orderings"] = case.orderings
    return data


def _trace_json(trace: Sequence[StepRecord]) -> list[dict[str, Any]]:
    return [{
        "slot": s.slot, "operation": s.op, "args": s.args,
        "observed": {"code": s.code, "name": s.code_name, "outputs": s.outputs},
        "allowed": s.allowed, "ok": s.ok, "rules": s.rules, "state": s.state_before,
        **({"sent": s.sent} if s.sent else {}),
        **({"deviation": s.deviation} if s.deviation else {}),
    } for s in trace]


def _expectations_json(recorded: Any, cases: Sequence[Mapping[str, Any]],
                       record: RunRecord | None = None) -> dict[str, Any] | None:
    """The run's known-deviation entries (run_start "expectations"), each with its match count;
    an entry that says what the implementation does instead also lists every case that followed
    it and how many transitions were covered only after following it."""
    if not isinstance(recorded, Mapping):
        return None
    entries = []
    for entry in recorded.get("deviations", []) or []:
        if isinstance(entry, Mapping):
            matched = sum(1 for c in cases if entry_matches(entry, c))
            extra: dict[str, Any] = {}
            if entry.get("instead"):
                rule = str(entry.get("rule", ""))
                extra["cases"] = [str(c["id"]) for c in cases if rule in c.get("deviations", [])]
                extra["covered_only_after"] = (len(covered_only_after_deviations(record, rule))
                                               if record is not None else 0)
            entries.append({**entry, **extra, "matched": matched})
    return {"file": str(recorded.get("file", "")),
            "implementation": str(recorded.get("implementation", "")), "deviations": entries}


# --- the schema -------------------------------------------------------------------------------


@cache
def report_schema() -> dict[str, Any]:
    """The published JSON Schema of report.json (`callgate schema report`)."""
    text = resources.files(PACKAGE).joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_text() -> str:
    return resources.files(PACKAGE).joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")


@cache
def _validator() -> Any:
    # The schema itself is checked against the 2020-12 metaschema by a test, not on every run
    # (seconds of the run's end): tests/test_reporting.py.
    return Draft202012Validator(report_schema())


def report_problems(document: Any, limit: int = 10) -> list[str]:
    """Where `document` breaks report.schema.json: 'path: message' lines, at most `limit`."""
    problems = []
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    for error in errors[:limit]:
        path = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        problems.append(f"{path}: {error.message[:300]}")
    if len(errors) > limit:
        problems.append(f"... and {len(errors) - limit} more")
    return problems


def validate_report(document: Any, source: str = "report") -> None:
    """Raise ReportInvalid, naming `source` and each problem, unless `document` is valid."""
    problems = report_problems(document)
    if problems:
        raise ReportInvalid(f"{source} does not match report.schema.json "
                            f"(`callgate schema report`):\n  " + "\n  ".join(problems))


# --- Markdown and HTML ------------------------------------------------------------------------


def status_of(report: Mapping[str, Any]) -> str:
    if not report["complete"]:
        return STATUS_INCOMPLETE
    verdict = report.get("verdict")
    if isinstance(verdict, Mapping):
        return str(verdict["status"])
    # A report.json of an earlier version, without a verdict section.
    return {0: STATUS_QUALIFIED, 1: STATUS_FAIL, 3: STATUS_ERROR}.get(
        int(report["summary"]["exit_code"]), "unknown")


def _compiled_templates(html: bool) -> jinja2.BytecodeCache | None:
    """Jinja's cache of compiled templates in the model's cache directory (compiling the HTML
    template takes a large part of a second each run); None with the cache off. Jinja checks
    each entry against the template's source and the Python version."""
    from callgate.model.explorer import cache as disk

    if not disk.enabled():
        return None
    where = disk.cache_dir() / ("templates-html" if html else "templates-text")
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only or full disk: compiled each time
        return None
    return jinja2.FileSystemBytecodeCache(str(where))


@cache
def template_environment(html: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("callgate.conformance.report", "templates"),
        autoescape=html, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, bytecode_cache=_compiled_templates(html))
    env.filters["md"] = md_text
    env.filters["mdcode"] = md_code
    env.filters["pct"] = percent
    env.filters["js"] = lambda v: json.dumps(v, indent=1, sort_keys=True, default=str)
    env.filters["brief"] = lambda v: outputs_text(v) if isinstance(v, Mapping) else str(v or "")
    env.filters["readable"] = readable_message
    env.filters["code"] = code_text
    return env


_PY_DICT = re.compile(r"\{'[^{}]*\}")


def readable_message(text: object) -> str:
    """A message as words: a Python dict repr that an older callgate wrote into it ("with
    {'returned': False, 'waited_ms': 300}") is shown as "returned false, waited_ms 300"."""
    def words(match: re.Match[str]) -> str:
        try:
            value = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return match.group(0)
        return outputs_text(value) if isinstance(value, dict) else match.group(0)

    return _PY_DICT.sub(words, str(text))


def code_text(observed: Mapping[str, Any]) -> str:
    """An observed code as a report shows it: its recorded name, or for a bare number an older
    callgate recorded, the name adapters' outcomes have (`codes.REPORTED_NAMES`) if any."""
    name, code = observed.get("name"), observed.get("code")
    if isinstance(code, int) and (not name or "(" not in str(name)):
        described = codes.describe(code) if (code & 0xFFFFFFFF) in codes.REPORTED_NAMES else ""
        return described or str(name or code)
    return str(name or code)


def _one_line(value: object) -> str:
    """Whitespace runs as one space; other control characters dropped."""
    text = " ".join(str(value).split())
    return "".join(ch for ch in text if ch >= " " and ch != "\x7f")


def md_text(value: object, limit: int = 300) -> str:
    """Text from the stream made inert in Markdown (a table cell, a list item): one line, HTML
    and Markdown punctuation escaped, cut to `limit` characters."""
    text = _one_line(value)
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    out = []
    for ch in text:
        out.append("\\" + ch if ch in "\\`*_[]|~#!" else ch)
    return _inert_links("".join(out))


# A pull-request comment pings `@name` and links bare URLs: a zero-width space breaks both
# (the text reads the same), so adapter text cannot notify people or plant links.
_ZWSP = "\u200b"
_MENTION = re.compile(r"@(?=[A-Za-z0-9])")
_URL = re.compile(r"(?i)\b(https?|ftp|file)://|\bwww\.")


def _inert_links(text: str) -> str:
    text = _MENTION.sub("@" + _ZWSP, text)
    return _URL.sub(lambda m: m.group(0).replace(":", ":" + _ZWSP).replace("www.", "www" + _ZWSP + "."),
                    text)


def md_code(value: object, limit: int = 300) -> str:
    """Text from the stream as an inline code span: rendered verbatim, safe in a table cell."""
    text = _one_line(value)
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    text = text.replace("|", "\\|")
    run = longest = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "n/a"


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in `text`."""
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def _failures(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    order = {"fail": 0, "error": 1, "unexpected_pass": 2, "expected_fail": 3}
    picked = [c for c in report["cases"] if c["verdict"] in order]
    return sorted(picked, key=lambda c: order[c["verdict"]])


def _rule_counts(report: Mapping[str, Any]) -> list[tuple[str, int]]:
    counts: dict[str, int] = defaultdict(int)
    for rule in report["rules"]:
        counts[rule["verdict"]] += 1
    return sorted(counts.items())


def render_markdown(report: Mapping[str, Any]) -> str:
    """report.md: a summary for a CI step summary or a pull-request comment.

    It lists at most MD_FAILURES failures and MD_RULES rules, and lists fewer failures until the
    text fits in MD_LIMIT characters (a pull-request comment holds 65,536)."""
    failures = _failures(report)
    rules = [r for r in report["rules"] if r["verdict"] not in ("pass", "untested",
                                                                 "not_applicable")]
    template = template_environment(False).get_template("report.md.j2")
    shown = MD_FAILURES
    while True:
        text = template.render(
            r=report, status=status_of(report), failures=failures[:shown],
            more_failures=max(0, len(failures) - shown), rules=rules[:MD_RULES],
            more_rules=max(0, len(rules) - MD_RULES), trace_steps=MD_TRACE_STEPS,
            fence=_fence(report["reproduce"]), rule_counts=_rule_counts(report),
            parallel=[c for c in report["cases"] if c.get("history") or c["kind"] == "parallel"])
        if len(text) <= MD_LIMIT or shown == 0:
            return text
        shown //= 2


def failing_steps(report: Mapping[str, Any]) -> list[diagrams.FailingStep]:
    """The failing step of each failed (or expected-to-fail) case, for the diagrams."""
    steps = []
    for case in report["cases"]:
        if case["verdict"] not in ("fail", "expected_fail") or not case.get("trace"):
            continue
        slots = case.get("slots") or {}
        for step in case["trace"]:  # steps a listed deviation describes, which it followed
            if step.get("deviation"):
                steps.append(diagrams.FailingStep(str(slots.get(step["slot"], "")),
                                                  str(step["state"]), str(step["operation"]), True))
        last = case["trace"][-1]
        if last.get("deviation") or last.get("ok"):
            continue  # the case ended after its last followed deviation, on a step that held
        machine = slots.get(last["slot"], "")
        steps.append(diagrams.FailingStep(str(machine), str(last["state"]), str(last["operation"]),
                                          case["verdict"] == "expected_fail"))
    return steps


def render_html(report: Mapping[str, Any], covered: Iterable[str] = (), *,
                with_diagrams: bool = True) -> str:
    """report.html: one self-contained page (inline CSS and SVG, no scripts, nothing fetched)."""
    implemented = drawn_machines(report)
    pictures = diagrams.diagrams(covered, failing_steps(report), enabled=with_diagrams,
                                 machines=implemented)
    failures = _failures(report)
    by_family: dict[str, list[diagrams.Diagram]] = defaultdict(list)
    for picture in pictures:
        by_family[picture.family].append(picture)
    anchors = {c["id"]: f"case-{i}" for i, c in enumerate(report["cases"])}
    return template_environment(True).get_template("report.html.j2").render(
        r=report, status=status_of(report), failures=failures, diagrams=dict(by_family),
        anchors=anchors, failing_ids={c["id"] for c in failures},
        rule_counts=_rule_counts(report), markup=Markup,
        not_drawn=[m for m in MACHINES if implemented is not None and m not in implemented],
        parallel=[(c, parallel_lanes.lanes(c["history"])) for c in report["cases"]
                  if c.get("history")])


def drawn_machines(report: Mapping[str, Any]) -> list[str] | None:
    """The machines whose diagrams a report draws: those with transitions under the adapter's
    features (the run's coverage universe); None (every machine) when the report has none."""
    by_machine = (report.get("coverage") or {}).get("by_machine") or {}
    drawn = [m for m, counts in by_machine.items() if counts.get("total")]
    return drawn or None


# --- writing ----------------------------------------------------------------------------------


def write_report_json(record: RunRecord, out: Path) -> Path:
    """report.json alone (validated before it is written)."""
    report = build_report(record)
    validate_report(report, "the report callgate built")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return path


def write_reports(record: RunRecord, out: Path, *, diagrams: bool = True) -> list[Path]:
    """Every report of a run into `out`: report.json, junit.xml, report.md, report.html.

    report.json is checked against report.schema.json before anything is written; a mismatch is
    a bug in callgate and raises ReportInvalid."""
    report = build_report(record)
    validate_report(report, "the report callgate built")
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "report.json": json.dumps(report, indent=1) + "\n",
        "junit.xml": junit.junit_xml(report),
        "report.md": render_markdown(report),
        "report.html": render_html(report, covered_transitions(record), with_diagrams=diagrams),
    }
    paths = []
    for name in REPORT_FILES:
        path = out / name
        # An adapter may send text that is not valid Unicode (a lone surrogate): show it escaped.
        path.write_text(texts[name], encoding="utf-8", errors="backslashreplace")
        paths.append(path)
    return paths
