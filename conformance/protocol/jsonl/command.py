"""The adapter program as an `Adapter`: its command line, its (re)starts, and its session numbers.

`CommandAdapter` is a `callgate.conformance.protocol.adapter.Adapter` like any in-process one, so
the runner and the gate do not know the difference. What it adds is survival: after any fault
the process is killed (`connection`), and the next `open_session` starts a fresh one, with a
fresh handshake that must declare the same capabilities, so the run goes on with the next case.
Whatever a process leaves behind when it ends is ended too (`process`, `reaping`), and counted in
`orphans`, so that a report can say so.
"""

from __future__ import annotations

import os
import shlex
import sys
import threading
from collections.abc import Mapping, Sequence

from callgate.conformance.protocol.adapter import AdapterFault, Capabilities, SlotSpec
from callgate.conformance.protocol.jsonl import handshake
from callgate.conformance.protocol.jsonl.connection import Connection
from callgate.conformance.protocol.jsonl.framing import DEFAULT_MAX_LINE_BYTES
from callgate.conformance.protocol.jsonl.process import EXIT_GRACE
from callgate.conformance.protocol.jsonl.reaping import ORPHANS_ENDED, Orphan, SharedProcess
from callgate.conformance.protocol.jsonl.session import CommandSession

PYTHON_NAMES = ("python", "python3")


class CommandAdapter:
    """An adapter program, started on first use, spoken to in JSON lines (docs/adapter-protocol.md).

    `command` is a command line (split like a shell would, without running a shell) or an
    argument list; a command that starts with `python` or `python3` runs with the harness's
    own interpreter (`sys.executable`). `request_timeout` bounds each open, request and close
    (a request may also wait its `wait_ms`); `start_timeout` bounds starting the program and
    its handshake.
    `max_line_bytes` is the longest line the adapter may write. `env` and `cwd` are the
    program's environment and working directory.

    After any fault the process is killed; the next `open_session` starts a new one, which must
    declare the same capabilities. `starts` counts the processes started.

    When a process ends (shutdown, a fault, a hang), every process it left behind is ended, even
    one that left its group with `setsid()`; `orphans` lists them (`orphans_killed` counts them)
    over every process this adapter started. `shared` names processes the program starts on
    purpose to serve others too (Wine's `wineserver`), which are left running. `orphans_checked`
    is False where the OS cannot find orphans (no child subreaper: not Linux).
    """

    def __init__(self, command: str | Sequence[str], *, request_timeout: float = 10.0,
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, env: Mapping[str, str] | None = None,
                 cwd: str | os.PathLike[str] | None = None, start_timeout: float = 30.0,
                 shared: Sequence[SharedProcess] = ()) -> None:
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not argv:
            raise ValueError("the adapter command is empty: pass a program and its arguments, "
                             "e.g. 'python -m callgate.conformance.implementations.reference.serve'")
        if argv[0] in PYTHON_NAMES:
            # The harness's own interpreter: the environment callgate is installed in is the
            # one `python -m callgate.conformance.implementations.reference.serve` needs, activated or not.
            argv[0] = sys.executable
        if request_timeout <= 0 or start_timeout <= 0:
            raise ValueError(f"timeouts must be positive seconds; got request_timeout="
                             f"{request_timeout}, start_timeout={start_timeout}")
        if max_line_bytes < 1024:
            raise ValueError(f"max_line_bytes must be at least 1024, got {max_line_bytes}: a "
                             f"handshake alone may need hundreds of bytes")
        self.argv = tuple(argv)
        self.request_timeout = request_timeout
        self.start_timeout = start_timeout
        self.max_line_bytes = max_line_bytes
        self.env = env
        self.cwd = os.fspath(cwd) if cwd is not None else None
        self.shared = tuple(shared)
        self.starts = 0
        self.orphans: list[Orphan] = []
        self.orphans_checked = ORPHANS_ENDED
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._capabilities: Capabilities | None = None
        self._next_session = 0

    def __repr__(self) -> str:
        return f"CommandAdapter({shlex.join(self.argv)!r})"

    def _live(self) -> Connection:
        """The running connection, starting a process (and its handshake) when there is none."""
        with self._lock:
            connection = self._connection
            if connection is not None and connection.usable:
                return connection
            if connection is not None:
                self._end(connection, 0)  # dead already: reap it and its readers
                self._connection = None
            connection = Connection(self.argv, env=self.env, cwd=self.cwd,
                                    max_line_bytes=self.max_line_bytes, shared=self.shared)
            self.starts += 1
            try:
                capabilities = connection.start(self.start_timeout)
            except AdapterFault:
                self._end(connection, 0)
                raise
            if self._capabilities is None:
                self._capabilities = capabilities
            else:
                changed = handshake.changed_on_restart(self._capabilities, capabilities)
                if changed is not None:
                    self._end(connection, 0)
                    raise changed
            self._connection = connection
            return connection

    def _end(self, connection: Connection, grace: float) -> None:
        """Shut a connection down and keep the count of what its process left behind."""
        connection.shutdown(grace)
        self.orphans.extend(connection.process.orphans)
        if not connection.process.orphans_checked:
            self.orphans_checked = False

    @property
    def orphans_killed(self) -> int:
        """How many processes left behind by this adapter's processes callgate had to end."""
        return len(self.orphans)

    def capabilities(self) -> Capabilities:
        self._live()
        assert self._capabilities is not None
        return self._capabilities

    def open_session(self, slots: Sequence[SlotSpec]) -> CommandSession:
        connection = self._live()
        with self._lock:
            self._next_session += 1
            session = self._next_session
        return CommandSession.open(connection, session, slots, self.request_timeout)

    def shutdown(self) -> None:
        """Send shutdown, wait briefly for the program to exit, then kill it."""
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            self._end(connection, EXIT_GRACE)
