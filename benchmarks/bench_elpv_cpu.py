"""ELPV in the ``cpu`` profile: AUC and time per run, for backbone / feature-map / adapter choices and the targets.

Usage:
  python benchmarks/bench_elpv_cpu.py configs   # backbone comparison + tuning grid, general M=10 seed 0
  python benchmarks/bench_elpv_cpu.py targets   # the profile's default on general M=10, M=1 and hard mono/poly
  python benchmarks/bench_elpv_cpu.py configs --only NAME[,NAME]   # some rows of the grid
  python benchmarks/bench_elpv_cpu.py choices --only NAME --seeds 0,1,2,3,4   # a head-loss / feature-aug choice
                                                                   # on every target cell (results: elpv_cpu_choice_NAME)
Features must be cached first (``dpdl.train.prepare_features('elpv', 'cpu', backbone=B)``; the first run of a
backbone does it anyway, and its time is reported as ``features_s``). Results: results/benchmarks/elpv_cpu_*.json.
Paper (Table 1/2, DPDL, ELPV): general M=10 0.937, M=1 0.897; hard M=10 0.818 (mean of mono/poly), M=1 0.762.
Best baseline the paper reports: 0.850, 0.828, 0.788, 0.740.
"""
from __future__ import annotations

import argparse
import json
import time

from _common import write

GRID = {
    # the final cpu profile, and its MobileNetV2 twin (the backbone comparison)
    "final_effl0": ("efficientnet_lite0", {}),
    "final_mnv2": ("mobilenet_v2", {}),
    # the exploration that led there (profile then: mobilenet_v2, mid+last, 14x14, lr 1e-3, 20 epochs); these
    # rows state every field they change from the *current* profile

    # name: (backbone, profile overrides)
    "mnv2_mid+last_7_lr1e-3_e20": ("mobilenet_v2", {"lr": 1e-3, "epochs": 20}),
    "effl0_mid+last_7_lr1e-3_e20": ("efficientnet_lite0", {"lr": 1e-3, "epochs": 20}),
    "effl0_mid+last_14_a64_lr1e-3_e20": ("efficientnet_lite0", {"lr": 1e-3, "epochs": 20, "map_size": 0,
                                                                 "adapter_dim": 64}),
    "mnv2_mid+last_14_a64_lr1e-3_e20": ("mobilenet_v2", {"lr": 1e-3, "epochs": 20, "map_size": 0,
                                                          "adapter_dim": 64}),
    "effl0_mid+last_7_lr2e-4": ("efficientnet_lite0", {"lr": 2e-4}),
    "effl0_last_7": ("efficientnet_lite0", {"feature_layers": "last"}),
}
# the head-loss and feature-augmentation choices, each measured on every target cell (a 2x2 factorial)
CHOICES = {
    "bce": {"head_loss": "bce", "feature_aug": "none"},
    "bce_d4": {"head_loss": "bce", "feature_aug": "d4"},
    "deviation": {"head_loss": "deviation", "feature_aug": "none"},
    "deviation_d4": {"head_loss": "deviation", "feature_aug": "d4"},
    # the chosen profile with the paper's learning rate, and with a larger pseudo-anomaly share of the anomaly slots
    "deviation_d4_lr2e-4": {"head_loss": "deviation", "feature_aug": "d4", "lr": 2e-4},
    "deviation_d4_pseudo0.75": {"head_loss": "deviation", "feature_aug": "d4", "pseudo_share": 0.75},
    # more cached CutMix variants per training normal image (1 in the profile), at both pseudo shares
    "deviation_d4_pp8": {"head_loss": "deviation", "feature_aug": "d4", "pseudo_per_image": 8},
    "deviation_d4_pp8_pseudo0.75": {"head_loss": "deviation", "feature_aug": "d4", "pseudo_per_image": 8,
                                    "pseudo_share": 0.75},
    # DRA's batch (protocol.md): half of the normal two thirds become pseudo anomalies -> 16 normal, 16 seen, 16 pseudo
    "deviation_d4_dra_batch": {"head_loss": "deviation", "feature_aug": "d4", "pseudo_slots": "normal"},
    "deviation_d4_dra_batch_pp8": {"head_loss": "deviation", "feature_aug": "d4", "pseudo_slots": "normal",
                                   "pseudo_per_image": 8},
}
TARGETS = [  # (setting, known_class, M, paper DPDL, best baseline)
    ("general", None, 10, 0.937, 0.850),
    ("general", None, 1, 0.897, 0.828),
    ("hard", "mono", 10, 0.818, 0.788),
    ("hard", "poly", 10, 0.818, 0.788),
    ("hard", "mono", 1, 0.762, 0.740),
    ("hard", "poly", 1, 0.762, 0.740),
]


def one(backbone, overrides, setting="general", known=None, m=10, seed=0):
    from dpdl.train import RunConfig, run
    t = time.perf_counter()
    rec = run(RunConfig("elpv", setting=setting, known_class=known, anomalies=m, seed=seed, profile="cpu",
                        backbone=backbone, overrides=overrides), progress=False)
    row = {"backbone": backbone, "overrides": overrides, "setting": setting, "known_class": known, "anomalies": m,
           "seed": seed, "status": rec["status"], "error": rec["error"], "auc": rec["metrics"]["auc"],
           "ap": rec["metrics"]["ap"], "timings": rec["timings"], "profile_settings": rec["profile_settings"], "feature_cache": rec.get("feature_cache", {}),
           "wall_s": time.perf_counter() - t}
    print(json.dumps({k: row[k] for k in ("backbone", "overrides", "setting", "known_class", "anomalies", "seed",
                                          "auc", "ap")}), row["timings"], flush=True)
    return row


def summarise(rows) -> dict:
    """Mean and sd of AUC per target cell (hard: mono and poly pooled, as the paper's Table 2 averages them)."""
    import statistics
    cells: dict = {}
    for r in rows:
        key = f"{r['setting']} M={r['anomalies']}"
        cells.setdefault(key, []).append(r["auc"])
    return {k: {"mean": statistics.fmean(v), "sd": statistics.stdev(v) if len(v) > 1 else 0.0, "n": len(v)}
            for k, v in cells.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("configs", "targets", "choices"))
    ap.add_argument("--only", default=None)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    if a.mode == "configs":
        names = a.only.split(",") if a.only else list(GRID)
        rows = {(n if len(seeds) == 1 else f"{n}/s{s}"): one(*GRID[n], seed=s) for n in names for s in seeds}
        write(f"elpv_cpu_configs{a.tag}", {"task": "ELPV general M=10", "rows": rows})
    elif a.mode == "choices":
        from dpdl.config import get_profile
        prof = get_profile("cpu")
        for name in (a.only.split(",") if a.only else list(CHOICES)):
            rows = []
            for setting, known, m, paper, base in TARGETS:
                for s in seeds:
                    r = one(prof.backbone, CHOICES[name], setting, known, m, s)
                    r.update(paper_dpdl=paper, paper_best_baseline=base)
                    rows.append(r)
            write(f"elpv_cpu_choice_{name}{a.tag}", {"choice": name, "overrides": CHOICES[name], "rows": rows,
                                                     "cells": summarise(rows)})
    else:
        from dpdl.config import get_profile
        prof = get_profile("cpu")
        rows = []
        for setting, known, m, paper, base in TARGETS:
            for s in seeds:
                r = one(prof.backbone, {}, setting, known, m, s)
                r.update(paper_dpdl=paper, paper_best_baseline=base)
                rows.append(r)
        write(f"elpv_cpu_targets{a.tag}", {"profile": prof.to_dict(), "rows": rows})


if __name__ == "__main__":
    main()
