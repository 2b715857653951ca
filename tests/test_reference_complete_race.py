"""The reference adapter's RpcAsyncCompleteCall when an AsyncCall on another thread puts a call on
the handle while the completion is on its way (a parallel case saw this once in several runs):
a final status is a completed call, so it carries the outputs every completion has (the model's
`resources_open`, RPC-CLI-COMPLETE-10), whatever the handle held when the request came in."""

from __future__ import annotations

from typing import Any

from callgate.conformance.cases.slots import default_slot
from callgate.conformance.implementations.reference import rpc
from callgate.conformance.implementations.reference.adapter import ReferenceAdapter
from callgate.conformance.protocol.adapter import Request


def _complete_while_a_call_arrives(racing: bool) -> tuple[int, dict[str, Any]]:
    adapter = ReferenceAdapter()
    session: Any = adapter.open_session((default_slot("r0"),))
    try:
        session.perform(Request("r0", "RpcAsyncInitializeHandle", {"size": "exact"}))
        real = session.runtime.RpcAsyncCompleteCall

        def complete(pAsync: Any, reply: Any) -> int:
            if racing:  # the other branch's AsyncCall and abortive cancel land just now
                session.perform(Request("r0", "AsyncCall", {
                    "notify": "None", "binding": "good", "hThread": "explicit"}))
                session.perform(Request("r0", "RpcAsyncCancelCall", {"abort": True}))
            return int(real(pAsync, reply))

        session.runtime.RpcAsyncCompleteCall = complete
        seen = session.perform(Request("r0", "RpcAsyncCompleteCall", {}))
        return seen.code, dict(seen.outputs)
    finally:
        session.close()
        adapter.shutdown()


def test_a_completion_racing_with_the_call_it_completes_has_the_completion_outputs() -> None:
    code, outputs = _complete_while_a_call_arrives(racing=True)
    assert code == rpc.RPC_S_CALL_CANCELLED
    assert outputs.get("resources_open") is True


def test_a_completion_with_no_call_has_no_outputs() -> None:
    code, outputs = _complete_while_a_call_arrives(racing=False)
    assert code == rpc.RPC_S_INVALID_ASYNC_HANDLE
    assert outputs == {}
