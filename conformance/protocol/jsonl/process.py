"""The adapter's process: its reaper, its pipes and reader threads, its stderr tail, ending it and orphans.

Nothing here reads the protocol: the stdout reader hands each line (or `Overlong`) to the
connection, and tells it when stdout ends. What stays bounded and unblocked, and how:
* stdout is read by one thread in chunks (`framing.read_lines`), so memory never holds more than
  the line limit plus one chunk;
* stderr is read by another thread into a ring of the last few KB (`Tail`), so a chatty adapter
  never blocks on a full pipe and never fills the harness's memory;
* the program runs in a session of its own, so killing the group also kills what it started (a
  `wine` loader's children, a shell script's program), which would otherwise hold the pipes open;
* on Linux the program is started by a reaper of its own (`reaper.py`, a child subreaper; its
  docstring says why that mechanism), which outlives it: when the adapter ends (shutdown, a
  fault, a hang), the reaper ends every descendant the adapter left behind, even one that escaped
  its group with `setsid()`, and reports each as an `Orphan`. The reaper also ends everything
  when the harness itself dies, since its end of the control socket then closes. Processes an
  adapter shares on purpose with others (`SharedProcess`, such as Wine's `wineserver`) are left
  running. The reapers are forked by one `ReaperServer` per harness process, started on first
  use, so that an adapter start does not pay for a Python start.
  Elsewhere (`ORPHANS_ENDED` is False) the program is started directly and only its group is
  killed, as before.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from callgate.conformance.protocol.adapter import AdapterFault
from callgate.conformance.protocol.jsonl import reaper
from callgate.conformance.protocol.jsonl.framing import CHUNK_BYTES, Overlong, read_lines

# How much of stderr goes into the evidence of a fault.
STDERR_TAIL_BYTES = 4096
# How long to wait for a process to exit after its stdout closed or after `shutdown`, and for
# the stderr reader to take the last bytes a crashing process wrote.
EXIT_GRACE = 2.0
STDERR_GRACE = 1.0
# How often a waiting request checks that the process still runs.
POLL_SECONDS = 0.25
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


def describe_exit(code: int | None) -> str:
    """An exit status as people read it."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-code} ({name})"
    return f"exited with code {code}"


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


class Tail:
    """The last `limit` bytes written to a stream, and how many bytes there were in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._data = bytearray()
        self._lock = threading.Lock()

    def add(self, chunk: bytes) -> None:
        with self._lock:
            self.total += len(chunk)
            self._data += chunk[-self.limit:]
            if len(self._data) > self.limit:
                del self._data[:len(self._data) - self.limit]

    def text(self) -> str:
        with self._lock:
            return self._data.decode("utf-8", "replace")


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if pid > 0:
            os.kill(pid, signal.SIGKILL)


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
            self.popen.wait(EXIT_GRACE)

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

    def request_end(self, grace: float) -> None:
        with contextlib.suppress(OSError):  # the reaper is gone: `lost` says so
            self.sock.sendall(f"end {grace:.3f}\n".encode())


class AdapterProcess:
    """One running adapter program, under its reaper where there is one (`ORPHANS_ENDED`), its
    stdin, and the threads that read its stdout and stderr."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None,
                 cwd: str | None, shared: Sequence[SharedProcess] = ()) -> None:
        self.label = shlex.join(argv)
        self.orphans: tuple[Orphan, ...] = ()  # known once the process has ended
        self.popen: subprocess.Popen[bytes] | None = None  # without a reaper only
        self._link: ReaperLink | None = None
        self._end_lock = threading.Lock()
        self._ended = False
        self.pid: int  # the adapter's
        self._stdin: IO[bytes]
        self._stdout: IO[bytes]
        self._stderr: IO[bytes]
        if ORPHANS_ENDED:
            self._stdin, self._stdout, self._stderr = self._start_reaped(argv, env, cwd, shared)
            assert self._link is not None
            self.pid = self._link.adapter_pid
        else:
            self.popen = self._start_direct(argv, env, cwd)
            assert self.popen.stdin and self.popen.stdout and self.popen.stderr
            self._stdin, self._stdout, self._stderr = \
                self.popen.stdin, self.popen.stdout, self.popen.stderr
            self.pid = self.popen.pid
        self.stderr = Tail(STDERR_TAIL_BYTES)
        self._write_lock = threading.Lock()
        self._stderr_thread = threading.Thread(target=self._pump_stderr, daemon=True,
                                               name=f"callgate-adapter-stderr-{self.pid}")
        self._stdout_thread: threading.Thread | None = None

    def _cannot_start(self, why: str) -> AdapterFault:
        return AdapterFault(
            f"cannot start the adapter command {self.label}: {why}",
            "check that the program exists and is executable; the command is split like a "
            "shell would split it, but no shell runs it (no pipes, no variables)")

    def _start_direct(self, argv: Sequence[str], env: Mapping[str, str] | None,
                      cwd: str | None) -> subprocess.Popen[bytes]:
        try:
            # A session of its own: killing the group also kills what the program started.
            return subprocess.Popen(
                list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, bufsize=0, env=dict(env) if env is not None else None,
                cwd=cwd, start_new_session=True)
        except OSError as exc:
            raise self._cannot_start(exc.strerror or str(exc)) from exc

    def _start_reaped(self, argv: Sequence[str], env: Mapping[str, str] | None,
                      cwd: str | None, shared: Sequence[SharedProcess],
                      ) -> tuple[IO[bytes], IO[bytes], IO[bytes]]:
        """Have a reaper start the program on three new pipes; our ends of the pipes."""
        request = {"argv": list(argv), "env": dict(os.environ if env is None else env),
                   "cwd": os.path.abspath(cwd if cwd is not None else os.curdir),
                   "shared": [[s.executable, s.argv0] for s in shared]}
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        ours, theirs = socket.socketpair()
        try:
            try:
                server = ReaperServer.get()
                try:
                    server.spawn((stdin_r, stdout_w, stderr_w), theirs.fileno())
                except OSError:  # the server died since its last spawn: once more, with another
                    ReaperServer.get(broken=server).spawn((stdin_r, stdout_w, stderr_w),
                                                          theirs.fileno())
            except OSError as exc:
                for fd in (stdin_w, stdout_r, stderr_r):
                    os.close(fd)
                ours.close()
                raise AdapterFault(
                    f"cannot start the adapter command {self.label}: callgate's reaper server "
                    f"({sys.executable} -I -S {REAPER} --server) failed: {exc}",
                    "the reaper ends what an adapter leaves behind; check that the Python "
                    "running callgate can start itself") from exc
            with contextlib.suppress(OSError):  # the reaper died at once: seen as `lost` below
                ours.sendall(json.dumps(request).encode() + b"\n")
        finally:
            for fd in (stdin_r, stdout_w, stderr_w):
                os.close(fd)  # the reaper has its copies, and the adapter will
            theirs.close()
        self._link = ReaperLink(ours)
        pipes = (os.fdopen(stdin_w, "wb", buffering=0), os.fdopen(stdout_r, "rb", buffering=0),
                 os.fdopen(stderr_r, "rb", buffering=0))
        self._link.started.wait(REAPER_START)
        if self._link.adapter_pid:
            return pipes
        for pipe in pipes:
            pipe.close()
        self._link.close()  # a reaper that starts late sees the end at once, and ends it all
        if self._link.start_error:
            raise self._cannot_start(self._link.start_error)
        raise AdapterFault(
            f"cannot start the adapter command {self.label}: callgate's reaper did not start it "
            f"within {REAPER_START:g} s",
            f"the reaper is forked by {sys.executable} -I -S {REAPER} --server; is the machine "
            f"overloaded?")

    def start_reading(self, max_line_bytes: int, on_line: Callable[[bytes | Overlong], bool],
                      on_end: Callable[[OSError | None], None]) -> None:
        """Start the readers: each stdout line goes to `on_line` (which returns False to stop
        reading); the end of stdout, or a failed read, goes to `on_end`."""
        self._stdout_thread = threading.Thread(
            target=self._pump_stdout, args=(max_line_bytes, on_line, on_end), daemon=True,
            name=f"callgate-adapter-stdout-{self.pid}")
        self._stderr_thread.start()
        self._stdout_thread.start()

    # --- reading ----------------------------------------------------------------------------

    def _pump_stderr(self) -> None:
        stream = self._stderr
        fd = stream.fileno()
        try:
            while chunk := os.read(fd, CHUNK_BYTES):
                self.stderr.add(chunk)
        except OSError:
            pass  # the pipe broke with the process; what was read is kept
        finally:
            stream.close()

    def _pump_stdout(self, max_line_bytes: int, on_line: Callable[[bytes | Overlong], bool],
                     on_end: Callable[[OSError | None], None]) -> None:
        stream = self._stdout
        fd = stream.fileno()
        try:
            for item in read_lines(lambda n: os.read(fd, n), max_line_bytes):
                if not on_line(item):
                    return
            on_end(None)
        except OSError as exc:
            on_end(exc)
        finally:
            stream.close()

    def stderr_evidence(self) -> str:
        """The stderr tail for the evidence of a fault."""
        tail = self.stderr.text()
        if not tail:
            return "stderr: (empty)"
        more = f"last {STDERR_TAIL_BYTES} of {self.stderr.total} bytes" \
            if self.stderr.total > STDERR_TAIL_BYTES else f"{self.stderr.total} bytes"
        return f"stderr ({more}):\n{tail}"

    # --- writing and waiting ----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Write all of `data` to stdin, whole with respect to other writers; OSError or
        ValueError if the program no longer reads it."""
        view = memoryview(data)
        with self._write_lock:
            fd = self._stdin.fileno()
            while view:
                view = view[os.write(fd, view):]

    def close_stdin(self, last: bytes | None) -> None:
        """Write `last` (if any) and close stdin; a program that is gone already cannot read it,
        which is no error here."""
        with contextlib.suppress(OSError, ValueError), self._write_lock:
            if last is not None:
                self._stdin.write(last)
            self._stdin.close()

    def running(self) -> bool:
        """True until the adapter is known to have exited (or its reaper is gone)."""
        if self.popen is not None:
            return self.popen.poll() is None
        assert self._link is not None
        return not self._link.exited.is_set()

    def wait_for(self, done: threading.Event, timeout: float) -> Literal["done", "exited", "hung"]:
        """Wait until `done` is set: "exited" at once if the process is gone, "hung" after
        `timeout` seconds.

        The end of stdout normally reports an exit; but a child the adapter started (a Wine
        server, say) may hold stdout open after the adapter died, so the process is also
        polled while waiting.
        """
        deadline = time.monotonic() + timeout
        while not done.wait(min(POLL_SECONDS, max(0.0, deadline - time.monotonic()))):
            if not self.running():
                if done.wait(POLL_SECONDS):  # what it wrote before exiting
                    return "done"
                return "exited"
            if time.monotonic() >= deadline:
                return "hung"
        return "done"

    # --- stopping ---------------------------------------------------------------------------

    def exit_code(self, *, exited: bool) -> int | None:
        """The exit code, or None while it runs; if it is known to have `exited`, wait for it."""
        if self.popen is not None:
            if not exited:
                return self.popen.poll()
            try:
                return self.popen.wait(EXIT_GRACE)
            except subprocess.TimeoutExpired:
                return None
        assert self._link is not None
        if exited:
            self._link.exited.wait(EXIT_GRACE)
        return self._link.exit_code

    def kill(self) -> None:
        """Kill the program and its group now, and end whatever it left behind."""
        self._finish(0.0)

    def end(self, grace: float) -> None:
        """Give the program `grace` seconds to exit, then kill it and its group; end whatever it
        left behind (what still runs once it is gone, in its group or not); let the readers
        finish."""
        self._finish(grace)
        self.join_readers()

    def _finish(self, grace: float) -> None:
        """The one end of the process, whoever asks first; a second caller waits for it."""
        with self._end_lock:
            if self._ended:
                return
            self._ended = True
            if self.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(grace)
                self._kill_group()
                # A process in uninterruptible sleep outlives SIGKILL for a while: its daemon
                # readers are left behind rather than blocking the run.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(EXIT_GRACE)
                return
            link = self._link
            assert link is not None
            link.request_end(grace)
            if not link.ended.wait(grace + REAPER_END) or link.lost:
                # The reaper is gone, or stuck: end what can still be reached, as the harness did
                # without one (the evidence says what may be left). A reaper whose socket is
                # open is alive, so its pid is still its own; an adapter it reported as exited
                # was reaped, so its pid may be another's by now.
                if not link.lost:
                    _kill(link.reaper_pid)
                if link.exit_code is None:
                    self._kill_group()
            link.close()
            self.orphans = link.orphans

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
            os.killpg(self.pid, signal.SIGKILL)

    @property
    def orphans_checked(self) -> bool:
        """True if a reaper that is a child subreaper ran the adapter to its end."""
        return self._link is not None and self._link.subreaper and not self._link.lost

    def orphans_evidence(self) -> str:
        """What the adapter left behind, for the evidence of a fault; empty if nothing."""
        if self._link is not None and self._link.lost:
            return ("callgate's reaper for this adapter ended before the adapter did (did the "
                    "adapter kill it?): what the adapter left behind may still run")
        return describe_orphans(self.orphans)

    def join_stderr(self) -> None:
        """Let the stderr reader take the last bytes of a process that is gone."""
        self._stderr_thread.join(STDERR_GRACE)

    def join_readers(self) -> None:
        if self._stdout_thread is not None:
            self._stdout_thread.join(STDERR_GRACE)
        self._stderr_thread.join(STDERR_GRACE)
