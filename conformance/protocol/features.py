"""The adapter protocol's feature vocabulary: each feature an adapter may declare, and what it means.

An adapter's handshake lists the features it implements; a case that needs a feature the adapter
did not declare is never sent to it, and is reported `not_applicable`. The names are protocol data,
written here once as literals: the tables in `model/tables/` say which feature each operation
needs (an `Operation`'s `capability`), and `tests/test_features.py` checks that the two agree, so
this vocabulary can be read (and imported) without loading any model table.

Most features belong to operations. A few belong to one value of an argument (`PARAM_FEATURES`)
or to a slot's configuration (`CONFIG_FEATURES`); those keys are protocol data too.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from callgate.model.transitions import Value

# Every feature of protocol version 1, with the one line docs/adapter-protocol.md shows for it.
FEATURE_MEANINGS: dict[str, str] = {
    "com.call": "a server object with ICallFactory: CreateCall, Begin_, Wait, Finish_, Release, "
                "QueryInterface, sync_call, the test server's server_signal and server_signal_late",
    "com.object_without_factory": "a server object without ICallFactory (slot config factory: false)",
    "com.cancel": "ICancelMethodCalls::Cancel and TestCancel, and the test server's server_test_cancel",
    "com.cancel_disabled_server": "a server thread with cancellation disabled (slot config "
                                  "cancellable: false)",
    "com.security": "server_impersonate: CoImpersonateClient from the server's Begin_ processing, "
                    "before Signal",
    "com.sta": "probe_sta_wait: whether a finite Wait on an STA thread dispatches window messages",
    "com.thread_cancel": "the thread_cancel machine's client thread: CoEnableCallCancellation, "
                         "CoDisableCallCancellation, CoUninitialize and CoInitializeEx",
    "com.thread_cancel.call": "a synchronous call the test server holds on the thread_cancel "
                              "machine's client thread: start_sync_call, CoCancelCall from "
                              "another thread, the server's CoTestCancel and return",
    "com.thread_cancel.object": "CoSetCancelObject on the client thread, CoGetCancelObject from "
                                "another thread",
    "sync.event": "system events (the event machine): CoCreateInstance, Signal, Reset, Wait",
    "sync.manual_reset_event": "CoCreateInstance of CLSID_ManualResetEvent",
    "sync.std_event": "CoCreateInstance of CLSID_StdEvent",
    "sync.handle": "ISynchronizeHandle::GetHandle on a system event",
    "sync.set_event_handle": "ISynchronizeEvent::SetEventHandle on a system event",
    "sync.container": "ISynchronizeContainer (the container machine): CoCreateInstance, "
                      "AddSynchronize, WaitMultiple, its members' Signal and Reset",
    "com.cowait": "CoWaitForMultipleHandles over two kernel events the slot owns (the cowait "
                  "machine): its argument forms, SetEvent and ResetEvent on the handles, "
                  "QueueUserAPC to the client thread",
    "rpc.handle": "RpcAsyncInitializeHandle, and calls on a never-initialised RPC_ASYNC_STATE",
    "rpc.call": "an asynchronous RPC call: AsyncCall, RpcAsyncGetCallStatus, RpcAsyncCompleteCall, "
                "wait_notification, sync_call, the test server's server_complete",
    "rpc.cancel": "RpcAsyncCancelCall",
    "rpc.abort": "the test server's server_abort: RpcAsyncAbortCall on the server handle",
    "rpc.raise": "the test server's server_raise: the manager routine raises an exception",
    "rpc.server_test_cancel": "the test server's RpcServerTestCancel: server_test_cancel and "
                              "server_test_cancel_idle",
    "rpc.observe_server_handle": "server_handle_live: how many server handles of a call the "
                                 "runtime still holds",
    "rpc.notify.None": "AsyncCall with NotificationType RpcNotificationTypeNone",
    "rpc.notify.Event": "AsyncCall with NotificationType RpcNotificationTypeEvent",
    "rpc.notify.Apc": "AsyncCall with NotificationType RpcNotificationTypeApc",
    "rpc.notify.Ioc": "AsyncCall with NotificationType RpcNotificationTypeIoc",
    "rpc.notify.Hwnd": "AsyncCall with NotificationType RpcNotificationTypeHwnd",
    "rpc.notify.Callback": "AsyncCall with NotificationType RpcNotificationTypeCallback",
    "rpc.apc_null_thread": "AsyncCall with NotificationType RpcNotificationTypeApc and "
                           "u.APC.hThread NULL (the thread that issues the call)",
    "rpc.order": "the rpc_order machine: one binding and one client thread issuing asynchronous "
                 "and synchronous TestProc calls on it, RpcBindingSetOption with "
                 "RPC_C_OPT_BINDING_NONCAUSAL, the test server's log of dispatched calls",
    "rpc.pipe": "the rpc_pipe machine: an asynchronous call with an [in] and an [out] "
                "asynchronous pipe (push, pull, RpcAsyncCompleteCall; the test server drains, "
                "pushes and completes)",
    "rpc.register_info": "RpcAsyncRegisterInfo (obsolete) on the rpc_order machine's binding",
    "rpc.server_later": "server_complete and server_abort with thread later: the manager routine "
                        "returns without ending the call, and another thread completes or "
                        "aborts it afterwards",
    "rpc.notif": "server notifications (the rpc_notif machine): a held call, "
                 "RpcServerSubscribeForNotification, RpcServerUnsubscribeForNotification, the "
                 "server's wait for a notification, the client's RpcAsyncCancelCall, the "
                 "server's RpcAsyncCompleteCall",
    "rpc.notif.disconnect": "client_disconnect: the client drops its connection while the "
                            "rpc_notif machine's call is held",
}

FEATURES: frozenset[str] = frozenset(FEATURE_MEANINGS)

# Features that depend on an argument value rather than the operation: (machine, op, param, value).
PARAM_FEATURES: dict[tuple[str, str, str, Value], str] = {
    **{("rpc_call", "AsyncCall", "notify", kind): f"rpc.notify.{kind}"
       for kind in ("None", "Event", "Apc", "Ioc", "Hwnd", "Callback")},
    ("rpc_call", "AsyncCall", "hThread", "NULL"): "rpc.apc_null_thread",
    ("rpc_call", "server_complete", "thread", "later"): "rpc.server_later",
    ("rpc_call", "server_abort", "thread", "later"): "rpc.server_later",
    ("event", "CoCreateInstance", "clsid", "ManualResetEvent"): "sync.manual_reset_event",
    ("event", "CoCreateInstance", "clsid", "StdEvent"): "sync.std_event",
}

# Features that depend on a slot's configuration (its initial state): (machine, field, value).
CONFIG_FEATURES: dict[tuple[str, str, Value], str] = {
    ("com_call", "factory", False): "com.object_without_factory",
    ("com_call", "cancellable", False): "com.cancel_disabled_server",
}


@cache
def operation_features() -> dict[tuple[str, str], str]:
    """The feature each operation needs, by (machine, op), as the tables declare it ("" for none).

    The tables are loaded on the first question, not when the protocol is imported: the
    transport and an adapter program need the vocabulary, only the harness that picks cases
    needs the tables.
    """
    from callgate.model.families import MACHINES

    return {(m.name, op.name): op.capability for m in MACHINES.values() for op in m.operations}


def features_needed(machine: str, op: str, args: Mapping[str, Value]) -> set[str]:
    """The features an adapter must declare for this request to be sent to it."""
    needed = {operation_features()[(machine, op)]} - {""}
    for name, value in args.items():
        feature = PARAM_FEATURES.get((machine, op, name, value))
        if feature:
            needed.add(feature)
    return needed


def config_features_needed(machine: str, config: Mapping[str, Value]) -> set[str]:
    """The features an adapter must declare to be given a slot of this machine and configuration."""
    return {f for (m, name, value), f in CONFIG_FEATURES.items()
            if m == machine and config.get(name) == value}
