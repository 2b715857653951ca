"""The pytest plugin: `pytest --callgate-adapter=...` runs the gate's cases as pytest items."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def _pytest(tmp_path: Path, adapter: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--callgate-adapter={adapter}", "--callgate-budget=standard", "--callgate-seed=2",
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
