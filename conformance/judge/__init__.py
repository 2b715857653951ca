"""Judging: running a case step by step against the model's sets of allowed outcomes, calls into
adapters that may hang, and linearizability of concurrent histories."""
