"""The synchronization family's tables: system events (ISynchronize) and ISynchronizeContainer.

Data only; hold next to spec/DOMAIN.md sections 2.9 and 2.10.

`event` is one system synchronization object, CLSID_ManualResetEvent or CLSID_StdEvent.
`container` is one CLSID_SynchronizeContainer with up to 63 members. Its members are manual-reset
events the adapter creates and resets before adding; the model tracks the signal state of the
first two members (`sig0`, `sig1`), which is all the harness ever signals, and the count of all
(so the 63-member limit is reached for real).
"""

from __future__ import annotations

from callgate.model import codes
from callgate.model.tables.shared import wait_timed_out
from callgate.model.tables.table import not_offered, out, row
from callgate.model.transitions import Actor, Arg, Exact, Field, Machine, Operation, Param, Plus

OK = Exact(codes.S_OK)
CAPACITY = 63  # COM-CONT-02
KINDS = ("ManualResetEvent", "StdEvent")
NOT_CREATED = "the object has not been created"

EVENT = Machine(
    name="event",
    family="sync",
    title="System synchronization object (CLSID_ManualResetEvent, CLSID_StdEvent)",
    doc=__doc__ or "",
    fields=(
        Field("kind", ("NONE", *KINDS), "which class was created; NONE before CoCreateInstance"),
        Field("signaled", (False, True), "the object is in the signalled state"),
    ),
    operations=(
        Operation("CoCreateInstance", Actor.CLIENT, "CoCreateInstance of a system event class.",
                  (Param("clsid", KINDS, "CLSID_ManualResetEvent or CLSID_StdEvent"),),
                  capability="sync.event"),
        Operation("Signal", Actor.CLIENT, "ISynchronize::Signal.", capability="sync.event"),
        Operation("Reset", Actor.CLIENT, "ISynchronize::Reset.", capability="sync.event"),
        Operation("Wait", Actor.CLIENT, "ISynchronize::Wait(0, ms).",
                  (Param("timeout", ("zero", "finite", "infinite"), "0, short, or INFINITE"),),
                  capability="sync.event"),
        Operation("GetHandle", Actor.CLIENT,
                  "ISynchronizeHandle::GetHandle; output `nonnull` says a handle came back.",
                  capability="sync.handle"),
        Operation("SetEventHandle", Actor.CLIENT,
                  "ISynchronizeEvent::SetEventHandle with a fresh non-signalled event.",
                  capability="sync.set_event_handle"),
    ),
    rows=(
        row("CoCreateInstance", ("COM-SYNC-06", "COM-SYNC-05"),
            out(OK, "created non-signalled", kind=Arg("clsid"), signaled=False,
                when={"new_event_state": "nonsignaled"}),
            out(OK, "created signalled", kind=Arg("clsid"), signaled=True,
                when={"new_event_state": "signaled"}),
            state={"kind": "NONE"}),
        not_offered("CoCreateInstance", ("COM-SYNC-06",), "this slot already holds an object",
                    state={"kind": KINDS}),
        row("Signal", ("COM-SYNC-01",), out(OK, "signalled", signaled=True),
            state={"kind": KINDS}),
        row("Reset", ("COM-SYNC-02", "COM-SYNC-05"), out(OK, "reset", signaled=False),
            state={"kind": KINDS}),
        row("Wait", ("COM-SYNC-03", "COM-WAIT-05"),
            out(OK, "signalled; auto-reset", signaled=False),
            state={"kind": "StdEvent", "signaled": True}),
        row("Wait", ("COM-SYNC-04", "COM-WAIT-05"),
            out(OK, "signalled; stays signalled"),
            state={"kind": "ManualResetEvent", "signaled": True}),
        row("Wait", ("COM-WAIT-03", "COM-WAIT-04", "COM-WAIT-05", "COM-SYNC-03"),
            *wait_timed_out("event_wait_timeout_code"),
            state={"kind": KINDS, "signaled": False}, args={"timeout": ("zero", "finite")}),
        not_offered("Wait", ("COM-WAIT-05",), "INFINITE on a non-signalled object never returns",
                    state={"kind": KINDS, "signaled": False}, args={"timeout": "infinite"}),
        row("GetHandle", ("COM-SYNC-07",), out(OK, "handle returned", outputs={"nonnull": True}),
            state={"kind": KINDS}),
        row("SetEventHandle", ("COM-SYNC-08",),
            out(OK, "now backed by the new event", signaled=False),
            state={"kind": KINDS}),
        *(not_offered(op, ("COM-SYNC-06",), NOT_CREATED, state={"kind": "NONE"})
          for op in ("Signal", "Reset", "Wait", "GetHandle", "SetEventHandle")),
    ),
    initial=((("NONE", False)),),
    diagram_fields=("kind", "signaled"),
    slot_prefix="e",
    timed=(("Wait", "timeout"),),
)

MEMBERS = (0, 1)


def _member_rows(op: str, value: bool, rule: str) -> list:  # type: ignore[type-arg]
    rows = [not_offered(op, (rule,), NOT_CREATED, state={"created": False})]
    for i in MEMBERS:
        rows.append(row(op, (rule,), out(OK, f"member {i} {'signalled' if value else 'reset'}",
                                         also={f"sig{i}": value}),
                        state={"created": True, "count": range(i + 1, CAPACITY + 1)},
                        args={"index": i}))
        rows.append(not_offered(op, (rule,), f"the container has no member {i}",
                                state={"created": True, "count": range(0, i + 1)},
                                args={"index": i}))
    return rows


def _wait_multiple_rows() -> list:  # type: ignore[type-arg]
    rows = []
    nonempty = range(1, CAPACITY + 1)
    for sig0, sig1 in ((True, False), (False, True), (True, True)):
        outcomes = [out(OK, f"member {i} signalled", outputs={"member": i})
                    for i, s in enumerate((sig0, sig1)) if s]
        rows.append(row("WaitMultiple", ("COM-CONT-03", "COM-CONT-07"), *outcomes,
                        state={"created": True, "count": nonempty, "sig0": sig0, "sig1": sig1}))
    rows.append(row("WaitMultiple", ("COM-CONT-04",),
                    out(Exact(codes.RPC_E_TIMEOUT), "timed out"),
                    state={"created": True, "count": nonempty, "sig0": False, "sig1": False},
                    args={"timeout": ("zero", "finite")}))
    rows.append(not_offered("WaitMultiple", ("COM-CONT-04",),
                            "INFINITE with no member signalled never returns",
                            state={"created": True, "count": nonempty, "sig0": False,
                                   "sig1": False}, args={"timeout": "infinite"}))
    rows.append(row("WaitMultiple", ("COM-CONT-05",),
                    out(Exact(codes.RPC_E_NO_SYNC), "empty container"),
                    state={"created": True, "count": 0}))
    rows.append(not_offered("WaitMultiple", ("COM-CONT-01",), NOT_CREATED,
                            state={"created": False}))
    return rows


CONTAINER = Machine(
    name="container",
    family="sync",
    title="ISynchronizeContainer (CLSID_SynchronizeContainer)",
    doc=__doc__ or "",
    fields=(
        Field("created", (False, True), "CoCreateInstance succeeded"),
        Field("count", tuple(range(CAPACITY + 1)), "members added"),
        Field("sig0", (False, True), "member 0 is signalled"),
        Field("sig1", (False, True), "member 1 is signalled"),
    ),
    operations=(
        Operation("CoCreateInstance", Actor.CLIENT, "CoCreateInstance(CLSID_SynchronizeContainer).",
                  capability="sync.container"),
        Operation("AddSynchronize", Actor.CLIENT,
                  "ISynchronizeContainer::AddSynchronize of a new, reset manual-reset event.",
                  capability="sync.container"),
        Operation("WaitMultiple", Actor.CLIENT,
                  "ISynchronizeContainer::WaitMultiple(0, ms, &pSync); output `member` is the "
                  "index of the member returned.",
                  (Param("timeout", ("zero", "finite", "infinite"), "0, short, or INFINITE"),),
                  capability="sync.container"),
        Operation("member_signal", Actor.CLIENT, "ISynchronize::Signal on a member.",
                  (Param("index", MEMBERS, "which member"),), capability="sync.container"),
        Operation("member_reset", Actor.CLIENT, "ISynchronize::Reset on a member.",
                  (Param("index", MEMBERS, "which member"),), capability="sync.container"),
    ),
    rows=(
        row("CoCreateInstance", ("COM-CONT-01",), out(OK, "created", created=True),
            state={"created": False}),
        not_offered("CoCreateInstance", ("COM-CONT-01",), "this slot already holds a container",
                    state={"created": True}),
        row("AddSynchronize", ("COM-CONT-01",), out(OK, "member added", count=Plus("count", 1)),
            state={"created": True, "count": range(0, CAPACITY)}),
        row("AddSynchronize", ("COM-CONT-02",),
            out(Exact(codes.RPC_E_OUT_OF_RESOURCES), "container full"),
            state={"created": True, "count": CAPACITY}),
        not_offered("AddSynchronize", ("COM-CONT-01",), NOT_CREATED, state={"created": False}),
        *_wait_multiple_rows(),
        *_member_rows("member_signal", True, "COM-SYNC-01"),
        *_member_rows("member_reset", False, "COM-SYNC-02"),
    ),
    initial=((False, 0, False, False),),
    diagram_fields=("created", "sig0", "sig1"),
    slot_prefix="k",
    timed=(("WaitMultiple", "timeout"),),
)
