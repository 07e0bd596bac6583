"""HGAD's readings (one class per dataset makes its official score degenerate; dpdl.methods.hgad.model), measured
on ELPV *validation* splits in the cpu profile: each run trains on the reduced training split's normals and scores
its validation split (a quarter of the training normals and half of the M seen anomalies; ``eval_on="val"``,
:func:`dpdl.data.validation_split`). The test images are never scored here.

Usage (results/benchmarks/hgad_readings.json; rows already there are kept and skipped):
  python benchmarks/bench_related_hgad.py --readings likelihood,clusters,clusters_assigned --seeds 0,1,2
  python benchmarks/bench_related_hgad.py --readings knn_reference,likelihood_topk --seeds 0,1,2   # kNN: a floor
  python benchmarks/bench_related_hgad.py --readings hgad_bg --seeds 0,1,2          # HGAD+BG, the supervised row
  python benchmarks/bench_related_hgad.py --summary
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import fail, write

NAME = "hgad_readings"
# name: HGADConfig fields
READINGS = {
    "likelihood": {"reading": "likelihood"},
    "likelihood_topk": {"reading": "likelihood", "aggregate": "topk"},
    "clusters": {"reading": "clusters"},
    "clusters_assigned": {"reading": "clusters_assigned"},
    "likelihood_code": {"reading": "likelihood", "code_terms": True},
}
# other methods on the same validation splits (not HGAD readings): name -> (method, its options). "hgad_bg" is
# HGAD + BGAD's boundary-guided push-pull on the seen anomalies (supervised; its own row, not an HGAD reading)
REFERENCES = {"knn_reference": ("knn", {}), "hgad_bg": ("hgad_bg", {})}


def one(reading: str, seed: int, setting: str = "general", m: int = 10) -> dict:
    from dpdl.train import RunConfig, run
    t = time.perf_counter()
    method, options = REFERENCES.get(reading, ("hgad", READINGS.get(reading)))
    cfg = RunConfig("elpv", setting=setting, anomalies=m, seed=seed, profile="cpu", method=method,
                    method_options=options, eval_on="val")
    rec = run(cfg, progress=False)
    losses = rec.get("losses") or {}
    row = {"reading": reading, "cell": f"{setting}-M{m}", "seed": seed, "status": rec["status"],
           "error": rec["error"], "auc": rec["metrics"]["auc"], "ap": rec["metrics"]["ap"],
           "final_losses": {k: v[-1] for k, v in losses.items()},
           "hgad_config": rec.get("method_options"),
           "timings": rec.get("timings"), "wall_s": round(time.perf_counter() - t, 2)}
    print(json.dumps({k: row[k] for k in ("reading", "cell", "seed", "auc", "ap", "wall_s")}), flush=True)
    return row


def summary(rows: list[dict]) -> dict:
    """{reading: {"auc_mean", "auc_sd", "ap_mean", "n", "seeds"}} over the ok rows."""
    out = {}
    for r in sorted({row["reading"] for row in rows}):
        ok = [row for row in rows if row["reading"] == r and row["status"] == "ok"]
        auc = np.array([row["auc"] for row in ok])
        out[r] = {"auc_mean": round(float(auc.mean()), 4) if len(ok) else None,
                  "auc_sd": round(float(auc.std(ddof=1)), 4) if len(ok) > 1 else None,
                  "ap_mean": round(float(np.mean([row["ap"] for row in ok])), 4) if len(ok) else None,
                  "n": len(ok), "seeds": sorted(row["seed"] for row in ok)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readings", default="likelihood,clusters,clusters_assigned",
                    help=f"some of {', '.join([*READINGS, *REFERENCES])}")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--summary", action="store_true")
    args = ap.parse_args()
    readings = [r.strip() for r in args.readings.split(",") if r.strip()]
    bad = [r for r in readings if r not in READINGS and r not in REFERENCES]
    if bad:
        fail(f"--readings: unknown reading(s) {', '.join(bad)}; expected some of "
             f"{', '.join([*READINGS, *REFERENCES])}.")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        fail(f"--seeds must be integers joined by ',', got {args.seeds!r}.")
    from dpdl.paths import results_dir
    path = results_dir() / "benchmarks" / f"{NAME}.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    if not args.summary:
        done = {(r["reading"], r["seed"]) for r in rows if r["status"] == "ok"}
        for seed in seeds:
            for reading in readings:
                if (reading, seed) in done:
                    continue
                rows = [r for r in rows if (r["reading"], r["seed"]) != (reading, seed)] + [one(reading, seed)]
                write(NAME, {"readings": READINGS, "rows": rows, "summary": summary(rows)})
    print(json.dumps(summary(rows), indent=2))


if __name__ == "__main__":
    main()
