"""Measures the JSON-lines transport: round trips per second, and a gate run out of process vs in.

    .venv/bin/python benchmarks/bench_protocol.py [--requests N] [--budget quick] [--no-gate]

Round trips: one session with one event, then N `Signal` requests one after another, through
`callgate.conformance.protocol.jsonl.CommandAdapter` to
`python -m callgate.conformance.implementations.reference.serve` (the reference
implementation served over the protocol) and, when it is built, to the example C adapter; the
same loop in process gives the baseline. Gate: `callgate.conformance.gate.run_gate` with the reference
implementation in process and then out of process, same budget and seed; the ratio of the two
wall-clock times is the transport's overhead on a whole run (one run each, so expect noise of
several percent). Both runs must give the same verdicts; the script says if they do not.

If the reference implementation cannot be imported, the round trips use tests/fakes.py's
EventAdapter served by `python -m callgate.conformance.protocol.jsonl_server` and the script says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callgate.conformance.protocol.adapter import Adapter, Request, SlotSpec  # noqa: E402
from callgate.conformance.protocol.jsonl import CommandAdapter  # noqa: E402

C_ADAPTER = ROOT / "examples" / "c-adapter" / "callgate-c-adapter"


def reference() -> tuple[Callable[[], Adapter], list[str], str]:
    """The in-process adapter factory, the command serving it, and its name."""
    try:
        from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
    except ImportError as exc:
        from tests.fakes import EventAdapter

        print(f"note: the reference implementation is not importable ({exc}); measuring with "
              f"tests.fakes.EventAdapter instead")
        return (EventAdapter, [sys.executable, "-m", "callgate.conformance.protocol.jsonl_server",
                               "tests.fakes:EventAdapter"], "EventAdapter (test fake)")
    return (ReferenceAdapter, [sys.executable, "-m", "callgate.conformance.implementations.reference.serve"],
            "reference")


def round_trips(adapter: Adapter, requests: int) -> float:
    """Requests per second for `requests` sequential Signal requests on one session."""
    session = adapter.open_session([SlotSpec("e0", "event", {})])
    try:
        session.perform(Request("e0", "CoCreateInstance", {"clsid": "ManualResetEvent"}))
        for _ in range(min(200, requests // 10)):  # warm-up: threads started, caches filled
            session.perform(Request("e0", "Signal"))
        started = time.perf_counter()
        for _ in range(requests):
            session.perform(Request("e0", "Signal"))
        return requests / (time.perf_counter() - started)
    finally:
        session.close()


def measure_round_trips(factory: Callable[[], Adapter], command: list[str], requests: int
                        ) -> dict[str, float]:
    figures: dict[str, float] = {}
    local = factory()
    try:
        figures["in_process"] = round_trips(local, requests)
    finally:
        local.shutdown()
    served = CommandAdapter(command, cwd=str(ROOT))
    try:
        started = time.perf_counter()
        served.capabilities()
        figures["start_seconds"] = time.perf_counter() - started
        figures["over_protocol"] = round_trips(served, requests)
    finally:
        served.shutdown()
    if C_ADAPTER.is_file():
        native = CommandAdapter([str(C_ADAPTER)])
        try:
            figures["c_adapter"] = round_trips(native, requests)
        finally:
            native.shutdown()
    return figures


def gate_ratio(factory: Callable[[], Adapter], command: list[str], budget: str
               ) -> dict[str, Any]:
    from callgate.conformance.budgets import BUDGETS
    from callgate.conformance.gate import RunOptions, run_gate

    timings: dict[str, float] = {}
    verdicts: dict[str, dict[str, str]] = {}
    summaries: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, make in (("in_process", factory),
                           ("over_protocol", lambda: CommandAdapter(command, cwd=str(ROOT),
                                                                    request_timeout=7.0))):
            adapter = make()
            options = RunOptions(name, BUDGETS[budget], 0, Path(scratch) / name, 10.0, name)
            started = time.perf_counter()
            try:
                outcome = run_gate(adapter, options)
            finally:
                adapter.shutdown()
            timings[name] = time.perf_counter() - started
            report = json.loads(outcome.report.read_text(encoding="utf-8"))
            verdicts[name] = {c["id"]: c["verdict"] for c in report["cases"]}
            s = outcome.summary
            summaries[name] = (f"{s.cases} cases, {s.steps} steps: {s.passed} passed, "
                               f"{s.failed} failed, {s.errors} errors")
    return {"seconds": timings, "ratio": timings["over_protocol"] / timings["in_process"],
            "same_verdicts": verdicts["in_process"] == verdicts["over_protocol"],
            "summaries": summaries}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=5000, help="round trips to time")
    parser.add_argument("--budget", default="quick", help="gate budget (default quick)")
    parser.add_argument("--no-gate", action="store_true", help="skip the gate-run ratio")
    args = parser.parse_args(argv)
    factory, command, name = reference()
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {platform.platform()}, Python {platform.python_version()}")
    figures = measure_round_trips(factory, command, args.requests)
    print(f"round trips ({args.requests} sequential Signal requests, {name}):")
    print(f"  in process:              {figures['in_process']:10.0f} /s")
    print(f"  over the protocol:       {figures['over_protocol']:10.0f} /s "
          f"({1e6 / figures['over_protocol']:.0f} us each; server {shlex.join(command[1:])})")
    if "c_adapter" in figures:
        print(f"  to the C example adapter:{figures['c_adapter']:10.0f} /s "
              f"({1e6 / figures['c_adapter']:.0f} us each)")
    print(f"  adapter start and handshake: {figures['start_seconds']:.2f} s")
    if args.no_gate:
        return 0
    gate = gate_ratio(factory, command, args.budget)
    seconds = gate["seconds"]
    print(f"gate run, budget {args.budget}, seed 0, {name}:")
    for key in ("in_process", "over_protocol"):
        print(f"  {key.replace('_', ' '):15} {seconds[key]:8.1f} s  ({gate['summaries'][key]})")
    print(f"  ratio out of process / in process: {gate['ratio']:.2f} (one run each)")
    print(f"  same verdicts: {'yes' if gate['same_verdicts'] else 'NO'}")
    return 0 if gate["same_verdicts"] else 1


if __name__ == "__main__":
    sys.exit(main())
