"""`callgate model mutants`: seeded table errors are caught by the semantic checks, a listed
equivalent mutant is reported as one, and the command's usage errors and JSON shape."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from collections.abc import Callable

import pytest

from callgate.conformance.cli.main import main
from callgate.model import mutants
from callgate.model.families import MACHINES
from callgate.model.transitions import Kind, Machine

# One mutant per operator, spread over the machines, each killed by a different kind of check:
# table checks, invariants, pinned codes, obligations (including the three added for survivors).
REDUCED = (
    "com_call.remove_row.row0",                        # totality
    "com_call.widen_guard.row0.factory.False",         # determinism
    "com_call.drop_outcome.row0.0",                    # well-formedness
    "com_call.forget_update.row34.1.cancel",           # invariant
    "com_call.wrong_code.row19.0.RPC_E_TIMEOUT",       # pinned codes (D-01)
    "com_call.add_outcome.row27.0",                    # obligation
    "com_call.pin_removed.row48.1",                    # obligation com.sta_wait_times_out
    "event.pin_changed.row6.0.event_wait_timeout_code",
    "event.pin_removed.row6.0",                        # obligation event.wait_times_out
    "container.drop_outcome.row7.1",                   # obligation container.wait_signalled
    "container.not_offered.row8",                      # claims situation
    "event.wrong_next.row3.0.signaled.True",
)


def test_the_catalogue_is_large_stable_and_covers_every_operator_and_machine() -> None:
    catalogue = mutants.catalogue()
    assert len(catalogue) >= 60
    assert list(catalogue) == list(mutants.catalogue())  # deterministic order and names
    assert {m.operator for m in catalogue.values()} == set(mutants.OPERATORS)
    assert {m.machine for m in catalogue.values()} == set(MACHINES)
    for name, m in catalogue.items():
        assert name.startswith(f"{m.machine}.{m.operator}.row{m.row}") and m.description
    audited = [m for m in catalogue.values() if "(audit: " in m.description]
    assert len(audited) == len(mutants.AUDIT)
    assert set(mutants.EQUIVALENT) <= set(catalogue) and set(REDUCED) <= set(catalogue)


def test_a_mutant_changes_one_row_and_leaves_the_registry_alone() -> None:
    before = MACHINES["rpc_call"].rows
    held = mutants.row_index(MACHINES["rpc_call"], mutants._ref(
        "server_complete", cancel=("abort", "soft"), phase=("PENDING",), server=("held",)))
    uncancelled = mutants.row_index(MACHINES["rpc_call"], mutants._ref(
        "server_complete", cancel=("no",), phase=("PENDING",), server=("held",)))
    gap = mutants.catalogue()[f"rpc_call.remove_row.row{uncancelled}"].build()
    assert len(gap.rows) == len(before) - 1 and MACHINES["rpc_call"].rows == before
    made = mutants.catalogue()[f"rpc_call.not_offered.row{held}"].build()
    changed = [i for i, (a, b) in enumerate(zip(before, made.rows, strict=True)) if a != b]
    assert changed == [held] and made.rows[held].kind is Kind.NOT_OFFERED


def test_the_reduced_set_is_killed_each_by_a_check_with_its_finding() -> None:
    report = mutants.run(list(REDUCED), workers=1)
    assert report.ok and not report.of("survived") and not report.of("crashed")
    by_name = {r.name: r for r in report.results}
    assert by_name["com_call.remove_row.row0"].killed_by == "totality[com_call]"
    assert by_name["com_call.widen_guard.row0.factory.False"].killed_by == "determinism[com_call]"
    assert by_name["com_call.drop_outcome.row0.0"].killed_by == "well_formed[com_call]"
    assert by_name["com_call.wrong_code.row19.0.RPC_E_TIMEOUT"].killed_by == \
        "consistency.pinned_codes"
    assert by_name["com_call.pin_removed.row48.1"].finding == "obligation[com.sta_wait_times_out]"
    assert by_name["event.pin_removed.row6.0"].finding == "obligation[event.wait_times_out]"
    assert by_name["container.drop_outcome.row7.1"].finding == \
        "obligation[container.wait_signalled]"
    for r in report.results:
        assert r.status == "killed" and r.killed_by and r.finding and r.detail, r.name
    # a gap leaves no graph: no pinned counts; a changed reachable graph shows in them
    assert by_name["com_call.remove_row.row0"].pinned_counts_changed is None


def test_an_unkilled_mutant_not_listed_as_equivalent_is_a_survivor(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # With only the totality check (which this mutant passes), nothing kills it: it is reported
    # as a survivor and the report fails. The verdict follows the checks, not the list.
    from callgate.model import proofs

    def totality_only(machine: Machine, machines: object, graph: object
                      ) -> list[tuple[str, Callable[[], list[object]]]]:
        return [("totality[event]", lambda: [proofs.check_totality(machine)])]
    monkeypatch.setattr(mutants, "checks_for", totality_only)
    result = mutants.run_mutant("event.wrong_next.row3.0.signaled.True")
    assert result.status == "survived" and not result.killed_by
    assert result.checks_run == ("totality[event]",)
    assert not mutants.Report((result,), 0.0).ok


@pytest.mark.slow
def test_a_listed_equivalent_mutant_is_reported_with_its_reason_after_every_check() -> None:
    name = next(iter(mutants.EQUIVALENT))  # the first listed: forgetting `seen` on server_complete
    result = mutants.run_mutant(name, all_checks=True)
    assert result.status == "equivalent" and result.reason == mutants.EQUIVALENT[name]
    assert result.checks_run[-1] == "obligations[rpc_call]" and result.pinned_counts_changed == ()


def test_a_check_that_raises_is_a_crash_not_a_kill(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(machine: object, machines: object, graph: object) -> list[tuple[str, object]]:
        def boom() -> list[object]:
            raise TypeError("a bug in a check")
        return [("totality[event]", boom)]
    monkeypatch.setattr(mutants, "checks_for", broken)
    result = mutants.run_mutant("event.remove_row.row7")
    assert result.status == "crashed" and "TypeError" in result.detail
    assert not mutants.Report((result,), 0.0).ok


def test_a_mutant_the_machine_refuses_is_killed_at_construction() -> None:
    m = mutants.catalogue()["event.remove_row.row7"]
    bad = dataclasses.replace(m, edit=lambda r: dataclasses.replace(r, op="NoSuchOp"))
    monkey = {m.name: bad}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mutants, "catalogue", lambda machines=MACHINES: monkey)
        result = mutants.run_mutant(m.name)
    assert result.status == "killed" and result.killed_by == "machine"


def _cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


def test_an_unknown_only_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = _cli(["model", "mutants", "--only", "com_call.no_such_mutant"])
    assert code == 2 and "com_call.no_such_mutant" in capsys.readouterr().err
    assert _cli(["model", "mutants", "--workers", "0"])[0] == 2
    with pytest.raises(ValueError, match="unknown model mutant"):
        mutants.run(["nope"])


def test_list_names_every_mutant() -> None:
    code, text = _cli(["model", "mutants", "--list", "--json"])
    listed = json.loads(text)
    assert code == 0 and [m["name"] for m in listed] == list(mutants.catalogue())
    assert all(m["description"] for m in listed)


def test_json_shape_and_exit_code() -> None:
    names = ["event.remove_row.row7", "com_call.narrow_guard.row28.phase.NONE"]
    code, text = _cli(["model", "mutants", "--json", "--workers", "1", "--only", *names])
    data = json.loads(text)
    assert code == 0
    assert data["total"] == 2 and data["killed"] == 2 and data["survivors"] == []
    assert data["equivalent"] == [] and data["crashed"] == []
    assert set(data["killed_by"]) == set(names)
    assert data["command"].startswith("callgate model mutants --json")
    assert isinstance(data["seconds"], float)
    for entry in data["mutants"]:
        assert entry["status"] == "killed" and entry["killed_by"].startswith("totality[")
        assert "pinned_counts_changed" in entry and entry["detail"]


def test_a_survivor_makes_the_command_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    name = next(iter(mutants.EQUIVALENT))
    survivor = mutants.MutantResult(name, "rpc_call", "forget_update", "d", "survived")
    monkeypatch.setattr(mutants, "run", lambda *a, **k: mutants.Report((survivor,), 0.1, "c"))
    code, text = _cli(["model", "mutants", "--json", "--only", name])
    assert code == 1 and json.loads(text)["survivors"] == [name]
