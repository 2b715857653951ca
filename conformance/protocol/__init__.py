"""The adapter protocol: what an implementation offers the harness, in process or as a program
speaking JSON lines, and how an adapter is found by name."""
