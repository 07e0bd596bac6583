"""The notebook kernels of the study and the book: private unix sockets, stderr to a log."""
import json
import os

import nbformat
import pytest

from dpdl.kernels import IPCKernelManager, papermill_kwargs, stderr_to

pytestmark = pytest.mark.skipif(os.name == "nt", reason="unix sockets")


def test_each_kernel_manager_gets_its_own_socket_folder():
    a, b = IPCKernelManager(kernel_name="python3"), IPCKernelManager(kernel_name="python3")
    assert a.transport == b.transport == "ipc"
    assert a.ip != b.ip and os.path.isdir(os.path.dirname(a.ip)) and os.path.isdir(os.path.dirname(b.ip))
    assert len(a.ip) + len("-5") < 100          # unix socket paths are limited to about 100 bytes
    for km in (a, b):
        km.cleanup_ipc_files()
        assert not os.path.exists(os.path.dirname(km.ip))


def test_papermill_runs_a_notebook_over_ipc_and_cleans_up(tmp_path):
    import papermill

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import json\nfrom ipykernel.connect import get_connection_info\nprint(get_connection_info())")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    papermill.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                               progress_bar=False, cwd=str(tmp_path), **papermill_kwargs())
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    info = json.loads(out.cells[0].outputs[0]["text"])
    assert info["transport"] == "ipc" and os.path.basename(os.path.dirname(info["ip"])).startswith("dpdl-kernel-")
    assert not os.path.exists(os.path.dirname(info["ip"]))       # sockets and their folder removed at shutdown
    assert not list(tmp_path.glob("kernel-ipc*"))                # nothing left in the working folder


def test_stderr_to_sends_fd2_to_the_file_and_restores_it(tmp_path, capfd):
    log = tmp_path / "k.log"
    with stderr_to(log):
        os.write(2, b"to the log\n")
    os.write(2, b"to the terminal\n")
    assert log.read_text() == "to the log\n"
    assert capfd.readouterr().err == "to the terminal\n"


def test_a_too_long_tmpdir_keeps_tcp(tmp_path, monkeypatch):
    import tempfile

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    km = IPCKernelManager(kernel_name="python3")
    assert km.transport == "tcp" and not km.ip.startswith(str(deep))
