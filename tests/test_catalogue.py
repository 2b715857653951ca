"""The rule catalogue matches DOMAIN.md, and the model cites every in-scope MUST rule."""

from __future__ import annotations

import re
import subprocess
import sys

from callgate.model.families import MACHINES, UNMODELLED, rows_citing
from callgate.model.rules import Level, catalogue
from tests.conftest import ROOT


def test_catalogue_has_every_rule_id_of_domain_md(domain_text: str) -> None:
    ids = re.findall(r"^\* \*\*((?:COM|RPC)-[A-Z0-9-]+)\*\*", domain_text, flags=re.M)
    assert len(ids) == 182
    assert list(catalogue()) == ids


def test_catalogue_levels_match_domain_md(domain_text: str) -> None:
    tags = dict(re.findall(r"^\* \*\*((?:COM|RPC)-[A-Z0-9-]+)\*\* \[([A-Z/]+)\]", domain_text,
                           flags=re.M))
    for rule in catalogue().values():
        assert "/".join(lv.value for lv in rule.split_levels) == tags[rule.id], rule.id


def test_rules_file_is_what_the_extractor_makes(domain_text: str, tmp_path: object) -> None:
    path = ROOT.parent / "shared" / "spec" / "DOMAIN.md"
    made = subprocess.run([sys.executable, str(ROOT / "tools" / "extract_rules.py"), str(path)],
                          capture_output=True, text=True, check=True).stdout
    assert made == (ROOT / "model" / "rules.toml").read_text(encoding="utf-8")


def test_at_least_80_rules_are_in_scope() -> None:
    assert sum(r.in_scope for r in catalogue().values()) >= 80


def test_every_in_scope_must_rule_is_cited_by_a_row() -> None:
    counts = rows_citing()
    uncited = [r.id for r in catalogue().values()
               if r.in_scope and r.level is Level.MUST and counts[r.id] == 0]
    assert uncited == []


def test_out_of_scope_rules_are_not_cited() -> None:
    counts = rows_citing()
    assert [r.id for r in catalogue().values() if not r.in_scope and counts[r.id]] == []


def test_unmodelled_list_names_only_uncited_in_scope_non_must_rules() -> None:
    counts = rows_citing()
    for rule_id, reason in UNMODELLED.items():
        rule = catalogue()[rule_id]
        assert rule.in_scope and rule.level is not Level.MUST, rule_id
        assert counts[rule_id] == 0, f"{rule_id} is cited now: drop it from UNMODELLED"
        assert reason


def test_every_uncited_in_scope_rule_has_a_reason() -> None:
    counts = rows_citing()
    missing = [r.id for r in catalogue().values()
               if r.in_scope and counts[r.id] == 0 and r.id not in UNMODELLED]
    assert missing == []


def test_machines_cite_only_catalogue_rules() -> None:
    known = set(catalogue())
    for machine in MACHINES.values():
        assert set(machine.cited_rules()) <= known, machine.name
