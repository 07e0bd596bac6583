"""The claims checklist: every claim of the paper, our number beside the paper's, and a verdict from a stated rule.

:func:`checklist` reads the tables of :mod:`dpdl.study.tables` (which read :mod:`dpdl.study.analysis`), so the
first page, the table pages and ``results/tables`` give the same numbers. One row per claim::

    claim, table (the page), profile, ours, paper, delta, baselines (same profile), verdict, why,
    value, value_lo, value_hi, n (the numbers behind ``ours``/``delta``)

Rules (:data:`RULES`, printed on the pages):

* an **absolute** claim (a cell of Tables 1, 2, 5, 6: "DPDL reaches AUC p") is *reproduced* when our mean over
  seeds is at most :data:`TOLERANCE` below p (or above it), else *not reproduced*;
* a **relative** claim ("A beats B": the full model beats an ablation, DPDL beats DRA and DevNet, the paper's
  C beats too few or too many prototypes) is tested on the paired differences A - B over the seeds both ran:
  *reproduced* when the 95 % t-interval of their mean lies above 0, *direction reversed* when it lies below 0,
  *not reproduced* when it holds 0 (no difference shown either way);
* *not testable here* when a cell has no run in the profile (the reason and the command that runs it are given),
  or a relative claim fewer than 2 paired seeds.
"""
from __future__ import annotations

import math

import pandas as pd

from . import analysis, tables

TOLERANCE = 0.02   # AUC
VERDICTS = ("reproduced", "not reproduced", "direction reversed", "not testable here")
RULES = (f"**Absolute claims** (a cell of Tables 1, 2, 5, 6): *reproduced* when our mean over seeds is at most "
         f"{TOLERANCE} AUC below the paper's DPDL (or above it), otherwise *not reproduced*. **Relative claims** "
         "(the full model beats an ablation; DPDL beats DRA and DevNet; the paper's hyper-parameter beats the "
         "others): the paired difference over the seeds both ran, with its 95 % t-interval, is *reproduced* when "
         "the interval lies above 0, *direction reversed* when it lies below 0, *not reproduced* when it holds 0. "
         "*Not testable here*: no run of the cell in this profile, or fewer than 2 paired seeds. Intervals are "
         "95 % t-intervals over seeds: mean ± t(0.975, n−1)·sd/√n.")
PAGES = {"Table 1": "report_table1_general", "Table 2": "report_table2_hard", "Table 3": "report_table3_heads",
         "Table 5": "report_table5_mvtec", "Table 6": "report_table6_hard_per_class", "Fig. 2": "report_fig2_ablation",
         "Fig. 3": "report_fig3_sensitivity"}
GROUPS = {"Table 1": "table1", "Table 2": "table2", "Table 3": "table3", "Table 5": "table5", "Table 6": "table6",
          "Fig. 2": "fig2", "Fig. 3": "fig3"}


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_interval(mean, lo=math.nan, hi=math.nan, signed=False) -> str:
    """``0.848 [0.825, 0.871]`` (no interval when it is NaN); ``signed``: ``+0.005 [+0.001, +0.009]``."""
    if _nan(mean):
        return ""
    f = "{:+.3f}" if signed else "{:.3f}"
    return f.format(mean) + ("" if _nan(lo) else f" [{f.format(lo)}, {f.format(hi)}]")


def absolute_verdict(ours: float, paper: float | None, n: int) -> str:
    """The rule for an absolute claim (see the module)."""
    if n == 0 or _nan(ours):
        return "not testable here"
    if paper is None or _nan(paper):
        return "not testable here"
    return "reproduced" if ours >= paper - TOLERANCE else "not reproduced"


def relative_verdict(lo: float, hi: float, n: int) -> str:
    """The rule for a relative claim on a paired difference (expected > 0) with 95 % interval [lo, hi]."""
    if n < 2 or _nan(lo):
        return "not testable here"
    if lo > 0:
        return "reproduced"
    if hi < 0:
        return "direction reversed"
    return "not reproduced"


def combine(verdicts) -> str:
    """One verdict for a claim made of several comparisons: reversed if any is, reproduced if all are."""
    v = [x for x in verdicts if x != "not testable here"]
    if not v:
        return "not testable here"
    if "direction reversed" in v:
        return "direction reversed"
    return "reproduced" if all(x == "reproduced" for x in v) and len(v) == len(list(verdicts)) else "not reproduced"


def run_command(profile: str, group: str, status: str = "") -> str:
    """The command that runs a group of the study (with a data root when the dataset needs one)."""
    cmd = f"dpdl study run --profile {profile} --only {group}"
    return cmd + (" --data-root PATH" if "data root" in status else "")


def _untestable_why(row, profile: str, table: str) -> str:
    status = str(row.get("status", ""))
    why = status[len("not run here"):].strip(" ()") if status.startswith("not run here") else ""
    return (f"{why or 'no run in this profile'}; `{run_command(profile, GROUPS[table], status)}`")


def _baselines(row) -> str:
    parts = [f"{analysis.METHOD_LABELS[m]} {row[f'{analysis.METHOD_LABELS[m]} (ours)']:.3f}"
             for m in tables.BASELINES_RUN if not _nan(row.get(f"{analysis.METHOD_LABELS[m]} (ours)"))]
    return ", ".join(parts) or "not run here"


def _absolute_rows(df: pd.DataFrame, table: str, profile: str, label) -> list[dict]:
    rows = []
    for _, r in df.iterrows():
        if _nan(r["paper_mean"]):
            continue
        v = absolute_verdict(r["ours_mean"], r["paper_mean"], int(r["n"]))
        why = ""
        if v == "not testable here":
            why = _untestable_why(r, profile, table)
        elif not _nan(r.get("ci_lo")) and r["ci_lo"] <= r["paper_mean"] <= r["ci_hi"] and v == "not reproduced":
            why = "the paper's value lies inside our 95 % interval"
        if r.get("outliers"):
            why = (why + "; " if why else "") + f"outlier: {r['outliers']}"
        rows.append(dict(claim=label(r), table=table, profile=profile,
                         ours=fmt_interval(r["ours_mean"], r.get("ci_lo"), r.get("ci_hi")) + (
                             f" (n={int(r['n'])})" if r["n"] else ""),
                         paper=f"{r['paper_mean']:.3f}", delta="" if _nan(r["diff"]) else f"{r['diff']:+.3f}",
                         baselines=_baselines(r) if "DRA (ours)" in r else "", verdict=v, why=why,
                         value=r["ours_mean"], value_lo=r.get("ci_lo"), value_hi=r.get("ci_hi"), n=int(r["n"])))
    return rows


def _summary_row(df: pd.DataFrame, table: str, profile: str, claim: str) -> dict:
    """One row for a table of many cells (Tables 5 and 6): the count of each verdict over its cells."""
    cells = _absolute_rows(df, table, profile, lambda r: "")
    counts = pd.Series([c["verdict"] for c in cells]).value_counts()
    tested = [c for c in cells if c["verdict"] != "not testable here"]
    verdict = ("not testable here" if not tested else
               "reproduced" if all(c["verdict"] == "reproduced" for c in tested) else "not reproduced")
    why = "; ".join(f"{n} {v}" for v, n in counts.items()) + f" of {len(cells)} cells"
    if not tested:
        why = f"no cell run in this profile; `{run_command(profile, GROUPS[table], 'data root')}`"
    return dict(claim=claim, table=table, profile=profile, ours="", paper="", delta="", baselines="",
                verdict=verdict, why=why, value=math.nan, value_lo=math.nan, value_hi=math.nan,
                n=len(tested))


def _relative_row(claim, table, profile, d, lo, hi, n, paper="—", why="") -> dict:
    v = relative_verdict(lo, hi, n)
    if v == "not testable here" and not why:
        why = (f"fewer than 2 paired seeds; `{run_command(profile, GROUPS.get(table, 'table1'))}`" if n
               else f"no run in this profile; `{run_command(profile, GROUPS.get(table, 'table1'))}`")
    return dict(claim=claim, table=table, profile=profile, ours=fmt_interval(d, lo, hi, signed=True) + (
        f" (n={n})" if n else ""), paper=paper, delta="", baselines="", verdict=v, why=why, value=d, value_lo=lo,
        value_hi=hi, n=n)


def beats_baselines(df: pd.DataFrame, table: str, profile: str) -> list[dict]:
    """"DPDL beats DRA and DevNet" in one cell of Table 1/2: both paired differences DPDL - baseline."""
    rows = []
    for _, r in df.iterrows():
        parts = [(b, r[f"vs {b}"], r[f"vs {b} lo"], r[f"vs {b} hi"], int(r[f"vs {b} n"]))
                 for b in (analysis.METHOD_LABELS[m] for m in tables.CLAIM_BASELINES)]
        if all(p[4] == 0 for p in parts):
            continue
        verdicts = [relative_verdict(lo, hi, n) for _, _, lo, hi, n in parts]
        ours = "; ".join(f"− {b}: {fmt_interval(d, lo, hi, signed=True)} (n={n})" for b, d, lo, hi, n in parts)
        rows.append(dict(claim=f"DPDL beats DRA and DevNet: {r['dataset']}, M={r['M']}", table=table, profile=profile,
                         ours=ours, paper="yes (Tables 1–2)", delta="", baselines=_baselines(r),
                         verdict=combine(verdicts), why="", value=math.nan, value_lo=math.nan, value_hi=math.nan,
                         n=min(p[4] for p in parts)))
    return rows


def ablation_rows(f2: pd.DataFrame, profile: str) -> list[dict]:
    """Fig. 2: removing DPL (DFL) lowers the AUC: full - variant, paired."""
    rows = []
    for _, r in f2[f2["variant"] != "full"].iterrows():
        rows.append(_relative_row(f"Fig. 2: {r['label']} is below the full model ({r['dataset']}, {r['setting']}, "
                                  f"M=10)", "Fig. 2", profile, -r["diff_full"], -r["diff_full_hi"],
                                  -r["diff_full_lo"], int(r["n"]), "a clear drop (no number)"))
    if not rows:
        rows.append(_relative_row("Fig. 2: removing DPL or DFL lowers the AUC", "Fig. 2", profile, math.nan,
                                  math.nan, math.nan, 0))
    return rows


def heads_rows(t3: pd.DataFrame, profile: str) -> list[dict]:
    """Table 3: the three heads together beat every subset (full - subset, paired), per dataset and setting."""
    rows = []
    for (setting, ds), g in t3.groupby(["setting", "dataset"], sort=False):
        subsets = g[(g["heads"] != "{n,a,r}") & (g["n"] > 0)]
        full = g[g["heads"] == "{n,a,r}"].iloc[0]
        if subsets.empty:
            continue
        parts = [(r["heads"], -r["diff_full"], -r["diff_full_hi"], -r["diff_full_lo"], int(r["n"]))
                 for _, r in subsets.iterrows()]
        verdicts = [relative_verdict(lo, hi, n) for _, _, lo, hi, n in parts]
        paper_gap = [full["paper_mean"] - r["paper_mean"] for _, r in subsets.iterrows()]
        rows.append(dict(claim=f"Table 3: heads {{n,a,r}} beat every subset ({ds}, {setting}, M=10)", table="Table 3",
                         profile=profile, ours="; ".join(f"− {h}: {fmt_interval(d, lo, hi, True)}"
                                                         for h, d, lo, hi, _ in parts) + f" (n={parts[0][4]})",
                         paper="; ".join(f"{p:+.3f}" for p in paper_gap if not _nan(p)) or "—", delta="",
                         baselines="", verdict=combine(verdicts), why="", value=math.nan, value_lo=math.nan,
                         value_hi=math.nan, n=parts[0][4]))
    if not rows:
        rows.append(_relative_row("Table 3: heads {n,a,r} beat every subset", "Table 3", profile, math.nan,
                                  math.nan, math.nan, 0))
    return rows


# Fig. 3's claims: (parameter, what the paper says, the comparisons "a beats b" as functions of the values run)
FIG3_CLAIMS = {
    "prototypes": ("too few or too many prototypes C hurt", lambda d, v: [(d, min(v)), (d, max(v))]),
    "eps": ("a larger ε slowly degrades the AUC", lambda d, v: [(min(v), max(v))]),
    "kappa": ("κ above 10 can hurt", lambda d, v: [(d, max(v))]),
    "lam": ("λ = 1 is best on small datasets (0.01 on larger ones)", lambda d, v: [(d, x) for x in v if x != d]),
}


def sensitivity_rows(f3: pd.DataFrame, profile: str) -> list[dict]:
    """Fig. 3: per parameter and dataset, the paper's statement tested as paired comparisons of the values run."""
    from ..model import PAPER_DEFAULTS

    rows = []
    for param, (text, pairs) in FIG3_CLAIMS.items():
        sub = f3[f3["param"] == param]
        for key, g in sub.groupby("key"):
            default = float(PAPER_DEFAULTS[param])
            by_value = {float(r["value"]): r for _, r in g.iterrows()}
            comps = [(a, b) for a, b in pairs(default, sorted(by_value)) if a != b and a in by_value
                     and b in by_value]
            parts = []
            for a, b in comps:   # a - b from the differences to the paper's value: (a - d) - (b - d)
                ra, rb = by_value[a], by_value[b]
                if ra["is_default"] or rb["is_default"]:
                    other, sign = (rb, 1) if ra["is_default"] else (ra, -1)
                    d, lo, hi = (-other["diff_full"], -other["diff_full_hi"], -other["diff_full_lo"]) if sign == 1 \
                        else (other["diff_full"], other["diff_full_lo"], other["diff_full_hi"])
                    n = int(other["n"])
                else:
                    d, lo, hi, n = _pair_from_runs(profile, key, param, a, b)
                parts.append((a, b, d, lo, hi, n))
            sym = g["symbol"].iloc[0]
            ours = "; ".join(f"{sym}={_num(a)} − {sym}={_num(b)}: {fmt_interval(d, lo, hi, True)}"
                             for a, b, d, lo, hi, _ in parts)
            verdicts = [relative_verdict(lo, hi, n) for *_, lo, hi, n in parts]
            rows.append(dict(claim=f"Fig. 3: {text} ({g['dataset'].iloc[0]}, general, M=10)", table="Fig. 3",
                             profile=profile, ours=ours + (f" (n={parts[0][5]})" if parts else ""),
                             paper="a trend (no number)", delta="", baselines="", verdict=combine(verdicts),
                             why="", value=math.nan, value_lo=math.nan, value_hi=math.nan,
                             n=parts[0][5] if parts else 0))
    if not rows:
        rows.append(_relative_row("Fig. 3: C, ε, κ and λ matter as the paper says", "Fig. 3", profile, math.nan,
                                  math.nan, math.nan, 0))
    return rows


def _num(x: float) -> str:
    """A parameter value as the pages print it: ``1e-04``, ``0.01``, ``32``."""
    return f"{x:.0e}" if 0 < abs(x) < 1e-2 else f"{x:g}"


def _pair_from_runs(profile, key, param, a, b):
    runs = tables._at_paper_defaults(analysis.load_runs(profile), free=(param,))
    runs = runs[(runs["dataset"] == key) & (runs["setting"] == "general") & (runs["anomalies"] == 10)]
    sa = runs[runs[param].astype(float).round(12) == round(a, 12)].set_index("seed")["auc"]
    sb = runs[runs[param].astype(float).round(12) == round(b, 12)].set_index("seed")["auc"]
    p = analysis.paired(sa, sb)
    return p["mean"], p["lo"], p["hi"], p["n"]


def checklist(profile: str, results_dir=None, data: dict | None = None) -> pd.DataFrame:
    """Every claim of the paper with its verdict (columns: see the module). ``data``: the tables of
    :func:`dpdl.study.tables.build_all` when already computed."""
    if data is None:
        reasons = tables._reason_map(profile)
        data = {"table1": tables.table1(profile, results_dir, reasons=reasons),
                "table2": tables.table2(profile, results_dir, reasons=reasons),
                "table3": tables.table3(profile, results_dir, reasons=reasons),
                "table5": tables.table5(profile, results_dir, reasons=reasons),
                "table6": tables.table6(profile, results_dir, reasons=reasons),
                "fig2": tables.fig2(profile, results_dir), "fig3": tables.fig3(profile, results_dir)}
    rows = []
    rows += _absolute_rows(data["table1"], "Table 1", profile,
                           lambda r: f"Table 1: DPDL on {r['dataset']}, general, M={r['M']}")
    rows += _absolute_rows(data["table2"], "Table 2", profile,
                           lambda r: f"Table 2: DPDL on {r['dataset']}, hard, M={r['M']}")
    beats = beats_baselines(data["table1"], "Table 1", profile) + beats_baselines(data["table2"], "Table 2", profile)
    rows += beats or [dict(claim="DPDL beats DRA and DevNet (Tables 1–2)", table="Table 1", profile=profile,
                           ours="", paper="yes", delta="", baselines="not run here", verdict="not testable here",
                           why=f"no DevNet or DRA run in this profile; `{run_command(profile, 'table1')}` runs them "
                               f"(and `--only table2`)", value=math.nan, value_lo=math.nan,
                           value_hi=math.nan, n=0)]
    rows += heads_rows(data["table3"], profile)
    rows.append(_summary_row(data["table5"][data["table5"]["key"] != "mvtec"], "Table 5", profile,
                             "Table 5: DPDL per MVTec AD subset, general"))
    rows.append(_summary_row(data["table6"], "Table 6", profile, "Table 6: DPDL per known class, hard"))
    rows += ablation_rows(data["fig2"], profile)
    rows += sensitivity_rows(data["fig3"], profile)
    return pd.DataFrame(rows)


def headline(check: pd.DataFrame, profile: str) -> str:
    """One sentence: how many claims hold, in this profile."""
    counts = check["verdict"].value_counts()
    tested = len(check) - int(counts.get("not testable here", 0))
    parts = [f"{int(counts.get(v, 0))} {v}" for v in VERDICTS if counts.get(v, 0)]
    return (f"With the {profile} profile, {tested} of the paper's {len(check)} claims listed below could be tested "
            f"here: " + ", ".join(parts) + ".")
