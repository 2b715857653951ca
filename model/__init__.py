"""The formal model (import name `callgate.model`): codes, rules, the table language, the family
tables, invariants, obligations, proofs and the state-graph explorer.

The model never imports the harness (`callgate.conformance`). Its modules are internal; the
supported names are those of `callgate` itself.
"""
