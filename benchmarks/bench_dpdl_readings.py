"""Readings of DPDL's Eqs. (8)-(17) and (22) (issue 12), measured on ELPV *validation* splits in the cpu profile.

Every run trains on the reduced training split and scores its validation split (``RunConfig.eval_on="val"``,
:func:`dpdl.data.validation_split`): the test images are never scored here.

Usage (results: results/benchmarks/dpdl_readings_val.json; rows already there are kept and skipped):
  python benchmarks/bench_dpdl_readings.py --readings printed,margin --seeds 0,1,2 [--variants full,no_dpl,no_dfl]
  python benchmarks/bench_dpdl_readings.py --summary          # print the table the book reads

The paper's λ per dataset (Sec. 5.7; 0.01 on ELPV) with the bridge reading, general M = 10, five seeds
(results/benchmarks/readings_val_paper_lam.json; the rows above were made with λ = 1):
  python benchmarks/bench_dpdl_readings.py --name readings_val_paper_lam --cells general-M10 --seeds 0,1,2,3,4 \
      --readings margin,bridge,printed,margin_w10 --variants full,no_dpl [--part N]; then the same with --summary
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import ROOT, write

NAME = "dpdl_readings_val"
# name: DPDLConfig fields (the readings); "printed" is the code before issue 12
READINGS = {
    "printed": {"alpha_param": "softmax", "bridge_input": "raw", "dpl_loss": "printed", "residual": "plan",
                "log_sigma_bound": 0.0, "prototype_decay": True},
    "printed_unit": {"alpha_param": "eps_scaled", "bridge_input": "unit", "dpl_loss": "printed",
                     "residual": "nearest", "log_sigma_bound": 3.0, "prototype_decay": False},
    "margin": {"alpha_param": "eps_scaled", "bridge_input": "unit", "dpl_loss": "margin", "residual": "nearest",
               "log_sigma_bound": 3.0, "prototype_decay": False, "dpl_margin": 0.1, "dpl_weight": 1.0},
    "margin_plan": {"alpha_param": "eps_scaled", "bridge_input": "unit", "dpl_loss": "margin", "residual": "plan",
                    "log_sigma_bound": 3.0, "prototype_decay": False, "dpl_margin": 0.1, "dpl_weight": 1.0},
    "margin_w10": {"alpha_param": "eps_scaled", "bridge_input": "unit", "dpl_loss": "margin", "residual": "nearest",
                   "log_sigma_bound": 3.0, "prototype_decay": False, "dpl_margin": 0.1, "dpl_weight": 10.0},
    "bridge": {"alpha_param": "eps_scaled", "bridge_input": "unit", "dpl_loss": "bridge", "residual": "bridge",
               "log_sigma_bound": 3.0, "prototype_decay": False, "dpl_margin": 0.1, "dpl_weight": 1.0},
    "margin_m05": {"alpha_param": "eps_scaled", "bridge_input": "unit", "dpl_loss": "margin", "residual": "nearest",
                   "log_sigma_bound": 3.0, "prototype_decay": False, "dpl_margin": 0.5, "dpl_weight": 1.0},
}
VARIANTS = {"full": {}, "no_dpl": {"use_dpl": False}, "no_dfl": {"use_dfl": False}}
# with DPL off, dpl_weight and dpl_margin are unused: these readings' "no_dpl" is margin's, run once
SAME_NO_DPL = {"margin_w10": "margin", "margin_m05": "margin"}
CELLS = [("general", None, 10), ("general", None, 1), ("hard", "mono", 10), ("hard", "mono", 1)]


def key(row):
    return row["reading"], row["variant"], row["cell"], row["seed"]


def cell_name(setting, known, m):
    return f"{setting}{'-' + known if known else ''}-M{m}"


def one(reading, variant, setting, known, m, seed):
    from dpdl.train import RunConfig, run
    t = time.perf_counter()
    cfg = RunConfig("elpv", lam=LAM[0], setting=setting, known_class=known, anomalies=m, seed=seed, profile="cpu",
                    method_options=READINGS[reading], eval_on="val", **VARIANTS[variant])
    rec = run(cfg, progress=False)
    row = {"reading": reading, "variant": variant, "cell": cell_name(setting, known, m), "seed": seed,
           "status": rec["status"], "error": rec["error"], "auc": rec["metrics"]["auc"], "ap": rec["metrics"]["ap"],
           "auc_pseudo": (rec.get("metrics_val_pseudo") or {}).get("auc"),
           "split": rec["split"], "dpdl_config": rec.get("dpdl_config"),
           "final_losses": {k: v[-1] for k, v in (rec.get("losses") or {}).items()},
           "max_abs_losses": {k: max(abs(x) for x in v) for k, v in (rec.get("losses") or {}).items()},
           "wall_s": round(time.perf_counter() - t, 2)}
    print(json.dumps({k: row[k] for k in ("reading", "variant", "cell", "seed", "auc", "auc_pseudo", "wall_s")}), flush=True)
    return row


METRICS = {"real": lambda r: r["auc"], "pseudo": lambda r: r.get("auc_pseudo"),
           "combined": lambda r: None if r.get("auc_pseudo") is None else (r["auc"] + r["auc_pseudo"]) / 2}


def summary(rows):
    """{metric: table}: the AUC on held-out seen anomalies ("real"), on the validation normals' own pseudo
    anomalies ("pseudo") and their mean ("combined", the selection criterion)."""
    return {name: table(rows, f) for name, f in METRICS.items()}


def table(rows, metric):
    """{reading: {variant: {cell: mean, "mean": mean over cells, "sd_seed": sd over seeds of the cell mean}}}."""
    out = {}
    for r in rows:
        out.setdefault(r["reading"], {}).setdefault(r["variant"], []).append(r)
    table = {}
    for reading, by_var in out.items():
        for variant, rs in by_var.items():
            ok = [r for r in rs if r["status"] == "ok" and metric(r) is not None]
            if not ok:          # e.g. no run of this row recorded the pseudo AUC
                continue
            cells = sorted({r["cell"] for r in ok})
            seeds = sorted({r["seed"] for r in ok})
            per = {c: float(np.mean([metric(r) for r in ok if r["cell"] == c])) for c in cells}
            complete = [s for s in seeds if all(any(r["seed"] == s and r["cell"] == c for r in ok) for c in cells)]
            by_seed = [float(np.mean([metric(r) for r in ok if r["seed"] == s])) for s in complete]
            table.setdefault(reading, {})[variant] = {
                **{c: round(v, 4) for c, v in per.items()}, "mean": round(float(np.mean(list(per.values()))), 4),
                "sd_seed": round(float(np.std(by_seed, ddof=1)), 4) if len(by_seed) > 1 else None,
                "runs": len(ok), "failed": sum(r["status"] != "ok" for r in rs), "seeds": complete}
    return table


def paired_table(rows):
    """{reading: {"no_dpl"|"no_dfl": interval}}: full minus the ablated variant, per seed the mean over the cells
    both have for that seed, then the mean over seeds with its 95 % t-interval (dpdl.study.analysis.interval)."""
    from dpdl.study.analysis import interval
    ok = {key(r): r["auc"] for r in rows if r["status"] == "ok"}
    out = {}
    for reading in dict.fromkeys(r["reading"] for r in rows):
        for variant in ("no_dpl", "no_dfl"):
            ref = SAME_NO_DPL.get(reading, reading) if variant == "no_dpl" else reading
            per_seed = {}
            for (rd, var, cell, seed), auc in ok.items():
                other = ok.get((ref, variant, cell, seed))
                if rd == reading and var == "full" and other is not None:
                    per_seed.setdefault(seed, []).append(auc - other)
            if len(per_seed) >= 2:
                out.setdefault(reading, {})[variant] = {
                    **{k: (round(v, 4) if isinstance(v, float) else v)
                       for k, v in interval([float(np.mean(v)) for v in per_seed.values()]).items()},
                    "vs": f"{ref}/{variant}"}
    return out


def fmt(v) -> str:
    return "" if v is None else f"{v:.3f}"


def paired_markdown(pt) -> str:
    if not pt:
        return ""
    lines = ["**Full minus ablated, paired** (per seed the mean over cells, then over seeds; 95 % t-interval; "
             "the paper's direction needs both above 0 by more than the seed spread):", "",
             "| reading | full − no_dpl | full − no_dfl | seeds |", "|---|---|---|---|"]
    for reading, d in pt.items():
        cell = lambda v: (f"{d[v]['mean']:+.3f} [{d[v]['lo']:+.3f}, {d[v]['hi']:+.3f}]"  # noqa: E731
                          + ("" if d[v]["vs"].startswith(reading + "/") else f" (vs `{d[v]['vs']}`)")) if v in d else ""
        n = max((d[v]["n"] for v in d), default=0)
        lines.append(f"| `{reading}` | {cell('no_dpl')} | {cell('no_dfl')} | {n} |")
    return "\n".join(lines) + "\n"


ROWS: list = []   # the rows the summary is made of (set by main)
LAM: list = [None]  # λ of the runs: None = the paper's for ELPV (0.01, Sec. 5.7); the first benchmark used 1 (--lam 1)


def reading_pairs(rows, base="margin") -> dict:
    """{reading: interval}: reading minus ``base``, variant full, paired by seed and cell (mean over the cells of a
    seed, then over seeds; 95 % t-interval), for every reading with at least two such seeds."""
    from dpdl.study.analysis import interval
    ok = {key(r): r["auc"] for r in rows if r["status"] == "ok"}
    out = {}
    for reading in dict.fromkeys(r["reading"] for r in rows):
        per_seed = {}
        for (rd, var, cell, seed), auc in ok.items():
            other = ok.get((base, "full", cell, seed))
            if rd == reading and var == "full" and other is not None and reading != base:
                per_seed.setdefault(seed, []).append(auc - other)
        if len(per_seed) >= 2:
            out[reading] = {k: (round(v, 4) if isinstance(v, float) else v)
                            for k, v in interval([float(np.mean(v)) for v in per_seed.values()]).items()}
    return out


def pairs_markdown(rp, base="margin") -> str:
    lines = [f"**Each reading minus `{base}`, paired by seed** (variant full; 95 % t-interval):", "",
             f"| reading | minus `{base}` | seeds |", "|---|---|---|"]
    lines += [f"| `{r}` | {d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] | {d['n']} |" for r, d in rp.items()]
    return "\n".join(lines) + "\n"


def markdown(summ, name=NAME) -> str:
    """The table book/method.md includes: validation AUC per reading and variant (mean over seeds), per cell."""
    cells = [c for c in (cell_name(*c) for c in CELLS) if any(r["cell"] == c for r in ROWS)]
    lines = ["| reading | variant | " + " | ".join(cells) + " | mean (real) | sd over seeds | mean (pseudo) "
             "| mean (combined) | runs |", "|---" * (len(cells) + 7) + "|"]
    for reading, by_var in summ["real"].items():
        for variant, t in by_var.items():
            p = summ["pseudo"].get(reading, {}).get(variant, {}).get("mean")
            c = summ["combined"].get(reading, {}).get(variant, {}).get("mean")
            sd = "" if t["sd_seed"] is None else f"{t['sd_seed']:.3f}"
            lines.append(f"| `{reading}` | {variant} | " + " | ".join(f"{t[x]:.3f}" if x in t else "" for x in cells)
                         + f" | {t['mean']:.3f} | {sd} | {fmt(p)} | {fmt(c)} | {t['runs']} |")
    lam = sorted({(r.get("dpdl_config") or {}).get("lam") for r in ROWS}, key=str)
    return (f"Generated by `python benchmarks/bench_dpdl_readings.py --name {name} --summary` from "
            f"`results/benchmarks/{name}.json` (ELPV, cpu profile, validation splits; AUC; λ = "
            + ", ".join(f"{v:g}" if v is not None else "?" for v in lam) + ").\n\n"
            + "\n".join(lines) + "\n\n" + paired_markdown(paired_table(ROWS)) + "\n"
            + pairs_markdown(reading_pairs(ROWS)) + "\n\"real\": held-out seen anomalies against the validation normals; \"pseudo\" "
            "and \"combined\" (their mean) only over the runs that recorded the pseudo AUC (made before the method "
            "interface of `dpdl.train` landed); sd: over seeds of the mean over cells.\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readings", default="")
    ap.add_argument("--variants", default="full")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--summary", action="store_true", help="merge the part files into the main one and print it")
    ap.add_argument("--part", default="", help="write rows to <name>_part<PART>.json (parallel processes)")
    ap.add_argument("--name", default=NAME, help="the result file's name (results/benchmarks/<name>.json)")
    ap.add_argument("--cells", default="", help="only these cells, e.g. general-M10 (default: all four)")
    ap.add_argument("--lam", type=float, default=None, help="λ of the runs (default: the paper's for ELPV, 0.01)")
    a = ap.parse_args()
    LAM[0] = a.lam
    base_name = a.name
    cells = [c for c in CELLS if not a.cells or cell_name(*c) in a.cells.split(",")]
    name = f"{base_name}_part{a.part}" if a.part else base_name
    rows = []
    for p in sorted((ROOT / "results" / "benchmarks").glob(f"{base_name}*.json")):
        for r in json.loads(p.read_text())["rows"]:
            if all(key(r) != key(q) for q in rows):
                rows.append(r)
    if not a.summary:
        for reading in [r for r in a.readings.split(",") if r]:
            if reading not in READINGS:
                raise SystemExit(f"unknown reading {reading!r}: expected one of {', '.join(READINGS)}")
            for variant in a.variants.split(","):
                for seed in [int(s) for s in a.seeds.split(",")]:
                    for setting, known, m in cells:
                        k = (reading, variant, cell_name(setting, known, m), seed)
                        if any(key(r) == k for r in rows):
                            continue
                        rows.append(one(reading, variant, setting, known, m, seed))
                        write(name, {"readings": READINGS, "variants": VARIANTS,
                                     "cells": [cell_name(*c) for c in CELLS], "summary": summary(rows), "rows": rows})
    ROWS[:] = rows
    if a.summary:
        (ROOT / "results" / "benchmarks" / f"{base_name}.md").write_text(markdown(summary(rows), base_name))
        write(base_name, {"readings": READINGS, "variants": VARIANTS, "cells": [cell_name(*c) for c in CELLS],
                          "summary": summary(rows), "paired": paired_table(rows),
                          "reading_pairs": reading_pairs(rows), "rows": rows})
        for p in (ROOT / "results" / "benchmarks").glob(f"{base_name}_part*.json"):
            p.unlink()
    print(json.dumps(summary(rows)["combined"], indent=1))


if __name__ == "__main__":
    main()
