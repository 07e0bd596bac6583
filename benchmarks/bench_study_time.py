"""How long the default study takes on this machine, from its run records (no run is made).

The sweep runs batches of up to ``--batch`` runs of one dataset per notebook kernel, ``--jobs`` batches at a time
(dpdl.study.runner). From the records made in batches this script measures
  * each (dataset, method)'s mean time inside ``dpdl train`` (``timings.total_s``), and
  * each batch's overhead: its notebook wall time minus the in-process times of its runs (kernel start-up,
    imports, moving the runs into place),
and projects the wall time of the whole study: (sum over its runs of their mean in-process time + the number of
batches x the mean overhead) / jobs. The feature cache is assumed warm (filling it is a separate, one-off cost).

With results/benchmarks/step_cpu.json (``benchmarks/bench_step_cpu.py``) it also asks what the training steps'
arithmetic alone would take: each trained run's steps x its method's counted FLOPs per step (matrix products and
convolutions; a DPDL ablation is charged the full model's), at DevNet's measured GFLOP/s and at the core's float32
matrix-product peak, summed over the study and divided by ``--jobs``; and the projection with every step's compute
at DevNet's efficiency (each run's data time per step, its scoring and the batches' overhead as measured). This is
a bound for the counted FLOPs, not for every rewrite: a rewrite that changes the FLOPs moves it.

Usage:
  python benchmarks/bench_study_time.py [--profile cpu] [--batch 8] [--jobs 2]
  (writes results/benchmarks/study_time.json)
"""
from __future__ import annotations

import argparse
import math
import statistics as st
from collections import Counter, defaultdict

from _common import ROOT, fail, write




def arithmetic_floor(recs: list, jobs: int, work: float, overhead: float) -> dict:
    """What the study's training steps would take at DevNet's efficiency and at the core's peak (module docstring),
    from step_cpu.json; {} without it or without a method's FLOPs."""
    import json
    try:
        bench = json.loads((ROOT / "results" / "benchmarks" / "step_cpu.json").read_text())
        steps = bench["results"]
        rate, peak = steps["devnet"]["gflops_per_s"] * 1e9, bench["peak_gflops_per_s"] * 1e9
        flops = {m: r["flops_step"] for m, r in steps.items()}
    except (OSError, ValueError, KeyError):
        return {}
    counted = compute = 0.0
    for r in recs:
        t, m = r.get("timings") or {}, (r.get("config") or {}).get("method", "dpdl")
        if t.get("train_s") is None or t.get("train_reused"):
            continue                       # trains nothing here (kNN; a reused unsupervised training)
        if m not in flops:
            return {}
        n = t.get("steps", 0)
        counted += n * flops[m]
        compute += t["train_s"] - n * t.get("step_data_ms", 0.0) / 1000     # the steps' compute, data time apart
    return {"devnet_gflops_per_s": round(rate / 1e9, 1), "peak_gflops_per_s": round(peak / 1e9, 1),
            "step_compute_measured_min": round(compute / jobs / 60, 1),
            "step_compute_at_devnet_rate_min": round(counted / rate / jobs / 60, 1),
            "step_compute_at_peak_min": round(counted / peak / jobs / 60, 1),
            "projected_at_devnet_rate_min": round((work - compute + counted / rate + overhead) / jobs / 60, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    from dpdl.study.analysis import load_runs
    recs = [r for r in load_runs(a.profile, ROOT / "results")["record"]]
    key = lambda r: (r["dataset"], (r.get("config") or {}).get("method", "dpdl"))  # noqa: E731
    batched = [r for r in recs if (r.get("study") or {}).get("batch")]
    if not batched:
        fail(f"no run of profile {a.profile} was made in a batch: run `dpdl study run` first")
    inproc = defaultdict(list)
    for r in batched:
        inproc[key(r)].append(r["timings"]["total_s"])
    by_id = {r["run_id"]: r for r in batched}
    batches = {tuple(r["study"]["batch"]["runs"]): r["study"]["batch"]["seconds"] for r in batched}
    # only batches whose every run's record is still the one that batch made (a run rerun later in another batch
    # would subtract a time the batch never spent: the mean overhead came out negative)
    whole = {runs: sec for runs, sec in batches.items()
             if all(i in by_id and tuple(by_id[i]["study"]["batch"]["runs"]) == runs for i in runs)}
    overhead = [sec - sum(by_id[i]["timings"]["total_s"] for i in runs) for runs, sec in whole.items()] or [0.0]
    # features_s (the dataset's cached maps, from disk for a batch's first run, from the in-process memo after it,
    # plus the method's init) by the run's place in its batch
    feats = defaultdict(list)
    for runs in whole:
        for pos, i in enumerate(runs):
            feats["first" if pos == 0 else "later"].append(by_id[i]["timings"].get("features_s", 0.0))
    counts = Counter(key(r) for r in recs)
    missing = sorted(k for k in counts if k not in inproc)
    if missing:
        fail(f"no batched run of {missing}: cannot project their time")
    work = sum(st.mean(inproc[k]) * n for k, n in counts.items())
    n_batches = sum(math.ceil(n / a.batch) for n in Counter(r["dataset"] for r in recs).values())
    wall_min = (work + n_batches * st.mean(overhead)) / a.jobs / 60
    out = {"profile": a.profile, "runs": len(recs), "batched_runs": len(batched), "batch": a.batch, "jobs": a.jobs,
           "mean_in_process_s": {f"{d}/{m}": round(st.mean(v), 2) for (d, m), v in sorted(inproc.items())},
           "batches_measured": len(whole), "overhead_per_batch_s": round(st.mean(overhead), 2),
           "overhead_per_batch_median_s": round(st.median(overhead), 2),
           "features_s_median": {k: round(st.median(v), 2) for k, v in sorted(feats.items())},
           "measured_batch_wall_s": round(sum(batches.values()), 1),
           "projected_batches": n_batches, "projected_study_wall_min": round(wall_min, 1)}
    out.update(arithmetic_floor(recs, a.jobs, work, n_batches * st.mean(overhead)))
    write("study_time", out)
    print(f"{len(recs)} runs: projected {wall_min:.1f} min with {a.jobs} jobs and batches of {a.batch} "
          f"({len(batched)} batched runs measured, {st.mean(overhead):.1f} s overhead per batch)")
    if "step_compute_measured_min" in out:
        print(f"training steps' compute: {out['step_compute_measured_min']} min measured; their counted FLOPs take "
              f"{out['step_compute_at_devnet_rate_min']} min at DevNet's {out['devnet_gflops_per_s']} GFLOP/s and "
              f"{out['step_compute_at_peak_min']} min at the {out['peak_gflops_per_s']} GFLOP/s peak; the study with "
              f"every step at DevNet's efficiency: {out['projected_at_devnet_rate_min']} min")

if __name__ == "__main__":
    main()
