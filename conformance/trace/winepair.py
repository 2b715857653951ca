"""Run the example asynchronous RPC client/server pair (examples/relay/rpc_async_pair.c) under
Wine with relay logging, for `callgate import-relay` (docs/traces.md, "Wine's relay log").

The pair is built with mingw-w64 into build/wine/; both processes run in the `wine` adapter's
private prefix and write their relay log (Wine's stderr) to one file opened for appending, so the
lines of both share one order. A quiet `wine.PrefixKeeper` runs first and until the pair is done:
the first Wine process of a prefix gives the prefix's shared processes (explorer.exe, rpcss.exe
and the rest) its environment and stderr, and with relay logging they would log into this file
and start too slowly for any other Wine process starting beside them (a gate's adapter).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from callgate.conformance.implementations import wine

SOURCE = wine.ROOT / "examples" / "relay" / "rpc_async_pair.c"
BUILT = wine.ROOT / "build" / "wine" / "rpc_async_pair.exe"
RELAY = "+relay,+pid,+tid"
START_TIMEOUT = 60.0  # the first start may also start wineserver


class PairFailed(RuntimeError):
    """The pair did not build or did not run to its end; the message says what happened."""


def build(output: Path = BUILT) -> Path:
    """Compile the pair when the .exe is missing or older than its source."""
    if output.exists() and output.stat().st_mtime >= SOURCE.stat().st_mtime:
        return output
    compiler = shutil.which(wine.COMPILER)
    if compiler is None:
        raise wine.WineUnavailable(f"{wine.COMPILER} is not installed: {wine.WHAT_TO_RUN}")
    output.parent.mkdir(parents=True, exist_ok=True)
    argv = [compiler, *wine.COMPILE_FLAGS, "-o", str(output), str(SOURCE), "-lrpcrt4"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PairFailed(f"building the pair failed ({' '.join(argv)}):\n{done.stderr[-4000:]}")
    return output


def run(log: Path, timeout: float = 60.0) -> Path:
    """Run server and client once with relay logging into `log`; returns `log`."""
    loader = wine.find_wine()
    if loader is None:
        raise wine.WineUnavailable(wine.unavailable_reason() or "Wine is not installed")
    program = build()
    prefix = Path(os.environ.get("CALLGATE_WINEPREFIX") or wine.default_prefix())
    wine.prepare_prefix(loader, prefix)
    env = wine.wine_environment(prefix)
    env["WINEDEBUG"] = RELAY
    endpoint = f"callgate-relay-{os.getpid()}-{time.monotonic_ns()}"
    log.parent.mkdir(parents=True, exist_ok=True)
    with wine.PrefixKeeper(loader, prefix, START_TIMEOUT), log.open("ab") as sink:
        server = subprocess.Popen([loader, str(program), "server", endpoint], env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=sink)
        try:
            assert server.stdout is not None
            started = time.monotonic()
            line = server.stdout.readline()  # "listening", once the endpoint is up
            if b"listening" not in line:
                raise PairFailed(f"the server did not start listening within "
                                 f"{time.monotonic() - started:.0f} s (exit {server.poll()})")
            client = subprocess.run([loader, str(program), "client", endpoint], env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=sink, timeout=timeout, check=False)
            if client.returncode != 0:
                raise PairFailed(f"the client exited with {client.returncode}; see {log}")
            server.wait(timeout=timeout)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    return log
