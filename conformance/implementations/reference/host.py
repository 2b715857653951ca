"""The host a reference runtime runs in: its worker threads, timing jitter, and seeded-fault switches.

Three things every part of the reference implementation shares, and nothing else:

* `WorkerPool`: daemon threads for everything that runs "on another thread" (a COM server's
  Begin_ processing, an RPC dispatch thread, a Callback notification). A held call occupies a
  worker until the harness lets it go; idle workers wait a while for more work and then exit, so
  thousands of sessions reuse a handful of threads instead of piling them up.
* `Mailbox`: how the harness commands a held server call. The harness posts a `Command` and waits
  for the server thread's reply, so a command's effects (a Signal, a completion and its
  notification) have happened when the harness gets its answer. That is what makes the pinned
  behaviour deterministic although the server really runs on another thread.
* `Host`: the jitter (small random sleeps at interleaving points, for race testing) and the
  seeded faults (`FAULTS`).

Seeded faults. DESIGN.md principle 7 measures the suite with mutants: variants of the reference
implementation that each break one documented rule. A mutant is the reference implementation
built with `faults={name}`; the code consults `host.fault(name)` at the one place the rule is
implemented. `FAULTS` lists the fault points that exist, each with the rule it breaks; adding a
mutant means adding an entry here and one `if host.fault(...)` at the matching place.
"""

from __future__ import annotations

import enum
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

# How long an idle worker waits for more work before its thread exits.
IDLE_SECONDS = 2.0
# How long the harness waits for a held server call to answer a command before giving up; a
# healthy server thread answers in microseconds, so this only bounds a broken one.
COMMAND_SECONDS = 5.0


@dataclass(frozen=True)
class Fault:
    """A seeded fault: the rule it breaks and what the faulty implementation does instead."""

    name: str
    rule: str
    effect: str


FAULTS: Mapping[str, Fault] = {f.name: f for f in (
    Fault("begin_accepts_second", "COM-BEGIN-02",
          "Begin_ on a call object with a call in flight starts another call"),
    Fault("wait_ok_before_signal", "COM-WAIT-03",
          "ISynchronize::Wait on a call object returns S_OK when its timeout expires"),
    Fault("std_event_no_auto_reset", "COM-SYNC-03",
          "CLSID_StdEvent wraps a manual-reset event, so Wait does not reset it"),
    Fault("container_accepts_64th", "COM-CONT-02",
          "ISynchronizeContainer::AddSynchronize accepts members beyond 63"),
    Fault("notification_twice", "RPC-CLI-NOTIFY-01",
          "the RPC runtime delivers every completion notification twice"),
    Fault("server_handle_kept", "RPC-SRV-02",
          "the RPC runtime keeps the server async handle after complete, abort or exception"),
    Fault("begin_check_then_set_race", "COM-BEGIN-02",
          "Begin_ checks for a call in flight and records the new call outside one lock, so two "
          "threads' Begin_ can both start a call (only parallel cases can see it)"),
    Fault("wait_lost_wakeup", "COM-SYNC-01",
          "ISynchronize::Wait checks the event, then sleeps without looking again: a Signal "
          "between the check and the sleep is lost and the Wait times out (only parallel cases "
          "can see it)"),
    # COM: the server object, CreateCall, the call object.
    Fault("call_factory_always", "COM-CF-01",
          "the proxy answers QueryInterface(ICallFactory) even when the server object has none"),
    Fault("call_factory_hidden", "COM-SRV-01",
          "the proxy does not forward QueryInterface(ICallFactory) to a server that implements it"),
    Fault("call_object_lacks_async_iid", "COM-CF-02",
          "the call object's QueryInterface forgets the asynchronous interface, so a "
          "non-aggregated CreateCall fails with E_NOINTERFACE"),
    Fault("create_call_accepts_sync_iid", "COM-CF-03",
          "CreateCall ignores riid and makes an AsyncIFoo call object for the synchronous IID"),
    Fault("aggregation_refused", "COM-CF-06",
          "CreateCall with pCtrlUnk returns CLASS_E_NOAGGREGATION instead of an inner object"),
    Fault("call_dies_with_factory", "COM-CF-07",
          "releasing ICallFactory tears down the call objects it created: Begin_ then fails"),
    Fault("proxy_requires_aggregation", "COM-CF-09",
          "the proxy makes call objects only when the client aggregates them"),
    Fault("begin_after_signal_accepted", "COM-CF-10",
          "Begin_ checks only for an unsignalled call, so a signalled call not yet finished is "
          "overwritten by a second call on the same call object"),
    Fault("begin_reports_pending", "COM-BEGIN-01",
          "Begin_ starts the call but returns RPC_S_CALLPENDING, taking 'pending' for its result"),
    Fault("begin_after_cancel_reports_cancel", "COM-BEGIN-03",
          "Begin_ on a cancelled call not yet finished returns the cancelled code instead of the "
          "pending code"),
    Fault("begin_accepted_after_cancel", "COM-CANCEL-03",
          "Begin_ treats a cancelled call as over and starts a new one before Finish_"),
    Fault("no_isynchronize", "COM-WAIT-01",
          "the call object does not aggregate a system event: QueryInterface(ISynchronize) fails"),
    Fault("signal_not_forwarded", "COM-WAIT-02",
          "the server's Signal completes the call but does not signal the call object's event, "
          "so Wait keeps timing out"),
    Fault("wait_zero_never_looks", "COM-WAIT-05",
          "Wait with a zero timeout reports a time-out without looking at the object"),
    Fault("sta_wait_no_pump", "COM-WAIT-06",
          "Wait on an STA thread blocks without running the modal loop: messages are not pumped"),
    Fault("wait_flags_misread", "COM-WAIT-09",
          "Wait misreads COWAIT_DEFAULT as a flag it refuses and fails with E_INVALIDARG"),
    Fault("finish_stale_out", "COM-FIN-01",
          "Finish_ returns the [out] value of the previous call on the call object"),
    Fault("finish_idle_ok", "COM-FIN-02",
          "Finish_ with no call in progress returns S_OK instead of RPC_E_CALL_COMPLETE"),
    Fault("finish_keeps_call", "COM-FIN-04",
          "Finish_ does not clear the finished call, so the call object cannot start another"),
    Fault("release_pending_leaks", "COM-REL-01",
          "releasing the call object while a call is in flight does not abandon the call: the "
          "server's late Signal has nothing to discard"),
    Fault("finish_cancelled_keeps_call", "COM-FIN-05",
          "Finish_ of a cancelled call reports the cancel but does not clean up: the call "
          "object refuses the next Begin_"),
    Fault("sync_call_no_wait", "COM-SRV-03",
          "the synchronous IFoo::M returns before the server thread has answered, with out 0"),
    Fault("signal_out_not_marshaled", "COM-SRV-05",
          "the server's Signal does not carry the [out] value: Finish_ returns 0"),
    Fault("impersonate_after_signal", "COM-SRV-06",
          "CoImpersonateClient still succeeds after the server's Signal has completed"),
    Fault("impersonate_refused", "COM-SRV-07",
          "CoImpersonateClient fails on the Begin_ thread before the Signal"),
    Fault("no_client_security", "COM-SEC-01",
          "the proxy call object does not expose IClientSecurity"),
    Fault("no_cancel_interface", "COM-CANCEL-01",
          "the proxy call object does not expose ICancelMethodCalls"),
    Fault("cancel_refused_pending", "COM-CANCEL-02",
          "Cancel of a call the server still holds returns RPC_E_CALL_COMPLETE (checks the "
          "wrong flag)"),
    Fault("cancel_returns_cancelled", "COM-CANCEL-05",
          "an accepted Cancel returns the cancelled code instead of S_OK"),
    Fault("cancel_twice_ok", "COM-CANCEL-06",
          "a second Cancel of a cancelled call returns S_OK again"),
    Fault("cancel_ignores_disabled", "COM-CANCEL-07",
          "Cancel succeeds although cancellation is not enabled on the server's thread"),
    Fault("cancel_after_signal_ok", "COM-CANCEL-08",
          "Cancel after the server signalled is accepted instead of RPC_E_CALL_COMPLETE"),
    Fault("test_cancel_misses_cancel", "COM-CANCEL-10",
          "the server's TestCancel reports RPC_S_CALLPENDING although the client cancelled"),
    Fault("cancel_signals_at_once", "COM-WAIT-02",
          "an accepted Cancel signals the call object's event at once: Wait returns S_OK while "
          "the server still holds Begin_"),
    Fault("cancelled_signal_discarded", "COM-CANCEL-11",
          "the Signal of a server that returns after a cancel is discarded as a late result: "
          "the client's Wait never returns S_OK and the call cannot be finished"),
    # COM: system events and the container.
    Fault("signal_pulses", "COM-SYNC-01",
          "ISynchronize::Signal pulses the event (sets and resets it at once) instead of leaving "
          "it signalled"),
    Fault("reset_ignored", "COM-SYNC-02",
          "ISynchronize::Reset returns S_OK without resetting the event"),
    Fault("manual_event_auto_resets", "COM-SYNC-04",
          "CLSID_ManualResetEvent wraps an auto-reset event, so a Wait resets it"),
    Fault("new_event_signalled", "COM-SYNC-05",
          "a new system event starts signalled, against the pinned non-signalled start"),
    Fault("std_event_clsid_mixup", "COM-SYNC-06",
          "CoCreateInstance(CLSID_StdEvent) makes a ManualResetEvent"),
    Fault("get_handle_null", "COM-SYNC-07",
          "ISynchronizeHandle::GetHandle returns S_OK with a NULL handle"),
    Fault("set_event_handle_by_value", "COM-SYNC-08",
          "ISynchronizeEvent::SetEventHandle expects a HANDLE, not a pointer to one, and "
          "rejects the argument with E_INVALIDARG"),
    Fault("add_returns_count", "COM-CONT-01",
          "AddSynchronize returns the new member count (as AddRef does) instead of S_OK"),
    Fault("wait_multiple_off_by_one", "COM-CONT-03",
          "WaitMultiple hands back the member after the signalled one (an off-by-one from the "
          "modal loop's extra wait slot)"),
    Fault("wait_multiple_last_member", "COM-CONT-03",
          "WaitMultiple scans from the end and returns the last signalled member, not the first"),
    Fault("wait_multiple_timeout_code", "COM-CONT-04",
          "WaitMultiple returns RPC_S_CALLPENDING on time-out (forgets the D-01 translation)"),
    Fault("wait_multiple_empty_times_out", "COM-CONT-05",
          "WaitMultiple on an empty container waits and times out instead of RPC_E_NO_SYNC"),
    # RPC: handles, the client stub, status and completion.
    Fault("sync_client_no_reply", "RPC-DECL-02",
          "a synchronous client of the asynchronous procedure gets 0 instead of the return value"),
    Fault("init_zeroes_user_info", "RPC-INIT-01",
          "RpcAsyncInitializeHandle zeroes the whole structure, UserInfo included"),
    Fault("init_accepts_larger_size", "RPC-INIT-02",
          "RpcAsyncInitializeHandle accepts a Size larger than sizeof(RPC_ASYNC_STATE)"),
    Fault("stub_clears_notification_type", "RPC-INIT-04",
          "the client stub overwrites NotificationType with None, so no notification is sent"),
    Fault("handle_reuse_in_flight", "RPC-INIT-06",
          "a handle with a call in flight is accepted for a second call"),
    Fault("handle_used_once", "RPC-INIT-06",
          "the stub refuses a re-initialised handle that once carried a call"),
    Fault("call_handle_is_stub_info", "RPC-STATE-01",
          "RpcAsyncGetCallHandle returns StubInfo instead of RuntimeInfo, so the server's "
          "RpcServerTestCancel gets a bad binding"),
    Fault("event_field_wrong_kind", "RPC-STATE-02",
          "the runtime stores RpcSendComplete in Event instead of RpcCallComplete"),
    Fault("stub_reports_pending", "RPC-CLI-CALL-01",
          "the client stub raises RPC_S_ASYNC_CALL_PENDING after dispatching the call"),
    Fault("failed_call_left_on_handle", "RPC-CLI-CALL-02",
          "a call that fails in the stub leaves its record on the handle"),
    Fault("apc_to_runtime_thread", "RPC-CLI-NOTIFY-02",
          "with hThread 0 the APC is queued to the runtime's own thread, not the issuing thread"),
    Fault("reply_on_routine_return", "RPC-SRV-COMPLETE-07",
          "the reply leaves when the manager routine returns, with what the [out] held at "
          "dispatch, so a later RpcAsyncCompleteCall from another thread finds no call (as Wine "
          "does)"),
    Fault("ioc_wrong_key", "RPC-CLI-NOTIFY-03",
          "the completion packet carries key 0 instead of u.IOC.dwCompletionKey"),
    Fault("hwnd_wrong_message", "RPC-CLI-NOTIFY-04",
          "the window message is WM_USER instead of u.HWND.Msg"),
    Fault("callback_not_called", "RPC-CLI-NOTIFY-05",
          "the runtime forgets the Callback notification type and calls nothing"),
    Fault("polled_status_early", "RPC-CLI-NOTIFY-06",
          "with no notification mechanism RpcAsyncGetCallStatus reports RPC_S_OK once the call "
          "is sent, before the server completes it"),
    Fault("polled_status_stale", "RPC-CLI-NOTIFY-06",
          "with no notification mechanism the runtime does not update the status the client "
          "polls: it stays RPC_S_ASYNC_CALL_PENDING"),
    Fault("status_ok_while_pending", "RPC-CLI-STATUS-01",
          "RpcAsyncGetCallStatus reports RPC_S_OK while the call is still pending"),
    Fault("status_returns_reply", "RPC-CLI-STATUS-02",
          "RpcAsyncGetCallStatus of a successful call returns the procedure's return value"),
    Fault("status_pending_after_abort_cancel", "RPC-CLI-STATUS-03",
          "after an abortive cancel RpcAsyncGetCallStatus still reports pending"),
    Fault("status_bad_handle_invalid_arg", "RPC-CLI-STATUS-04",
          "RpcAsyncGetCallStatus reports a never-initialised handle as RPC_S_INVALID_ARG"),
    Fault("complete_pending_final", "RPC-CLI-COMPLETE-01",
          "the client's RpcAsyncCompleteCall while pending frees the call although it returns "
          "RPC_S_ASYNC_CALL_PENDING"),
    Fault("complete_reply_not_copied", "RPC-CLI-COMPLETE-02",
          "RpcAsyncCompleteCall returns RPC_S_OK without copying the return value into Reply"),
    Fault("failure_reported_ok", "RPC-CLI-COMPLETE-03",
          "RpcAsyncCompleteCall of an aborted or faulted call returns RPC_S_OK"),
    Fault("cancel_reported_ok", "RPC-CLI-COMPLETE-04",
          "RpcAsyncCompleteCall after an abortive cancel returns RPC_S_OK, not "
          "RPC_S_CALL_CANCELLED"),
    Fault("complete_not_final", "RPC-CLI-COMPLETE-06",
          "the final RpcAsyncCompleteCall does not free the call: the handle keeps it"),
    Fault("complete_no_call_ok", "RPC-CLI-COMPLETE-09",
          "RpcAsyncCompleteCall on a handle with no call returns RPC_S_OK"),
    Fault("runtime_closes_event", "RPC-CLI-COMPLETE-10",
          "the runtime closes the client's event or port at the final RpcAsyncCompleteCall"),
    Fault("cancel_returns_status", "RPC-CLI-CANCEL-01",
          "RpcAsyncCancelCall returns the call's status instead of RPC_S_OK"),
    Fault("abort_cancel_not_rushed", "RPC-CLI-CANCEL-02",
          "an abortive RpcAsyncCancelCall waits for the server like a non-abortive one"),
    Fault("cancel_not_forwarded", "RPC-CLI-CANCEL-03",
          "a non-abortive RpcAsyncCancelCall does not tell the server"),
    Fault("cancel_always_abortive", "RPC-CLI-CANCEL-04",
          "a non-abortive RpcAsyncCancelCall ends the call on the client as an abortive one does"),
    # RPC: the server side.
    Fault("server_handle_unregistered", "RPC-SRV-01",
          "the runtime does not register the server async handle of a dispatched call"),
    Fault("server_complete_runs_client_path", "RPC-SRV-COMPLETE-01",
          "the server's RpcAsyncCompleteCall takes the client path and returns "
          "RPC_S_ASYNC_CALL_PENDING without ending the call"),
    Fault("server_reply_by_pointer", "RPC-SRV-COMPLETE-02",
          "the runtime sends the Reply pointer's truth value (1) instead of the value it points to"),
    Fault("server_reply_read_early", "RPC-SRV-COMPLETE-03",
          "the runtime marshals the reply when the call is dispatched, not at completion"),
    Fault("server_complete_not_final", "RPC-SRV-COMPLETE-05",
          "the server's RpcAsyncCompleteCall is not final: the server handle stays registered"),
    Fault("server_complete_zeroed_pending", "RPC-SRV-COMPLETE-08",
          "RpcAsyncCompleteCall on a zeroed handle returns RPC_S_ASYNC_CALL_PENDING"),
    Fault("abort_code_lost", "RPC-SRV-ABORT-01",
          "the client receives RPC_S_CALL_FAILED instead of RpcAsyncAbortCall's code"),
    Fault("abort_invalid_ok", "RPC-SRV-ABORT-04",
          "RpcAsyncAbortCall on a zeroed handle returns RPC_S_OK"),
    Fault("exception_code_lost", "RPC-SRV-EXC-01",
          "an exception in the manager routine reaches the client as RPC_S_CALL_FAILED, not its "
          "code"),
    Fault("server_test_cancel_blind", "RPC-SRV-CANCEL-01",
          "RpcServerTestCancel reports RPC_S_CALL_IN_PROGRESS although the client cancelled"),
    Fault("server_test_cancel_consumes", "RPC-SRV-CANCEL-02",
          "RpcServerTestCancel clears the cancel it reports, so a second test misses it"),
    Fault("test_cancel_idle_invalid_binding", "RPC-SRV-CANCEL-03",
          "RpcServerTestCancel(0) on a thread with no call returns RPC_S_INVALID_BINDING, not "
          "RPC_S_NO_CALL_ACTIVE"),
    # Argument-value faults (issue 16): each shows only with particular concrete values of an
    # abstract argument class (callgate.conformance.cases.values).
    Fault("call_wait_signed_timeout", "COM-WAIT-02",
          "the call object's Wait reads dwMilliseconds as a signed LONG: a timeout of 0x80000000 "
          "or more (but not INFINITE) is 'negative' and times out at once, even when signalled"),
    Fault("event_wait_deadline_wraps", "COM-SYNC-04",
          "the event's Wait computes its deadline as a 32-bit tick count plus dwMilliseconds; "
          "when that wraps (timeouts just below INFINITE) it times out without looking"),
    Fault("finish_out_byte", "COM-FIN-01",
          "Finish_ marshals the [out] value through a byte: only its low 8 bits arrive"),
    Fault("complete_reply_16bit", "RPC-CLI-COMPLETE-02",
          "the client's RpcAsyncCompleteCall copies the return value as 16 bits"),
    Fault("abort_code_sign_lost", "RPC-SRV-ABORT-01",
          "RpcAsyncAbortCall treats a code with the high bit set as a failure of its own: the "
          "client receives RPC_S_CALL_FAILED instead of the code"),
    Fault("cancel_seconds_signed", "COM-CANCEL-08",
          "ICancelMethodCalls::Cancel reads ulSeconds as signed: 0x80000000 or more (but not "
          "INFINITE) is refused with E_INVALIDARG instead of reporting the completed call"),
    # Cross-object: state several objects of one kind share (per process, per thread, per
    # binding, per server object), visible only with two objects in flight at once.
    Fault("finish_out_of_last_signal", "COM-FIN-01",
          "Finish_ delivers the [out] of the call the server signalled most recently in the "
          "process (a process-wide \"last result\" pointer), not its own call's"),
    Fault("cancel_most_recent_call", "COM-CANCEL-05",
          "ICancelMethodCalls::Cancel cancels the call most recently begun on the client thread "
          "(a per-thread \"current call\" slot), not the call object's own call"),
    Fault("release_abandons_server_calls", "COM-REL-01",
          "the final Release of one call object abandons every call its server object holds, "
          "so another call object's result is discarded"),
    Fault("event_kernel_handle_shared", "COM-SYNC-01",
          "two live system events of one class on one thread share one kernel event, so "
          "Signal on one signals the other"),
    Fault("rpc_reply_per_binding", "RPC-CLI-COMPLETE-02",
          "the runtime keeps one reply buffer per binding: the completion of a second "
          "outstanding call overwrites the first's return value"),
    Fault("rpc_cancel_last_dispatched", "RPC-CLI-CANCEL-03",
          "RpcAsyncCancelCall tells the server about the call most recently dispatched on the "
          "binding, not the handle's own call"),
    # Race (issue 16): faults only a race with observations that tell its orderings apart sees.
    Fault("notify_after_abort_cancel", "RPC-CLI-NOTIFY-01",
          "the server's completion after an abortive cancel notifies the client again, although "
          "the cancel already delivered the call's one notification"),
    Fault("abort_during_complete_no_notify", "RPC-CLI-CANCEL-02",
          "an abortive RpcAsyncCancelCall that finds the server's completion in progress ends "
          "the call but leaves the notification to the completion, which sends none"),
    Fault("status_final_before_reply", "RPC-CLI-COMPLETE-02",
          "the server's completion publishes the final status before it stores the reply, so a "
          "client that sees RPC_S_OK and completes at once reads a reply of 0"),
    Fault("soft_cancel_lost_while_testing", "RPC-CLI-CANCEL-03",
          "a non-abortive RpcAsyncCancelCall that arrives while the server is inside "
          "RpcServerTestCancel is dropped: later tests never see it"),
    Fault("cancel_lost_after_test", "COM-CANCEL-10",
          "once the server has called TestCancel, a later Cancel sets the flag on a copy the "
          "server no longer reads: Cancel returns S_OK but TestCancel keeps reporting pending"),
    # Forgotten state (issue 16): the implementation merges two states the model keeps apart;
    # only a sequence that tells the two states apart, applied after the transition, shows it.
    Fault("status_poll_drops_soft_cancel", "RPC-SRV-CANCEL-01",
          "RpcAsyncGetCallStatus on a pending call refreshes the call's record and drops a soft "
          "cancel the server has not tested yet, so RpcServerTestCancel misses it"),
    Fault("reset_forgets_manual_reset", "COM-SYNC-04",
          "ISynchronize::Reset on a ManualResetEvent rebuilds the event as auto-reset, so after "
          "the next Signal a Wait resets it"),
    Fault("rewait_loses_out", "COM-FIN-01",
          "the call object forgets it was waited on: a second Wait that returns S_OK fetches "
          "the [out] values again from a buffer the first one emptied, and Finish_ delivers 0"),
    Fault("client_test_cancel_consumes", "COM-CANCEL-10",
          "the client's TestCancel on a cancelled call that is still pending takes the cancel "
          "request off the channel to the server as it reads it, so the server's TestCancel "
          "then reports RPC_S_CALLPENDING"),
    Fault("failed_call_forgets_init", "RPC-CLI-CALL-02",
          "an async call that fails at once (the stub raises) clears the handle's Signature as "
          "if the handle had never been initialised, so the next call on it raises "
          "RPC_S_INVALID_ASYNC_HANDLE instead of starting"),
    # Section 2.11, CoWaitForMultipleHandles (the cowait machine)
    Fault("cowait_null_handles_no_index", "COM-CWMH-04",
          "CoWaitForMultipleHandles returns E_INVALIDARG for a NULL pHandles (and RPC_E_NO_SYNC "
          "for cHandles 0) without first writing 0 to *lpdwindex"),
    Fault("cowait_waitall_any", "COM-CWMH-02",
          "CoWaitForMultipleHandles ignores COWAIT_WAITALL: one signalled handle satisfies the "
          "wait"),
    # 2.8 thread-level cancellation
    Fault("disable_keeps_enabled", "COM-CCAN-04",
          "the disable that balances the last enable returns S_OK but leaves cancellation on"),
    Fault("reinitialize_keeps_enabled", "COM-CCAN-06",
          "CoUninitialize leaves the thread's enable count as it was"),
    Fault("thread_cancel_ignores_disabled", "COM-CCAN-02",
          "CoCancelCall cancels a synchronous call that started with cancellation disabled"),
    Fault("enable_not_nested", "COM-CCAN-03",
          "CoEnableCallCancellation does not nest: a second enable counts as the first, so one "
          "disable turns cancellation off"),
    Fault("cancellation_not_fixed_at_start", "COM-CCAN-05",
          "a pending synchronous call's cancellability follows later enables and disables on "
          "its thread instead of being fixed when the call started"),
    Fault("co_cancel_call_reports_ok", "COM-CCAN-08",
          "CoCancelCall on a call already cancelled reports S_OK (a new request accepted) "
          "instead of the cancel object's answer"),
    Fault("co_test_cancel_inverted", "COM-CCAN-09",
          "CoTestCancel answers RPC_E_CALL_CANCELED for a call not cancelled and "
          "RPC_S_CALLPENDING for a cancelled one"),
    Fault("get_cancel_object_any_iid", "COM-CCAN-10",
          "CoGetCancelObject answers S_OK for any iid, even one the cancel object lacks"),
    Fault("set_cancel_object_null_keeps", "COM-CCAN-11",
          "CoSetCancelObject(NULL) reports S_OK but leaves the registration in place"),
    # 2.11 CoWaitForMultipleHandles (more)
    Fault("cowait_index_from_one", "COM-CWMH-01",
          "CoWaitForMultipleHandles reports *lpdwindex counting from 1"),
    Fault("cowait_timeout_code", "COM-CWMH-03",
          "CoWaitForMultipleHandles returns RPC_E_TIMEOUT when the timeout expires"),
    Fault("cowait_zero_count_index_left", "COM-CWMH-05",
          "CoWaitForMultipleHandles with cHandles 0 returns RPC_E_NO_SYNC but leaves *lpdwindex "
          "as it was instead of setting it to 0"),
    Fault("cowait_alertable_ignored", "COM-CWMH-06",
          "CoWaitForMultipleHandles ignores COWAIT_ALERTABLE: a queued APC does not end the wait"),
    # --- coupled compositions (issue 18): faults in what joins two objects ---
    Fault("call_objects_share_event", "COM-SYNC-06",
          "the call objects of one server object behave as if they aggregated one system event: "
          "the server's Signal of one call sets the events of all, waking a Wait on another"),
    Fault("server_signals_latest_call", "COM-CF-10",
          "the server object's Signal completes the call it began most recently, not the call "
          "it was processing"),
    Fault("call_event_never_reset", "COM-WAIT-03",
          "a call object never resets the event it aggregates, so a Wait on its next call "
          "returns S_OK while that call is pending"),
    # 2.17 RPC ordering (the rpc_order machine)
    Fault("dispatch_on_arrival", "RPC-ORDER-01",
          "a causal binding dispatches each asynchronous call when its packet arrives, without "
          "the sequence check, so a retransmitted first call is dispatched after the second"),
    Fault("sync_call_overtakes", "RPC-ORDER-03",
          "a synchronous call is dispatched at once, ahead of asynchronous calls issued before "
          "it on the same binding whose packets are still on their way"),
    Fault("noncausal_option_rejected", "RPC-ORDER-04",
          "RpcBindingSetOption does not know RPC_C_OPT_BINDING_NONCAUSAL and returns "
          "RPC_S_INVALID_ARG"),
    Fault("reply_to_oldest_call", "RPC-ORDER-01",
          "the server's completion reaches the oldest pending call on the binding, as if calls "
          "could not finish in a different order than they were issued"),
    # 2.19 asynchronous pipes (the rpc_pipe machine)
    Fault("pipe_push_after_end_accepted", "RPC-PIPE-05",
          "a push after the 0-length push that ended the [in] pipe is accepted (RPC_S_OK)"),
    Fault("pipe_pull_empty_ends", "RPC-PIPE-03",
          "a pull with no data yet returns RPC_S_OK with 0 elements (the end of the stream) "
          "instead of RPC_S_ASYNC_CALL_PENDING"),
    Fault("pipe_complete_undrained", "RPC-PIPE-05",
          "the server's RpcAsyncCompleteCall succeeds before it drained the [in] pipe"),
    Fault("pipe_zero_push_ignored", "RPC-PIPE-02",
          "a push of 0 elements is taken as an empty send, not as the end of the [in] pipe"),
    Fault("send_complete_at_end_only", "RPC-STATE-04",
          "with RPC_C_NOTIFY_ON_SEND_COMPLETE only the 0-length push that ends the stream is "
          "notified, not each send"),
    # 2.18 RPC server notifications (the rpc_notif machine)
    Fault("notif_info_not_copied", "RPC-SRV-NOTIF-03",
          "RpcServerSubscribeForNotification keeps a pointer to the caller's NotificationInfo "
          "instead of copying it, so a caller that reuses it loses its notifications"),
    Fault("notif_repeats", "RPC-SRV-NOTIF-07",
          "every RpcAsyncCancelCall of the same call notifies the server again"),
    Fault("notif_unsubscribed_kind", "RPC-SRV-NOTIF-07",
          "a subscription to one kind is also signalled for the other kind"),
    Fault("notif_queued_zero", "RPC-SRV-NOTIF-09",
          "RpcServerUnsubscribeForNotification always reports 0 notifications queued"),
    Fault("notif_type_none_accepted", "RPC-SRV-NOTIF-01",
          "RpcServerSubscribeForNotification returns RPC_S_OK for RpcNotificationTypeNone (and "
          "subscribes nothing)"),
    Fault("notif_null_binding_any_thread", "RPC-SRV-NOTIF-02",
          "a NULL binding on a thread that runs no call names the runtime's latest call"),
    Fault("notif_both_refused", "RPC-SRV-NOTIF-04",
          "both kinds in one subscription call are refused with RPC_S_INVALID_ARG for every "
          "notification type"),
    Fault("notif_subscriptions_per_binding", "RPC-SRV-NOTIF-05",
          "subscriptions belong to the client's connection, not the call: the next call starts "
          "with the previous call's subscriptions again"),
    # blind study (docs/mutants.md, "Faults from outside the catalogue"): one mutant per class
    # of fault that the study's scratch faults showed the suite missing.
    Fault("reset_pool_exhausted", "COM-SYNC-02",
          "each ISynchronize::Reset of a system event takes an entry from a pool of five that "
          "is never given back; from the sixth Reset on it returns S_OK without resetting"),
    Fault("cancel_objects_per_process", "COM-CCAN-11",
          "CoSetCancelObject(NULL) removes the registration made most recently in the process, "
          "not the topmost one of the calling thread"),
    Fault("std_event_signal_neighbour", "COM-SYNC-01",
          "ISynchronize::Signal on a StdEvent also signals the StdEvent created just before it "
          "on the thread (an off-by-one in a per-thread table of auto-reset events)"),
    # merged forms (docs/mutants.md, "Merged forms and every observer"): a fault in a form the
    # model merges with another (only the merged-form continuations drive each form to what
    # observes it), and a fault in one of two operations that tell the same states apart.
    Fault("later_completion_no_event", "RPC-SRV-COMPLETE-07",
          "a call the server completes with RpcAsyncCompleteCall from another thread after its "
          "manager routine returned does not set u.hEvent (NotificationType Event): that path "
          "signals the other kinds only"),
    Fault("status_of_last_failed_call", "RPC-CLI-STATUS-01",
          "once the client has completed a call on the binding that failed or was cancelled, "
          "RpcAsyncGetCallStatus of another handle's pending call reports that call's final "
          "status, until the next call starts (a per-binding \"last status\" read for a call "
          "whose own status is still pending)"),
)}

# How long a race fault's unlocked window stays open (seconds): the faulty code path does this
# much work between its check and its act, as a slower real runtime would.
RACE_WINDOW = 0.002


class Host:
    """Jitter and seeded faults, shared by every object of one adapter.

    `jitter` is the longest random pause, in seconds, inserted at interleaving points (0: none);
    `seed` makes the pauses repeatable; `faults` names entries of `FAULTS`.
    """

    def __init__(self, jitter: float = 0.0, seed: int | None = None,
                 faults: Iterable[str] = ()) -> None:
        if jitter < 0:
            raise ValueError(f"jitter must be >= 0 seconds, got {jitter}")
        # The blind round's faults (blind_faults.py) are switched on the same way, but are not
        # in the mutant catalogue.
        from callgate.conformance.implementations.reference.blind_faults import BLIND_FAULTS

        unknown = sorted(set(faults) - set(FAULTS) - set(BLIND_FAULTS))
        if unknown:
            raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known faults: "
                             f"{', '.join(sorted(FAULTS))}; blind faults: "
                             f"{', '.join(sorted(BLIND_FAULTS))}")
        self.jitter = jitter
        self.seed = seed
        self.faults: frozenset[str] = frozenset(faults)
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        # State the whole process shares, kept only by builds with a cross-object seeded fault.
        self.shared: dict[object, object] = {}
        # The mutant runner's instrument (callgate.conformance.mutants_minimal): how many times a
        # seeded fault was consulted and on (the faulty branch taken), and a switch that makes
        # the build behave as the correct reference for a while. Untouched by a correct build.
        self.acted = 0
        self.suspended = False
        self._acted_lock = threading.Lock()

    def fault(self, name: str) -> bool:
        """True if this build carries the seeded fault `name` (always False for the real thing,
        and while `suspended`); each True is counted in `acted`."""
        if name not in self.faults or self.suspended:
            return False
        with self._acted_lock:
            self.acted += 1
        return True

    def carries(self, name: str) -> bool:
        """True if this build carries the seeded fault `name`, for bookkeeping the fault needs
        later that changes no behaviour by itself (not counted in `acted`, not suspended)."""
        return name in self.faults

    def pause(self) -> None:
        """An interleaving point: sleep a random moment when jitter is on."""
        if self.jitter:
            with self._random_lock:
                delay = self._random.uniform(0.0, self.jitter)
            time.sleep(delay)


class WorkerPool:
    """Daemon worker threads that run submitted tasks, each task on a thread of its own.

    A task may block for as long as it likes (a held server call does): `submit` never queues a
    task behind a busy worker, it starts a new thread when no idle one is left. Idle workers exit
    after `idle_seconds`.
    """

    def __init__(self, name: str = "callgate-reference", idle_seconds: float = IDLE_SECONDS) -> None:
        self.name = name
        self.idle_seconds = idle_seconds
        self._cond = threading.Condition(threading.Lock())
        self._tasks: deque[Callable[[], None]] = deque()
        # Threads not running a task: idle, or started and not yet looking for work. Every queued
        # task is matched by one of them, so no task ever waits for a busy worker.
        self._available = 0
        self._threads = 0
        self._closed = False
        self._started = 0
        # Exceptions that escaped tasks (a bug in a server thread): the latest few, for tests.
        self.failures: deque[BaseException] = deque(maxlen=20)

    def submit(self, task: Callable[[], None]) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError(f"worker pool {self.name} is shut down")
            self._tasks.append(task)
            if self._available >= len(self._tasks):
                self._cond.notify()
                return
            self._available += 1
            self._threads += 1
            self._started += 1
            number = self._started
        threading.Thread(target=self._work, name=f"{self.name}-{number}", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._cond:
                deadline = time.monotonic() + self.idle_seconds
                while not self._tasks:
                    remaining = deadline - time.monotonic()
                    if self._closed or remaining <= 0:
                        self._available -= 1
                        self._threads -= 1
                        return
                    self._cond.wait(remaining)
                task = self._tasks.popleft()
                self._available -= 1
            try:
                task()
            except BaseException as exc:  # keep the pool's bookkeeping right; keep the evidence
                self.failures.append(exc)
            with self._cond:
                self._available += 1

    @property
    def threads(self) -> int:
        """Worker threads alive now (busy or idle)."""
        with self._cond:
            return self._threads

    def shutdown(self) -> None:
        """Let idle workers exit now; busy ones exit when their task ends."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class ServerAction(enum.Enum):
    """What the harness tells a held server call to do (DESIGN.md principle 6)."""

    SIGNAL = "signal"              # COM: ISynchronize::Signal with [out], Begin_ returns
    IMPERSONATE = "impersonate"    # COM: CoImpersonateClient before Signal
    TEST_CANCEL = "test_cancel"    # COM: ICancelMethodCalls::TestCancel; RPC: RpcServerTestCancel
    COMPLETE = "complete"          # RPC: RpcAsyncCompleteCall(pAsync, &reply)
    ABORT = "abort"                # RPC: RpcAsyncAbortCall(pAsync, code)
    RAISE = "raise"                # RPC: the manager routine raises code on the dispatch thread
    SHUTDOWN = "shutdown"          # the session is closing: end the call and free the thread


@dataclass(eq=False)
class Command:
    """One harness command to a held server call, and the server thread's answer."""

    action: ServerAction
    args: Mapping[str, int | bool] = field(default_factory=dict)
    code: int = 0
    outputs: dict[str, int | bool] = field(default_factory=dict)
    _done: threading.Event = field(default_factory=threading.Event)

    def reply(self, code: int, **outputs: int | bool) -> None:
        """Called on the server thread once the command's effects have happened."""
        self.code = code
        self.outputs = dict(outputs)
        self._done.set()

    def wait(self, seconds: float) -> bool:
        return self._done.wait(seconds)


class ServerGone(Exception):
    """A held server call did not answer a command: its thread is gone or stuck."""


class Mailbox:
    """The channel from the harness to one held server call."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()

    def send(self, action: ServerAction, seconds: float = COMMAND_SECONDS,
             **args: int | bool) -> Command:
        """Post a command and wait for the server thread's answer."""
        command = Command(action, args)
        self._queue.put(command)
        if not command.wait(seconds):
            raise ServerGone(f"the held server call did not answer {action.value} within "
                             f"{seconds} s")
        return command

    def post(self, action: ServerAction) -> Command:
        """Post a command without waiting for the answer."""
        command = Command(action)
        self._queue.put(command)
        return command

    def receive(self) -> Command:
        """Called on the server thread: the next command, waiting as long as it takes."""
        return self._queue.get()
