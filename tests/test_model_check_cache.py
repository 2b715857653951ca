"""The cache of `callgate model check`'s definitive results (model/check_cache.py), and the
direct Z3 conjunctions of model/symbolic.py: both must leave every result as it was."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest
import z3

from callgate.conformance.cli.main import main
from callgate.model import check_cache, symbolic, verify
from callgate.model.families import MACHINES
from callgate.model.proofs import CheckResult, Result
from callgate.model.transitions import Machine


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CALLGATE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CALLGATE_CACHE", "on")
    return tmp_path


def _gap(machine: Machine) -> Machine:
    """The machine without its first row: a gap, which its obligations find."""
    return dataclasses.replace(machine, rows=machine.rows[1:])


def _event_obligations(tables: Mapping[str, Machine], registry: bool,
                       calls: list[str]) -> list[CheckResult]:
    jobs = verify._Jobs(tables, pooled=False, cache=True, registry=registry)

    def counted(t: Mapping[str, Machine] | None, name: str) -> list[CheckResult]:
        calls.append(name)
        return verify._obligation_checks(t, name)
    counted.__qualname__ = "counted_obligation_checks"
    try:
        return jobs.submit(counted, "event")()
    finally:
        jobs.close()


def test_a_definitive_job_is_kept_and_taken_marked_as_from_the_cache(cache_dir: Path) -> None:
    calls: list[str] = []
    first = _event_obligations(MACHINES, True, calls)
    assert calls == ["event"] and first and not any(c.cached for c in first)
    assert all(c.result is Result.PROVED for c in first)
    again = _event_obligations(MACHINES, True, calls)
    assert calls == ["event"]  # not run again
    assert [c.cached for c in again] == [True] * len(first)
    assert [(c.name, c.result, c.detail) for c in again] == [
        (c.name, c.result, c.detail) for c in first]
    assert {c.to_json()["checked"] for c in again} == {"cache"}
    assert {c.to_json()["checked"] for c in first} == {"now"}


def test_a_changed_table_runs_the_checks_again_and_they_fail(cache_dir: Path) -> None:
    calls: list[str] = []
    assert all(c.result is Result.PROVED for c in _event_obligations(MACHINES, True, calls))
    broken = {**MACHINES, "event": _gap(MACHINES["event"])}
    found = _event_obligations(broken, False, calls)
    assert calls == ["event", "event"]  # another key: checked now
    assert not any(c.cached for c in found)
    assert any(c.result is Result.COUNTEREXAMPLE for c in found)
    # each table keeps its own entry
    assert all(c.cached for c in _event_obligations(broken, False, calls))
    assert all(c.cached and c.result is Result.PROVED
               for c in _event_obligations(MACHINES, True, calls))
    assert len(calls) == 2


def test_an_edited_table_file_changes_the_key(tmp_path: Path) -> None:
    source = Path(check_cache.__file__).resolve().parent
    copy = tmp_path / "model"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = check_cache.model_digest(copy)
    table = copy / "tables" / "sync_object.py"
    table.write_text(table.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    check_cache._model_digest.cache_clear()
    assert check_cache.model_digest(copy) != before
    rules = copy / "rules.toml"
    edited = check_cache.model_digest(copy)
    rules.write_text(rules.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    check_cache._model_digest.cache_clear()
    assert check_cache.model_digest(copy) != edited


def test_unknown_and_error_results_are_never_kept(cache_dir: Path) -> None:
    proved = CheckResult("a", "bmc", Result.PROVED, 1.0)
    for result in (Result.UNKNOWN, Result.ERROR):
        value = [proved, CheckResult("b", "bmc", result, 30.0, "timeout")]
        assert not check_cache.store(f"k-{result.value}", value)
        assert check_cache.load(f"k-{result.value}") == (False, None)
    assert not check_cache.store("empty", [])
    assert check_cache.store("fine", [proved])
    found, stored = check_cache.load("fine")
    assert found and stored == [proved]
    assert isinstance(stored, list) and stored[0].cached


def test_a_stored_entry_under_another_key_or_corrupt_is_ignored(cache_dir: Path) -> None:
    proved = [CheckResult("a", "bmc", Result.PROVED, 1.0)]
    assert check_cache.store("one", proved)
    (check_cache.folder() / "one.pickle").rename(check_cache.folder() / "two.pickle")
    assert check_cache.load("two") == (False, None)
    (check_cache.folder() / "three.pickle").write_bytes(b"not a pickle")
    assert check_cache.load("three") == (False, None)


def test_the_key_names_the_job_its_arguments_and_the_versions() -> None:
    base = check_cache.key("job", ("rpc_call", 0), None)
    assert base == check_cache.key("job", ("rpc_call", 0), None)
    assert base != check_cache.key("job", ("rpc_call", 1), None)
    assert base != check_cache.key("other", ("rpc_call", 0), None)
    assert check_cache.key("bmc", (6,), None) != check_cache.key("bmc", (5,), None)
    assert "z3" in check_cache.versions() and "networkx" in check_cache.versions()


def test_callgate_cache_off_turns_it_off(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLGATE_CACHE", "off")
    assert not check_cache.enabled()


def test_no_cache_checks_everything_now(monkeypatch: pytest.MonkeyPatch, cache_dir: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[dict[str, object]] = []
    proved = CheckResult("a", "table", Result.PROVED, 0.1)
    report = verify.Report((proved, dataclasses.replace(proved, name="b", cached=True)), None,
                           (), 0.5)

    def run(**kwargs: object) -> verify.Report:
        seen.append({**kwargs, "env": check_cache.enabled()})
        return report
    monkeypatch.setattr(verify, "run", run)
    assert main(["model", "check", "--json"]) == 0
    assert '"from_cache": 1' in capsys.readouterr().out
    assert main(["model", "check", "--no-cache"]) == 0
    assert "1 of them taken from the cache" in capsys.readouterr().out
    assert [(s["cache"], s["env"]) for s in seen] == [(True, True), (False, False)]


def test_direct_conjunctions_are_z3s_own_terms(monkeypatch: pytest.MonkeyPatch) -> None:
    p, q, r = z3.Bools("p q r")
    x = z3.Int("x")
    for fast, slow in ((symbolic.And, z3.And), (symbolic.Or, z3.Or)):
        assert fast(p, q, r).eq(slow(p, q, r))
        assert fast([p, x > 1]).eq(slow([p, x > 1]))
        assert fast(p).eq(slow(p))
        assert fast(p, True).eq(slow(p, True))  # a Python bool: Z3's own path
    assert not symbolic.And(p, q).eq(z3.Or(p, q))
    machine = MACHINES["event"]
    monkeypatch.setattr(symbolic, "_TEMPLATES", {})
    built = symbolic.SymStep(machine, "tst").relation
    monkeypatch.setattr(symbolic, "_TEMPLATES", {})
    monkeypatch.setattr(symbolic, "And", z3.And)
    monkeypatch.setattr(symbolic, "Or", z3.Or)
    assert built.eq(symbolic.SymStep(machine, "tst").relation)
