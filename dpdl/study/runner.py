"""Executing the study: papermill runs of ``notebooks/experiment.ipynb``, one per batch of :class:`~dpdl.study.plan.RunSpec`.

Runs go in batches (:func:`make_batches`: up to :func:`default_batch` runs of one dataset per kernel), and every
run is written atomically. :func:`execute_batch` executes the notebook into
``results/runs/<profile>/.tmp/<run_id>-<pid>/`` and only then ``os.replace``-s that folder to
``results/runs/<profile>/<run_id>/``; a sweep killed at any moment (even ``kill -9``) loses at most the runs in
flight, never shows a half-written run folder, and the next sweep cleans the stale ``.tmp`` folders and runs only
what is missing. A run that fails keeps its executed notebook (with the traceback) and a ``run.json`` with
``status: "failed"`` and the error's sentence; failed runs are retried only with ``retry_failed``. A rerun that
fails (``rerun_outdated``) never replaces a finished run: its record goes beside it as ``run.failed.json``.

One sweep at a time per results folder (:mod:`dpdl.study.lock`). Ctrl-C or SIGTERM stop a sweep within seconds:
the runs in flight are stopped (their processes and kernels killed, their ``.tmp`` folders removed), the finished
ones are kept, and the same command resumes.

Executors
---------
``local`` (default) runs every batch's notebook in a child process of its own (:mod:`dpdl.study.local`); on a CPU machine
it runs ``jobs`` of them at a time: by default
``cpu_count // profile.threads`` when the profile pins torch's threads (``cpu`` and ``smoke`` use one thread per
run, so a 2-core machine runs two at once), else one at a time with torch's threads as the environment sets
them; ``--jobs 1`` forces one at a time. On a machine with k GPUs it runs k at a time, one per GPU (the
notebook's ``gpu`` parameter sets ``CUDA_VISIBLE_DEVICES`` before torch is imported).

``dask`` sends the same batches to a Dask distributed cluster (:mod:`dpdl.study.cluster`).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

from ..kernels import kill_kernels, papermill_kwargs, pid_alive, stderr_to
from ..paths import REPO_ROOT, results_dir as default_results_dir
from ..records import (SCHEMA_VERSION, atomic_write_json, code_version, holds_finished_run, read_record,
                       utc_now)
from .local import Progress, Stopped, child_argv, exit_with_parent, run_pool, signals_deferred, signals_raise
from .lock import results_lock
from .outdated import method_changes, outdated_fields  # noqa: F401  (re-exported: the sweep and tests use them)
from .cluster import gpu_ids, run_dask
from .plan import RunSpec, batch_label, default_batch, make_batches

EXPERIMENT_NOTEBOOK = REPO_ROOT / "notebooks" / "experiment.ipynb"
_MOVING = threading.Lock()   # held while finished runs are moved into place (see _main)
TMP = ".tmp"


def runs_dir(profile: str, results_dir: str | os.PathLike | None = None) -> Path:
    return Path(results_dir or default_results_dir()) / "runs" / profile


def run_dir(spec: RunSpec | str, profile: str, results_dir=None) -> Path:
    rid = spec if isinstance(spec, str) else spec.run_id
    return runs_dir(profile, results_dir) / rid


def work_dir(spec: RunSpec, profile: str, results_dir=None) -> Path:
    """Where this process executes ``spec`` before moving it into place: ``.tmp/<run_id>-<pid>``."""
    return runs_dir(profile, results_dir) / TMP / f"{spec.run_id}-{os.getpid()}"


def run_state(spec: RunSpec | str, profile: str, results_dir=None) -> tuple[str, dict | None]:
    """``("done" | "failed" | "pending", record or None)`` for one run."""
    path = run_dir(spec, profile, results_dir) / "run.json"
    if not path.exists():
        return "pending", None
    try:
        rec = read_record(path)
    except (OSError, ValueError):
        return "failed", {"status": "failed", "error": "run.json is unreadable"}
    if rec.get("status") == "ok" and rec.get("schema") != SCHEMA_VERSION:
        return "failed", {**rec, "status": "failed", "error": f"run.json has schema {rec.get('schema')!r}, "
                          f"expected {SCHEMA_VERSION}: rerun it with --retry-failed"}
    return ("done" if rec.get("status") == "ok" else "failed"), rec


def clean_stale_tmp(profile: str, results_dir=None) -> list[str]:
    """Remove ``.tmp`` folders left by killed sweeps (those whose process is gone). Returns their names."""
    tmp = runs_dir(profile, results_dir) / TMP
    removed = []
    if not tmp.exists():
        return removed
    for d in tmp.iterdir():
        pid = d.name.rsplit("-", 1)[-1]
        alive = False
        if pid.isdigit():
            alive = int(pid) != os.getpid() and pid_alive(int(pid))
            # pids are reused: a folder older than a day is stale whatever its pid
            if alive and time.time() - d.stat().st_mtime > 86400:
                alive = False
        if not alive:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d.name)
    return removed


def _error_sentence(exc: BaseException) -> str:
    """One sentence for a failed run: the notebook's exception ``Name: message`` (first line)."""
    ename = getattr(exc, "ename", None)
    evalue = getattr(exc, "evalue", None)
    if ename:
        text = f"{ename}: {evalue}" if evalue else str(ename)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return _first_line(text) or type(exc).__name__


def _failed_record(spec: RunSpec, profile: str, error: str, cfg: dict, elapsed: float) -> dict:
    return {
        "schema": SCHEMA_VERSION, "status": "failed", "error": error, "run_id": spec.run_id, "profile": profile,
        "config": cfg, "dataset": spec.dataset, "setting": spec.setting, "known_class": spec.known_class,
        "anomalies": spec.anomalies, "seed": spec.seed, "backbone": cfg.get("backbone"), "variant": spec.variant,
        "metrics": None, "split": None, "timings": {"total_s": round(elapsed, 3)},
        "code_version": code_version(), "date": utc_now(),
        "host": {"device": "unknown", "hostname": socket.gethostname(), "cpu_count": os.cpu_count()},
    }


# glibc's malloc hands large blocks to mmap and back at every free, so each large tensor is page-faulted in afresh:
# the study spent 7 % of its CPU time in the kernel (357 of 4,896 s), and an ELPV kNN run's test took 12.3 s
# instead of 8.9 s. Kept in the heap instead, blocks are reused. Only the allocator changes, never a value; other C
# libraries ignore it, a GLIBC_TUNABLES of your own wins, and a kernel's memory then stays at its peak.
KERNEL_MALLOC = "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296"


def _kernel_env() -> None:
    """Make the kernels this process starts import this very ``dpdl`` (also when the package is not installed, e.g.
    in a checkout), and give them the :data:`KERNEL_MALLOC` allocator settings unless ``GLIBC_TUNABLES`` is set
    already. Changes ``os.environ`` of this process (the kernels inherit it)."""
    pkg_parent = str(Path(__file__).resolve().parents[2])
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if pkg_parent not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([pkg_parent, *parts])
    os.environ.setdefault("GLIBC_TUNABLES", KERNEL_MALLOC)


def execute_run(spec: RunSpec | dict, profile: str, results_dir=None, **kw) -> dict:
    """:func:`execute_batch` of one run: its summary ``{"run_id", "status", "error", "seconds"}``."""
    return execute_batch([spec], profile, results_dir, **kw)[0]


def execute_batch(specs: list, profile: str, results_dir=None, *, data_root=None, gpu: str | int | None = None,
                  threads: int | None = None, notebook: str | os.PathLike | None = None, log_output: bool = False,
                  plot: bool = False, quiet_kernel: bool = True) -> list[dict]:
    """Papermill the experiment notebook once for ``specs`` (their runs one after the other in one kernel, the
    notebook's ``runs`` parameter) and move each run's folder into place atomically. One summary
    ``{"run_id", "status", "error", "seconds"}`` per spec, in order.

    Why batches: a kernel's start-up and a dataset's feature files (kept in memory, dpdl.features.MEMO) are paid
    once per batch instead of once per run; a run's numbers do not depend on its batch (tests/test_study_batch.py).
    Each run folder gets a copy of the batch's executed notebook; ``study.batch`` in its record lists the batch.
    Never raises for a failing run: a run whose cell raised gets a ``run.json`` with ``status: "failed"`` and the
    error's sentence, and the runs after it in the batch are executed again in a new kernel.
    ``plot``: the notebook also draws the score histogram (single runs only; about a second more: matplotlib).
    ``quiet_kernel``: the kernel's own stderr (start-up warnings) goes to ``kernel.log`` in the first run's folder,
    kept when a run failed (uses a process-wide file-descriptor redirect: only for one batch at a time per process).
    """
    import papermill as pm

    todo = [RunSpec.from_dict(s) if isinstance(s, dict) else s for s in specs]
    _kernel_env()
    base = runs_dir(profile, results_dir)
    summaries: list[dict] = []
    while todo:
        tmps = [work_dir(s, profile, results_dir) for s in todo]
        for tmp in tmps:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        cfgs = [s.config(profile, data_root=data_root, out=tmp) for s, tmp in zip(todo, tmps)]
        params = dict(cfgs[0]) if len(todo) == 1 else {"runs": cfgs, "profile": profile}
        params.update(gpu=gpu, threads=threads, plot=bool(plot) and len(todo) == 1)
        executed = tmps[0] / "experiment.ipynb"
        t0 = time.time()
        error = None
        try:
            with stderr_to(tmps[0] / "kernel.log" if quiet_kernel else None):
                pm.execute_notebook(str(notebook or EXPERIMENT_NOTEBOOK), str(executed), parameters=params,
                                    kernel_name="python3", progress_bar=False, log_output=log_output,
                                    cwd=str(tmps[0]), **papermill_kwargs())
        except Exception as exc:  # noqa: BLE001 - any failure of a run is recorded, not raised
            error = _error_sentence(exc)
        except BaseException:     # stopped (Ctrl-C, SIGTERM): no trace of the unfinished runs
            kill_kernels()
            for tmp in tmps:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        elapsed = time.time() - t0
        culprit = _culprit(tmps, error)
        ran = len(todo) if culprit is None else culprit + 1
        # from here on these runs are finished: moved into place even if stopped now (signals held), and never
        # while an orphaned child's clean-up (_main's on_exit) removes the batch's folders (_MOVING)
        with signals_deferred(), _MOVING:
            if culprit and (tmps[0] / "kernel.log").exists():   # the log goes with the run that failed
                os.replace(tmps[0] / "kernel.log", tmps[culprit] / "kernel.log")
            for tmp in tmps[1:ran]:
                if executed.exists():
                    shutil.copyfile(executed, tmp / "experiment.ipynb")
            batch = {"runs": [s.run_id for s in todo[:ran]], "seconds": round(elapsed, 3)}
            for i in range(ran):
                summaries.append(_finish_run(todo[i], profile, tmps[i], base / todo[i].run_id, base, cfgs[i],
                                             error if i == culprit else None, elapsed / ran, batch))
            for tmp in tmps[ran:]:
                shutil.rmtree(tmp, ignore_errors=True)
        todo = todo[ran:]
    return summaries


def _culprit(tmps: list[Path], error: str | None) -> int | None:
    """Which run of a batch made its notebook fail with ``error`` (None: none failed). The runs execute in order and
    the first exception stops the cell: the run that raised is the one before the first missing record when that
    record is a failed one with this very error (``dpdl.train.run`` writes one for an error mid-run, then
    re-raises), else the first without a record (an error before anything was written: bad parameters), else (every
    run wrote its record: a later cell failed) the last."""
    if error is None:
        return None
    recs = []
    for tmp in tmps:
        try:
            recs.append(read_record(tmp / "run.json") if (tmp / "run.json").exists() else None)
        except (OSError, ValueError):
            recs.append({"status": "failed", "error": "run.json is unreadable"})
    j = next((i for i, r in enumerate(recs) if r is None), len(recs))
    prev = recs[j - 1] if j > 0 else None
    if prev and prev.get("status") != "ok" and _first_line(prev.get("error")) == error:
        return j - 1
    return min(j, len(recs) - 1)


def _first_line(text) -> str:
    text = str(text or "").strip()
    return text.splitlines()[0][:500] if text else ""


def _finish_run(spec: RunSpec, profile: str, tmp: Path, final: Path, base: Path, cfg: dict, error: str | None,
                elapsed: float, batch: dict | None = None) -> dict:
    """Complete the record in ``tmp`` (a failed one when ``error``) and move ``tmp`` to ``final`` atomically."""
    rec_path = tmp / "run.json"
    rec = None
    if rec_path.exists():
        try:
            rec = read_record(rec_path)
        except (OSError, ValueError):
            rec = None
    if error is None and (rec is None or rec.get("status") != "ok"):
        error = (rec or {}).get("error") or "the experiment notebook finished without writing an ok run.json"
    if error is not None:
        if rec is None or rec.get("status") == "ok":
            rec = _failed_record(spec, profile, error, cfg, elapsed)
        else:
            rec.setdefault("error", error)
            rec["status"] = "failed"
        rec.setdefault("run_id", spec.run_id)
    # notebook_s: this run's share of its batch's notebook wall time (kernel start included)
    rec["study"] = {"groups": list(spec.groups), "variant": spec.variant, "notebook_s": round(elapsed, 3)}
    if batch and len(batch["runs"]) > 1:
        rec["study"]["batch"] = batch
    if isinstance(rec.get("config"), dict) and rec["config"].get("out"):
        rec["config"]["out"] = str(final)   # where the run lives, not the temporary folder it ran in
    atomic_write_json(rec_path, rec)
    if rec["status"] == "ok" and (tmp / "kernel.log").exists():
        (tmp / "kernel.log").unlink()      # kept only where it may explain a failure
    if rec["status"] != "ok" and holds_finished_run(final):   # a failed rerun never replaces a finished run
        os.replace(rec_path, final / "run.failed.json")
        shutil.rmtree(tmp, ignore_errors=True)
        return {"run_id": spec.run_id, "status": "failed", "seconds": elapsed,
                "error": f"{rec.get('error')} (the finished run is kept; this attempt: {final}/run.failed.json)"}
    # into place: an old (failed) run folder is moved aside first, so the rename is atomic
    if final.exists():
        trash = base / TMP / f"old-{spec.run_id}-{os.getpid()}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return {"run_id": spec.run_id, "status": rec["status"], "error": rec.get("error"), "seconds": elapsed}


def died(batch: list[RunSpec], res: dict, profile: str, results_dir) -> list[dict]:
    """Summaries of a batch whose process died with summary ``res``: each run as it is on disk (a retry pass of the
    batch may have finished some), the others failed with ``res``'s error; ``seconds`` shared out."""
    out = []
    for s in batch:
        state, rec = run_state(s, profile, results_dir)
        ok = state == "done" and (rec or {}).get("status") == "ok"
        out.append({"run_id": s.run_id, "status": "ok" if ok else "failed", "error": None if ok else res.get("error"),
                    "seconds": float(res.get("seconds") or 0.0) / len(batch)})
    return out


def default_jobs(profile: str) -> int:
    """Concurrent local CPU runs: ``cpu_count // threads`` when the profile pins torch's threads, else 1."""
    try:
        from ..config import get_profile
        threads = int(getattr(get_profile(profile), "threads", 0) or 0)
    except (ValueError, ImportError):
        threads = 0
    return max(1, (os.cpu_count() or 1) // threads) if threads else 1


def warm_feature_cache(datasets: Iterable[str], profile: str, data_root=None, log: Callable[[str], None] = print,
                       progress: bool = True) -> list[dict]:
    """Fill the feature cache of each dataset once before runs start in parallel (otherwise the first parallel runs
    would all extract the same features), one process per core (:func:`dpdl.modes.prepare_features_parallel`; each
    extracts on one thread, so the maps do not depend on the thread count). Feature-cache profiles only.
    ``progress`` is kept for the callers; the worker processes draw no bars."""
    from ..config import get_profile
    from ..modes import prepare_features_parallel

    if not get_profile(profile).feature_cache:
        return []
    out = []
    for dataset, info in prepare_features_parallel(datasets, profile, data_root=data_root,
                                                   initializer=exit_with_parent).items():
        if isinstance(info, (ValueError, FileNotFoundError)):  # the runs will fail with this sentence and be recorded
            log(f"feature cache for {dataset} not prepared: {info}")
            continue
        if isinstance(info, Exception):
            raise info
        log(f"feature cache for {dataset}: {info['items']} items ready in {info['seconds']:.0f} s "
            f"({info.get('misses', 0)} extracted)")
        out.append(info)
    return out


def _warm_in_child(todo: list[RunSpec], profile: str, data_root, log, progress: bool) -> None:
    """:func:`warm_feature_cache` for the datasets of ``todo`` (not those whose runs choose their own backbone), in
    a child process stopped like a run: the sweep itself never loads a model, so it ends at once when stopped."""
    from ..config import get_profile

    datasets = sorted({s.dataset for s in todo if "backbone" not in dict(s.overrides)})
    if not datasets or not get_profile(profile).feature_cache:
        return
    root = "" if data_root is None else str(data_root)
    res = run_pool(["feature cache"], [None], show_output=True,
                   argv=lambda i, slot: child_argv("--warm", ",".join(datasets), profile, root, int(progress)))[0]
    for line in res.get("log") or [f"feature cache not prepared: {res.get('error')}"]:
        log(line)


def run_specs(specs: Iterable[RunSpec], profile: str, results_dir=None, *, executor: str = "local",
              scheduler: str | None = None, workers: int | None = None, data_root=None,
              retry_failed: bool = False, progress: bool = True, plot: bool = False, jobs: int | None = None,
              log: Callable[[str], None] = print, rerun_outdated: bool = False, wait: bool = False,
              batch: int | None = None) -> dict:
    """Run what is missing among ``specs``; returns counts ``{"done", "failed", "ran", "skipped_done", ...}``.

    ``batch``: at most this many runs of a dataset per kernel (:func:`execute_batch`; default
    :func:`default_batch`).

    Holds the results folder's lock (:func:`~dpdl.study.lock.results_lock`; ``wait``: wait for another sweep
    instead of refusing). Ctrl-C or SIGTERM raise :class:`~dpdl.study.local.Stopped` once the runs in flight are
    stopped (their folders removed); the finished runs are kept (``.results``)."""
    if executor not in ("local", "dask"):
        raise ValueError(f"unknown executor {executor!r}: expected local or dask")
    results_dir = Path(results_dir or default_results_dir())
    with results_lock(results_dir, wait=wait, log=log), signals_raise():
        return _run_locked(list(specs), profile, results_dir, executor=executor, scheduler=scheduler,
                           workers=workers, data_root=data_root, retry_failed=retry_failed, progress=progress,
                           plot=plot, jobs=jobs, log=log, rerun_outdated=rerun_outdated, batch=batch)


def _run_locked(specs: list[RunSpec], profile: str, results_dir: Path, *, executor, scheduler, workers, data_root,
                retry_failed, progress, plot, jobs, log, rerun_outdated, batch=None) -> dict:
    base = runs_dir(profile, results_dir)
    base.mkdir(parents=True, exist_ok=True)
    stale = clean_stale_tmp(profile, results_dir)
    if stale:
        log(f"removed {len(stale)} unfinished run folder(s) left by an interrupted sweep")
    todo, already_done, already_failed, outdated = [], 0, 0, {}
    for s in specs:
        state, rec = run_state(s, profile, results_dir)
        changed = outdated_fields(rec, profile) if state == "done" else []
        if changed:
            outdated[s.run_id] = changed
        if state == "done" and changed and rerun_outdated:
            todo.append(s)
        elif state == "done":
            already_done += 1
        elif state == "failed" and not retry_failed:
            already_failed += 1
        else:
            todo.append(s)
    log(f"profile {profile}: {already_done} done, {already_failed} failed (not retried"
        f"{'' if already_failed == 0 else '; use --retry-failed'}), {len(todo)} to run "
        f"[{executor}]")
    if outdated and not rerun_outdated:
        fields = sorted({f for v in outdated.values() for f in v})
        log(f"{len(outdated)} finished run(s) were made with other {profile}-profile settings "
            f"({', '.join(fields)}); they are kept as they are: pass --rerun-outdated to replace them")
    elif outdated:
        log(f"rerunning {len(outdated)} finished run(s) made with other {profile}-profile settings")
    if todo and executor == "local":
        _warm_in_child(todo, profile, data_root, log, progress)
    results: list[dict] = []
    size = batch or (1 if plot else default_batch(profile))   # --plots: a histogram per run, so one run per kernel
    prog = Progress(len(todo), enabled=progress)
    try:
        if todo and executor == "local":
            gpus = gpu_ids()
            if len(gpus) > 1:
                slots = gpus                                       # one run per GPU
            else:
                slots = list(range(int(jobs) if jobs else (1 if gpus else default_jobs(profile))))
            batches = make_batches(todo, size, len(slots))
            log(f"local: {len(slots)} process(es) at a time" + (" (one per GPU)" if len(gpus) > 1 else "")
                + f", {len(todo)} runs in {len(batches)} batch(es) of up to {max(map(len, batches))} runs per kernel")
            root = "" if data_root is None else str(data_root)
            labels = [batch_label(b) for b in batches]
            members = dict(zip(labels, batches))

            def finished(res: dict) -> None:   # a batch whose process died: its runs as they are on disk
                got = [res] if res["run_id"] not in members else died(members[res["run_id"]], res, profile,
                                                                       results_dir)
                for r in got:
                    results.append(r)
                    prog.finish(r)

            run_pool(labels, slots,
                     lambda i, slot: child_argv(json.dumps([s.to_dict() for s in batches[i]]), profile, results_dir,
                                                root, int(plot), slot if len(gpus) > 1 else ""),
                     on_start=lambda label: prog.start(label, [s.run_id for s in members[label]]),
                     on_finish=finished)
        elif todo and executor == "dask":
            results = run_dask(todo, profile, results_dir, scheduler=scheduler, workers=workers,
                               data_root=data_root, prog=prog, log=log, plot=plot, batch=size)
    except Stopped as stop:
        prog.close()
        clean_stale_tmp(profile, results_dir)   # the stopped runs' folders (their processes are gone)
        stop.results = results or stop.results
        raise
    finally:
        prog.close()
    # folders of runs whose process died meanwhile (e.g. an earlier sweep's orphan, which leaves its folder to us
    # rather than race with its own main thread moving a run into place)
    clean_stale_tmp(profile, results_dir)
    ok = sum(r["status"] == "ok" for r in results)
    return {"ran": len(results), "ok": ok, "failed_now": len(results) - ok, "done_before": already_done,
            "failed_before": already_failed, "results": results}


from .status import study_status  # noqa: E402,F401  (re-exported: the CLI and tests use it)


def _main(argv: list[str]) -> int:
    """``python -m dpdl.study.runner SPECS_JSON PROFILE RESULTS_DIR [DATA_ROOT] [PLOT] [GPU]``: one batch of runs (a
    JSON list of specs, or one spec); prints ``{"batch": [summaries]}`` as a JSON line (the local executor's child; ``--warm ...``: :func:`warm_feature_cache`).
    SIGTERM/SIGINT stop it (exit status 128 + signal); it exits too when the sweep that started it is gone."""
    from ..paths import set_tool_config_env
    set_tool_config_env()
    if argv[0] == "--warm":             # --warm DATASETS PROFILE DATA_ROOT PROGRESS (SIGTERM: its default, exit)
        exit_with_parent()
        t0, lines = time.time(), []
        warm_feature_cache(argv[1].split(","), argv[2], data_root=argv[3] or None, log=lines.append,
                           progress=argv[4] == "1")
        print(json.dumps({"run_id": "feature cache", "status": "ok", "error": None, "log": lines,
                          "seconds": time.time() - t0}), flush=True)
        return 0
    given = json.loads(argv[0])
    specs = [RunSpec.from_dict(d) for d in (given if isinstance(given, list) else [given])]
    profile, results_dir = argv[1], argv[2]

    def orphaned():   # the sweep died: the kernel, then the unfinished folders (never during a move into place)
        kill_kernels()
        with _MOVING:
            for s in specs:
                shutil.rmtree(work_dir(s, profile, results_dir), ignore_errors=True)

    exit_with_parent(on_exit=orphaned)
    data_root = argv[3] if len(argv) > 3 and argv[3] else None
    plot = len(argv) > 4 and argv[4] == "1"
    gpu = argv[5] if len(argv) > 5 and argv[5] else None
    try:
        with signals_raise(on_signal=kill_kernels):   # its kernel dies at once, not after papermill's clean-up
            res = execute_batch(specs, profile, results_dir, data_root=data_root, plot=plot, gpu=gpu,
                                quiet_kernel=True)
    except Stopped as stop:
        return 128 + stop.signum
    print(json.dumps({"batch": res}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
