"""Named variation points: where the documentation allows several results, or two documents disagree.

An adapter pins a choice for each point it knows (in its capabilities); an unpinned point admits
every documented choice (DESIGN.md principle 4). Outcomes in the family tables name the choice
that allows them through `Outcome.when`. `ALIASES` keeps old pin names working (deprecated);
`RETIRED` names points that are gone.
"""

from __future__ import annotations

import warnings
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
        "call_wait_timeout_code", ("RPC_S_CALLPENDING", "RPC_E_TIMEOUT"),
        ("COM-WAIT-03", "COM-WAIT-04"), "D-01",
        "The code ISynchronize::Wait on a call object returns when its timeout expires: "
        "RPC_S_CALLPENDING per the objidl.h page, RPC_E_TIMEOUT per 'Making an Asynchronous "
        "Call'. Independent of event_wait_timeout_code: DOMAIN.md links the two nowhere.",
    ),
    VariationPoint(
        "event_wait_timeout_code", ("RPC_S_CALLPENDING", "RPC_E_TIMEOUT"),
        ("COM-WAIT-03", "COM-WAIT-04"), "D-01",
        "The code ISynchronize::Wait on a system event (CLSID_ManualResetEvent, CLSID_StdEvent) "
        "returns when its timeout expires: RPC_S_CALLPENDING per the objidl.h page (and Wine, "
        "whose Wait is CoWaitForMultipleHandles), RPC_E_TIMEOUT per the reading that gives "
        "every ISynchronize the call object's code.",
    ),
    VariationPoint(
        "call_object_event", ("ManualResetEvent", "StdEvent"),
        ("COM-SYNC-06", "COM-SYNC-03", "COM-SYNC-04"), "COM-SYNC-06",
        "Which system event the call object aggregates for ISynchronize (COM-SYNC-06 allows "
        "either): with CLSID_ManualResetEvent a repeated Wait after the server signalled keeps "
        "returning S_OK (COM-SYNC-04); with CLSID_StdEvent the first S_OK resets it and another "
        "Wait times out (COM-SYNC-03).",
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
        ("COM-CANCEL-06", "COM-CANCEL-09"), "D-03",
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
        "cancel_after_signal", ("RPC_E_CALL_COMPLETE", "accepted"),
        ("COM-CANCEL-02", "COM-CANCEL-08"), "COM-CANCEL-08",
        "Cancel(0) after the server signalled but before Finish_: refused with "
        "RPC_E_CALL_COMPLETE (the call completed, COM-CANCEL-08) or accepted (the window lasts "
        "until Finish_ returns, COM-CANCEL-02). With a non-zero ulSeconds the call completed "
        "within the timeout, and COM-CANCEL-08 alone applies.",
    ),
    VariationPoint(
        "new_event_state", ("nonsignaled", "signaled"), ("COM-SYNC-05",), "COM-SYNC-05",
        "The state of a newly created system event is not documented; a client that needs a known "
        "starting point resets it. Wine creates it non-signaled.",
    ),
    VariationPoint(
        "cowait_null_handles_code", ("E_INVALIDARG", "RPC_E_NO_SYNC"),
        ("COM-CWMH-04", "COM-CWMH-05"), "D-06",
        "CoWaitForMultipleHandles with pHandles NULL and cHandles 0: E_INVALIDARG as Windows "
        "returns (Wine's test) and Wine implements, or RPC_E_NO_SYNC as the page words it "
        "('the value of pHandles was 0'). *lpdwindex is 0 either way.",
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
    VariationPoint(
        "bad_binding_failure", ("synchronous", "through_completion"),
        ("RPC-CLI-CALL-02", "RPC-CLI-COMPLETE-05"), "RPC-CLI-COMPLETE-05",
        "A call on a binding to no server: the stub raises at once (RPC-CLI-CALL-02: nothing to "
        "complete), or the call starts and the failure arrives through its completion "
        "(RPC-CLI-COMPLETE-05: 'any general RPC ... error').",
    ),
    VariationPoint(
        "late_cancel_result", ("server_result", "may_be_cancelled"),
        ("RPC-CLI-CANCEL-05", "RPC-CLI-COMPLETE-04"), "RPC-CLI-CANCEL-05",
        "After a cancel the server did not act on (non-abortive, or abortive once the server had "
        "finished but before the client saw the reply), whether the final result is always "
        "what the server completed with, or may still become RPC_S_CALL_CANCELLED "
        "(RPC-CLI-CANCEL-05: 'may complete normally, fail, or end up cancelled').",
    ),
    VariationPoint(
        "disable_nested_code", ("CO_E_CANCEL_DISABLED", "S_OK"),
        ("COM-CCAN-04",), "D-10",
        "CoDisableCallCancellation while more enables than disables remain: the page says "
        "CO_E_CANCEL_DISABLED (cancellation stays enabled), Wine decrements its counter and "
        "returns S_OK. Either way one enable is balanced and cancellation stays enabled.",
    ),
    VariationPoint(
        "pipe_error_code", ("RPC_X_WRONG_PIPE_ORDER", "RPC_X_PIPE_DISCIPLINE_ERROR",
                            "RPC_X_PIPE_CLOSED", "RPC_X_INVALID_PIPE_OBJECT"),
        ("RPC-PIPE-05",), "D-16",
        "The 'pipe-filling error' an asynchronous pipe operation in the wrong order, or a "
        "completion before the [in] pipe is drained, fails with: the page gives no symbol; the "
        "candidates are the pipe codes of winerror.h (unverified, DOMAIN.md section 6 item 5).",
    ),
    VariationPoint(
        "cancel_notification", ("delivered", "may_be_absent"),
        ("RPC-SRV-NOTIF-01", "RPC-SRV-NOTIF-07"), "D-20",
        "Whether a server subscribed to RpcNotificationCallCancel is notified when the client "
        "cancels: the subscribe page lists the value as one a server may subscribe to, SDK "
        "copies of rpcasync.h mark it internal to Windows. 'may_be_absent' lets a bounded wait "
        "end with no cancel notification; it still comes at most once, and only when subscribed.",
    ),
)

BY_NAME: dict[str, VariationPoint] = {p.name: p for p in POINTS}

# Old pin names, kept so that adapters written against them keep working. Each stands for the
# points it was split into; a pin of the old name pins all of them (a pin of a new name wins).
# Deprecated: pin the new names.
ALIASES: dict[str, tuple[str, ...]] = {
    "wait_timeout_code": ("call_wait_timeout_code", "event_wait_timeout_code"),
}

# Points that are gone, with the one choice that survives (a pin of it is accepted and dropped)
# and why the others went.
RETIRED: dict[str, tuple[str, str]] = {
    "cancel_releases_client": (
        "when_server_signals",
        "'at_once' let Wait return S_OK while the server still held Begin_, which 'Making an "
        "Asynchronous Call' rules out ('If Wait returns S_OK, the Begin_ method has returned', "
        "COM-WAIT-02): a cancelled call's Wait returns S_OK only once the server signals"),
}


def expand_aliases(pins: Mapping[str, str]) -> dict[str, str]:
    """The pins with every old name replaced by the points it stands for (deprecated names
    warn); retired points pinned to their surviving choice are dropped. Does not validate."""
    expanded = {name: choice for name, choice in pins.items()
                if name not in ALIASES and not (name in RETIRED and choice == RETIRED[name][0])}
    for old, new_names in ALIASES.items():
        if old in pins:
            warnings.warn(f"variation point {old!r} is deprecated: pin "
                          f"{' and '.join(repr(n) for n in new_names)} instead",
                          DeprecationWarning, stacklevel=3)
            for new in new_names:
                expanded.setdefault(new, pins[old])
    return expanded


def check_pins(pins: Mapping[str, str]) -> dict[str, str]:
    """Validate an adapter's pins (old names expanded); the error names the point or choice
    that is wrong."""
    for name, choice in pins.items():
        if name in RETIRED and choice != RETIRED[name][0]:
            raise ValueError(f"variation point {name!r} is retired and its choice {choice!r} "
                             f"is no longer conforming: {RETIRED[name][1]}")
    expanded = expand_aliases(pins)
    for name, choice in expanded.items():
        if name not in BY_NAME:
            raise ValueError(f"unknown variation point {name!r}; known: {', '.join(BY_NAME)}")
        if choice not in BY_NAME[name].choices:
            raise ValueError(f"variation point {name!r} has no choice {choice!r}; choose one of "
                             f"{', '.join(BY_NAME[name].choices)}")
    return expanded
