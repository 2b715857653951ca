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
  use, so that an adapter start does not pay for a Python start (`reaping`).
  Elsewhere (`ORPHANS_ENDED` is False) the program is started directly and only its group is
  killed, as before.
"""

from __future__ import annotations

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
from typing import IO, Literal

from callgate.conformance.protocol.adapter import AdapterFault
from callgate.conformance.protocol.jsonl.framing import CHUNK_BYTES, Overlong, read_lines
from callgate.conformance.protocol.jsonl.reaping import (
    ORPHANS_ENDED,
    REAPER,
    REAPER_END,
    REAPER_START,
    Orphan,
    ReaperLink,
    ReaperServer,
    SharedProcess,
    describe_orphans,
)

# How much of stderr goes into the evidence of a fault.
STDERR_TAIL_BYTES = 4096
# How long to wait for a process to exit after its stdout closed or after `shutdown`, and for
# the stderr reader to take the last bytes a crashing process wrote.
EXIT_GRACE = 2.0
STDERR_GRACE = 1.0
# How often a waiting request checks that the process still runs.
POLL_SECONDS = 0.25


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
                    link.kill_reaper()
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
