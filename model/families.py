"""The registry of families and their machines, and the rules the tables leave unmodelled."""

from __future__ import annotations

from callgate.model.rules import Level, catalogue
from callgate.model.tables import (
    com_call,
    cowait,
    rpc_handle,
    rpc_notif,
    rpc_order,
    rpc_pipe,
    sync_object,
    thread_cancel,
)
from callgate.model.transitions import Machine

FAMILIES: dict[str, tuple[Machine, ...]] = {
    "com": (com_call.MACHINE, thread_cancel.MACHINE),
    "sync": (sync_object.EVENT, sync_object.CONTAINER, cowait.MACHINE),
    "rpc": (rpc_handle.MACHINE, rpc_notif.MACHINE, rpc_order.MACHINE, rpc_pipe.MACHINE),
}

MACHINES: dict[str, Machine] = {m.name: m for ms in FAMILIES.values() for m in ms}

# In-scope MAY and UNDEFINED rules that no row cites, each with the reason. An in-scope MUST rule
# is always cited by a row (tests enforce it).
UNMODELLED: dict[str, str] = {
    "COM-CF-04": "generic failures (E_INVALIDARG, E_OUTOFMEMORY, E_UNEXPECTED) are resource or "
                 "argument faults the harness never provokes; admitting them everywhere would "
                 "let any failure pass",
    "COM-CF-05": "UNDEFINED (ppv == NULL): never driven",
    "COM-SRV-02": "a server without a call object is not part of the test server's set-up",
    "COM-SRV-08": "unverified, secondary source only",
    "COM-APT-01": "same-apartment behaviour is covered by the call_object_origin variation point",
    "COM-APT-02": "obsolete page (D-09); contradicted by S-COM-PROC",
    "COM-WAIT-08": "generic failures of Wait; not provoked",
    "COM-SYNC-09": "which interfaces beyond ISynchronize a system object exposes: adapters "
                   "declare sync.handle and sync.set_event_handle as capabilities",
    "COM-CONT-06": "UNDEFINED (COWAIT_WAITALL or ppSync == NULL): never driven",
    "COM-CWMH-11": "COWAIT_DISPATCH_CALLS, COWAIT_DISPATCH_WINDOW_MESSAGES and "
                   "COWAIT_INPUTAVAILABLE matter only in an STA; the cowait machine waits in the "
                   "MTA and passes none of them",
    "RPC-ORDER-02": "MAY (calls from different client threads run concurrently): the rpc_order "
                    "machine issues every call from one thread",
    "RPC-PIPE-04": "MAY (one APC notification for several pushes): the rpc_pipe machine notifies "
                   "by event",
    "RPC-MISC-02": "MAY, advice on ncacn_np (each idle pending call holds a named-pipe read and "
                   "kernel memory): a cost, not a result an operation returns",
    "RPC-MISC-03": "MAY, advice before Vista (server procedures should not issue asynchronous "
                   "I/O): about the server's own I/O, which no operation of the harness makes",
    "RPC-STATE-03": "Hwnd is deprecated: an adapter may leave it out of its capabilities",
    "RPC-CLI-CALL-03": "thread exit before the send completes: not provoked",
    "RPC-CLI-NOTIFY-07": "the Context argument is reserved and not checked",
    "RPC-CLI-COMPLETE-08": "UNDEFINED (Reply too small): never driven",
    "RPC-SRV-ABORT-03": "UNDEFINED (ExceptionCode == 0): never driven; abort codes are non-zero",
    "RPC-INIT-03": "RpcAsyncInitializeHandle on invalid memory may crash (unverified): never "
                   "driven; a never-initialised handle is RPC-INIT-05's, a zeroed one "
                   "invalid_handle's",
    "RPC-SRV-NOTIF-08": "UNDEFINED (Subscribe and Unsubscribe racing on one binding, D-13): no "
                        "parallel case puts the rpc_notif machine in a race",
}


def rows_citing() -> dict[str, int]:
    """Rule ID to the number of rows, over all machines, that cite it."""
    counts: dict[str, int] = {rule_id: 0 for rule_id in catalogue()}
    for machine in MACHINES.values():
        for rule_id, n in machine.cited_rules().items():
            if rule_id not in counts:
                raise KeyError(f"machine {machine.name} cites unknown rule {rule_id}")
            counts[rule_id] += n
    return counts


def unmodelled_reason(rule_id: str) -> str:
    """Why an in-scope rule has no row, or '' if it has rows or is out of scope."""
    rule = catalogue()[rule_id]
    if not rule.in_scope or rows_citing()[rule_id]:
        return ""
    return UNMODELLED.get(rule_id) or ("MAY: no row needs it" if rule.level is Level.MAY
                                       else "not modelled")
