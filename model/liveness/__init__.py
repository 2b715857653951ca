"""Liveness under fairness, on the state graph: every begun call is finished, every RPC call is
completed and notified exactly once, every call the test server holds is ended by it.

Each property is stated in `properties` as data about one machine (the states where a call is in
flight, the operations that finish or abandon it, what counts as a notification, which fields
count the calls the test server holds), apart from the tables, with the rules that promise it.
`checks` decides them on the machine's reachable state graph, separately under every complete
pinning of the variation points the machine's outcomes name (an implementation makes each
choice once), and returns a `CheckResult` per property: PROVED, or COUNTEREXAMPLE with a lasso
(a prefix from an initial state and a cycle repeated forever), a deadlock, or a path whose last
step is wrong. `fair` is the fair-cycle search.

Runs and fairness. A run is a path of the graph from an initial state, infinite unless it stops
in a state where nothing is DEFINED. A run is *fair* when, from some point on:

* weak fairness of the test server: an operation of the server (`Actor.SERVER`, any
  arguments) that is DEFINED in every state of the run is taken infinitely often. The harness
  eventually tells the held server to act (DESIGN.md principle 6);
* progress of time: an action (operation and arguments) taken infinitely often in a state where
  one of its outcomes changes the state takes such an outcome there infinitely often. An answer
  that only says "not yet" (RPC_S_ASYNC_CALL_PENDING while the reply is on its way, "no
  notification yet") is not the answer forever; which of the state-changing outcomes comes is
  left to the implementation;
* strong fairness of what the client keeps trying, named per property: an operation of that set
  that is DEFINED infinitely often is taken infinitely often.

Nothing else is assumed about the client: it may also cancel, wait, test, poll, start another
call where one may start, or abandon a call, in any order.

The properties, on every run under every pinning:

1. `com.begun_call_is_finished` (and `rpc.call_completed_exactly_once`, the same property of
   the RPC machine). Let *in flight* be the machine's `Calls.in_flight` guard (COM: phase
   PENDING or SIGNALED; RPC: PENDING, SENT or READY). A call *begins* with a step from a state
   outside it into it; it is *finished* by a step of a `finish` operation (Finish_,
   RpcAsyncCompleteCall) from a state in flight whose code is not a "not yet" code
   (RPC_S_ASYNC_CALL_PENDING); it is *abandoned* by a step of an `abandon` operation (the final
   Release). Then:
   (a) every step from a state in flight to one that is not finishes or abandons the call;
   (b) between two beginnings, at most one step finishes a call;
   (c) no fair run, the client trying the `finish` operations, stays in flight forever (so a
       client that does not abandon the call finishes it).
2. `rpc.call_notified_exactly_once`. A *notification* is a step of `wait_notification` whose
   result admits 1. Then (a) every notification comes from a state where the call has completed
   (phase SENT, READY or DONE) and asked for one (NotificationType other than None); (b) between
   two beginnings, at most one notification; (c) no fair run, the client trying
   `wait_notification`, stays forever in states where a call has begun (PENDING, SENT, READY,
   DONE), asked for a notification and got none, without beginning another call.
3. `com.server_ends_every_call`, `rpc.server_ends_every_call`. The calls the test server holds
   are counted by `Holding`s (COM: `held`, the current call; `orphan`, abandoned calls it still
   processes; RPC: `server` = held). Then (a) no client step lowers the count (only the server
   ends a call it holds; a client step that does loses it); (b) for each holding, no fair run
   keeps its count above zero forever without a server step that lowers it.

A counterexample to (c)/(b) of liveness is a reachable, fair cycle inside the region (found by
Emerson and Lei's refinement of strongly connected components, `fair.fair_component`) or a state
of the region where nothing is DEFINED; to (a) and (b) of safety, a shortest path ending with the
wrong step (for "at most once", over the product of the graph with a counter of the marks seen
since the call began).
"""

from callgate.model.liveness.checks import (
    KIND,
    Pinned,
    Violation,
    check_liveness,
    iter_lasso,
    pinnings,
)
from callgate.model.liveness.fair import Arc, Arena, Component, Fairness, fair_component, fair_cycle
from callgate.model.liveness.properties import (
    PROPERTIES,
    Calls,
    Finishes,
    Guard,
    Holding,
    NotifiedOnce,
    Property,
    ServerEnds,
    machine_of,
)

__all__ = [
    "KIND", "PROPERTIES",
    "Arc", "Arena", "Calls", "Component", "Fairness", "Finishes", "Guard", "Holding",
    "NotifiedOnce", "Pinned", "Property", "ServerEnds", "Violation",
    "check_liveness", "fair_component", "fair_cycle", "iter_lasso", "machine_of", "pinnings",
]
