"""The reference implementation served over the JSON-lines protocol:

    callgate run --adapter-cmd "python -m callgate.conformance.implementations.reference.serve" --out DIR

gives the same verdicts as `callgate run --adapter reference` in process (DESIGN.md principle 8);
the difference is the transport. `--jitter`, `--seed` and `--fault` are ReferenceAdapter's
options: timing jitter for race testing, its seed, and seeded faults (mutants) by name,
the catalogue's (`host.FAULTS`) or the blind round's (`blind_faults.BLIND_FAULTS`).
"""

from __future__ import annotations

import argparse
import sys

from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.implementations.reference.blind_faults import BLIND_FAULTS
from callgate.conformance.implementations.reference.host import FAULTS
from callgate.conformance.protocol.jsonl_server import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m callgate.conformance.implementations.reference.serve",
        description="Serve callgate's reference implementation over the JSON-lines adapter "
                    "protocol (docs/adapter-protocol.md) on stdin and stdout.")
    parser.add_argument("--jitter", type=float, default=0.0,
                        help="longest random pause at interleaving points, in seconds (default 0)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the jitter")
    parser.add_argument("--fault", action="append", default=[],
                        choices=sorted({*FAULTS, *BLIND_FAULTS}), metavar="NAME",
                        help=f"a seeded fault to build in (repeatable): {', '.join(sorted(FAULTS))}; "
                             f"or a fault of the blind round (blind_faults.py): "
                             f"{', '.join(sorted(BLIND_FAULTS))}")
    args = parser.parse_args(argv)
    try:
        adapter = ReferenceAdapter(jitter=args.jitter, seed=args.seed, faults=args.fault)
    except ValueError as exc:
        parser.error(str(exc))
    return run(adapter)


if __name__ == "__main__":
    sys.exit(main())
