"""The book's figures: no legend over data (every legend's box lies outside every axes' box, measured on the drawn
figure), AUC error bars inside [0, 1], Fig. 2 drawn as points with intervals on an uncut axis, the forest plot's
bars at the checklist's numbers."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from dpdl.study import figures  # noqa: E402

NAN = float("nan")


def _cells(n=3):
    rows = []
    for m in (10, 1):
        for i in range(n):
            mean = 0.97 + 0.01 * i
            rows.append(dict(dataset=f"D{i}", key=f"d{i}", M=m, n=5, ours_mean=mean, ci_lo=mean - 0.05,
                             ci_hi=min(1.0, mean + 0.05), paper_mean=0.9, paper_std=0.01))
    return pd.DataFrame(rows)


def _fig2():
    rows = []
    for setting in ("general", "hard"):
        for var, lab in (("full", "DPDL"), ("no_dpl", "w/o DPL"), ("no_dfl", "w/o DFL")):
            rows.append(dict(dataset="ELPV", key="elpv", setting=setting, variant=var, label=lab, ours_mean=0.8,
                             ours_std=0.02, n=3, ci_lo=0.75, ci_hi=0.85, diff_full=NAN, diff_full_lo=NAN,
                             diff_full_hi=NAN))
    return pd.DataFrame(rows)


def _fig3():
    rows = []
    for param, values in (("prototypes", [8, 16, 32, 64]), ("eps", [1e-4, 1e-3, 1e-2]), ("kappa", [1, 10, 50]),
                          ("lam", [0.01, 0.1, 1, 10])):
        for v in values:
            for key in ("elpv", "sdd"):
                rows.append(dict(param=param, symbol=param, value=float(v), is_default=False, dataset=key.upper(),
                                 key=key, ours_mean=0.9, ours_std=0.01, n=3, ci_lo=0.88, ci_hi=0.92))
    return pd.DataFrame(rows)


def _t3():
    rows = []
    for setting in ("general", "hard"):
        for h in ("{r}", "{n,r}", "{a,r}", "{n,a,r}"):
            rows.append(dict(setting=setting, key="elpv", dataset="ELPV", heads=h, n=3, ours_mean=0.85, ci_lo=0.8,
                             ci_hi=0.9, paper_mean=0.93))
    return pd.DataFrame(rows)


def _check():
    return pd.DataFrame([dict(claim=f"claim {i}", verdict=v, d=d, d_lo=d - 0.02, d_hi=d + 0.02)
                         for i, (v, d) in enumerate([("reproduced", 0.03), ("inconclusive", 0.0),
                                                     ("reversed", -0.05), ("not reproduced", -0.1)])])


def _ps():
    rows = []
    for meth, base in (("dpdl", 0.8), ("dra", 0.85), ("knn", 0.9)):
        for s in range(5):
            rows.append(dict(method=meth, variant=meth, dataset="elpv", anomalies=10, seed=s, auc=base + 0.01 * s))
    return pd.DataFrame(rows)


def _runs():
    rec = {"losses": {"dfl": [3.0, 2.0, 1.0], "dpl_n": [0.5, 0.4, 0.3]}}
    return pd.DataFrame([dict(variant=v, record=rec) for v in ("full", "no_dpl", "full")])


DRAW = {
    "ours_vs_paper": lambda: figures.ours_vs_paper(_cells(), "t"),
    "heads_ablation": lambda: figures.heads_ablation(_t3()),
    "ablation": lambda: figures.ablation(_fig2()),
    "sensitivity": lambda: figures.sensitivity(_fig3()),
    "forest": lambda: figures.forest(_check()),
    "per_cell": lambda: figures.per_cell(_ps(), {("elpv", 10): 0.93}, "t"),
    "training_curves": lambda: figures.training_curves(_runs()),
}


@pytest.mark.parametrize("name", sorted(DRAW))
def test_no_legend_over_data(name):
    fig = DRAW[name]()
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends, f"{name}: no legend"
    for leg in legends:
        lb = leg.get_window_extent(r)
        for ax in fig.axes:
            if ax.axison:
                assert not lb.overlaps(ax.get_window_extent(r)), f"{name}: a legend overlaps a panel"
    plt.close(fig)


def test_auc_error_bars_stay_in_0_1():
    fig = figures.ours_vs_paper(_cells(), "t")   # means up to 0.99 with intervals clipped at 1
    for ax in fig.axes:
        for coll in ax.collections:
            for seg in getattr(coll, "get_segments", lambda: [])():
                assert np.nanmax(np.asarray(seg)[:, 0]) <= 1.0 + 1e-9
    plt.close(fig)


def test_fig2_is_points_on_an_uncut_axis():
    fig = figures.ablation(_fig2())
    for ax in fig.axes:
        assert not ax.patches, "Fig. 2 drawn with bars"
        lo, hi = ax.get_ylim()
        assert lo <= 0.75 and hi >= 0.85           # the axis holds every interval, autoscaled (no cut to a band)
    plt.close(fig)


def test_forest_bars_are_the_checklist_numbers():
    check = _check()
    fig = figures.forest(check)
    ax = fig.axes[0]
    xs = sorted(float(x) for line in ax.lines for x in np.atleast_1d(line.get_xdata()) if line.get_marker() == "o")
    assert np.allclose(sorted(check["d"]), xs)
    plt.close(fig)


def _vlines(ax):
    """The x of the vertical reference lines (axvline) of a panel."""
    return sorted(float(ln.get_xdata()[0]) for ln in ax.get_lines()
                  if list(ln.get_ydata()) == [0, 1] and ln.get_xdata()[0] == ln.get_xdata()[1])


def test_fig3_marks_each_datasets_paper_lambda():
    from dpdl.methods.dpdl.model import paper_lam

    df = _fig3()
    both = pd.concat([df, df.assign(key="brainmri", dataset="BrainMRI")])
    fig = figures.sensitivity(both)
    lam_ax = fig.axes[3]
    assert _vlines(lam_ax) == sorted({paper_lam("elpv"), paper_lam("brainmri")})   # 0.01 and 1 (Sec. 5.7)
    labels = [ln.get_label() for ln in lam_ax.get_lines() if "BrainMRI" in ln.get_label()]
    assert labels and "ELPV" not in labels[0]
    assert _vlines(fig.axes[0]) == [32.0]                   # C: one value for every dataset
    plt.close(fig)
    fig = figures.sensitivity(df[df["key"] == "elpv"])       # ELPV alone: one line, at ELPV's λ
    assert _vlines(fig.axes[3]) == [paper_lam("elpv")]
    plt.close(fig)
    fig = figures.sensitivity(df[df["key"] == "elpv"].assign(key="headct", dataset="HeadCT"))
    assert _vlines(fig.axes[3]) == [paper_lam("headct")] == [1.0]
    plt.close(fig)
