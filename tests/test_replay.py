"""`callgate replay`: in-process and out-of-process adapters, the case's own concrete values,
expectations, and a table of steps for a passing replay too."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from callgate.conformance.cli.main import main
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter, make_adapter


def out_byte_adapter() -> ReferenceAdapter:
    """The reference with a seeded fault: Finish_ delivers only the low byte of [out]."""
    return make_adapter(faults=("finish_out_byte",))


SERVED = [sys.executable, "-m", "callgate.conformance.protocol.jsonl_server"]


def _trace(tmp_path: Path, out_values: dict[str, int]) -> Path:
    """A call on a call object whose server signals [out] = abstract 1, then Finish_ reads it."""
    steps: list[dict[str, Any]] = [
        {"slot": "c0", "op": "CreateCall", "args": {"riid": "async", "aggregate": False}},
        {"slot": "c0", "op": "Begin_", "args": {}},
        {"slot": "c0", "op": "server_signal", "args": {"out": 1, "then_impersonate": False}},
        {"slot": "c0", "op": "Wait", "args": {"timeout": "finite"}},
        {"slot": "c0", "op": "Finish_", "args": {}},
    ]
    path = tmp_path / f"case-{'-'.join(map(str, out_values.values()))}.json"
    path.write_text(json.dumps({"id": "walk-out", "replay": {
        "slots": [{"name": "c0", "machine": "com_call",
                   "config": {"factory": True, "cancellable": True}}],
        "steps": steps, "values": {"out": out_values}}}), encoding="utf-8")
    return path


def test_replay_sends_the_cases_own_values_in_and_out_of_process(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    fits, too_big = _trace(tmp_path, {"1": 5, "2": 6}), _trace(tmp_path, {"1": 0x100, "2": 6})
    in_process = ["--adapter", "tests.test_replay:out_byte_adapter"]
    out_of_process = ["--adapter-cmd",
                      shlex.join([*SERVED, "tests.test_replay:out_byte_adapter"])]
    for how in (in_process, out_of_process):
        assert main(["replay", str(fits), *how]) == 0
        shown = capsys.readouterr().out
        assert "replay of walk-out: pass" in shown and "Finish_" in shown  # the steps are shown
        assert main(["replay", str(too_big), *how]) == 1  # 0x100 arrives as 0: the fault shows
        assert "replay of walk-out: fail" in capsys.readouterr().out


def test_replay_with_expectations_judges_a_listed_deviation_expected(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    known = tmp_path / "known.toml"
    known.write_text('[[deviation]]\nrule = "COM-FIN-01"\nverdict = "fail"\nreason = "the [out] '
                     'value passes through a byte"\nevidence = "0x100 arrives as 0"\n', encoding="utf-8")
    code = main(["replay", str(_trace(tmp_path, {"1": 0x100, "2": 6})),
                 "--adapter", "tests.test_replay:out_byte_adapter", "--expectations", str(known)])
    assert code == 0, capsys.readouterr().out
    assert "expected_fail" in capsys.readouterr().out


def test_replay_refuses_both_or_neither_adapter(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    trace = _trace(tmp_path, {"1": 5, "2": 6})
    assert main(["replay", str(trace)]) == 2
    assert main(["replay", str(trace), "--adapter", "reference", "--adapter-cmd", "x"]) == 2
    assert "exactly one of" in capsys.readouterr().err
