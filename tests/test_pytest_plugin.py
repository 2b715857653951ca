"""The pytest plugin: `pytest --callgate-adapter=...` runs the gate's cases as pytest items."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def _pytest(tmp_path: Path, adapter: str, *extra: str, budget: str = "standard"
            ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    how = [f"--callgate-adapter={adapter}"] if adapter else []
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *how, *extra,
         f"--callgate-budget={budget}", "--callgate-seed=2",
         f"--junitxml={tmp_path / 'junit.xml'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_a_correct_adapter_passes_every_item(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "tests.fakes:EventAdapter")
    assert done.returncode == 0, done.stdout[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
    assert 'name="rules"' in (tmp_path / "junit.xml").read_text()


def test_a_faulty_adapter_fails_with_the_step_table(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "tests.fakes:created_signaled")
    assert done.returncode == 1, done.stdout[-2000:]
    assert "allowed: RPC_S_CALLPENDING" in done.stdout
    assert "COM-SYNC-05" in done.stdout or "COM-WAIT-03" in done.stdout


def test_an_unknown_adapter_is_a_usage_error(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "no.such:thing")
    assert done.returncode == 4  # pytest's usage-error exit code
    assert "module:attribute" in done.stderr


def test_an_out_of_process_adapter_and_expectations(tmp_path: Path) -> None:
    """--callgate-adapter-cmd runs a JSON-lines adapter program (here the faulty fake, served);
    with an expectations file listing its deviation the failing items are xfail, exit 0."""
    served = shlex.join([sys.executable, "-m", "callgate.conformance.protocol.jsonl_server",
                         "tests.fakes:created_signaled"])
    done = _pytest(tmp_path, "", f"--callgate-adapter-cmd={served}")
    assert done.returncode == 1, done.stdout[-2000:]
    assert "allowed: RPC_S_CALLPENDING" in done.stdout
    known = tmp_path / "known.toml"
    known.write_text("".join(
        f'[[deviation]]\nrule = "{rule}"\nverdict = "fail"\nreason = "created signalled"\n'
        f'evidence = "Wait(0) on a new event returns S_OK"\n\n'
        for rule in ("COM-SYNC-05", "COM-WAIT-03")), encoding="utf-8")
    done = _pytest(tmp_path, "", f"--callgate-adapter-cmd={served}",
                   f"--callgate-expectations={known}")
    assert done.returncode == 0, done.stdout[-2000:]
    assert "xfailed" in done.stdout and "failed" not in done.stdout.replace("xfailed", "")


def test_collection_lists_the_items_with_their_node_ids(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "tests.fakes:EventAdapter", "--collect-only")
    assert done.returncode == 0, done.stdout[-2000:]
    listed = [line.strip() for line in done.stdout.splitlines() if "callgate::" in line]
    assert listed and all(line.startswith("callgate::") for line in listed)
    assert f"{len(listed)} tests collected" in done.stdout
    assert "no tests collected" not in done.stdout
    chosen = _pytest(tmp_path, "tests.fakes:EventAdapter", "-k", "stateful")
    assert chosen.returncode == 0, chosen.stdout[-2000:]
    assert " deselected" in chosen.stdout and " passed" in chosen.stdout


def _junit_cases(path: Path) -> dict[str, str]:
    """The case IDs and verdicts the plugin's items recorded in JUnit XML (`cases` property)."""
    import xml.etree.ElementTree as ET

    cases: dict[str, str] = {}
    for prop in ET.parse(path).iter("property"):
        if prop.get("name") == "cases":
            for pair in (prop.get("value") or "").split():
                case_id, _, verdict = pair.rpartition("=")
                cases[case_id] = verdict
    return cases


def test_the_items_are_the_gates_units_and_run_the_gates_cases(tmp_path: Path) -> None:
    """Items are the gate's units (`callgate run` makes the same list), and together they run
    exactly the cases `callgate run` runs for the same seed and budget, with the same IDs and
    verdicts, in one process and spread over two pytest-xdist workers."""
    from callgate.conformance.budgets import BUDGETS
    from callgate.conformance.cases import sequences
    from callgate.conformance.gate import RunOptions, run_gate
    from callgate.conformance.results import read_stream
    from callgate.conformance.units import plan_units
    from tests.fakes import EventAdapter

    options = RunOptions("tests.fakes:EventAdapter", BUDGETS["quick"], 2, tmp_path / "gate",
                         reports=False)
    run_gate(EventAdapter(), options)
    gate = {c.id: c.verdict.value
            for c in read_stream(tmp_path / "gate" / "results.jsonl").cases}
    caps = EventAdapter().capabilities()
    unit_ids = [u.id for u in plan_units(sequences.plan(caps), caps, options)]

    listed = _pytest(tmp_path, "tests.fakes:EventAdapter", "--collect-only", budget="quick")
    assert [line.strip().removeprefix("callgate::") for line in listed.stdout.splitlines()
            if line.strip().startswith("callgate::")] == unit_ids
    for workers in ("0", "2"):
        done = _pytest(tmp_path, "tests.fakes:EventAdapter", "-n", workers, budget="quick")
        assert done.returncode == 0, done.stdout[-2000:]
        assert _junit_cases(tmp_path / "junit.xml") == gate
