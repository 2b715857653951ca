"""CoWaitForMultipleHandles's table: spec/DOMAIN.md section 2.11.

Data only; hold next to the section. The `cowait` machine is one client thread and two kernel
events the adapter creates when it opens the slot, both non-signalled: handle 0 a manual-reset
event (a satisfied wait leaves it signalled), handle 1 an auto-reset event (a wait it satisfies
resets it). The harness signals and resets them (SetEvent, ResetEvent) and queues user APCs to
the client thread (QueueUserAPC), then calls CoWaitForMultipleHandles(dwFlags, dwTimeout,
cHandles, pHandles, lpdwindex) in one of these argument forms:

* `valid`: cHandles 2, pHandles the two events, lpdwindex a valid DWORD;
* `null_index`: lpdwindex NULL (COM-CWMH-04);
* `null_handles`: pHandles NULL with cHandles 2 (COM-CWMH-04);
* `zero_count`: cHandles 0 with a valid pHandles (COM-CWMH-05);
* `null_handles_zero_count`: pHandles NULL and cHandles 0, the case D-06 is about;
* `bad_flags`: dwFlags with a bit no COWAIT_FLAGS value defines (0x80000000) (COM-CWMH-04).

Output `index` is *lpdwindex after the call (the adapter sets it to 0xFFFFFFFF before), reported
only when lpdwindex is valid. Out of scope: mutexes (COM-CWMH-07, no mutex among the handles) and
the STA modal loop (COM-CWMH-09, the client thread is in the MTA).
"""

from __future__ import annotations

from callgate.model import codes
from callgate.model.tables.table import not_offered, out, row
from callgate.model.transitions import Actor, Exact, Field, Machine, Operation, Param

OK = Exact(codes.S_OK)
HANDLES = (0, 1)
FORMS = ("valid", "null_index", "null_handles", "zero_count", "null_handles_zero_count",
         "bad_flags")
FLAGS = ("none", "waitall", "alertable")
TIMEOUTS = ("zero", "finite", "infinite")
TIMED = ("zero", "finite")
SIGNALLED = {0: "sig0", 1: "sig1"}


def _taken(index: int) -> dict[str, bool]:
    """The update a wait that handle `index` satisfies makes: handle 1 is auto-reset."""
    return {"sig1": False} if index == 1 else {}


def _argument_rows() -> list:  # type: ignore[type-arg]
    """The argument checks, which come before any wait (D-06's order: lpdwindex, then *lpdwindex
    = 0, then pHandles, then cHandles); none changes the state."""
    return [
        row("CoWaitForMultipleHandles", ("COM-CWMH-04",),
            out(Exact(codes.E_INVALIDARG), "lpdwindex is NULL"),
            args={"form": "null_index"}),
        row("CoWaitForMultipleHandles", ("COM-CWMH-04",),
            out(Exact(codes.E_INVALIDARG), "pHandles is NULL", outputs={"index": 0}),
            args={"form": "null_handles"}),
        row("CoWaitForMultipleHandles", ("COM-CWMH-05",),
            out(Exact(codes.RPC_E_NO_SYNC), "no handles", outputs={"index": 0}),
            args={"form": "zero_count"}),
        row("CoWaitForMultipleHandles", ("COM-CWMH-04", "COM-CWMH-05"),
            out(Exact(codes.E_INVALIDARG), "pHandles is NULL (as Windows)", outputs={"index": 0},
                when={"cowait_null_handles_code": "E_INVALIDARG"}),
            out(Exact(codes.RPC_E_NO_SYNC), "pHandles was 0 (as the page words it)",
                outputs={"index": 0}, when={"cowait_null_handles_code": "RPC_E_NO_SYNC"}),
            args={"form": "null_handles_zero_count"}, note="D-06"),
        row("CoWaitForMultipleHandles", ("COM-CWMH-04",),
            out(Exact(codes.E_INVALIDARG), "invalid flags"),
            args={"form": "bad_flags"}),
    ]


def _wait_any_rows() -> list:  # type: ignore[type-arg]
    """Without WAITALL: any signalled handle satisfies the wait (COM-CWMH-01); an alertable wait
    with an APC queued runs it (COM-CWMH-06); else the timeout expires (COM-CWMH-03)."""
    rows = []
    for sig0 in (False, True):
        for sig1 in (False, True):
            satisfied = [out(OK, f"handle {i} signalled", outputs={"index": i}, also=_taken(i),
                             rules=("COM-CWMH-01",))
                         for i, s in zip(HANDLES, (sig0, sig1), strict=True) if s]
            io = out(OK, "APC ran", outputs={"index": codes.WAIT_IO_COMPLETION}, apc=False,
                     rules=("COM-CWMH-06",))
            state = {"sig0": sig0, "sig1": sig1}
            if satisfied:
                rows.append(row("CoWaitForMultipleHandles", ("COM-CWMH-01",), *satisfied,
                                state={**state, "apc": False},
                                args={"form": "valid", "flags": ("none", "alertable")}))
                rows.append(row("CoWaitForMultipleHandles", ("COM-CWMH-01",), *satisfied,
                                state={**state, "apc": True},
                                args={"form": "valid", "flags": "none"}))
                # Which comes first, a signalled handle or a queued APC, is not documented (and
                # COM-CWMH-08 warns the result may not be deterministic): either is allowed.
                rows.append(row("CoWaitForMultipleHandles", ("COM-CWMH-01", "COM-CWMH-06",
                                                             "COM-CWMH-08"), *satisfied, io,
                                state={**state, "apc": True},
                                args={"form": "valid", "flags": "alertable"}))
                continue
            rows.append(row("CoWaitForMultipleHandles", ("COM-CWMH-06",), io,
                            state={**state, "apc": True},
                            args={"form": "valid", "flags": "alertable"}))
            rows.append(row("CoWaitForMultipleHandles", ("COM-CWMH-03", "COM-CWMH-10"),
                            out(Exact(codes.RPC_S_CALLPENDING), "timed out"),
                            state=state, args={"form": "valid", "flags": "none",
                                               "timeout": TIMED}))
            rows.append(row("CoWaitForMultipleHandles", ("COM-CWMH-03", "COM-CWMH-10"),
                            out(Exact(codes.RPC_S_CALLPENDING), "timed out"),
                            state={**state, "apc": False},
                            args={"form": "valid", "flags": "alertable", "timeout": TIMED}))
            rows.append(not_offered("CoWaitForMultipleHandles", ("COM-CWMH-03",),
                                    "INFINITE with no handle signalled never returns",
                                    state=state, args={"form": "valid", "flags": "none",
                                                       "timeout": "infinite"}))
            rows.append(not_offered("CoWaitForMultipleHandles", ("COM-CWMH-03",),
                                    "INFINITE with no handle signalled and no APC never returns",
                                    state={**state, "apc": False},
                                    args={"form": "valid", "flags": "alertable",
                                          "timeout": "infinite"}))
    return rows


def _wait_all_rows() -> list:  # type: ignore[type-arg]
    """COWAIT_WAITALL: satisfied only when both are signalled (COM-CWMH-02), which resets the
    auto-reset handle; otherwise it times out and takes nothing (COM-CWMH-03). The index is not
    asserted: the rule gives only the code (Wine's test sees 0)."""
    both = {"sig0": True, "sig1": True}
    not_both = ({"sig0": False}, {"sig0": True, "sig1": False})
    rows = [row("CoWaitForMultipleHandles", ("COM-CWMH-02",),
                out(OK, "all signalled", sig1=False), state=both,
                args={"form": "valid", "flags": "waitall"})]
    for state in not_both:
        rows.append(row("CoWaitForMultipleHandles", ("COM-CWMH-02", "COM-CWMH-03"),
                        out(Exact(codes.RPC_S_CALLPENDING), "timed out: not all signalled"),
                        state=state, args={"form": "valid", "flags": "waitall",
                                           "timeout": TIMED}))
        rows.append(not_offered("CoWaitForMultipleHandles", ("COM-CWMH-02",),
                                "INFINITE with a handle not signalled never returns",
                                state=state, args={"form": "valid", "flags": "waitall",
                                                   "timeout": "infinite"}))
    return rows


MACHINE = Machine(
    name="cowait",
    family="sync",
    title="CoWaitForMultipleHandles over two kernel events",
    doc=__doc__ or "",
    fields=(
        Field("sig0", (False, True), "handle 0 (manual-reset event) is signalled"),
        Field("sig1", (False, True), "handle 1 (auto-reset event) is signalled"),
        Field("apc", (False, True), "a user APC is queued to the client thread"),
    ),
    operations=(
        Operation("CoWaitForMultipleHandles", Actor.CLIENT,
                  "CoWaitForMultipleHandles(dwFlags, dwTimeout, cHandles, pHandles, lpdwindex) in "
                  "the argument form `form`; output `index` is *lpdwindex after the call.",
                  (Param("form", FORMS, "the argument form (see the machine's doc)"),
                   Param("flags", FLAGS, "dwFlags: 0, COWAIT_WAITALL or COWAIT_ALERTABLE"),
                   Param("timeout", TIMEOUTS, "0, short, or INFINITE")),
                  capability="com.cowait"),
        Operation("set_handle", Actor.CLIENT, "SetEvent on handle `index`.",
                  (Param("index", HANDLES, "which handle"),), capability="com.cowait"),
        Operation("reset_handle", Actor.CLIENT, "ResetEvent on handle `index`.",
                  (Param("index", HANDLES, "which handle"),), capability="com.cowait"),
        Operation("queue_apc", Actor.CLIENT,
                  "QueueUserAPC of a routine that does nothing, to the client thread.",
                  capability="com.cowait"),
    ),
    rows=(
        *_argument_rows(),
        *_wait_any_rows(),
        *_wait_all_rows(),
        *(row("set_handle", ("COM-CWMH-01",), out(OK, f"handle {i} signalled", also={key: True}),
              args={"index": i}) for i, key in SIGNALLED.items()),
        *(row("reset_handle", ("COM-CWMH-03",), out(OK, f"handle {i} reset", also={key: False}),
              args={"index": i}) for i, key in SIGNALLED.items()),
        row("queue_apc", ("COM-CWMH-06",), out(OK, "APC queued", apc=True), state={"apc": False}),
        not_offered("queue_apc", ("COM-CWMH-06",), "one queued APC is all the model tracks",
                    state={"apc": True}),
    ),
    initial=((False, False, False),),
    diagram_fields=("sig0", "sig1", "apc"),
    slot_prefix="w",
    timed=(("CoWaitForMultipleHandles", "timeout"),),
)
