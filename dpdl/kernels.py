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
import sys
import tempfile
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import default

__all__ = ["IPCKernelManager", "stderr_to", "papermill_kwargs"]


class IPCKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernel listens on unix sockets ``<private tmp dir>/k-1`` … ``k-5`` (not Windows)."""

    @default("transport")
    def _default_transport(self):
        # a unix socket path must stay under ~100 bytes: with a very long $TMPDIR, keep TCP
        too_long = len(os.path.join(tempfile.gettempdir(), "dpdl-kernel-xxxxxxxx", "k-5")) > 100
        return "tcp" if os.name == "nt" or too_long else "ipc"

    @default("ip")
    def _default_ip(self):
        if self.transport != "ipc":
            from jupyter_client.localinterfaces import localhost
            return localhost()
        return os.path.join(tempfile.mkdtemp(prefix="dpdl-kernel-"), "k")

    def cleanup_ipc_files(self) -> None:
        super().cleanup_ipc_files()
        if self.transport == "ipc":
            folder = os.path.dirname(self.ip)
            if os.path.basename(folder).startswith("dpdl-kernel-"):
                shutil.rmtree(folder, ignore_errors=True)


def papermill_kwargs() -> dict:
    """Keyword arguments for ``papermill.execute_notebook`` that start the kernel with :class:`IPCKernelManager`."""
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
