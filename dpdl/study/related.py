"""The related systems against DRA and kNN (the Related systems page and the first page's answer): is a prototype-based method of DPDL's family (DPDL, ArcAD, HGAD, VPDM) better
than DRA and a plain kNN on these datasets? Read from the run records (dpdl.study.analysis), every Table 1 and
Table 2 cell, the same splits and seeds for every method."""
from __future__ import annotations

import math

import pandas as pd

from . import analysis, tables
from .analysis import interval, per_seed

FAMILY = ("dpdl", "arcad", "arcad_base", "hgad", "hgad_bg", "vpdm")   # prototype / mixture models of the normal class
REFERENCES = ("dra", "knn")


def comparisons(profile: str, results_dir=None) -> pd.DataFrame:
    """One row per (setting, dataset, M, family method, reference): the paired difference method − reference over
    the seeds both ran (mean, 95 % t-interval, n), and the two means. Hard setting: mean over known classes."""
    runs = tables._compared(analysis.load_runs(profile, results_dir))
    rows = []
    for setting in ("general", "hard"):
        ps = per_seed(runs, setting)
        for (ds, m), cell in ps.groupby(["dataset", "anomalies"]):
            for meth in FAMILY:
                mine = analysis.seeds_of(cell, method=meth)
                if mine.empty:
                    continue
                for ref in REFERENCES:
                    theirs = analysis.seeds_of(cell, method=ref)
                    if theirs.empty:
                        continue
                    p = analysis.paired(mine, theirs)
                    rows.append(dict(setting=setting, dataset=ds, M=int(m), method=meth, reference=ref,
                                     mean=interval(mine)["mean"], ref_mean=interval(theirs)["mean"],
                                     diff=p["mean"], lo=p["lo"], hi=p["hi"], n=p["n"]))
    return pd.DataFrame(rows, columns=["setting", "dataset", "M", "method", "reference", "mean", "ref_mean", "diff",
                                       "lo", "hi", "n"])


def verdict_counts(comp: pd.DataFrame) -> pd.DataFrame:
    """Per family method and reference: in how many cells its paired interval lies above 0, below 0, or holds 0."""
    rows = []
    for (meth, ref), g in comp.groupby(["method", "reference"], sort=False):
        above = int((g["lo"] > 0).sum())
        below = int((g["hi"] < 0).sum())
        rows.append({"method": analysis.METHOD_LABELS[meth], "against": analysis.METHOD_LABELS[ref],
                     "cells": len(g), "higher (interval > 0)": above, "lower (interval < 0)": below,
                     "no difference shown": len(g) - above - below,
                     "mean difference": float(g["diff"].mean()) if len(g) else math.nan})
    return pd.DataFrame(rows)


def answer(comp: pd.DataFrame) -> str:
    """The page's answer in one paragraph, from the counts."""
    if comp.empty:
        return "No related system has run in this profile yet: `dpdl study run --only table1` runs them."
    counts = verdict_counts(comp)
    best = comp.groupby(["setting", "dataset", "M"]).apply(
        lambda g: g.loc[g["reference"] == "dra"].sort_values("mean", ascending=False).head(1), include_groups=False)
    n_cells = comp.groupby(["setting", "dataset", "M"]).ngroups
    parts = []
    for _, r in counts.iterrows():
        parts.append(f"{r['method']} vs {r['against']}: higher in {r['higher (interval > 0)']}, lower in "
                     f"{r['lower (interval < 0)']} of {r['cells']} cell{'s' if r['cells'] != 1 else ''}")
    wins = int((best["diff"] > 0).sum()) if len(best) else 0
    n_family = int(comp[comp["reference"] == "dra"].groupby(["setting", "dataset", "M"])["method"].nunique().max())
    chance = (f" (the best of {n_family} methods per cell: a maximum, which chance alone favours; the paired counts "
              "that follow are the test)" if n_family > 1 else "")
    return (f"Over {n_cells} cell{'s' if n_cells != 1 else ''} (Tables 1 and 2), the best method of the prototype "
            f"family beats DRA's mean in {wins} of {len(best)}{chance}. Paired over seeds (95 % intervals): "
            + "; ".join(parts) + ".")


def headline(comp: pd.DataFrame) -> str:
    """The first page's line, from the counts: per reference, the most cells in which a method of the family is
    shown higher, and the fewest and most in which one is shown lower, each count with the methods that have it."""
    if comp.empty:
        return answer(comp)
    counts = verdict_counts(comp)
    n_cells = comp.groupby(["setting", "dataset", "M"]).ngroups
    cells = lambda k: f"{k} cell{'s' if k != 1 else ''}"  # noqa: E731
    parts = []
    for ref, g in counts.groupby("against", sort=False):
        who = lambda col, k: ", ".join(g.loc[g[col] == k, "method"])  # noqa: E731
        hi, lo = g["higher (interval > 0)"], g["lower (interval < 0)"]
        higher = ("never higher" if hi.max() == 0 else
                  f"higher in at most {cells(hi.max())} ({who('higher (interval > 0)', hi.max())})")
        lower = ("never lower" if lo.max() == 0 else f"lower in {cells(lo.min())} each" if lo.min() == lo.max() else
                 f"lower in {lo.min()} ({who('lower (interval < 0)', lo.min())}) to {lo.max()} "
                 f"({who('lower (interval < 0)', lo.max())}) cells")
        parts.append(f"against {ref}, {higher} and {lower}")
    return (f"Paired over seeds (95 % intervals) in the {cells(n_cells)} compared here (Tables 1 and 2, the hard "
            "setting as its mean over known classes), among DPDL's family ("
            + ", ".join(dict.fromkeys(counts["method"])) + "): " + "; ".join(parts) + ".")
