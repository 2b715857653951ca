"""Plain views of the tables and the catalogue, shared by the CLI and the reports."""

from __future__ import annotations

from dataclasses import dataclass

from callgate.model import obligations
from callgate.model.families import FAMILIES, rows_citing, unmodelled_reason
from callgate.model.rules import catalogue
from callgate.model.transitions import Kind, Machine, Outcome, Row, Value


def _values(values: frozenset[Value]) -> str:
    items = sorted(values, key=lambda v: (str(type(v)), v))
    if len(items) > 4 and all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        ints = [int(v) for v in items]
        if ints == list(range(ints[0], ints[-1] + 1)):
            return f"{ints[0]}..{ints[-1]}"
    return items[0].__str__() if len(items) == 1 else "{" + ",".join(map(str, items)) + "}"


def guard_text(pairs: tuple[tuple[str, frozenset[Value]], ...]) -> str:
    return " ".join(f"{name}={_values(vals)}" for name, vals in pairs) or "any"


def outcome_text(outcome: Outcome) -> str:
    parts = [str(outcome.code)]
    if outcome.outputs:
        parts.append("out: " + ", ".join(f"{n}={v}" for n, v in outcome.outputs))
    if outcome.updates:
        parts.append("-> " + ", ".join(f"{n}:={v}" for n, v in outcome.updates))
    if outcome.when:
        parts.append("if " + ", ".join(f"{p}={c}" for p, c in outcome.when))
    return "  ".join(parts) + f"  ({outcome.label})"


@dataclass(frozen=True)
class RowView:
    """One table row as text, ready for a terminal, Markdown or JSON."""

    op: str
    state: str
    args: str
    kind: str
    outcomes: tuple[str, ...]
    rules: tuple[str, ...]
    note: str


def row_view(row: Row) -> RowView:
    outcomes = tuple(outcome_text(o) for o in row.outcomes)
    if row.kind is not Kind.DEFINED:
        outcomes = (f"{row.kind.value.upper()}: {row.note}",)
    return RowView(row.op, guard_text(row.guard), guard_text(row.args), row.kind.value,
                   outcomes, row.cited_rules(), row.note)


def machine_views(machine: Machine) -> list[RowView]:
    order = {op.name: i for i, op in enumerate(machine.operations)}
    return [row_view(r) for r in sorted(machine.rows, key=lambda r: order[r.op])]


def rules_listing() -> list[dict[str, object]]:
    """Every rule with its level, scope, the number of rows citing it, and the obligations that
    restate it (or, for an in-scope MUST rule no obligation states, the reason why) for
    `callgate model rules`."""
    counts = rows_citing()
    cited: dict[str, list[str]] = {}
    for obligation in obligations.ALL:
        for rule_id in obligation.rules:
            cited.setdefault(rule_id, []).append(obligation.id)
    listing: list[dict[str, object]] = []
    for rule in catalogue().values():
        listing.append({
            "id": rule.id,
            "level": rule.level.value,
            "split_levels": [lv.value for lv in rule.split_levels],
            "in_scope": rule.in_scope,
            "rows": counts[rule.id],
            "section": rule.section,
            "summary": rule.summary,
            "source": rule.source,
            "note": rule.scope_note or unmodelled_reason(rule.id),
            "obligations": cited.get(rule.id, []),
            "obligation_reason": obligations.UNSTATED.get(rule.id, ""),
        })
    return listing


def family_names() -> list[str]:
    return list(FAMILIES)
