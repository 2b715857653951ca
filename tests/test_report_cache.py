"""What the report keeps between runs (issue 20, the run's end): values derived from the model in
the model's cache (`cache.cached_value`), each machine's diagram projection and each drawn SVG;
the compiled templates; and the report schema checked here rather than on every run. A cached
value must be what computing it gives, and a bad or foreign entry must be computed again."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from jsonschema import Draft202012Validator

from callgate.conformance.report import diagrams, reporting
from callgate.model.explorer import cache


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CALLGATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CALLGATE_CACHE", raising=False)
    return tmp_path / "cache"


def _counter(value: Any) -> tuple[list[int], Callable[[], Any]]:
    calls: list[int] = []

    def build() -> Any:
        calls.append(1)
        return value

    return calls, build


def test_a_cached_value_is_built_once_and_keyed_by_what_it_depends_on(cache_home: Path) -> None:
    calls, build = _counter({"a": 1})
    assert cache.cached_value("t", ("x",), build) == {"a": 1}
    assert cache.cached_value("t", ("x",), build) == {"a": 1}
    assert len(calls) == 1  # the second from the disk
    assert cache.cached_value("t", ("y",), build) == {"a": 1}  # another part: another entry
    assert cache.cached_value("u", ("x",), build) == {"a": 1}  # another tag: another entry
    assert len(calls) == 3


def test_a_bad_or_foreign_cache_entry_is_built_again(cache_home: Path) -> None:
    calls, build = _counter("fresh")
    path = cache_home / f"{cache.value_key('t', ('x',))}.pickle"
    cache_home.mkdir(parents=True)
    path.write_bytes(b"not a pickle")
    assert cache.cached_value("t", ("x",), build, str) == "fresh"
    path.write_bytes(pickle.dumps(("another key", "stale")))  # an entry of another key
    assert cache.cached_value("t", ("x",), build, str) == "fresh"
    path.write_bytes(pickle.dumps((path.stem, 42)))  # the right key, the wrong kind of value
    assert cache.cached_value("t", ("x",), build, str) == "fresh"
    assert len(calls) == 3
    assert pickle.loads(path.read_bytes()) == (path.stem, "fresh")  # rewritten


def test_with_the_cache_off_a_value_is_built_every_time(cache_home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLGATE_CACHE", "off")
    calls, build = _counter(1)
    cache.cached_value("t", ("x",), build)
    cache.cached_value("t", ("x",), build)
    assert len(calls) == 2 and not cache_home.exists()


def test_a_cached_projection_is_the_computed_one(cache_home: Path) -> None:
    diagrams._projection.cache_clear()
    try:
        stored = diagrams._projection("event")
        assert any(p.name.startswith("projection-") for p in cache_home.iterdir())
        diagrams._projection.cache_clear()
        loaded = diagrams._projection("event")  # from the disk
        assert loaded is not stored and loaded == stored == diagrams._project("event")
        assert loaded.ordered == tuple(sorted(loaded.edges, key=diagrams._edge_order))
    finally:
        diagrams._projection.cache_clear()


def test_an_svg_is_drawn_again_for_other_dot_text(cache_home: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[str] = []
    def fitted(dot: str) -> str:
        drawn.append(dot)
        return f"<svg>{dot}"

    monkeypatch.setattr(diagrams, "fitted_svg", fitted)
    assert diagrams.cached_svg("digraph a {}") == "<svg>digraph a {}"
    assert diagrams.cached_svg("digraph a {}") == "<svg>digraph a {}"
    assert diagrams.cached_svg("digraph b {}") == "<svg>digraph b {}"
    assert drawn == ["digraph a {}", "digraph b {}"]
    monkeypatch.setattr(diagrams, "_dot_program", lambda: "another Graphviz")
    diagrams.cached_svg("digraph a {}")
    assert drawn[-1] == "digraph a {}" and len(drawn) == 3  # not reused from another `dot`


def test_templates_are_compiled_once_into_the_cache(cache_home: Path) -> None:
    reporting.template_environment.cache_clear()
    try:
        reporting.template_environment(True).get_template("report.html.j2")
        assert list((cache_home / "templates-html").iterdir())
    finally:
        reporting.template_environment.cache_clear()


def test_the_report_schema_is_a_valid_2020_12_schema() -> None:
    """The run no longer checks the schema itself (only documents against it): this does."""
    schema = reporting.report_schema()
    Draft202012Validator.check_schema(schema)
    with pytest.raises(jsonschema.SchemaError):
        Draft202012Validator.check_schema({**schema, "type": 5})


def test_a_machine_is_written_out_once_per_object(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from callgate.model.families import MACHINES

    machine = dataclasses.replace(MACHINES["event"])  # an object of this test's own
    written: list[object] = []
    real = cache.canonical

    def counted(value: object) -> str:
        if value is machine:
            written.append(value)
        return real(value)

    monkeypatch.setattr(cache, "canonical", counted)
    text = cache.canonical_machine(machine)
    assert cache.canonical_machine(machine) == text == real(machine)
    assert len(written) == 1  # the second from the memo
    other = dataclasses.replace(machine, rows=machine.rows[:-1])
    assert cache.canonical_machine(other) == real(other) != text  # another object: its own
