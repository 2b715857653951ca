"""Recorded traces: their format, the recorder of a gate run, and the checker (docs/traces.md)."""
