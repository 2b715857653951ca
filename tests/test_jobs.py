"""`callgate run --jobs N` and `--shard I/N` with `callgate report --merge`: the same cases and
verdicts as one plain run, a worker that dies is an error case, an interrupted run is recorded."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from callgate.conformance import jobs, units
from callgate.conformance.budgets import BUDGETS
from callgate.conformance.cases import sequences
from callgate.conformance.cli.main import main
from callgate.conformance.gate import (
    RunAborted,
    RunOptions,
    StopRun,
    Tick,
    run_gate,
    shard_units,
)
from callgate.conformance.protocol.adapter import Capabilities, SlotSpec
from callgate.conformance.protocol.jsonl.handshake import declared, handshake_message
from callgate.conformance.report import merge
from callgate.conformance.results import Summary, Verdict, read_stream
from tests.fakes import EventAdapter, EventSession, std_event_keeps_signal

# The quick budget, smaller still: a run of the fake event adapter takes a second or two.
TINY = replace(BUDGETS["quick"], name="tiny", stateful_examples=3, stateful_steps=12,
               parallel_runs=1)


@cache
def _plan() -> sequences.Plan:
    return sequences.plan(std_event_keeps_signal().capabilities())


def _options(out: Path, **kwargs: Any) -> RunOptions:
    return RunOptions("tests.fakes:std_event_keeps_signal", TINY, 0, out, 5.0, plan=_plan(),
                      adapter_factory=std_event_keeps_signal, **{"reports": False} | kwargs)


def _events(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _cases(out: Path) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """Each case of a stream: its unit, ID, verdict and failed rules, in the stream's order."""
    return [(e.get("unit", ""), e["case"]["id"], e["case"]["verdict"],
             tuple(e["case"]["failed_rules"])) for e in _events(out) if e["event"] == "case"]


def _coverage(out: Path) -> set[str]:
    """The transitions the run's cases covered."""
    return {t for e in _events(out) if e["event"] == "case" for t in e["case"]["covered"]}


def test_jobs_1_and_jobs_4_give_the_same_cases_in_the_same_order(tmp_path: Path) -> None:
    one = run_gate(std_event_keeps_signal(), _options(tmp_path / "one", jobs=1))
    four = run_gate(std_event_keeps_signal(), _options(tmp_path / "four", jobs=4))
    assert _cases(tmp_path / "one") == _cases(tmp_path / "four")
    assert one.summary == four.summary and one.summary.failed > 0  # failures, shrunk alike
    assert _coverage(tmp_path / "one") == _coverage(tmp_path / "four") != set()
    used = _events(tmp_path / "four")[-1]["jobs"]
    assert used["workers"] == 4 and used["died"] == 0
    assert multiprocessing.active_children() == []


def test_a_walk_cut_into_parts_gives_the_same_cases_with_jobs_1_and_4(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The event machine's walk cut into parts of 10 transitions (the forked workers inherit the
    # patch), its parts handed out longest first, recorded in the run's order.
    monkeypatch.setattr(units, "WALK_PART_TRANSITIONS", 10)
    one = run_gate(std_event_keeps_signal(), _options(tmp_path / "one", jobs=1))
    four = run_gate(std_event_keeps_signal(), _options(tmp_path / "four", jobs=4))
    assert _cases(tmp_path / "one") == _cases(tmp_path / "four")
    assert one.summary == four.summary and one.summary.failed > 0
    unit_ids = _events(tmp_path / "four")[0]["units"]
    assert unit_ids[:2] == ["walk-event-p1", "walk-event-p2"] and "ident-event" in unit_ids
    assert {u for u, _, _, _ in _cases(tmp_path / "four")} >= {"walk-event-p1", "walk-event-p2"}
    assert _coverage(tmp_path / "one") == _coverage(tmp_path / "four") != set()


def _two_shards_and_whole(tmp_path: Path) -> int:
    """A whole run and its two shards (the second with two workers); the whole run's exit code."""
    whole = run_gate(std_event_keeps_signal(), _options(tmp_path / "whole"))
    for index in (1, 2):
        run_gate(std_event_keeps_signal(), _options(tmp_path / f"s{index}", jobs=index,
                                                    shard=(index, 2)))
    assert 0 < len(_cases(tmp_path / "s1")) < len(_cases(tmp_path / "whole"))
    return whole.exit_code


def test_two_shards_merged_equal_one_unsharded_run(tmp_path: Path) -> None:
    _two_shards_and_whole(tmp_path)
    merge.merge([tmp_path / "s2", tmp_path / "s1"], tmp_path / "merged")
    assert _cases(tmp_path / "merged") == _cases(tmp_path / "whole")
    assert _coverage(tmp_path / "merged") == _coverage(tmp_path / "whole") != set()
    merged = read_stream(tmp_path / "merged" / "results.jsonl")
    whole = read_stream(tmp_path / "whole" / "results.jsonl")
    assert merged.complete and Summary.of(merged.cases) == Summary.of(whole.cases)
    assert merged.start["units"] == whole.start["units"]


@pytest.mark.slow  # renders the reports (the first rendering in a process takes a while)
def test_report_merge_writes_the_reports_with_the_whole_runs_exit_code(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _two_shards_and_whole(tmp_path)
    assert main(["report", "--merge", str(tmp_path / "s1"), str(tmp_path / "s2"),
                 "--out", str(tmp_path / "merged"), "--no-diagrams"]) == code == 1
    report = json.loads((tmp_path / "merged" / "report.json").read_text())
    assert report["complete"] and report["summary"]["exit_code"] == 1
    assert report["coverage"]["transitions_covered"] == len(_coverage(tmp_path / "whole"))
    assert "complete run" in capsys.readouterr().out
    assert main(["report", "--merge", str(tmp_path / "s1"), "--out",
                 str(tmp_path / "again")]) == 2  # a shard missing
    assert "2/2 missing" in capsys.readouterr().err


def _shard_streams(tmp_path: Path) -> tuple[Path, Path]:
    """Two shard streams of a run, written by hand (a header and one case each)."""
    every = ["walk-event", "stateful-00-e0", "race-x"]
    dirs = []
    for index in (1, 2):
        out = tmp_path / f"shard{index}"
        out.mkdir()
        mine = [u for n, u in enumerate(every) if n % 2 == index - 1]
        start = {"event": "run_start", "schema": 1, "seed": 0, "budget": "quick",
                 "adapter": {"name": "a"}, "transitions": [], "units": mine,
                 "shard": {"index": index, "count": 2, "all_units": every}}
        case = {"id": f"case-{index}", "kind": "walk", "description": "", "rules": [],
                "verdict": "pass", "steps": 1, "seconds": 0.0}
        lines = [start, {"event": "case", "unit": mine[0], "case": case},
                 {"event": "run_end", "seconds": 1.0, "summary": {}}]
        (out / "results.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
        dirs.append(out)
    return dirs[0], dirs[1]


def _rewrite(path: Path, change: dict[str, Any]) -> None:
    lines = _events(path)
    lines[0] |= change
    (path / "results.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))


def test_merge_joins_hand_written_shards_in_unit_order(tmp_path: Path) -> None:
    first, second = _shard_streams(tmp_path)
    merged = merge.merge([second, first], tmp_path / "out")
    assert [e["case"]["id"] for e in map(json.loads, merged.read_text().splitlines())
            if e["event"] == "case"] == ["case-1", "case-2"]


@pytest.mark.parametrize(("broken", "message"), [
    ("seed", "their seed differ"),
    ("budget", "their budget differ"),
    ("adapter", "their adapter differ"),
    ("duplicate", "given twice"),
    ("missing", "shard(s) 2/2 missing"),
    ("unsharded", "not a shard's stream"),
    ("units", "ran other units"),
])
def test_merge_refuses_streams_that_are_not_the_shards_of_one_run(
        tmp_path: Path, broken: str, message: str) -> None:
    first, second = _shard_streams(tmp_path)
    sources = [first, second]
    if broken in ("seed", "budget"):
        _rewrite(second, {broken: 7})
    elif broken == "adapter":
        _rewrite(second, {"adapter": {"name": "other"}})
    elif broken == "duplicate":
        sources = [first, first, second]
    elif broken == "missing":
        sources = [first]
    elif broken == "unsharded":
        lines = _events(second)
        del lines[0]["shard"]
        (second / "results.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    elif broken == "units":
        _rewrite(second, {"units": ["walk-event"]})
    with pytest.raises(merge.MergeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        merge.merge(sources, tmp_path / "out")


def test_a_merge_with_an_unfinished_shard_is_incomplete(tmp_path: Path) -> None:
    first, second = _shard_streams(tmp_path)
    lines = (second / "results.jsonl").read_text().splitlines()[:-1]  # no run_end: killed
    (second / "results.jsonl").write_text("\n".join(lines) + "\n")
    end = json.loads(merge.merge([first, second], tmp_path / "out").read_text()
                     .splitlines()[-1])
    assert "shard 2/2 did not finish" in end["aborted"]["reason"]


def test_a_merge_judges_the_expectations_stale_over_every_shard(tmp_path: Path) -> None:
    first, second = _shard_streams(tmp_path)
    recorded = {"file": "known.toml", "implementation": "",
                "deviations": [{"rule": "COM-SYNC-03", "verdict": "fail", "reason": "r"}]}
    for path, tally in ((first, [[0, 2]]), (second, [[0, 1]])):
        lines = _events(path)
        lines[0]["expectations"] = recorded
        lines[-1]["expectations_tally"] = tally
        (path / "results.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    events = [json.loads(line) for line in
              merge.merge([first, second], tmp_path / "out").read_text().splitlines()]
    stale = [e["case"] for e in events if e["event"] == "case" and e["case"]["kind"] ==
             "expectation"]
    assert [(c["id"], c["verdict"]) for c in stale] == [("expectation:COM-SYNC-03",
                                                         "unexpected_pass")]
    assert "3 cases exercised the rule" in stale[0]["message"]
    # One shard matched it: the entry is not stale.
    lines = _events(second)
    lines[-1]["expectations_tally"] = [[1, 1]]
    (second / "results.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    events = [json.loads(line) for line in
              merge.merge([first, second], tmp_path / "out2").read_text().splitlines()]
    assert not [e for e in events if e["event"] == "case" and e["case"]["kind"] == "expectation"]


def test_shards_split_the_units_without_overlap_or_loss() -> None:
    every = [units.Unit(f"u{n}", "walk") for n in range(11)]
    for count in (1, 2, 3, 5, 11, 12):
        slices = [shard_units(every, (i, count)) for i in range(1, count + 1)]
        assert sorted(u.id for s in slices for u in s) == sorted(u.id for u in every)
        assert slices == [shard_units(every, (i, count)) for i in range(1, count + 1)]
    with pytest.raises(ValueError, match="between 1 and N"):
        shard_units(every, (3, 2))


# --- a worker that dies, an interrupted run, a run stopped at its first failure --------------

_HOME: dict[str, int] = {}


class _DiesOnPairs(EventAdapter):
    """Kills its own process when a session of two events opens in a worker (the multi-object
    walk): a crash of the implementation under test."""

    def open_session(self, slots: Sequence[SlotSpec]) -> EventSession:
        if len(slots) == 2 and os.getpid() != _HOME.get("pid"):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().open_session(slots)


def test_a_worker_that_dies_is_an_error_case_and_the_run_goes_on(tmp_path: Path) -> None:
    _HOME["pid"] = os.getpid()
    plain = EventAdapter()
    options = RunOptions("tests.test_jobs:_DiesOnPairs", TINY, 0, tmp_path / "died", 5.0,
                         plan=_plan(), adapter_factory=_DiesOnPairs, jobs=2)
    outcome = run_gate(plain, options)
    run_gate(EventAdapter(), replace(options, out=tmp_path / "plain", jobs=1,
                                     adapter_factory=EventAdapter))
    died = [c for c in _cases(tmp_path / "died") if c[0] == "multi-event-pair"]
    assert [(c[1], c[2]) for c in died] == [("multi-event-pair:worker", "error")]
    message = next(e["case"]["message"] for e in _events(tmp_path / "died")
                   if e["event"] == "case" and e["case"]["id"] == "multi-event-pair:worker")
    assert "died (killed by SIGKILL)" in message
    # Every other unit ran as in a plain run, and the run ended: complete, with no verdict.
    others = [c for c in _cases(tmp_path / "died") if c[0] != "multi-event-pair"]
    assert others == [c for c in _cases(tmp_path / "plain") if c[0] != "multi-event-pair"]
    assert outcome.complete and outcome.exit_code == 3
    assert _events(tmp_path / "died")[-1]["jobs"]["died"] == 1


class _OtherInWorkers(EventAdapter):
    """Declares other capabilities when started in a worker than in the parent."""

    def capabilities(self) -> Capabilities:
        caps = super().capabilities()
        if os.getpid() == _HOME.get("pid"):
            return caps
        return replace(caps, version="2")


def test_a_worker_whose_adapter_declares_otherwise_aborts_the_run(tmp_path: Path) -> None:
    _HOME["pid"] = os.getpid()
    options = replace(_options(tmp_path, jobs=2), adapter_factory=_OtherInWorkers)
    with pytest.raises(RunAborted) as caught:
        run_gate(_OtherInWorkers(), options)
    assert caught.value.exit_code == 3 and "other capabilities" in caught.value.reason
    assert not read_stream(tmp_path / "results.jsonl").complete
    assert multiprocessing.active_children() == []


def test_an_interrupted_jobs_run_is_recorded_as_aborted_and_incomplete(tmp_path: Path) -> None:
    recorded = []

    def progress(tick: Tick) -> None:
        if tick.result is not None:  # a result recorded (tick.cases counts the finished ones)
            recorded.append(tick.result)
            if len(recorded) == 2:
                raise KeyboardInterrupt

    with pytest.raises(RunAborted) as caught:
        run_gate(std_event_keeps_signal(), _options(tmp_path, jobs=3), progress)
    assert caught.value.exit_code == 130 and not caught.value.outcome.complete
    record = read_stream(tmp_path / "results.jsonl")
    assert not record.complete and record.aborted is not None
    assert record.aborted["signal"] == "SIGINT"
    assert len(record.cases) >= 2  # what the workers finished is kept
    assert multiprocessing.active_children() == []  # every worker was ended


def test_a_stop_run_ends_a_jobs_run_at_its_first_failing_case(tmp_path: Path) -> None:
    def progress(tick: Tick) -> None:
        if tick.result is not None and tick.result.verdict is Verdict.FAIL:
            raise StopRun

    outcome = run_gate(std_event_keeps_signal(), _options(tmp_path, jobs=3), progress)
    cases = _cases(tmp_path)
    assert not outcome.complete and cases[-1][2] == "fail"
    assert [c[2] for c in cases[:-1]].count("fail") == 0
    assert multiprocessing.active_children() == []


# --- how many workers ------------------------------------------------------------------------


def _caps(**kwargs: Any) -> Capabilities:
    return Capabilities("x", "1", frozenset(), **kwargs)


def test_an_adapter_of_one_session_at_a_time_runs_in_one_process() -> None:
    assert jobs.plan_workers(4, _caps(), EventAdapter, False, 10) == (4, "")
    workers, note = jobs.plan_workers(4, _caps(sessions="one"), EventAdapter, False, 10)
    assert workers == 1 and "sessions 'one'" in note
    assert jobs.plan_workers(4, _caps(), None, False, 10)[0] == 1
    workers, note = jobs.plan_workers(4, _caps(), EventAdapter, True, 10)
    assert workers == 1 and "--record-trace" in note
    assert jobs.plan_workers(8, _caps(), EventAdapter, False, 3) == (3, "")  # no idle workers
    assert jobs.plan_workers(None, _caps(), EventAdapter, False, 100)[0] == jobs.auto_jobs()


def test_sessions_travels_in_the_handshake() -> None:
    caps = _caps(sessions="one")
    message = handshake_message(caps)
    assert message["sessions"] == "one" and declared(message).sessions == "one"
    assert "sessions" not in handshake_message(_caps())
    assert declared(handshake_message(_caps())).sessions == "many"


def test_the_handshake_schema_knows_only_many_and_one() -> None:
    from callgate.conformance.protocol.jsonl.messages import ProtocolError, check_message

    good = handshake_message(Capabilities("x", "1", frozenset({"sync.event"}), sessions="one"))
    assert check_message(good, ["handshake"])["sessions"] == "one"
    with pytest.raises(ProtocolError, match="sessions"):
        check_message(good | {"sessions": "two"}, ["handshake"])


@pytest.mark.parametrize("argv", [["--jobs", "0"], ["--jobs", "many"], ["--shard", "3/2"],
                                  ["--shard", "0/2"], ["--shard", "1"]])
def test_bad_jobs_and_shard_arguments_are_usage_errors(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--adapter", "reference", *argv]) == 2
    err = capsys.readouterr().err
    assert ("--jobs" in err or "--shard" in err) and "Traceback" not in err


def test_merge_needs_out_and_exactly_one_source(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--merge", str(tmp_path)]) == 2
    assert main(["report"]) == 2
    assert "exactly one of --from" in capsys.readouterr().err


def test_the_progress_of_a_jobs_run_counts_every_finished_case(tmp_path: Path) -> None:
    # With --jobs the results are recorded in the units' order, but the progress counts the
    # cases the workers finished: never fewer than those recorded, and all of them at the end.
    seen: list[tuple[int, int]] = []
    recorded = [0]

    def progress(tick: Tick) -> None:
        if tick.result is not None:
            recorded[0] += 1
        seen.append((tick.cases, recorded[0]))

    run_gate(std_event_keeps_signal(), _options(tmp_path, jobs=3), progress)
    total = len(_cases(tmp_path))
    assert all(cases >= done for cases, done in seen)
    assert max(cases for cases, _ in seen) == total == recorded[0]
