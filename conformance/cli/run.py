"""`callgate run`, `callgate replay` and `callgate adapters`: the gate's commands."""

from __future__ import annotations

import argparse
import json
import shlex
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from callgate.conformance import expectations
from callgate.conformance.budgets import BUDGETS
from callgate.conformance.cli.console import (
    EXIT_HARNESS,
    EXIT_NONCONFORMANT,
    EXIT_OK,
    EXIT_USAGE,
    make_console,
    non_negative,
    percent,
    positive_int,
    positive_seconds,
)
from callgate.conformance.gate import (
    HandshakeFailed,
    Progress,
    RunAborted,
    RunOptions,
    RunOutcome,
    Tick,
    run_cases,
    run_gate,
)
from callgate.conformance.judge.runner import Case
from callgate.conformance.outdir import OutputUnusable, check_output
from callgate.conformance.protocol import loading as adapters
from callgate.conformance.protocol.adapter import Adapter, AdapterFault, SlotSpec
from callgate.conformance.protocol.jsonl import CommandAdapter
from callgate.conformance.report.reporting import REPORT_FILES
from callgate.conformance.report.unchanged import Snapshot
from callgate.conformance.results import Verdict
from callgate.model.families import MACHINES
from callgate.model.transitions import Action

DEFAULT_OUT = Path("reports/latest")


def _progress_printer() -> tuple[object, Progress]:
    """A progress callback: a live bar on a terminal, a line every 10% elsewhere (CI logs). The
    bar counts the run's units (known before the first case, so the total never grows) and
    estimates the time left from them."""
    console = make_console(stderr=True)
    if console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                       console=console, transient=True)
        task = bar.add_task("units", total=None, status="")
        last = {"failed": ""}

        def update(tick: Tick) -> None:
            result = tick.result
            if result is not None and result.verdict is not Verdict.PASS:
                last["failed"] = f" last: {tick.label} {result.verdict.value}"
            status = f"{tick.cases} cases done{last['failed']}"
            if result is None and tick.label.startswith("shrinking "):
                status = f"{tick.cases} cases done, {tick.label}"  # a long shrinking says where it is
            bar.update(task, completed=tick.units_done, total=tick.units_total, status=status)
        return bar, update

    step = {"next": 0}
    started = time.monotonic()

    def update_plain(tick: Tick) -> None:
        result = tick.result
        if result is None and tick.label.startswith("shrinking "):
            console.print(f"  {escape(tick.label)}")  # a long shrinking says where it is
            return
        if result is not None and result.verdict in (Verdict.FAIL, Verdict.ERROR):
            console.print(f"  {result.verdict.value}: {tick.label}: "
                          f"{escape(result.message[:160])}")
        if result is None and (tick.units_done >= step["next"]
                               or tick.units_done == tick.units_total):
            spent = time.monotonic() - started
            left = (f", about {spent / tick.units_done * (tick.units_total - tick.units_done):.0f}"
                    f" s left" if 0 < tick.units_done < tick.units_total else "")
            console.print(f"  {tick.units_done}/{tick.units_total} units done, {tick.cases} "
                          f"cases done{left}")
            step["next"] = tick.units_done + max(1, tick.units_total // 10)
    return None, update_plain


def _adapter_arguments(args: argparse.Namespace, command: str) -> str:
    """What is wrong with --adapter / --adapter-cmd ("" if nothing)."""
    if bool(args.adapter) == bool(args.adapter_cmd):
        return (f"callgate {command}: pass exactly one of --adapter NAME|module:attribute and "
                f"--adapter-cmd \"COMMAND ...\" (see `callgate adapters`)")
    if args.adapter_cmd is not None:
        try:
            words = shlex.split(args.adapter_cmd)
        except ValueError as exc:
            return (f"callgate {command}: --adapter-cmd cannot be split into words ({exc}): "
                    f"check its quotes")
        if not words:
            return f"callgate {command}: --adapter-cmd is empty: give the adapter program to start"
    return ""


def _adapter_and_expectations(args: argparse.Namespace, command: str
                              ) -> tuple[str, expectations.Expectations | None]:
    """What is wrong with the adapter arguments or the expectations file ("" if nothing), and
    the expectations loaded (None without --expectations)."""
    problem = _adapter_arguments(args, command)
    if problem or not args.expectations:
        return problem, None
    try:
        return "", expectations.load(Path(args.expectations))
    except expectations.ExpectationsError as exc:
        return f"callgate {command}: {escape(str(exc))}", None


def cmd_run(args: argparse.Namespace) -> int:
    err = make_console(stderr=True)
    problem, known = _adapter_and_expectations(args, "run")
    if problem:
        err.print(problem)
        return EXIT_USAGE
    if args.jitter_ms and args.adapter != "reference":
        err.print("callgate run: --jitter-ms works with --adapter reference only (other "
                  "implementations have their own timing); use --stagger-ms for any adapter")
        return EXIT_USAGE
    try:
        check_output(Path(args.out))
    except OutputUnusable as exc:
        err.print(f"callgate run: {escape(str(exc))}")
        return EXIT_USAGE
    factory: Callable[[], Adapter]
    if args.jitter_ms:
        from callgate.conformance.implementations.reference.adapter import make_adapter
        factory = partial(make_adapter, jitter=args.jitter_ms / 1000.0, seed=args.seed)
    elif args.adapter:
        factory = partial(adapters.load, args.adapter)
    else:
        factory = partial(CommandAdapter, args.adapter_cmd, request_timeout=args.step_timeout)
    try:
        adapter = factory()  # a worker of --jobs starts its own from the same factory
    except adapters.AdapterNotFound as exc:
        err.print(f"callgate run: {escape(str(exc))}")
        return EXIT_USAGE
    command = "callgate " + " ".join(shlex.quote(a) for a in args.argv)
    name = args.adapter or f"cmd: {args.adapter_cmd}"
    options = RunOptions(name, BUDGETS[args.budget], args.seed, Path(args.out),
                         args.step_timeout, command, expectations=known,
                         parallel=not args.no_parallel, stagger=args.stagger_ms / 1000.0,
                         parallel_runs=args.parallel_runs, min_coverage=args.min_coverage,
                         fixed_values=args.fixed_values, shrink=not args.no_shrink,
                         full_waits=args.full_waits,
                         record_trace=Path(args.record_trace) if args.record_trace else None,
                         jobs=args.jobs, adapter_factory=factory, shard=args.shard)
    snapshot = Snapshot(Path(args.out)) if args.keep_if_unchanged else None
    bar, update = _progress_printer()
    aborted: RunAborted | None = None
    try:
        if bar is not None:
            with bar:  # type: ignore[attr-defined]
                outcome = run_gate(adapter, options, update)
        else:
            outcome = run_gate(adapter, options, update)
    except OutputUnusable as exc:  # another run holds --out
        err.print(f"callgate run: {escape(str(exc))}")
        return EXIT_USAGE
    except HandshakeFailed as exc:
        err.print(f"callgate run: adapter error: {escape(str(exc))} {escape(exc.evidence)}")
        err.print(f"callgate run: the reports record it as one error case: "
                  f"{exc.outcome.out}/report.json")
        return EXIT_HARNESS
    except AdapterFault as exc:
        err.print(f"callgate run: adapter error: {escape(str(exc))} {escape(exc.evidence)}")
        return EXIT_HARNESS
    except RunAborted as exc:
        aborted = exc
        outcome = exc.outcome
    finally:
        adapter.shutdown()
    if known is not None:
        implementation = report_implementation(outcome.report)
        warning = known.mismatch(implementation)
        if warning:
            err.print(f"callgate run: {escape(warning)}")
        for unused in known.unused():
            err.print(f"callgate run: expectation {escape(unused.key)} matched no case")
    print_outcome(outcome)
    note = run_note(outcome.out / "results.jsonl")
    if note:
        err.print(f"callgate run: {escape(note)}")
    if snapshot is not None and aborted is None and snapshot.restore_if_unchanged():
        make_console().print("the run showed what the earlier reports in "
                             f"{escape(str(args.out))} show (only timing differs): kept them")
    if aborted is not None:
        err.print(f"callgate run: ABORTED: {escape(aborted.reason)}; the reports above cover "
                  f"only the cases that ran (report.json says complete: false)")
        return aborted.exit_code
    return outcome.exit_code


def print_outcome(outcome: RunOutcome) -> None:
    """The run's closing lines: counts, the headline, the failures and the reports written."""
    console = make_console()
    s = outcome.summary
    report = json.loads(outcome.report.read_text(encoding="utf-8"))
    cov = report["coverage"]
    console.print(f"callgate: {s.cases} cases, {s.steps} steps in {outcome.seconds:.1f} s: "
                  f"{s.passed} passed, {s.failed} failed, {s.errors} errors, "
                  f"{s.not_applicable} not applicable, {s.expected_fail} expected failures, "
                  f"{s.unexpected_pass} unexpected passes")
    console.print(f"coverage: {cov['transitions_covered']}/{cov['transitions_total']} transitions")
    for case in report["cases"]:
        if case["verdict"] in ("fail", "error", "unexpected_pass"):
            console.print(f"  {case['verdict'].upper()} {case['id']}: "
                          f"{escape(case.get('message', ''))[:300]}")
    written = [outcome.out / name for name in (*REPORT_FILES, "results.jsonl")
               if (outcome.out / name).is_file()]
    console.print("reports written:")
    for path in written:
        console.print(f"  {escape(str(path))}", soft_wrap=True)
    console.print(escape(report["verdict"]["headline"]))


def run_note(results: Path) -> str:
    """What the run's end says about how it used --jobs, when it used fewer workers than asked
    or a worker died ("" otherwise)."""
    try:
        lines = results.read_text(encoding="utf-8").splitlines()
        used = json.loads(lines[-1]).get("jobs") or {} if lines else {}
    except (OSError, ValueError, AttributeError):
        return ""
    notes = [str(used["note"])] if used.get("note") else []
    if used.get("died"):
        notes.append(f"{used['died']} worker process(es) died; their units are error cases")
    return "; ".join(notes)


def jobs_count(text: str) -> int | None:
    """`--jobs`: a positive number of worker processes, or `auto` (None)."""
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number or 'auto'")
    return value


def shard_spec(text: str) -> tuple[int, int]:
    """`--shard I/N`: the I-th of N slices, 1 <= I <= N."""
    index, slash, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = 0
    if not slash or not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N with 1 <= I <= N (e.g. 2/4)")
    return i, n


def report_implementation(report_path: Path) -> str:
    data = json.loads(report_path.read_text(encoding="utf-8"))
    return str(data.get("adapter", {}).get("implementation", ""))


def cmd_replay(args: argparse.Namespace) -> int:
    try:
        data = json.loads(Path(args.trace).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        make_console(stderr=True).print(f"callgate replay: cannot read {args.trace}: {exc}")
        return EXIT_USAGE
    replay = data.get("replay", data)
    try:
        slots = tuple(SlotSpec(s["name"], s["machine"], s.get("config", {}))
                      for s in replay["slots"])
        machines = {s.name: MACHINES[s.machine] for s in slots}
        def actions(listed: list[dict[str, object]]) -> tuple[Action, ...]:
            return tuple(Action(st["slot"], st["op"], tuple(  # type: ignore[arg-type]
                (p.name, st["args"][p.name])  # type: ignore[index]
                for p in machines[st["slot"]].operation(st["op"]).params))  # type: ignore[index, arg-type]
                for st in listed)

        steps = actions(replay["steps"])
        branches = tuple(actions(b) for b in replay.get("branches") or [])
        suffix = actions(replay.get("suffix") or [])
    except (KeyError, TypeError) as exc:
        make_console(stderr=True).print(
            f"callgate replay: {args.trace} is not a callgate trace (missing {exc}); pass a case "
            f"object from report.json or a file with 'slots' and 'steps'")
        return EXIT_USAGE
    err = make_console(stderr=True)
    problem, known = _adapter_and_expectations(args, "replay")
    if problem:
        err.print(problem)
        return EXIT_USAGE
    try:
        adapter = adapters.load(args.adapter) if args.adapter else \
            CommandAdapter(args.adapter_cmd, request_timeout=args.step_timeout)
    except adapters.AdapterNotFound as exc:
        err.print(f"callgate replay: {escape(str(exc))}")
        return EXIT_USAGE
    # The concrete argument values the case ran with (a failure found with one [out] value
    # must be replayed with that value, not a fresh draw).
    case = Case(data.get("id", "replay"), "replay", "replayed trace", slots, steps,
                values=replay.get("values"))
    try:
        if branches:
            from callgate.conformance.cases.parallel import ParallelCase, replay_parallel
            result = replay_parallel(adapter, ParallelCase(
                case.id, "replayed parallel case", slots, steps, branches, suffix=suffix),
                args.step_timeout)
            if known is not None:
                result = known.apply(result)
        else:
            (result,) = run_cases(adapter, [case], args.step_timeout, expectations=known,
                                  keep_traces=True)
    except AdapterFault as exc:
        err.print(f"callgate replay: adapter error: {escape(str(exc))} {escape(exc.evidence)}")
        return EXIT_HARNESS
    finally:
        adapter.shutdown()
    console = make_console()
    table = Table(title=f"replay of {case.id}: {result.verdict.value}")
    for col in ("step", "operation", "observed", "allowed", "ok"):
        table.add_column(col, overflow="fold")
    for i, step in enumerate(result.trace or [], 1):
        table.add_row(str(i), escape(f"{step.slot}.{step.op}({step.args})"),
                      escape(step.code_name or str(step.code)), escape("; ".join(step.allowed)),
                      "yes" if step.ok else "NO")
    console.print(table)
    if result.message:
        console.print(escape(result.message))
    if result.verdict in (Verdict.PASS, Verdict.EXPECTED_FAIL):
        return EXIT_OK
    if result.verdict is Verdict.NOT_APPLICABLE:
        return EXIT_HARNESS  # nothing was shown: never a pass
    return EXIT_HARNESS if result.verdict is Verdict.ERROR else EXIT_NONCONFORMANT


def cmd_adapters(args: argparse.Namespace) -> int:
    console = make_console()
    table = Table(title="built-in adapters")
    table.add_column("name")
    table.add_column("target")
    table.add_column("what it is")
    for b in adapters.BUILT_INS.values():
        table.add_row(b.name, b.target, b.about)
    console.print(table)
    console.print("Any other adapter: --adapter module:attribute (an Adapter class or factory).")
    return EXIT_OK


RUN_EPILOG = f"""\
exit codes:
  {EXIT_OK}  conformant: every case passed, or failed only on a deviation the expectations list
  {EXIT_NONCONFORMANT}  non-conformant: a case failed on an unlisted deviation, a listed deviation did
     not occur (unexpected pass), or coverage is below --min-coverage
  {EXIT_USAGE}  usage error: bad arguments, an unknown adapter, an unreadable expectations file
  {EXIT_HARNESS}  no verdict: nothing failed, but a case could not be judged (the adapter crashed,
     broke the protocol or timed out), the run did not finish, no case passed (nothing
     shown), or the run is one shard (`callgate report --merge` gives the gate's verdict)

examples:
  callgate run --adapter reference --out reports/reference
  callgate run --adapter-cmd "./my-adapter --flag" --expectations known.toml --out out
  callgate run --adapter mypkg.adapter:MyAdapter --budget quick --seed 7 --out out
  callgate run --adapter reference --jobs 4 --out out
  callgate run --adapter reference --shard 1/2 --out shard1     # and 2/2 into shard2, then:
  callgate report --merge shard1 shard2 --out merged

The reports land in OUT: report.html, report.md, junit.xml, report.json, results.jsonl."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser(
        "run", help="run the gate against an implementation",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RUN_EPILOG)
    run.add_argument("--adapter", default=None,
                     help="a built-in adapter name (see `callgate adapters`) or module:attribute")
    run.add_argument("--adapter-cmd", default=None, metavar="COMMAND",
                     help="an adapter program speaking JSON lines (docs/adapter-protocol.md)")
    run.add_argument("--expectations", default=None, metavar="FILE",
                     help="known deviations (TOML): listed failures become expected_fail")
    run.add_argument("--budget", choices=sorted(BUDGETS), default="standard",
                     help="how much stateful testing beyond the directed cases (default standard)")
    run.add_argument("--seed", type=int, default=0, help="seed of the stateful cases (default 0)")
    run.add_argument("--out", default=str(DEFAULT_OUT),
                     help=f"directory for results.jsonl and reports (default {DEFAULT_OUT})")
    run.add_argument("--step-timeout", type=positive_seconds, default=10.0,
                     help="seconds before a step that does not answer is an error (default 10)")
    run.add_argument("--parallel-runs", type=positive_int, default=None, metavar="N",
                     help="how many times each parallel case runs (default: the budget's)")
    run.add_argument("--stagger-ms", type=non_negative, default=1.0, metavar="MS",
                     help="longest random pause before each action of a parallel branch "
                          "(default 1)")
    run.add_argument("--jitter-ms", type=non_negative, default=0.0, metavar="MS",
                     help="the reference adapter only: longest random pause at the "
                          "implementation's interleaving points, to widen races (default 0)")
    run.add_argument("--no-parallel", action="store_true",
                     help="skip the parallel cases (races judged by linearizability)")
    run.add_argument("--min-coverage", type=percent, default=None, metavar="PCT",
                     help="fail the gate (exit 1) when the run covers less than PCT percent of "
                          "the transitions the model defines for the adapter's features")
    run.add_argument("--no-shrink", action="store_true",
                     help="report each failing case as found, without shrinking it to a minimal "
                          "counterexample (faster when many cases fail; the verdicts are the same)")
    run.add_argument("--keep-if-unchanged", action="store_true",
                     help="if OUT holds the reports of an earlier run and this run showed the same "
                          "(verdicts, failures, coverage, observed race orderings: everything but "
                          "timing), put the earlier files back, so committed reports do not change")
    run.add_argument("--fixed-values", action="store_true",
                     help="send one concrete value per abstract argument class (a finite Wait "
                          "50 ms, [out] 1 and 2, ...) instead of several drawn from the seed")
    run.add_argument("--full-waits", action="store_true",
                     help="keep every harness wait at its fixed length, also where the model "
                          "says nothing can arrive (default: a look calibrated on the adapter)")
    run.add_argument("--record-trace", default=None, metavar="FILE",
                     help="write the calls the run makes as a trace (docs/traces.md) that "
                          "`callgate check-trace` reads (the run then uses one process)")
    run.add_argument("--jobs", type=jobs_count, default=None, metavar="N|auto",
                     help="run the units in N worker processes, each with its own adapter "
                          "(default auto: one per core; 1: in this process). Results, verdicts "
                          "and reports are the same for every N")
    run.add_argument("--shard", type=shard_spec, default=None, metavar="I/N",
                     help="run only the I-th of N slices of the units (every N-th unit); join "
                          "the N shards' output directories with `callgate report --merge`")
    run.set_defaults(func=cmd_run)

    replay = sub.add_parser("replay", help="replay a saved trace against an adapter")
    replay.add_argument("trace", help="a JSON file: a case from report.json, or {slots, steps}")
    replay.add_argument("--adapter", default=None,
                        help="a built-in adapter name or module:attribute")
    replay.add_argument("--adapter-cmd", default=None, metavar="COMMAND",
                        help="an adapter program speaking JSON lines (docs/adapter-protocol.md)")
    replay.add_argument("--expectations", default=None, metavar="FILE",
                        help="known deviations (TOML): a listed failure is expected_fail (exit 0)")
    replay.add_argument("--step-timeout", type=positive_seconds, default=10.0,
                        help="seconds before a step that does not answer is an error (default 10)")
    replay.set_defaults(func=cmd_replay)

    listing = sub.add_parser("adapters", help="list the built-in adapters")
    listing.set_defaults(func=cmd_adapters)



