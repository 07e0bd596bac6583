"""How a sweep stops, and the local executor's pool of run processes.

* :class:`Stopped` -- Ctrl-C (SIGINT) or SIGTERM, raised in the main thread while :func:`signals_raise` is in force
  (a ``KeyboardInterrupt``, so ``except Exception`` never swallows it).
* :func:`signals_deferred` -- hold those signals for a moment (a finished run being moved into place is never cut
  in half; a child being started is always registered, so that it can be stopped).
* :class:`Progress` -- the sweep's progress bar (done/failed counts, running runs, ETA).
* :func:`run_pool` -- each task (a batch of runs) in its own child process (``python -m dpdl.study.runner ...``,
  its own session, so a terminal's Ctrl-C reaches only the sweep), one per free slot (a CPU job number or a GPU
  id). On :class:`Stopped` the children get SIGTERM (each kills its kernel and removes its unfinished folder), SIGKILL after a grace time;
  runs that finished are kept. A child whose sweep dies (even ``kill -9``) notices within a second and exits
  (:func:`exit_with_parent`).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Sequence

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """The sweep was asked to stop by signal ``signum``; ``results`` holds the summaries of the runs that finished."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum, self.results = signum, []


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def signals_raise(on_signal: Callable[[], object] | None = None):
    """Within: SIGINT and SIGTERM call ``on_signal()``, then raise :class:`Stopped` (main thread only; elsewhere
    nothing changes)."""
    if not _in_main_thread():
        yield
        return

    def handler(signum, frame):
        if on_signal is not None:
            on_signal()
        raise Stopped(signum)

    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def signals_deferred(deliver: bool = True):
    """Within: SIGINT and SIGTERM are held, then delivered on leaving (``deliver=False``: dropped) (main thread
    only)."""
    if not _in_main_thread():
        yield
        return
    got: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if got and deliver:
            signal.raise_signal(got[0])


def exit_with_parent(poll_s: float = 0.5, on_exit: Callable[[], object] | None = None) -> None:
    """Start a daemon thread that ends this process (after ``on_exit()``) once its parent is gone."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(poll_s)
        if on_exit is not None:
            with contextlib.suppress(Exception):
                on_exit()
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _summary(proc: subprocess.Popen, out, run_id: str, t0: float) -> list[dict]:
    """A finished child's summaries: its last JSON line (a summary, or ``{"batch": [summaries]}``), else one failed
    summary (``run_id``: the task's label) with its last line of output."""
    out.seek(0)
    lines = out.read().decode("utf-8", "replace").splitlines()
    out.close()
    found = [line for line in lines if line.startswith("{")]
    if proc.returncode == 0 and found:
        res = json.loads(found[-1])
        return list(res["batch"]) if "batch" in res else [res]
    last = next((line for line in reversed(lines) if line.strip()), f"exit status {proc.returncode}")
    return [{"run_id": run_id, "status": "failed", "error": f"the run's process failed: {last.strip()}",
             "seconds": time.time() - t0}]


def _stop_children(running: dict, grace_s: float) -> list[dict]:
    """SIGTERM every child, SIGKILL (its whole group) those still there after ``grace_s``; returns the summaries
    of the children that still finished their run."""
    for proc in running:
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(p.poll() is None for p in running) and time.monotonic() < deadline:
        time.sleep(0.05)
    done = []
    for proc, (run_id, _, t0, out) in running.items():
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        res = _summary(proc, out, run_id, t0)
        if proc.returncode == 0:
            done.extend(res)
    return done


def run_pool(run_ids: Sequence[str], slots: Sequence, argv: Callable[[int, object], list[str]], *,
             on_start: Callable[[str], object] = lambda rid: None, on_finish: Callable[[dict], object] = lambda r: None,
             grace_s: float = 5.0, poll_s: float = 0.1, show_output: bool = False) -> list[dict]:
    """Run child ``argv(i, slot)`` for every task ``run_ids[i]`` (a run id, or a batch's label), one per free slot;
    returns the children's run summaries (their stdout's last JSON line, a summary or ``{"batch": [...]}``;
    ``on_finish`` is called for each; ``show_output``: their stderr goes to ours, e.g. a progress bar).

    Raises :class:`Stopped` (with ``.results``: every run that finished) on SIGINT/SIGTERM, after stopping the
    children. Works from the main thread (signals) or any other (then only the caller stops it)."""
    pending, free, running, results = list(range(len(run_ids))), list(slots), {}, []
    try:
        with signals_raise():
            while pending or running:
                while pending and free:
                    with signals_deferred():
                        i, slot = pending.pop(0), free.pop(0)
                        out = tempfile.TemporaryFile()          # no name: nothing is left in $TMPDIR
                        proc = subprocess.Popen(argv(i, slot), stdout=out,
                                                stderr=None if show_output else subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True)
                        running[proc] = (run_ids[i], slot, time.time(), out)
                    on_start(run_ids[i])
                for proc in [p for p in running if p.poll() is not None]:
                    run_id, slot, t0, out = running.pop(proc)
                    free.append(slot)
                    for res in _summary(proc, out, run_id, t0):
                        results.append(res)
                        on_finish(res)
                time.sleep(poll_s)
    except BaseException as exc:                # Stopped, or anything else: no child outlives the pool
        with signals_deferred(deliver=False):   # a second Ctrl-C while stopping changes nothing
            done = _stop_children(running, grace_s)
            for res in done:
                with contextlib.suppress(Exception):
                    on_finish(res)
        if isinstance(exc, Stopped):
            exc.results = results + done
        raise
    return results


class Progress:
    """tqdm over runs: done/failed counts, the running run(s), the mean run time, and an ETA from the wall-clock
    throughput so far (which accounts for runs executing in parallel)."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.failed, self.times = total, 0, 0, []
        self.t0 = time.monotonic()
        self.running: list[str] = []
        self.members: dict[str, set] = {}   # a running batch's label -> its runs not finished yet
        self.bar = None
        if enabled and total:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, unit="run", dynamic_ncols=True, file=sys.stderr)

    def start(self, run_id: str, members: Sequence[str] | None = None):
        """A task started: one run, or a batch labelled ``run_id`` of the runs ``members``."""
        self.running.append(run_id)
        if members:
            self.members[run_id] = set(members)
        self._post()

    def finish(self, res: dict):
        for label, left in list(self.members.items()):
            left.discard(res["run_id"])
            if not left:
                del self.members[label]
                self.running.remove(label)
        if res["run_id"] in self.running:
            self.running.remove(res["run_id"])
        self.times.append(res["seconds"])
        self.failed += res["status"] != "ok"
        self.done += res["status"] == "ok"
        if self.bar is not None:
            self.bar.update(1)
            if res["status"] != "ok":
                self.bar.write(f"failed: {res['run_id']}: {res['error']}")
        self._post()

    def _post(self):
        if self.bar is None:
            return
        left = self.total - self.done - self.failed
        mean = sum(self.times) / len(self.times) if self.times else float("nan")
        per_run_wall = (time.monotonic() - self.t0) / len(self.times) if self.times else float("nan")
        eta = "?" if not self.times else time.strftime("%H:%M:%S", time.gmtime(per_run_wall * left))
        self.bar.set_postfix_str(f"ok={self.done} failed={self.failed} mean={mean:.1f}s eta={eta} "
                                 f"running={','.join(self.running) or '-'}", refresh=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def child_argv(*args: str) -> list[str]:
    """``python -m dpdl.study.runner ARGS...``."""
    return [sys.executable, "-m", "dpdl.study.runner", *map(str, args)]
