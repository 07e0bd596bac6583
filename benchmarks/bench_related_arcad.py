"""ArcAD's readings (issue 22) on ELPV *validation* splits in the cpu profile: arcad vs its base (arcad_base), the
Eq. (7) reading without masks (top-k reconstruction-error tokens vs every token), K, and the cpu schedule.

Every run trains on the reduced training split and scores its validation split (``RunConfig.eval_on="val"``): the
test images are never scored here. A DPDL run of the same split is timed beside them (the machine is shared: the
time per run is compared within one invocation, not across sessions).

Usage (results: results/benchmarks/arcad_readings.json; rows already there are kept and skipped):
  python benchmarks/bench_related_arcad.py --seeds 0,1,2 [--variants arcad,arcad_base,...] [--summary]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import ROOT, fail, write

NAME = "arcad_readings"
# name: (method, method options, profile overrides)
VARIANTS = {
    "dpdl": ("dpdl", {}, {}),
    "arcad_base": ("arcad_base", {}, {}),
    "arcad": ("arcad", {"anomaly_tokens": "topk_error"}, {}),
    "arcad_all_tokens": ("arcad", {"anomaly_tokens": "all"}, {}),
    "arcad_K64": ("arcad", {"anomaly_tokens": "topk_error", "prototypes": 64}, {}),
    "arcad_code": ("arcad", {"anomaly_tokens": "topk_error", "n_cand": 50, "push": "relu", "disc_inputs": "code",
                             "focal_alpha": 0.75}, {}),
    "arcad_base_lr2e-3": ("arcad_base", {}, {"lr": 2e-3, "weight_decay": 1e-4}),
    "arcad_lr2e-3": ("arcad", {"anomaly_tokens": "topk_error"}, {"lr": 2e-3, "weight_decay": 1e-4}),
}


def one(variant: str, seed: int, m: int) -> dict:
    from dpdl.train import RunConfig, run
    method, options, overrides = VARIANTS[variant]
    t = time.perf_counter()
    rec = run(RunConfig("elpv", anomalies=m, seed=seed, profile="cpu", method=method, method_options=options,
                        overrides=overrides, eval_on="val"), progress=False)
    row = {"variant": variant, "method": method, "options": options, "overrides": overrides, "seed": seed,
           "anomalies": m, "status": rec["status"], "error": rec["error"], "auc": rec["metrics"]["auc"],
           "ap": rec["metrics"]["ap"], "split": rec["split"]["fingerprint"],
           "final_losses": {k: v[-1] for k, v in (rec.get("losses") or {}).items()},
           "first_losses": {k: v[0] for k, v in (rec.get("losses") or {}).items()},
           "timings": rec["timings"], "wall_s": round(time.perf_counter() - t, 2)}
    print(json.dumps({k: row[k] for k in ("variant", "seed", "auc", "wall_s")}), flush=True)
    return row


def summary(rows: list) -> dict:
    """{variant: mean/sd AUC over seeds, seconds per run (wall total_s and process cpu_s means), runs}."""
    out = {}
    for v in dict.fromkeys(r["variant"] for r in rows):
        ok = [r for r in rows if r["variant"] == v and r["status"] == "ok"]
        if not ok:
            continue
        aucs = [r["auc"] for r in ok]
        out[v] = {"auc_mean": round(float(np.mean(aucs)), 4),
                  "auc_sd": round(float(np.std(aucs, ddof=1)), 4) if len(aucs) > 1 else None,
                  "aucs": {r["seed"]: round(r["auc"], 4) for r in ok},
                  "total_s_mean": round(float(np.mean([r["timings"]["total_s"] for r in ok])), 1),
                  "cpu_s_mean": round(float(np.mean([r["timings"]["cpu_s"] for r in ok])), 1),
                  "step_ms_mean": round(float(np.mean([r["timings"].get("step_ms", 0) for r in ok])), 1),
                  "runs": len(ok)}
    return out


LABELS = {"dpdl": "DPDL (timing reference)", "arcad_base": "`arcad_base` (base alone, λ = 0)",
          "arcad": "`arcad`, anomaly_tokens=topk_error", "arcad_all_tokens": "`arcad` (defaults: anomaly_tokens=all)",
          "arcad_K64": "`arcad`, topk_error, prototypes=64", "arcad_code": "`arcad`, topk_error, the code's readings "
          "(n_cand 50, ReLU push, code discriminator inputs, α 0.75)",
          "arcad_base_lr2e-3": "`arcad_base`, lr 2e-3, wd 1e-4 (ArcAD's)",
          "arcad_lr2e-3": "`arcad`, topk_error, lr 2e-3, wd 1e-4 (ArcAD's)"}


def markdown(summ: dict) -> str:
    """The table of book/related/arcad.md: validation AUC per seed, mean, and the seconds per run."""
    seeds = sorted({s for v in summ.values() for s in v["aucs"]}, key=int)
    lines = ["| variant | " + " | ".join(f"seed {s}" for s in seeds) + " | mean AUC | wall s/run | CPU s/run |",
             "|---" * (len(seeds) + 4) + "|"]
    for v, t in summ.items():
        lines.append(f"| {LABELS.get(v, v)} | " + " | ".join(f"{t['aucs'][s]:.3f}" if s in t["aucs"] else ""
                                                            for s in seeds)
                     + f" | {t['auc_mean']:.3f} | {t['total_s_mean']:.0f} | {t.get('cpu_s_mean', 0):.0f} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--anomalies", type=int, default=10)
    ap.add_argument("--summary", action="store_true", help="print the summary of the stored rows only")
    args = ap.parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        fail(f"--seeds must be integers joined by commas, got {args.seeds!r}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        fail(f"unknown --variants {', '.join(bad)}: expected some of {', '.join(VARIANTS)}")
    path = ROOT / "results" / "benchmarks" / f"{NAME}.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    if not args.summary:
        done = {(r["variant"], r["seed"], r["anomalies"]) for r in rows if r["status"] == "ok"}
        for seed in seeds:                      # seed-major: a partial run covers every variant evenly
            for v in variants:
                if (v, seed, args.anomalies) not in done:
                    rows.append(one(v, seed, args.anomalies))
                    write(NAME, {"dataset": "elpv", "setting": "general", "profile": "cpu", "eval_on": "val",
                                 "rows": rows, "summary": summary(rows)})
    summ = summary(json.loads(json.dumps(rows)))      # seeds as strings, as stored
    print(json.dumps(summ, indent=1))
    print(markdown(summ))


if __name__ == "__main__":
    main()
