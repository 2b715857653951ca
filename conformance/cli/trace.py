"""`callgate check-trace`: judge recorded traces against the model (docs/traces.md), and
`callgate import-relay`: turn a Wine relay log into a trace."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
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
                 # The counts only: the exit code is the report's (`run_verdict`), which also
                 # weighs what the counts cannot (nothing shown, coverage floors).
                 "summary": dict(summary.__dict__)})
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
    parser = sub.add_parser(
        "import-relay", help="turn a Wine relay log (WINEDEBUG=+relay,+pid,+tid) into a trace")
    parser.add_argument("log", metavar="LOG", help="the relay log of one run (Wine's stderr)")
    parser.add_argument("--out", default="-", metavar="TRACE",
                        help="where to write the trace (default: standard output)")
    parser.set_defaults(func=cmd_import_relay)


def cmd_import_relay(args: argparse.Namespace) -> int:
    from callgate.conformance.trace import relay

    err = make_console(stderr=True)
    path = Path(args.log)
    if not path.is_file():
        err.print(f"callgate import-relay: no such log: {escape(str(path))}")
        return EXIT_USAGE
    imported = relay.import_log(relay.read_lines(path))
    calls = sum(1 for line in imported.lines if line["type"] == "call")
    if args.out == "-":
        relay.write(imported, sys.stdout)
    else:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as handle:
            relay.write(imported, handle)
    err.print(f"callgate import-relay: {calls} in-scope calls written"
              + (f" to {escape(args.out)}" if args.out != "-" else "")
              + f"; {imported.unmatched} of them never returned; other relayed calls, not in "
              f"scope: " + escape(", ".join(f"{d} x{n}" for d, n in
                                           imported.skipped.most_common())))
    for note in imported.notes:
        err.print(f"  {escape(note)}")
    if calls == 0:
        err.print("callgate import-relay: the log has no in-scope calls (was it written with "
                  "WINEDEBUG=+relay?)")
    return 0
