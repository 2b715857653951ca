"""How much of the model an implementation with known deviations can reach, and how much a run
covered of it: a thin wrapper around `callgate.conformance.report.reach`, which every report of
a run with an expectations file already includes (report.json `coverage.with_deviations`, the
headline of report.md and the HTML). This prints the same figures from a results stream, with
another expectations file or more rules kept open if wanted.

Usage: python tools/deviation_reach.py RESULTS.jsonl [--expectations FILE] [--keep-open RULE]
       [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from callgate.conformance.expectations import Expectations, from_record, load
from callgate.conformance.report.reach import with_deviations
from callgate.conformance.results import read_stream


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a run's results.jsonl")
    parser.add_argument("--expectations", type=Path,
                        help="an expectations file (default: the entries the run recorded)")
    parser.add_argument("--keep-open", action="append", default=[], metavar="RULE",
                        help="a rule whose failures cut nothing, beside the entries with "
                             "dead_end = false; repeatable")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    options = parser.parse_args(argv)
    record = read_stream(options.results)
    recorded = record.start.get("expectations")
    expect: Expectations | None
    if options.expectations is not None:
        expect = load(options.expectations)
    else:
        expect = from_record(recorded) if isinstance(recorded, dict) else None
    data = with_deviations(record, expect, options.keep_open)
    if options.json:
        print(json.dumps(data, indent=1))
        return 0
    print(f"{'machine':14} {'features':>9} {'with dev.':>9} {'covered':>8}  "
          f"{'of features':>11} {'of with dev.':>12}")
    for name, m in [*data["by_machine"].items(), ("all", data)]:
        print(f"{name:14} {m['features']:9} {m['reachable']:9} {m['covered']:8}  "
              f"{_percent(m['covered'] + m['covered_outside'], m['features']):>11} "
              f"{_percent(m['covered'], m['reachable']):>12}")
    if data["covered_outside"]:
        print(f"{data['covered_outside']} covered transitions lie outside what the deviations "
              f"leave reachable: the expectations do not describe the implementation",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
