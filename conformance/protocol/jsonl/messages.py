"""Protocol messages: which types each side sends, their JSON Schemas, and the check every line passes.

Every message has a published JSON Schema in `conformance/protocol/schemas/`. `parse_line` turns
one line into a checked message or a `ProtocolError` whose text says which rule the line broke;
both sides use it (the harness on the adapter's lines, `jsonl_server` on the harness's).

jsonschema is imported when the first message needs a schema check, not when the transport is
imported: an adapter program written in Python, or a harness that never starts one, does not pay
for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

HARNESS_MESSAGES = ("hello", "open", "request", "close", "shutdown")
ADAPTER_MESSAGES = ("handshake", "response", "event")
CODE_MAX = (1 << 32) - 1
ID_MAX = (1 << 53) - 1  # ids and sessions stay exact in every JSON implementation
# Integer fields that must be JSON integers: the schemas' "integer" also admits 7.0.
INTEGER_FIELDS = ("id", "session", "code", "protocol", "wait_ms")
# Messages already found valid, with their ids set to 1 (see check_message); bounded. Shared by
# threads: a lost insertion only costs one more validation.
VALID_SHAPES_KEPT = 4096
_VALID_SHAPES: dict[tuple[str, str], None] = {}


class ProtocolError(Exception):
    """A line that is not a valid protocol message; the text says which rule it broke."""


@cache
def schemas() -> dict[str, dict[str, Any]]:
    """The published JSON Schema of each message type, by type."""
    folder = resources.files("callgate.conformance.protocol").joinpath("schemas")
    return {name: json.loads(folder.joinpath(f"{name}.json").read_text(encoding="utf-8"))
            for name in HARNESS_MESSAGES + ADAPTER_MESSAGES}


def inline_local_refs(node: Any, defs: Mapping[str, Any] | None = None) -> Any:
    """`node` with every `{"$ref": "#/$defs/NAME"}` replaced by that definition.

    The published schemas keep `$defs` for people; resolving `$ref` at every validation costs
    jsonschema more than the rest of the check, so the validators get the inlined form.
    """
    if defs is None and isinstance(node, dict):
        defs = node.get("$defs", {})
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.removeprefix("#/$defs/")
            if name == ref or defs is None or name not in defs:
                raise ValueError(f"only local references #/$defs/NAME are supported, not {ref!r}")
            return inline_local_refs(defs[name], defs)
        return {k: inline_local_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [inline_local_refs(v, defs) for v in node]
    return node


@cache
def validators() -> dict[str, Any]:
    """One compiled Draft 2020-12 validator per message type, from the published schemas."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

    compiled: dict[str, Any] = {}
    for name, published in schemas().items():
        Draft202012Validator.check_schema(published)
        compiled[name] = Draft202012Validator(inline_local_refs(published))
    return compiled


def _check_code(message: Mapping[str, Any]) -> None:
    """Codes travel as unsigned 32-bit numbers; say so plainly rather than quote the schema."""
    if "code" not in message:
        return
    code = message["code"]
    if isinstance(code, bool) or not isinstance(code, int):
        raise ProtocolError(
            f"response code {code!r} is not a number: codes travel as unsigned 32-bit integers "
            f"(S_OK is 0, RPC_S_CALLPENDING 0x80010115 is 2147549461); a name may go in `name`")
    if not 0 <= code <= CODE_MAX:
        hint = f" (as unsigned: {code & CODE_MAX})" if -(1 << 31) <= code < 0 else ""
        raise ProtocolError(
            f"response code {code} is not an unsigned 32-bit number (0..{CODE_MAX}){hint}: "
            f"send HRESULTs unsigned, e.g. printf(\"%lu\", (unsigned long)(ULONG)hr)")


def _schema_error(kind: str, validator: Any, message: Mapping[str, Any]) -> ProtocolError:
    """The schema's most telling complaint about `message`, said for people."""
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

    error = best_match(validator.iter_errors(message))
    where = "/".join(str(p) for p in error.absolute_path) or "the message"
    what = error.message
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in known and not k.startswith("x_"))
        what = (f"unknown member(s) {', '.join(map(repr, extra))}; only the documented "
                f"members and x_ extensions are allowed")
    return ProtocolError(f"{kind} message invalid at {where}: {what} (schema: "
                         f"conformance/protocol/schemas/{kind}.json)")


def check_message(message: object, allowed: Sequence[str]) -> dict[str, Any]:
    """`message` if it is a valid protocol message of one of the `allowed` types, else ProtocolError."""
    if not isinstance(message, dict):
        raise ProtocolError(f"a line must hold one JSON object, not a JSON {type(message).__name__}")
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in allowed:
        raise ProtocolError(f"a message of type {kind!r} is not expected here; this side accepts "
                            f"{', '.join(allowed)} (docs/adapter-protocol.md)")
    if kind == "response":
        _check_code(message)
    # Messages repeat but for their id, so the schema's verdict on the message with its id set
    # to 1 is remembered, and the id (the same integer range in every schema) checked here.
    probe: dict[str, Any] = message
    if "id" in message:
        request_id = message["id"]
        if type(request_id) is not int or not 1 <= request_id <= ID_MAX:
            raise ProtocolError(f"{kind}.id must be an integer from 1 to {ID_MAX}, without "
                                f"fraction or exponent; got {request_id!r}")
        probe = {**message, "id": 1}
    key = (kind, json.dumps(probe, sort_keys=True))
    if key not in _VALID_SHAPES:
        validator = validators()[kind]
        if not validator.is_valid(probe):
            raise _schema_error(kind, validator, message)
        if len(_VALID_SHAPES) >= VALID_SHAPES_KEPT:
            _VALID_SHAPES.clear()
        _VALID_SHAPES[key] = None
    for field_name in INTEGER_FIELDS:
        if field_name in message and type(message[field_name]) is not int:
            raise ProtocolError(f"{kind}.{field_name} must be a JSON integer, without fraction "
                                f"or exponent; got {message[field_name]!r}")
    return message


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _Duplicate(Exception):
    """A JSON object names a member twice."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose members are all named once: JSON leaves a repeated name's meaning open
    (RFC 8259, 4), and a line that answers `code` twice must not be read as either answer."""
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise _Duplicate(f"the member {name!r} is given twice in one object: send each "
                             f"member once")
        result[name] = value
    return result


def parse_line(line: bytes, allowed: Sequence[str]) -> dict[str, Any]:
    """Decode one line (without its newline) into a checked message, or raise ProtocolError."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"the line is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        message = json.loads(text, parse_constant=_no_constants,
                             object_pairs_hook=_no_duplicates)
    except _Duplicate as exc:
        raise ProtocolError(str(exc)) from exc
    except ValueError as exc:
        raise ProtocolError(f"the line is not JSON ({exc}); stdout must carry protocol lines "
                            f"only: write diagnostics to stderr") from exc
    return check_message(message, allowed)
