"""The `callgate` command line: model rules and model show."""

from __future__ import annotations

import json
import shutil
import subprocess

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
