"""The paper's numbers, as DataFrames, and the names that link them to our datasets.

Tables 1–4 come from ``../shared/paper_tables`` (:func:`dpdl.paths.paper_tables_dir`); Tables 5 and 6
(supplementary) were transcribed by this project into ``results/paper/`` (by ``tools/transcribe_paper_tables.py``).
Only the ``DPDL`` rows were measured by DPDL's authors; every other method's numbers were copied by the paper
from DRA and AHL ("reported").
"""
from __future__ import annotations

import re
from functools import lru_cache

import pandas as pd

from .data.registry import MVTEC_CLASSES, REGISTRY
from .paths import REPO_ROOT, paper_tables_dir

METHODS = ("DevNet", "FLOS", "SAOE", "MLEP", "DRA", "AHL", "DPDL")
BASELINES = METHODS[:-1]
MVTEC_SUBSETS = tuple(MVTEC_CLASSES)
# our dataset name -> the paper's row name (Tables 1-4), from the dataset registry
PAPER_NAMES = {"mvtec": "MVTec AD", **{name: spec.paper_name for name, spec in REGISTRY.items()
                                       if name not in ("folder", "synthetic")}}
TABLE1_ORDER = ("mvtec", "optical", "sdd", "aitex", "elpv", "mastcam", "hyperkvasir", "brainmri", "headct")
TABLE2_ORDER = ("mvtec_carpet", "mvtec_metal_nut", "aitex", "elpv", "mastcam", "hyperkvasir")
PAPER_RESULTS_DIR = REPO_ROOT / "results" / "paper"


def paper_name(dataset: str) -> str:
    """The paper's name for one of our datasets (``mvtec_metal_nut`` -> ``Metal_nut``)."""
    return PAPER_NAMES.get(dataset, dataset)


def our_name(paper_dataset: str) -> str | None:
    """Our dataset name for a paper row name (``Metal_nut`` -> ``mvtec_metal_nut``; ``MVTec AD`` -> ``mvtec``)."""
    for ours, theirs in PAPER_NAMES.items():
        if theirs.lower() == str(paper_dataset).lower():
            return ours
    if str(paper_dataset).lower() == "mvtecad":
        return "mvtec"
    return None


def norm_class(name: str) -> str:
    """Class names compared loosely: ``Broken end`` == ``broken_end`` == ``broken-end``."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def match_class(paper_classes, ours: str) -> str | None:
    """The paper's class name (from ``paper_classes``) that one of our class names stands for: equal after
    :func:`norm_class`, else one a prefix of the other (``Metal`` ~ ``metal_contamination``)."""
    n = norm_class(ours)
    classes = [c for c in paper_classes if c != "Mean"]
    for c in classes:
        if norm_class(c) == n:
            return c
    for c in sorted(classes, key=lambda c: -len(norm_class(c))):   # the longest prefix wins
        p = norm_class(c)
        if min(len(p), len(n)) >= 4 and (p.startswith(n) or n.startswith(p)):
            return c
    return None


def _read(path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"paper table {path} is missing")
    text_cols = {c: str for c in ("subset", "class", "note", "type", "dataset", "method", "setting")}
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=text_cols)


def _with_key(df: pd.DataFrame, col: str = "dataset") -> pd.DataFrame:
    df = df.copy()
    df["key"] = [our_name(v) for v in df[col]]
    df["reported"] = df["method"] != "DPDL" if "method" in df else False
    return df


@lru_cache(maxsize=None)
def _table1() -> pd.DataFrame:
    return _with_key(_read(paper_tables_dir() / "table1_general.csv"))


@lru_cache(maxsize=None)
def _table2() -> pd.DataFrame:
    return _with_key(_read(paper_tables_dir() / "table2_hard.csv"))


def table1() -> pd.DataFrame:
    """Table 1 (general setting): dataset, n_anomalies, method, auc_mean, auc_std, key (ours), reported."""
    return _table1().copy()


def table2() -> pd.DataFrame:
    """Table 2 (hard setting, mean over known classes); same columns as :func:`table1`."""
    return _table2().copy()


def table3() -> pd.DataFrame:
    """Table 3 (heads ablation, M = 10): setting, Mn, Ma, Mr, dataset, auc_mean, auc_std, heads, key."""
    df = _read(paper_tables_dir() / "table3_heads_ablation.csv")
    for c in ("Mn", "Ma", "Mr"):
        df[c] = df[c].astype(str).str.lower().eq("true")
    df["heads"] = [",".join(h for h, on in zip("nar", row) if on) for row in df[["Mn", "Ma", "Mr"]].values]
    df["key"] = [our_name(v) for v in df["dataset"]]
    return df


def table4() -> pd.DataFrame:
    """Table 4 (dataset statistics): dataset, n_anomaly_classes, type, train_normal, test_normal, test_anomaly, key."""
    df = _read(paper_tables_dir() / "table4_datasets.csv")
    df["key"] = [our_name(v) for v in df["dataset"]]
    return df


def table5() -> pd.DataFrame:
    """Table 5 (general, MVTec per subset and the other datasets): dataset, subset, n_anomalies, method,
    auc_mean, auc_std, note, key (``mvtec_<subset>``, ``mvtec`` for the MVTec mean, else the dataset)."""
    df = _read(PAPER_RESULTS_DIR / "table5_mvtec_general.csv")
    df["subset"] = df["subset"].fillna("")
    df["note"] = df["note"].fillna("")
    df["key"] = [our_name(s) if s and s != "mean" else our_name(d) for d, s in zip(df["dataset"], df["subset"])]
    df["reported"] = df["method"] != "DPDL"
    return df


def table6() -> pd.DataFrame:
    """Table 6 (hard setting per known class): dataset, class, n_anomalies, method, auc_mean, auc_std, note, key."""
    df = _read(PAPER_RESULTS_DIR / "table6_hard_per_class.csv")
    df["note"] = df["note"].fillna("")
    df["key"] = [our_name(v) for v in df["dataset"]]
    df["reported"] = df["method"] != "DPDL"
    return df


def table6_classes(dataset: str) -> list[str]:
    """The known classes the paper's Table 6 reports for one of our datasets (``[]`` if none)."""
    df = table6()
    return [c for c in df.loc[df["key"] == dataset, "class"].unique() if c != "Mean"]


def paper_value(table: str, dataset: str, anomalies: int = 10, method: str = "DPDL", *, setting: str = "general",
                known_class: str | None = None, heads: str | None = None) -> tuple[float, float] | None:
    """(mean, std) the paper prints for one cell, or ``None`` when it prints none."""
    if table == "table1":
        df = table5() if dataset.startswith("mvtec_") else table1()
    elif table == "table2":
        df = table2()
    elif table == "table5":
        df = table5()
    elif table == "table6":
        df = table6()
        df = df[df["key"] == dataset]
        cls = "Mean" if known_class is None else match_class(df["class"].unique(), known_class)
        df = df[df["class"] == cls]
    elif table == "table3":
        df = table3()
        df = df[(df["key"] == dataset) & (df["setting"] == setting) & (df["heads"] == heads)]
        return (float(df.iloc[0].auc_mean), float(df.iloc[0].auc_std)) if len(df) else None
    else:
        raise ValueError(f"unknown paper table {table!r}")
    sel = df[(df["key"] == dataset) & (df["n_anomalies"] == int(anomalies)) & (df["method"] == method)]
    return (float(sel.iloc[0].auc_mean), float(sel.iloc[0].auc_std)) if len(sel) else None
