"""Figures of the study (matplotlib): our AUC beside the paper's, the ablations (Fig. 2), the sensitivity (Fig. 3).

Every function takes a DataFrame from :mod:`dpdl.study.tables`, draws into a new figure and returns it; with
``save`` the figure is also written (PNG). The paper's value is drawn as a black marker where it exists.
"""
from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

PALETTE = {"ours": "#1f77b4", "paper": "black", "no_dpl": "#d62728", "no_dfl": "#ff7f0e", "full": "#1f77b4"}


def _title(fig, title: str, caption: str = ""):
    """Figure title plus the profile caption (wrapped; figures carry the short caption)."""
    cap = textwrap.fill(caption, 110) if caption else ""
    fig.suptitle(title + (f"\n{cap}" if cap else ""), fontsize=10)


def _save(fig, save):
    if save:
        save = Path(save)
        save.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save, dpi=120, bbox_inches="tight")
    return fig


def _xerr(d: pd.DataFrame):
    """Asymmetric error bars from the (clipped) interval ``ci_lo``/``ci_hi`` (0 where there is none)."""
    return np.vstack([(d["ours_mean"] - d["ci_lo"]).fillna(0.0).clip(lower=0),
                      (d["ci_hi"] - d["ours_mean"]).fillna(0.0).clip(lower=0)])


def _legend_outside(fig, axes, ncol: int = 4):
    """One legend for the figure, below the panels (never over data): the unique labels of ``axes``."""
    seen = {}
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncol=min(ncol, len(seen)),
                   fontsize=8, frameon=False)


def _empty(ax, text="no runs of this kind here yet"):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def ours_vs_paper(df: pd.DataFrame, title: str, *, label_col: str = "dataset", caption: str = "", save=None):
    """Dot-and-error-bar plot per row: ours (mean ± std, blue) and the paper's DPDL value (black ×), one panel
    per M. Rows not run here are listed on the axis without a blue dot."""
    ms = sorted(df["M"].unique(), reverse=True) if len(df) else [10]
    fig, axes = plt.subplots(1, len(ms), figsize=(5.2 * len(ms), 0.35 * max(4, len(df) / len(ms)) + 2.0),
                             squeeze=False, sharey=True, layout="constrained")
    for ax, m in zip(axes[0], ms):
        d = df[df["M"] == m].reset_index(drop=True)
        y = np.arange(len(d))[::-1]
        run = d["n"] > 0
        ax.errorbar(d.loc[run, "ours_mean"], y[run.values], xerr=_xerr(d[run]), fmt="o",
                    color=PALETTE["ours"], label="ours (mean, 95 % interval over seeds)", capsize=3)
        has_p = d["paper_mean"].notna()
        ax.scatter(d.loc[has_p, "paper_mean"], y[has_p.values], marker="x", s=50, color=PALETTE["paper"],
                   label="paper (DPDL)", zorder=3)
        ax.set_yticks(y)
        ax.set_yticklabels([f"{lab}" + ("" if r else "  (not run here)") for lab, r in zip(d[label_col], run)])
        ax.set_xlabel("image AUC-ROC")
        ax.set_title(f"M = {m} seen anomalies")
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlim(min(0.45, np.nanmin(np.r_[d["ours_mean"].values, d["paper_mean"].values, [1.0]]) - 0.02), 1.01)
    _legend_outside(fig, axes)
    _title(fig, title, caption)
    return _save(fig, save)


def heads_ablation(df: pd.DataFrame, *, caption: str = "", save=None):
    """Table 3 as a figure: AUC per heads subset, one panel per setting, one line per dataset run here."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharey=False, layout="constrained")
    order = ["{r}", "{n,r}", "{a,r}", "{n,a,r}"]
    for ax, setting in zip(axes, ("general", "hard")):
        d = df[(df["setting"] == setting)]
        any_line = False
        for i, (key, g) in enumerate(d.groupby("key", sort=False)):
            g = g.set_index("heads").reindex(order)
            x = np.arange(len(order))
            color = f"C{i}"
            if (g["n"] > 0).any():
                ax.errorbar(x, g["ours_mean"], yerr=_xerr(g), marker="o", color=color, capsize=3,
                            label=f"{g['dataset'].dropna().iloc[0]} (ours)")
                any_line = True
            if g["paper_mean"].notna().any():
                ax.plot(x, g["paper_mean"], linestyle=":", marker="x", color=color,
                        label=f"{g['dataset'].dropna().iloc[0]} (paper)")
                any_line = True
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels(order)
        ax.set_xlabel("heads switched on")
        ax.set_ylabel("image AUC-ROC")
        ax.set_title(f"{setting} setting, M = 10")
        ax.grid(alpha=0.3)
        if not any_line:
            _empty(ax)
    _legend_outside(fig, axes)
    _title(fig, "Table 3 — heads ablation", caption)
    return _save(fig, save)


def ablation(df: pd.DataFrame, *, caption: str = "", save=None):
    """Fig. 2: full DPDL, w/o DPL, w/o DFL per dataset (points with 95 % intervals, not bars), general and hard."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    labels = [("full", "DPDL"), ("no_dpl", "w/o DPL"), ("no_dfl", "w/o DFL")]
    for ax, setting in zip(axes, ("general", "hard")):
        d = df[df["setting"] == setting]
        ax.set_title(f"{setting} setting, M = 10")
        if d.empty or (d["n"] == 0).all():
            _empty(ax)
            continue
        keys = list(dict.fromkeys(d["key"]))
        for j, (var, lab) in enumerate(labels):
            g = d[d["variant"] == var].set_index("key").reindex(keys)
            x = np.arange(len(keys)) + (j - 1) * 0.2
            ax.errorbar(x, g["ours_mean"], yerr=_xerr(g), fmt="o", capsize=3, label=lab, color=PALETTE[var])
        ax.set_xticks(np.arange(len(keys)))
        ax.set_xticklabels([d.loc[d["key"] == k, "dataset"].iloc[0] for k in keys])
        ax.set_xlim(-0.6, len(keys) - 0.4)
        ax.set_ylabel("image AUC-ROC (mean, 95 % interval)")
        ax.grid(axis="y", alpha=0.3)
    _legend_outside(fig, axes)
    _title(fig, "Fig. 2 — ablation of DPL and DFL", caption)
    return _save(fig, save)


def paper_value_lines(d: pd.DataFrame, param: str, paper_defaults, fallback) -> dict:
    """The paper's values of ``param`` over the datasets of ``d`` (columns key, dataset) -> the datasets at each
    value, named only where the value differs between datasets (λ, Sec. 5.7); ``fallback`` when ``d`` is empty."""
    per = {}
    for key, name in dict(zip(d["key"], d["dataset"])).items():
        per.setdefault(float(paper_defaults(key)[param]), []).append(name)
    if not per:
        return {float(fallback): []}
    return per if len(per) > 1 else {v: [] for v in per}


def sensitivity(df: pd.DataFrame, *, caption: str = "", save=None):
    """Fig. 3: AUC against C, ε, κ, λ (general, M = 10), one line per dataset; dashed line at the paper's value of
    the datasets shown (:func:`dpdl.methods.dpdl.model.paper_defaults`: λ per dataset, Sec. 5.7, one line per value)."""
    from ..methods.dpdl.model import PAPER_DEFAULTS, paper_defaults

    params = [("prototypes", "C (prototypes)", False), ("eps", "ε (bridge noise)", True),
              ("kappa", "κ (DFL tightness)", True), ("lam", "λ (loss weight)", True)]
    fig, axes = plt.subplots(2, 2, figsize=(9, 7), layout="constrained")
    for ax, (param, label, logx) in zip(axes.ravel(), params):
        d = df[df["param"] == param]
        if d.empty:
            _empty(ax)
        for i, (key, g) in enumerate(d.groupby("key")):
            g = g.sort_values("value")
            ax.errorbar(g["value"], g["ours_mean"], yerr=_xerr(g), marker="o", capsize=3, color=f"C{i}",
                        label=g["dataset"].iloc[0])
        for value, names in paper_value_lines(d, param, paper_defaults, PAPER_DEFAULTS[param]).items():
            ax.axvline(value, color="black", linestyle="--", linewidth=1,
                       label=f"the paper's {label.split()[0]}" + (f" ({', '.join(names)})" if names else ""))
        if logx:
            ax.set_xscale("log")
        if param == "prototypes":
            ax.set_xscale("log", base=2)
            ax.set_xticks([8, 16, 32, 64])
            ax.set_xticklabels(["8", "16", "32", "64"])
        ax.set_xlabel(label)
        ax.set_ylabel("image AUC-ROC")
        ax.grid(alpha=0.3)
    _legend_outside(fig, axes)
    _title(fig, "Fig. 3 — parameter sensitivity (general setting, M = 10)", caption)
    return _save(fig, save)


def score_histogram(run_dir, *, save=None):
    """Histogram of the test scores of one run, normal vs anomaly (needs the run's ``scores.json``)."""
    p = Path(run_dir) / "scores.json"
    if not p.exists():
        return None
    data = json.loads(p.read_text(encoding="utf-8"))
    scores, labels = np.asarray(data["scores"], float), np.asarray(data["labels"], int)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    finite = np.isfinite(scores)
    bins = np.histogram_bin_edges(scores[finite], bins=30) if finite.any() else 10
    ax.hist(scores[finite & (labels == 0)], bins=bins, alpha=0.6, label=f"normal (n={int((labels == 0).sum())})")
    ax.hist(scores[finite & (labels == 1)], bins=bins, alpha=0.6, label=f"anomaly (n={int((labels == 1).sum())})")
    ax.set_xlabel("anomaly score S = Sa + Sr − Sn")
    ax.set_ylabel("test images")
    ax.legend()
    fig.tight_layout()
    return _save(fig, save)


VERDICT_COLORS = {"reproduced": "#1a7f37", "inconclusive": "#6f42c1", "not reproduced": "#b35900",
                  "reversed": "#cf222e"}


def forest(check: pd.DataFrame, *, save=None):
    """Every claim tested: its signed difference ``d`` (ours − paper, or claimed better − claimed worse) with the
    95 % interval [d_lo, d_hi], coloured by verdict; 0 is the line of no difference."""
    c = check[check["d"].notna()].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, 0.24 * max(len(c), 4) + 1.6), layout="constrained")
    y = np.arange(len(c))[::-1]
    for verdict, color in VERDICT_COLORS.items():
        sel = (c["verdict"] == verdict).to_numpy()
        if sel.any():
            lo = (c.loc[sel, "d"] - c.loc[sel, "d_lo"]).fillna(0.0).clip(lower=0)
            hi = (c.loc[sel, "d_hi"] - c.loc[sel, "d"]).fillna(0.0).clip(lower=0)
            ax.errorbar(c.loc[sel, "d"], y[sel], xerr=np.vstack([lo, hi]), fmt="o", color=color, capsize=2,
                        markersize=4, label=verdict)
    ax.axvline(0, color="black", linewidth=1)
    ax.set_yticks(y)
    ax.set_yticklabels([textwrap.shorten(t, 70, placeholder="…") for t in c["claim"]], fontsize=7)
    ax.set_xlabel("difference in AUC: ours − paper, or claimed better − claimed worse (95 % interval)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_ylim(-0.8, len(c) - 0.2)
    _legend_outside(fig, [ax])
    return _save(fig, save)


def per_cell(ps: pd.DataFrame, paper_values: dict, title: str, *, save=None):
    """One panel per cell (dataset, M) of Tables 1–2: every method run here, its per-seed AUCs (dots) and mean
    with 95 % interval (bar), and the paper's DPDL value (black ×). ``ps``: :func:`analysis.per_seed` rows;
    ``paper_values``: (dataset key, M) -> the paper's DPDL mean."""
    from .analysis import METHOD_LABELS, interval

    cells = sorted(ps.groupby(["dataset", "anomalies"]).groups, key=lambda k: (k[0], -k[1]))
    if not cells:
        return None
    cols = min(4, len(cells))
    rows = -(-len(cells) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.8 * rows + 0.8), squeeze=False, layout="constrained")
    methods = [m for m in METHOD_LABELS if m in set(ps["method"])]
    for ax, (key, m) in zip(axes.ravel(), cells):
        g = ps[(ps["dataset"] == key) & (ps["anomalies"] == m)]
        for i, meth in enumerate(methods):
            v = g.loc[g["method"] == meth, "auc"].to_numpy(float)
            if not len(v):
                continue
            st = interval(v)
            ax.scatter(np.full(len(v), i) + np.linspace(-0.12, 0.12, len(v)), v, s=10, color=f"C{i}", alpha=0.6)
            lo, hi = [max(0.0, st["lo"]), min(1.0, st["hi"])] if st["n"] > 1 else [st["mean"]] * 2
            ax.errorbar([i + 0.3], [st["mean"]], yerr=[[st["mean"] - lo], [hi - st["mean"]]], fmt="s", color=f"C{i}",
                        capsize=3, markersize=4, label=f"{METHOD_LABELS[meth]} (ours: seeds, mean, 95 % interval)")
        pv = paper_values.get((key, m))
        if pv is not None and not math.isnan(pv):
            ax.scatter([0.45], [pv], marker="x", color="black", s=40, zorder=3, label="paper's DPDL")
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels([METHOD_LABELS[x] for x in methods], fontsize=7)
        ax.set_title(f"{key}, M={m}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.ravel()[len(cells):]:
        ax.set_axis_off()
    _legend_outside(fig, axes, ncol=3)
    fig.suptitle(title, fontsize=10)
    return _save(fig, save)


def training_curves(runs: pd.DataFrame, *, save=None):
    """The loss terms each record holds (``losses``: one value per epoch), mean over the runs given, one panel per
    term, one line per variant; the band spans the runs' min to max."""
    curves = {}
    for _, r in runs.iterrows():
        for term, vals in ((r["record"] or {}).get("losses") or {}).items():
            if isinstance(vals, list) and vals:
                curves.setdefault(term, {}).setdefault(r["variant"], []).append(np.asarray(vals, float))
    if not curves:
        return None
    terms = sorted(curves)
    cols = min(3, len(terms))
    rows = -(-len(terms) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows + 0.8), squeeze=False, layout="constrained")
    for ax, term in zip(axes.ravel(), terms):
        for i, (variant, arrs) in enumerate(sorted(curves[term].items())):
            k = min(len(a) for a in arrs)
            a = np.vstack([x[:k] for x in arrs])
            x = np.arange(1, k + 1)
            ax.plot(x, a.mean(0), color=f"C{i}", label=f"{variant} ({len(arrs)} runs)")
            ax.fill_between(x, a.min(0), a.max(0), color=f"C{i}", alpha=0.15)
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(terms):]:
        ax.set_axis_off()
    _legend_outside(fig, axes, ncol=3)
    return _save(fig, save)


def nan_to_blank(v):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else v


def write_figures(profile: str, results_dir=None, data=None) -> list[Path]:
    """``<results_dir>/figures/<profile>/*.png``: the figures of every table and of Figs. 2 and 3."""
    from . import tables

    data = data or tables.build_all(profile, results_dir)
    cap = tables.profile_caption(profile, short=True)
    out = tables.default_results_dir(results_dir) / "figures" / profile
    paths = []
    jobs = {
        "table1_general.png": lambda p: ours_vs_paper(data["table1"], "Table 1 — general setting", caption=cap, save=p),
        "table2_hard.png": lambda p: ours_vs_paper(data["table2"], "Table 2 — hard setting", caption=cap, save=p),
        "table3_heads.png": lambda p: heads_ablation(data["table3"], caption=cap, save=p),
        "table5_mvtec.png": lambda p: ours_vs_paper(data["table5"], "Table 5 — MVTec AD subsets", caption=cap, save=p),
        "table6_hard_per_class.png": lambda p: ours_vs_paper(
            data["table6"].assign(label=data["table6"]["dataset"] + " / " + data["table6"]["known_class"]),
            "Table 6 — hard setting per known class", label_col="label", caption=cap, save=p),
        "fig2_ablation.png": lambda p: ablation(data["fig2"], caption=cap, save=p),
        "fig3_sensitivity.png": lambda p: sensitivity(data["fig3"], caption=cap, save=p),
    }
    if "claims" in data and data["claims"]["d"].notna().any():
        jobs["claims_forest.png"] = lambda p: forest(data["claims"][data["claims"]["verdict"] != "not testable here"],
                                                     save=p)
    for name, draw in jobs.items():
        fig = draw(out / name)
        plt.close(fig)
        paths.append(out / name)
    return paths
