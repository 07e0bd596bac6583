"""`dpdl book build` stopped by a real signal (issue 25, group 8): Ctrl-C (SIGINT) or SIGTERM while report notebooks
execute ends the build within 5 s, with no traceback, and leaves no process behind (notebook workers, their
kernels, multiprocessing's resource tracker)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dpdl.paths import REPO_ROOT
from test_sweep_signals import stop_with

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")]


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if stat[0] != "Z":
                kids.setdefault(int(stat[1]), []).append(int(d.name))
    return kids


def descendants(pid: int) -> set[int]:
    kids, out, todo = _children(), set(), [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def alive(pids) -> list[int]:
    kids = _children()
    running = {p for ps in kids.values() for p in ps}
    return sorted(p for p in pids if p in running)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_the_book_build_leaving_no_process(sig, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "dpdl", "book", "build", "--profile", "smoke", "--jobs", "2",
                             "--results-dir", str(results), "--out", str(tmp_path / "book")],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, seen = time.monotonic() + 300, set()
        while time.monotonic() < deadline and proc.poll() is None:
            seen |= descendants(proc.pid)
            if any("ipykernel" in cmdline(p) for p in seen):
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1]
        assert any("ipykernel" in cmdline(p) for p in seen), "no kernel started"
        time.sleep(0.5)
        seen |= descendants(proc.pid)
        err, took = stop_with(proc, sig, 30)
    finally:
        proc.kill()
    assert took < 5, f"the build ended {took:.1f} s after {sig.name}"
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err, err
    deadline = time.monotonic() + 5
    while alive(seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive(seen) == [], [cmdline(p) for p in alive(seen)]
