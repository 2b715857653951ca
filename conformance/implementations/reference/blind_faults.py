"""Faults from outside the catalogue: the second blind round (docs/mutants.md, "A blind round").

Each entry is a faulty variant of the reference implementation, written from DOMAIN.md's rule
text as an outside team would, thinking of how real implementations go wrong, and not from the
suite's cases. They are switched on like the catalogue's seeded faults (`host.FAULTS`): by name,
`ReferenceAdapter(faults={name})` in process or `serve --fault NAME` as an adapter program, and
the reference code consults `host.fault(name)` at the one place each acts. They are NOT in
`host.FAULTS`, so `callgate mutants` and its catalogue checks do not see them: they measure the
suite against faults nobody tuned it for. `tools/blind_round.py` runs the standard gate against
each and prints the table.

`SECOND` names, for each class of fault the first runs showed the suite missing, the second,
different fault of that class written after the suite was improved (tests/test_blind_faults.py
runs them).
"""

from __future__ import annotations

from collections.abc import Mapping

from callgate.conformance.implementations.reference.host import Fault

BLIND_FAULTS: Mapping[str, Fault] = {f.name: f for f in (
    # --- the round: written before any gate run -----------------------------------------------
    # State kept per server object instead of per call. COM-CANCEL-10: TestCancel answers
    # RPC_E_CALL_CANCELED "if the call was cancelled", that call, not another of the object.
    Fault("cancel_flag_per_server_object", "COM-CANCEL-10",
          "an accepted ICancelMethodCalls::Cancel sets a flag on the server object, and the "
          "server's TestCancel of every later call of that server object reports "
          "RPC_E_CALL_CANCELED"),
    # State kept per process instead of per object. COM-CONT-02: RPC_E_OUT_OF_RESOURCES when
    # "the container already holds 63 objects", this container.
    Fault("container_slots_per_process", "COM-CONT-02",
          "AddSynchronize counts the members of every live container of the process against "
          "the limit of 63 (one process-wide handle array)"),
    # Checks in the wrong order. COM-CANCEL-06: Cancel on a call already cancelled gives the
    # cancelled code; the reference checks "cancelled" before "completed".
    Fault("cancel_checks_complete_first", "COM-CANCEL-06",
          "Cancel on a cancelled call whose server has since signalled returns "
          "RPC_E_CALL_COMPLETE (the completed check comes first) instead of the cancelled code"),
    # A notification on the wrong handle. RPC-CLI-NOTIFY-01: the runtime signals u.hEvent, the
    # event of this call's RPC_ASYNC_STATE.
    Fault("event_notify_cached_handle", "RPC-CLI-NOTIFY-01",
          "the runtime caches the first u.hEvent it signals and keeps signalling that event, "
          "while it is open, for every later Event-notified call of the runtime"),
    # A leak that shows after N calls. COM-REL-01: releasing a pending call object is allowed
    # and COM cleans the abandoned call up; COM-BEGIN-01: Begin_ on an idle call object starts.
    Fault("abandoned_calls_leak", "COM-REL-01",
          "each call object released while its call is pending leaves its entry in the server "
          "object's table of four call contexts; once four leaked, Begin_ on any call object "
          "of that server object fails with E_OUTOFMEMORY"),
    # Completion and cancel cross. COM-CANCEL-08: Cancel while the call completes within the
    # timeout returns RPC_E_CALL_COMPLETE.
    Fault("cancel_wait_ignores_completion", "COM-CANCEL-08",
          "Cancel(ulSeconds > 0) that sees the server signal while it waits still accepts the "
          "cancel (S_OK, and Finish_ reports the cancel)"),
    # Timing: first call right, later ones wrong. COM-WAIT-02: Wait on a signalled call object
    # returns S_OK.
    Fault("call_wait_deadline_cached", "COM-WAIT-02",
          "the call object's Wait computes its deadline at the first finite Wait of a call and "
          "keeps it: a later finite Wait after that deadline times out without looking, even "
          "when the server has signalled"),
    # A neighbouring code for a rarer form. RPC-CLI-COMPLETE-04: a cancelled call completes
    # with RPC_S_CALL_CANCELLED.
    Fault("polled_cancel_reports_failed", "RPC-CLI-COMPLETE-04",
          "with NotificationType None, RpcAsyncCompleteCall after an abortive cancel returns "
          "RPC_S_CALL_FAILED instead of RPC_S_CALL_CANCELLED"),
    # State that outlives a reuse. RPC-CLI-NOTIFY-01 with a handle reused without
    # re-initialising (RPC-INIT-08, pinned reuse_allowed).
    Fault("reused_handle_old_event", "RPC-CLI-NOTIFY-01",
          "a handle reused without RpcAsyncInitializeHandle keeps the u.hEvent of its first call "
          "(cached in the handle's runtime data): the new call's event is never signalled"),
    # A rarer argument value. COM-SYNC-03: a StdEvent's Wait resets it once it sees it
    # signalled, whatever the timeout.
    Fault("std_event_infinite_no_reset", "COM-SYNC-03",
          "a StdEvent's Wait with dwMilliseconds INFINITE takes another path that does not "
          "reset the event"),
    # A flag's rarer value. RPC-CLI-CANCEL-02: with fAbort TRUE "a cancel notice goes to the
    # server" too.
    Fault("abort_cancel_not_told", "RPC-CLI-CANCEL-02",
          "an abortive RpcAsyncCancelCall ends the call on the client but does not tell the "
          "server: its RpcServerTestCancel keeps reporting RPC_S_CALL_IN_PROGRESS"),
    # Nesting. COM-CCAN-10: with nested calls CoGetCancelObject returns the innermost.
    Fault("get_cancel_object_outermost", "COM-CCAN-10",
          "CoGetCancelObject returns the bottom registration of the thread's stack (the "
          "outermost) instead of the top one"),
    # A count per call instead of per subscription. RPC-SRV-NOTIF-09: *queued is the number of
    # notifications the runtime queued for the subscription being removed.
    Fault("unsubscribe_counts_call", "RPC-SRV-NOTIF-09",
          "RpcServerUnsubscribeForNotification reports the number of kinds queued for the "
          "whole call, not for the one subscription it removes"),
    # --- second faults: written after the suite was improved, one per class it missed ---------
    # Class "a leak across object lifetimes" (abandoned_calls_leak; found by the lifetime
    # cases). COM-REL-01: "no outputs or return value reach the client" of an abandoned call,
    # and COM cleans it up; COM-FIN-01: Finish_ delivers the [out] of its own call.
    Fault("signalled_release_keeps_out_buffer", "COM-FIN-01",
          "a call object released after the server signalled but before Finish_ keeps one of "
          "the server object's four [out] buffers; once all four are kept, the Signal of any "
          "later call of that server object has nowhere to put its [out] and Finish_ returns 0"),
    # Class "state shared by objects of one class" (event_notify_cached_handle; found by the
    # class pair walks). RPC-CLI-NOTIFY-05: the runtime calls u.NotificationRoutine of the
    # call's own RPC_ASYNC_STATE.
    Fault("callback_of_latest_call", "RPC-CLI-NOTIFY-05",
          "the runtime keeps one Callback routine, overwritten by each Callback call it starts: "
          "a completion calls the routine of the Callback call started most recently"),
    # Class "completion and cancel cross while Cancel waits" (cancel_wait_ignores_completion;
    # found by the race race-cancel-wait-signal). COM-CANCEL-08: the call completed within the
    # timeout, so it was not cancelled; COM-FIN-01: Finish_ then delivers the [out].
    Fault("cancel_wait_marks_completed_call", "COM-FIN-01",
          "Cancel(ulSeconds > 0) that sees the server signal while it waits returns "
          "RPC_E_CALL_COMPLETE but leaves the call marked cancelled, so Finish_ reports the "
          "cancel instead of the [out]"),
    # Class "a bound of one object counted across objects" (container_slots_per_process; found
    # by the limit cases). COM-CONT-02: RPC_E_OUT_OF_RESOURCES when this container holds 63.
    Fault("container_limit_of_latest", "COM-CONT-02",
          "AddSynchronize checks the member count of the container created most recently in the "
          "process (one \"current container\" pointer) instead of its own"),
)}

# The class each second fault stands for, and the first fault of that class the round found
# surviving.
SECOND: Mapping[str, str] = {
    "signalled_release_keeps_out_buffer": "abandoned_calls_leak",
    "callback_of_latest_call": "event_notify_cached_handle",
    "cancel_wait_marks_completed_call": "cancel_wait_ignores_completion",
    "container_limit_of_latest": "container_slots_per_process",
}


def known() -> frozenset[str]:
    """Every blind fault's name."""
    return frozenset(BLIND_FAULTS)
