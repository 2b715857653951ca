"""Short constructors that family modules use to write their rows as readable data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from callgate.model.transitions import Arg, CodeSpec, Const, Expr, Kind, Outcome, Plus, Row, Value, Var

Guard = Mapping[str, Value | Iterable[Value]]


def _values(value: Value | Iterable[Value]) -> frozenset[Value]:
    if isinstance(value, (str, int, bool)):
        return frozenset([value])
    return frozenset(value)


def _guard(guard: Guard | None) -> tuple[tuple[str, frozenset[Value]], ...]:
    return tuple((name, _values(v)) for name, v in (guard or {}).items())


def _expr(value: Value | Expr) -> Expr:
    return value if isinstance(value, (Const, Var, Arg, Plus)) else Const(value)


def out(code: CodeSpec, label: str, /, *, rules: Iterable[str] = (),
        outputs: Mapping[str, Value | Expr | CodeSpec] | None = None,
        when: Mapping[str, str] | None = None, also: Mapping[str, Value | Expr] | None = None,
        **updates: Value | Expr) -> Outcome:
    """An allowed outcome: its code, a label for people, field updates, expected outputs.

    Field updates come as keywords; `also` takes more of them as a mapping (for shared groups).
    """
    updates = {**(also or {}), **updates}
    outs = tuple((name, v if not isinstance(v, (str, int, bool)) else Const(v))
                 for name, v in (outputs or {}).items())
    return Outcome(code=code, label=label,
                   updates=tuple((name, _expr(v)) for name, v in updates.items()),
                   outputs=outs,
                   rules=tuple(rules), when=tuple((when or {}).items()))


def row(op: str, rules: Iterable[str], *outcomes: Outcome, state: Guard | None = None,
        args: Guard | None = None, note: str = "") -> Row:
    """A DEFINED row: in the guarded states, `op` has these allowed outcomes."""
    return Row(op, _guard(state), _guard(args), Kind.DEFINED, tuple(outcomes), tuple(rules), note)


def undefined(op: str, rules: Iterable[str], note: str, *, state: Guard | None = None,
              args: Guard | None = None) -> Row:
    """The documentation forbids the call or gives no result: never driven, never asserted."""
    return Row(op, _guard(state), _guard(args), Kind.UNDEFINED, (), tuple(rules), note)


def not_offered(op: str, rules: Iterable[str], note: str, *, state: Guard | None = None,
                args: Guard | None = None) -> Row:
    """The harness cannot issue this here (no such object, would block forever, ...)."""
    return Row(op, _guard(state), _guard(args), Kind.NOT_OFFERED, (), tuple(rules), note)
