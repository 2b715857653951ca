"""The reference asynchronous pipes: spec/DOMAIN.md section 2.19, and RPC-STATE-04.

Written from the rules, not from the model. One `PipeCall` is an asynchronous call of a procedure
with one `[in]` and one `[out]` asynchronous pipe, both ends in one object: the client's push
queues elements for the server (RPC-PIPE-02; the buffer is copied, so the caller may reuse it at
once) and a 0-length push ends the stream; the server's pull takes them. The server's push queues
elements for the client's pull, which returns RPC_S_ASYNC_CALL_PENDING while nothing is there
(RPC-PIPE-03). The pipes are used in order: the whole `[in]` pipe, then the `[out]` pipe. An
operation out of that order, or a completion before the `[in]` pipe is drained, fails with
RPC_X_WRONG_PIPE_ORDER (the reference's reading of D-16's "pipe-filling error"); a failed client
push, pull or completion ends the call, and nothing more is needed to clean it up (RPC-PIPE-05).
With RPC_C_NOTIFY_ON_SEND_COMPLETE the client's event is set after each push is sent
(RPC-STATE-04).
"""

from __future__ import annotations

import threading
from collections import deque

from callgate.conformance.implementations.reference.host import Host
from callgate.model import codes

RPC_S_OK = codes.RPC_S_OK.value
RPC_S_ASYNC_CALL_PENDING = codes.RPC_S_ASYNC_CALL_PENDING.value
RPC_X_WRONG_PIPE_ORDER = codes.RPC_X_WRONG_PIPE_ORDER.value
PIPE_ERROR = RPC_X_WRONG_PIPE_ORDER
RPC_C_NOTIFY_ON_SEND_COMPLETE = 0x1

END = None  # the end-of-stream marker in a pipe's queue


class PipeCall:
    """One asynchronous call with an `[in]` and an `[out]` pipe, client and server ends."""

    def __init__(self, host: Host, Flags: int) -> None:
        self.host = host
        self.Flags = Flags
        self._lock = threading.Lock()
        self.send_complete = threading.Event()  # the client's event for send-complete
        self._in: deque[int | None] = deque()
        self._out: deque[int | None] = deque()
        self.in_ended = False
        self.in_drained = False
        self.out_ended = False  # the client pulled the end
        self.server_done = False
        self.over = False  # completed, or failed

    def _fail(self) -> int:
        self.over = True
        return PIPE_ERROR

    # --- client ----------------------------------------------------------------------------------

    def push(self, buf: list[int]) -> int:
        with self._lock:
            if self.in_ended and not self.host.fault("pipe_push_after_end_accepted"):
                return self._fail()
            self._in.extend(buf)
            if not buf and not self.host.fault("pipe_zero_push_ignored"):
                self._in.append(END)
                self.in_ended = True
        at_end_only = self.host.fault("send_complete_at_end_only")
        if self.Flags & RPC_C_NOTIFY_ON_SEND_COMPLETE and (not buf or not at_end_only):
            self.send_complete.set()
        return RPC_S_OK

    def pull(self, buf: list[int], count: int) -> tuple[int, int]:
        """Up to `count` elements into `buf`; the code and how many came (0 at the end)."""
        with self._lock:
            if not self.in_ended:
                return self._fail(), 0
            if not self._out:
                if self.host.fault("pipe_pull_empty_ends"):
                    self.out_ended = True
                    return RPC_S_OK, 0
                return RPC_S_ASYNC_CALL_PENDING, 0
            taken = 0
            while self._out and taken < count:
                item = self._out.popleft()
                if item is END:
                    self.out_ended = True
                    break
                buf.append(item)
                taken += 1
            return RPC_S_OK, taken

    def RpcAsyncCompleteCall(self) -> int:
        with self._lock:
            if not self.in_ended:
                return self._fail()
            if not self.server_done:
                return RPC_S_ASYNC_CALL_PENDING
            self.over = True
            return RPC_S_OK

    # --- server ----------------------------------------------------------------------------------

    def server_drain(self) -> int:
        with self._lock:
            while self._in:
                if self._in.popleft() is END:
                    self.in_drained = True
            return RPC_S_OK

    def server_push(self, buf: list[int]) -> int:
        with self._lock:
            self._out.extend(buf)
            if not buf:
                self._out.append(END)
            return RPC_S_OK

    def server_complete(self) -> int:
        with self._lock:
            if not self.in_drained and not self.host.fault("pipe_complete_undrained"):
                return PIPE_ERROR
            self.server_done = True
            return RPC_S_OK
