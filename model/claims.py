"""What each source documents about specific outcomes, as data: the input of rule consistency.

A `Claim` is one source's statement about the result of one situation (rule ID and source key
from spec/DOMAIN.md). A `Situation` names the model state, operation and arguments it is about,
so the tables' own answer there joins the check (`callgate.model.proofs.check_consistency`); situations
outside the model carry only claims.
`SymbolUndefined` records that no header defines a symbol a page uses (DOMAIN.md section 3).

`KNOWN_CONFLICTS` lists the sets of claims already known not to hold together: the
discrepancies of DOMAIN.md section 4 (D-xx), and the ones this check found (N-xx). A conflict the
solver finds is *expected* when its documented members (claims and facts, not table rows) all
belong to one known conflict and there are at least two of them; table rows may only carry a
conflict from one situation to another through a shared variation point.
"""

from __future__ import annotations

from dataclasses import dataclass

from callgate.model.codes import Family
from callgate.model.transitions import Value


@dataclass(frozen=True)
class Situation:
    """A state and operation a claim is about; `machine` empty when the model has no table."""

    key: str
    doc: str
    machine: str = ""
    op: str = ""
    state: tuple[tuple[str, Value], ...] = ()
    args: tuple[tuple[str, Value], ...] = ()


@dataclass(frozen=True)
class IsCode:
    """The result is this defined code (a name in callgate.model.codes)."""

    name: str


@dataclass(frozen=True)
class IsSymbol:
    """The result is a symbol no header defines (callgate.model.codes.UNDEFINED_SYMBOLS)."""

    name: str


@dataclass(frozen=True)
class IsFailure:
    """The result is some failure of the family."""

    family: Family


@dataclass(frozen=True)
class MayBe:
    """The result may be this defined code: one of several the source allows (a call that may
    or may not have been cancelled), so it documents the code without excluding the others.
    Rule consistency asserts nothing from it; the pinned-code check counts it as documentation."""

    name: str


Says = IsCode | IsSymbol | IsFailure | MayBe


@dataclass(frozen=True)
class Claim:
    """One source's statement about one situation's result."""

    id: str
    rules: tuple[str, ...]
    source: str
    situation: str
    says: Says
    note: str = ""


@dataclass(frozen=True)
class SymbolUndefined:
    """No header examined defines `symbol` (so no implementation can return it by that name)."""

    id: str
    symbol: str
    source: str


@dataclass(frozen=True)
class KnownConflict:
    """Claims (and facts) known not to hold together, with the discrepancy that explains them."""

    id: str
    members: frozenset[str]
    note: str
    found_by: str = "spec/DOMAIN.md section 4"


def _s(**values: Value) -> tuple[tuple[str, Value], ...]:
    return tuple(values.items())


PENDING_CALL = _s(phase="PENDING", held=True)
SIGNALLED_CALL = _s(phase="SIGNALED", out=1)

SITUATIONS: tuple[Situation, ...] = (
    Situation("com.wait_timeout", "ISynchronize::Wait on a call object whose call is pending; "
              "the finite timeout expires", "com_call", "Wait", PENDING_CALL,
              _s(timeout="finite")),
    Situation("event.wait_timeout", "ISynchronize::Wait on a non-signalled "
              "CLSID_ManualResetEvent; the timeout expires", "event", "Wait",
              _s(kind="ManualResetEvent", signaled=False), _s(timeout="finite")),
    Situation("com.wait_signalled", "Wait on a call object whose server signalled", "com_call",
              "Wait", SIGNALLED_CALL, _s(timeout="finite")),
    Situation("com.wait_nothing", "Wait on an idle call object: nothing to wait on", "com_call",
              "Wait", _s(phase="IDLE"), _s(timeout="zero")),
    Situation("com.begin_in_flight", "Begin_ while a call is in flight", "com_call", "Begin_",
              PENDING_CALL),
    Situation("com.begin_after_cancel", "Begin_ after Cancel, before Finish_", "com_call",
              "Begin_", _s(phase="PENDING", held=True, cancel=True)),
    Situation("com.finish_idle", "Finish_ with no call in progress", "com_call", "Finish_",
              _s(phase="IDLE")),
    Situation("com.finish_cancelled", "Finish_ of a call cancelled before the server signalled, "
              "once the server has signalled", "com_call", "Finish_",
              _s(phase="SIGNALED", cancel=True, out=1)),
    Situation("com.qi_factory_unsupported", "QueryInterface for ICallFactory on a server object "
              "without asynchronous calls", "com_call", "QueryInterface", _s(factory=False),
              _s(iid="ICallFactory")),
    Situation("com.createcall_sync_iid", "CreateCall with the synchronous interface's IID",
              "com_call", "CreateCall", _s(), _s(riid="sync", aggregate=False)),
    Situation("com.cancel_accepted", "Cancel of a pending call, cancellation enabled",
              "com_call", "Cancel", PENDING_CALL, _s(seconds=0)),
    Situation("com.cancel_disabled", "Cancel of a pending call, cancellation not enabled",
              "com_call", "Cancel", _s(phase="PENDING", held=True, cancellable=False),
              _s(seconds=0)),
    Situation("com.cancel_again", "Cancel of a call already cancelled", "com_call", "Cancel",
              _s(phase="PENDING", held=True, cancel=True), _s(seconds=0)),
    Situation("com.cancel_cancelled_and_completed", "Cancel of a call that was cancelled and "
              "has completed (signalled) since", "com_call", "Cancel",
              _s(phase="SIGNALED", out=1, cancel=True), _s(seconds=0)),
    Situation("com.cancel_disabled_and_completed", "Cancel of a completed (signalled) call, "
              "cancellation not enabled", "com_call", "Cancel",
              _s(phase="SIGNALED", out=1, cancellable=False), _s(seconds=0)),
    Situation("com.cancel_completed_within_timeout", "Cancel(ulSeconds 1) of a call that "
              "completes (has signalled) within the timeout", "com_call", "Cancel",
              SIGNALLED_CALL, _s(seconds=1)),
    Situation("com.test_cancel_not_cancelled", "ICancelMethodCalls::TestCancel, not cancelled",
              "com_call", "TestCancel", PENDING_CALL),
    Situation("com.test_cancel_cancelled", "ICancelMethodCalls::TestCancel after Cancel",
              "com_call", "TestCancel", _s(phase="PENDING", held=True, cancel=True)),
    Situation("event.signal", "ISynchronize::Signal on a system event", "event", "Signal",
              _s(kind="StdEvent")),
    Situation("container.full", "AddSynchronize on a container holding 63 objects", "container",
              "AddSynchronize", _s(created=True, count=63)),
    Situation("container.timeout", "WaitMultiple, no member signalled, the timeout expires",
              "container", "WaitMultiple", _s(created=True, count=2), _s(timeout="finite")),
    Situation("container.empty", "WaitMultiple on an empty container", "container",
              "WaitMultiple", _s(created=True, count=0), _s(timeout="zero")),
    Situation("rpc.init_bad_size", "RpcAsyncInitializeHandle with a Size smaller than "
              "sizeof(RPC_ASYNC_STATE)", "rpc_call", "RpcAsyncInitializeHandle", _s(),
              _s(size="smaller")),
    Situation("rpc.status_pending", "RpcAsyncGetCallStatus while the call is outstanding",
              "rpc_call", "RpcAsyncGetCallStatus", _s(phase="PENDING", server="held")),
    Situation("rpc.status_unused", "RpcAsyncGetCallStatus on an initialised handle never used "
              "for a call", "rpc_call", "RpcAsyncGetCallStatus", _s(phase="INIT")),
    Situation("rpc.status_zeroed", "RpcAsyncGetCallStatus on an all-zero RPC_ASYNC_STATE",
              "rpc_call", "invalid_handle", _s(), _s(api="RpcAsyncGetCallStatus")),
    Situation("rpc.complete_pending", "client RpcAsyncCompleteCall before the reply arrived",
              "rpc_call", "RpcAsyncCompleteCall", _s(phase="PENDING", server="held")),
    Situation("rpc.complete_ok", "client RpcAsyncCompleteCall after the call succeeded",
              "rpc_call", "RpcAsyncCompleteCall",
              _s(phase="READY", server="gone", result="ok", reply=1)),
    Situation("rpc.complete_cancelled", "client RpcAsyncCompleteCall after an abortive cancel",
              "rpc_call", "RpcAsyncCompleteCall",
              _s(phase="READY", server="held", cancel="abort", result="cancelled")),
    Situation("rpc.complete_zeroed", "RpcAsyncCompleteCall on an invalid handle", "rpc_call",
              "invalid_handle", _s(), _s(api="RpcAsyncCompleteCall")),
    Situation("rpc.cancel_zeroed", "RpcAsyncCancelCall on an invalid handle", "rpc_call",
              "invalid_handle", _s(), _s(api="RpcAsyncCancelCall")),
    Situation("rpc.abort_zeroed", "RpcAsyncAbortCall on an invalid handle", "rpc_call",
              "invalid_handle", _s(), _s(api="RpcAsyncAbortCall")),
    Situation("rpc.cancel_call", "RpcAsyncCancelCall(fAbort=TRUE) on a pending call",
              "rpc_call", "RpcAsyncCancelCall", _s(phase="PENDING", server="held"),
              _s(abort=True)),
    Situation("rpc.server_abort", "RpcAsyncAbortCall by the server with a non-zero code",
              "rpc_call", "server_abort", _s(phase="PENDING", server="held"),
              _s(code=5, thread="routine")),
    Situation("rpc.reuse_without_init", "a new call on a completed handle, not re-initialised",
              "rpc_call", "AsyncCall", _s(phase="DONE", server="gone", result="ok", reply=1),
              _s(notify="Event", binding="good", hThread="explicit")),
    Situation("rpc.test_cancel_cancelled", "RpcServerTestCancel in a call the client cancelled",
              "rpc_call", "server_test_cancel", _s(phase="PENDING", server="held",
                                                   cancel="soft"), _s(timeout="zero")),
    Situation("rpc.test_cancel_not_cancelled", "RpcServerTestCancel in a call not cancelled",
              "rpc_call", "server_test_cancel", _s(phase="PENDING", server="held"),
              _s(timeout="zero")),
    Situation("rpc.test_cancel_idle", "RpcServerTestCancel on a thread running no call",
              "rpc_call", "server_test_cancel_idle"),
    Situation("cowait.null_handles", "CoWaitForMultipleHandles with pHandles == NULL and "
              "cHandles == 0", "cowait", "CoWaitForMultipleHandles", (),
              _s(form="null_handles_zero_count", flags="none", timeout="zero")),
    Situation("cowait.zero_count", "CoWaitForMultipleHandles with cHandles == 0 and a valid "
              "pHandles", "cowait", "CoWaitForMultipleHandles", (),
              _s(form="zero_count", flags="none", timeout="zero")),
    Situation("cowait.timeout", "CoWaitForMultipleHandles, no handle signalled, the finite "
              "timeout expires", "cowait", "CoWaitForMultipleHandles", (),
              _s(form="valid", flags="none", timeout="finite")),
    Situation("cancellation.disable_nested", "CoDisableCallCancellation while two "
              "CoEnableCallCancellation calls are outstanding", "thread_cancel",
              "CoDisableCallCancellation", _s(count=2, call="NONE"), _s(pReserved="NULL")),
)

HRESULT_FAILURE = IsFailure(Family.HRESULT)
RPC_FAILURE = IsFailure(Family.RPC_STATUS)

CLAIMS: tuple[Claim, ...] = (
    # D-01: the timeout code of ISynchronize::Wait
    Claim("COM-WAIT-04@S-SYN-WAIT(objidl.h)", ("COM-WAIT-04",), "S-SYN-WAIT (objidl.h)",
          "com.wait_timeout", IsCode("RPC_S_CALLPENDING")),
    Claim("COM-WAIT-04@S-COM-MAKE", ("COM-WAIT-04",), "S-COM-MAKE", "com.wait_timeout",
          IsCode("RPC_E_TIMEOUT")),
    Claim("COM-WAIT-04@S-SYN-WAIT(objidlbase.h)", ("COM-WAIT-04",), "S-SYN-WAIT (objidlbase.h)",
          "com.wait_timeout", IsSymbol("RPC_E_CALLPENDING")),
    Claim("COM-WAIT-03@S-COM-MAKE", ("COM-WAIT-03",), "S-COM-MAKE", "com.wait_timeout",
          HRESULT_FAILURE),
    Claim("COM-WAIT-04@W-MRE", ("COM-WAIT-04",), "W-MRE", "event.wait_timeout",
          IsCode("RPC_S_CALLPENDING"),
          "Wine's ManualResetEvent Wait is CoWaitForMultipleHandles"),
    Claim("COM-WAIT-02@S-COM-MAKE", ("COM-WAIT-02",), "S-COM-MAKE", "com.wait_signalled",
          IsCode("S_OK")),
    Claim("COM-WAIT-07@S-SYN-WAIT(objidl.h)", ("COM-WAIT-07",), "S-SYN-WAIT (objidl.h)",
          "com.wait_nothing", IsCode("RPC_E_NO_SYNC")),
    # D-02: Begin_ while a call is in flight
    Claim("COM-BEGIN-02@S-COM-MAKE", ("COM-BEGIN-02",), "S-COM-MAKE", "com.begin_in_flight",
          IsSymbol("RPC_E_CALL_PENDING")),
    Claim("COM-BEGIN-03@S-COM-CANCEL", ("COM-BEGIN-03", "COM-CANCEL-03"), "S-COM-CANCEL",
          "com.begin_after_cancel", IsSymbol("RPC_E_CALL_PENDING")),
    # D-03: cancellation codes with one L
    Claim("COM-CANCEL-06@S-ICMC", ("COM-CANCEL-06",), "S-ICMC", "com.cancel_again",
          IsSymbol("RPC_S_CALL_CANCELED")),
    Claim("COM-CANCEL-06@S-ICMC:completed", ("COM-CANCEL-06",), "S-ICMC",
          "com.cancel_cancelled_and_completed", IsSymbol("RPC_S_CALL_CANCELED")),
    Claim("COM-CANCEL-09@S-ICMC", ("COM-CANCEL-09",), "S-ICMC", "com.finish_cancelled",
          IsSymbol("RPC_S_CALL_CANCELED")),
    Claim("COM-CANCEL-05@S-ICMC:finish", ("COM-CANCEL-05", "COM-CANCEL-04"), "S-ICMC",
          "com.finish_cancelled", MayBe("S_OK"),
          "S_OK from Cancel 'only means the request was issued, not that the call was "
          "cancelled', and cancelling does not guarantee the server stopped: a call the server "
          "completes anyway delivers its result"),
    # COM, undisputed
    Claim("COM-FIN-02@S-COM-MAKE", ("COM-FIN-02",), "S-COM-MAKE", "com.finish_idle",
          IsCode("RPC_E_CALL_COMPLETE")),
    Claim("COM-CF-01@S-COM-MAKE", ("COM-CF-01",), "S-COM-MAKE", "com.qi_factory_unsupported",
          IsCode("E_NOINTERFACE")),
    Claim("COM-CF-03@S-CF", ("COM-CF-03",), "S-CF", "com.createcall_sync_iid",
          IsCode("E_NOINTERFACE")),
    Claim("COM-CANCEL-05@S-ICMC", ("COM-CANCEL-05",), "S-ICMC", "com.cancel_accepted",
          IsCode("S_OK")),
    Claim("COM-CANCEL-07@S-ICMC", ("COM-CANCEL-07",), "S-ICMC", "com.cancel_disabled",
          IsCode("CO_E_CANCEL_DISABLED")),
    Claim("COM-CANCEL-07@S-ICMC:completed", ("COM-CANCEL-07",), "S-ICMC",
          "com.cancel_disabled_and_completed", IsCode("CO_E_CANCEL_DISABLED")),
    Claim("COM-CANCEL-08@S-ICMC", ("COM-CANCEL-08",), "S-ICMC",
          "com.cancel_disabled_and_completed", IsCode("RPC_E_CALL_COMPLETE")),
    Claim("COM-CANCEL-08@S-ICMC:cancelled", ("COM-CANCEL-08",), "S-ICMC",
          "com.cancel_cancelled_and_completed", IsCode("RPC_E_CALL_COMPLETE")),
    Claim("COM-CANCEL-08@S-ICMC:finite", ("COM-CANCEL-08",), "S-ICMC",
          "com.cancel_completed_within_timeout", IsCode("RPC_E_CALL_COMPLETE"),
          "the call completed within ulSeconds"),
    Claim("COM-CANCEL-10@S-ICMC:not_cancelled", ("COM-CANCEL-10",), "S-ICMC",
          "com.test_cancel_not_cancelled", IsCode("RPC_S_CALLPENDING")),
    Claim("COM-CANCEL-10@S-ICMC:cancelled", ("COM-CANCEL-10",), "S-ICMC",
          "com.test_cancel_cancelled", IsCode("RPC_E_CALL_CANCELED")),
    Claim("COM-SYNC-01@S-SYN-SIG", ("COM-SYNC-01",), "S-SYN-SIG", "event.signal",
          IsCode("S_OK")),
    Claim("COM-CONT-02@S-SYN-C", ("COM-CONT-02",), "S-SYN-C", "container.full",
          IsCode("RPC_E_OUT_OF_RESOURCES")),
    Claim("COM-CONT-04@S-SYN-C", ("COM-CONT-04",), "S-SYN-C", "container.timeout",
          IsCode("RPC_E_TIMEOUT")),
    Claim("COM-CONT-05@S-SYN-C", ("COM-CONT-05",), "S-SYN-C", "container.empty",
          IsCode("RPC_E_NO_SYNC")),
    # D-06: CoWaitForMultipleHandles (the cowait table); D-10: outside the model's tables
    Claim("COM-CWMH-05@W-T-COMPOBJ", ("COM-CWMH-05",), "W-T-COMPOBJ", "cowait.zero_count",
          IsCode("RPC_E_NO_SYNC")),
    Claim("COM-CWMH-03@S-CWMH", ("COM-CWMH-03",), "S-CWMH", "cowait.timeout",
          IsCode("RPC_S_CALLPENDING")),
    Claim("COM-CWMH-05@S-CWMH", ("COM-CWMH-05",), "S-CWMH", "cowait.null_handles",
          IsCode("RPC_E_NO_SYNC"), "the page: RPC_E_NO_SYNC when 'the value of pHandles was 0'"),
    Claim("COM-CWMH-04@W-T-COMPOBJ", ("COM-CWMH-04",), "W-T-COMPOBJ", "cowait.null_handles",
          IsCode("E_INVALIDARG"), "Windows, as Wine's test asserts"),
    Claim("COM-CCAN-04@S-CDCC", ("COM-CCAN-04",), "S-CDCC", "cancellation.disable_nested",
          IsCode("CO_E_CANCEL_DISABLED")),
    Claim("COM-CCAN-04@W-COMBASE", ("COM-CCAN-04",), "W-COMBASE", "cancellation.disable_nested",
          IsCode("S_OK"), "Wine decrements the counter and returns S_OK"),
    # RPC
    Claim("RPC-INIT-02@S-RAIH", ("RPC-INIT-02",), "S-RAIH", "rpc.init_bad_size",
          IsCode("RPC_S_INVALID_ARG")),
    Claim("RPC-INIT-02@W-T-RPCASYNC", ("RPC-INIT-02",), "W-T-RPCASYNC", "rpc.init_bad_size",
          IsCode("RPC_S_INVALID_ARG")),
    Claim("RPC-CLI-STATUS-01@S-RAGCS", ("RPC-CLI-STATUS-01",), "S-RAGCS", "rpc.status_pending",
          IsCode("RPC_S_ASYNC_CALL_PENDING")),
    Claim("RPC-CLI-STATUS-04@S-RAGCS:unused", ("RPC-CLI-STATUS-04",), "S-RAGCS",
          "rpc.status_unused", IsCode("RPC_S_INVALID_ASYNC_HANDLE")),
    Claim("RPC-CLI-STATUS-04@W-T-RPCASYNC:unused", ("RPC-CLI-STATUS-04",), "W-T-RPCASYNC",
          "rpc.status_unused", IsCode("RPC_S_INVALID_BINDING")),
    Claim("RPC-CLI-STATUS-04@S-RAGCS:zeroed", ("RPC-CLI-STATUS-04",), "S-RAGCS",
          "rpc.status_zeroed", IsCode("RPC_S_INVALID_ASYNC_HANDLE")),
    Claim("RPC-CLI-STATUS-04@W-T-RPCASYNC:zeroed", ("RPC-CLI-STATUS-04",), "W-T-RPCASYNC",
          "rpc.status_zeroed", IsCode("RPC_S_INVALID_BINDING")),
    Claim("RPC-CLI-COMPLETE-01@S-RACC", ("RPC-CLI-COMPLETE-01",), "S-RACC",
          "rpc.complete_pending", IsCode("RPC_S_ASYNC_CALL_PENDING")),
    Claim("RPC-CLI-COMPLETE-02@S-RACC", ("RPC-CLI-COMPLETE-02",), "S-RACC", "rpc.complete_ok",
          IsCode("RPC_S_OK")),
    Claim("RPC-CLI-COMPLETE-04@S-RACC", ("RPC-CLI-COMPLETE-04",), "S-RACC",
          "rpc.complete_cancelled", IsCode("RPC_S_CALL_CANCELLED")),
    Claim("RPC-CLI-COMPLETE-09@S-RACC", ("RPC-CLI-COMPLETE-09",), "S-RACC",
          "rpc.complete_zeroed", IsCode("RPC_S_INVALID_ASYNC_HANDLE")),
    Claim("RPC-CLI-CANCEL-01@S-RACAN", ("RPC-CLI-CANCEL-01",), "S-RACAN", "rpc.cancel_call",
          IsCode("RPC_S_OK")),
    Claim("RPC-CLI-CANCEL-01@S-RACAN:invalid", ("RPC-CLI-CANCEL-01",), "S-RACAN",
          "rpc.cancel_zeroed", IsCode("RPC_S_INVALID_ASYNC_HANDLE")),
    Claim("RPC-SRV-ABORT-01@S-RAAC", ("RPC-SRV-ABORT-01",), "S-RAAC", "rpc.server_abort",
          IsCode("RPC_S_OK")),
    Claim("RPC-SRV-ABORT-04@S-RAAC", ("RPC-SRV-ABORT-04",), "S-RAAC", "rpc.abort_zeroed",
          IsCode("RPC_S_INVALID_ASYNC_HANDLE")),
    Claim("RPC-SRV-CANCEL-01@S-RSTC:cancelled", ("RPC-SRV-CANCEL-01",), "S-RSTC",
          "rpc.test_cancel_cancelled", IsCode("RPC_S_OK")),
    Claim("RPC-SRV-CANCEL-01@S-RSTC:not_cancelled", ("RPC-SRV-CANCEL-01",), "S-RSTC",
          "rpc.test_cancel_not_cancelled", IsCode("RPC_S_CALL_IN_PROGRESS")),
    Claim("RPC-SRV-CANCEL-01@S-RSTC:idle", ("RPC-SRV-CANCEL-01",), "S-RSTC",
          "rpc.test_cancel_idle", IsCode("RPC_S_NO_CALL_ACTIVE")),
    # D-11: reusing a completed handle
    Claim("RPC-INIT-08@S-RAIH", ("RPC-INIT-08",), "S-RAIH (Windows XP and later)",
          "rpc.reuse_without_init", IsCode("RPC_S_OK")),
    Claim("RPC-INIT-08@S-RPC-MAKE", ("RPC-INIT-08",), "S-RPC-MAKE", "rpc.reuse_without_init",
          RPC_FAILURE, "the stub raises unless the handle is re-initialised"),
)

FACTS: tuple[SymbolUndefined, ...] = (
    SymbolUndefined("header:RPC_E_CALL_PENDING", "RPC_E_CALL_PENDING", "W-WINERR, mingw-w64"),
    SymbolUndefined("header:RPC_E_CALLPENDING", "RPC_E_CALLPENDING", "W-WINERR, mingw-w64"),
    SymbolUndefined("header:RPC_S_CALL_CANCELED", "RPC_S_CALL_CANCELED", "W-WINERR, mingw-w64"),
)

KNOWN_CONFLICTS: tuple[KnownConflict, ...] = (
    KnownConflict("D-01", frozenset({
        "COM-WAIT-04@S-SYN-WAIT(objidl.h)", "COM-WAIT-04@S-COM-MAKE",
        "COM-WAIT-04@S-SYN-WAIT(objidlbase.h)", "header:RPC_E_CALLPENDING", "COM-WAIT-04@W-MRE"}),
        "Three pages give three timeout codes for ISynchronize::Wait; one is an undefined symbol. "
        "The call object's Wait and the system event's are separate points "
        "(call_wait_timeout_code, event_wait_timeout_code): DOMAIN.md links them nowhere, so "
        "Wine's RPC_S_CALLPENDING for events says nothing about call objects."),
    KnownConflict("D-02", frozenset({
        "COM-BEGIN-02@S-COM-MAKE", "COM-BEGIN-03@S-COM-CANCEL", "header:RPC_E_CALL_PENDING"}),
        "Begin_ while a call is in flight is documented to return RPC_E_CALL_PENDING, which no "
        "header defines."),
    KnownConflict("D-03", frozenset({
        "COM-CANCEL-06@S-ICMC", "COM-CANCEL-06@S-ICMC:completed", "COM-CANCEL-09@S-ICMC",
        "header:RPC_S_CALL_CANCELED"}),
        "ICancelMethodCalls documents RPC_S_CALL_CANCELED (one L), which no header defines."),
    KnownConflict("D-06", frozenset({"COM-CWMH-05@S-CWMH", "COM-CWMH-04@W-T-COMPOBJ"}),
                  "CoWaitForMultipleHandles(NULL handles): RPC_E_NO_SYNC documented, "
                  "E_INVALIDARG on Windows."),
    KnownConflict("D-10", frozenset({"COM-CCAN-04@S-CDCC", "COM-CCAN-04@W-COMBASE"}),
                  "CoDisableCallCancellation with enables outstanding: CO_E_CANCEL_DISABLED "
                  "documented, S_OK in Wine."),
    KnownConflict("D-11", frozenset({"RPC-INIT-08@S-RAIH", "RPC-INIT-08@S-RPC-MAKE"}),
                  "Reusing a completed RPC handle: allowed from Windows XP on, or the stub "
                  "raises."),
    KnownConflict("D-12", frozenset({
        "RPC-CLI-STATUS-04@S-RAGCS:unused", "RPC-CLI-STATUS-04@W-T-RPCASYNC:unused",
        "RPC-CLI-STATUS-04@S-RAGCS:zeroed", "RPC-CLI-STATUS-04@W-T-RPCASYNC:zeroed"}),
        "RpcAsyncGetCallStatus on an unused or zeroed handle: 1914 documented, 1702 on Windows "
        "(Wine's test). The model's one unused_handle_status point covers both situations."),
    KnownConflict("N-01", frozenset({
        "COM-CANCEL-06@S-ICMC:completed", "COM-CANCEL-08@S-ICMC:cancelled"}),
        "Cancel of a call that is both already cancelled (COM-CANCEL-06) and completed "
        "(COM-CANCEL-08): the same page gives two codes and no precedence. The table admits both.",
        found_by="callgate model check (rule consistency)"),
    KnownConflict("N-02", frozenset({
        "COM-CANCEL-07@S-ICMC:completed", "COM-CANCEL-08@S-ICMC"}),
        "Cancel of a completed call when cancellation is not enabled: CO_E_CANCEL_DISABLED "
        "(COM-CANCEL-07) or RPC_E_CALL_COMPLETE (COM-CANCEL-08); no precedence is documented. "
        "The table admits both.",
        found_by="callgate model check (rule consistency)"),
)
