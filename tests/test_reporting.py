"""Reports are views of the results stream: report.json valid against its published schema,
junit.xml valid against pytest's junit-10.xsd, report.md and report.html with everything from the
adapter escaped, and the same verdicts again from the stream of a complete or a killed run."""

from __future__ import annotations

import copy
import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import xmlschema

from callgate.conformance.report import diagrams, junit, reporting
from callgate.conformance.results import RunRecord, Verdict, read_stream
from callgate.model.rules import catalogue
from tests import streams

XSD = Path(__file__).parent / "data" / "junit-10.xsd"


@pytest.fixture(scope="module")
def junit_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run's directory as `callgate run` leaves it: results.jsonl and the four reports."""
    out = tmp_path_factory.mktemp("run")
    streams.write_stream(out / "results.jsonl")
    reporting.write_reports(read_stream(out / "results.jsonl"), out)
    return out


def _report(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    return data


cli = streams.report_cli


# --- report.json and its schema ------------------------------------------------------------


def test_a_run_directory_holds_every_format(run_dir: Path) -> None:
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == ["junit.xml", "report.html", "report.json", "report.md", "results.jsonl"]


def test_report_json_is_valid_against_the_schema_the_cli_prints(
        run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("schema", "report") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == reporting.report_schema()
    assert printed["$schema"].endswith("2020-12/schema")
    assert reporting.report_problems(_report(run_dir)) == []


def test_the_report_counts_every_verdict_and_sets_the_exit_code(run_dir: Path) -> None:
    report = _report(run_dir)
    assert report["complete"] is True
    assert {k: report["summary"][k] for k in ("passed", "failed", "errors", "not_applicable",
                                              "cases", "exit_code")} == {
        "passed": 2, "failed": 2, "errors": 1, "not_applicable": 1, "cases": 6, "exit_code": 1}
    assert [c["verdict"] for c in report["cases"]] == [
        "pass", "pass", "fail", "error", "not_applicable", "fail"]
    assert report["reproduce"].endswith("--seed 7 --budget quick")


def test_every_in_scope_rule_is_a_row_of_the_matrix_with_its_verdict(run_dir: Path) -> None:
    rules = {r["id"]: r for r in _report(run_dir)["rules"]}
    assert list(rules) == [r.id for r in catalogue().values() if r.in_scope]
    assert rules["COM-FIN-01"]["verdict"] == "fail"
    assert rules["COM-FIN-01"]["failing_cases"] == ["com_call-tour-007"]
    assert rules["COM-WAIT-03"]["verdict"] == "fail"
    assert rules["COM-SYNC-01"]["verdict"] == "pass"
    assert rules["COM-CONT-01"]["verdict"] == "not_applicable"
    assert rules["RPC-STATE-01"]["verdict"] == "untested"


def test_coverage_counts_the_covered_transitions_of_the_run(run_dir: Path) -> None:
    coverage = _report(run_dir)["coverage"]
    totals, _ = streams.universe()
    assert coverage["by_machine"]["event"]["total"] == totals["event"]
    assert 0 < coverage["by_machine"]["event"]["covered"] <= totals["event"]
    assert coverage["by_machine"]["com_call"]["covered"] == 0


def _break(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(report: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = report
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is KeyError:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return change


@pytest.mark.parametrize(("change", "where"), [
    (_break("summary", KeyError), "(top level): 'summary' is a required property"),
    (_break("summary.failed", -1), "summary/failed"),
    (_break("summary.exit_code", 2), "summary/exit_code"),
    (_break("cases.2.verdict", "failed"), "cases/2/verdict"),
    (_break("cases.2.trace", KeyError), "cases/2: 'trace' is a required property"),
    (_break("cases.2.trace.0.observed.code", "0"), "cases/2/trace/0/observed/code"),
    (_break("rules.0.verdict", "ok"), "rules/0/verdict"),
    (_break("rules.0.id", "not a rule"), "rules/0/id"),
    (_break("extra", 1), "Additional properties are not allowed ('extra'"),
    (_break("schema_version", 2), "schema_version"),
    (_break("expectations", {"file": "f", "implementation": "", "deviations": [
        {"verdict": "fail", "reason": "r", "matched": 0}]}), "expectations"),
])
def test_the_schema_check_names_what_is_wrong_in_a_broken_report(
        run_dir: Path, change: Callable[[dict[str, Any]], None], where: str) -> None:
    report = copy.deepcopy(_report(run_dir))
    change(report)
    problems = reporting.report_problems(report)
    assert any(where in p for p in problems), problems
    with pytest.raises(reporting.ReportInvalid, match=r"does not match report\.schema\.json"):
        reporting.validate_report(report)


def test_write_reports_refuses_to_write_a_report_that_breaks_the_schema(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = reporting.build_report

    def broken(record: Any) -> dict[str, Any]:
        report = real(record)
        report["summary"]["cases"] = "six"
        return report

    monkeypatch.setattr(reporting, "build_report", broken)
    record = read_stream(streams.write_stream(tmp_path / "results.jsonl"))
    with pytest.raises(reporting.ReportInvalid, match="summary/cases"):
        reporting.write_reports(record, tmp_path)
    assert not (tmp_path / "report.json").exists()


# --- junit.xml -----------------------------------------------------------------------------


def test_junit_xml_is_valid_against_pytests_junit_xsd(run_dir: Path,
                                                      junit_schema: xmlschema.XMLSchema) -> None:
    junit_schema.validate(str(run_dir / "junit.xml"))


def test_the_xsd_check_catches_what_the_xsd_forbids(run_dir: Path,
                                                    junit_schema: xmlschema.XMLSchema) -> None:
    text = (run_dir / "junit.xml").read_text(encoding="utf-8")
    # Properties on a testcase: what pytest's xunit2 family forbids, and why rules live on the suite.
    bad = text.replace("<system-out>", '<properties><property name="rule" value="X" /></properties>'
                                       "<system-out>", 1)
    assert not junit_schema.is_valid(bad)
    assert not junit_schema.is_valid(text.replace(' time="4.250">', ' time="4.25 s">', 1))


def test_junit_has_one_testcase_per_case_with_verdicts_mapped(run_dir: Path) -> None:
    root = ET.parse(run_dir / "junit.xml").getroot()
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [c["id"] for c in _report(run_dir)["cases"]]
    kinds = [[child.tag for child in c if child.tag != "system-out"] for c in cases]
    assert kinds == [[], [], ["failure"], ["error"], ["skipped"], ["failure"]]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) \
        == ("6", "2", "1", "1")
    assert cases[2].get("classname") == "callgate.directed.event"
    failure = cases[2].find("failure")
    assert failure is not None and failure.text is not None
    assert "step 4: e0.Wait(timeout=zero)   <-- not allowed" in failure.text
    assert "RPC_S_CALLPENDING" in failure.text
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["rules:com_call-tour-007"] == "COM-CF-02 COM-BEGIN-01 COM-SRV-05 COM-FIN-01 COM-FIN-04"
    assert str(props["command"]).endswith("--seed 7 --budget quick")


def test_junit_shows_expected_failures_as_skipped_and_stale_entries_as_failures(
        junit_schema: xmlschema.XMLSchema) -> None:
    results = streams.sample_results()
    results[2] = replace(results[2], verdict=Verdict.EXPECTED_FAIL, expectation="keeps its signal")
    results[0] = replace(results[0], verdict=Verdict.UNEXPECTED_PASS)
    report = reporting.build_report(RunRecord(streams.run_start(), results, None))
    text = junit.junit_xml(report)
    junit_schema.validate(text)
    root = ET.fromstring(text)
    by_name = {c.get("name"): c for c in root.iter("testcase")}
    skipped = by_name["event-tour-002"].find("skipped")
    assert skipped is not None
    assert skipped.get("type") == "callgate.expected_fail"
    assert skipped.get("message") == "known deviation: keeps its signal"
    failure = by_name["event-tour-000"].find("failure")
    assert failure is not None and failure.get("type") == "callgate.unexpected_pass"


def test_characters_xml_forbids_are_shown_not_written(run_dir: Path) -> None:
    text = (run_dir / "junit.xml").read_text(encoding="utf-8")
    assert "\x01" not in text and "\\x01" in text
    assert junit.clean("a\x00b\x1bc\ud800") == "a\\x00b\\x1bc\\xd800"


# --- Markdown ------------------------------------------------------------------------------


def test_markdown_summarises_the_run_for_a_ci_step(run_dir: Path) -> None:
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert md.startswith("## ❌ callgate: non-conformant: fake-events 1")
    assert "| 2 | 2 | 1 | 1 | 0 | 0 |" in md
    assert "| `COM-FIN-01` | MUST | **fail** | 1 | `com_call-tour-007` |" in md
    assert "callgate run --adapter tests.fakes:EventAdapter --out out --seed 7 --budget quick" in md


def test_markdown_tables_keep_their_shape_and_adapter_text_stays_inert(run_dir: Path) -> None:
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "<script" not in md and "<img" not in md and "\x01" not in md
    assert "&lt;script&gt;" in md
    for block in re.split(r"\n\s*\n", md):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        widths = {len(re.findall(r"(?<!\\)\|", row)) for row in rows}
        assert len(widths) <= 1, block


def test_markdown_code_spans_survive_backticks_and_pipes() -> None:
    assert reporting.md_code("a`b|c") == "``a`b\\|c``"
    assert reporting.md_code("`x`") == "`` `x` ``"
    assert reporting.md_text("*a* <b> [c](d)") == "\\*a\\* &lt;b&gt; \\[c\\](d)"


# --- HTML ----------------------------------------------------------------------------------


def test_html_is_self_contained_and_escapes_what_the_adapter_wrote(run_dir: Path) -> None:
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "@import" not in html and "url(" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "notes with &lt;script&gt;" in html


def test_html_has_every_section_the_issue_asks_for(run_dir: Path) -> None:
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    for section in ("summary", "failures", "rules", "diagrams", "coverage", "environment",
                    "reproduce"):
        assert f'<section id="{section}">' in html
    assert '<tr id="rule-COM-FIN-01">' in html
    assert 'class="bad"' in html and "s0.Finish_()" in html
    assert "callgate run --adapter tests.fakes:EventAdapter --out out --seed 7 --budget quick" in html
    assert "python</th><td class=\"mono\">3.11.2" in html


@pytest.mark.skipif(not diagrams.dot_available(), reason="Graphviz dot is not installed "
                    "(make system installs it)")
def test_html_diagrams_mark_the_failing_transitions(run_dir: Path) -> None:
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    # Only the machines the adapter implements (the run's coverage universe) are drawn.
    for machine in ("com_call", "event"):
        assert f'<figure id="diagram-{machine}">' in html
    assert html.count("<svg") == 2 and "Not drawn: thread_cancel, container" in html
    assert ">Wait (failed)</text>" in html
    assert ">Finish_ (failed)</text>" in html
    assert "<!DOCTYPE svg" not in html and "<?xml" not in html


def test_failing_edges_come_from_the_model_not_from_the_stream() -> None:
    real = diagrams.FailingStep("event", "kind=StdEvent signaled=False", "Wait")
    made_up = diagrams.FailingStep("event", "kind=StdEvent signaled=False", "<b>Wait</b>")
    assert diagrams.failing_edges("event", [real])
    assert diagrams.failing_edges("event", [made_up]) == set()
    assert diagrams.failing_edges("event", [diagrams.FailingStep("event", "junk", "Wait")]) == set()


def test_without_graphviz_the_html_says_so_instead_of_a_diagram(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert not diagrams.dot_available()
    record = read_stream(streams.write_stream(tmp_path / "results.jsonl"))
    html = reporting.render_html(reporting.build_report(record))
    assert html.count("Graphviz `dot` was not found on PATH") == 2  # event and com_call
    assert "<svg" not in html
    off = reporting.render_html(reporting.build_report(record), with_diagrams=False)
    assert "turned off for this report" in off


# --- the stream, complete or cut short -----------------------------------------------------


def test_callgate_report_reproduces_the_verdicts_of_the_run(run_dir: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # The run's exit code again: two failures beside an error decide the outcome (exit 1).
    assert cli("report", "--from", str(run_dir / "results.jsonl"), "--out", str(tmp_path)) == 1
    assert "complete run, 6 cases: non-conformant" in capsys.readouterr().out
    again, first = _report(tmp_path), _report(run_dir)
    assert again == first
    assert (tmp_path / "junit.xml").read_text() == (run_dir / "junit.xml").read_text()
    assert (tmp_path / "report.md").read_text() == (run_dir / "report.md").read_text()


def test_a_killed_run_still_yields_every_report(tmp_path: Path,
                                                junit_schema: xmlschema.XMLSchema) -> None:
    stream = streams.write_stream(tmp_path / "run" / "results.jsonl", complete=False)
    assert not stream.read_text().endswith("\n")
    # Never 0 for a run that did not finish (here a failure among what ran makes it 1).
    assert cli("report", "--from", str(stream.parent), "--out", str(tmp_path / "out")) == 1
    report = _report(tmp_path / "out")
    reporting.validate_report(report)
    assert report["complete"] is False and report["finished"] is None
    assert [c["id"] for c in report["cases"]] == [c.id for c in streams.sample_results()[:5]]
    junit_schema.validate(str(tmp_path / "out" / "junit.xml"))
    assert "This run did not finish" in (tmp_path / "out" / "report.md").read_text()
    html = (tmp_path / "out" / "report.html").read_text()
    assert 'id="incomplete"' in html and "incomplete</span>" in html


def test_callgate_report_explains_a_missing_or_foreign_stream(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("report", "--from", str(tmp_path / "nothing.jsonl")) == 2
    assert "no results stream at" in capsys.readouterr().err
    foreign = tmp_path / "results.jsonl"
    foreign.write_text('{"event": "case"}\n')
    assert cli("report", "--from", str(foreign)) == 2
    assert "has no run_start event" in capsys.readouterr().err


@pytest.mark.serial  # bounds the wall time: run alone
def test_rendering_2000_cases_is_quick_and_the_markdown_fits_a_comment(tmp_path: Path) -> None:
    stream = streams.write_stream(tmp_path / "results.jsonl", streams.many_results(2000))
    started = time.perf_counter()
    paths = reporting.write_reports(read_stream(stream), tmp_path)
    seconds = time.perf_counter() - started
    assert seconds < 15, f"rendering 2,000 cases took {seconds:.1f} s"
    md = paths[2].read_text(encoding="utf-8")
    assert len(md) < 65536
    assert "more: see report.html" in md


def test_markdown_lists_fewer_failures_until_it_fits_a_comment() -> None:
    com = streams.com_failure()
    step = replace(com.trace[-1], ok=True, allowed=["S_OK (0x00000000) with out=1 [finished] " * 12])
    long_trace = [step] * 30 + [com.trace[-1]]
    results = [replace(com, id=f"long-{i:02d}", trace=long_trace, steps=31) for i in range(40)]
    report = reporting.build_report(RunRecord(streams.run_start(), results, None))
    md = reporting.render_markdown(report)
    assert len(md) <= reporting.MD_LIMIT
    shown = md.count("<details>")
    assert 0 < shown < reporting.MD_FAILURES
    assert f"…and {40 - shown} more: see report.html" in md


def test_text_that_is_not_valid_unicode_is_written_escaped(tmp_path: Path,
                                                           junit_schema: xmlschema.XMLSchema) -> None:
    results = streams.sample_results()
    results[3] = replace(results[3], message="bad \udcff text", evidence="\ud800")
    stream = streams.write_stream(tmp_path / "results.jsonl", results)
    paths = reporting.write_reports(read_stream(stream), tmp_path)
    assert "bad \\udcff text" in paths[3].read_text(encoding="utf-8")
    assert "bad \\xdcff text" in paths[1].read_text(encoding="utf-8")
    junit_schema.validate(str(paths[1]))


def test_the_reproducing_command_keeps_a_seed_given_as_seed_equals() -> None:
    start = {"command": "callgate run --adapter x --seed=5", "seed": 5, "budget": "deep"}
    assert reporting.reproduce_command(start) == "callgate run --adapter x --seed=5 --budget deep"
    assert reporting.reproduce_command({"adapter": {"name": "a b"}}) == "callgate run --adapter 'a b'"


def test_self_loops_with_many_operations_are_one_loop_labelled_with_their_number() -> None:
    drawn = diagrams.drawing("rpc_call", [], [])
    loops = re.findall(r"(\w+) -> \1 \[label=<([^>]*)>", drawn.dot)
    assert loops and all(label.endswith(" ops") for _, label in loops), loops
    assert len({node for node, _ in loops}) == len(loops)  # one loop per state
    listed = {lp.state: lp for lp in drawn.loops}
    assert all(len(lp.performed) + len(lp.not_performed) > diagrams.LOOP_NAMES
               for lp in listed.values())
    assert "sync_call" in listed["DONE"].not_performed  # nothing performed: every name listed
    assert 'tooltip="' in drawn.dot and "wait_notification" in drawn.dot


def test_marked_edges_are_counted_by_colour_and_grouped() -> None:
    state = "phase=SENT"
    failing = [diagrams.FailingStep("rpc_call", state, "server_test_cancel"),
               diagrams.FailingStep("rpc_call", state, "RpcAsyncCancelCall", expected=True),
               diagrams.FailingStep("rpc_call", state, "server_abort", expected=True),
               diagrams.FailingStep("rpc_call", state, "sync_call", expected=True)]
    drawn = diagrams.drawing("rpc_call", [], failing)
    assert (drawn.failing, drawn.deviations) == (
        len(diagrams.failing_edges("rpc_call", failing[:1])),
        len(diagrams.failing_edges("rpc_call", failing[1:]) - diagrams.failing_edges("rpc_call",
                                                                                     failing[:1])))
    assert drawn.failing and drawn.deviations
    assert "known deviations</b>" in drawn.dot or "(known deviation)</b>" in drawn.dot
    assert "server_test_cancel (failed)" in drawn.dot


def test_outputs_and_old_messages_read_as_words() -> None:
    from callgate.conformance.results import outputs_text

    assert outputs_text({"returned": False, "waited_ms": 300}) == "returned false, waited_ms 300"
    assert outputs_text({"v": "x" * 200}).endswith("…") and len(outputs_text({"v": "x" * 200})) < 90
    old = "observed 258 with {'returned': False, 'waited_ms': 300}; allowed: RPC_S_OK (0)"
    assert reporting.readable_message(old) == ("observed 258 with returned false, waited_ms 300; "
                                               "allowed: RPC_S_OK (0)")
    assert reporting.readable_message("{'not closed") == "{'not closed"
    assert reporting.readable_message("{'a': __import__('os')}") == "{'a': __import__('os')}"


def test_a_bare_code_number_an_older_run_recorded_is_named_when_callgate_knows_it() -> None:
    assert reporting.code_text({"code": 258, "name": "258"}) == "WAIT_TIMEOUT (258)"
    assert reporting.code_text({"code": 0xC0000139, "name": "0xC0000139"}) == \
        "STATUS_ENTRYPOINT_NOT_FOUND (0xC0000139)"
    assert reporting.code_text({"code": 1722, "name": "1722"}) == "1722"
    assert reporting.code_text({"code": 0, "name": "RPC_S_OK (0)"}) == "RPC_S_OK (0)"
