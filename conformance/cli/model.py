"""`callgate model ...`: inspect the formal model, prove it (`check`) and draw it (`graph`)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import asdict

from rich.markup import escape
from rich.table import Table

from callgate.conformance.cli.console import (
    EXIT_HARNESS,
    EXIT_NONCONFORMANT,
    EXIT_OK,
    EXIT_USAGE,
    make_console,
)
from callgate.model.families import FAMILIES
from callgate.model.render import machine_views, rules_listing

RESULT_STYLE = {"proved": "green", "counterexample": "bold red", "unknown": "bold red",
                "conflict": "yellow", "error": "bold red"}


def cmd_model_rules(args: argparse.Namespace) -> int:
    listing = rules_listing()
    if args.json:
        json.dump(listing, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK
    table = Table(title="Rule catalogue (spec/DOMAIN.md section 2)", show_lines=False)
    for col in ("id", "level", "scope", "rows", "obligations", "summary / note"):
        table.add_column(col, overflow="fold")
    for r in listing:
        text = escape(str(r["summary"]))
        if r["note"]:
            text += f"\n[dim]{escape(str(r['note']))}[/dim]"
        if r["obligation_reason"]:
            text += f"\n[dim]no obligation: {escape(str(r['obligation_reason']))}[/dim]"
        stated = r["obligations"]
        assert isinstance(stated, list)
        table.add_row(str(r["id"]), str(r["level"]), "in" if r["in_scope"] else "out",
                      str(r["rows"]), str(len(stated)) if stated else "-", text)
    console = make_console()
    console.print(table)
    in_scope = [r for r in listing if r["in_scope"]]
    must = [r for r in in_scope if r["level"] == "MUST"]
    console.print(f"{len(listing)} rules, {len(in_scope)} in scope; "
                  f"{sum(1 for r in must if int(str(r['rows'])) > 0)} of {len(must)} in-scope "
                  f"MUST rules cited by model rows; "
                  f"{sum(1 for r in must if r['obligations'])} stated as obligations, "
                  f"{sum(1 for r in must if r['obligation_reason'])} listed with the reason "
                  f"they cannot be.")
    return EXIT_OK


def cmd_model_show(args: argparse.Namespace) -> int:
    machines = FAMILIES[args.family]
    if args.json:
        json.dump({m.name: [asdict(v) for v in machine_views(m)] for m in machines},
                  sys.stdout, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK
    console = make_console()
    for machine in machines:
        console.rule(f"[bold]{machine.name}[/bold]: {machine.title}")
        fields = Table(title="State fields", show_header=True)
        for col in ("field", "values", "meaning"):
            fields.add_column(col, overflow="fold")
        for f in machine.fields:
            values = ", ".join(map(str, f.domain))
            if len(f.domain) > 8:
                values = f"{f.domain[0]} .. {f.domain[-1]} ({len(f.domain)} values)"
            fields.add_row(f.name, escape(values), escape(f.doc))
        console.print(fields)
        console.print("initial: " + "; ".join(machine.describe(s) for s in machine.initial))
        table = Table(title=f"{machine.name} transitions", show_lines=True)
        for col in ("operation", "when (state)", "args", "outcomes", "rules"):
            table.add_column(col, overflow="fold")
        for view in machine_views(machine):
            table.add_row(view.op, escape(view.state), escape(view.args),
                          escape("\n".join(view.outcomes)), "\n".join(view.rules))
        console.print(table)
    return EXIT_OK


def cmd_model_ops(args: argparse.Namespace) -> int:
    """Per machine, the operations a request may name: parameters and their domains, the
    concrete values the harness sends, outputs, codes, the feature each needs."""
    from callgate.conformance.protocol.vocabulary import ops_document

    document = ops_document()
    if args.machine:
        known = [m["name"] for m in document["machines"]]
        if args.machine not in known:
            make_console(stderr=True).print(
                f"callgate model ops: unknown machine {escape(repr(args.machine))}; known: "
                f"{escape(', '.join(known))}")
            return EXIT_USAGE
        document["machines"] = [m for m in document["machines"] if m["name"] == args.machine]
    if args.json:
        json.dump(document, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK
    console = make_console()
    for machine in document["machines"]:
        table = Table(title=f"{machine['name']} ({machine['family']}): {machine['title']}",
                      show_lines=True)
        for col in ("operation", "by", "feature", "parameters", "outputs", "codes"):
            table.add_column(col, overflow="fold")
        for op in machine["operations"]:
            params = []
            for p in op["params"]:
                line = f"{p['name']}: {', '.join(map(str, p['domain']))}"
                for value, feature in p["value_features"].items():
                    line += f"\n  {value} needs {feature}"
                for c in p["concrete"]:
                    shown = ", ".join(str(v) for v in c["values"][:6])
                    more = f", ... ({len(c['values'])})" if len(c["values"]) > 6 else ""
                    line += f"\n  sent as {c['sent_as']}: {shown}{more}"
                params.append(line)
            table.add_row(op["name"], op["actor"], op["feature"] or "-",
                          escape("\n".join(params) or "-"), escape(", ".join(op["outputs"]) or "-"),
                          escape("\n".join(op["codes"])))
        console.print(table)
        for cf in machine["config_features"]:
            console.print(f"  slot config {cf['field']}={cf['value']} needs {cf['feature']}")
    console.print(f"{len(document['features'])} features; JSON: callgate model ops --json "
                  f"(schema: callgate schema ops)")
    return EXIT_OK


def cmd_model_pins(args: argparse.Namespace) -> int:
    """The variation points an adapter may pin, with their choices and the discrepancy each
    stands for."""
    from callgate.conformance.protocol.vocabulary import pins_document

    document = pins_document()
    if args.json:
        json.dump(document, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK
    console = make_console()
    table = Table(title="Variation points (pin one choice in the handshake's pins)",
                  show_lines=True)
    for col in ("point", "choices", "source", "rules", "meaning"):
        table.add_column(col, overflow="fold")
    for p in document["points"]:
        table.add_row(p["name"], escape("\n".join(p["choices"])), p["source"],
                      "\n".join(p["rules"]), escape(p["doc"]))
    console.print(table)
    for old, new in document["aliases"].items():
        console.print(f"deprecated name {old}: pins {', '.join(new)}")
    for name, r in document["retired"].items():
        console.print(f"retired {name}: only {r['surviving_choice']} accepted; {escape(r['why'])}")
    return EXIT_OK


def cmd_model_engine(args: argparse.Namespace) -> int:
    """One engine (the Python explorer or spin) on one machine or composition: states,
    deadlocks, invariant verdicts; exit 1 on a violation, 3 if the engine could not finish."""
    from callgate.model.export import engines, targets
    from callgate.model.transitions import ModelError

    try:
        target = targets.resolve(args.composition or "two_call_objects")
    except ModelError as exc:
        print(f"callgate model check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    run = engines.spin_engine if args.engine == "spin" else engines.python_engine
    result = run(target)
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        console = make_console()
        console.print(f"{result.engine} on {escape(result.composition)}: {result.status}; "
                      f"{result.states} states, {result.deadlocks} deadlocks, "
                      f"{len(result.invariants)} invariants checked in {result.seconds:.2f} s")
        for name, verdict in result.invariants.items():
            if verdict != "holds":
                console.print(f"  [bold red]{escape(name)}: {verdict}[/bold red]")
        if result.detail:
            console.print(escape(result.detail))
    return {"ok": EXIT_OK, "violated": EXIT_NONCONFORMANT}.get(result.status, EXIT_HARNESS)


def cmd_model_export(args: argparse.Namespace) -> int:
    """The Promela model of a machine or composition (generated from the tables)."""
    from callgate.model.export import promela, targets
    from callgate.model.transitions import ModelError

    try:
        model = promela.export(targets.resolve(args.composition))
    except ModelError as exc:
        print(f"callgate model export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(model.text)
    else:
        sys.stdout.write(model.text)
    return EXIT_OK


def cmd_model_check(args: argparse.Namespace) -> int:
    """Every proof, table check, exploration and liveness check; exit 1 on a counterexample, an
    unknown, an error (a check that could not run on the tables) or an unexpected conflict."""
    if args.engine or args.composition:
        return cmd_model_engine(args)
    from callgate.model import verify  # z3 and networkx load only for this command
    from callgate.model.liveness import iter_lasso
    from callgate.model.proofs import summarize

    if args.no_cache:  # every check and graph afresh, in the pool's processes too
        os.environ["CALLGATE_CACHE"] = "off"
    report = verify.run(bmc_depth=args.depth, cache=not args.no_cache)
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK if report.ok else EXIT_NONCONFORMANT
    console = make_console()
    table = Table(title="callgate model check", show_lines=False)
    for col in ("check", "kind", "result", "seconds", "detail"):
        table.add_column(col, overflow="fold")
    for check in report.checks:
        result = check.result.value
        if check.result.value == "conflict":
            result += " (expected)" if not check.failed else " (NEW)"
        style = RESULT_STYLE[check.result.value]
        if check.failed:
            style = "bold red"
        table.add_row(escape(check.name), check.kind, f"[{style}]{escape(result)}[/{style}]",
                      f"{check.seconds:.3f}", escape(check.detail))
    console.print(table)
    live = Table(title="Liveness under fairness (weak for the test server, progress of time, "
                       "strong for what the client keeps trying)", show_lines=False)
    for col in ("property", "result", "rules"):
        live.add_column(col, overflow="fold")
    for check in report.liveness:
        verdict = verify.liveness_json(check)["result"]
        style = "green" if verdict == "proved" else "bold red"
        live.add_row(escape(check.name), f"[{style}]{verdict}[/{style}]", ", ".join(check.rules))
    console.print(live)
    for check in report.checks:
        if not check.failed:
            continue
        console.rule(f"[bold red]{escape(check.name)}[/bold red]")
        console.print(escape(check.detail))
        cex = check.counterexample
        if cex is not None:
            console.print(escape(f"{cex.kind}: {cex.what}"))
            for line in iter_lasso(cex):
                console.print(escape(f"  {line}"))
        if check.conflict is not None:
            console.print(escape("  cannot all hold: " + ", ".join(check.conflict.members)))
    ex = report.explorer
    if ex is not None:
        console.print(f"explorer ({ex.name}): {ex.states} states, {ex.edges} edges, "
                      f"{ex.transitions} transitions in {ex.seconds:.2f} s; edge tour "
                      f"{ex.tour_length} steps ({ex.tour_paths} paths) covering "
                      f"{ex.edges_covered} of {ex.edges} edges")
    pinned = report.pinned
    if pinned is not None:
        if pinned.changed:
            console.print(escape(f"pinned counts ({verify.PINNED_FILE.name}) changed, which "
                                 "fails nothing: " + "; ".join(pinned.changed)))
        else:
            figures = sum(len(v) for v in pinned.found.values())
            console.print(f"pinned counts ({verify.PINNED_FILE.name}): all {figures} unchanged")
    counts = ", ".join(f"{n} {k}" for k, n in summarize(report.checks).items())
    verdict = "OK" if report.ok else f"FAILED: {', '.join(report.failed)}"
    cached = (f", {report.from_cache} of them taken from the cache (--no-cache checks all now)"
              if report.from_cache else "")
    console.print(f"{len(report.checks)} checks ({counts}) in {report.seconds:.1f} s{cached}: "
                  f"{verdict}")
    return EXIT_OK if report.ok else EXIT_NONCONFORMANT


def cmd_model_graph(args: argparse.Namespace) -> int:
    """Draw a family's per-machine state graphs as DOT, SVG (through Graphviz) or Mermaid."""
    from callgate.model import explorer  # networkx loads only for this command
    graphs = [explorer.build_graph(m) for m in FAMILIES[args.family]]
    if args.format == "mermaid":
        text = explorer.to_mermaid(graphs, full=args.full)
    else:
        text = explorer.to_dot(graphs, title=f"callgate {args.family}", full=args.full)
        if args.format == "svg":
            try:
                text = explorer.render_svg(text)
            except explorer.ToolMissing as exc:
                print(f"callgate model graph: {exc}", file=sys.stderr)
                return EXIT_USAGE
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _mutant_progress(result: object, done: int, total: int) -> None:
    from callgate.model.mutants import MutantResult

    assert isinstance(result, MutantResult)
    what = {"killed": f"killed by {result.killed_by} ({result.finding})",
            "equivalent": "equivalent (listed)", "survived": "SURVIVED",
            "crashed": f"CRASHED in {result.killed_by}: {result.detail}"}[result.status]
    print(f"  [{done}/{total}] {result.name}: {what}, {result.seconds:.1f} s", file=sys.stderr,
          flush=True)


def cmd_model_mutants(args: argparse.Namespace) -> int:
    """Seeded errors in the tables, each run through its machine's semantic checks; exit 1 if
    one survives (and is not listed as equivalent) or a check crashes on one."""
    from callgate.model import mutants  # z3 and networkx load only for this command

    console = make_console()
    catalogue = mutants.catalogue()
    if args.only:
        unknown = [n for n in args.only if n not in catalogue]
        if unknown:
            print(f"callgate model mutants: unknown mutant(s) {', '.join(unknown)}; "
                  "`callgate model mutants --list` lists them", file=sys.stderr)
            return EXIT_USAGE
    if args.workers < 1:
        print("callgate model mutants: --workers must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.list:
        chosen = [catalogue[n] for n in (args.only or catalogue)]
        if args.json:
            json.dump([{"name": m.name, "machine": m.machine, "operator": m.operator,
                        "description": m.description,
                        "equivalent": mutants.EQUIVALENT.get(m.name)} for m in chosen],
                      sys.stdout, indent=1)
            sys.stdout.write("\n")
            return EXIT_OK
        table = Table(title=f"{len(chosen)} model mutants")
        for col in ("name", "what it changes"):
            table.add_column(col, overflow="fold")
        for m in chosen:
            table.add_row(escape(m.name), escape(m.description))
        console.print(table)
        return EXIT_OK
    command = "callgate " + " ".join(shlex.quote(a) for a in getattr(args, "argv", []))
    print(f"callgate model mutants: {len(args.only or catalogue)} mutants, {args.workers} "
          "worker(s)", file=sys.stderr)
    report = mutants.run(args.only or None, args.workers, args.all_checks, _mutant_progress,
                         command)
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK if report.ok else EXIT_NONCONFORMANT
    table = Table(title="callgate model mutants")
    for col in ("mutant", "result", "check", "detail"):
        table.add_column(col, overflow="fold")
    for r in report.results:
        style = {"killed": "green", "equivalent": "yellow"}.get(r.status, "bold red")
        detail = r.reason if r.status == "equivalent" else r.detail
        table.add_row(escape(r.name), f"[{style}]{r.status}[/{style}]",
                      escape(f"{r.killed_by} ({r.finding})" if r.finding else r.killed_by),
                      escape(detail))
    console.print(table)
    data = report.to_json()
    console.print(f"{data['total']} mutants: {data['killed']} killed, "
                  f"{len(report.of('equivalent'))} equivalent, "
                  f"{len(report.of('survived'))} survived, {len(report.of('crashed'))} crashed, "
                  f"in {report.seconds:.1f} s"
                  + ("" if report.ok else ": FAILED"))
    return EXIT_OK if report.ok else EXIT_NONCONFORMANT


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `model` and its subcommands to the top-level parser."""
    model = sub.add_parser("model", help="inspect and check the formal model")
    msub = model.add_subparsers(dest="model_command", required=True, metavar="SUBCOMMAND")
    rules = msub.add_parser("rules", help="every rule with its level, scope and citing rows")
    rules.add_argument("--json", action="store_true", help="print a JSON array")
    rules.set_defaults(func=cmd_model_rules)
    show = msub.add_parser("show", help="print a family's transition table")
    show.add_argument("family", choices=sorted(FAMILIES), help="which family")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.set_defaults(func=cmd_model_show)
    ops = msub.add_parser(
        "ops", help="the operations a request may name, per machine: parameters, domains, "
                    "concrete values, outputs, codes, features")
    ops.add_argument("--json", action="store_true",
                     help="print JSON (schema: `callgate schema ops`)")
    ops.add_argument("--machine", metavar="NAME", help="only this machine (e.g. rpc_call)")
    ops.set_defaults(func=cmd_model_ops)
    pins = msub.add_parser("pins", help="the variation points an adapter may pin, their choices "
                                        "and the discrepancy each stands for")
    pins.add_argument("--json", action="store_true",
                      help="print JSON (schema: `callgate schema pins`)")
    pins.set_defaults(func=cmd_model_pins)
    check = msub.add_parser(
        "check", help="prove the model: invariants, bounded model checking, table checks, rule "
                      "consistency, agreement, state graph and tours, liveness under fairness")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--depth", type=int, default=6, metavar="K",
                       help="bounded model checking depth (default 6)")
    check.add_argument("--no-cache", action="store_true",
                       help="check everything now: take no result or state graph from the cache "
                            "(as CALLGATE_CACHE=off does)")
    check.add_argument("--engine", choices=("python", "spin"),
                       help="only explore one machine or composition with this engine (states, "
                            "deadlocks, state and cross invariants; spin needs Debian's `spin` "
                            "package and a C compiler)")
    check.add_argument("--composition", metavar="NAME",
                       help="with --engine: a machine, a composition (two_call_objects, the "
                            "default; call_with_event; calls_one_server; ...) or MACHINE*N")
    check.set_defaults(func=cmd_model_check)
    export = msub.add_parser("export", help="export the model to another checker's language")
    export.add_argument("--promela", action="store_true", required=True,
                        help="Promela for spin (the only format)")
    export.add_argument("--composition", metavar="NAME", default="two_call_objects",
                        help="a machine, a composition or MACHINE*N (default two_call_objects)")
    export.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    export.set_defaults(func=cmd_model_export)
    mutants = msub.add_parser(
        "mutants", help="seed errors in the tables and show which semantic check catches each")
    mutants.add_argument("--json", action="store_true", help="print the report as JSON")
    mutants.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    mutants.add_argument("--list", action="store_true", help="list the mutants and exit")
    mutants.add_argument("--workers", type=int, default=2,
                         help="mutants checked at a time, each in its own process (default 2)")
    mutants.add_argument("--all-checks", action="store_true",
                         help="run every check on every mutant, not only up to the first that "
                              "kills it (slower; shows that no check crashes)")
    mutants.set_defaults(func=cmd_model_mutants)
    graph = msub.add_parser("graph", help="draw a family's reachable state graphs")
    graph.add_argument("family", choices=sorted(FAMILIES), help="which family")
    graph.add_argument("--format", choices=("dot", "svg", "mermaid"), default="dot",
                       help="Graphviz DOT, SVG (needs Graphviz `dot`) or Mermaid for Markdown")
    graph.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    graph.add_argument("--full", action="store_true",
                       help="draw every state even of large graphs (default: graphs of more than "
                            "100 states are drawn projected on their main fields)")
    graph.set_defaults(func=cmd_model_graph)
