"""The harness's side of the reapers: the server that forks them, the link to each, and what they report.

`reaper.py` is the program (its docstring says why a child subreaper, and what it says on its
control socket); this module starts it and speaks to it. `ReaperServer` is the one server of a
harness process; `ReaperLink` is the harness's end of one adapter's reaper; `Orphan` is a process
an adapter left behind, which its reaper ended; `SharedProcess` names the processes an adapter
starts on purpose to serve others too, which are left running. `process.AdapterProcess` uses them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from callgate.conformance.protocol.jsonl import reaper
from callgate.conformance.protocol.jsonl.framing import CHUNK_BYTES

# Whether adapters run under a reaper that ends their orphans: Linux has child subreapers.
ORPHANS_ENDED = sys.platform.startswith("linux")
REAPER = Path(reaper.__file__)
# How long a reaper may take to start the adapter (the first one also waits for the server to
# start), and to end it and its orphans beyond the grace the adapter is given (a SIGKILLed
# adapter, its group, then SIGTERM and SIGKILL rounds).
REAPER_START = 10.0
REAPER_END = reaper.EXIT_GRACE + reaper.GROUP_GRACE + reaper.ORPHAN_DEADLINE + 2.0
# How many orphans the evidence of a fault names one by one.
ORPHANS_IN_EVIDENCE = 5
# How long to wait for the server to exit once its socket is closed.
SERVER_EXIT_GRACE = 2.0


@dataclass(frozen=True)
class SharedProcess:
    """A kind of process an adapter starts on purpose to serve others too, left running when the
    adapter ends: shell-style patterns on the real path of its executable (/proc/PID/exe) and on
    the first word of its command line. Wine's `wineserver` serves every Wine process of a prefix,
    also another run's, and ends by itself after the last one."""

    executable: str = "*"
    argv0: str = "*"

    def matches(self, executable: str, argv0: str) -> bool:
        return reaper.is_shared([(self.executable, self.argv0)], executable, argv0)


@dataclass(frozen=True)
class Orphan:
    """A descendant still running after its adapter ended, which callgate ended."""

    pid: int
    command: str  # its command line, cut to 200 characters
    signal: str  # the last signal it was sent: SIGTERM, or SIGKILL if it outlived SIGTERM
    ended: bool = True  # False if it was still there when callgate gave up on it

    def describe(self) -> str:
        ended = "" if self.ended else ", still running when callgate gave up"
        return f"pid {self.pid} ({self.command}) by {self.signal}{ended}"


def describe_orphans(orphans: Sequence[Orphan]) -> str:
    """One line for the evidence: how many, and the first few."""
    if not orphans:
        return ""
    named = "; ".join(o.describe() for o in orphans[:ORPHANS_IN_EVIDENCE])
    more = f"; and {len(orphans) - ORPHANS_IN_EVIDENCE} more" \
        if len(orphans) > ORPHANS_IN_EVIDENCE else ""
    noun = "process" if len(orphans) == 1 else "processes"
    return f"the adapter left behind {len(orphans)} {noun} that callgate ended: {named}{more}"


class ReaperServer:
    """The harness's reaper server (`reaper.py --server`), which forks a reaper for each adapter.

    One per harness process, started on first use (`ReaperServer.get`), again if it died, and
    anew in a process the harness forks; it ends when the harness closes its socket, at exit or
    at death.
    """

    _current: ReaperServer | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # Its own session: the terminal's Ctrl-C goes to the harness, which then ends the
            # adapters in order; the server and reapers see the harness go, and end the rest.
            self.popen = subprocess.Popen(
                [sys.executable, "-I", "-S", str(REAPER), "--server"], stdin=theirs.fileno(),
                stdout=subprocess.DEVNULL, start_new_session=True)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours

    @classmethod
    def get(cls, *, broken: ReaperServer | None = None) -> ReaperServer:
        """The running server; a new one if there is none, if it exited, or if it is `broken`
        (a spawn failed)."""
        with cls._lock:
            server = cls._current
            if server is None or server is broken or server.popen.poll() is not None:
                if server is not None:
                    server.close()
                server = cls._current = ReaperServer()
            return server

    @classmethod
    def close_current(cls) -> None:
        with cls._lock:
            server, cls._current = cls._current, None
        if server is not None:
            server.close()

    def spawn(self, pipes: Sequence[int], control: int) -> None:
        """Hand the server an adapter's stdin, stdout and stderr, and its reaper's control
        socket; OSError if the server is gone."""
        socket.send_fds(self.sock, [reaper.SPAWN], [*pipes, control])

    def close(self) -> None:
        """Close the socket: the server exits (the reapers it forked run on to their end)."""
        self.sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(SERVER_EXIT_GRACE)

    @classmethod
    def forget_in_child(cls) -> None:
        """In a process the harness forked: the parent's server is not ours; let go of its socket
        so that it still ends with the parent."""
        server, cls._current, cls._lock = cls._current, None, threading.Lock()
        if server is not None:
            server.sock.close()


if ORPHANS_ENDED:
    atexit.register(ReaperServer.close_current)
    os.register_at_fork(after_in_child=ReaperServer.forget_in_child)


class ReaperLink:
    """The harness's end of a reaper's control socket: what the reaper said, and asking it to end.

    The lines are those of `reaper.py`'s docstring. If the socket closes before `ended` (the
    reaper died: something killed it), every event is set and `lost` says so.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.adapter_pid = 0
        self.reaper_pid = 0
        self.subreaper = False
        self.start_error = ""  # the reaper could not start the adapter: why
        self.exit_code: int | None = None
        self.orphans: tuple[Orphan, ...] = ()
        self._found: list[Orphan] = []
        self.lost = False
        self.started = threading.Event()
        self.exited = threading.Event()
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True,
                                        name="callgate-adapter-reaper")
        self._thread.start()

    def _read(self) -> None:
        pending = b""
        try:
            while data := self.sock.recv(CHUNK_BYTES):
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    self._take(line.decode("utf-8", "replace"))
        except OSError:
            pass  # as good as the end of the socket
        finally:
            self.lost = not self.ended.is_set()
            for event in (self.started, self.exited, self.ended):
                event.set()
            self.sock.close()

    def _take(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        if word == "started":
            pid, subreaper, reaper_pid = rest.split()
            self.adapter_pid, self.subreaper = int(pid), subreaper == "1"
            self.reaper_pid = int(reaper_pid)
            self.started.set()
        elif word == "failed":
            self.start_error = rest.partition(" ")[2] or "unknown error"
            self.started.set()
        elif word == "exited":
            self.exit_code = int(rest)
            self.exited.set()
        elif word == "orphan":
            pid, signal_name, ended, command = [*rest.split(" ", 3), ""][:4]
            self._found.append(Orphan(int(pid), command, signal_name, ended == "1"))
        elif word == "ended":
            self.orphans = tuple(self._found)
            self.ended.set()

    def close(self) -> None:
        """End the conversation: the reaper takes it as `end 0`."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def kill_reaper(self) -> None:
        """SIGKILL a reaper that does not answer; only while its socket is open, which proves
        that it is alive and that its pid is still its own."""
        if not self.lost and self.reaper_pid > 0:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.reaper_pid, signal.SIGKILL)

    def request_end(self, grace: float) -> None:
        with contextlib.suppress(OSError):  # the reaper is gone: `lost` says so
            self.sock.sendall(f"end {grace:.3f}\n".encode())
