"""From run records to the paper's tables: ours (mean, sd, 95 % interval over seeds), the paper's value, Δ.

Every function takes ``profile`` and ``results_dir`` and reads the records through
:func:`dpdl.study.analysis.load_runs` (only finished runs count); the per-seed and per-cell rules are those of
:mod:`dpdl.study.analysis`. Columns of a cell row:

* ``ours_mean`` / ``ours_std`` / ``n`` / ``ci_lo`` / ``ci_hi``: DPDL (full) over seeds, with its 95 % t-interval
  clipped to [0, 1] (an AUC);
* ``paper_mean`` / ``paper_std``: DPDL's value as printed; ``diff`` = ours - paper;
* ``<Method> (reported)``: the baselines' numbers the paper copied from DRA/AHL (not ours);
* Tables 1–2 only: ``DevNet (ours)``, ``DRA (ours)``, ``kNN (ours)``: the baselines run here in the same profile,
  ``rank`` (DPDL's rank among the methods run here, 1 = best; ``<Method> rank`` each other method's), and ``vs DRA`` / ``vs DevNet``: the paired
  difference DPDL - baseline over the seeds both ran (mean, 95 % t-interval ``vs DRA lo``/``hi``, ``vs DRA n``);
* ``outliers``: the runs of the cell more than 3 MADs from its median (:func:`analysis.outliers`), ``run_id (auc)``;
* ``status``: ``measured`` or ``not run here`` (with the reason when known).

Comparisons between variants (Table 3, Figs. 2 and 3) are paired over seeds: ``diff_full`` is variant - full
over the seeds both ran, with its 95 % interval (``diff_full_lo``/``hi``).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paper
from ..config import PROFILES
from . import analysis
from .analysis import default_results_dir, interval, per_seed
from .plan import BASELINES, load_study
from .verdicts import clip_auc

TABLE_FILES = {
    "table1": "table1_general.csv", "table2": "table2_hard.csv", "table3": "table3_heads.csv",
    "table4": "table4_datasets.csv", "table5": "table5_mvtec.csv", "table6": "table6_hard_per_class.csv",
    "fig2": "fig2_ablation.csv", "fig3": "fig3_sensitivity.csv", "claims": "claims.csv",
}
HEADS_ORDER = ("r", "n,r", "a,r", "n,a,r")
SWEEP_PARAMS = {"prototypes": "C", "eps": "ε", "kappa": "κ", "lam": "λ"}
BASELINES_RUN = BASELINES                   # the baselines this study runs (dpdl.study.plan)
CLAIM_BASELINES = ("dra", "devnet")         # "DPDL beats DRA and DevNet"


def _dpdl(runs: pd.DataFrame, variant: str | None = "full") -> pd.DataFrame:
    d = runs[runs["method"] == "dpdl"]
    return d if variant is None else d[d["variant"] == variant]


def _cell_outliers(flags: pd.DataFrame, **where) -> str:
    sel = flags
    for k, v in where.items():
        sel = sel[sel[k] == v] if k != "dataset_in" else sel[sel["dataset"].isin(v)]
    return ", ".join(f"{r.run_id} ({r.auc:.3f})" for r in sel.itertuples())


# ----------------------------------------------------------------------------------------------- captions
def profile_caption(profile: str, results_dir=None, *, short: bool = False) -> str:
    """One line naming the profile and what it changes from the paper (``short``: without the study's
    description of the profile). Used by the figures written to ``results/figures``; book pages carry the
    profile once, in their banner."""
    prof = PROFILES.get(profile)
    if prof is None:
        return f"profile: {profile}"
    desc = " ".join(str(load_study()["profiles"].get(profile, {}).get("description", "")).split())
    paper_p = PROFILES["paper"]
    if profile == "paper":
        fid = "the paper's settings"
    else:
        fid = ("reduced fidelity: " + ("frozen" if not prof.finetune_backbone else "fine-tuned")
               + f" {prof.backbone} backbone at {prof.image_size}×{prof.image_size}"
               + (" with cached features" if prof.feature_cache else "")
               + (f" and a {prof.adapter_dim}-channel adapter" if prof.adapter_dim else "")
               + f", {prof.epochs}×{prof.iters_per_epoch} iterations of batch {prof.batch_size}"
               + f" (paper: {paper_p.backbone} fine-tuned at {paper_p.image_size}×{paper_p.image_size}, "
                 f"{paper_p.epochs}×{paper_p.iters_per_epoch})")
    return f"profile: {profile} ({fid})" if short else f"profile: {profile} ({fid}). {desc}".strip()


def _reason_map(profile: str, results_dir=None) -> dict[str, str]:
    """dataset -> why it did not run here (from the registry's availability check)."""
    from dpdl.data import get_dataset
    from dpdl.data.registry import DATASET_NAMES

    out = {}
    for name in DATASET_NAMES:
        if name in ("folder", "synthetic"):
            continue
        try:
            ok, why = get_dataset(name).available()
        except Exception as exc:  # noqa: BLE001 - a dataset that cannot be checked is "not run here"
            ok, why = False, str(exc)
        if not ok:
            out[name] = why
    return out


def _not_run(reason: str | None) -> str:
    """``not run here`` with the first clause of the reason (``dataset 'aitex' needs a data root``)."""
    if reason:
        reason = str(reason).split(":")[0].strip().rstrip(".")
    return "not run here" + (f" ({reason})" if reason else "")


def _baseline_cols(df_paper: pd.DataFrame, key_filter) -> dict:
    return {f"{r['method']} (reported)": r["auc_mean"]
            for _, r in df_paper[key_filter(df_paper) & df_paper["reported"]].iterrows()}


def _row(name, key, m, stats: dict, pv, extra=None, reason=None, outliers=""):
    row = {"dataset": name, "key": key, "M": int(m)}
    row.update(extra or {})
    n = stats["n"]
    lo, hi = clip_auc(stats["lo"], stats["hi"])
    row.update(ours_mean=stats["mean"], ours_std=stats["sd"], n=n, ci_lo=lo, ci_hi=hi,
               paper_mean=pv[0] if pv else math.nan, paper_std=pv[1] if pv else math.nan)
    row["diff"] = stats["mean"] - row["paper_mean"] if n and pv else math.nan
    row["outliers"] = outliers
    row["status"] = "measured" if n else _not_run(reason)
    return row


# ------------------------------------------------------------------------------- Tables 1-2: every method
def _compared(runs: pd.DataFrame) -> pd.DataFrame:
    """DPDL's full model and every baseline run (the methods Tables 1–2 compare)."""
    return runs[((runs["method"] == "dpdl") & (runs["variant"] == "full")) | (runs["method"] != "dpdl")]


def _cell(ps: pd.DataFrame, key: str, m: int) -> pd.DataFrame:
    """Per-seed AUCs of one Table 1/2 cell, every method (MVTec AD: the mean over its 15 subsets per seed)."""
    if key == "mvtec":
        return analysis.mean_over_datasets(ps[ps["anomalies"] == m], [f"mvtec_{s}" for s in paper.MVTEC_SUBSETS],
                                           "mvtec")
    return ps[(ps["dataset"] == key) & (ps["anomalies"] == m)]


def _methods(cell: pd.DataFrame) -> dict:
    """Ours for every baseline run here, DPDL's rank among them, and the paired DPDL - baseline tests."""
    out, means = {}, {"dpdl": interval(cell.loc[cell["method"] == "dpdl", "auc"])["mean"]}
    ours = analysis.seeds_of(cell, method="dpdl")
    for meth in BASELINES_RUN:
        label = analysis.METHOD_LABELS[meth]
        means[meth] = interval(cell.loc[cell["method"] == meth, "auc"])["mean"]
        out[f"{label} (ours)"] = means[meth]
    ran = [k for k, v in means.items() if not math.isnan(v)]
    ranks = analysis.rank(means) if len(ran) > 1 else {}
    out["rank"] = ranks.get("dpdl")
    for meth in BASELINES_RUN:              # every method's rank among the methods run here (1 = best)
        out[f"{analysis.METHOD_LABELS[meth]} rank"] = ranks.get(meth)
    out["methods run"] = len(ran)
    for meth in CLAIM_BASELINES:
        label = analysis.METHOD_LABELS[meth]
        p = analysis.paired(ours, analysis.seeds_of(cell, method=meth))
        out.update({f"vs {label}": p["mean"], f"vs {label} lo": p["lo"], f"vs {label} hi": p["hi"],
                    f"vs {label} n": p["n"]})
    return out


def _main_table(profile, results_dir, setting, order, paper_df, table_name, reasons):
    runs = _compared(analysis.load_runs(profile, results_dir))
    ps = per_seed(runs, setting)
    flags = analysis.outliers(runs[runs["setting"] == setting])
    reasons = _reason_map(profile) if reasons is None else reasons
    rows = []
    for m in (10, 1):
        dpdl_here = set(ps.loc[(ps["anomalies"] == m) & (ps["method"] == "dpdl"), "dataset"])
        subsets = {f"mvtec_{s}" for s in paper.MVTEC_SUBSETS} if setting == "general" else set()
        keys = list(order) + sorted(dpdl_here - set(order) - subsets)
        for key in keys:
            cell = _cell(ps, key, m)
            mine = cell[cell["method"] == "dpdl"]
            extra = {}
            if setting == "hard":
                extra["known_classes"] = int(mine["n_classes"].max()) if len(mine) else 0
            if key == "mvtec":
                k = int(ps.loc[(ps["anomalies"] == m) & ps["dataset"].isin(subsets)
                               & (ps["method"] == "dpdl"), "dataset"].nunique())
                extra["coverage"] = f"{k}/15 subsets" if k else ""
                reason = (f"{k}/15 subsets ran" if k else reasons.get(f"mvtec_{paper.MVTEC_SUBSETS[0]}")) \
                    if mine.empty else None
                out = _cell_outliers(flags, dataset_in=subsets, anomalies=m)
            else:
                reason = reasons.get(key)
                out = _cell_outliers(flags, dataset=key, anomalies=m)
            extra.update(_methods(cell))
            extra.update(_baseline_cols(paper_df, lambda d: (d["key"] == key) & (d["n_anomalies"] == m)))
            pv = paper.paper_value(table_name, key, m) if key in order else None
            rows.append(_row(paper.paper_name(key), key, m, interval(mine["auc"]), pv, extra, reason, out))
    return pd.DataFrame(rows)


def table1(profile: str, results_dir=None, *, reasons: dict | None = None) -> pd.DataFrame:
    """Table 1 (general setting, M ∈ {10, 1}): the paper's nine datasets (MVTec AD = mean of 15 subsets) and any
    other dataset run here."""
    return _main_table(profile, results_dir, "general", paper.TABLE1_ORDER, paper.table1(), "table1", reasons)


def table2(profile: str, results_dir=None, *, reasons: dict | None = None) -> pd.DataFrame:
    """Table 2 (hard setting, mean over known classes, M ∈ {10, 1})."""
    return _main_table(profile, results_dir, "hard", paper.TABLE2_ORDER, paper.table2(), "table2", reasons)


# ------------------------------------------------------------------------------- Tables 5-6: per subset/class
def table5(profile: str, results_dir=None, *, reasons: dict | None = None) -> pd.DataFrame:
    """Table 5 (general setting, MVTec AD per subset, M ∈ {10, 1}) and the MVTec AD mean row."""
    runs = _dpdl(analysis.load_runs(profile, results_dir))
    ps = per_seed(runs, "general")
    flags = analysis.outliers(runs)
    reasons = _reason_map(profile) if reasons is None else reasons
    t5 = paper.table5()
    rows = []
    for m in (10, 1):
        for s in paper.MVTEC_SUBSETS:
            key = f"mvtec_{s}"
            rows.append(_row(paper.paper_name(key), key, m,
                             interval(ps.loc[(ps["dataset"] == key) & (ps["anomalies"] == m), "auc"]),
                             paper.paper_value("table5", key, m),
                             _baseline_cols(t5, lambda d: (d["key"] == key) & (d["n_anomalies"] == m)),
                             reasons.get(key), _cell_outliers(flags, dataset=key, anomalies=m)))
    t1 = table1(profile, results_dir, reasons=reasons)
    mv = t1[t1["key"] == "mvtec"].copy()
    mv["dataset"] = "MVTec AD (mean)"
    return pd.concat([pd.DataFrame(rows), mv[[c for c in mv.columns if c in rows[0]]]], ignore_index=True)


def table6(profile: str, results_dir=None, *, reasons: dict | None = None) -> pd.DataFrame:
    """Table 6 (hard setting per known class, M ∈ {10, 1}): the paper's classes and any class run here."""
    runs = _dpdl(analysis.load_runs(profile, results_dir))
    d = runs[runs["setting"] == "hard"]
    flags = analysis.outliers(d)
    reasons = _reason_map(profile) if reasons is None else reasons
    t6 = paper.table6()
    rows = []
    for m in (10, 1):
        keys = list(paper.TABLE2_ORDER) + sorted(set(d.loc[d["anomalies"] == m, "dataset"]) - set(paper.TABLE2_ORDER))
        for key in keys:
            ours_classes = sorted(set(d.loc[(d["dataset"] == key) & (d["anomalies"] == m), "known_class"]))
            pcls = paper.table6_classes(key)
            matched = {c: paper.match_class(pcls, c) for c in ours_classes}
            listed = [(c, matched[c]) for c in ours_classes] + [(None, pc) for pc in pcls
                                                                if pc not in matched.values()]
            for ours_c, pc in listed:
                vals = d.loc[(d["dataset"] == key) & (d["anomalies"] == m) & (d["known_class"] == ours_c), "auc"] \
                    if ours_c is not None else []
                pv = None
                if pc is not None:
                    sel = t6[(t6["key"] == key) & (t6["class"] == pc) & (t6["n_anomalies"] == m)
                             & (t6["method"] == "DPDL")]
                    pv = (float(sel.iloc[0].auc_mean), float(sel.iloc[0].auc_std)) if len(sel) else None
                extra = {"known_class": ours_c if ours_c is not None else str(pc).lower(),
                         "paper_class": pc or ""}
                extra.update(_baseline_cols(t6, lambda t: (t["key"] == key) & (t["class"] == pc)
                                            & (t["n_anomalies"] == m)))
                out = _cell_outliers(flags, dataset=key, anomalies=m, known_class=ours_c) if ours_c else ""
                rows.append(_row(paper.paper_name(key), key, m, interval(vals), pv, extra, reasons.get(key), out))
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------- ablations: paired against full
def _vs_full(ps: pd.DataFrame, key: str, variant: str) -> dict:
    """variant - full over the seeds both ran (hard: per-seed means over known classes)."""
    if variant == "full":
        return {"diff_full": math.nan, "diff_full_lo": math.nan, "diff_full_hi": math.nan}
    p = analysis.paired(analysis.seeds_of(ps, dataset=key, variant=variant),
                        analysis.seeds_of(ps, dataset=key, variant="full"))
    return {"diff_full": p["mean"], "diff_full_lo": p["lo"], "diff_full_hi": p["hi"]}


def _paired_seeds(ps: pd.DataFrame, variants) -> pd.DataFrame:
    """Restrict the full model's seeds to those of the other variants (per dataset and M)."""
    keep = []
    for _, g in ps.groupby(["dataset", "anomalies"]):
        others = g[g["variant"].isin([v for v in variants if v != "full"])]
        seeds = set(others["seed"]) if len(others) else set(g["seed"])
        keep.append(g[(g["variant"] != "full") | g["seed"].isin(seeds)])
    return pd.concat(keep) if keep else ps


def paper_values(runs: pd.DataFrame, key: str) -> np.ndarray:
    """The paper's value of hyper-parameter ``key`` for each run, from its dataset (:func:`dpdl.methods.dpdl.model.paper_defaults`:
    λ per dataset, Sec. 5.7)."""
    from ..methods.dpdl.model import paper_defaults

    return np.array([float(paper_defaults(ds)[key]) for ds in runs["dataset"]], float)


def _at_paper_defaults(runs: pd.DataFrame, *, free=()) -> pd.DataFrame:
    """DPDL runs whose hyper-parameters (other than ``free``) are the paper's for their dataset
    (:func:`dpdl.methods.dpdl.model.paper_defaults`, λ per dataset)."""
    from ..methods.dpdl.model import PAPER_DEFAULTS

    runs = _dpdl(runs, None)
    mask = np.ones(len(runs), bool)
    for k, v in PAPER_DEFAULTS.items():
        if k in free:
            continue
        if k == "heads":
            mask &= (runs["heads"] == ",".join(h for h in "nar" if h in str(v).split(","))).to_numpy()
        elif isinstance(v, bool):
            mask &= (runs[k] == v).to_numpy()
        else:
            mask &= np.isclose(runs[k].astype(float), paper_values(runs, k))
    return runs[mask]


def table3(profile: str, results_dir=None, *, reasons: dict | None = None) -> pd.DataFrame:
    """Table 3 (heads ablation, M = 10, general and hard): heads {r}, {n,r}, {a,r}, {n,a,r}."""
    runs = analysis.load_runs(profile, results_dir)
    runs = _at_paper_defaults(runs[runs["anomalies"] == 10], free=("heads",))
    reasons = _reason_map(profile) if reasons is None else reasons
    variants = {h: ("full" if h == "n,a,r" else f"heads={h}") for h in HEADS_ORDER}
    flags = analysis.outliers(runs)
    rows = []
    for setting in ("general", "hard"):
        ps = per_seed(runs, setting)
        ps = _paired_seeds(ps[ps["variant"].isin(variants.values())], list(variants.values()))
        keys = ["aitex", "elpv", "mastcam"] + sorted(
            set(ps.loc[ps["variant"] != "full", "dataset"]) - {"aitex", "elpv", "mastcam"})
        for key in keys:
            for h in HEADS_ORDER:
                sel = ps[(ps["dataset"] == key) & (ps["variant"] == variants[h])]
                pv = paper.paper_value("table3", key, 10, setting=setting, heads=h)
                extra = {"setting": setting, "heads": "{" + h + "}", "Mn": "n" in h, "Ma": "a" in h, "Mr": "r" in h}
                extra.update(_vs_full(ps, key, variants[h]))
                out = _cell_outliers(flags, dataset=key, setting=setting, variant=variants[h])
                rows.append(_row(paper.paper_name(key), key, 10, interval(sel["auc"]), pv, extra,
                                 reasons.get(key), out))
    return pd.DataFrame(rows)


def fig2(profile: str, results_dir=None) -> pd.DataFrame:
    """Fig. 2 data (M = 10): full, w/o DPL, w/o DFL per dataset and setting (hard = mean over known classes),
    with the paired difference to the full model."""
    runs = _dpdl(analysis.load_runs(profile, results_dir), None)
    runs = runs[(runs["anomalies"] == 10) & runs["variant"].isin(["full", "no_dpl", "no_dfl"])]
    rows = []
    for setting in ("general", "hard"):
        ps = _paired_seeds(per_seed(runs, setting), ["full", "no_dpl", "no_dfl"])
        for key in sorted(set(ps.loc[ps["variant"] != "full", "dataset"])):
            for var, label in (("full", "DPDL"), ("no_dpl", "w/o DPL"), ("no_dfl", "w/o DFL")):
                st = interval(ps.loc[(ps["dataset"] == key) & (ps["variant"] == var), "auc"])
                rows.append(dict(dataset=paper.paper_name(key), key=key, setting=setting, variant=var, label=label,
                                 ours_mean=st["mean"], ours_std=st["sd"], n=st["n"],
                                 **dict(zip(("ci_lo", "ci_hi"), clip_auc(st["lo"], st["hi"]))), **_vs_full(ps, key, var)))
    return pd.DataFrame(rows, columns=["dataset", "key", "setting", "variant", "label", "ours_mean", "ours_std", "n",
                                       "ci_lo", "ci_hi", "diff_full", "diff_full_lo", "diff_full_hi"])


def fig3(profile: str, results_dir=None) -> pd.DataFrame:
    """Fig. 3 data (general, M = 10): AUC against C, ε, κ, λ (one parameter varied, the others at the paper's
    values; the paper's value of the varied parameter is the full model), paired against the paper's value."""
    from ..methods.dpdl.model import paper_defaults

    runs = analysis.load_runs(profile, results_dir)
    runs = runs[(runs["anomalies"] == 10) & (runs["setting"] == "general")]
    rows = []
    for param, sym in SWEEP_PARAMS.items():
        sel = _at_paper_defaults(runs, free=(param,))
        varied = sel[~np.isclose(sel[param].astype(float), paper_values(sel, param))]
        for key in sorted(set(varied["dataset"])):
            default = float(paper_defaults(key)[param])
            sk = sel[(sel["dataset"] == key) & sel["seed"].isin(set(varied.loc[varied["dataset"] == key, "seed"]))]
            base = sk[np.isclose(sk[param], default)].set_index("seed")["auc"]
            for value, g in sk.groupby(param):
                st = interval(g["auc"])
                is_default = bool(np.isclose(value, default))
                p = analysis.paired(g.set_index("seed")["auc"], base) if not is_default else interval([])
                rows.append(dict(param=param, symbol=sym, value=float(value), is_default=is_default,
                                 dataset=paper.paper_name(key), key=key, ours_mean=st["mean"], ours_std=st["sd"],
                                 n=st["n"], **dict(zip(("ci_lo", "ci_hi"), clip_auc(st["lo"], st["hi"]))),
                                 diff_full=p["mean"],
                                 diff_full_lo=p["lo"], diff_full_hi=p["hi"]))
    return pd.DataFrame(rows, columns=["param", "symbol", "value", "is_default", "dataset", "key", "ours_mean",
                                       "ours_std", "n", "ci_lo", "ci_hi", "diff_full", "diff_full_lo",
                                       "diff_full_hi"])
TABLE4_LABELS = {"n_anomaly_classes": "anomaly classes", "train_normal": "train normal",
                 "test_normal": "test normal", "test_anomaly": "test anomaly"}


def table4(profile: str = "cpu", results_dir=None, data_root=None) -> pd.DataFrame:
    """Table 4 (dataset statistics): our counts from the data (``dpdl.data.dataset_stats``) beside the paper's;
    ``differs`` names the columns where a measured count is not the paper's (``test anomaly 185 vs 183``)."""
    from dpdl.data import dataset_stats, get_dataset

    t4 = paper.table4()
    rows = []
    for _, r in t4.iterrows():
        key = r["key"]
        row = {"dataset": r["dataset"], "key": key, "type": r["type"] if isinstance(r["type"], str) else ""}
        ours = None
        if key and key != "mvtec":
            try:
                ok, why = get_dataset(key, data_root=data_root).available()
                ours = dataset_stats(key, data_root=data_root) if ok else None
            except Exception as exc:  # noqa: BLE001 - a dataset that cannot be read is "not run here"
                ok, why = False, str(exc)
        else:
            ok, why = False, "the sum over the 15 subsets" if key == "mvtec" else "unknown dataset"
        for col in ("n_anomaly_classes", "train_normal", "test_normal", "test_anomaly"):
            row[f"paper_{col}"] = int(r[col])
            row[f"ours_{col}"] = int(ours[col]) if ours else pd.NA
        row["status"] = "measured" if ours else _not_run(why)
        row["differs"] = ", ".join(f"{TABLE4_LABELS[c]} {ours[c]} vs {int(r[c])}" for c in TABLE4_LABELS
                                   if ours and int(ours[c]) != int(r[c]))
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in ("n_anomaly_classes", "train_normal", "test_normal", "test_anomaly"):
        df[f"ours_{col}"] = df[f"ours_{col}"].astype("Int64")
    sub = df[df["key"].fillna("").str.startswith("mvtec_") & (df["status"] == "measured")]
    if len(sub) == len(paper.MVTEC_SUBSETS):
        i = df.index[df["key"] == "mvtec"][0]
        for col in ("n_anomaly_classes", "train_normal", "test_normal", "test_anomaly"):
            df.at[i, f"ours_{col}"] = int(sub[f"ours_{col}"].sum())
        df.at[i, "status"] = "measured"
    return df


# ----------------------------------------------------------------------------------------------- output
def build_all(profile: str, results_dir=None, data_root=None) -> dict[str, pd.DataFrame]:
    reasons = _reason_map(profile)
    return {
        "table1": table1(profile, results_dir, reasons=reasons),
        "table2": table2(profile, results_dir, reasons=reasons),
        "table3": table3(profile, results_dir, reasons=reasons),
        "table4": table4(profile, results_dir, data_root=data_root),
        "table5": table5(profile, results_dir, reasons=reasons),
        "table6": table6(profile, results_dir, reasons=reasons),
        "fig2": fig2(profile, results_dir),
        "fig3": fig3(profile, results_dir),
    }


def write_tables(profile: str, results_dir=None, data_root=None, *, figures: bool = True) -> list[Path]:
    """Write ``<results_dir>/tables/<profile>/*.csv`` (the tables and the claims checklist ``claims.csv``) and,
    with ``figures``, ``figures/<profile>/*.png``; returns the paths."""
    from .claims import checklist

    out = default_results_dir(results_dir) / "tables" / profile
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    data = build_all(profile, results_dir, data_root)
    data["claims"] = checklist(profile, results_dir, data)
    if figures:
        import matplotlib
        matplotlib.use("Agg")
        from .figures import write_figures
        paths += write_figures(profile, results_dir, data)
    for name, df in data.items():
        p = out / TABLE_FILES[name]
        tmp = p.with_suffix(".csv.tmp")
        df.to_csv(tmp, index=False)
        tmp.replace(p)
        paths.append(p)
    return paths


