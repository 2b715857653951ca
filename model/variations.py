"""Named variation points: where the documentation allows several results, or two documents disagree.

An adapter pins a choice for each point it knows (in its capabilities); an unpinned point admits
every documented choice (DESIGN.md principle 4). Outcomes in the family tables name the choice
that allows them through `Outcome.when`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class VariationPoint:
    """A documented choice an implementation may make one way or another."""

    name: str
    choices: tuple[str, ...]
    rules: tuple[str, ...]
    source: str
    doc: str


POINTS: tuple[VariationPoint, ...] = (
    VariationPoint(
        "wait_timeout_code", ("RPC_S_CALLPENDING", "RPC_E_TIMEOUT"),
        ("COM-WAIT-03", "COM-WAIT-04"), "D-01",
        "The code ISynchronize::Wait returns when its timeout expires: RPC_S_CALLPENDING per the "
        "objidl.h page (and Wine), RPC_E_TIMEOUT per 'Making an Asynchronous Call'.",
    ),
    VariationPoint(
        "begin_pending_code", ("RPC_S_CALLPENDING", "any_failure"),
        ("COM-BEGIN-02", "COM-BEGIN-03"), "D-02",
        "Begin_ while a call is in flight is documented to return RPC_E_CALL_PENDING, which no "
        "header defines. 'any_failure' admits every failure HRESULT; an implementation may pin "
        "the nearest real code, RPC_S_CALLPENDING.",
    ),
    VariationPoint(
        "cancelled_code", ("RPC_E_CALL_CANCELED", "HRESULT_FROM_WIN32(RPC_S_CALL_CANCELLED)"),
        ("COM-CANCEL-06", "COM-CANCEL-09", "COM-FIN-05"), "D-03",
        "The documented RPC_S_CALL_CANCELED (one L) is undefined; the two real readings are "
        "RPC_E_CALL_CANCELED (0x80010002) and HRESULT_FROM_WIN32(RPC_S_CALL_CANCELLED).",
    ),
    VariationPoint(
        "call_object_origin", ("standard_marshaling", "same_apartment"),
        ("COM-CANCEL-01", "COM-SEC-01", "COM-CF-08", "COM-CF-09"), "COM-CANCEL-01",
        "Whether the call object is a proxy call object from standard marshaling (cross-apartment: "
        "ICancelMethodCalls and IClientSecurity always there, CreateCall always works) or the "
        "server's own object in the same apartment (each may be missing).",
    ),
    VariationPoint(
        "cancel_releases_client", ("at_once", "when_server_signals"),
        ("COM-CANCEL-04", "COM-CANCEL-05", "COM-CANCEL-11"), "COM-CANCEL-05",
        "After an accepted Cancel(0) of a pending call, whether the call object signals at once "
        "(the client is released; late results are discarded) or only when the server signals.",
    ),
    VariationPoint(
        "cancel_after_signal", ("RPC_E_CALL_COMPLETE", "accepted"),
        ("COM-CANCEL-02", "COM-CANCEL-08"), "COM-CANCEL-08",
        "Cancel after the server signalled but before Finish_: refused with RPC_E_CALL_COMPLETE "
        "(the call completed, COM-CANCEL-08) or accepted (the window lasts until Finish_ "
        "returns, COM-CANCEL-02).",
    ),
    VariationPoint(
        "new_event_state", ("nonsignaled", "signaled"), ("COM-SYNC-05",), "COM-SYNC-05",
        "The state of a newly created system event is not documented; a client that needs a known "
        "starting point resets it. Wine creates it non-signaled.",
    ),
    VariationPoint(
        "unused_handle_status", ("RPC_S_INVALID_ASYNC_HANDLE", "RPC_S_INVALID_BINDING"),
        ("RPC-CLI-STATUS-04",), "D-12",
        "RpcAsyncGetCallStatus on a handle that carries no call: documented as "
        "RPC_S_INVALID_ASYNC_HANDLE; Windows returns RPC_S_INVALID_BINDING per Wine's tests.",
    ),
    VariationPoint(
        "handle_reuse", ("reuse_allowed", "reinitialize_required"), ("RPC-INIT-08",), "D-11",
        "Whether a completed RPC async handle may start a new call without RpcAsyncInitializeHandle "
        "(Windows XP and later) or the stub may raise (Windows 2000, and the conceptual page).",
    ),
    VariationPoint(
        "abort_code_delivery", ("exact", "any_failure"),
        ("RPC-SRV-ABORT-01", "RPC-CLI-COMPLETE-05"), "RPC-CLI-COMPLETE-05",
        "Whether the code given to RpcAsyncAbortCall (or raised by the manager routine) reaches "
        "the client's RpcAsyncCompleteCall exactly, or as some RPC failure.",
    ),
)

BY_NAME: dict[str, VariationPoint] = {p.name: p for p in POINTS}


def check_pins(pins: Mapping[str, str]) -> dict[str, str]:
    """Validate an adapter's pins; the error names the point or choice that is wrong."""
    for name, choice in pins.items():
        if name not in BY_NAME:
            raise ValueError(f"unknown variation point {name!r}; known: {', '.join(BY_NAME)}")
        if choice not in BY_NAME[name].choices:
            raise ValueError(f"variation point {name!r} has no choice {choice!r}; choose one of "
                             f"{', '.join(BY_NAME[name].choices)}")
    return dict(pins)
