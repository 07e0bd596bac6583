"""Executing the study: one papermill run of ``notebooks/experiment.ipynb`` per :class:`~dpdl.study.plan.RunSpec`.

Every run is written atomically. :func:`execute_run` executes the notebook into
``results/runs/<profile>/.tmp/<run_id>-<pid>/`` and only then ``os.replace``-s that folder to
``results/runs/<profile>/<run_id>/``; a sweep killed at any moment (even ``kill -9``) loses at most the runs in
flight, never shows a half-written run folder, and the next sweep cleans the stale ``.tmp`` folders and runs only
what is missing. A run that fails keeps its executed notebook (with the traceback) and a ``run.json`` with
``status: "failed"`` and the error's sentence; failed runs are retried only with ``retry_failed``.

One sweep at a time per results folder (:mod:`dpdl.study.lock`). Ctrl-C or SIGTERM stop a sweep within seconds:
the runs in flight are stopped (their processes and kernels killed, their ``.tmp`` folders removed), the finished
ones are kept, and the same command resumes.

Executors
---------
``local`` (default) runs every notebook in a child process of its own (:mod:`dpdl.study.local`); on a CPU machine
it runs ``jobs`` of them at a time: by default
``cpu_count // profile.threads`` when the profile pins torch's threads (``cpu`` and ``smoke`` use one thread per
run, so a 2-core machine runs two at once), else one at a time with torch's threads as the environment sets
them; ``--jobs 1`` forces one at a time. On a machine with k GPUs it runs k at a time, one per GPU (the
notebook's ``gpu`` parameter sets ``CUDA_VISIBLE_DEVICES`` before torch is imported).

``dask`` sends the same :func:`execute_run` calls to a Dask distributed cluster: a ``LocalCluster`` of
``workers`` single-threaded processes here, or an existing cluster with ``scheduler="tcp://host:8786"``
(e.g. started by ``dask-jobqueue`` on SLURM/PBS, or ``dask scheduler`` + ``dask worker`` by hand; every worker
needs this package installed and the results folder on a shared file system). Each task pins itself to one
thread (``OMP_NUM_THREADS=1``, the notebook's ``threads=1``) unless the worker sees a GPU; then it runs on one
of the worker's visible GPUs, picked by the worker's index (start one worker per GPU, e.g. with
``CUDA_VISIBLE_DEVICES=i dask worker ...`` or dask-cuda's ``LocalCUDACluster``).

A cluster from ``dask-jobqueue``, for instance::

    from dask_jobqueue import SLURMCluster
    cluster = SLURMCluster(cores=4, memory="32GB", job_extra_directives=["--gres=gpu:1"])
    cluster.scale(jobs=8)
    print(cluster.scheduler_address)   # then: dpdl study run --profile paper --executor dask --scheduler <it>

Why Dask: the runs are independent, coarse (seconds to hours) Python function calls that write their own
results to a shared file system -- exactly what ``client.submit`` + ``as_completed`` expresses, with no
scheduler-specific code. The same code scales from a laptop (``LocalCluster``) to many GPU machines
(``dask-jobqueue``, Kubernetes, SSH), it is pure Python and pip-installable (no daemon to administer, unlike
Ray or a batch system), tasks failing or workers dying are retried/reported by the scheduler, and its dashboard
shows progress. Task-level parallelism over notebooks needs nothing more (no shared state between runs; the
resume logic lives in the result folders, not in the scheduler).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

from ..kernels import kill_kernels, papermill_kwargs, pid_alive, stderr_to
from ..paths import REPO_ROOT, results_dir as default_results_dir
from ..records import SCHEMA_VERSION, atomic_write_json, code_version, read_record, utc_now
from .local import Progress, Stopped, child_argv, exit_with_parent, run_pool, signals_deferred, signals_raise
from .lock import results_lock
from .outdated import method_changes, outdated_fields  # noqa: F401  (re-exported: the sweep and tests use them)
from .plan import RunSpec

EXPERIMENT_NOTEBOOK = REPO_ROOT / "notebooks" / "experiment.ipynb"
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
    except (OSError, json.JSONDecodeError):
        return "failed", {"status": "failed", "error": "run.json is unreadable"}
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
    text = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return text[:500]


def _failed_record(spec: RunSpec, profile: str, error: str, cfg: dict, elapsed: float) -> dict:
    return {
        "schema": SCHEMA_VERSION, "status": "failed", "error": error, "run_id": spec.run_id, "profile": profile,
        "config": cfg, "dataset": spec.dataset, "setting": spec.setting, "known_class": spec.known_class,
        "anomalies": spec.anomalies, "seed": spec.seed, "backbone": cfg.get("backbone"), "variant": spec.variant,
        "metrics": None, "split": None, "timings": {"total_s": round(elapsed, 3)},
        "code_version": code_version(), "date": utc_now(),
        "host": {"device": "unknown", "hostname": socket.gethostname(), "cpu_count": os.cpu_count()},
    }


def _kernel_env() -> None:
    """Make the kernel import this very ``dpdl`` (also when the package is not installed, e.g. in a checkout)."""
    pkg_parent = str(Path(__file__).resolve().parents[2])
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if pkg_parent not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([pkg_parent, *parts])


def execute_run(spec: RunSpec | dict, profile: str, results_dir=None, *, data_root=None, gpu: str | int | None = None,
                threads: int | None = None, notebook: str | os.PathLike | None = None,
                log_output: bool = False, plot: bool = False, quiet_kernel: bool = True) -> dict:
    """Papermill the experiment notebook for one run and move its folder into place atomically.

    Returns a summary ``{"run_id", "status", "error", "seconds"}``. Never raises for a failing run: the
    failure is recorded in the run's ``run.json`` (``status: "failed"``, ``error``: one sentence).
    ``plot``: the notebook also draws the score histogram (about a second more per run: matplotlib).
    ``quiet_kernel``: the kernel's own stderr (start-up warnings) goes to ``kernel.log`` in the run folder, kept
    when the run failed (uses a process-wide file-descriptor redirect: only for one run at a time per process).
    """
    import papermill as pm

    spec = RunSpec.from_dict(spec) if isinstance(spec, dict) else spec
    _kernel_env()
    base = runs_dir(profile, results_dir)
    final = base / spec.run_id
    tmp = work_dir(spec, profile, results_dir)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    params = spec.config(profile, data_root=data_root, out=tmp)
    params.update(gpu=gpu, threads=threads, plot=bool(plot))
    cfg = {k: v for k, v in params.items() if k not in ("gpu", "threads", "plot")}
    t0 = time.time()
    error = None
    try:
        with stderr_to(tmp / "kernel.log" if quiet_kernel else None):
            pm.execute_notebook(str(notebook or EXPERIMENT_NOTEBOOK), str(tmp / "experiment.ipynb"),
                                parameters=params, kernel_name="python3", progress_bar=False,
                                log_output=log_output, cwd=str(tmp), **papermill_kwargs())
    except Exception as exc:  # noqa: BLE001 - any failure of the run is recorded, not raised
        error = _error_sentence(exc)
    except BaseException:     # stopped (Ctrl-C, SIGTERM): no trace of the unfinished run
        kill_kernels()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with signals_deferred():  # from here on the run is finished: it is moved into place even if stopped now
        return _finish_run(spec, profile, tmp, final, base, cfg, error, time.time() - t0)


def _finish_run(spec: RunSpec, profile: str, tmp: Path, final: Path, base: Path, cfg: dict, error: str | None,
                elapsed: float) -> dict:
    """Complete the record in ``tmp`` (a failed one when ``error``) and move ``tmp`` to ``final`` atomically."""
    rec_path = tmp / "run.json"
    rec = None
    if rec_path.exists():
        try:
            rec = read_record(rec_path)
        except (OSError, json.JSONDecodeError):
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
    rec["study"] = {"groups": list(spec.groups), "variant": spec.variant, "notebook_s": round(elapsed, 3)}
    if isinstance(rec.get("config"), dict) and rec["config"].get("out"):
        rec["config"]["out"] = str(final)   # where the run lives, not the temporary folder it ran in
    atomic_write_json(rec_path, rec)
    if rec["status"] == "ok" and (tmp / "kernel.log").exists():
        (tmp / "kernel.log").unlink()      # kept only where it may explain a failure
    # into place: an old (failed) run folder is moved aside first, so the rename is atomic
    if final.exists():
        trash = base / TMP / f"old-{spec.run_id}-{os.getpid()}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return {"run_id": spec.run_id, "status": rec["status"], "error": rec.get("error"), "seconds": elapsed}


def default_jobs(profile: str) -> int:
    """Concurrent local CPU runs: ``cpu_count // threads`` when the profile pins torch's threads, else 1."""
    try:
        from ..config import get_profile
        threads = int(getattr(get_profile(profile), "threads", 0) or 0)
    except (ValueError, ImportError):
        threads = 0
    return max(1, (os.cpu_count() or 1) // threads) if threads else 1


def _dask_task(spec: dict, profile: str, results_dir: str, data_root, gpu_per_worker: bool,
               plot: bool = False) -> dict:
    """What a Dask worker runs: :func:`execute_run`, with one CPU thread per task, or, where the worker sees
    GPUs, on one of them (chosen by the worker's index, so that a LocalCluster with one worker per GPU spreads)."""
    gpus = _gpu_ids()
    gpu = None
    if gpus:
        try:
            from distributed import get_worker
            name = get_worker().name
            idx = int(name) if str(name).isdigit() else abs(hash(str(name)))
        except Exception:  # noqa: BLE001 - not in a worker (tests call this directly)
            idx = 0
        gpu = gpus[idx % len(gpus)]
    else:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = "1"
    return execute_run(spec, profile, results_dir, data_root=data_root, gpu=gpu,
                       threads=None if gpus else 1, plot=plot)


def _gpu_ids() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (honouring it when set)."""
    vis = os.environ.get("CUDA_VISIBLE_DEVICES")
    if vis is not None:
        return [v.strip() for v in vis.split(",") if v.strip() and v.strip() != "-1"]
    try:
        import torch
        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001
        return []


def _gpu_count() -> int:
    return len(_gpu_ids())


def warm_feature_cache(datasets: Iterable[str], profile: str, data_root=None, log: Callable[[str], None] = print,
                       progress: bool = True) -> list[dict]:
    """Fill the feature cache of each dataset once, with all cores, before runs start in parallel (otherwise the
    first parallel runs would all extract the same features). Feature-cache profiles only."""
    from ..config import get_profile
    from ..train import prepare_features

    if not get_profile(profile).feature_cache:
        return []
    out = []
    for dataset in datasets:
        try:
            info = prepare_features(dataset, profile=profile, data_root=data_root, overrides={"threads": 0},
                                    progress=progress)
        except (ValueError, FileNotFoundError) as exc:  # the runs will fail with the same sentence and be recorded
            log(f"feature cache for {dataset} not prepared: {exc}")
            continue
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
              log: Callable[[str], None] = print, rerun_outdated: bool = False, wait: bool = False) -> dict:
    """Run what is missing among ``specs``; returns counts ``{"done", "failed", "ran", "skipped_done", ...}``.

    Holds the results folder's lock (:func:`~dpdl.study.lock.results_lock`; ``wait``: wait for another sweep
    instead of refusing). Ctrl-C or SIGTERM raise :class:`~dpdl.study.local.Stopped` once the runs in flight are
    stopped (their folders removed); the finished runs are kept (``.results``)."""
    if executor not in ("local", "dask"):
        raise ValueError(f"unknown executor {executor!r}: expected local or dask")
    results_dir = Path(results_dir or default_results_dir())
    with results_lock(results_dir, wait=wait, log=log), signals_raise():
        return _run_locked(list(specs), profile, results_dir, executor=executor, scheduler=scheduler,
                           workers=workers, data_root=data_root, retry_failed=retry_failed, progress=progress,
                           plot=plot, jobs=jobs, log=log, rerun_outdated=rerun_outdated)


def _run_locked(specs: list[RunSpec], profile: str, results_dir: Path, *, executor, scheduler, workers, data_root,
                retry_failed, progress, plot, jobs, log, rerun_outdated) -> dict:
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
    prog = Progress(len(todo), enabled=progress)
    try:
        if todo and executor == "local":
            gpus = _gpu_ids()
            if len(gpus) > 1:
                slots = gpus                                       # one run per GPU
            else:
                slots = list(range(int(jobs) if jobs else (1 if gpus else default_jobs(profile))))
            log(f"local: {len(slots)} run(s) at a time" + (" (one per GPU)" if len(gpus) > 1 else ""))
            root = "" if data_root is None else str(data_root)
            results = run_pool([s.run_id for s in todo], slots,
                               lambda i, slot: child_argv(json.dumps(todo[i].to_dict()), profile, results_dir, root,
                                                          int(plot), slot if len(gpus) > 1 else ""),
                               on_start=prog.start, on_finish=prog.finish)
        elif todo and executor == "dask":
            results = _run_dask(todo, profile, results_dir, scheduler=scheduler, workers=workers,
                                data_root=data_root, prog=prog, log=log, plot=plot)
    except Stopped as stop:
        prog.close()
        clean_stale_tmp(profile, results_dir)   # the stopped runs' folders (their processes are gone)
        stop.results = stop.results or results
        raise
    finally:
        prog.close()
    ok = sum(r["status"] == "ok" for r in results)
    return {"ran": len(results), "ok": ok, "failed_now": len(results) - ok, "done_before": already_done,
            "failed_before": already_failed, "results": results}


def _run_dask(todo: list[RunSpec], profile: str, results_dir: Path, *, scheduler, workers, data_root, prog, log,
              plot=False):
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from None
        log(f"dask: connected to {scheduler} ({len(client.scheduler_info()['workers'])} workers)")
        gpu = False
    else:
        gpu = _gpu_count() > 0
        n = int(workers or (_gpu_count() if gpu else os.cpu_count()) or 1)
        cluster = LocalCluster(n_workers=n, processes=True, threads_per_worker=1, dashboard_address=None)
        client = Client(cluster)
        log(f"dask: LocalCluster with {n} single-threaded worker processes")
    results = []
    try:
        futs = []
        for s in todo:
            prog.start(s.run_id)
            futs.append(client.submit(_dask_task, s.to_dict(), profile, str(results_dir),
                                      None if data_root is None else str(data_root), gpu, plot,
                                      key=f"run-{profile}-{s.run_id}", pure=False, retries=0))
        for fut in as_completed(futs):
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died: the run stays pending
                rid = fut.key.split(f"run-{profile}-", 1)[-1]
                res = {"run_id": rid, "status": "failed", "error": _error_sentence(exc), "seconds": 0.0}
            results.append(res)
            prog.finish(res)
    except Stopped as stop:
        client.cancel(futs)   # a LocalCluster's workers die with it; a remote worker finishes its task
        stop.results = results
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return results


def study_status(plan, results_dir=None) -> dict:
    """Per group: done / failed / pending run ids; plus the failed runs' errors."""
    out = {"groups": {}, "failed": {}, "outdated": {}, "skipped": dict(plan.skipped),
           "skipped_groups": dict(plan.skipped_groups)}
    for group, specs in plan.by_group().items():
        g = {"done": [], "failed": [], "pending": []}
        for s in specs:
            state, rec = run_state(s, plan.profile, results_dir)
            g[state].append(s.run_id)
            if state == "failed":
                out["failed"][s.run_id] = (rec or {}).get("error") or "unknown error"
            elif state == "done":
                changed = outdated_fields(rec, plan.profile)
                if changed:
                    out["outdated"][s.run_id] = changed
        out["groups"][group] = g
    return out



def _main(argv: list[str]) -> int:
    """``python -m dpdl.study.runner SPEC_JSON PROFILE RESULTS_DIR [DATA_ROOT] [PLOT] [GPU]``: one run; prints its
    summary as a JSON line (the local executor's child; ``--warm ...``: :func:`warm_feature_cache`).
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
    spec, profile, results_dir = RunSpec.from_dict(json.loads(argv[0])), argv[1], argv[2]
    exit_with_parent(on_exit=lambda: (kill_kernels(), shutil.rmtree(work_dir(spec, profile, results_dir), True)))
    data_root = argv[3] if len(argv) > 3 and argv[3] else None
    plot = len(argv) > 4 and argv[4] == "1"
    gpu = argv[5] if len(argv) > 5 and argv[5] else None
    try:
        with signals_raise(on_signal=kill_kernels):   # its kernel dies at once, not after papermill's clean-up
            res = execute_run(spec, profile, results_dir, data_root=data_root, plot=plot, gpu=gpu,
                              quiet_kernel=True)
    except Stopped as stop:
        return 128 + stop.signum
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
