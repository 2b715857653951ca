"""The reaper: a supervisor, one per adapter process, that ends every process the adapter leaves behind.

    python -I -S reaper.py --server

Why a supervisor that is a child subreaper (Linux, `prctl(PR_SET_CHILD_SUBREAPER)`):
* Killing the adapter's process group misses a descendant that leaves the group with `setsid()`
  or `setpgid()`; when its parent dies it is re-parented to init, and nothing links it to the
  adapter any more. So does scanning /proc for processes whose session, group or parent chain
  leads to the adapter: `setsid()` and a double fork erase every one of those links.
* A child subreaper keeps the link that cannot be erased: an orphan is re-parented to its
  nearest living ancestor that is a subreaper instead of to init. The reaper starts the adapter
  and is that ancestor, so everything the adapter ever started that still runs is the reaper's
  descendant, whatever it did to its session or group; at the end, its descendants are exactly
  what the adapter left behind.
* The reaper is a process of its own, not the harness: a subreaper harness would adopt the
  orphans of everything it starts (Graphviz, a browser in the tests, pip), would have to reap
  them without taking exit statuses that `subprocess` waits for, and could not tell apart the
  orphans of two adapters that run at once (Wine's RPC sessions each run their own).
* Not cgroups (they need root or a delegated subtree, and exist on Linux only), nor a PID
  namespace (it needs user namespaces, often disabled, and Wine clients in one namespace cannot
  share a `wineserver` outside it).
Where `prctl` fails, the reaper still kills the adapter's group and whatever descendants it can
still see, and says `started PID 0 REAPER`: orphans are then not checked. Other operating
systems do not run the reaper at all (`process.ORPHANS_ENDED`).

Limits, stated rather than hidden: a descendant may kill its reaper (it runs as the same user);
its orphans then go to init, and the harness, seeing the reaper gone, kills the adapter's group as
it used to and says so in the evidence. A process that forks faster than it can be killed is
given up after `ORPHAN_DEADLINE` and reported as not ended.

One server per harness, one reaper per adapter: a Python start costs tens of milliseconds, and
the Wine adapter starts a process for every risky RPC session (hundreds in a run). So the harness
starts this program once, as a server (`--server`, a SOCK_SEQPACKET socket on stdin), and for each
adapter sends it four descriptors: the adapter's stdin, stdout and stderr pipes and a control
socket. The server forks (it is single-threaded, so forking is safe and takes a millisecond); the
child is that adapter's reaper, reads its request from the control socket, becomes a subreaper,
and starts the adapter. The server ends when the harness closes its socket (or dies).

The conversation between the harness and an adapter's reaper, lines on the control socket:
    harness: a JSON object        {"argv": [...], "env": {...}, "cwd": str or null,
                                   "shared": [[EXECUTABLE, ARGV0], ...]}, first
             end GRACE            give the adapter GRACE seconds to exit, then SIGKILL its group;
                                  then end its orphans (SIGTERM, SIGKILL after `ORPHAN_GRACE`).
                                  The end of the socket means `end 0`.
    reaper:  started PID SUBREAPER REAPER
                                     the adapter runs as PID, under the reaper REAPER;
                                     SUBREAPER 1, or 0 if prctl failed
             failed ERRNO MESSAGE    the adapter could not be started (and the reaper exits)
             exited CODE             the adapter exited: code, or minus the signal that ended it
             orphan PID SIGNAL ENDED COMMAND
                                     a descendant it left, the last signal it was sent (SIGTERM,
                                     or SIGKILL), ENDED 1 if it is gone, 0 if it outlived the end
             ended                   that was every one; the reaper exits
`shared` names processes the adapter starts on purpose to serve others too (a `wineserver` and
Wine's system processes, shared by every Wine process of a prefix, other runs' ones too):
shell-style patterns on the real path of /proc/PID/exe and on the first word of the command line.
They and their descendants are left running.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ctypes  # loaded by the server only (`load_libc`), not by the harness

Rule = tuple[str, str]  # the patterns on the executable and on argv[0]

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
# After SIGTERM, how long an orphan has to exit before SIGKILL; how long the reaper goes on
# finding and killing orphans (new ones appear while their parents die) before it gives up.
ORPHAN_GRACE = 0.5
ORPHAN_DEADLINE = 5.0
# After SIGKILL, how long the adapter may take to be reaped, and the rest of its group to go.
EXIT_GRACE = 2.0
GROUP_GRACE = 1.0
# The longest command line kept for the evidence.
COMMAND_CHARS = 200
# How often the end loops look again.
TICK = 0.02
# What the harness sends the server with each adapter's four descriptors.
SPAWN = b"spawn"


# --- what the harness also uses (no process needed) -------------------------------------------

def is_shared(rules: Iterable[Rule], executable: str, argv0: str) -> bool:
    """True if both patterns of a rule, on the executable and on argv[0], match."""
    return any(fnmatch.fnmatchcase(executable, on_executable)
               and fnmatch.fnmatchcase(argv0, on_argv0) for on_executable, on_argv0 in rules)


# --- looking at processes ------------------------------------------------------------------------

def _stat(pid: int) -> tuple[str, int] | None:
    """The state letter and parent pid of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0].decode(), int(fields[1])


def _argv(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.rstrip(b"\0").split(b"\0") if part]


def command_of(pid: int) -> str:
    """The process's command line as people read it, on one line, cut short; or its name."""
    words = _argv(pid)
    if words:
        text = " ".join(words)
    else:
        try:
            with open(f"/proc/{pid}/comm", "rb") as f:
                text = f"[{f.read().decode('utf-8', 'replace').strip()}]"
        except OSError:
            text = "(gone)"
    text = " ".join(text.split())  # one line, whatever the arguments hold
    return text if len(text) <= COMMAND_CHARS else text[:COMMAND_CHARS - 3] + "..."


def _shared(pid: int, rules: Sequence[Rule]) -> bool:
    if not rules:
        return False
    try:
        executable = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        executable = ""
    argv = _argv(pid)
    return is_shared(rules, executable, argv[0] if argv else "")


def descendants(root: int, rules: Sequence[Rule]) -> list[int]:
    """The living descendants of `root` (zombies left out), leaving out shared processes and
    everything below them."""
    children: dict[int, list[int]] = {}
    living: set[int] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        stat = _stat(pid)
        if stat is None:
            continue
        state, ppid = stat
        children.setdefault(ppid, []).append(pid)
        if state not in ("Z", "X", "x"):
            living.add(pid)
    found: list[int] = []
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid not in living or _shared(pid, rules):
            continue
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _signal(pid: int, signum: int) -> None:
    # Gone already, or not ours to signal: found again, or reported, on the next look.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_libc() -> ctypes.CDLL | None:
    """The C library, for `prctl` (loaded once, by the server); None where there is none."""
    import ctypes  # here, not at the top: the harness imports this module for `is_shared`

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def become_subreaper(libc: ctypes.CDLL | None) -> bool:
    """Make orphaned descendants re-parent to this process; False where the OS refuses."""
    try:
        return libc is not None and int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except AttributeError:  # no prctl: not Linux
        return False


# --- one adapter's reaper ------------------------------------------------------------------------

class Orphan:
    """A descendant found at the end: how to name it, and what it took to end it."""

    def __init__(self, pid: int, command: str, termed: float) -> None:
        self.pid = pid
        self.command = command
        self.termed = termed
        self.signal = "SIGTERM"
        self.ended = True

    def line(self) -> str:
        return f"orphan {self.pid} {self.signal} {int(self.ended)} {self.command}"


class Reaper:
    """The adapter it started, the harness's control socket, and the end of both."""

    def __init__(self, control: int) -> None:
        self.control = control
        self.pending = b""
        self.rules: list[Rule] = []
        self.child: subprocess.Popen[bytes] | None = None  # kept, so that it is never collected
        self.pid = 0
        self.status: int | None = None
        self.stop = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the waits below
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, self._stop)

    def _stop(self, *_: object) -> None:
        self.stop = True

    def send(self, line: str) -> None:
        data = (line + "\n").encode()
        try:
            while data:
                data = data[os.write(self.control, data):]
        except OSError:
            pass  # the harness is gone: the end goes on without it

    def receive(self) -> bytes | None:
        """The next line from the harness, or None at the end of the socket."""
        while b"\n" not in self.pending:
            try:
                data = os.read(self.control, 65536)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            if not data:
                return None
            self.pending += data
        line, self.pending = self.pending.split(b"\n", 1)
        return line

    def start(self, request: Mapping[str, Any], pipes: Sequence[int]) -> bool:
        """Start the adapter in a session of its own, on the harness's pipes; False (and the
        harness told why) if it cannot start.

        With `subprocess`, as the harness would without a reaper, so that the adapter starts in
        the same state (signals restored, descriptors closed, PATH from its environment); not
        with `os.posix_spawn`, whose glibc version leaves glibc's internal signals (32 and 33)
        ignored in the adapter, across exec.
        """
        self.rules = [(str(e), str(a)) for e, a in request.get("shared") or ()]
        try:
            # Only its pid is used: `reap` collects every child's exit status, this one's too.
            self.child = subprocess.Popen(
                [str(word) for word in request["argv"]], stdin=pipes[0], stdout=pipes[1],
                stderr=pipes[2], env={str(k): str(v) for k, v in request["env"].items()},
                cwd=request.get("cwd"), start_new_session=True)
            self.pid = self.child.pid
        except OSError as exc:
            self.send(f"failed {exc.errno or 0} {exc.strerror or exc}")
            return False
        finally:
            for fd in pipes:
                os.close(fd)  # the pipes end when the adapter and its descendants end
        return True

    def reap(self) -> None:
        """Collect every child that exited; report the adapter's exit."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid and self.status is None:
                self.status = os.waitstatus_to_exitcode(status)
                self.send(f"exited {self.status}")

    def pause(self, seconds: float) -> None:
        """Wait up to `seconds` for a child to exit (or a signal), then reap."""
        select.select([self.wake_r], [], [], max(0.0, seconds))
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 512):
                pass
        self.reap()

    def serve(self) -> float:
        """Run until the harness asks for the end (or goes): the grace it gives the adapter."""
        while not self.stop:
            if b"\n" not in self.pending:
                ready, _, _ = select.select([self.control, self.wake_r], [], [])
                if self.wake_r in ready:
                    self.pause(0)
                if self.control not in ready:
                    continue
            line = self.receive()
            if line is None:
                return 0.0
            words = line.split()
            if len(words) == 2 and words[0] == b"end":
                return float(words[1])
        return 0.0

    def end(self, grace: float) -> list[Orphan]:
        """End the adapter (after `grace` seconds) and then everything it left behind."""
        deadline = time.monotonic() + grace
        while self.status is None and time.monotonic() < deadline:
            self.pause(deadline - time.monotonic())
        if self.status is None:
            # Still running: the adapter and its group go at once (as the harness always did).
            # What runs in its group is part of the adapter, not something it left behind.
            _signal(-self.pid, signal.SIGKILL)
            _signal(self.pid, signal.SIGKILL)  # in case it left its own group
            deadline = time.monotonic() + EXIT_GRACE
            while self.status is None and time.monotonic() < deadline:
                self.pause(min(TICK, deadline - time.monotonic()))
            deadline = time.monotonic() + GROUP_GRACE
            while _group_exists(self.pid) and time.monotonic() < deadline:
                self.pause(TICK)
        return self.end_orphans()

    def end_orphans(self) -> list[Orphan]:
        """SIGTERM every descendant, SIGKILL those still there `ORPHAN_GRACE` later, and look
        again until none is left (a dying parent's children come to this process)."""
        me = os.getpid()
        found: dict[int, Orphan] = {}
        deadline = time.monotonic() + ORPHAN_DEADLINE
        while True:
            self.reap()
            alive = descendants(me, self.rules)
            now = time.monotonic()
            if not alive or now >= deadline:
                break
            for pid in alive:
                orphan = found.get(pid)
                if orphan is None:
                    found[pid] = Orphan(pid, command_of(pid), now)
                    _signal(pid, signal.SIGTERM)
                elif orphan.signal == "SIGTERM" and now - orphan.termed >= ORPHAN_GRACE:
                    orphan.signal = "SIGKILL"
                    _signal(pid, signal.SIGKILL)
            self.pause(TICK)
        for pid in alive:
            if pid in found:
                found[pid].ended = False
        return list(found.values())


def reap_one(pipes: Sequence[int], control: int, libc: ctypes.CDLL | None) -> None:
    """An adapter's reaper, from its request to its end (in a child of the server)."""
    reaper = Reaper(control)
    line = reaper.receive()
    if line is None:
        for fd in pipes:
            os.close(fd)
        return
    subreaper = become_subreaper(libc)
    if not reaper.start(json.loads(line), pipes):
        return
    reaper.send(f"started {reaper.pid} {int(subreaper)} {os.getpid()}")
    grace = reaper.serve()
    for orphan in reaper.end(grace):
        reaper.send(orphan.line())
    reaper.send("ended")


# --- the server ----------------------------------------------------------------------------------

def serve_forever(sock: socket.socket) -> int:
    """Fork a reaper for each adapter the harness sends, until the harness closes the socket."""
    # Each reaper is a child of this process; the kernel reaps them without a wait here.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    libc = load_libc()
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 64, 4)
        except InterruptedError:
            continue
        except OSError:
            return 0
        if not message and not fds:
            return 0  # the harness is gone
        for fd in fds:
            # Received descriptors are inheritable (socket.recv_fds passes no MSG_CMSG_CLOEXEC).
            # Nothing started from here may keep one: the control socket, held by an adapter,
            # would outlive a reaper that dies, and the harness would not see the death.
            os.set_inheritable(fd, False)
        if message != SPAWN or len(fds) != 4:
            for fd in fds:
                os.close(fd)
            continue
        pid = os.fork()
        if pid == 0:
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # this child waits for its own
                # Let go of the server's socket, so that the harness sees the server's end.
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, sock.detach())
                os.close(null)
                reap_one(fds[:3], fds[3], libc)
            finally:
                os._exit(0)  # never back into the server's loop
        for fd in fds:
            os.close(fd)


def main(argv: Sequence[str]) -> int:
    if list(argv[1:]) != ["--server"]:
        print(f"usage: {__doc__.splitlines()[2].strip() if __doc__ else 'see reaper.py'}",
              file=sys.stderr)
        return 2
    return serve_forever(socket.socket(fileno=0))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
