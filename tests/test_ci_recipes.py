"""The CI recipes as shipped: the GitHub Action (action.yml) and the GitLab template run locally,
step by step, with the environment their CI system would set."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from callgate.conformance import ci
from tests.conftest import ROOT

SERVED = [sys.executable, "-m", "callgate.conformance.protocol.jsonl_server"]
# The recipes call `python3`: the interpreter running the tests, as a CI job's setup-python gives.
PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
# The served fakes live in this repository's tests package.
PYTHONPATH = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
EXPRESSION = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


def _outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def run_action(tmp_path: Path, inputs: dict[str, str]) -> dict[str, Any]:
    """Run action.yml's steps as GitHub's runner would: `${{ inputs.* }}` and
    `${{ steps.*.outputs.* }}` substituted, GITHUB_ACTION_PATH, GITHUB_OUTPUT and
    GITHUB_STEP_SUMMARY set; a step after a failed one runs only if it says `if: always()`.
    A `uses:` step (the artifact upload) is recorded with its arguments, not run."""
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    values = {name: inputs.get(name, spec.get("default", ""))
              for name, spec in action["inputs"].items()}
    unknown = set(inputs) - set(values)
    assert not unknown, f"inputs the action does not declare: {unknown}"
    step_outputs: dict[str, dict[str, str]] = {}

    def substitute(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            expr = match.group(1)
            if expr.startswith("inputs."):
                return str(values[expr.removeprefix("inputs.")])
            parts = expr.split(".")
            if parts[0] == "steps" and parts[2] == "outputs":
                return step_outputs.get(parts[1], {}).get(parts[3], "")
            raise AssertionError(f"an expression the local runner does not know: {expr}")
        return EXPRESSION.sub(one, text)

    summary, failed = tmp_path / "summary.md", False
    uploads: list[tuple[str, dict[str, str]]] = []
    codes: list[int] = []
    for step in action["runs"]["steps"]:
        if failed and step.get("if") != "always()":
            continue
        if "uses" in step:
            uploads.append((step["uses"], {k: substitute(str(v))
                                           for k, v in step.get("with", {}).items()}))
            continue
        output = tmp_path / f"output-{len(codes)}"
        output.touch()
        env = {**os.environ, "PATH": PATH, "PYTHONPATH": PYTHONPATH,
               "GITHUB_ACTION_PATH": str(ROOT), "GITHUB_OUTPUT": str(output),
               "GITHUB_STEP_SUMMARY": str(summary),
               **{k: substitute(str(v)) for k, v in step.get("env", {}).items()}}
        assert step["shell"] == "bash"
        done = subprocess.run(["bash", "-e", "-c", substitute(step["run"])], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=900)
        codes.append(done.returncode)
        if "id" in step:
            step_outputs[step["id"]] = _outputs(output)
        failed = failed or done.returncode != 0
    return {"outputs": {name: substitute(spec["value"])
                        for name, spec in action["outputs"].items()},
            "summary": summary.read_text() if summary.exists() else "",
            "failed": failed, "uploads": uploads, "codes": codes}


@pytest.mark.slow
def test_the_action_gates_the_reference_over_adapter_cmd(tmp_path: Path) -> None:
    result = run_action(tmp_path, {
        "adapter-cmd": shlex.join([*SERVED, "reference"]), "install": "preinstalled",
        "budget": "quick", "args": "--no-parallel", "out": "gate"})
    assert result["codes"] == [0, 0] and not result["failed"]
    assert result["outputs"]["exit-code"] == "0"
    assert result["outputs"]["verdict"].startswith("conformant")
    assert result["outputs"]["report-dir"] == "gate"
    assert result["outputs"]["verdict"] in result["summary"]  # report.md in the step summary
    assert result["uploads"] == [("actions/upload-artifact@v4", {
        "name": "callgate-report", "path": "gate", "if-no-files-found": "warn"})]
    for name in ("report.html", "report.md", "junit.xml", "report.json", "exit-code"):
        assert (tmp_path / "gate" / name).is_file()


def test_the_action_fails_the_job_when_the_gate_fails_and_still_uploads(tmp_path: Path) -> None:
    result = run_action(tmp_path, {
        "adapter-cmd": shlex.join([*SERVED, "tests.fakes:created_signaled"]),
        "install": "preinstalled", "budget": "quick", "args": "--no-parallel"})
    assert result["failed"] and result["codes"] == [0, 1]
    assert result["outputs"]["exit-code"] == "1"
    assert result["outputs"]["verdict"].startswith("non-conformant")
    assert "COM-SYNC-05" in result["summary"] or "COM-WAIT-03" in result["summary"]
    assert [u[0] for u in result["uploads"]] == ["actions/upload-artifact@v4"]


def test_the_action_reports_a_usage_error_as_such(tmp_path: Path) -> None:
    result = run_action(tmp_path, {"install": "preinstalled"})  # no adapter at all
    assert result["codes"] == [0, 2]
    assert result["outputs"]["exit-code"] == "2"
    assert "no report was written" in result["summary"]


def test_the_gitlab_template_runs_the_gate_and_publishes_junit(tmp_path: Path) -> None:
    template = yaml.safe_load((ROOT / "ci" / "gitlab" / "callgate.gitlab-ci.yml").read_text())
    job = template[".callgate"]
    assert job["artifacts"]["when"] == "always"
    assert job["artifacts"]["reports"]["junit"] == "$CALLGATE_OUT/junit.xml"
    env = {**os.environ, **{k: str(v) for k, v in job["variables"].items()},
           "PATH": PATH, "PYTHONPATH": PYTHONPATH, "CALLGATE_INSTALL": "preinstalled",
           "CALLGATE_BUDGET": "quick",
           "CALLGATE_ARGS": "--no-parallel",
           "CALLGATE_ADAPTER_CMD": shlex.join([*SERVED, "tests.fakes:created_signaled"])}
    codes = [subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=900).returncode for line in job["script"]]
    assert codes == [0, 1]  # the job fails exactly when the gate does
    assert (tmp_path / "callgate-report" / "junit.xml").is_file()
    assert (tmp_path / "callgate-report" / "exit-code").read_text() == "1\n"


def test_the_command_line_from_the_variables() -> None:
    assert ci.command_line({"CALLGATE_ADAPTER_CMD": "./a --x 'y z'", "CALLGATE_ARGS":
                            "--no-parallel --step-timeout 20", "CALLGATE_MIN_COVERAGE": "80"}) == [
        "run", "--budget", "standard", "--seed", "0", "--out", "callgate-report",
        "--adapter-cmd", "./a --x 'y z'", "--min-coverage", "80", "--no-parallel",
        "--step-timeout", "20"]
    assert ci.main({"CALLGATE_ARGS": "'unbalanced"}) == 2


@pytest.mark.slow  # two shard runs and a merge, each in a fresh process
def test_the_gitlab_parallel_recipe_merges_the_shards_into_the_whole_runs_verdict(
        tmp_path: Path) -> None:
    template = yaml.safe_load((ROOT / "ci" / "gitlab" / "callgate.gitlab-ci.yml").read_text())
    job, merge_job = template[".callgate"], template[".callgate-merge"]
    base = {**os.environ, "PATH": PATH, "PYTHONPATH": PYTHONPATH,
            "CALLGATE_INSTALL": "preinstalled", "CALLGATE_BUDGET": "quick",
            "CALLGATE_ARGS": "--no-parallel --no-shrink",
            "CALLGATE_ADAPTER": "tests.fakes:created_signaled"}
    for index in (1, 2):  # what GitLab's `parallel: 2` sets in each job
        env = {**base, **{k: str(v) for k, v in job["variables"].items()},
               "CALLGATE_INSTALL": "preinstalled", "CALLGATE_BUDGET": "quick",
               "CI_NODE_INDEX": str(index), "CI_NODE_TOTAL": "2",
               "CALLGATE_SHARD": f"{index}/2", "CALLGATE_OUT": f"callgate-shard-{index}"}
        subprocess.run(["bash", "-c", job["script"][-1]], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=900, check=False)
        assert (tmp_path / f"callgate-shard-{index}" / "results.jsonl").is_file()
    env = {**base, **{k: str(v) for k, v in merge_job["variables"].items()},
           "CALLGATE_INSTALL": "preinstalled"}
    codes = [subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=900).returncode for line in merge_job["script"]]
    assert codes == [0, 1]  # the merged run fails as the whole run does
    assert (tmp_path / "callgate-report" / "junit.xml").is_file()
    assert ci.command_line({"CALLGATE_SHARD": "1/2", "CALLGATE_JOBS": "3"})[-4:] == [
        "--jobs", "3", "--shard", "1/2"]
