"""junit.xml: the JUnit view of a report, valid against the junit-10.xsd that pytest's tests use.

One <testcase> per case, classname `callgate.<kind>.<machines>`. How verdicts map:

* pass: an empty testcase;
* fail: <failure type="callgate.fail"> with the minimal trace as text;
* error: <error type="callgate.error"> with the trace and the adapter's evidence;
* not_applicable: <skipped type="callgate.not_applicable">;
* expected_fail: <skipped type="callgate.expected_fail" message="known deviation: REASON">, as
  pytest reports an xfail: CI shows it as skipped, never as passed, and it does not fail the job;
* unexpected_pass: <failure type="callgate.unexpected_pass"> (the expectations file is stale).

When the run's exit code is not 0 and no case carries a <failure> (exit 1) or an <error> (exit 3)
that says so (a run that did not finish, a run below --min-coverage, a run in which no case
passed, a shard alone), one more testcase, `callgate.run` `verdict`, carries it with the
verdict's headline, so that a CI test view never shows green for a run the gate did not pass.

junit-10.xsd allows <properties> only on a <testsuite>, not on a <testcase> (which is why pytest's
`record_property` is not allowed with junit_family=xunit2). So each case's rule IDs go in the
suite's properties as `rules:CASE-ID` = "RULE RULE ...", and into the case's <system-out>, where
CI test viewers show them next to the case.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from callgate.conformance.results import outputs_text

# XML 1.0 forbids these characters even escaped; an adapter may still send them.
_ILLEGAL = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
MESSAGE_LIMIT = 500


def clean(value: object) -> str:
    """Text safe in an XML document: illegal characters shown as \\xNN."""
    return _ILLEGAL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def _seconds(value: object) -> str:
    try:
        return f"{max(0.0, float(value)):.3f}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "0.000"


def classname(case: Mapping[str, Any]) -> str:
    machines = sorted({str(m) for m in (case.get("slots") or {}).values()})
    return ".".join(["callgate", str(case.get("kind") or "case"), *(["+".join(machines)]
                                                                      if machines else [])])


def trace_text(case: Mapping[str, Any]) -> str:
    """A case's trace as plain text: one block per step, the last one marked."""
    lines = [f"case {case['id']}: {case['verdict']}"]
    if case.get("message"):
        lines.append(f"message: {case['message']}")
    if case.get("failed_rules"):
        lines.append(f"rules: {' '.join(case['failed_rules'])}")
    if case.get("expectation"):
        lines.append(f"known deviation: {case['expectation']}")
    trace = case.get("trace") or []
    for n, step in enumerate(trace, 1):
        args = ", ".join(f"{k}={v}" for k, v in (step.get("args") or {}).items())
        mark = "" if step.get("ok") else "   <-- not allowed" if step["observed"]["code"] is not None \
            else "   <-- no answer"
        observed = step["observed"]
        seen = observed.get("name") or observed.get("code")
        if observed.get("outputs"):
            seen = f"{seen} with {outputs_text(observed['outputs'])}"
        lines += [f"step {n}: {step['slot']}.{step['operation']}({args}){mark}",
                  f"  state:    {step.get('state', '')}",
                  f"  observed: {seen if seen is not None else '(nothing)'}",
                  f"  allowed:  {'; '.join(step.get('allowed') or []) or '(nothing)'}",
                  f"  rules:    {' '.join(step.get('rules') or [])}"]
    if case.get("original_length"):
        lines.append(f"(shrunk from {case['original_length']} steps)")
    if case.get("evidence"):
        lines += ["evidence:", str(case["evidence"])]
    for n, other in enumerate(case.get("other_failures") or [], 2):
        lines += ["", trace_text({**other, "id": f"{case['id']} (failure {n})"}).rstrip("\n")]
    return "\n".join(lines) + "\n"


def history_lines(case: Mapping[str, Any]) -> list[str]:
    """A parallel case's history, one line per operation, times from its first invocation."""
    history = case.get("history") or []
    if not history:
        return []
    t0 = min(float(h.get("started") or 0.0) for h in history)
    lines = [f"history ({case.get('linearizability') or 'not judged'}):"]
    for h in history:
        args = ", ".join(f"{k}={v}" for k, v in (h.get("args") or {}).items())
        seen = "no answer" if h.get("code") is None else (h.get("code_name") or h.get("code"))
        span = f"+{(float(h.get('started') or t0) - t0) * 1000:.3f} ms"
        if h.get("ended"):
            span += f" .. +{(float(h['ended']) - t0) * 1000:.3f} ms"
        lines.append(f"  {h.get('thread') or 'main'}: {h.get('slot')}.{h.get('op')}({args}) -> "
                     f"{seen} [{span}]")
    return lines


def _testcase(suite: ET.Element, case: Mapping[str, Any]) -> None:
    element = ET.SubElement(suite, "testcase", {
        "classname": clean(classname(case)), "name": clean(case["id"]),
        "time": _seconds(case.get("seconds"))})
    verdict = case["verdict"]
    message = clean(str(case.get("message", ""))[:MESSAGE_LIMIT])
    if verdict == "fail":
        ET.SubElement(element, "failure", {"type": "callgate.fail", "message": message}
                      ).text = clean(trace_text(case))
    elif verdict == "unexpected_pass":
        ET.SubElement(element, "failure", {"type": "callgate.unexpected_pass", "message": message}
                      ).text = clean(trace_text(case))
    elif verdict == "error":
        ET.SubElement(element, "error", {"type": "callgate.error", "message": message}
                      ).text = clean(trace_text(case))
    elif verdict == "not_applicable":
        ET.SubElement(element, "skipped", {"type": "callgate.not_applicable", "message": message})
    elif verdict == "expected_fail":
        reason = clean(f"known deviation: {case.get('expectation', '')}"[:MESSAGE_LIMIT])
        ET.SubElement(element, "skipped", {"type": "callgate.expected_fail", "message": reason}
                      ).text = clean(trace_text(case))
    out = [f"rules: {' '.join(case.get('rules') or [])}", f"description: {case.get('description', '')}"]
    out += history_lines(case)
    ET.SubElement(element, "system-out").text = clean("\n".join(out) + "\n")


def junit_xml(report: Mapping[str, Any]) -> str:
    """The JUnit XML document of a report (see the module docstring for the mapping)."""
    summary = report["summary"]
    cases = report["cases"]
    failures = summary["failed"] + summary["unexpected_pass"]
    skipped = summary["not_applicable"] + summary["expected_fail"]
    total_time = report.get("seconds")
    if total_time is None:
        total_time = sum(float(c.get("seconds") or 0) for c in cases)
    adapter = report.get("adapter") or {}
    root = ET.Element("testsuites", {
        "name": "callgate", "tests": str(len(cases)), "failures": str(failures),
        "errors": str(summary["errors"]), "time": _seconds(total_time)})
    attrs = {"name": clean(f"callgate {adapter.get('name', '')}".strip()),
             "tests": str(len(cases)), "failures": str(failures),
             "errors": str(summary["errors"]), "skipped": str(skipped),
             "time": _seconds(total_time)}
    if report.get("started"):
        attrs["timestamp"] = clean(report["started"])
    suite = ET.SubElement(root, "testsuite", attrs)
    properties = ET.SubElement(suite, "properties")
    suite_props: list[tuple[str, object]] = [
        ("callgate.version", report["tool"].get("version", "")),
        ("adapter", adapter.get("name", "")),
        ("implementation", adapter.get("implementation", "")),
        ("implementation.version", adapter.get("version", "")),
        ("complete", str(report["complete"]).lower()),
        ("exit_code", summary["exit_code"]), ("seed", report.get("seed")),
        ("budget", report.get("budget")), ("command", report.get("reproduce", "")),
        ("coverage", f"{report['coverage']['transitions_covered']}/"
                     f"{report['coverage']['transitions_total']}"),
    ]
    for name, value in suite_props:
        ET.SubElement(properties, "property", {"name": name, "value": clean(
            "" if value is None else value)})
    for case in cases:
        ET.SubElement(properties, "property", {"name": clean(f"rules:{case['id']}"),
                                               "value": clean(" ".join(case.get("rules") or []))})
    for case in cases:
        _testcase(suite, case)
    verdict = _run_verdict_case(report, failures, int(summary["errors"]))
    if verdict is not None:
        suite.append(verdict)
        kind = "failures" if verdict.find("failure") is not None else "errors"
        for element in (root, suite):
            element.set("tests", str(int(element.get("tests", "0")) + 1))
            element.set(kind, str(int(element.get(kind, "0")) + 1))
    ET.indent(root, space=" ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _run_verdict_case(report: Mapping[str, Any], failures: int, errors: int
                      ) -> ET.Element | None:
    """The `callgate.run` testcase that carries a non-zero exit code no case's element shows
    (None when the cases already show it, or the run passed)."""
    code = int(report["summary"]["exit_code"])
    if code == 0 or (code == 1 and failures) or (code == 3 and errors):
        return None
    verdict = report.get("verdict") or {}
    headline = clean(str(verdict.get("headline") or f"exit code {code}"))
    element = ET.Element("testcase", {"classname": "callgate.run", "name": "verdict",
                                      "time": "0.000"})
    tag, kind = ("failure", "callgate.run_fail") if code == 1 else ("error", "callgate.run_error")
    ET.SubElement(element, tag, {"type": kind, "message": headline[:MESSAGE_LIMIT]}).text = \
        f"exit code {code}: {headline}\n"
    return element
