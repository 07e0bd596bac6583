"""The one analysis layer: run records -> one row per run -> one value per seed -> one cell with its interval.

Every table (:mod:`dpdl.study.tables`), the claims checklist (:mod:`dpdl.study.claims`) and every book page
(:mod:`dpdl.book.pages`) read the records through :func:`load_runs` and aggregate them with the functions here.

Conventions (stated once, used everywhere):

* a record without ``method`` is DPDL; ``method`` is one of :data:`METHODS`. A DPDL record's ``variant`` is
  computed from its config (``full``, ``no_dpl``, ``heads=a,r``, ...); a baseline's is its method name.
* :func:`per_seed`: one AUC per (method, variant, dataset, M, seed). General setting: the run's AUC. Hard
  setting: the mean over the cell's known classes; a seed that lacks one of the known classes run for that
  cell is left out (``n`` counts complete seeds only). MVTec AD (Table 1) is the mean over the 15 subsets per
  seed, only for seeds with all 15.
* :func:`interval`: mean, sample sd (ddof = 1), n, and the 95 % t-interval ``mean ± t(0.975, n-1) sd / sqrt(n)``
  (no interval when n < 2).
* :func:`outliers`: a run is flagged when it lies more than 3 MADs from its cell's median (MAD = median
  |x - median|, unscaled) and more than 0.05 AUC from it (so that seeds agreeing to the second decimal do not
  flag noise); cells with fewer than 3 runs are not tested.
* :func:`paired`: the difference a - b over the seeds both have, its mean and 95 % t-interval.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..paths import REPO_ROOT, results_dir as _default_results_dir
from .plan import BASELINES

METHODS = ("dpdl", *BASELINES)
# Every method's name in tables and pages (one place); the related systems after the baselines.
METHOD_LABELS = {"dpdl": "DPDL", "devnet": "DevNet", "dra": "DRA", "knn": "kNN", "arcad": "ArcAD",
                 "arcad_base": "ArcAD base", "hgad": "HGAD", "hgad_bg": "HGAD+BG", "vpdm": "VPDM"}
RELATED = ("arcad", "arcad_base", "hgad", "hgad_bg", "vpdm")   # the related systems (papers 002-004): the Related systems page
MAD_K = 3.0
MIN_GAP = 0.05    # AUC: an outlier is also this far from its cell's median
COLUMNS = ["run_id", "status", "error", "method", "profile", "dataset", "setting", "known_class", "anomalies",
           "seed", "variant", "heads", "prototypes", "eps", "kappa", "lam", "use_dpl", "use_dfl", "auc", "ap",
           "total_s", "backbone", "fingerprint", "code_version", "date", "groups", "outdated", "path", "record"]


def default_results_dir(results_dir=None) -> Path:
    """``results_dir`` as given; a relative one that does not exist from here is taken from the repository
    (report notebooks run in other folders with ``results_dir="results"``); ``None``: $DPDL_RESULTS or results/."""
    if results_dir is None:
        return _default_results_dir()
    p = Path(results_dir)
    if not p.is_absolute() and not p.exists() and (REPO_ROOT / p).exists():
        return REPO_ROOT / p
    return p


def _row(rec: dict, path: Path, study: dict) -> dict:
    from ..methods.dpdl.model import PAPER_DEFAULTS, paper_lam
    from .plan import record_variant

    cfg = rec.get("config") or {}
    method = str(rec.get("method") or cfg.get("method") or "dpdl").lower()
    heads = cfg.get("heads", PAPER_DEFAULTS["heads"])
    if isinstance(heads, (list, tuple)):
        heads = ",".join(heads)
    if method != "dpdl":
        variant = rec.get("variant") or method
    else:
        variant = record_variant(cfg, study) if cfg else rec.get("variant")
    get = lambda k: rec.get(k, cfg.get(k))  # noqa: E731
    return dict(
        run_id=rec.get("run_id", path.parent.name), status=rec.get("status"), error=rec.get("error"),
        method=method, profile=rec.get("profile") or cfg.get("profile"), dataset=get("dataset"),
        setting=get("setting"), known_class=get("known_class"), anomalies=int(get("anomalies") or 0),
        seed=int(get("seed") or 0), variant=variant,
        heads=",".join(h for h in "nar" if h in str(heads).split(",")),
        prototypes=int(cfg.get("prototypes", PAPER_DEFAULTS["prototypes"])),
        eps=float(cfg.get("eps", PAPER_DEFAULTS["eps"])), kappa=float(cfg.get("kappa", PAPER_DEFAULTS["kappa"])),
        lam=float(cfg.get("lam", paper_lam(get("dataset")))), use_dpl=bool(cfg.get("use_dpl", True)),
        use_dfl=bool(cfg.get("use_dfl", True)), auc=(rec.get("metrics") or {}).get("auc"),
        ap=(rec.get("metrics") or {}).get("ap"), total_s=(rec.get("timings") or {}).get("total_s"),
        backbone=rec.get("backbone"), fingerprint=(rec.get("split") or {}).get("fingerprint"),
        code_version=rec.get("code_version"), date=rec.get("date"),
        groups=",".join((rec.get("study") or {}).get("groups") or []), outdated=_outdated(rec), path=str(path),
        record=rec)


def _outdated(rec: dict) -> str:
    """What the code now sets otherwise than a finished run of the study had it (dpdl.study.outdated), joined by
    ","; "" when the record is current, or holds no profile settings to compare (a hand-made record)."""
    if rec.get("status") != "ok" or not isinstance(rec.get("profile_settings"), dict):
        return ""
    from .outdated import outdated_fields
    try:
        return ",".join(outdated_fields(rec, str(rec.get("profile"))))
    except (TypeError, ValueError, KeyError):
        return "unreadable settings"


def is_study_record(rec, path) -> bool:
    """A record in the folder of its own run id that, when ``dpdl train --out`` wrote it (``config.out`` set), the
    study's sweep finished (``dpdl.study.runner`` adds its ``study`` field). Anything else found under
    ``runs/<profile>/`` (e.g. ``dpdl train --out results/runs/<profile>/my_run``) is foreign: not in the tables."""
    if not isinstance(rec, dict) or rec.get("run_id") != Path(path).parent.name:
        return False
    cfg = rec.get("config")
    return isinstance(rec.get("study"), dict) or not (isinstance(cfg, dict) and cfg.get("out"))


def load_runs(profile: str, results_dir=None, *, include_failed: bool = False,
              include_outdated: bool = False) -> pd.DataFrame:
    """One row per run record ``<results_dir>/runs/<profile>/*/run.json`` (columns :data:`COLUMNS`; ``record``
    holds the parsed JSON). Unreadable or malformed files and foreign records (:func:`is_study_record`) are
    skipped; without ``include_failed`` only finished runs with an
    AUC (``status == "ok"``); without ``include_outdated`` only runs made with the settings of the code now
    (``outdated`` empty: dpdl.study.outdated), so that no table mixes two readings of the method."""
    from .plan import load_study

    base = default_results_dir(results_dir) / "runs" / profile
    study = load_study()
    rows = []
    for p in sorted(base.glob("*/run.json")) if base.exists() else []:
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
            if not is_study_record(rec, p):
                continue                    # not a run of the study (e.g. trained by hand into runs/): foreign
            rows.append(_row(rec, p, study))
        except (OSError, ValueError, TypeError, AttributeError):   # unreadable or malformed (a list, a list
            continue                                                # where a number belongs): not a result
    df = pd.DataFrame(rows, columns=COLUMNS)
    if not include_failed:
        df = df[(df["status"] == "ok") & df["auc"].notna()].copy()
    if not include_outdated:            # the tables use only runs made with the code's settings now (its reading)
        df = df[df["outdated"] == ""].copy()
    df["auc"] = df["auc"].astype(float)
    return df.reset_index(drop=True)


def interval(values) -> dict:
    """``{"mean", "sd", "n", "lo", "hi"}`` of the finite ``values``: sample sd (0 when n = 1), 95 % t-interval
    (NaN when n < 2); all NaN and n = 0 when there is no value."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))], float)
    n = len(v)
    if n == 0:
        return dict(mean=math.nan, sd=math.nan, n=0, lo=math.nan, hi=math.nan)
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan
    return dict(mean=mean, sd=sd, n=n, lo=mean - half, hi=mean + half)


def outliers(runs: pd.DataFrame, by=("method", "variant", "dataset", "setting", "known_class", "anomalies")):
    """Runs more than :data:`MAD_K` MADs and :data:`MIN_GAP` from the median AUC of their cell (``by``; at
    least 3 runs).
    Columns: run_id, method, variant, dataset, setting, known_class, anomalies, seed, auc, median, mad."""
    cols = ["run_id", "method", "variant", "dataset", "setting", "known_class", "anomalies", "seed", "auc",
            "median", "mad"]
    out = []
    for _, g in runs.groupby(list(by), dropna=False):
        if len(g) < 3:
            continue
        med = float(g["auc"].median())
        gap = (g["auc"] - med).abs()
        mad = float(gap.median())
        far = g[(gap > MAD_K * mad) & (gap > MIN_GAP)]
        for _, r in far.iterrows():
            out.append({**{c: r[c] for c in cols[:9]}, "median": med, "mad": mad})
    return pd.DataFrame(out, columns=cols)


def per_seed(runs: pd.DataFrame, setting: str) -> pd.DataFrame:
    """One AUC per (method, variant, dataset, anomalies, seed) of ``setting`` (see the module's conventions).
    Columns: method, variant, dataset, anomalies, seed, auc, n_classes, run_ids (comma-separated)."""
    cols = ["method", "variant", "dataset", "anomalies", "seed", "auc", "n_classes", "run_ids"]
    d = runs[runs["setting"] == setting]
    rows = []
    for (meth, var, ds, m), g in d.groupby(["method", "variant", "dataset", "anomalies"], dropna=False):
        classes = set(g["known_class"].fillna(""))
        for seed, gs in g.groupby("seed"):
            if setting == "general" or set(gs["known_class"].fillna("")) == classes:
                rows.append(dict(method=meth, variant=var, dataset=ds, anomalies=m, seed=seed,
                                 auc=float(gs["auc"].mean()), n_classes=len(classes),
                                 run_ids=",".join(gs["run_id"])))
    return pd.DataFrame(rows, columns=cols)


def mean_over_datasets(ps: pd.DataFrame, datasets, name: str) -> pd.DataFrame:
    """Per (method, variant, anomalies, seed): the mean AUC over ``datasets``, for seeds that have all of them
    (e.g. MVTec AD = its 15 subsets); the rows carry ``dataset = name``."""
    sub = ps[ps["dataset"].isin(list(datasets))]
    rows = []
    for (meth, var, m, seed), g in sub.groupby(["method", "variant", "anomalies", "seed"]):
        if g["dataset"].nunique() == len(set(datasets)):
            rows.append(dict(method=meth, variant=var, dataset=name, anomalies=m, seed=seed,
                             auc=float(g["auc"].mean()), n_classes=1, run_ids=",".join(g["run_ids"])))
    return pd.DataFrame(rows, columns=ps.columns)


def paired(a: pd.Series, b: pd.Series) -> dict:
    """a - b over the seeds (index) both have: ``{"mean", "sd", "n", "lo", "hi"}`` as :func:`interval`."""
    common = a.index.intersection(b.index)
    return interval((a.loc[common] - b.loc[common]).tolist())


def seeds_of(ps: pd.DataFrame, **where) -> pd.Series:
    """The per-seed AUCs of one cell of :func:`per_seed` (index: seed)."""
    sel = ps
    for k, v in where.items():
        sel = sel[sel[k] == v]
    return sel.set_index("seed")["auc"].sort_index()


def rank(values: dict) -> dict:
    """Rank (1 = best) of each key by its value; NaN values get no rank."""
    known = {k: v for k, v in values.items() if v is not None and not math.isnan(v)}
    order = sorted(known, key=lambda k: -known[k])
    return {k: (order.index(k) + 1 if k in known else None) for k in values}
