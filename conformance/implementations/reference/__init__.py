"""The reference implementation: a real concurrent COM call-object and asynchronous RPC runtime.

DESIGN.md principle 7: written from spec/DOMAIN.md with threads, locks and events, and tested by
the suite like any vendor's implementation. It never consults the model (only `callgate.model.codes`, for
the values of return codes).

Modules:
  host      worker threads, harness-to-server mailboxes, jitter, seeded faults (mutants)
  kernel    Win32-like events, waits, per-thread APC and message queues, completion ports, windows
  com       system events, ISynchronizeContainer, call objects, ICancelMethodCalls, test server
  rpc       RPC_ASYNC_STATE, the RPC runtime (client stub, server dispatch, notifications)
  rpc_client  the client application's notification resources and waits
  adapter   the built-in adapter `reference`
            (callgate.conformance.implementations.reference.adapter:ReferenceAdapter)
"""
