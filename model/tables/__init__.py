"""The family tables, data only: each module declares a `Machine` whose rows cite rule IDs.

com_call (COM call objects), sync_object (system events and containers), rpc_handle
(asynchronous RPC calls); shared holds outcome groups several tables use, table the short row
constructors they are written with.
"""
