"""The output directory of a run: checked, locked for the run, and cleared of an earlier run's files.

Two runs writing one directory at once would blend into reports that match neither, so a run
holds an exclusive lock (`fcntl.flock` on `.callgate.lock`; the kernel releases it when the
process dies, so a killed run leaves no stale lock). The files an earlier run wrote there are
removed before the new run starts, so the reports beside each other are always one run's (no
old compare.html beside new reports). Other files in the directory are left alone.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import IO

LOCK_NAME = ".callgate.lock"
# Every file a run (or `callgate compare`) writes into a run directory.
RUN_FILES = ("results.jsonl", "report.json", "junit.xml", "report.md", "report.html",
             "compare.html", "compare.md")


class OutputUnusable(Exception):
    """The output path cannot hold a run's reports: a usage error, the message says what to do."""


class OutputBusy(OutputUnusable):
    """Another run holds the output directory."""


def check_output(path: Path) -> None:
    """Refuse, with a message, an output path that is a file or cannot be written."""
    if path.exists() and not path.is_dir():
        raise OutputUnusable(f"--out {path} is a file, not a directory: name a directory for the "
                             f"reports (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputUnusable(f"cannot create the output directory {path}: {exc.strerror or exc}; "
                             f"name a directory you can write") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputUnusable(f"the output directory {path} is not writable; name a directory "
                             f"you can write")


class OutputDir:
    """`with OutputDir(path) as out:` holds the directory for one run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: IO[str] | None = None

    def __enter__(self) -> OutputDir:
        check_output(self.path)
        try:
            handle = (self.path / LOCK_NAME).open("a", encoding="utf-8")
        except OSError as exc:
            raise OutputUnusable(f"cannot write in {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise OutputBusy(f"another callgate run is writing to {self.path}; wait for it to "
                             f"finish or pass another --out") from exc
        self._lock = handle
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
