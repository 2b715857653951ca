"""Who starts a Wine prefix's shared processes (wine.PrefixKeeper).

The first Wine process of a prefix gives wineserver and Wine's system processes (explorer.exe,
rpcss.exe, services.exe, ...) its environment and its stderr. When that was the relay pair of
`callgate import-relay` (WINEDEBUG=+relay), they logged every call and started so slowly that a
Wine adapter starting beside them could get no window for its COM apartment, and a COM call
between its apartments waited forever: its first handshake never came. The fast tests use a
stand-in `wine` that records how each process was started; the slow one runs real Wine in a
cold prefix.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callgate.conformance.implementations import wine
from callgate.conformance.protocol.adapter import AdapterFault
from callgate.conformance.protocol.jsonl import CommandAdapter

ROOT = Path(__file__).resolve().parents[1]
REASON = wine.unavailable_reason()
# The stand-ins read /proc and the keeper waits on a pipe with select: Linux, where Wine runs.
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux's /proc")

# A stand-in for the wine loader: it logs each start (its arguments, WINEDEBUG, where its stderr
# goes) and plays `cmd` (answers `echo`), the relay pair's server and client, or runs a .py.
FAKE_WINE = """\
import json, os, sys
log = os.environ["FAKE_WINE_LOG"]
def note(**what):
    with open(log, "a") as f:
        f.write(json.dumps(what) + "\\n")
note(event="start", argv=sys.argv[1:], debug=os.environ.get("WINEDEBUG"),
     stderr=os.readlink("/proc/self/fd/2"), pid=os.getpid())
mode = os.environ.get("FAKE_WINE_MODE", "")
if sys.argv[1] == "cmd":
    if mode == "dies":
        sys.exit(3)
    for line in sys.stdin:
        if line.startswith("echo ") and mode != "mute":
            print(line[5:].strip(), flush=True)
    note(event="end", argv=sys.argv[1:])
elif sys.argv[1].endswith(".py"):
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
elif sys.argv[2:3] == ["server"]:
    print("listening", flush=True)
"""


@pytest.fixture
def fake_wine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in `wine` (CALLGATE_WINE) and a prefix that counts as made; the log it writes."""
    loader = tmp_path / "wine"
    loader.write_text(f"#!{sys.executable}\n{FAKE_WINE}", encoding="utf-8")
    loader.chmod(0o755)
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    (prefix / "system.reg").write_text("", encoding="utf-8")
    log = tmp_path / "wine.log"
    monkeypatch.setenv("CALLGATE_WINE", str(loader))
    monkeypatch.setenv("CALLGATE_WINEPREFIX", str(prefix))
    monkeypatch.setenv("FAKE_WINE_LOG", str(log))
    monkeypatch.setenv("WINEDEBUG", "+relay")  # what the keeper must not pass on
    return log


def _log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_keeper_is_quiet_and_ends_with_its_stdin(fake_wine: Path, tmp_path: Path) -> None:
    keeper = wine.PrefixKeeper(str(tmp_path / "wine"), tmp_path / "prefix", timeout=20)
    with keeper:
        assert keeper.process is not None and keeper.process.poll() is None
        assert keeper.waited > 0
    assert keeper.process is None
    start, end = _log(fake_wine)
    assert start["argv"] == ["cmd"] and start["debug"] == "-all"
    assert start["stderr"] == os.devnull  # no pipe of callgate's for the shared processes
    assert end == {"event": "end", "argv": ["cmd"]}


@pytest.mark.parametrize("mode, said", [("mute", "did not answer within 0.5 s"),
                                        ("dies", "ended (exit code 3)")])
def test_a_keeper_that_does_not_answer_is_refused(fake_wine: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  mode: str, said: str) -> None:
    monkeypatch.setenv("FAKE_WINE_MODE", mode)
    keeper = wine.PrefixKeeper(str(tmp_path / "wine"), tmp_path / "prefix", timeout=0.5)
    with pytest.raises(wine.WineUnavailable, match=re.escape(said)):
        keeper.start()
    assert keeper.process is None  # ended, not left behind
    if mode == "mute":
        assert [e["event"] for e in _log(fake_wine)] == ["start", "end"]


def test_the_relay_pair_runs_only_beside_a_quiet_keeper(fake_wine: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from callgate.conformance.trace import winepair

    monkeypatch.setattr(winepair, "build", lambda: tmp_path / "pair.exe")
    winepair.run(tmp_path / "relay.log")
    log = _log(fake_wine)
    assert [(e["event"], e["argv"][-2:]) for e in log] == [
        ("start", ["cmd"]), ("start", ["server", log[1]["argv"][-1]]),
        ("start", ["client", log[1]["argv"][-1]]), ("end", ["cmd"])]
    assert log[0]["debug"] == "-all" and log[0]["stderr"] == os.devnull
    assert log[1]["debug"] == log[2]["debug"] == winepair.RELAY


def test_the_adapter_starts_its_keeper_first_and_ends_it(fake_wine: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    serve = ROOT / "conformance" / "implementations" / "reference" / "serve.py"
    loader, prefix = str(tmp_path / "wine"), tmp_path / "prefix"
    monkeypatch.setattr(wine, "setup", lambda: wine.WineSetup(
        loader, serve, prefix, wine.wine_environment(prefix), com=""))
    adapter = wine.make_adapter()
    try:
        assert adapter.capabilities().implementation
    finally:
        adapter.shutdown()
    log = _log(fake_wine)
    assert [(e["event"], e["argv"][0]) for e in log] == [
        ("start", "cmd"), ("start", str(serve)), ("end", "cmd")]


@pytest.fixture
def cold_prefix(tmp_path: Path) -> Iterator[Path]:
    """A prefix of its own (`_cold_prefix`), removed once its wineserver has ended."""
    prefix = _cold_prefix(tmp_path)
    yield prefix
    deadline = time.monotonic() + 30
    while wine.shared_processes(prefix) and time.monotonic() < deadline:
        time.sleep(0.2)  # Wine's processes end a few seconds after the last client
    shutil.rmtree(prefix, ignore_errors=True)


def _cold_prefix(tmp_path: Path) -> Path:
    """A prefix of its own (so its wineserver is not yet running): the usual one's files, hard
    linked where they can be, and its registry files copied (Wine replaces them when it
    saves)."""
    source = Path(os.environ.get("CALLGATE_WINEPREFIX") or wine.default_prefix())
    loader = wine.find_wine()
    assert loader is not None
    wine.prepare_prefix(loader, source)
    prefix = tmp_path / "prefix"

    def link(from_: str, to: str) -> None:
        try:
            os.link(from_, to)
        except OSError:  # another file system: a copy (about 700 MB)
            shutil.copy2(from_, to)

    shutil.copytree(source, prefix, symlinks=True, copy_function=link)
    for registry in prefix.glob("*.reg"):
        registry.unlink()
        shutil.copy2(source / registry.name, registry)
    return prefix


@pytest.mark.slow  # a cold Wine prefix, the relay pair and an adapter (about 10 to 20 s)
@pytest.mark.skipif(REASON is not None, reason=f"needs Wine and mingw-w64: {REASON}")
def test_an_adapter_starting_beside_the_relay_pair_gets_its_handshake(
        tmp_path: Path, cold_prefix: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from callgate.conformance.trace import winepair

    monkeypatch.setenv("CALLGATE_WINEPREFIX", str(cold_prefix))
    winepair.build()
    log = tmp_path / "relay.log"
    failed: list[BaseException] = []

    def pair() -> None:
        try:
            winepair.run(log)
        except BaseException as exc:  # reported below
            failed.append(exc)

    thread = threading.Thread(target=pair)
    thread.start()
    deadline = time.monotonic() + 60
    while not (log.exists() and log.stat().st_size) and thread.is_alive() \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    # Started while the pair runs, as the Wine gate's first adapter beside test_trace_relay.py
    # did: before the keeper, no handshake within 60 s (Wine's processes had the pair's relay
    # logging, 70 MB of it, and the adapter's apartment no window).
    found = wine.setup()
    adapter = CommandAdapter(found.command(), env=found.env, start_timeout=wine.START_TIMEOUT,
                             shared=wine.WINE_SHARED)
    try:
        assert adapter.capabilities().implementation == "wine"
    finally:
        adapter.shutdown()
        thread.join(120)
    assert not failed, failed
    # Only the pair's server and client wrote to the relay log, no process of Wine's own.
    processes = {line.split(":", 1)[0] for line in log.read_text("utf-8", "replace").splitlines()
                 if re.match(r"[0-9a-f]{4}:[0-9a-f]{4}:(Call|Ret) ", line)}
    assert len(processes) == 2, sorted(processes)


def test_an_adapter_without_handshake_says_how_the_prefixs_wineserver_was_started(
        tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    server = tmp_path / "wineserver"  # a stand-in: only its name, environment and stderr count
    server.symlink_to(shutil.which("sleep") or "/bin/sleep")
    environment = dict(os.environ, WINEPREFIX=str(prefix), WINEDEBUG="+relay,+pid")
    log = tmp_path / "relay.log"
    with log.open("ab") as sink:
        running = subprocess.Popen([str(server), "60"], env=environment, stderr=sink)
    try:
        deadline = time.monotonic() + 10
        while str(prefix) not in wine.shared_processes(prefix) and time.monotonic() < deadline:
            time.sleep(0.05)  # until the stand-in's /proc entry is there
        # An adapter process that exits at once, in that prefix.
        exits = tmp_path / "exits.py"
        exits.write_text("", encoding="utf-8")
        adapter = wine.WineAdapter(wine.WineSetup(sys.executable, exits, prefix,
                                                  dict(os.environ), com=""))
        with pytest.raises(AdapterFault) as raised:
            adapter.capabilities()
        evidence = raised.value.evidence
        assert f"wineserver pid {running.pid} of the prefix {prefix}: WINEDEBUG=+relay,+pid, " \
               f"stderr to {log}" in evidence
        assert "log Wine's calls" in evidence and "wineserver -k" in evidence
        adapter.shutdown()
    finally:
        running.kill()
        running.wait()
    # A quiet wineserver is named, without the warning; none at all adds nothing.
    quiet = subprocess.Popen([str(server), "60"], env=dict(environment, WINEDEBUG="-all"),
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while str(prefix) not in wine.shared_processes(prefix) and time.monotonic() < deadline:
            time.sleep(0.05)
        notes = wine.shared_processes(prefix)
        assert "WINEDEBUG=-all, stderr to /dev/null" in notes and "log Wine's calls" not in notes
    finally:
        quiet.kill()
        quiet.wait()
    assert wine.shared_processes(prefix) == ""
