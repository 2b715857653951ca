"""The protocol's feature vocabulary is literal data that agrees with the tables, and the protocol
imports without the model tables or any heavy library."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from callgate.conformance.protocol.features import (
    CONFIG_FEATURES,
    FEATURE_MEANINGS,
    FEATURES,
    PARAM_FEATURES,
    config_features_needed,
    features_needed,
)
from callgate.model.families import MACHINES
from callgate.model.transitions import Machine

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("callgate.model.tables", "hypothesis", "networkx", "jinja2", "z3", "jsonschema")


def _declared_by(machines: Iterable[Machine]) -> frozenset[str]:
    """The features the tables ask for: every operation's capability, and the argument-value and
    configuration features (the set callgate derived from the tables before it was literal)."""
    return frozenset({op.capability for m in machines for op in m.operations if op.capability}
                     | set(PARAM_FEATURES.values()) | set(CONFIG_FEATURES.values()))


def test_the_feature_vocabulary_is_exactly_what_the_tables_declare() -> None:
    assert _declared_by(MACHINES.values()) == FEATURES


def test_a_table_asking_for_a_feature_the_vocabulary_lacks_is_noticed() -> None:
    machine = MACHINES["com_call"]
    first = machine.operations[0]
    broken = dataclasses.replace(machine, operations=(
        dataclasses.replace(first, capability="com.telepathy"), *machine.operations[1:]))
    others = [m for m in MACHINES.values() if m.name != machine.name]
    assert _declared_by([broken, *others]) - FEATURES == {"com.telepathy"}


def test_every_feature_has_a_one_line_meaning() -> None:
    for name, meaning in FEATURE_MEANINGS.items():
        assert meaning.strip() and "\n" not in meaning, name


def test_argument_and_configuration_features_name_real_parameters_and_fields() -> None:
    for (machine, op, param, value), feature in PARAM_FEATURES.items():
        (operation,) = [o for o in MACHINES[machine].operations if o.name == op]
        (parameter,) = [p for p in operation.params if p.name == param]
        assert value in parameter.domain, feature
    for (machine, name, value), feature in CONFIG_FEATURES.items():
        (field,) = [f for f in MACHINES[machine].fields if f.name == name]
        assert value in field.domain, feature


def test_a_request_needs_its_operations_feature_and_its_arguments_features() -> None:
    assert features_needed("rpc_call", "AsyncCall", {"notify": "Apc", "binding": "good"}) \
        == {"rpc.call", "rpc.notify.Apc"}
    assert features_needed("event", "Signal", {}) == {"sync.event"}
    assert config_features_needed("com_call", {"factory": False, "cancellable": True}) \
        == {"com.object_without_factory"}


def _loaded_after(statements: Sequence[str]) -> list[str]:
    """Which HEAVY modules a fresh interpreter holds after running `statements`."""
    script = "; ".join([*statements, "import sys, json",
                        f"print(json.dumps([n for n in {list(HEAVY)!r} if n in sys.modules]))"])
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    loaded: list[str] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize("module", ["callgate.conformance.protocol.jsonl",
                                    "callgate.conformance.protocol.adapter",
                                    "callgate.conformance.protocol.features",
                                    "callgate.conformance.protocol.jsonl_server"])
def test_importing_the_protocol_loads_no_model_table_and_no_heavy_library(module: str) -> None:
    assert _loaded_after([f"import {module}"]) == []


def test_the_import_probe_sees_a_loaded_table() -> None:
    assert _loaded_after(["import callgate.model.families"]) == ["callgate.model.tables"]


def test_jsonschema_is_loaded_by_the_first_message_check() -> None:
    assert _loaded_after([
        "from callgate.conformance.protocol.jsonl import check_message",
        "check_message({'type': 'hello', 'protocol': 1}, ('hello',))"]) == ["jsonschema"]
