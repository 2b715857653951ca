"""`callgate check-trace`: judge recorded traces against the model (docs/traces.md)."""

from __future__ import annotations

import argparse
import json
import shlex
from datetime import UTC, datetime
from pathlib import Path

from rich.markup import escape

from callgate.conformance import expectations
from callgate.conformance.cli.console import EXIT_HARNESS, EXIT_USAGE, make_console
from callgate.conformance.report.reporting import ReportInvalid, status_of, write_reports
from callgate.conformance.results import ResultStream, Summary, read_stream
from callgate.conformance.trace.check import check
from callgate.conformance.trace.format import TraceInvalid, load

DEFAULT_OUT = Path("reports/trace")


def cmd_check_trace(args: argparse.Namespace) -> int:
    err = make_console(stderr=True)
    known = None
    if args.expectations:
        try:
            known = expectations.load(Path(args.expectations))
        except expectations.ExpectationsError as exc:
            err.print(f"callgate check-trace: {escape(str(exc))}")
            return EXIT_USAGE
    paths = [Path(p) for p in args.traces]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        err.print(f"callgate check-trace: no such trace file: {escape(', '.join(missing))}")
        return EXIT_USAGE
    try:
        trace = load(paths)
    except (TraceInvalid, OSError, UnicodeDecodeError) as exc:
        err.print(f"callgate check-trace: {escape(str(exc))}")
        return EXIT_USAGE
    outcome = check(trace)
    cases = [known.apply(c) for c in outcome.cases] if known is not None else outcome.cases
    out = Path(args.out)
    stream = ResultStream(out / "results.jsonl")
    stream.emit({
        "event": "run_start", "schema": 1,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "callgate " + " ".join(shlex.quote(a) for a in args.argv),
        "seed": None, "budget": "trace",
        "adapter": {"name": "trace: " + ", ".join(p.name for p in paths), "pins": trace.pins,
                    "notes": "recorded calls checked against the model (callgate check-trace)"},
        "expectations": known.to_json() if known is not None else None,
        "trace": outcome.summary()})
    for case in cases:
        stream.emit({"event": "case", "case": case.to_json()})
    summary = Summary.of(cases)
    stream.emit({"event": "run_end", "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                 "seconds": sum(c.seconds for c in cases),
                 "summary": {**summary.__dict__, "exit_code": summary.exit_code()}})
    stream.close()
    (out / "trace-summary.json").write_text(json.dumps(outcome.summary(), indent=1) + "\n",
                                            encoding="utf-8")
    try:
        write_reports(read_stream(out / "results.jsonl"), out, diagrams=False)
    except ReportInvalid as exc:
        err.print(f"callgate check-trace: {escape(str(exc))}\nplease report this as a callgate bug")
        return EXIT_HARNESS
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    console = make_console()
    s = report["summary"]
    console.print(f"callgate check-trace: {outcome.calls} calls, {s['cases']} cases: "
                  f"{status_of(report)} ({s['passed']} passed, {s['failed']} failed, "
                  f"{s['errors']} errors, {s['not_applicable']} not applicable, "
                  f"{s['expected_fail']} expected failures)")
    if outcome.unknown_apis:
        console.print("APIs the model does not cover: " + escape(", ".join(
            f"{a} x{n}" for a, n in outcome.unknown_apis.items())))
    if outcome.uncovered_objects:
        console.print("objects the model does not cover: " + escape(", ".join(
            f"{o} ({n} calls)" for o, n in outcome.uncovered_objects.items())))
    for case in cases:
        if case.verdict.value in ("fail", "error", "unexpected_pass"):
            console.print(f"  {case.verdict.value}: {escape(case.id)}: "
                          f"{escape(', '.join(case.failed_rules))} {escape(case.message)}")
    console.print(f"wrote {escape(str(out))}")
    return int(s["exit_code"])


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("check-trace",
                            help="check recorded calls (a trace, docs/traces.md) against the model")
    parser.add_argument("traces", nargs="+", metavar="TRACE", help="trace files (JSON lines)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), metavar="DIR",
                        help=f"where to write results.jsonl and the reports (default {DEFAULT_OUT})")
    parser.add_argument("--expectations", default=None, metavar="FILE",
                        help="known deviations (TOML): listed failures become expected_fail")
    parser.set_defaults(func=cmd_check_trace)
