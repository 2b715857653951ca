"""The rule catalogue (spec/DOMAIN.md section 2) as data, loaded from `model/rules.toml`."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from enum import Enum
from functools import cache
from pathlib import Path

RULES_FILE = Path(__file__).with_name("rules.toml")


class Level(Enum):
    """How strongly the documentation states a rule."""

    MUST = "MUST"
    MAY = "MAY"
    UNDEFINED = "UNDEFINED"


@dataclass(frozen=True)
class Rule:
    """One catalogue entry. `level` is the first tag; `split_levels` all of a split rule's tags."""

    id: str
    level: Level
    split_levels: tuple[Level, ...]
    section: str
    section_title: str
    situation: str
    summary: str
    source: str
    in_scope: bool
    scope_note: str


@cache
def catalogue() -> dict[str, Rule]:
    """Every rule by ID, in the order of DOMAIN.md."""
    data = tomllib.loads(RULES_FILE.read_text(encoding="utf-8"))
    rules: dict[str, Rule] = {}
    for entry in data["rule"]:
        rule = Rule(
            id=entry["id"],
            level=Level(entry["level"]),
            split_levels=tuple(Level(x) for x in entry["split_levels"]),
            section=entry["section"],
            section_title=entry["section_title"],
            situation=entry["situation"],
            summary=entry["summary"],
            source=entry["source"],
            in_scope=entry["in_scope"],
            scope_note=entry.get("scope_note", ""),
        )
        if rule.id in rules:
            raise ValueError(f"{RULES_FILE.name}: rule {rule.id} appears twice")
        rules[rule.id] = rule
    return rules


def get(rule_id: str) -> Rule:
    """The rule with this ID; the error says where the catalogue lives."""
    try:
        return catalogue()[rule_id]
    except KeyError:
        raise KeyError(f"no rule {rule_id!r} in {RULES_FILE.name} (see spec/DOMAIN.md section 2)"
                       ) from None
