"""The gate benchmark's reading of a run: where the time went, by kind of case."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gate", ROOT / "benchmarks" / "bench_gate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_breakdown_sums_case_seconds_by_kind_and_keeps_the_rest_apart(tmp_path: Path) -> None:
    events = [{"event": "run_start"},
              {"event": "case", "case": {"id": "a", "kind": "directed", "seconds": 2.5}},
              {"event": "case", "case": {"id": "b", "kind": "multi", "seconds": 1.0}},
              {"event": "case", "case": {"id": "c", "kind": "directed", "seconds": 4.0}},
              {"event": "run_end", "seconds": 8.0}]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    where = _bench().breakdown(results, wall=11.0, slowest=2)
    assert where["run_seconds"] == 8.0 and where["outside_run_seconds"] == 3.0
    assert where["by_kind"] == {"directed": {"cases": 2, "seconds": 6.5},
                                "multi": {"cases": 1, "seconds": 1.0}}
    assert [c["id"] for c in where["slowest"]] == ["c", "a"]


def test_spread_quotes_the_median_not_the_best() -> None:
    assert _bench().spread([70.0, 50.0, 90.0]) == {"min": 50.0, "median": 70.0, "max": 90.0}
