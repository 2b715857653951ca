"""The model's vocabulary as data: what `callgate model ops` and `callgate model pins` print.

An adapter author needs to know, per machine, which operations a request may name, which
arguments each takes and what values they range over, what outputs come back, which feature an
adapter must declare for it, and which concrete numbers the harness sends for an abstract value.
And which variation points (documented choices) an adapter may pin, with the discrepancy each
stands for. Both documents are built here from the tables (`model/tables/`), the feature
vocabulary (`features.py`), the concrete values (`cases/values.py`) and the variation points
(`model/variations.py`): nothing is written twice. Their shapes are JSON Schemas shipped with the
package (`schemas/ops.schema.json`, `schemas/pins.schema.json`); `document_problems` checks a
document against them.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from callgate.conformance.protocol.features import (
    CONFIG_FEATURES,
    FEATURE_MEANINGS,
    PARAM_FEATURES,
)

SCHEMA_VERSION = 1
SCHEMAS = {"ops": "ops.schema.json", "pins": "pins.schema.json"}


def _json_value(value: object) -> str | int | bool:
    assert isinstance(value, (str, int, bool)), value
    return value


def _concrete(machine: str, op: str, param: str, domain: tuple[Any, ...]) -> list[dict[str, Any]]:
    """The concrete-value classes the harness uses for this parameter (cases/values.py)."""
    from callgate.conformance.cases import values

    found: list[dict[str, Any]] = []
    for vc in values.CLASSES:
        for use in vc.uses:
            if (use.machine, use.op, use.param) != (machine, op, param):
                continue
            abstract = [use.abstract] if use.abstract is not None else list(vc.domain or domain)
            found.append({
                "class": vc.name,
                "kind": vc.kind,
                "abstract": [_json_value(a) for a in abstract],
                "sent_as": vc.to,
                "values": sorted(set(vc.anywhere) | set(vc.at_once)),
                "why": vc.why,
            })
    return found


def ops_document() -> dict[str, Any]:
    """Per machine: its operations with parameters (domains, features, concrete values),
    outputs, codes, the feature each needs and the rules its rows cite."""
    from callgate.model.families import FAMILIES

    machines: list[dict[str, Any]] = []
    for family, members in FAMILIES.items():
        for m in members:
            operations = []
            for op in m.operations:
                rows = m.rows_for(op.name)
                outputs = sorted({name for r in rows for o in r.outcomes for name, _ in o.outputs})
                codes = sorted({str(o.code) for r in rows for o in r.outcomes})
                rules = sorted({rule for r in rows for rule in r.cited_rules()})
                params = []
                for p in op.params:
                    value_features = {str(v): f for (mm, oo, pp, v), f in PARAM_FEATURES.items()
                                      if (mm, oo, pp) == (m.name, op.name, p.name)}
                    params.append({
                        "name": p.name,
                        "domain": [_json_value(v) for v in p.domain],
                        "doc": p.doc,
                        "value_features": value_features,
                        "concrete": _concrete(m.name, op.name, p.name, p.domain),
                    })
                operations.append({
                    "name": op.name,
                    "actor": op.actor.value,
                    "doc": op.doc,
                    "feature": op.capability or None,
                    "params": params,
                    "outputs": outputs,
                    "codes": codes,
                    "rules": rules,
                })
            machines.append({
                "name": m.name,
                "family": family,
                "title": m.title,
                "slot_prefix": m.slot_prefix,
                "fields": [{"name": f.name, "domain": [_json_value(v) for v in f.domain],
                            "doc": f.doc} for f in m.fields],
                "config_features": [{"field": fld, "value": _json_value(v), "feature": feat}
                                    for (mm, fld, v), feat in CONFIG_FEATURES.items()
                                    if mm == m.name],
                "operations": operations,
            })
    return {"schema_version": SCHEMA_VERSION, "features": dict(FEATURE_MEANINGS),
            "machines": machines}


def pins_document() -> dict[str, Any]:
    """Every variation point with its choices, the rules and the discrepancy (D-xx) it stands
    for; the old names still accepted (deprecated) and the retired points."""
    from callgate.model import variations

    return {
        "schema_version": SCHEMA_VERSION,
        "points": [{"name": p.name, "choices": list(p.choices), "rules": list(p.rules),
                    "source": p.source, "doc": p.doc} for p in variations.POINTS],
        "aliases": {old: list(new) for old, new in variations.ALIASES.items()},
        "retired": {name: {"surviving_choice": keep, "why": why}
                    for name, (keep, why) in variations.RETIRED.items()},
    }


def schema_text(name: str) -> str:
    """The JSON Schema of the `ops` or `pins` document, as shipped."""
    resource = resources.files("callgate.conformance.protocol").joinpath("schemas", SCHEMAS[name])
    return resource.read_text(encoding="utf-8")


@cache
def _validator(name: str) -> Any:
    schema = json.loads(schema_text(name))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def document_problems(name: str, document: Any, limit: int = 10) -> list[str]:
    """Where `document` breaks the `name` schema: 'path: message' lines, at most `limit`."""
    errors = sorted(_validator(name).iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(document)'}: {e.message}"
            for e in errors[:limit]]
