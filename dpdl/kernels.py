"""How the study and the book start the Jupyter kernels that papermill runs their notebooks in.

* :class:`IPCKernelManager`: each kernel talks over unix sockets in a private temporary folder. jupyter_client's
  default TCP transport picks five free ports and hands them to the kernel, which binds them a moment later; when
  two notebooks start at once (the sweep's two workers, the book's parallel pages) both can pick the same port,
  and one kernel dies with "Address already in use" ("Kernel died before replying to kernel_info"). Sockets with
  private paths cannot collide. On Windows, and where $TMPDIR is too long for a socket path, TCP is kept.
* :func:`stderr_to`: the kernel's own stderr (ipykernel's start-up warnings, the "KeyboardInterrupt caught in
  kernel" line that jupyter_client's interrupt-before-shutdown provokes) goes to a log file, not to the user's
  terminal; errors raised by a cell still come back through papermill.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import weakref
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import default

__all__ = ["IPCKernelManager", "stderr_to", "papermill_kwargs", "kill_kernels", "clean_stale_kernel_dirs"]

PREFIX = "dpdl-kernel-"
_STARTED: "weakref.WeakSet[IPCKernelManager]" = weakref.WeakSet()


class IPCKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernel listens on unix sockets ``<private tmp dir>/k-1`` … ``k-5`` (not Windows),
    with its connection file in that folder too."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        _STARTED.add(self)

    @property
    def private_dir(self) -> str:
        """``$TMPDIR/dpdl-kernel-<pid>-<random>``, made on first use."""
        if getattr(self, "_private_dir", None) is None:
            self._private_dir = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
        return self._private_dir

    @default("transport")
    def _default_transport(self):
        # a unix socket path must stay under ~100 bytes: with a very long $TMPDIR, keep TCP
        too_long = len(os.path.join(tempfile.gettempdir(), f"{PREFIX}{os.getpid()}-xxxxxxxx", "k-5")) > 100
        return "tcp" if os.name == "nt" or too_long else "ipc"

    @default("ip")
    def _default_ip(self):
        if self.transport != "ipc":
            from jupyter_client.localinterfaces import localhost
            return localhost()
        return os.path.join(self.private_dir, "k")

    @default("connection_file")
    def _default_connection_file(self):
        return os.path.join(self.private_dir, "kernel.json")

    def cleanup_connection_file(self) -> None:
        super().cleanup_connection_file()
        self._remove_private_dir()

    def cleanup_ipc_files(self) -> None:
        super().cleanup_ipc_files()
        self._remove_private_dir()

    def _remove_private_dir(self) -> None:
        folder = getattr(self, "_private_dir", None)
        if folder and os.path.basename(folder).startswith(PREFIX):
            shutil.rmtree(folder, ignore_errors=True)


def kill_kernels() -> int:
    """SIGKILL the process group of every kernel this process started that still runs; remove their folders.
    Returns how many were killed."""
    killed = 0
    for km in list(_STARTED):
        proc = getattr(getattr(km, "provisioner", None), "process", None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                if os.name == "nt":
                    proc.kill()
                else:
                    os.killpg(proc.pid, signal.SIGKILL)  # the kernel leads its own session (jupyter_client)
                killed += 1
        km._remove_private_dir()
    return killed


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except (ProcessLookupError, OverflowError):
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def clean_stale_kernel_dirs(max_age_s: float = 86400.0) -> list[str]:
    """Remove ``$TMPDIR/dpdl-kernel-<pid>-*`` folders whose process is gone (older ones without a pid in their
    name: when untouched for ``max_age_s``). Returns the names removed."""
    removed = []
    tmp = Path(tempfile.gettempdir())
    for d in tmp.glob(f"{PREFIX}*"):
        pid = d.name[len(PREFIX):].split("-", 1)[0]
        try:
            stale = (not pid_alive(int(pid))) if pid.isdigit() else time.time() - d.stat().st_mtime > max_age_s
        except OSError:
            continue
        if stale:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d.name)
    return removed


def papermill_kwargs() -> dict:
    """Keyword arguments for ``papermill.execute_notebook`` that start the kernel with :class:`IPCKernelManager`
    (first removing the temporary folders of kernels whose process is gone)."""
    clean_stale_kernel_dirs()
    return {"kernel_manager_class": IPCKernelManager}


@contextlib.contextmanager
def stderr_to(path: str | os.PathLike | None):
    """Send file descriptor 2 (so also a kernel's stderr, inherited at spawn) to ``path`` for a while (append)."""
    if path is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(Path(path), "ab") as fh:
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
