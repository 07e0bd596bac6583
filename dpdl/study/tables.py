"""From run records to the paper's tables: mean ± std over seeds, n, the paper's value, the difference.

Every function takes ``profile`` and ``results_dir`` and reads ``<results_dir>/runs/<profile>/*/run.json``
(only finished runs with ``status: "ok"`` count). Conventions:

* ``ours_mean`` / ``ours_std``: mean and sample standard deviation (ddof = 1; 0 when n = 1) over seeds;
  ``n``: the number of seeds. In the hard setting (Tables 2, 3, Fig. 2) a seed's value is the mean AUC over
  the dataset's known classes (only seeds that have every known class count); MVTec AD in Table 1 is the
  mean over its 15 subsets per seed (only when all 15 ran).
* ``paper_mean`` / ``paper_std``: DPDL's value as printed; ``diff`` = ours - paper.
* Baselines (DevNet ... AHL) are columns ``<method> (reported)``: numbers the paper copied from DRA/AHL, not ours.
* Rows the paper has but that did not run here say ``status = "not run here"`` (with the reason when known).
* Comparisons between variants (Table 3, Figs. 2 and 3) use paired seeds: the full model only over the seeds
  its variants ran with.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paper
from ..config import PROFILES
from ..paths import REPO_ROOT, results_dir as _default_results_dir
from .plan import load_study, record_variant

TABLE_FILES = {
    "table1": "table1_general.csv", "table2": "table2_hard.csv", "table3": "table3_heads.csv",
    "table4": "table4_datasets.csv", "table5": "table5_mvtec.csv", "table6": "table6_hard_per_class.csv",
    "fig2": "fig2_ablation.csv", "fig3": "fig3_sensitivity.csv",
}
HEADS_ORDER = ("r", "n,r", "a,r", "n,a,r")
SWEEP_PARAMS = {"prototypes": "C", "eps": "ε", "kappa": "κ", "lam": "λ"}


# ----------------------------------------------------------------------------------------------- records
def default_results_dir(results_dir=None) -> Path:
    """``results_dir`` as given; a relative one that does not exist from here is taken from the repository
    (report notebooks run in other folders with ``results_dir="results"``); ``None``: $DPDL_RESULTS or results/."""
    if results_dir is None:
        return _default_results_dir()
    p = Path(results_dir)
    if not p.is_absolute() and not p.exists() and (REPO_ROOT / p).exists():
        return REPO_ROOT / p
    return p


def load_runs(profile: str, results_dir=None, *, include_failed: bool = False) -> pd.DataFrame:
    """One row per run record of ``profile``: run_id, status, error, dataset, setting, known_class, anomalies,
    seed, variant, heads, prototypes, eps, kappa, lam, use_dpl, use_dfl, auc, ap, total_s, path."""
    base = default_results_dir(results_dir) / "runs" / profile
    rows = []
    if base.exists():
        for p in sorted(base.glob("*/run.json")):
            try:
                rec = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            cfg = rec.get("config") or {}
            metrics = rec.get("metrics") or {}
            heads = cfg.get("heads", "n,a,r")
            if isinstance(heads, (list, tuple)):
                heads = ",".join(heads)
            rows.append(dict(
                run_id=rec.get("run_id", p.parent.name), status=rec.get("status"), error=rec.get("error"),
                dataset=rec.get("dataset", cfg.get("dataset")), setting=rec.get("setting", cfg.get("setting")),
                known_class=rec.get("known_class", cfg.get("known_class")),
                anomalies=int(rec.get("anomalies", cfg.get("anomalies", 0))),
                seed=int(rec.get("seed", cfg.get("seed", 0))),
                variant=record_variant(cfg) if cfg else rec.get("variant"),
                heads=",".join(h for h in "nar" if h in str(heads).split(",")),
                prototypes=int(cfg.get("prototypes", 32)), eps=float(cfg.get("eps", 1e-3)),
                kappa=float(cfg.get("kappa", 10.0)), lam=float(cfg.get("lam", 1.0)),
                use_dpl=bool(cfg.get("use_dpl", True)), use_dfl=bool(cfg.get("use_dfl", True)),
                auc=metrics.get("auc"), ap=metrics.get("ap"),
                total_s=(rec.get("timings") or {}).get("total_s"), path=str(p)))
    cols = ["run_id", "status", "error", "dataset", "setting", "known_class", "anomalies", "seed", "variant",
            "heads", "prototypes", "eps", "kappa", "lam", "use_dpl", "use_dfl", "auc", "ap", "total_s", "path"]
    df = pd.DataFrame(rows, columns=cols)
    if not include_failed:
        df = df[(df["status"] == "ok") & df["auc"].notna()].copy()
    df["auc"] = df["auc"].astype(float)
    return df.reset_index(drop=True)


def _stats(values) -> tuple[float, float, int]:
    v = np.asarray([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))], float)
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, int(len(v))


def per_seed(df: pd.DataFrame, setting: str) -> pd.DataFrame:
    """One AUC per (dataset, anomalies, variant, seed): the run's AUC (general) or the mean over known classes
    (hard; seeds missing a known class are dropped). Columns: dataset, anomalies, variant, seed, auc, n_classes."""
    d = df[df["setting"] == setting]
    if d.empty:
        return pd.DataFrame(columns=["dataset", "anomalies", "variant", "seed", "auc", "n_classes"])
    if setting == "general":
        out = d[["dataset", "anomalies", "variant", "seed", "auc"]].copy()
        out["n_classes"] = 1
        return out
    rows = []
    for (ds, m, var), g in d.groupby(["dataset", "anomalies", "variant"]):
        classes = set(g["known_class"])
        for seed, gs in g.groupby("seed"):
            if set(gs["known_class"]) == classes:
                rows.append(dict(dataset=ds, anomalies=m, variant=var, seed=seed, auc=gs["auc"].mean(),
                                 n_classes=len(classes)))
    return pd.DataFrame(rows, columns=["dataset", "anomalies", "variant", "seed", "auc", "n_classes"])


def _paired(ps: pd.DataFrame, variants) -> pd.DataFrame:
    """Restrict the full model's seeds to those of the other variants (per dataset and M)."""
    keep = []
    for (ds, m), g in ps.groupby(["dataset", "anomalies"]):
        others = g[g["variant"].isin([v for v in variants if v != "full"])]
        seeds = set(others["seed"]) if len(others) else set(g["seed"])
        keep.append(g[(g["variant"] != "full") | g["seed"].isin(seeds)])
    return pd.concat(keep) if keep else ps


# ----------------------------------------------------------------------------------------------- captions
def profile_caption(profile: str, results_dir=None, *, short: bool = False) -> str:
    """One line naming the profile and what it changes from the paper (``short``: without the study's
    description of the profile)."""
    prof = PROFILES.get(profile)
    study = load_study()
    desc = " ".join(str(study["profiles"].get(profile, {}).get("description", "")).split())
    if prof is None:
        return f"profile: {profile}"
    if profile == "paper":
        fid = "the paper's settings"
    else:
        fid = ("reduced fidelity: " + ("frozen" if not prof.finetune_backbone else "fine-tuned")
               + f" {prof.backbone} backbone at {prof.image_size}×{prof.image_size}"
               + (" with cached features" if prof.feature_cache else "")
               + (f" and a {prof.adapter_dim}-channel adapter" if prof.adapter_dim else "")
               + f", {prof.epochs}×{prof.iters_per_epoch} iterations of batch {prof.batch_size}"
               + " (paper: ResNet-18 fine-tuned at 448×448, 50×20)")
    return f"profile: {profile} ({fid})" if short else f"profile: {profile} ({fid}). {desc}".strip()


def _reason_map(profile: str, results_dir=None) -> dict[str, str]:
    """dataset -> why it did not run here (from dpdl.data availability); empty if that cannot be checked."""
    out = {}
    try:
        from dpdl.data import get_dataset
    except Exception:  # noqa: BLE001
        return out
    for name in paper.PAPER_NAMES:
        if name == "mvtec":
            continue
        try:
            ok, why = get_dataset(name).available()
        except Exception as exc:  # noqa: BLE001
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
    out = {}
    for _, r in df_paper[key_filter(df_paper) & df_paper["reported"]].iterrows():
        out[f"{r['method']} (reported)"] = r["auc_mean"]
    return out


def _row(name, key, m, stats, pv, extra=None, reason=None):
    mean, std, n = stats
    row = {"dataset": name, "key": key, "M": int(m)}
    row.update(extra or {})
    row.update(ours_mean=mean, ours_std=std, n=n,
               paper_mean=pv[0] if pv else float("nan"), paper_std=pv[1] if pv else float("nan"))
    row["diff"] = mean - row["paper_mean"] if n and pv else float("nan")
    row["status"] = "measured" if n else _not_run(reason)
    return row


# ----------------------------------------------------------------------------------------------- tables
def table1(profile: str, results_dir=None, *, reasons: dict | None = None) -> pd.DataFrame:
    """Table 1 (general setting, M ∈ {10, 1}): the paper's nine datasets (MVTec AD = mean of 15 subsets) and any
    other dataset run here."""
    runs = load_runs(profile, results_dir)
    ps = per_seed(runs[runs["variant"] == "full"], "general")
    reasons = _reason_map(profile) if reasons is None else reasons
    t1 = paper.table1()
    rows = []
    for m in (10, 1):
        for key in paper.TABLE1_ORDER:
            if key == "mvtec":
                sub = ps[ps["dataset"].str.startswith("mvtec_") & (ps["anomalies"] == m)]
                per = sub.groupby("seed").agg(auc=("auc", "mean"), k=("dataset", "nunique"))
                k = int(sub["dataset"].nunique())
                vals = per.loc[per["k"] == len(paper.MVTEC_SUBSETS), "auc"] if k else []
                reason = None if k == 0 else f"{k}/15 subsets ran" if len(vals) == 0 else None
                stats = _stats(vals)
            else:
                stats = _stats(ps.loc[(ps["dataset"] == key) & (ps["anomalies"] == m), "auc"])
                reason = reasons.get(key)
            pv = paper.paper_value("table1", key, m)
            rows.append(_row(paper.paper_name(key), key, m, stats, pv,
                             _baseline_cols(t1, lambda d: (d["key"] == key) & (d["n_anomalies"] == m)), reason))
        extra = sorted(set(ps.loc[ps["anomalies"] == m, "dataset"]) - set(paper.TABLE1_ORDER)
                       - {f"mvtec_{s}" for s in paper.MVTEC_SUBSETS})
        for key in extra:
            stats = _stats(ps.loc[(ps["dataset"] == key) & (ps["anomalies"] == m), "auc"])
            rows.append(_row(key, key, m, stats, None))
    return pd.DataFrame(rows)


def table5(profile: str, results_dir=None, *, reasons: dict | None = None) -> pd.DataFrame:
    """Table 5 (general setting, MVTec AD per subset, M ∈ {10, 1}) and the MVTec AD mean row."""
    runs = load_runs(profile, results_dir)
    ps = per_seed(runs[runs["variant"] == "full"], "general")
    reasons = _reason_map(profile) if reasons is None else reasons
    t5 = paper.table5()
    rows = []
    for m in (10, 1):
        for s in paper.MVTEC_SUBSETS:
            key = f"mvtec_{s}"
            stats = _stats(ps.loc[(ps["dataset"] == key) & (ps["anomalies"] == m), "auc"])
            rows.append(_row(paper.paper_name(key), key, m, stats, paper.paper_value("table5", key, m),
                             _baseline_cols(t5, lambda d: (d["key"] == key) & (d["n_anomalies"] == m)),
                             reasons.get(key)))
    t1 = table1(profile, results_dir, reasons=reasons)
    mv = t1[t1["key"] == "mvtec"].copy()
    mv["dataset"] = "MVTec AD (mean)"
    return pd.concat([pd.DataFrame(rows), mv], ignore_index=True)


def table2(profile: str, results_dir=None, *, reasons: dict | None = None) -> pd.DataFrame:
    """Table 2 (hard setting, mean over known classes, M ∈ {10, 1})."""
    runs = load_runs(profile, results_dir)
    ps = per_seed(runs[runs["variant"] == "full"], "hard")
    reasons = _reason_map(profile) if reasons is None else reasons
    t2 = paper.table2()
    rows = []
    for m in (10, 1):
        keys = list(paper.TABLE2_ORDER) + sorted(set(ps.loc[ps["anomalies"] == m, "dataset"])
                                                 - set(paper.TABLE2_ORDER))
        for key in keys:
            sel = ps[(ps["dataset"] == key) & (ps["anomalies"] == m)]
            pv = paper.paper_value("table2", key, m)
            extra = {"known_classes": int(sel["n_classes"].max()) if len(sel) else 0}
            extra.update(_baseline_cols(t2, lambda d: (d["key"] == key) & (d["n_anomalies"] == m)))
            rows.append(_row(paper.paper_name(key), key, m, _stats(sel["auc"]), pv, extra, reasons.get(key)))
    return pd.DataFrame(rows)


def table6(profile: str, results_dir=None, *, reasons: dict | None = None) -> pd.DataFrame:
    """Table 6 (hard setting per known class, M ∈ {10, 1}): the paper's classes and any class run here."""
    runs = load_runs(profile, results_dir)
    d = runs[(runs["variant"] == "full") & (runs["setting"] == "hard")]
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
                rows.append(_row(paper.paper_name(key), key, m, _stats(vals), pv, extra, reasons.get(key)))
    return pd.DataFrame(rows)


def table3(profile: str, results_dir=None, *, reasons: dict | None = None) -> pd.DataFrame:
    """Table 3 (heads ablation, M = 10, general and hard): heads {r}, {n,r}, {a,r}, {n,a,r}."""
    runs = load_runs(profile, results_dir)
    reasons = _reason_map(profile) if reasons is None else reasons
    runs = runs[runs["use_dpl"] & runs["use_dfl"] & (runs["prototypes"] == 32) & (runs["eps"] == 1e-3)
                & (runs["kappa"] == 10.0) & (runs["lam"] == 1.0) & (runs["anomalies"] == 10)]
    variants = {h: ("full" if h == "n,a,r" else f"heads={h}") for h in HEADS_ORDER}
    rows = []
    for setting in ("general", "hard"):
        ps = per_seed(runs, setting)
        ps = _paired(ps[ps["variant"].isin(variants.values())], list(variants.values()))
        keys = ["aitex", "elpv", "mastcam"] + sorted(
            set(ps.loc[ps["variant"] != "full", "dataset"]) - {"aitex", "elpv", "mastcam"})
        for key in keys:
            for h in HEADS_ORDER:
                sel = ps[(ps["dataset"] == key) & (ps["variant"] == variants[h])]
                pv = paper.paper_value("table3", key, 10, setting=setting, heads=h)
                extra = {"setting": setting, "heads": "{" + h + "}", "Mn": "n" in h, "Ma": "a" in h, "Mr": "r" in h}
                rows.append(_row(paper.paper_name(key), key, 10, _stats(sel["auc"]), pv, extra, reasons.get(key)))
    return pd.DataFrame(rows)


def fig2(profile: str, results_dir=None) -> pd.DataFrame:
    """Fig. 2 data (M = 10): full, w/o DPL, w/o DFL per dataset and setting (hard = mean over known classes)."""
    runs = load_runs(profile, results_dir)
    runs = runs[(runs["anomalies"] == 10) & runs["variant"].isin(["full", "no_dpl", "no_dfl"])]
    rows = []
    for setting in ("general", "hard"):
        ps = _paired(per_seed(runs, setting), ["full", "no_dpl", "no_dfl"])
        with_variants = set(ps.loc[ps["variant"] != "full", "dataset"])
        for key in sorted(with_variants):
            for var, label in (("full", "DPDL"), ("no_dpl", "w/o DPL"), ("no_dfl", "w/o DFL")):
                mean, std, n = _stats(ps.loc[(ps["dataset"] == key) & (ps["variant"] == var), "auc"])
                rows.append(dict(dataset=paper.paper_name(key), key=key, setting=setting, variant=var, label=label,
                                 ours_mean=mean, ours_std=std, n=n))
    return pd.DataFrame(rows, columns=["dataset", "key", "setting", "variant", "label", "ours_mean", "ours_std", "n"])


def fig3(profile: str, results_dir=None) -> pd.DataFrame:
    """Fig. 3 data (general, M = 10): AUC against C, ε, κ, λ (one parameter varied, the others at the paper's
    values; the paper's value of the varied parameter is the full model)."""
    runs = load_runs(profile, results_dir)
    runs = runs[(runs["anomalies"] == 10) & (runs["setting"] == "general") & runs["use_dpl"] & runs["use_dfl"]
                & (runs["heads"] == "n,a,r")]
    default = {"prototypes": 32, "eps": 1e-3, "kappa": 10.0, "lam": 1.0}
    rows = []
    for param, sym in SWEEP_PARAMS.items():
        others = [p for p in default if p != param]
        sel = runs[np.logical_and.reduce([np.isclose(runs[p], default[p]) for p in others])]
        varied = sel[~np.isclose(sel[param], default[param])]
        for key in sorted(set(varied["dataset"])):
            sk = sel[sel["dataset"] == key]
            seeds = set(varied.loc[varied["dataset"] == key, "seed"])
            sk = sk[sk["seed"].isin(seeds)]
            for value, g in sk.groupby(param):
                mean, std, n = _stats(g["auc"])
                rows.append(dict(param=param, symbol=sym, value=float(value), is_default=bool(
                    np.isclose(value, default[param])), dataset=paper.paper_name(key), key=key,
                    ours_mean=mean, ours_std=std, n=n))
    return pd.DataFrame(rows, columns=["param", "symbol", "value", "is_default", "dataset", "key", "ours_mean",
                                       "ours_std", "n"])


def table4(profile: str = "cpu", results_dir=None, data_root=None) -> pd.DataFrame:
    """Table 4 (dataset statistics): our counts from the data (``dpdl.data.dataset_stats``) beside the paper's."""
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
    """Write ``<results_dir>/tables/<profile>/*.csv`` (and, with ``figures``, ``figures/<profile>/*.png``);
    returns the paths."""
    out = default_results_dir(results_dir) / "tables" / profile
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    data = build_all(profile, results_dir, data_root)
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


def fmt_pm(mean, std, n=None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    s = f"{mean:.3f} ± {std:.3f}" if std is not None and not math.isnan(std) else f"{mean:.3f}"
    return s


def display_frame(df: pd.DataFrame, *, index_cols=("dataset", "M"), extra_cols=()) -> pd.DataFrame:
    """The table as the book shows it: ours (mean ± std), n, paper (DPDL), diff, then the reported baselines."""
    out = pd.DataFrame()
    for c in index_cols:
        out[c] = df[c]
    for c in extra_cols:
        out[c] = df[c]
    out["ours (mean ± std)"] = [fmt_pm(m, s) if n else st for m, s, n, st in
                                zip(df["ours_mean"], df["ours_std"], df["n"], df["status"])]
    out["n"] = df["n"].astype(int)
    out["paper DPDL"] = [fmt_pm(m, s) for m, s in zip(df["paper_mean"], df["paper_std"])]
    out["diff"] = [f"{d:+.3f}" if isinstance(d, float) and not math.isnan(d) else "" for d in df["diff"]]
    for c in [c for c in df.columns if c.endswith("(reported)")]:
        out[c] = [f"{v:.3f}" if isinstance(v, float) and not math.isnan(v) else "" for v in df[c]]
    return out.reset_index(drop=True)


def styled(df: pd.DataFrame, caption: str):
    """A pandas Styler of a display frame: no index, the profile caption on top, "not run here" greyed."""
    def grey(v):
        return "color: grey" if isinstance(v, str) and v.startswith("not run here") else ""

    sty = df.style.hide(axis="index").set_caption(caption)
    sty = sty.map(grey) if hasattr(sty, "map") else sty.applymap(grey)
    return sty.format(precision=3, na_rep="")
