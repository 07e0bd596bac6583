"""A real sweep (smoke profile, synthetic data, two runs at a time) stopped by a real signal: Ctrl-C (SIGINT) and
SIGTERM end it within seconds with one line and no traceback, the runs in flight are stopped (their processes and
kernels gone, no `.tmp` folder left), the finished runs are kept; `kill -9` of the sweep takes its runs with it.
Nothing is written to $HOME."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dpdl.kernels import pid_alive
from dpdl.paths import REPO_ROOT
from dpdl.study.plan import expand

pytestmark = pytest.mark.slow


def start_sweep(root: Path, home: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HOME": str(home)}
    for var in ("MPLCONFIGDIR", "IPYTHONDIR"):
        env.pop(var, None)
    return subprocess.Popen([sys.executable, "-m", "dpdl.cli", "study", "run", "--profile", "smoke", "--only",
                             "table1", "--jobs", "2", "--batch", "1", "--no-progress", "--no-tables",
                             "--results-dir", str(root)],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(root: Path) -> list[str]:
    base = root / "runs" / "smoke"
    return sorted(p.parent.name for p in base.glob("*/run.json")) if base.exists() else []


def in_flight(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "runs" / "smoke" / ".tmp").glob("*"))


def wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def stop_with(proc: subprocess.Popen, sig: int, timeout: float) -> tuple[str, float]:
    """Send ``sig`` to ``proc`` and wait for it: (its stderr, seconds it took to end)."""
    t0 = time.monotonic()
    proc.send_signal(sig)
    err = proc.communicate(timeout=timeout)[1]
    return err, time.monotonic() - t0


def kernel_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("dpdl-kernel-*-*") if p.name.split("-")[2].isdigit()}


def processes_using(root: Path) -> list[int]:
    """Processes whose command line names ``root`` or whose working folder is below it (the runs' kernels)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            cwd = os.readlink(d / "cwd")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (str(root) in cmd or cwd.startswith(str(root))):
            out.append(int(d.name))
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_the_sweep_keeping_finished_runs(sig, tmp_path):
    root, home = tmp_path / "results", tmp_path / "home"
    home.mkdir()
    kernels_before = kernel_dirs()
    proc = start_sweep(root, home)
    try:
        wait_for(lambda: finished(root) and in_flight(root), 600, "a finished run and one in flight")
        time.sleep(1.0)                                     # the next run's kernel is starting or running
        wait_for(lambda: in_flight(root), 60, "a run in flight")
        done_before, flying = finished(root), in_flight(root)
        err, took = stop_with(proc, sig, 60)
    finally:
        proc.kill()
    print(f"{sig.name}: the sweep ended {took:.1f} s after the signal; in flight were {flying}")
    assert flying and took < 15, f"{took:.1f} s"
    assert proc.returncode == 128 + sig
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1].startswith(f"stopped by {sig.name}:"), err
    assert in_flight(root) == []                            # no stranded .tmp run
    kept = finished(root)
    assert set(done_before) <= set(kept)                    # finished runs are kept ...
    for rid in kept:                                        # ... complete, and ok
        rec = json.loads((root / "runs" / "smoke" / rid / "run.json").read_text())
        assert rec["status"] == "ok" and (root / "runs" / "smoke" / rid / "experiment.ipynb").exists()
    assert len(kept) < len(expand("smoke", only=["table1"]).runs)   # the sweep did not run to its end
    wait_for(lambda: not processes_using(root), 5, "the runs' processes and kernels to end")
    assert list(home.iterdir()) == []                       # nothing in $HOME (.ipython, .cache/matplotlib, ...)
    left = [d for d in kernel_dirs() - kernels_before if not pid_alive(int(d.split("-")[2]))]
    assert left == []                                       # the stopped kernels' temporary folders are gone


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_kill_9_of_the_sweep_ends_its_runs_too(tmp_path):
    root, home = tmp_path / "results", tmp_path / "home"
    home.mkdir()
    proc = start_sweep(root, home)
    try:
        wait_for(lambda: in_flight(root), 600, "a run in flight")
        time.sleep(2.0)
        children = [p for p in processes_using(root) if p != proc.pid]
        assert children, "no run process found"
        proc.kill()
        proc.wait()
        wait_for(lambda: not processes_using(root), 10, "the orphaned runs and kernels to end")
        wait_for(lambda: not in_flight(root), 5, "the orphaned runs to remove their folders")
    finally:
        proc.kill()
