"""The `callgate` command line: model rules and model show."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from callgate.conformance.cli.main import main


def test_model_rules_json_lists_every_rule_with_its_rows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "rules", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert isinstance(listing, list) and len(listing) == 182
    for entry in listing:
        assert {"id", "level", "in_scope", "rows"} <= set(entry)
        assert isinstance(entry["in_scope"], bool) and isinstance(entry["rows"], int)
    in_scope = [e for e in listing if e["in_scope"]]
    assert len(in_scope) >= 80
    assert all(e["rows"] >= 1 for e in in_scope if e["level"] == "MUST")


def test_model_rules_table_ends_with_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "rules"]) == 0
    text = capsys.readouterr().out
    assert "COM-BEGIN-02" in text
    assert "in-scope MUST rules cited by model rows" in text


@pytest.mark.parametrize("family,must_see", [
    ("com", ["Begin_", "Finish_", "RPC_E_CALL_COMPLETE", "COM-BEGIN-02", "begin_pending_code"]),
    ("sync", ["WaitMultiple", "RPC_E_OUT_OF_RESOURCES", "COM-SYNC-03"]),
    ("rpc", ["RpcAsyncCompleteCall", "RPC_S_ASYNC_CALL_PENDING", "RPC-SRV-CANCEL-01"]),
])
def test_model_show_prints_a_readable_table(family: str, must_see: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "show", family]) == 0
    text = capsys.readouterr().out
    for needle in must_see:
        assert needle in text


def test_model_show_json_has_one_entry_per_row(capsys: pytest.CaptureFixture[str]) -> None:
    from callgate.model.tables.com_call import MACHINE
    assert main(["model", "show", "com", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["com_call"]) == len(MACHINE.rows)


def test_unknown_family_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "show", "dcom"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    exe = shutil.which("callgate")
    if exe is None:
        pytest.skip("callgate is not on PATH (run through `make test`, which installs it)")
    done = subprocess.run([exe, "model", "rules", "--json"], capture_output=True, text=True,
                          check=True)
    assert json.loads(done.stdout)[0]["id"] == "COM-MIDL-01"


def test_an_unknown_option_shows_the_subcommands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "ops", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert "usage: callgate model ops" in err and "unrecognized arguments: --bogus" in err
    assert main(["run", "--adapter", "reference", "--bogus", "x"]) == 2
    assert "usage: callgate run" in capsys.readouterr().err


def test_run_help_lists_the_exit_codes_and_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for line in ("exit codes:", "  0  conformant", "  1  non-conformant", "  2  usage error",
                 "  3  no verdict", "examples:", "callgate run --adapter-cmd"):
        assert line in out


def test_no_hypothesis_directory_in_the_callers_working_directory(tmp_path: Path) -> None:
    """The command line points Hypothesis's storage (its example database, its cache of
    constants) at the user's cache directory: what Hypothesis stores then lands there, not in
    `.hypothesis/` of the working directory (where it lands without it)."""
    program = (
        "import sys\n"
        "if sys.argv[1] == 'cli':\n"
        "    from callgate.conformance.cli.main import _hypothesis_home\n"
        "    _hypothesis_home()\n"
        "from hypothesis.configuration import storage_directory\n"
        "where = storage_directory('probe')\n"
        "where.create_if_missing()\n"
        "(where.path / 'stored').write_text('1')\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("HYPOTHESIS_STORAGE_DIRECTORY", None)
    for mode in ("plain", "cli"):
        cwd = tmp_path / mode
        cwd.mkdir()
        (cwd / "prog.py").write_text(program)
        subprocess.run([sys.executable, "prog.py", mode], cwd=cwd, env=env, check=True,
                       timeout=120)
    assert (tmp_path / "plain" / ".hypothesis").exists()  # the control: Hypothesis does write
    assert not (tmp_path / "cli" / ".hypothesis").exists()
    assert (tmp_path / "cache" / "callgate" / "hypothesis").exists()


def test_a_run_ends_by_naming_every_report_it_wrote(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--adapter", "tests.fakes:EventAdapter", "--budget", "quick",
                 "--no-parallel", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code in (0, 1), out
    lines = out.splitlines()
    start = lines.index("reports written:")
    named = [ln.strip() for ln in lines[start + 1:start + 6]]
    for name in ("report.json", "junit.xml", "report.md", "report.html", "results.jsonl"):
        assert str(tmp_path / name) in named
    assert out.rstrip().splitlines()[-1].startswith(("conformant", "non-conformant"))


@pytest.mark.parametrize(("line", "expected"), [
    ("callgate model p", {"pins"}),
    ("callgate run --adapter", {"--adapter", "--adapter-cmd"}),
])
def test_shell_completion_answers_from_the_parser(tmp_path: Path, line: str,
                                                  expected: set[str]) -> None:
    """What bash asks through `register-python-argcomplete callgate` (README, Shell
    completion): the completions come from the same parser the command uses."""
    answer = tmp_path / "completions"
    env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": " ", "COMP_LINE": line,
           "COMP_POINT": str(len(line)), "_ARGCOMPLETE_STDOUT_FILENAME": str(answer)}
    done = subprocess.run([sys.executable, "-m", "callgate"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert set(answer.read_text().split()) == expected
