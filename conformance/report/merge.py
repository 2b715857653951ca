"""`callgate report --merge DIR... --out DIR`: the results streams of a run's shards as one stream.

`callgate run --shard I/N` runs every N-th unit of the run from the I-th on, and records in its
run_start which shard it is and the whole run's unit list (`shard`), and with each case the
unit it belongs to. Merging checks that the streams are the N shards of one run (the same
seed, budget, adapter and its declarations, callgate version, model transitions and
expectations; each shard exactly once, none missing), puts every case in the order of the
run's unit list (the order an unsharded run records), judges the expectations file stale over
all shards together (a shard alone never does: `Expectations.add_tally`), and writes the stream
that an unsharded run would have written, from which the reports are rendered as usual.

A shard that did not finish makes the merged run incomplete, with the shard named.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from callgate.conformance.expectations import ExpectationsError, from_record
from callgate.conformance.results import CaseResult, ResultStream, Summary

# What every shard of one run must record alike in its run_start.
SAME = ("schema", "callgate_version", "seed", "budget", "adapter", "transitions",
        "transitions_total", "expectations", "min_coverage", "pairs", "pairs_not_drivable")


class MergeError(ValueError):
    """The streams are not the shards of one run; the message says which and why."""


def _read(directory: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    path = directory / "results.jsonl" if directory.is_dir() else directory
    if not path.is_file():
        raise MergeError(f"no results stream at {path}: pass the --out directory of each shard")
    start: dict[str, Any] | None = None
    cases: list[dict[str, Any]] = []
    end: dict[str, Any] | None = None
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a truncated last line of a killed shard
            kind = event.get("event") if isinstance(event, dict) else None
            if kind == "run_start":
                start = event
            elif kind == "case" and isinstance(event.get("case"), dict):
                cases.append(event)
            elif kind == "run_end":
                end = event
    if start is None:
        raise MergeError(f"{path} has no run_start event: is it a callgate results.jsonl?")
    if not isinstance(start.get("shard"), dict):
        raise MergeError(f"{path} is not a shard's stream (its run was not started with --shard "
                         f"I/N): only shards of one run can be merged")
    return start, cases, end


def merge(sources: Sequence[Path], out: Path) -> Path:
    """Write the merged stream of the shard streams in `sources` to OUT/results.jsonl."""
    if any(Path(s).resolve() in (out.resolve(), out.resolve() / "results.jsonl")
           for s in sources):
        raise MergeError(f"--out {out} is one of the shards: write the merged run elsewhere")
    read = [(Path(s), *_read(Path(s))) for s in sources]
    first_path, first, _, _ = read[0]
    count = int(first["shard"]["count"])
    every = list(first["shard"]["all_units"])
    seen: dict[int, Path] = {}
    for path, start, _, _ in read:
        for key in SAME:
            if start.get(key) != first.get(key):
                raise MergeError(f"{path} and {first_path} are not shards of one run: their "
                                 f"{key} differ ({_short(start.get(key))} against "
                                 f"{_short(first.get(key))})")
        shard = start["shard"]
        if shard.get("min_coverage") != first["shard"].get("min_coverage"):
            raise MergeError(f"{path} and {first_path} are not shards of one run: their "
                             f"--min-coverage differ")
        if int(shard["count"]) != count or list(shard["all_units"]) != every:
            raise MergeError(f"{path} is shard {shard['index']}/{shard['count']} of another unit "
                             f"list than {first_path} (shard {first['shard']['index']}/{count})")
        index = int(shard["index"])
        if index in seen:
            raise MergeError(f"shard {index}/{count} is given twice: {seen[index]} and {path}")
        seen[index] = path
        expected = [u for n, u in enumerate(every) if n % count == index - 1]
        if list(start.get("units") or []) != expected:
            raise MergeError(f"{path} says it is shard {index}/{count} but ran other units than "
                             f"that shard's")
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        raise MergeError(f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing: give "
                         f"the output directory of every one of the {count} shards")

    by_unit: dict[str, list[dict[str, Any]]] = {u: [] for u in every}  # case events
    for path, _, cases, _ in read:
        for event in cases:
            unit = event.get("unit")
            if unit in by_unit:
                by_unit[unit].append({"event": "case", "unit": unit, "case": event["case"]})
            else:
                raise MergeError(f"{path} holds case {event['case'].get('id')!r} without a unit "
                                 f"of the run: was it written by an older callgate?")
    ordered = [e for u in every for e in by_unit[u]]

    unfinished = [(int(start["shard"]["index"]), end) for _, start, _, end in read
                  if end is None or end.get("aborted")]
    aborted: dict[str, Any] | None = None
    if unfinished:
        index, end = sorted(unfinished, key=lambda item: item[0])[0]
        why = ((end or {}).get("aborted") or {}).get("reason") if end else \
            "its stream has no end: it was killed or crashed"
        aborted = {"reason": f"shard {index}/{count} did not finish ({why})"}
    elif first.get("expectations"):
        ordered += [{"event": "case", "case": c}
                    for c in _stale(first["expectations"], [end for _, _, _, end in read])]

    merged_start = {k: v for k, v in first.items() if k != "shard"} | {
        "units": every,
        "min_coverage": first["shard"].get("min_coverage"),
        "command": str(first.get("command", "")),
        "merged": [{"shard": f"{int(start['shard']['index'])}/{count}", "from": str(path),
                    "command": start.get("command"), "started": start.get("started")}
                   for path, start, _, _ in sorted(read, key=lambda r: r[1]["shard"]["index"])]}
    ends = [end for _, _, _, end in read if end is not None]
    results = [CaseResult.from_json(e["case"]) for e in ordered]
    summary = Summary.of(results)
    end_event: dict[str, Any] = {
        "event": "run_end",
        "finished": max((str(e.get("finished", "")) for e in ends), default=""),
        "seconds": max((float(e.get("seconds") or 0) for e in ends), default=0.0),
        "summary": {"passed": summary.passed, "failed": summary.failed,
                    "errors": summary.errors, "not_applicable": summary.not_applicable,
                    "expected_fail": summary.expected_fail,
                    "unexpected_pass": summary.unexpected_pass},
        "shards": [{"shard": f"{int(start['shard']['index'])}/{count}",
                    "seconds": (end or {}).get("seconds"), "waits": (end or {}).get("waits"),
                    "jobs": (end or {}).get("jobs"), "orphans": (end or {}).get("orphans")}
                   for _, start, _, end in sorted(read, key=lambda r: r[1]["shard"]["index"])]}
    if aborted is not None:
        end_event["aborted"] = aborted
    out.mkdir(parents=True, exist_ok=True)
    stream = ResultStream(out / "results.jsonl")
    try:
        stream.emit(merged_start)
        for event in ordered:
            stream.emit(event)
        stream.emit(end_event)
    finally:
        stream.close()
    return out / "results.jsonl"


def _stale(recorded: dict[str, Any], ends: Sequence[dict[str, Any] | None]
           ) -> list[dict[str, Any]]:
    """The expectations entries that no case of any shard showed any more (as `unexpected_pass`
    cases), from what each shard's end says its cases matched and exercised."""
    try:
        known = from_record(recorded)
        for end in ends:
            tally = (end or {}).get("expectations_tally")
            if tally is None:
                raise MergeError("a shard's end does not say what its cases matched of the "
                                 "expectations file: was it written by an older callgate?")
            known.add_tally(tally)
    except (ExpectationsError, ValueError) as exc:
        raise MergeError(f"cannot judge the expectations over the shards: {exc}") from exc
    return [r.to_json() for r in known.stale_results()]


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 120 else text[:117] + "..."
