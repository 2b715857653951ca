"""The reference binding's dispatch order: spec/DOMAIN.md section 2.17, and RpcAsyncRegisterInfo.

Written from the rules, not from the model. One `OrderedBinding` is a binding handle to the test
server with its connection: the client stub gives every call it sends on the binding a sequence
number, and the packet reaches the server on a worker thread of its own (the transport). On a
causal binding (the default) the server enters the manager routine for the call with the next
sequence number only, so calls from one thread are dispatched in the order they were issued
(RPC-ORDER-01); it does not wait for a dispatched call to finish, so execution overlaps. A
synchronous call takes a sequence number too and is dispatched after the asynchronous calls sent
before it (RPC-ORDER-03). `RpcBindingSetOption(h, RPC_C_OPT_BINDING_NONCAUSAL, TRUE)` turns the
sequence check off (RPC-ORDER-04). The documentation then leaves the order to the runtime, and
the reference takes the other one: on a non-causal binding the server's receive loop runs when
the test server looks for the next dispatch, drains what the connection delivered, and enters the
manager routine for the newest waiting call first. A client or a harness that relied on issue order
on such a binding is seen; the causal order stays reachable by issuing the next call only after
the server took the last one.

The test server's manager routine records every call it is entered for in the binding's dispatch
log and holds an asynchronous call until the harness completes it; the completion reaches the
call's own RPC_ASYNC_STATE (its event is set; RpcAsyncCompleteCall then returns its reply).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from callgate.conformance.implementations.reference.host import Host, WorkerPool
from callgate.model import codes

RPC_S_OK = codes.RPC_S_OK.value
RPC_S_INVALID_ARG = codes.RPC_S_INVALID_ARG.value
RPC_S_ASYNC_CALL_PENDING = codes.RPC_S_ASYNC_CALL_PENDING.value
RPC_S_INVALID_ASYNC_HANDLE = codes.RPC_S_INVALID_ASYNC_HANDLE.value

RPC_C_OPT_BINDING_NONCAUSAL = 9  # rpcdce.h

# How long a transport packet takes when the seeded faults delay one (a retransmission).
RETRANSMIT_SECONDS = 0.05


@dataclass(eq=False)
class AsyncCall:
    """One asynchronous call's RPC_ASYNC_STATE as far as ordering needs it: its number on the
    binding, its event, its status and reply."""

    number: int
    sequence: int
    event: threading.Event = field(default_factory=threading.Event)
    status: int = RPC_S_ASYNC_CALL_PENDING
    reply: int = 0
    dispatched: bool = False
    completed_by_server: bool = False


class OrderedBinding:
    """A binding handle to the test server, its connection and the server's dispatch log."""

    def __init__(self, host: Host, pool: WorkerPool) -> None:
        self.host = host
        self.pool = pool
        self._cond = threading.Condition(threading.Lock())
        self.noncausal = False
        self._next_sequence = 0  # the client stub's next sequence number
        self._dispatch_sequence = 0  # the server's next sequence number to dispatch
        self.calls: list[AsyncCall] = []
        self.log: list[int] = []  # asynchronous calls, by number, in the order dispatched
        # A non-causal binding's packets that reached the server and wait for its receive loop,
        # and how many sent packets are still on the way.
        self._waiting: list[AsyncCall] = []
        self._in_flight = 0
        self._reported = 0  # how much of the log the test server has reported
        self._closed = False

    # --- client side -----------------------------------------------------------------------------

    def RpcBindingSetOption(self, Option: int, OptionValue: int) -> int:
        if Option != RPC_C_OPT_BINDING_NONCAUSAL or self.host.fault("noncausal_option_rejected"):
            return RPC_S_INVALID_ARG
        with self._cond:
            self.noncausal = bool(OptionValue)
        return RPC_S_OK

    def RpcAsyncRegisterInfo(self) -> int:
        """Obsolete (RPC-MISC-01): registers nothing and changes nothing; the headers' RPC_STATUS."""
        return RPC_S_OK

    def TestProc_async(self) -> AsyncCall:
        """The client stub: number the call, send it, return at once (the call is pending)."""
        with self._cond:
            call = AsyncCall(len(self.calls), self._next_sequence)
            self._next_sequence += 1
            self.calls.append(call)
            self._in_flight += 1
        self.pool.submit(lambda: self._arrive(call))
        self.host.pause()
        return call

    def TestProc(self) -> int:
        """A synchronous call on the binding: returns once the server answered; the answer is how
        many asynchronous calls the server had been entered for when this call reached it."""
        with self._cond:
            sequence = self._next_sequence
            self._next_sequence += 1
            if not self.host.fault("sync_call_overtakes"):
                self._wait_turn(sequence)
            before = len(self.log)
            self._take_turn(sequence)
        return before

    def wait_and_complete(self, call: AsyncCall, seconds: float) -> tuple[int, int]:
        """The client thread waits for the call's event and calls RpcAsyncCompleteCall."""
        call.event.wait(seconds)
        with self._cond:
            if call.status == RPC_S_ASYNC_CALL_PENDING:
                return RPC_S_ASYNC_CALL_PENDING, 0
            return call.status, call.reply

    # --- server side -----------------------------------------------------------------------------

    def _wait_turn(self, sequence: int) -> None:
        while not self.noncausal and self._dispatch_sequence < sequence and not self._closed:
            self._cond.wait()

    def _take_turn(self, sequence: int) -> None:
        # A non-causal binding may dispatch a later call first: the sequence moves past the
        # highest number dispatched.
        self._dispatch_sequence = max(self._dispatch_sequence, sequence + 1)
        self._cond.notify_all()

    def _arrive(self, call: AsyncCall) -> None:
        """The call's packet reaches the server: dispatch it in turn and record it."""
        if ((call.sequence == 0 and self.host.fault("dispatch_on_arrival"))
                or self.host.fault("sync_call_overtakes")):
            time.sleep(RETRANSMIT_SECONDS)  # a slow connection: the packet is retransmitted
        with self._cond:
            self._in_flight -= 1
            if self.noncausal:
                # Waits for the server's receive loop (next_dispatched), which takes the newest
                # waiting call first.
                self._waiting.append(call)
                self._cond.notify_all()
                return
            if not self.host.fault("dispatch_on_arrival"):
                self._wait_turn(call.sequence)
            if self._closed:
                return
            self._enter(call)

    def _enter(self, call: AsyncCall) -> None:
        call.dispatched = True
        self.log.append(call.number)  # the manager routine is entered; the server holds it
        self._take_turn(call.sequence)

    def _receive(self) -> bool:
        """A non-causal binding's receive loop: once the connection delivered every packet sent,
        enter the manager routine for the newest waiting call. False if nothing was entered."""
        if self._in_flight or not self._waiting:
            return False
        self._enter(self._waiting.pop())
        return True

    def next_dispatched(self, seconds: float) -> int | None:
        """The next call in the dispatch log the test server has not reported, waiting up to
        `seconds`; None if none came."""
        deadline = time.monotonic() + seconds
        with self._cond:
            while self._reported >= len(self.log):
                if self._receive():
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return None
                self._cond.wait(left)
            number = self.log[self._reported]
            self._reported += 1
            return number

    def server_complete(self, number: int, reply: int) -> int:
        """RpcAsyncCompleteCall on the server handle of held call `number`."""
        with self._cond:
            call = self.calls[number]
            if not call.dispatched or call.completed_by_server:
                return RPC_S_INVALID_ASYNC_HANDLE
            call.completed_by_server = True
            target = call
            if self.host.fault("reply_to_oldest_call"):
                # Replies matched to calls first-in first-out, as if they could not overtake.
                target = next(c for c in self.calls if c.status == RPC_S_ASYNC_CALL_PENDING)
            target.status, target.reply = RPC_S_OK, reply
            target.event.set()
        return RPC_S_OK

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
