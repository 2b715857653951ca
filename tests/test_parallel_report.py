"""Parallel cases in the reports: histories kept in report.json, drawn as lanes in report.html
(escaped), named in report.md, and as testcases with their history in junit.xml."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from functools import cache
from pathlib import Path

import xmlschema

from callgate.conformance.cases.parallel import race_cases, run_parallel
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.judge.runner import CaseRunner
from callgate.conformance.report import junit
from callgate.conformance.report.lanes import label_width, lanes
from callgate.conformance.report.reporting import build_report, render_html, render_markdown, report_problems
from callgate.conformance.results import CaseResult, ResultStream, RunRecord, Verdict, read_stream
from tests.streams import HOSTILE

XSD = Path(__file__).parent / "data" / "junit-10.xsd"


@cache
def parallel_results() -> tuple[CaseResult, CaseResult]:
    """A passing race on the reference, and the Begin_ race failing on its seeded fault."""
    races = {c.id: c for c in race_cases()}
    results = []
    for faults in ([], ["begin_check_then_set_race"]):
        adapter = ReferenceAdapter(faults=faults)
        runner = CaseRunner(adapter, adapter.capabilities(), 5.0)
        try:
            results.append(run_parallel(runner, races["race-begin-begin"], runs=10,
                                        stagger=0.002, seed=1))
        finally:
            runner.close()
            adapter.shutdown()
    passed, failed = results
    assert passed.verdict is Verdict.PASS and failed.verdict is Verdict.FAIL
    return passed, failed


def record(*cases: CaseResult) -> RunRecord:
    start = {"event": "run_start", "schema": 1, "command": "callgate run --adapter reference",
             "seed": 0, "budget": "quick", "adapter": {"name": "reference"},
             "transitions_total": {}, "started": "2026-01-01T00:00:00+00:00"}
    end = {"event": "run_end", "finished": "2026-01-01T00:00:01+00:00", "seconds": 1.0}
    return RunRecord(start, list(cases), end)


def hostile(result: CaseResult) -> CaseResult:
    """The same result with markup where an adapter could put it: a code name and an output."""
    history = [replace(h, code_name=HOSTILE, outputs={"out": HOSTILE}) for h in result.history]
    return replace(result, id="hostile", history=history, message=HOSTILE)


def test_report_json_keeps_the_history_and_the_verdict_and_stays_valid() -> None:
    passed, failed = parallel_results()
    report = build_report(record(passed, failed))
    assert report_problems(report) == []
    by_id = {c["verdict"]: c for c in report["cases"]}
    assert by_id["pass"]["linearizability"] == "linearizable"
    assert by_id["fail"]["linearizability"] == "not_linearizable"
    threads = [h["thread"] for h in by_id["fail"]["history"]]
    assert threads.count("prefix") == 1 and {"branch 1", "branch 2"} <= set(threads)
    assert by_id["fail"]["replay"]["branches"]
    assert "COM-BEGIN-02" in by_id["fail"]["failed_rules"]


def test_the_schema_refuses_a_history_without_times() -> None:
    passed, _ = parallel_results()
    report = build_report(record(passed))
    del report["cases"][0]["history"][0]["started"]
    assert any("started" in p for p in report_problems(report))


def test_lanes_put_each_thread_on_its_own_lane_in_time_order() -> None:
    _, failed = parallel_results()
    data = json.loads(json.dumps([h.to_json() for h in failed.history]))
    drawn = lanes(data)
    assert drawn is not None
    assert [name for name, _ in drawn.lanes] == ["prefix", "branch 1", "branch 2"]
    prefix_bar = next(b for b in drawn.bars if b.y == drawn.lanes[0][1])
    assert all(prefix_bar.x <= b.x for b in drawn.bars)
    assert [b.status for b in drawn.bars].count("bad") == 1
    assert lanes([]) is None


def test_report_html_draws_lanes_and_escapes_what_the_adapter_sent() -> None:
    passed, failed = parallel_results()
    html = render_html(build_report(record(passed, failed, hostile(failed))), with_diagrams=False)
    assert html.count('<svg class="lanes"') == 3
    assert 'id="parallel"' in html and 'href="#parallel"' in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'class="bad"' in html


def test_report_md_mentions_the_parallel_cases() -> None:
    passed, failed = parallel_results()
    text = render_markdown(build_report(record(passed, failed, hostile(failed))))
    assert "### Parallel cases" in text and "race\\-begin\\-begin" not in text
    assert (f"`race-begin-begin` **pass** (linearizable, {passed.overlapped_runs} of "
            f"{passed.runs} runs overlapped)") in text
    assert "**fail** (not linearizable, " in text
    assert "<script>" not in text


def test_junit_has_each_parallel_case_as_a_testcase_with_its_history() -> None:
    passed, failed = parallel_results()
    xml = junit.junit_xml(build_report(record(passed, failed, hostile(failed))))
    xmlschema.XMLSchema(str(XSD)).validate(xml)
    names = [c.get("name") for c in ET.fromstring(xml).iter("testcase")]
    assert names == ["race-begin-begin", "race-begin-begin", "hostile"]
    failing = [c for c in ET.fromstring(xml).iter("testcase") if c.find("failure") is not None]
    assert failing
    out = failing[0].find("system-out")
    assert out is not None and out.text is not None
    assert "history (not_linearizable):" in out.text
    assert "branch 1: c0.Begin_() ->" in out.text


def test_the_history_survives_the_results_stream(tmp_path: Path) -> None:
    passed, failed = parallel_results()
    stream = ResultStream(tmp_path / "results.jsonl")
    run = record(passed, failed)
    stream.emit(run.start)
    for case in run.cases:
        stream.emit({"event": "case", "case": case.to_json()})
    assert run.end is not None
    stream.emit(run.end)
    stream.close()
    again = read_stream(tmp_path / "results.jsonl")
    assert [c.history for c in again.cases] == [passed.history, failed.history]
    assert build_report(again)["cases"] == build_report(run)["cases"]


def test_lane_bars_fit_their_labels_and_keep_the_order_of_events() -> None:
    def op(thread: str, name: str, start: float, end: float) -> dict[str, object]:
        return {"thread": thread, "slot": "c0", "op": name, "args": {}, "started": start,
                "ended": end, "code": 0, "code_name": "S_OK (0x00000000)", "ok": True}

    # A long prefix and two overlapping microsecond operations: drawn to scale they were slivers.
    history = [op("prefix", "CreateCall", 100.0, 100.5), op("branch 1", "Begin_", 100.6, 100.600002),
               op("branch 2", "Begin_", 100.600001, 100.600003),
               op("branch 1", "RpcAsyncCompleteCall", 100.7, 100.8)]
    drawn = lanes(history)
    assert drawn is not None
    bars = drawn.bars
    for bar in bars:
        assert "…" not in bar.label and bar.width >= label_width(bar.label) - 0.1, bar
    prefix, first, second, last = bars
    assert prefix.x + prefix.width <= first.x  # the prefix returned before the branches began
    assert first.x < second.x < first.x + first.width  # the two Begin_ overlapped
    assert max(first.x + first.width, second.x + second.width) <= last.x
    assert drawn.width >= 1000  # spread over the page
