"""The adapter's process: its process group, its pipes and reader threads, its stderr tail, killing it.

Nothing here reads the protocol: the stdout reader hands each line (or `Overlong`) to the
connection, and tells it when stdout ends. What stays bounded and unblocked, and how:
* stdout is read by one thread in chunks (`framing.read_lines`), so memory never holds more than
  the line limit plus one chunk;
* stderr is read by another thread into a ring of the last few KB (`Tail`), so a chatty adapter
  never blocks on a full pipe and never fills the harness's memory;
* the program runs in a session of its own, so killing the group also kills what it started (a
  `wine` loader's children, a shell script's program), which would otherwise hold the pipes open.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from callgate.conformance.protocol.adapter import AdapterFault
from callgate.conformance.protocol.jsonl.framing import CHUNK_BYTES, Overlong, read_lines

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
    """One running adapter program, its stdin, and the threads that read its stdout and stderr."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None,
                 cwd: str | None) -> None:
        self.label = shlex.join(argv)
        try:
            # A session of its own: killing the group also kills what the program started.
            self.popen = subprocess.Popen(
                list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                bufsize=0, env=dict(env) if env is not None else None, cwd=cwd,
                start_new_session=True)
        except OSError as exc:
            raise AdapterFault(
                f"cannot start the adapter command {self.label}: {exc.strerror or exc}",
                "check that the program exists and is executable; the command is split like a "
                "shell would split it, but no shell runs it (no pipes, no variables)") from exc
        self.stderr = Tail(STDERR_TAIL_BYTES)
        self._write_lock = threading.Lock()
        self._stderr_thread = threading.Thread(target=self._pump_stderr, daemon=True,
                                               name=f"callgate-adapter-stderr-{self.popen.pid}")
        self._stdout_thread: threading.Thread | None = None

    def start_reading(self, max_line_bytes: int, on_line: Callable[[bytes | Overlong], bool],
                      on_end: Callable[[OSError | None], None]) -> None:
        """Start the readers: each stdout line goes to `on_line` (which returns False to stop
        reading); the end of stdout, or a failed read, goes to `on_end`."""
        self._stdout_thread = threading.Thread(
            target=self._pump_stdout, args=(max_line_bytes, on_line, on_end), daemon=True,
            name=f"callgate-adapter-stdout-{self.popen.pid}")
        self._stderr_thread.start()
        self._stdout_thread.start()

    # --- reading ----------------------------------------------------------------------------

    def _pump_stderr(self) -> None:
        stream = self.popen.stderr
        assert stream is not None
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
        stream = self.popen.stdout
        assert stream is not None
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
        stdin = self.popen.stdin
        assert stdin is not None
        with self._write_lock:
            fd = stdin.fileno()
            while view:
                view = view[os.write(fd, view):]

    def close_stdin(self, last: bytes | None) -> None:
        """Write `last` (if any) and close stdin; a program that is gone already cannot read it,
        which is no error here."""
        stdin = self.popen.stdin
        if stdin is not None:
            with contextlib.suppress(OSError, ValueError), self._write_lock:
                if last is not None:
                    stdin.write(last)
                stdin.close()

    def wait_for(self, done: threading.Event, timeout: float) -> Literal["done", "exited", "hung"]:
        """Wait until `done` is set: "exited" at once if the process is gone, "hung" after
        `timeout` seconds.

        The end of stdout normally reports an exit; but a child the adapter started (a Wine
        server, say) may hold stdout open after the adapter died, so the process is also
        polled while waiting.
        """
        deadline = time.monotonic() + timeout
        while not done.wait(min(POLL_SECONDS, max(0.0, deadline - time.monotonic()))):
            if self.popen.poll() is not None:
                if done.wait(POLL_SECONDS):  # what it wrote before exiting
                    return "done"
                return "exited"
            if time.monotonic() >= deadline:
                return "hung"
        return "done"

    # --- stopping ---------------------------------------------------------------------------

    def exit_code(self, *, exited: bool) -> int | None:
        """The exit code, or None while it runs; if it is known to have `exited`, wait for it."""
        if not exited:
            return self.popen.poll()
        try:
            return self.popen.wait(EXIT_GRACE)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Kill the whole process group: the program and whatever it started."""
        with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
            os.killpg(self.popen.pid, signal.SIGKILL)
        # A process in uninterruptible sleep outlives SIGKILL for a while: its daemon readers
        # are left behind rather than blocking the run.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(EXIT_GRACE)

    def end(self, grace: float) -> None:
        """Give the program `grace` seconds to exit, then kill the group (also after a clean exit:
        whatever it left running in its group), and let the readers finish."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(grace)
        self.kill()
        self.join_readers()

    def join_stderr(self) -> None:
        """Let the stderr reader take the last bytes of a process that is gone."""
        self._stderr_thread.join(STDERR_GRACE)

    def join_readers(self) -> None:
        if self._stdout_thread is not None:
            self._stdout_thread.join(STDERR_GRACE)
        self._stderr_thread.join(STDERR_GRACE)
