"""A feature the adapter declares absent, with a reason: the rules only that feature's machine
reaches are `not_applicable` with the reason in the report, not silently `untested`; the
declaration survives the JSON-lines handshake."""

from __future__ import annotations

from callgate.conformance.protocol.adapter import Capabilities
from callgate.conformance.protocol.jsonl.handshake import declared, handshake_message
from callgate.conformance.report.reporting import absent_rules, rules_matrix

WHY = "the implementation's NDR pipe entry points are stubs"


def test_rules_only_an_absent_feature_reaches_are_not_applicable_with_the_reason() -> None:
    with_reason = {r["id"]: r for r in rules_matrix([], {"rpc.pipe": WHY})}
    without = {r["id"]: r for r in rules_matrix([])}
    for rule_id in ("RPC-PIPE-02", "RPC-PIPE-03", "RPC-PIPE-05"):
        assert without[rule_id]["verdict"] == "untested" and "reason" not in without[rule_id]
        assert with_reason[rule_id]["verdict"] == "not_applicable"
        assert WHY in with_reason[rule_id]["reason"]
    # Rules no row of the absent machine cites stay as they were.
    assert with_reason["COM-WAIT-02"] == without["COM-WAIT-02"]
    assert "COM-WAIT-02" not in absent_rules({"rpc.pipe": WHY})


def test_the_declaration_survives_the_handshake() -> None:
    caps = Capabilities("impl", "1", frozenset({"rpc.call"}), absent={"rpc.pipe": WHY})
    assert declared(handshake_message(caps)).absent == {"rpc.pipe": WHY}
    assert "absent" not in handshake_message(Capabilities("impl", "1", frozenset()))
