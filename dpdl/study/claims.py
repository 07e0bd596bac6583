"""The claims checklist: every claim of the paper (tables, figures and text), our number beside the paper's, and a
verdict from the rules of :mod:`dpdl.study.verdicts`.

:func:`checklist` reads the tables of :mod:`dpdl.study.tables` (which read :mod:`dpdl.study.analysis`), so the
first page, the table pages and ``results/tables`` give the same numbers. One row per claim::

    claim, table (the page), kind (absolute | relative | rank), profile, ours, paper, delta, baselines, verdict,
    why, value, value_lo, value_hi (our AUC, absolute claims), d, d_lo, d_hi (the signed difference), n

``d`` is always *ours − paper* (absolute) or *claimed better − claimed worse* (relative), see
:mod:`dpdl.study.verdicts`. A claim with no run in the profile keeps its row: *not testable here*, with the command
that would run it. The claims the paper makes per dataset are listed for every dataset it names (the paper
profile's groups of ``study.yaml``), whether or not they ran here.
"""
from __future__ import annotations

import math

import pandas as pd

from . import analysis, tables, verdicts
from .verdicts import RULES, TOLERANCE, UNTESTABLE, VERDICTS, combine  # noqa: F401 - the one vocabulary

PAGES = {"Table 1": "report_table1_general", "Table 2": "report_table2_hard", "Table 3": "report_table3_heads",
         "Table 5": "report_table5_mvtec", "Table 6": "report_table6_hard_per_class", "Fig. 2": "report_fig2_ablation",
         "Fig. 3": "report_fig3_sensitivity"}
GROUPS = {"Table 1": "table1", "Table 2": "table2", "Table 3": "table3", "Table 5": "table5", "Table 6": "table6",
          "Fig. 2": "fig2", "Fig. 3": "fig3"}
AHL_GAIN = 0.083      # Sec. 5.4: "improves AHL by more than 8.3 % (relative) at M = 1 on AITEX, ELPV, Mastcam"
AHL_DATASETS = ("aitex", "elpv", "mastcam")
INDUSTRIAL = ("mvtec", "optical", "sdd", "aitex", "elpv")   # Sec. 5.6: w/o DPL drops most on industrial data


def _paper(key: str, param: str) -> float:
    """The paper's value of ``param`` on dataset ``key``: :func:`dpdl.methods.dpdl.model.paper_defaults` (λ per dataset, Sec. 5.7)."""
    from ..methods.dpdl.model import paper_defaults

    return float(paper_defaults(key)[param])


# Fig. 3's claims (Sec. 5.7): parameter -> (what the paper says, the comparisons "a beats b" from the values run)
FIG3_CLAIMS = {
    "prototypes": ("too few or too many prototypes C hurt",
                   lambda key, v: [(_paper(key, "prototypes"), min(v)), (_paper(key, "prototypes"), max(v))]),
    "eps": ("a larger ε degrades the AUC", lambda key, v: [(min(v), max(v))]),
    "kappa": ("κ above 10 can hurt", lambda key, v: [(_paper(key, "kappa"), max(v))]),
    "lam": ("λ = 1 is best on BrainMRI and HeadCT, λ = 0.01 on the seven larger datasets",
            lambda key, v: [(_paper(key, "lam"), x) for x in v if x != _paper(key, "lam")]),
}


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_interval(mean, lo=math.nan, hi=math.nan, signed=False) -> str:
    """``0.848 [0.825, 0.871]`` (no interval when it is NaN); ``signed``: ``+0.005 [+0.001, +0.009]``."""
    if _nan(mean):
        return ""
    f = "{:+.3f}" if signed else "{:.3f}"
    return f.format(mean) + ("" if _nan(lo) else f" [{f.format(lo)}, {f.format(hi)}]")


def fmt_paper(mean, std=math.nan) -> str:
    """The paper's value with its ± std, as printed."""
    return "" if _nan(mean) else f"{mean:.3f}" + ("" if _nan(std) else f" ± {std:.3f}")


def run_command(profile: str, group: str, status: str = "", dataset: str | None = None) -> str:
    """The command that runs a group of the study (with a data root when the dataset needs one)."""
    cmd = f"dpdl study run --profile {profile} --only {group}"
    if dataset and dataset != "mvtec":
        cmd += f" --datasets {dataset}"
    return cmd + (" --data-root PATH" if "data root" in status else "")


def _row(claim, table, profile, kind, verdict, *, ours="", paper="", d=math.nan, lo=math.nan, hi=math.nan, n=0,
         why="", baselines="", value=math.nan, value_lo=math.nan, value_hi=math.nan) -> dict:
    return dict(claim=claim, table=table, kind=kind, profile=profile, ours=ours, paper=paper,
                delta=fmt_interval(d, lo, hi, signed=True), baselines=baselines, verdict=verdict, why=why,
                value=value, value_lo=value_lo, value_hi=value_hi, d=d, d_lo=lo, d_hi=hi, n=n)


def _untestable_why(row, profile: str, table: str) -> str:
    status = str(row.get("status", ""))
    why = status[len("not run here"):].strip(" ()") if status.startswith("not run here") else ""
    return f"{why or 'no run in this profile'}; `{run_command(profile, GROUPS[table], status, row.get('key'))}`"


def _abs_why(v, r) -> str:
    if v == verdicts.INCONCLUSIVE:
        return ("one seed: no interval" if r["n"] < 2 else
                f"our mean is more than {TOLERANCE} below, but our interval reaches the paper's value − {TOLERANCE}")
    if v == verdicts.NOT_REPRODUCED:
        return f"the top of our interval is more than {TOLERANCE} below the paper's value"
    return ""


def _baselines(row) -> str:
    parts = [f"{analysis.METHOD_LABELS[m]} {row[f'{analysis.METHOD_LABELS[m]} (ours)']:.3f}"
             for m in tables.BASELINES_RUN if not _nan(row.get(f"{analysis.METHOD_LABELS[m]} (ours)"))]
    return ", ".join(parts)


def absolute_rows(df: pd.DataFrame, table: str, profile: str, label) -> list[dict]:
    """Rule 1 for every cell with a paper value: ours − paper."""
    rows = []
    for _, r in df.iterrows():
        if _nan(r["paper_mean"]):
            continue
        n = int(r["n"])
        lo, hi = verdicts.clip_auc(r.get("ci_lo"), r.get("ci_hi"))
        v = verdicts.absolute(r["ours_mean"], hi, r["paper_mean"], n)
        why = _untestable_why(r, profile, table) if v == UNTESTABLE else _abs_why(v, r)
        if r.get("outliers"):
            why = (why + "; " if why else "") + f"outlier: {r['outliers']}"
        p = r["paper_mean"]
        rows.append(_row(label(r), table, profile, "absolute", v, why=why, n=n,
                         ours=fmt_interval(r["ours_mean"], lo, hi) + (f" (n={n})" if n else ""),
                         paper=fmt_paper(p, r.get("paper_std")), d=r["diff"] if n else math.nan,
                         lo=lo - p if n > 1 else math.nan, hi=hi - p if n > 1 else math.nan,
                         baselines=_baselines(r) if "DRA (ours)" in r else "", value=r["ours_mean"],
                         value_lo=lo, value_hi=hi))
    return rows


def _parts_text(parts) -> str:
    return "; ".join(f"− {name}: {fmt_interval(d, lo, hi, True)} (n={n})" for name, d, lo, hi, n in parts if n)


def _combined(claim, table, profile, parts, paper, why_untested, baselines="") -> dict:
    """Rule 4 over parts ``(name, d, lo, hi, n)`` (each tested by rule 2); the forest plot shows the weakest."""
    vs = [verdicts.relative(lo, hi, n) for _, _, lo, hi, n in parts]
    v = combine(vs)
    tested = [p for p, x in zip(parts, vs) if x != UNTESTABLE]
    weakest = min(tested, key=lambda p: p[1]) if tested else None   # the smallest mean difference
    why = why_untested if v == UNTESTABLE else (
        f"{len(parts) - len(tested)} of {len(parts)} comparisons not run; {why_untested}"
        if len(tested) < len(parts) else "")
    return _row(claim, table, profile, "relative", v, ours=_parts_text(parts), paper=paper, why=why,
                baselines=baselines, n=min(p[4] for p in tested) if tested else 0,
                **(dict(d=weakest[1], lo=weakest[2], hi=weakest[3]) if weakest else {}))


def beats_baselines(df: pd.DataFrame, table: str, profile: str) -> list[dict]:
    """"DPDL beats DRA and DevNet" in every cell of Table 1/2 the paper prints: DPDL − baseline, paired."""
    rows, setting = [], "general" if table == "Table 1" else "hard"
    for _, r in df[df["paper_mean"].notna()].iterrows():
        parts = [(b, r[f"vs {b}"], r[f"vs {b} lo"], r[f"vs {b} hi"], int(r[f"vs {b} n"]))
                 for b in (analysis.METHOD_LABELS[m] for m in tables.CLAIM_BASELINES)]
        why = _untestable_why(r, profile, table) if not r["n"] else \
            f"no DRA or DevNet run; `{run_command(profile, GROUPS[table], '', r['key'])}`"
        rows.append(_combined(f"{table}: DPDL beats DRA and DevNet on {r['dataset']}, {setting}, M={r['M']}", table,
                              profile, parts, "yes", why, _baselines(r)))
    return rows


def _paper_ranks(table: str) -> dict:
    """(key, M) -> DPDL's rank among the paper's methods in Table 1 or 2."""
    from .. import paper

    df = paper.table1() if table == "Table 1" else paper.table2()
    out = {}
    for (key, m), g in df.groupby(["key", "n_anomalies"]):
        out[(key, int(m))] = analysis.rank(dict(zip(g["method"], g["auc_mean"].astype(float)))).get("DPDL")
    return out


def rank_rows(df: pd.DataFrame, table: str, profile: str) -> list[dict]:
    """Rule 3 on every cell where the paper's own table ranks DPDL first or second."""
    rows, ranks = [], _paper_ranks(table)
    setting = "general" if table == "Table 1" else "hard"
    for _, r in df[df["paper_mean"].notna()].iterrows():
        pr = ranks.get((r["key"], int(r["M"])))
        if pr is None or pr > 2:
            continue
        run = int(r.get("methods run") or 0)
        rk = r.get("rank")
        v = verdicts.rank(rk, run)
        why = "" if v != UNTESTABLE else (
            f"{run} method(s) run here; `{run_command(profile, GROUPS[table], str(r.get('status', '')), r['key'])}`")
        rows.append(_row(f"{table}: DPDL best or second best on {r['dataset']}, {setting}, M={r['M']}", table, profile,
                         "rank", v, ours=f"rank {int(rk)} of {run}" if v != UNTESTABLE else "",
                         paper=f"rank {pr} of 7", why=why, baselines=_baselines(r), n=int(r["n"])))
    return rows


def ahl_rows(t1: pd.DataFrame, profile: str) -> list[dict]:
    """Sec. 5.4: DPDL improves AHL (as reported) by more than 8.3 % at M = 1 on AITEX, ELPV and Mastcam. The
    paper's own numbers hold it as a relative gain (ELPV: 0.897 / 0.828 − 1 = 8.3 %), so the size is 8.3 % of AHL."""
    rows = []
    for key in AHL_DATASETS:
        sel = t1[(t1["key"] == key) & (t1["M"] == 1)]
        if sel.empty or _nan(sel.iloc[0].get("AHL (reported)")):
            continue
        r = sel.iloc[0]
        ahl, n = float(r["AHL (reported)"]), int(r["n"])
        lo, hi = verdicts.clip_auc(r["ci_lo"], r["ci_hi"])
        d, dlo, dhi = r["ours_mean"] - ahl, lo - ahl, hi - ahl
        v = verdicts.relative(dlo, dhi, n, AHL_GAIN * ahl)
        rows.append(_row(f"Text (Sec. 5.4): DPDL − AHL > 8.3 % of AHL on {r['dataset']}, general, M=1", "Table 1",
                         profile, "relative", v, ours=fmt_interval(d, dlo, dhi, True) + (f" (n={n})" if n else ""),
                         paper=f"{r['paper_mean'] - ahl:+.3f} ({r['paper_mean'] / ahl - 1:.1%} of AHL {ahl:.3f})",
                         d=d - AHL_GAIN * ahl if n else math.nan, lo=dlo - AHL_GAIN * ahl, hi=dhi - AHL_GAIN * ahl,
                         n=n, why=_untestable_why(r, profile, "Table 1") if v == UNTESTABLE else
                         f"AHL did not run here: its reported {ahl:.3f} is the reference; Δ = (DPDL − AHL) − 8.3 % of AHL"))
    return rows


def heads_rows(t3: pd.DataFrame, profile: str) -> list[dict]:
    """Table 3: the three heads together beat every subset ({n,a,r} − subset, paired), per dataset and setting;
    and the text's "removing M_r hurts most", which Table 3's rows cannot test."""
    rows = []
    for (setting, key), g in t3.groupby(["setting", "key"], sort=False):
        full = g[g["heads"] == "{n,a,r}"].iloc[0]
        parts = [(r["heads"], -r["diff_full"], -r["diff_full_hi"], -r["diff_full_lo"], int(r["n"]))
                 for _, r in g[g["heads"] != "{n,a,r}"].iterrows()]
        gaps = [full["paper_mean"] - r["paper_mean"] for _, r in g[g["heads"] != "{n,a,r}"].iterrows()]
        why = _untestable_why(full, profile, "Table 3")
        rows.append(_combined(f"Table 3: heads {{n,a,r}} beat every subset on {full['dataset']}, {setting}, M=10",
                              "Table 3", profile, parts, "; ".join(f"{p:+.3f}" for p in gaps if not _nan(p)) or "yes",
                              why))
    rows.append(_row("Text (Sec. 5.6): removing M_r hurts most", "Table 3", profile, "relative", UNTESTABLE,
                     paper="yes (no number)",
                     why="Table 3's four rows all keep M_r, so no printed number tests it; a run without M_r would be "
                         "`dpdl train --dataset elpv --anomalies 10 --seed 0 --profile cpu --heads n,a --out runs/no_mr`"
                         ", with no paper value to compare"))
    return rows


def _paper_datasets(group: str, setting: str) -> list[str]:
    """The datasets the paper's figure covers (the paper profile's group in study.yaml; MVTec AD as one)."""
    from .plan import load_study

    keys = []
    for block in load_study()["profiles"]["paper"]["groups"][group]:
        if setting in block["settings"]:
            for k in _flat(block["datasets"]):
                k = "mvtec" if setting == "general" and k.startswith("mvtec_") else k
                keys.append(k) if k not in keys else None
    return keys


def _flat(items) -> list:
    return [x for i in items for x in (_flat(i) if isinstance(i, list) else [i])]


def _pair(ps, key, a, b, col="variant"):
    p = analysis.paired(analysis.seeds_of(ps, dataset=key, **{col: a}), analysis.seeds_of(ps, dataset=key, **{col: b}))
    return p["mean"], p["lo"], p["hi"], p["n"]


def ablation_rows(f2: pd.DataFrame, profile: str, results_dir=None) -> list[dict]:
    """Fig. 2: full − w/o DPL and full − w/o DFL (paired) per dataset and setting the paper's figure covers; and
    Sec. 5.6's "w/o DPL drops most on industrial datasets" (w/o DFL − w/o DPL)."""
    from .. import paper

    runs = analysis.load_runs(profile, results_dir)
    runs = runs[(runs["method"] == "dpdl") & (runs["anomalies"] == 10)]
    rows = []
    for setting in ("general", "hard"):
        ps = analysis.per_seed(runs, setting)
        keys = _paper_datasets("fig2", setting)
        keys += sorted(set(f2.loc[f2["setting"] == setting, "key"]) - set(keys))
        for key in keys:
            name = paper.paper_name(key)
            cmd = f"no run in this profile; `{run_command('paper', 'fig2', 'data root', key)}` (the paper profile)"
            comps = [("full", "no_dpl", f"w/o DPL is below the full model"),
                     ("full", "no_dfl", f"w/o DFL is below the full model")]
            if key in INDUSTRIAL:
                comps.append(("no_dfl", "no_dpl", "w/o DPL is below w/o DFL (industrial data)"))
            for a, b, text in comps:
                d, lo, hi, n = _pair(ps, key, a, b)
                v = verdicts.relative(lo, hi, n)
                rows.append(_row(f"Fig. 2: {text} on {name}, {setting}, M=10", "Fig. 2", profile, "relative", v,
                                 ours=fmt_interval(d, lo, hi, True) + (f" (n={n})" if n else ""),
                                 paper="a clear drop (no number)", d=d, lo=lo, hi=hi, n=n,
                                 why=cmd if v == UNTESTABLE else ""))
    return rows


def _num(x: float) -> str:
    """A parameter value as the pages print it: ``1e-04``, ``0.01``, ``32``."""
    return f"{x:.0e}" if 0 < abs(x) < 1e-2 else f"{x:g}"


def sensitivity_rows(f3: pd.DataFrame, profile: str, results_dir=None) -> list[dict]:
    """Fig. 3: per parameter and dataset of the paper's figure, its statement as paired comparisons a − b."""
    from .. import paper

    rows = []
    for param, (text, pairs) in FIG3_CLAIMS.items():
        sub = f3[f3["param"] == param]
        keys = _paper_datasets("fig3", "general")
        keys += sorted(set(sub["key"]) - set(keys))
        sym = tables.SWEEP_PARAMS[param]
        for key in keys:
            values = sorted(float(v) for v in sub.loc[sub["key"] == key, "value"])
            comps = [(a, b) for a, b in pairs(key, values) if a != b and a in values and b in values] if values else []
            parts = [(f"{sym}={_num(a)} − {sym}={_num(b)}", *_pair_from_runs(profile, key, param, a, b, results_dir))
                     for a, b in comps]
            why = f"no run in this profile; `{run_command('paper', 'fig3', 'data root', key)}` (the paper profile)"
            if values and not comps:
                why = f"the values run ({', '.join(map(_num, values))}) do not include the compared ones"
            r = _combined(f"Fig. 3: {text} — {paper.paper_name(key)}, general, M=10", "Fig. 3", profile, parts,
                          "a trend (no number)", why)
            r["ours"] = "; ".join(f"{name}: {fmt_interval(d, lo, hi, True)} (n={n})" for name, d, lo, hi, n in parts)
            rows.append(r)
    return rows


def _pair_from_runs(profile, key, param, a, b, results_dir=None):
    runs = tables._at_paper_defaults(analysis.load_runs(profile, results_dir), free=(param,))
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
    t1, t2 = data["table1"], data["table2"]
    rows = absolute_rows(t1, "Table 1", profile, lambda r: f"Table 1: DPDL on {r['dataset']}, general, M={r['M']}")
    rows += absolute_rows(t2, "Table 2", profile, lambda r: f"Table 2: DPDL on {r['dataset']}, hard, M={r['M']}")
    rows += beats_baselines(t1, "Table 1", profile) + beats_baselines(t2, "Table 2", profile)
    rows += rank_rows(t1, "Table 1", profile) + rank_rows(t2, "Table 2", profile)
    rows += ahl_rows(t1, profile)
    rows += heads_rows(data["table3"], profile)
    t5 = data["table5"]
    rows += absolute_rows(t5[t5["key"] != "mvtec"], "Table 5", profile,
                          lambda r: f"Table 5: DPDL on MVTec AD {r['dataset']}, general, M={r['M']}")
    rows += absolute_rows(data["table6"], "Table 6", profile,
                          lambda r: f"Table 6: DPDL on {r['dataset']} / {r['known_class']}, hard, M={r['M']}")
    rows += ablation_rows(data["fig2"], profile, results_dir)
    rows += sensitivity_rows(data["fig3"], profile, results_dir)
    return pd.DataFrame(rows)
