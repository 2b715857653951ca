"""A result's JSON form is what `dataclasses.asdict` gives (results.py converts it faster)."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, namedtuple
from typing import Any

from callgate.conformance.results import CaseResult, Failure, StepRecord, Verdict, _plain

Pair = namedtuple("Pair", "a b")


def _step(n: int) -> StepRecord:
    return StepRecord("s0", "Wait", {"timeout": "finite"}, -2147417835 + n, "RPC_S_CALLPENDING",
                      {"out": [1, 2]}, ["S_OK -> signalled"], n % 2 == 0, ["R-1", "R-2"],
                      "kind=STD signaled=True", 0.25, "t1", 1.0, 2.0, {"timeout": 50})


def _library(result: CaseResult) -> dict[str, Any]:
    data = dataclasses.asdict(result)
    data["verdict"] = result.verdict.value
    data["other_failures"] = [dict(dataclasses.asdict(f), verdict=f.verdict.value)
                              for f in result.other_failures]
    return data


def test_to_json_is_asdict() -> None:
    trace = [_step(n) for n in range(5)]
    other = Failure(Verdict.ERROR, "hung", trace[:2], ["R-3"], {"steps": [{"op": "Wait"}]})
    result = CaseResult(
        "c-1", "directed", "a case", ["R-1"], Verdict.FAIL, 5, 1.5, "observed", "evidence",
        trace, ["m|a|op()", "m|b|op()"], {"s0": "event"}, ["R-1"], 7,
        {"slots": [{"name": "s0"}], "steps": [{"op": "Wait", "args": {"timeout": "zero"}}],
         "values": {"event": {"Wait": 50}}}, history=trace[1:3], other_failures=[other],
        orderings={"race": {"seen": [("a", "b")], "pair": Pair(1, [2])}},
        values={"event Wait timeout=finite": [1, 50]}, pairs=["x"], deviations=["R-9"])
    mine = result.to_json()
    assert mine == _library(result)
    assert type(mine["orderings"]["race"]["pair"]) is Pair
    assert type(mine["orderings"]["race"]["seen"][0]) is tuple
    # Copies, not the result's own lists and dicts.
    assert mine["covered"] is not result.covered and mine["replay"] is not result.replay
    assert mine["replay"]["steps"][0] is not result.replay["steps"][0]
    assert CaseResult.from_json(mine) == result
    assert other.to_json() == dict(dataclasses.asdict(other), verdict="error")
    assert trace[0].to_json() == dataclasses.asdict(trace[0])


def test_plain_keeps_what_asdict_keeps() -> None:
    odd = OrderedDict(b=[1, {"c": (2, 3)}])
    for value in (odd, Pair([1], {"x": 2}), {1: Verdict.PASS}, [None, 1.5, True], ()):
        assert _plain(value) == dataclasses.asdict(_Holder(value))["value"]
        assert type(_plain(value)) is type(value)


@dataclasses.dataclass
class _Holder:
    value: Any
