"""The ``dask`` executor of the study (:func:`run_dask`), and which GPUs this process may use.

``dask`` sends the same :func:`~dpdl.study.runner.execute_batch` calls (one per batch of runs) to a Dask
distributed cluster: a ``LocalCluster`` of ``workers`` single-threaded processes here, or an existing cluster
with ``scheduler="tcp://host:8786"`` (e.g. started by ``dask-jobqueue`` on SLURM/PBS, or ``dask scheduler`` + ``dask worker`` by hand; every worker
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

import os
from pathlib import Path

from .local import Stopped
from .plan import RunSpec, batch_label, make_batches


def gpu_ids() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (honouring it when set)."""
    vis = os.environ.get("CUDA_VISIBLE_DEVICES")
    if vis is not None:
        return [v.strip() for v in vis.split(",") if v.strip() and v.strip() != "-1"]
    try:
        import torch
        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001
        return []


def gpu_count() -> int:
    return len(gpu_ids())


def _dask_task(specs: list[dict], profile: str, results_dir: str, data_root, gpu_per_worker: bool,
               plot: bool = False) -> list[dict]:
    """What a Dask worker runs: :func:`execute_batch`, with one CPU thread per task, or, where the worker sees
    GPUs, on one of them (chosen by the worker's index, so that a LocalCluster with one worker per GPU spreads)."""
    gpus = gpu_ids()
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
    from .runner import execute_batch
    return execute_batch(specs, profile, results_dir, data_root=data_root, gpu=gpu,
                         threads=None if gpus else 1, plot=plot)


def run_dask(todo: list[RunSpec], profile: str, results_dir: Path, *, scheduler, workers, data_root, prog, log,
             plot=False, batch: int = 1) -> list[dict]:
    """The batches of ``todo`` (at most ``batch`` runs each) on a Dask cluster; one summary per run."""
    from dask.distributed import Client, LocalCluster, as_completed

    from .runner import _error_sentence, died

    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from None
        log(f"dask: connected to {scheduler} ({len(client.scheduler_info()['workers'])} workers)")
        gpu = False
    else:
        gpu = gpu_count() > 0
        n = int(workers or (gpu_count() if gpu else os.cpu_count()) or 1)
        cluster = LocalCluster(n_workers=n, processes=True, threads_per_worker=1, dashboard_address=None)
        client = Client(cluster)
        log(f"dask: LocalCluster with {n} single-threaded worker processes")
    results = []
    try:
        futs, members = [], {}
        batches = make_batches(todo, batch, len(client.scheduler_info()["workers"]) or int(workers or 1))
        for i, b in enumerate(batches):    # longest first (make_batches); the priority keeps that order on Dask
            label = batch_label(b)
            prog.start(label, [s.run_id for s in b])
            fut = client.submit(_dask_task, [s.to_dict() for s in b], profile, str(results_dir),
                                None if data_root is None else str(data_root), gpu, plot,
                                key=f"batch-{profile}-{b[0].run_id}", pure=False, retries=0,
                                priority=len(batches) - i)
            futs.append(fut)
            members[fut.key] = b
        for fut in as_completed(futs):
            try:
                got = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died: its unfinished runs stay pending
                got = died(members[fut.key], {"error": _error_sentence(exc), "seconds": 0.0}, profile, results_dir)
            for res in got:
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
