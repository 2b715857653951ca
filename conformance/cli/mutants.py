"""`callgate mutants`: the gate against every seeded-fault mutant of the reference implementation."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from callgate.conformance.budgets import BUDGETS
from callgate.conformance.cli.console import EXIT_OK, EXIT_USAGE, make_console

if TYPE_CHECKING:
    from callgate.conformance import mutants

# The case kinds a mutant run can be limited to (`mutants.KINDS`, which a test compares with
# this): named here so that building the command line does not import the mutant machinery,
# which every other subcommand would then pay for at start-up.
KINDS = ("directed", "stateful", "parallel", "multi", "identify")

EXIT_BLIND = 1  # a mutant that should have died survived


def cmd_mutants(args: argparse.Namespace) -> int:
    from callgate.conformance import mutants
    from callgate.conformance.implementations.reference.host import FAULTS

    console = make_console()
    err = make_console(stderr=True)
    if args.list:
        table = Table(title=f"{len(FAULTS)} seeded-fault mutants")
        for column in ("name", "rule", "what the faulty implementation does"):
            table.add_column(column, overflow="fold")
        for fault in sorted(FAULTS.values(), key=lambda f: (f.rule, f.name)):
            table.add_row(fault.name, fault.rule, escape(fault.effect))
        console.print(table)
        return EXIT_OK
    kinds = args.kinds.split(",") if args.kinds else list(mutants.KINDS)
    bad = sorted(set(kinds) - set(mutants.KINDS))
    if bad:
        err.print(f"callgate mutants: unknown case kind(s) {', '.join(bad)}; use a comma-separated "
                  f"list of {', '.join(mutants.KINDS)}")
        return EXIT_USAGE
    command = "callgate " + " ".join(shlex.quote(a) for a in args.argv)
    workers = mutants.auto_workers() if args.workers == "auto" else int(args.workers)
    equivalent = mutants.runs_equivalent(args.budget, args.include_equivalent)
    err.print(f"callgate mutants: {len(args.only or FAULTS)} mutants, budget {args.budget}, "
              f"seed {args.seed}, {workers} worker(s)"
              + ("" if equivalent else "; equivalent mutants not run (--include-equivalent)"))
    try:
        report = mutants.run_mutants(args.only or None, args.budget, args.seed, kinds,
                                     workers, args.step_timeout, mutants.print_progress,
                                     command, args.include_equivalent)
    except ValueError as exc:
        err.print(f"callgate mutants: {escape(str(exc))}")
        return EXIT_USAGE
    data = report.to_json()
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "mutants.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print_table(report)
    return EXIT_BLIND if report.unexpected_survivors else EXIT_OK


def print_table(report: mutants.MutantsReport) -> None:
    console = make_console()
    table = Table(title=f"mutants, budget {report.budget}, seed {report.seed}")
    for column in ("mutant", "rule", "result", "s to kill", "case", "cex", "before", "shortest",
                   "needed", "minimal"):
        table.add_column(column, overflow="fold")
    for r in report.results:
        if r.killed:
            table.add_row(r.name, r.rule, f"killed ({r.verdict}, {r.kind})",
                          f"{r.seconds_to_kill:.2f}", r.killed_by,
                          str(r.counterexample_length),
                          "" if r.length_before is None else str(r.length_before),
                          "" if r.shortest_path is None else str(r.shortest_path),
                          "" if r.needed_steps is None else str(r.needed_steps),
                          {True: "yes", False: "no", None: "?"}[r.minimal])
        elif not r.ran:
            table.add_row(r.name, r.rule, "equivalent, not run", "", "", "", "", "", "", "")
        else:
            table.add_row(r.name, r.rule, "[bold]survived[/bold]", "", "", "", "", "", "", "")
    console.print(table)
    median = report.median_seconds_to_kill
    console.print(f"{len(report.killed)}/{len(report.results)} killed "
                  f"({report.kill_rate:.1%}); median time to kill "
                  f"{'-' if median is None else f'{median:.2f} s'}; minimal counterexamples "
                  f"{report.minimal_counterexamples}/{len(report.killed)}; "
                  f"{report.seconds:.0f} s in all")
    for r in report.survivors:
        console.print(f"  survivor {r.name} ({r.rule}): {escape(r.reason)}")


def _workers(text: str) -> str:
    """`--workers`: a positive number, or auto."""
    if text == "auto" or (text.isdigit() and int(text) > 0):
        return text
    raise argparse.ArgumentTypeError(f"expected a positive number or auto, not {text!r}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "mutants", help="run the gate against every seeded-fault mutant of the reference "
                        "implementation: kill rate, time to kill, counterexample lengths")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="standard",
                        help="the gate budget each mutant runs with (default standard, as "
                             "`callgate run`)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stateful cases")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    parser.add_argument("--out", default=None, metavar="DIR", help="also write DIR/mutants.json")
    parser.add_argument("--workers", type=_workers, default="auto",
                        help="mutants run at a time, each in its own process, or auto (the "
                             "default: three per CPU less the load already on the machine, at least 2)")
    parser.add_argument("--include-equivalent", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="run the equivalent mutants too (default: only with --budget deep; "
                             "otherwise they are reported as equivalent, not run)")
    parser.add_argument("--kinds", default=None, metavar="LIST",
                        help=f"case kinds to run, comma-separated (default all: "
                             f"{','.join(KINDS)})")
    parser.add_argument("--step-timeout", type=float, default=10.0,
                        help="seconds before a step that does not answer is an error")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.set_defaults(func=cmd_mutants)
