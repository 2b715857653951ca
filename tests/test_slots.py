"""Slots come from the machines' own facts, and one action is sent and recorded one way for every
kind of case."""

from __future__ import annotations

import pytest

from callgate.conformance.cases.parallel import generation_slots
from callgate.conformance.cases.slots import default_slot, machine_feature, machine_of
from callgate.conformance.cases.stateful import default_slots
from callgate.conformance.judge.execution import Executor
from callgate.conformance.judge.perform import missing_features, perform, request_for
from callgate.conformance.protocol.adapter import (
    FEATURES,
    AdapterFault,
    Observation,
    Request,
    SlotSpec,
)
from callgate.model.families import MACHINES
from callgate.model.transitions import Action

COM = {"factory": True, "cancellable": True}


def test_a_slot_name_holds_the_machine_whose_prefix_it_starts_with() -> None:
    assert [machine_of(n).name for n in ("c0", "c1", "e0", "k0", "r0")] == [
        "com_call", "com_call", "event", "container", "rpc_call"]
    with pytest.raises(ValueError, match="slot prefix"):
        machine_of("s0")


def test_a_default_slot_has_its_machine_s_default_configuration() -> None:
    assert default_slot("c0") == SlotSpec("c0", "com_call", COM)
    assert default_slot("r0") == SlotSpec("r0", "rpc_call", {})


def test_each_kind_of_object_is_enabled_by_the_feature_adapters_declare_for_it() -> None:
    assert {m.name: machine_feature(m) for m in MACHINES.values()} == {
        "com_call": "com.call", "event": "sync.event", "container": "sync.container",
        "rpc_call": "rpc.handle", "cowait": "com.cowait", "thread_cancel": "com.thread_cancel",
        "rpc_order": "rpc.order", "rpc_pipe": "rpc.pipe", "rpc_notif": "rpc.notif"}


def test_stateful_and_generated_slots_keep_their_order_and_follow_the_features() -> None:
    assert default_slots(FEATURES) == [
        SlotSpec("c0", "com_call", COM), SlotSpec("c1", "com_call", COM),
        SlotSpec("e0", "event", {}), SlotSpec("k0", "container", {}),
        SlotSpec("r0", "rpc_call", {})]
    assert [[s.name for s in slots] for slots in generation_slots(FEATURES)] == [
        ["c0"], ["e0"], ["r0"], ["k0"], ["c0", "e0"]]
    # An adapter without events has no event slot, and no slot set that pairs one.
    without = FEATURES - {"sync.event"}
    assert [s.name for s in default_slots(without)] == ["c0", "c1", "k0", "r0"]
    assert [[s.name for s in slots] for slots in generation_slots(without)] == [
        ["c0"], ["r0"], ["k0"]]


def test_missing_features_count_slot_configurations_and_argument_values() -> None:
    slots = [SlotSpec("c0", "com_call", {"factory": False, "cancellable": True}),
             SlotSpec("e0", "event", {})]
    actions = [Action("e0", "CoCreateInstance", (("clsid", "StdEvent"),))]
    assert missing_features(slots, actions, {"com.call", "sync.event"}) == {
        "com.object_without_factory", "sync.std_event"}
    assert missing_features(slots, actions, FEATURES) == set()


class _Answers:
    def __init__(self, answer: object) -> None:
        self.answer = answer

    def perform(self, request: Request) -> Observation:
        return self.answer  # type: ignore[return-value]

    def close(self) -> None:
        pass


def test_an_answer_that_is_not_an_observation_is_an_adapter_fault_with_evidence() -> None:
    request = request_for(Action("e0", "Signal", ()), 50)
    assert perform(_Answers(Observation(0)), request) == Observation(0)
    executor = Executor(1.0)
    try:
        with pytest.raises(AdapterFault, match="not an Observation") as raised:
            perform(_Answers("garbage"), request, executor.call)
    finally:
        executor.close()
    assert "garbage" in raised.value.evidence
