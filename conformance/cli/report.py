"""`callgate report`, `callgate compare` and `callgate schema`: the reporting commands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from rich.markup import escape

from callgate.conformance.cli.console import EXIT_HARNESS, EXIT_OK, EXIT_USAGE, make_console
from callgate.conformance.protocol import vocabulary
from callgate.conformance.report import merge
from callgate.conformance.report.compare import write_comparison
from callgate.conformance.report.reporting import (
    REPORT_FILES,
    ReportInvalid,
    schema_text,
    status_of,
    write_reports,
)
from callgate.conformance.results import read_stream
from callgate.conformance.trace import format as trace_format

SCHEMAS: dict[str, Callable[[], str]] = {
    "report": schema_text,
    "ops": partial(vocabulary.schema_text, "ops"),
    "pins": partial(vocabulary.schema_text, "pins"),
    "trace": lambda: json.dumps(trace_format.schema(), indent=1) + "\n",
}


def _fail(command: str, message: str, code: int = EXIT_USAGE) -> int:
    make_console(stderr=True).print(f"callgate {command}: {escape(message)}")
    return code


def cmd_report(args: argparse.Namespace) -> int:
    if bool(args.source) == bool(args.merge):
        return _fail("report", "pass exactly one of --from RESULTS (one run) and --merge DIR... "
                               "(the output directories of a run's shards)")
    if args.merge:
        if not args.out:
            return _fail("report", "--merge needs --out DIR: where to write the merged stream and "
                                   "its reports")
        try:
            source = merge.merge([Path(d) for d in args.merge], Path(args.out))
        except merge.MergeError as exc:
            return _fail("report", str(exc))
        except OSError as exc:
            return _fail("report", f"cannot merge into {args.out}: {exc}")
        return _render(source, source.parent, args.no_diagrams)
    source = Path(args.source)
    if source.is_dir():
        source = source / "results.jsonl"
    if not source.is_file():
        return _fail("report", f"no results stream at {source}: pass the results.jsonl a run "
                               f"wrote (callgate run --out DIR writes DIR/results.jsonl)")
    return _render(source, Path(args.out) if args.out else source.parent, args.no_diagrams)


def _render(source: Path, out: Path, no_diagrams: bool) -> int:
    """Render the reports of the stream at `source` into `out`, say how the run went, and give
    the run's exit code."""
    try:
        record = read_stream(source)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return _fail("report", f"cannot read {source}: {exc}")
    try:
        paths = write_reports(record, out, diagrams=not no_diagrams)
    except ReportInvalid as exc:  # a bug in callgate: the report it built breaks its own schema
        return _fail("report", f"{exc}\nplease report this as a callgate bug", EXIT_HARNESS)
    except OSError as exc:
        return _fail("report", f"cannot write the reports to {out}: {exc}")
    assert paths[0].name == REPORT_FILES[0]
    report = json.loads(paths[0].read_text(encoding="utf-8"))
    s = report["summary"]
    console = make_console()
    if record.complete:
        state = "complete run"
    else:
        reason = (record.aborted or {}).get("reason", "no run_end: killed or crashed")
        state = f"INCOMPLETE run ({reason})"
    console.print(f"callgate report: {escape(state)}, {s['cases']} cases: {status_of(report)} "
                  f"({s['passed']} passed, {s['failed']} failed, {s['errors']} errors, "
                  f"{s['not_applicable']} not applicable, {s['expected_fail']} expected failures, "
                  f"{s['unexpected_pass']} unexpected passes)")
    console.print(escape(report["verdict"]["headline"]))
    console.print("wrote " + ", ".join(escape(str(p)) for p in paths))
    # The gate's exit code for the run, as `callgate run` gave it: an incomplete run is never 0.
    return int(s["exit_code"])


def cmd_compare(args: argparse.Namespace) -> int:
    paths = [Path(p) / "report.json" if Path(p).is_dir() else Path(p) for p in args.reports]
    if len(paths) < 2:
        return _fail("compare", "give at least two report.json files (or run directories) to "
                                "compare")
    try:
        written = write_comparison(paths, Path(args.out))
    except ReportInvalid as exc:
        return _fail("compare", str(exc))
    except OSError as exc:
        return _fail("compare", f"cannot write to {args.out}: {exc}")
    make_console().print("wrote " + ", ".join(escape(str(p)) for p in written))
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(SCHEMAS[args.name]())
    return EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser(
        "report", help="render report.json, junit.xml, report.md and report.html from a results "
                       "stream (also of a run that was killed)")
    report.add_argument("--from", dest="source", default=None, metavar="RESULTS",
                        help="a run's results.jsonl (or the directory holding it)")
    report.add_argument("--merge", nargs="+", default=None, metavar="DIR",
                        help="the output directories of every shard of one run (callgate run "
                             "--shard I/N): write their merged results.jsonl and reports to "
                             "--out, with the exit code of the whole run")
    report.add_argument("--out", default="", metavar="DIR",
                        help="where to write the reports (default: beside the stream)")
    report.add_argument("--no-diagrams", action="store_true",
                        help="leave the state diagrams out of report.html (no Graphviz needed)")
    report.set_defaults(func=cmd_report)

    compare = sub.add_parser(
        "compare", help="a matrix of rules by implementations from several report.json files")
    compare.add_argument("reports", nargs="+", metavar="REPORT",
                         help="report.json files (or run directories holding one)")
    compare.add_argument("--out", required=True, metavar="DIR",
                         help="where to write compare.html and compare.md")
    compare.set_defaults(func=cmd_compare)

    schema = sub.add_parser("schema", help="print the JSON Schema of a document callgate writes")
    schema.add_argument("name", choices=sorted(SCHEMAS), help="report: report.json; ops, pins: "
                                                        "`callgate model ops/pins --json`; trace: "
                                                        "a recorded trace (docs/traces.md)")
    schema.set_defaults(func=cmd_schema)
