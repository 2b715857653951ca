"""`python -m callgate.conformance.ci`: the gate step of the CI recipes (action.yml, the GitLab
template in ci/gitlab/), configured by environment variables so that a CI system's own variables
can set it.

CALLGATE_ADAPTER_CMD or CALLGATE_ADAPTER (one of them), CALLGATE_EXPECTATIONS,
CALLGATE_MIN_COVERAGE, CALLGATE_BUDGET (default standard), CALLGATE_SEED (default 0), CALLGATE_JOBS
(`--jobs`: worker processes, default auto), CALLGATE_SHARD (`--shard I/N`: this job's slice of a
run spread over N jobs), CALLGATE_ARGS (more `callgate run` arguments, split as a shell would)
and CALLGATE_OUT (default callgate-report) make the `callgate run` command line. After the run:
report.md is appended to GITHUB_STEP_SUMMARY and `exit-code`, `verdict` and `report-dir` to
GITHUB_OUTPUT, when those are set (GitHub Actions sets them); the exit code is also written to
OUT/exit-code. The process exits with the gate's exit code, so the job fails exactly when the
gate does.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from callgate.conformance.cli.main import main as callgate_main


def command_line(env: Mapping[str, str]) -> list[str]:
    """The `callgate run` arguments the variables ask for."""
    argv = ["run", "--budget", env.get("CALLGATE_BUDGET") or "standard",
            "--seed", env.get("CALLGATE_SEED") or "0",
            "--out", env.get("CALLGATE_OUT") or "callgate-report"]
    for variable, option in (("CALLGATE_ADAPTER_CMD", "--adapter-cmd"),
                             ("CALLGATE_ADAPTER", "--adapter"),
                             ("CALLGATE_EXPECTATIONS", "--expectations"),
                             ("CALLGATE_MIN_COVERAGE", "--min-coverage"),
                             ("CALLGATE_JOBS", "--jobs"),
                             ("CALLGATE_SHARD", "--shard")):
        if env.get(variable):
            argv += [option, env[variable]]
    return argv + shlex.split(env.get("CALLGATE_ARGS") or "")


def publish(out: Path, code: int, env: Mapping[str, str]) -> str:
    """Write the exit code, the step summary and the step outputs; return the verdict line."""
    verdict = ""
    try:
        verdict = str(json.loads((out / "report.json").read_text(encoding="utf-8"))
                      ["verdict"]["headline"])
    except (OSError, ValueError, KeyError, TypeError):
        verdict = f"no report was written (exit code {code}): see the job log"
    out.mkdir(parents=True, exist_ok=True)
    (out / "exit-code").write_text(f"{code}\n", encoding="utf-8")
    if env.get("GITHUB_STEP_SUMMARY"):
        report = out / "report.md"
        text = report.read_text(encoding="utf-8") if report.is_file() else f"callgate: {verdict}\n"
        with open(env["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as summary:
            summary.write(text)
    if env.get("GITHUB_OUTPUT"):
        one_line = " ".join(verdict.split())
        with open(env["GITHUB_OUTPUT"], "a", encoding="utf-8") as outputs:
            outputs.write(f"exit-code={code}\nverdict={one_line}\nreport-dir={out}\n")
    return verdict


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    try:
        argv = command_line(env)
    except ValueError as exc:  # CALLGATE_ARGS with unbalanced quotes
        print(f"callgate ci: CALLGATE_ARGS cannot be split into words: {exc}", file=sys.stderr)
        return 2
    print("callgate " + shlex.join(argv), flush=True)
    code = callgate_main(argv)
    verdict = publish(Path(env.get("CALLGATE_OUT") or "callgate-report"), code, env)
    print(f"callgate exit code {code}: {verdict}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
