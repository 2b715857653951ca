"""`callgate model ...`: inspect and check the formal model."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from rich.markup import escape
from rich.table import Table

from conformance.console import EXIT_OK, make_console
from model.families import FAMILIES
from model.render import machine_views, rules_listing


def cmd_model_rules(args: argparse.Namespace) -> int:
    listing = rules_listing()
    if args.json:
        json.dump(listing, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK
    table = Table(title="Rule catalogue (spec/DOMAIN.md section 2)", show_lines=False)
    for col in ("id", "level", "scope", "rows", "summary / note"):
        table.add_column(col, overflow="fold")
    for r in listing:
        text = escape(str(r["summary"]))
        if r["note"]:
            text += f"\n[dim]{escape(str(r['note']))}[/dim]"
        table.add_row(str(r["id"]), str(r["level"]), "in" if r["in_scope"] else "out",
                      str(r["rows"]), text)
    console = make_console()
    console.print(table)
    in_scope = [r for r in listing if r["in_scope"]]
    must = [r for r in in_scope if r["level"] == "MUST"]
    console.print(f"{len(listing)} rules, {len(in_scope)} in scope; "
                  f"{sum(1 for r in must if int(str(r['rows'])) > 0)} of {len(must)} in-scope "
                  f"MUST rules cited by model rows.")
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
