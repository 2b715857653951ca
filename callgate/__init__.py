"""callgate: a formal model of COM asynchronous calls and asynchronous RPC, and a conformance gate.

This module is the public face: the names a vendor's adapter and CI need. Everything else under
`callgate.model` and `callgate.conformance` is internal and may move between releases.
"""
