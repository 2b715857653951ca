"""The built-in adapter `wine`: Wine's ole32 and rpcrt4, driven by a native adapter program.

`adapters/wine/callgate_wine_adapter.c` is a Windows console program (built with mingw-w64's
`x86_64-w64-mingw32-gcc`) that speaks the JSON-lines protocol, through the example C adapter's
`examples/c-adapter/callgate_jsonl.h`, and calls the real APIs:
ISynchronize on CLSID_ManualResetEvent and CLSID_StdEvent, CLSID_SynchronizeContainer, and
asynchronous RPC over ncalrpc with hand-written [async] stubs. `make_adapter()` (the factory the
built-in name loads) finds `wine` and the built program, builds the program when the compiler is
there, prepares a private Wine prefix, and returns a `WineAdapter`. The C sources ship in the
package (`callgate/native`), so an installed callgate builds the program too: into the user's
cache (`$XDG_CACHE_HOME/callgate/wine/<hash of the sources>/`), never into site-packages; a
checkout builds it into build/wine/.

Several Wine calls crash (RpcServerTestCancel, RpcAsyncCompleteCall on a handle that never
carried a call, a second client RpcAsyncCompleteCall; see ../shared/spec/WINE.md). The program
makes them on guarded threads and reports the exception code as the outcome (output `raised`),
and a call that blocks as WAIT_TIMEOUT (output `returned: false`). Beyond that, `WineAdapter`
keeps RPC apart: every session with an `rpc_call` slot runs in an adapter process of its own,
which is ended when the session closes if anything risky happened in it (a guarded call raised,
a call blocked, the adapter failed); otherwise the process serves the next RPC session. So a
crash costs that one case, and a runtime left with abandoned threads or locks never serves
another case. Sessions without RPC share one long-lived process. (A start costs about 0.12 s
once `wineserver` runs; a fresh process per RPC session made the stateful phase's shrinking
take minutes.)

Wine's shared processes: the first Wine process of a prefix starts `wineserver` and Wine's system
processes (services.exe, rpcss.exe, explorer.exe and the like), which serve every Wine process of
that prefix, another run's too, and end by themselves about a second after the last one. They are
descendants of whichever adapter process came first, so its reaper would take them for orphans
and end them with it, under the other adapter processes and runs still using them: `WINE_SHARED`
names them, and they are left running.

Whichever Wine process of a prefix comes first also gives the shared processes their environment
and their stderr: started by a program run with `WINEDEBUG=+relay` (the relay pair of
`callgate import-relay`), explorer.exe and the rest log every call and start so slowly that an
adapter starting beside them may get no window for its COM apartment, and a COM call between its
apartments then waits forever: the first handshake never comes (docs/wine.md).
So callgate never lets one of its own programs be first: `PrefixKeeper` starts a quiet Wine
process (`wine cmd`, WINEDEBUG=-all, stderr to /dev/null) before anything else, waits until it
runs (Wine has finished starting the prefix's processes by then) and holds the prefix's processes
until the adapter (or the relay pair) is done.

Environment: `CALLGATE_WINE` (the wine loader, default `wine` on PATH), `CALLGATE_WINEPREFIX`
(default `$XDG_CACHE_HOME/callgate/wine-prefix`, `~/.cache/...` when unset),
`CALLGATE_WINE_ADAPTER` (a prebuilt .exe),
`CALLGATE_WINE_COM` (the com_call configuration: `marshaled`, the default, or `inproc`; the
program's `--com=` option, declared in its handshake as the pin `call_object_origin`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from callgate.conformance.protocol.adapter import AdapterFault, Capabilities, Observation, Request, SlotSpec
from callgate.conformance.protocol.jsonl import (
    AdapterEvent,
    CommandAdapter,
    CommandSession,
    Orphan,
    SharedProcess,
)
from callgate.conformance.protocol.loading import AdapterNotFound

ROOT = Path(__file__).resolve().parents[2]
# The C sources, shipped in the package (`callgate/native`, package data; in a checkout its
# entries are links to adapters/wine and the example C adapter's header), so an installed wheel
# can build the program too.
CHECKOUT = (ROOT / "pyproject.toml").is_file()  # else ROOT is the installed `callgate` package
NATIVE = ROOT / "callgate" / "native" if CHECKOUT else ROOT / "native"
SOURCE = NATIVE / "wine" / "callgate_wine_adapter.c"
# The JSON-lines layer the program includes: the example C adapter's, kept there so that the
# example stays whole for a vendor who copies it.
INCLUDE_DIR = NATIVE
HEADER = INCLUDE_DIR / "callgate_jsonl.h"
# The COM test server and its com_call slots, included by the program's source.
COM_SOURCE = SOURCE.parent / "callgate_wine_com.c"
PROGRAM = "callgate-wine-adapter.exe"
# In a checkout the program is built into build/wine/ (for development); an installed callgate
# builds it into the user's cache (`cached_program`), never into site-packages.
BUILT = ROOT / "build" / "wine" / PROGRAM if CHECKOUT else None
COMPILER = "x86_64-w64-mingw32-gcc"
COMPILE_FLAGS = ("-O2", "-Wall", "-Wextra", "-std=gnu11", "-static")
LIBRARIES = ("-lole32", "-loleaut32", "-luuid", "-lrpcrt4")
# The configurations of the com_call machine (docs/wine.md, "COM call objects"): through a
# standard proxy (the default), or the test server object used in its own apartment.
COM_CONFIGURATIONS = ("marshaled", "inproc")

# Kept below the gate's default step timeout (10 s) less the longest wait_ms, so a hang is
# reported by the transport with evidence; the program's own bounded waits are at most 5 s.
REQUEST_TIMEOUT = 7.0
START_TIMEOUT = 60.0  # the first start in a fresh prefix also starts wineserver

# `wineserver` (whatever its name, e.g. /usr/lib/wine/wineserver64), and Windows programs from
# the prefix's system32 (Wine's system processes) run by the Wine loader.
WINE_SHARED = (SharedProcess(executable="*/wineserver*"),
               SharedProcess(executable="*/wine*", argv0="C:\\windows\\system32\\*"))

WHAT_TO_RUN = ("run `make wine` (it installs wine, wine64, gcc-mingw-w64-x86-64 and "
               "mingw-w64-tools with apt-get, builds the adapter and prepares a Wine prefix)")


class WineUnavailable(AdapterNotFound):
    """Wine, the compiler or the built adapter is missing; the message says what to run."""


@dataclass(frozen=True)
class WineSetup:
    """Where everything is: the wine loader, the adapter program, the prefix, the environment."""

    wine: str
    program: Path
    prefix: Path
    env: Mapping[str, str]
    com: str = "marshaled"  # "" passes no --com= option (a stand-in program that has none)

    def command(self) -> list[str]:
        return [self.wine, str(self.program), *([f"--com={self.com}"] if self.com else [])]


def wine_environment(prefix: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every Wine process gets: quiet, no debugger on a crash, a private prefix."""
    env = dict(os.environ if base is None else base)
    env["WINEDEBUG"] = "-all"  # Wine's noise would drown the adapter's own stderr evidence
    env["WINEDLLOVERRIDES"] = "winedbg.exe=d"  # a crash ends the process with an exit code
    env["WINEPREFIX"] = str(prefix)
    return env


def find_wine() -> str | None:
    configured = os.environ.get("CALLGATE_WINE")
    if configured:
        return shutil.which(configured) or (configured if Path(configured).is_file() else None)
    return shutil.which("wine") or shutil.which("wine64")


def cache_home() -> Path:
    """The user's cache directory: $XDG_CACHE_HOME when it is set to an absolute path, else
    ~/.cache (the XDG base directory rule)."""
    configured = os.environ.get("XDG_CACHE_HOME", "")
    return Path(configured) if os.path.isabs(configured) else Path.home() / ".cache"


def default_prefix() -> Path:
    return cache_home() / "callgate" / "wine-prefix"


def source_files(source: Path = SOURCE) -> list[Path]:
    """Every file the program is built from: its source, the C files and headers beside it (it
    includes them) and the shared JSON-lines header."""
    return sorted({source, HEADER, *source.parent.glob("*.[ch]")})


def sources_digest(source: Path = SOURCE) -> str:
    """A hash of the sources (names and contents) and of how they are compiled: the name of the
    cache folder a build goes to, so a changed source or flag gets a build of its own."""
    digest = hashlib.sha256()
    for part in (COMPILER, *COMPILE_FLAGS, *LIBRARIES):
        digest.update(part.encode() + b"\0")
    for path in source_files(source):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cached_program(source: Path = SOURCE) -> Path:
    """Where an installed callgate builds the program: the user's cache, one folder per hash of
    the sources (~/.cache/callgate/wine/<hash>/callgate-wine-adapter.exe)."""
    return cache_home() / "callgate" / "wine" / sources_digest(source) / PROGRAM


def program_path(source: Path = SOURCE) -> Path:
    """The program `setup` builds or reuses: build/wine/ in a checkout, else the user's cache."""
    return BUILT if BUILT is not None else cached_program(source)


def unavailable_reason() -> str | None:
    """Why the `wine` adapter cannot run here, or None when it can (used to skip tests)."""
    if find_wine() is None:
        where = (f"CALLGATE_WINE={os.environ['CALLGATE_WINE']} is not a program"
                 if os.environ.get("CALLGATE_WINE") else "no `wine` on PATH")
        return f"Wine is not installed ({where}): {WHAT_TO_RUN}"
    program = _configured_program()
    if program is None and not program_path().exists() and shutil.which(COMPILER) is None:
        return (f"the Wine adapter is not built ({program_path()}) and {COMPILER} is "
                f"missing: {WHAT_TO_RUN}")
    return None


def _configured_program() -> Path | None:
    configured = os.environ.get("CALLGATE_WINE_ADAPTER")
    return Path(configured) if configured else None


def build(output: Path | None = None, source: Path = SOURCE) -> Path:
    """Compile the adapter with mingw-w64 into `output` (default `program_path()`) when the .exe
    is missing or older than any of `source_files`. The compiler writes a temporary file beside
    `output`, moved into place when it succeeds, so a build cut short or running beside another
    leaves no broken program behind."""
    output = program_path(source) if output is None else output
    newest_input = max(p.stat().st_mtime for p in source_files(source))
    if output.exists() and output.stat().st_mtime >= newest_input:
        return output
    compiler = shutil.which(COMPILER)
    if compiler is None:
        raise WineUnavailable(f"cannot build the Wine adapter: {COMPILER} is not installed; "
                              f"{WHAT_TO_RUN}")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    argv = [compiler, *COMPILE_FLAGS, f"-I{HEADER.parent}", "-o", str(partial), str(source),
            *LIBRARIES]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise WineUnavailable(f"building the Wine adapter failed ({' '.join(argv)}):\n"
                                  f"{done.stderr[-4000:]}")
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return output


def prepare_prefix(wine: str, prefix: Path) -> None:
    """Create the private Wine prefix once (`wine wineboot --init`, about 5 to 10 s)."""
    if (prefix / "system.reg").exists():
        return
    prefix.mkdir(parents=True, exist_ok=True)
    env = wine_environment(prefix)
    # No Mono or Gecko prompts while the prefix is made; the adapter needs neither.
    env["WINEDLLOVERRIDES"] = "winedbg.exe=d;mscoree,mshtml="
    done = subprocess.run([wine, "wineboot", "--init"], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    if done.returncode != 0 or not (prefix / "system.reg").exists():
        raise WineUnavailable(f"`wine wineboot --init` failed for the prefix {prefix} (exit "
                              f"{done.returncode}):\n{done.stderr[-2000:]}\nRemove the folder "
                              f"and {WHAT_TO_RUN}")


def setup() -> WineSetup:
    """Find or make everything the adapter needs; WineUnavailable says what is missing."""
    wine = find_wine()
    if wine is None:
        raise WineUnavailable(f"the `wine` adapter needs Wine: {unavailable_reason()}")
    configured = _configured_program()
    if configured is not None:
        if not configured.is_file():
            raise WineUnavailable(f"CALLGATE_WINE_ADAPTER names {configured}, which does not "
                                  f"exist; unset it or {WHAT_TO_RUN}")
        program = configured
    else:
        program = build()
    prefix = Path(os.environ.get("CALLGATE_WINEPREFIX") or default_prefix())
    com = com_configuration()
    prepare_prefix(wine, prefix)
    return WineSetup(wine, program, prefix, wine_environment(prefix), com)


def com_configuration() -> str:
    """The com_call configuration CALLGATE_WINE_COM selects: `marshaled` (default) or `inproc`."""
    com = os.environ.get("CALLGATE_WINE_COM") or COM_CONFIGURATIONS[0]
    if com not in COM_CONFIGURATIONS:
        raise WineUnavailable(f"CALLGATE_WINE_COM={com!r} is not a configuration of the Wine "
                              f"adapter; use one of {', '.join(COM_CONFIGURATIONS)}")
    return com


# What the keeper echoes once Wine runs it (the prefix's processes have started by then).
KEEPER_READY = "callgate-prefix-ready"
KEEPER_EXIT_GRACE = 2.0


class PrefixKeeper:
    """A quiet Wine process that starts the prefix's shared processes and holds them.

    `wine cmd` with WINEDEBUG=-all (`wine_environment`), stderr to /dev/null and stdin and
    stdout pipes of its own, in a session of its own. If no Wine process of the prefix runs, it
    is the first, so wineserver and Wine's system processes inherit its quiet environment and no
    pipe of callgate's. `start` returns once cmd answers an echo (Wine runs a program only after
    the prefix's processes have started) or raises WineUnavailable after `timeout` seconds. The
    keeper runs until `close` (cmd exits at the end of its stdin, so also when callgate dies), so
    the shared processes do not end and start again between adapter processes.
    """

    def __init__(self, wine: str, prefix: Path, timeout: float = START_TIMEOUT) -> None:
        self.argv = [wine, "cmd"]
        self.prefix = prefix
        self.timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.waited = 0.0  # seconds `start` took

    def __enter__(self) -> PrefixKeeper:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> None:
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, env=wine_environment(self.prefix),
                start_new_session=True)
        except OSError as exc:
            raise WineUnavailable(f"cannot start {' '.join(self.argv)} for the prefix "
                                  f"{self.prefix}: {exc}; {WHAT_TO_RUN}") from exc
        self.process = process
        assert process.stdin is not None and process.stdout is not None
        seen = b""
        try:
            process.stdin.write(f"echo {KEEPER_READY}\r\n".encode())
            process.stdin.flush()
            fd = process.stdout.fileno()
            deadline = started + self.timeout
            while KEEPER_READY.encode() not in seen:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise TimeoutError
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise EOFError
                seen = (seen + chunk)[-4096:]
        except (OSError, TimeoutError, EOFError) as exc:
            if isinstance(exc, EOFError):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(KEEPER_EXIT_GRACE)
            what = (f"did not answer within {self.timeout:g} s" if isinstance(exc, TimeoutError)
                    else f"ended (exit code {process.returncode})" if isinstance(exc, EOFError)
                    else f"failed: {exc}")
            self.close()
            raise WineUnavailable(
                f"Wine did not start the prefix {self.prefix}: `{' '.join(self.argv)}` {what} "
                f"(its output: {seen.decode('utf-8', 'replace')[-500:]!r}); is `wineserver` "
                f"stuck? `WINEPREFIX={self.prefix} wineserver -k` ends it") from exc
        self.waited = time.monotonic() - started

    def close(self) -> None:
        """End cmd (the end of its stdin), and its session if it does not go by itself."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(OSError):  # it is gone already
            if process.stdin is not None:
                process.stdin.close()
        try:
            process.wait(KEEPER_EXIT_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):  # gone already
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def shared_processes(prefix: Path) -> str:
    """For the evidence of an adapter process that did not start: each `wineserver` of `prefix`
    that runs, with the WINEDEBUG and the stderr it was started with (Wine's shared processes
    have those of the prefix's first Wine process), and a warning when that logs (relay
    logging makes them too slow for an adapter starting beside them). Empty if none runs or
    /proc cannot tell."""
    found: list[str] = []
    logging = False
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode("utf-8", "replace")
            if not os.path.basename(argv0).startswith("wineserver"):
                continue
            environ = (entry / "environ").read_bytes().decode("utf-8", "replace").split("\0")
            stderr = os.readlink(entry / "fd" / "2")
        except OSError:
            continue  # gone, or not ours to look at
        env = dict(item.split("=", 1) for item in environ if "=" in item)
        if env.get("WINEPREFIX") != str(prefix):
            continue
        debug = env.get("WINEDEBUG", "(unset)")
        logging = logging or any(part.startswith("+") for part in debug.split(","))
        found.append(f"wineserver pid {entry.name} of the prefix {prefix}: WINEDEBUG={debug}, "
                     f"stderr to {stderr}")
    if logging:
        found.append("Wine's shared processes of this prefix log Wine's calls (they have the "
                     "environment of the Wine program that started them): they can be too slow "
                     "for an adapter starting beside them. End that program's Wine "
                     f"(`WINEPREFIX={prefix} wineserver -k`) or give it a prefix of its own.")
    return "\n".join(found)


# What the adapter answers for a function rpcrt4.dll does not export (callgate_wine_order.c).
STATUS_ENTRYPOINT_NOT_FOUND = 0xC0000139


def risky(observation: Observation) -> bool:
    """True if the program reported a call that raised or did not return (its runtime may be left
    with abandoned threads and locks). STATUS_ENTRYPOINT_NOT_FOUND is the program's answer for a
    function the DLL does not export: nothing was called, so nothing is left behind."""
    if observation.code == STATUS_ENTRYPOINT_NOT_FOUND:
        return False
    return observation.outputs.get("raised") is True or observation.outputs.get("returned") is False


class IsolatedSession:
    """A session in an adapter process that serves no other session at the same time. On close
    the process is ended if the session was risky, else handed back for the next RPC session."""

    def __init__(self, owner: WineAdapter, adapter: CommandAdapter,
                 session: CommandSession) -> None:
        self.owner = owner
        self.adapter = adapter
        self.session = session
        self.tainted = False

    def perform(self, request: Request) -> Observation:
        try:
            observation = self.session.perform(request)
        except BaseException:
            self.tainted = True
            raise
        if risky(observation):
            self.tainted = True
        return observation

    def events(self) -> list[AdapterEvent]:
        return self.session.events()

    def close(self) -> None:
        try:
            self.session.close()
        except BaseException:
            self.tainted = True
            raise
        finally:
            self.owner.release(self.adapter, reusable=not self.tainted)


class WineAdapter:
    """Wine through the native adapter; sessions with an `rpc_call` slot get their own process."""

    def __init__(self, wine_setup: WineSetup, *, request_timeout: float = REQUEST_TIMEOUT,
                 isolate_machines: frozenset[str] = frozenset({"rpc_call", "rpc_order",
                                                                  "rpc_notif"}),
                 keeper: PrefixKeeper | None = None) -> None:
        self.setup = wine_setup
        self.keeper = keeper  # started already; closed by `shutdown`
        self.request_timeout = request_timeout
        self.isolate_machines = isolate_machines
        self._processes: list[CommandAdapter] = []  # every one started, for `orphans`
        self.main = self._new_process()
        self.isolated_starts = 0  # processes started for RPC sessions
        self._spare: list[CommandAdapter] = []  # RPC processes that ran nothing risky
        self.late_deaths: list[str] = []  # reused processes that died before a session began
        self._lock = threading.Lock()

    def _new_process(self) -> CommandAdapter:
        process = CommandAdapter(self.setup.command(), request_timeout=self.request_timeout,
                                 env=self.setup.env, start_timeout=START_TIMEOUT,
                                 shared=WINE_SHARED)
        self._processes.append(process)
        return process

    @property
    def orphans(self) -> list[Orphan]:
        """What the adapter processes left behind and callgate ended (`CommandAdapter.orphans`)."""
        return [orphan for process in list(self._processes) for orphan in process.orphans]

    @property
    def orphans_killed(self) -> int:
        return len(self.orphans)

    @property
    def orphans_checked(self) -> bool:
        return all(process.orphans_checked for process in list(self._processes))

    def capabilities(self) -> Capabilities:
        try:
            return self.main.capabilities()
        except AdapterFault as fault:  # no handshake: say how the prefix's processes were started
            notes = shared_processes(self.setup.prefix)
            if not notes:
                raise
            raise AdapterFault(str(fault), f"{fault.evidence}\n{notes}".strip()) from fault

    def open_session(self, slots: Sequence[SlotSpec]) -> CommandSession | IsolatedSession:
        if not any(s.machine in self.isolate_machines for s in slots):
            return self.main.open_session(slots)
        with self._lock:
            spare = self._spare.pop() if self._spare else None
        if spare is not None:
            try:
                return self._open_in(spare, slots)
            except AdapterFault as fault:
                # A process that ran only clean sessions died before this session did anything:
                # something an earlier case left in Wine (a late APC, a late reply) killed it.
                # That is not this case's doing; it is kept as evidence and counted, and the
                # session gets a fresh process.
                self.late_deaths.append(f"{fault}\n{fault.evidence}".strip())
                print(f"callgate: a reused Wine adapter process died before a session began "
                      f"({fault}); starting a fresh one", file=sys.stderr)
        with self._lock:
            self.isolated_starts += 1
        return self._open_in(self._new_process(), slots)

    def _open_in(self, process: CommandAdapter, slots: Sequence[SlotSpec]) -> IsolatedSession:
        try:
            if process.capabilities() != self.capabilities():
                raise AdapterFault("a fresh Wine adapter process declared other capabilities "
                                   "than the first one; every start must declare the same",
                                   f"first: {self.capabilities()}\n"
                                   f"now: {process.capabilities()}")
            return IsolatedSession(self, process, process.open_session(slots))
        except BaseException:
            process.shutdown()
            raise

    def release(self, process: CommandAdapter, *, reusable: bool) -> None:
        """Take back an RPC session's process: keep it for the next one, or end it."""
        if reusable:
            with self._lock:
                self._spare.append(process)
        else:
            process.shutdown()

    def shutdown(self) -> None:
        with self._lock:
            spare, self._spare = self._spare, []
        for process in spare:
            process.shutdown()
        self.main.shutdown()
        if self.keeper is not None:
            self.keeper.close()


def make_adapter() -> WineAdapter:
    """The factory behind `--adapter wine`: the prefix's processes started by a `PrefixKeeper`
    before the first adapter process."""
    wine_setup = setup()
    keeper = PrefixKeeper(wine_setup.wine, wine_setup.prefix)
    keeper.start()
    try:
        return WineAdapter(wine_setup, keeper=keeper)
    except BaseException:
        keeper.close()
        raise
