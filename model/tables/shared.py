"""Outcome groups that several family tables use: the documented code sets behind variation points."""

from __future__ import annotations

from callgate.model import codes
from callgate.model.codes import Family
from callgate.model.tables.table import out
from callgate.model.transitions import AnyFailure, Exact, Expr, Outcome, Value

Update = Value | Expr


def wait_timed_out(point: str, rules: tuple[str, ...] = (), **updates: Update
                   ) -> tuple[Outcome, ...]:
    """ISynchronize::Wait whose timeout expired: one code per documented reading (D-01), chosen
    by the variation point `point` (the call object's and the system event's are separate)."""
    return (
        out(Exact(codes.RPC_S_CALLPENDING), "timed out", rules=rules,
            when={point: "RPC_S_CALLPENDING"}, also=updates),
        out(Exact(codes.RPC_E_TIMEOUT), "timed out", rules=rules,
            when={point: "RPC_E_TIMEOUT"}, also=updates),
    )


def begin_rejected(rules: tuple[str, ...] = ()) -> tuple[Outcome, ...]:
    """Begin_ refused because a call is in flight: the undefined RPC_E_CALL_PENDING (D-02)."""
    return (
        out(AnyFailure(Family.HRESULT), "rejected: a call is in flight", rules=rules,
            when={"begin_pending_code": "any_failure"}),
        out(Exact(codes.RPC_S_CALLPENDING), "rejected: a call is in flight", rules=rules,
            when={"begin_pending_code": "RPC_S_CALLPENDING"}),
    )


def call_cancelled(label: str, rules: tuple[str, ...] = (), **updates: Update) -> tuple[Outcome, ...]:
    """A cancelled COM call's code: the undefined RPC_S_CALL_CANCELED read two ways (D-03)."""
    return (
        out(Exact(codes.RPC_E_CALL_CANCELED), label, rules=rules,
            when={"cancelled_code": "RPC_E_CALL_CANCELED"}, also=updates),
        out(Exact(codes.HRESULT_FROM_WIN32_RPC_S_CALL_CANCELLED), label, rules=rules,
            when={"cancelled_code": "HRESULT_FROM_WIN32(RPC_S_CALL_CANCELLED)"}, also=updates),
    )
