"""One sweep at a time per results folder: an exclusive ``flock`` on ``<results>/.sweep.lock``.

The lock belongs to the open file, so it goes away with the process however it ends (even ``kill -9``); the file
itself stays (it says who held it last) and is git-ignored. Without ``fcntl`` (Windows) there is no lock.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Callable

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".sweep.lock"


@contextlib.contextmanager
def results_lock(results_dir: str | os.PathLike, wait: bool = False, log: Callable[[str], object] = print):
    """Hold the lock of ``results_dir`` within. Another holder: ``ValueError`` (one sentence naming it), or with
    ``wait`` a log line and a wait until it ends."""
    path = Path(results_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
                if not wait:
                    raise ValueError(f"the results folder {results_dir} is in use by another sweep ({holder}): "
                                     "expected it to be free; wait for that sweep, or pass --wait") from None
                log(f"waiting for the other sweep on {results_dir} ({holder}) to end")
                fcntl.flock(fd, fcntl.LOCK_EX)
        from ..records import utc_now
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {utc_now()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)
