"""The cache of state graphs on disk (callgate.model.explorer.cache): it gives what build_graph
gives, its key changes with everything the graph depends on, a bad entry is built again, it
lives in the user's cache directory, and a gate run's verdicts do not depend on it."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from callgate.model import explorer
from callgate.model.explorer import cache
from callgate.model.families import MACHINES
from callgate.model.transitions import Machine


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CALLGATE_CACHE_DIR", raising=False)
    monkeypatch.delenv("CALLGATE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "callgate" / "graphs"


def _shape(graph: explorer.StateGraph) -> tuple[object, ...]:
    edges = sorted((repr(e.source), repr(e.target), e.key, e.allowed)
                   for e in graph.edges())
    return (graph.name, graph.initial, sorted(map(repr, graph.graph.nodes)), edges,
            sorted(map(repr, graph.transitions)), graph.slots)


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    built: list[str] = []
    real = explorer.build_graph

    def counted(target: Machine, **kwargs: object) -> explorer.StateGraph:
        built.append(target.name)
        return real(target, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cache, "build_graph", counted)
    return built


def test_a_cached_graph_is_the_built_graph(cache_home: Path, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    built = _counting(monkeypatch)
    machine = MACHINES["cowait"]
    pins = {"new_event_state": "nonsignaled"}
    fresh = explorer.build_graph(machine, pins=pins)
    first = explorer.cached_graph(machine, pins=pins)
    second = explorer.cached_graph(machine, pins=pins)
    assert built == ["cowait"]  # the second came from the disk
    assert _shape(first) == _shape(second) == _shape(fresh)
    assert second.slots[0][1] is machine  # bound to the caller's machine, not a copy
    assert [p.name for p in cache_home.iterdir()] == [f"{cache.key(machine, pins)}.pickle"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xdg"]  # nothing in the working dir


def test_the_key_follows_everything_the_graph_depends_on(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = MACHINES["com_call"]
    base = cache.key(machine)
    assert cache.key(machine) == base
    assert cache.key(dataclasses.replace(machine)) == base  # same content, another object
    assert cache.key(machine, {"new_event_state": "nonsignaled"}) != base
    assert cache.key(machine, None, lambda op, args: op != "Cancel") != base
    assert cache.key(machine, None, lambda op, args: True) == base
    assert cache.key(dataclasses.replace(machine, initial=machine.initial[:1])) != base
    assert cache.key(dataclasses.replace(machine, rows=machine.rows[:-1])) != base
    monkeypatch.setattr(cache, "_source_digest", lambda: "another version of the model")
    assert cache.key(machine) != base


def test_a_changed_machine_never_gets_the_old_graph(cache_home: Path) -> None:
    machine = MACHINES["com_call"]
    explorer.cached_graph(machine)
    fewer = dataclasses.replace(machine, initial=machine.initial[:1])
    assert _shape(explorer.cached_graph(fewer)) == _shape(explorer.build_graph(fewer))
    assert _shape(explorer.cached_graph(fewer)) != _shape(explorer.build_graph(machine))
    assert len(list(cache_home.iterdir())) == 2


def test_a_bad_entry_is_built_again(cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    machine = MACHINES["event"]
    explorer.cached_graph(machine)
    (entry,) = cache_home.iterdir()
    built = _counting(monkeypatch)
    for broken in (b"not a pickle", entry.read_bytes()[:50]):
        entry.write_bytes(broken)
        assert _shape(explorer.cached_graph(machine)) == _shape(explorer.build_graph(machine))
    # An entry stored under the wrong name (a renamed file) is not taken either.
    other = MACHINES["thread_cancel"]
    explorer.cached_graph(other)
    os.replace(cache_home / f"{cache.key(other)}.pickle", entry)
    assert _shape(explorer.cached_graph(machine)) == _shape(explorer.build_graph(machine))
    assert built == ["event", "event", "thread_cancel", "event"]


def test_off_means_built_and_nothing_written(cache_home: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.setenv("CALLGATE_CACHE", "off")
    built = _counting(monkeypatch)
    explorer.cached_graph(MACHINES["event"])
    explorer.cached_graph(MACHINES["event"])
    assert built == ["event", "event"]
    assert not cache_home.exists()


def test_where_the_cache_lives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CALLGATE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / "callgate" / "graphs"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_dir() == Path.home() / ".cache" / "callgate" / "graphs"
    monkeypatch.setenv("CALLGATE_CACHE_DIR", str(tmp_path / "mine"))
    assert cache.cache_dir() == tmp_path / "mine"


def _run(out: Path, adapter: object) -> tuple[list[tuple[str, str, int]], list[str]]:
    """Each case's id, verdict and steps, and the transitions covered, from results.jsonl."""
    from callgate.conformance.budgets import BUDGETS
    from callgate.conformance.gate import RunOptions, run_gate

    options = RunOptions("tests.fakes:EventAdapter", BUDGETS["quick"], 0, out, 5.0,
                         stateful=False, parallel=False, multi=False, reports=False)
    run_gate(adapter, options)  # type: ignore[arg-type]
    cases, covered = [], set()
    for line in (out / "results.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "case":
            case = event["case"]
            cases.append((case["id"], case["verdict"], case["steps"]))
            covered.update(case["covered"])
    return cases, sorted(covered)


@pytest.mark.parametrize("fault", ["", "std_event_keeps_signal"])
def test_a_run_gives_the_same_verdicts_with_the_cache_off_cold_and_warm(
        cache_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fault: str) -> None:
    from tests.fakes import EventAdapter

    monkeypatch.setenv("CALLGATE_CACHE", "off")
    off = _run(tmp_path / "off", EventAdapter(fault))
    assert not cache_home.exists()
    monkeypatch.delenv("CALLGATE_CACHE")
    cold = _run(tmp_path / "cold", EventAdapter(fault))
    assert any(cache_home.iterdir())
    built = _counting(monkeypatch)
    warm = _run(tmp_path / "warm", EventAdapter(fault))
    assert "event" not in built  # the plan's graph came from the cache
    assert off == cold == warm
    verdicts = {v for _, v, _ in off[0]}
    assert ("fail" in verdicts) == bool(fault)


def test_the_key_is_the_same_in_every_process() -> None:
    """Sets and strings hash differently in each process: a key that followed that would never
    be found again."""
    import subprocess
    import sys

    code = ("from callgate.model.explorer import cache; from callgate.model.families import "
            "MACHINES; print(cache.key(MACHINES['rpc_call'], {'b': '1', 'a': '2'}))")
    keys = {subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                           text=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
            for seed in ("1", "2")}
    assert len(keys) == 1
    assert keys == {cache.key(MACHINES["rpc_call"], {"a": "2", "b": "1"}) + "\n"}
