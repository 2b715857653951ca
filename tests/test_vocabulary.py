"""`callgate model ops` and `callgate model pins`: the vocabulary as data, and its schemas."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from callgate.conformance.cli.main import main
from callgate.conformance.protocol import vocabulary
from callgate.conformance.protocol.features import FEATURE_MEANINGS, PARAM_FEATURES
from callgate.model import variations
from callgate.model.families import MACHINES


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_ops_json_validates_and_names_every_operation_of_every_machine(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "model", "ops", "--json")
    assert code == 0
    document = json.loads(out)
    assert vocabulary.document_problems("ops", document) == []
    by_name = {m["name"]: m for m in document["machines"]}
    assert set(by_name) == set(MACHINES)
    for name, machine in MACHINES.items():
        ops = {o["name"]: o for o in by_name[name]["operations"]}
        assert set(ops) == {op.name for op in machine.operations}
        for op in machine.operations:
            listed = ops[op.name]
            assert listed["feature"] == (op.capability or None)
            assert [p["name"] for p in listed["params"]] == [p.name for p in op.params]
            for p, lp in zip(op.params, listed["params"], strict=True):
                assert lp["domain"] == list(p.domain)
            if listed["feature"]:
                assert listed["feature"] in FEATURE_MEANINGS


def test_ops_lists_value_features_and_concrete_values() -> None:
    document = vocabulary.ops_document()
    rpc = next(m for m in document["machines"] if m["name"] == "rpc_call")
    call = next(o for o in rpc["operations"] if o["name"] == "AsyncCall")
    hthread = next(p for p in call["params"] if p["name"] == "hThread")
    assert hthread["value_features"] == {"NULL": PARAM_FEATURES[
        ("rpc_call", "AsyncCall", "hThread", "NULL")]}
    event = next(m for m in document["machines"] if m["name"] == "event")
    wait = next(o for o in event["operations"] if o["name"] == "Wait")
    (timeout,) = wait["params"]
    (concrete,) = timeout["concrete"]
    assert concrete["abstract"] == ["finite"] and concrete["sent_as"] == "wait_ms"
    assert 1 in concrete["values"] and len(concrete["values"]) > 3


def test_ops_schema_rejects_broken_documents() -> None:
    good = vocabulary.ops_document()
    broken: list[tuple[str, Any]] = []
    d = copy.deepcopy(good)
    del d["machines"][0]["operations"][0]["feature"]
    broken.append(("missing feature", d))
    d = copy.deepcopy(good)
    d["machines"][0]["operations"][0]["actor"] = "bystander"
    broken.append(("unknown actor", d))
    d = copy.deepcopy(good)
    d["machines"][0]["operations"][0]["params"].append({"name": "x", "domain": [1.5], "doc": "",
                                                         "value_features": {}, "concrete": []})
    broken.append(("a float in a domain", d))
    d = copy.deepcopy(good)
    d["machines"][0]["operations"][0]["rules"] = ["COM-NOPE"]
    broken.append(("a malformed rule id", d))
    for what, document in broken:
        assert vocabulary.document_problems("ops", document), what


def test_pins_json_validates_and_matches_the_variation_points(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "model", "pins", "--json")
    assert code == 0
    document = json.loads(out)
    assert vocabulary.document_problems("pins", document) == []
    assert [p["name"] for p in document["points"]] == [p.name for p in variations.POINTS]
    for listed in document["points"]:
        assert tuple(listed["choices"]) == variations.BY_NAME[listed["name"]].choices
    assert set(document["aliases"]) == set(variations.ALIASES)
    broken = copy.deepcopy(document)
    broken["points"][0]["choices"] = broken["points"][0]["choices"][:1]
    assert vocabulary.document_problems("pins", broken)


def test_schema_command_prints_the_shipped_schemas(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("ops", "pins"):
        code, out = _run(capsys, "schema", name)
        assert code == 0
        assert json.loads(out)["$id"] == f"urn:callgate:model:1:{name}"


def test_ops_text_and_unknown_machine(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "model", "ops", "--machine", "event")
    assert code == 0 and "SetEventHandle" in out and "rpc_call" not in out
    assert main(["model", "ops", "--machine", "nope"]) == 2
    assert "unknown machine" in capsys.readouterr().err
    code, out = _run(capsys, "model", "pins")
    assert code == 0 and "call_wait_timeout_code" in out
