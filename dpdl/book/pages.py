"""The content of the book's result pages. Each report notebook is thin: it calls ``pages.show(<page>, profile,
results_dir)``, which displays the page's claims (with verdicts), its table and its figure.

Every number comes from :mod:`dpdl.study.tables` and :mod:`dpdl.study.claims` (which read
:mod:`dpdl.study.analysis`), so the first page, the table pages and ``results/tables`` agree. A page states its
profile once, in the banner ``dpdl book build`` puts on top of it.
"""
from __future__ import annotations

import html
import math
import re

import pandas as pd

from ..study import analysis, answer, claims, tables, verdicts
from . import render
from .render import mean_ci, num, styled

# page -> (title of its data, study group, the checklist's table name)
PAGES = {"table1": ("Table 1 (general setting)", "table1", "Table 1"),
         "table2": ("Table 2 (hard setting)", "table2", "Table 2"),
         "table3": ("Table 3 (heads ablation)", "table3", "Table 3"),
         "table5": ("Table 5 (MVTec AD per subset)", "table5", "Table 5"),
         "table6": ("Table 6 (hard setting per known class)", "table6", "Table 6"),
         "fig2": ("Fig. 2 (ablation of DPL and DFL)", "fig2", "Fig. 2"),
         "fig3": ("Fig. 3 (parameter sensitivity)", "fig3", "Fig. 3")}
INTRO = """
**DPDL** (*Distribution Prototype Diffusion Learning for Open-set Supervised Anomaly Detection*, CVPR 2025)
detects anomalies from image-level labels when only a few anomalies, of a few classes, are seen in training and
the test set holds unseen classes too. It learns a mixture of Gaussian *distribution prototypes* for normal
features and a Schrödinger bridge that carries normal features to them while pushing the seen anomalies away
(DPL), adds a hyperspherical *dispersion* loss on the features (DFL), and scores images with three MIL heads
(see [Method](../method.md)). The paper claims state-of-the-art AUC on nine public datasets, in the *general*
and the *hard* setting, with ten or one training anomalies, and ablations (Fig. 2, Table 3, Fig. 3) that credit
each component.

This book reproduces those claims from scratch (the authors published no code). The three lines above are its
answer. Below, every claim of the paper (its tables, figures and text) has a row: our number beside the
paper's, and a verdict from the {ref}`rules <verdict-rules>` stated once, on this page. Every number is computed from
this study's run records and the paper's tables; none is typed by hand. The other pages:
[Method](../method.md), [Data](../data.md), the result pages (Tables 1–6, Figs. 2–3), [Deviations](../deviations.md),
[Performance](report_performance.ipynb) and [Provenance](report_provenance.ipynb)."""

CHECK_COLS = ["claim", "page", "profile", "ours", "paper", "delta", "baselines", "verdict", "why"]


def _display(*objs):
    from IPython.display import display

    for o in objs:
        display(o)


def _md(text: str):
    from IPython.display import Markdown

    return Markdown(text)


def _pm(r) -> str:
    return mean_ci(r["ours_mean"], r.get("ci_lo"), r.get("ci_hi"))


def checklist_view(check: pd.DataFrame, links: bool = True) -> pd.DataFrame:
    """The checklist as a page shows it (the claim's page as a link)."""
    view = check.copy()
    view["page"] = [f'<a href="{claims.PAGES[t]}.html">{t}</a>' for t in view["table"]]
    view["why"] = [re.sub(r"`([^`]+)`", lambda m: f"<code>{html.escape(m.group(1))}</code>", html.escape(w, quote=False)
                          .replace("&#x27;", "'")) for w in view["why"].fillna("")]
    cols = [c for c in CHECK_COLS if (c != "page" or links)
            and (c in ("claim", "verdict") or view[c].fillna("").astype(str).str.strip().ne("").any())]
    return view[cols]


RULES_LINK = ("Verdicts and signs follow the {ref}`rules stated once, on the first page <verdict-rules>`: every Δ is "
              "ours − paper or claimed better − claimed worse.")


def show_checklist(check: pd.DataFrame, links: bool = True) -> None:
    """The claims (with verdicts) as a table, under a link to the rules that give the verdicts; the claims not
    testable here folded below it, each with why and the command that runs it."""
    untestable = check["verdict"] == verdicts.UNTESTABLE
    _display(_md(RULES_LINK))
    if (~untestable).any():
        _display(render.verdict_style(styled(checklist_view(check[~untestable], links))))
    if untestable.any():
        _display(render.collapsed(f"{int(untestable.sum())} claims not testable here, each with why and the command "
                                  "that runs it", render.verdict_style(styled(checklist_view(check[untestable],
                                                                                             links)))))


def not_reachable(df: pd.DataFrame, profile: str, group: str, what: str) -> str | None:
    """One line naming the rows of ``df`` that did not run here, with the command that runs them."""
    miss = df[df["n"] == 0]
    if miss.empty:
        return None
    needs_root = miss["status"].astype(str).str.contains("data root")
    parts = [", ".join(dict.fromkeys(miss.loc[needs_root, "dataset"])) + " (their data need a data root)",
             ", ".join(dict.fromkeys(miss.loc[~needs_root, "dataset"])) + " (not run in this profile)"]
    names = "; ".join(p for p, n in zip(parts, (needs_root.any(), (~needs_root).any())) if n)
    cmd = claims.run_command(profile, group, "data root" if needs_root.any() else "")
    if (df["n"] == 0).all():
        return render.not_run_line(f"{what}: {names}", cmd)
    return f"*Not run here:* {names}. To run them: `{cmd}`"


def main_view(df: pd.DataFrame, extra=(), all_rows: bool = False) -> pd.DataFrame:
    """Tables 1, 2, 5, 6 as shown: the measured rows (``all_rows``: every row the paper prints too), ours with
    its interval, the paper's mean ± std, Δ = ours − paper, the verdict (rule 1), the baselines run here (when
    any), DPDL − baseline paired, DPDL's rank among the methods run here, and the best baseline the paper reports."""
    d = df[(df["n"] > 0) | (all_rows & df["paper_mean"].notna())]
    out = pd.DataFrame({"dataset": d["dataset"], **{c: d[c] for c in extra}, "M": d["M"],
                        "ours [95 % CI]": [_pm(r) for _, r in d.iterrows()], "n": d["n"],
                        "paper (mean ± std)": [claims.fmt_paper(m, sd) for m, sd in
                                               zip(d["paper_mean"], d.get("paper_std", pd.Series(math.nan, d.index)))],
                        "Δ ours − paper": [num(x, signed=True) for x in d["diff"]]})
    out["verdict"] = [verdicts.absolute(r["ours_mean"], r.get("ci_hi"), r["paper_mean"], int(r["n"]))
                      for _, r in d.iterrows()]
    for label in (analysis.METHOD_LABELS[m] for m in tables.BASELINES_RUN):
        col, rk = f"{label} (ours)", f"{label} rank"
        if col in d and d[col].notna().any():   # the mean AUC, its rank among the methods run here in brackets
            out[col] = [num(x) + (f" ({int(r)})" if not _isnan(r) else "")
                        for x, r in zip(d[col], d[rk] if rk in d else [None] * len(d))]
    for label in (analysis.METHOD_LABELS[m] for m in tables.CLAIM_BASELINES):
        if f"vs {label} n" in d and (d[f"vs {label} n"] > 0).any():
            out[f"DPDL − {label} (paired)"] = [claims.fmt_interval(r[f"vs {label}"], r[f"vs {label} lo"],
                                                                   r[f"vs {label} hi"], True) for _, r in d.iterrows()]
    if "rank" in d and d["rank"].notna().any():
        out["rank"] = [f"{int(r)} of {int(k)}" if not _isnan(r) else "" for r, k in zip(d["rank"], d["methods run"])]
    reported = [c for c in d.columns if c.endswith("(reported)")]
    if reported:
        rep = d[reported].astype(float)
        best = [rep.loc[i].idxmax() if rep.loc[i].notna().any() else None for i in d.index]
        out["best reported baseline"] = [
            f"{c.replace(' (reported)', '')} {d.loc[i, c]:.3f}" if c else "" for i, c in zip(d.index, best)]
    return out.reset_index(drop=True)


def _isnan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _outliers(df: pd.DataFrame) -> None:
    flagged = [o for o in df.get("outliers", pd.Series(dtype=str)) if o]
    if flagged:
        _display(_md("**Outliers** (a run more than 3 MADs and 0.05 AUC from its cell's median; kept in the means): "
                     + "; ".join(flagged) + "."))


def _baselines_line(df: pd.DataFrame, profile: str, group: str) -> None:
    missing = [analysis.METHOD_LABELS[m] for m in tables.BASELINES_RUN
               if f"{analysis.METHOD_LABELS[m]} (ours)" not in df or df[f"{analysis.METHOD_LABELS[m]} (ours)"].isna().all()]
    if missing:
        _display(_md(f"*{', '.join(missing)} in the {profile} profile: not run here.* "
                     f"`{claims.run_command(profile, group)}` runs them beside DPDL on the same splits and seeds "
                     "([Baselines](../baselines.md)); the numbers marked *reported* are the paper's."))


def show(page: str, profile: str = "cpu", results_dir=None) -> None:
    """Display one result page (``table1`` ... ``fig3``, ``table4``, ``summary``)."""
    import matplotlib.pyplot as plt

    from ..study import figures

    if page == "summary":
        return show_summary(profile, results_dir)
    if page == "table4":
        return show_table4(profile, results_dir)
    what, group, table = PAGES[page]
    data = _data(profile, results_dir)
    check = claims.checklist(profile, results_dir, data)
    mine = check[check["table"] == table]
    df = data[page]
    if page in ("table1", "table2", "table5", "table6"):
        extra = ("known_class",) if page == "table6" else ()
        if page in ("table1", "table2"):   # the absolute claims are the rows below; the relative claim is shown
            rel = mine[mine["kind"] != "absolute"]
            if len(rel):
                show_checklist(rel, links=False)
        elif len(mine):
            show_checklist(mine, links=False)
        line = not_reachable(df, profile, group, what)
        if (df["n"] > 0).any() or page in ("table5", "table6"):
            _display(_md(f"Every cell the paper prints, ours beside it (rule 1 of the {{ref}}`verdict rules "
                         f"<verdict-rules>`: *reproduced* when our mean is at most "
                         f"{verdicts.TOLERANCE} below the paper's)."),
                     render.verdict_style(styled(main_view(df, extra, all_rows=page in ("table5", "table6")))))
        if line:
            _display(_md(line))
        if page in ("table1", "table2"):
            _baselines_line(df, profile, group)
        _outliers(df)
        if (df["n"] > 0).any():
            d = df[df["n"] > 0]
            if page == "table6":
                d = d.assign(label=d["dataset"] + " / " + d["known_class"])
            figures.ours_vs_paper(d, f"{table}: ours vs paper", label_col="label" if page == "table6" else "dataset")
            plt.show()
        if page in ("table1", "table2"):
            _per_cell(df, profile, results_dir, "general" if page == "table1" else "hard", table)
        return None
    show_checklist(mine, links=False)
    if df.empty or (df["n"] == 0).all():
        _display(_md(render.not_run_line(what, claims.run_command(profile, group))))
        return None
    if page == "table3":
        d = df[df["n"] > 0]
        view = pd.DataFrame({"setting": d["setting"], "dataset": d["dataset"], "heads": d["heads"],
                             "ours [95 % CI]": [_pm(r) for _, r in d.iterrows()], "n": d["n"],
                             "paper (mean ± std)": [claims.fmt_paper(m, sd) for m, sd in zip(d["paper_mean"],
                                                                                            d["paper_std"])],
                             "Δ ours − paper": [num(x, signed=True) for x in d["diff"]],
                             "{n,a,r} − this (paired)": [claims.fmt_interval(-r["diff_full"], -r["diff_full_hi"],
                                                                             -r["diff_full_lo"], True)
                                                         for _, r in d.iterrows()]})
        line = not_reachable(df.drop_duplicates(["dataset"]).assign(n=df.groupby("dataset")["n"].transform("max")),
                             profile, group, what)
        _display(styled(view))
        if line:
            _display(_md(line))
        figures.heads_ablation(df)
    elif page == "fig2":
        view = pd.DataFrame({"setting": df["setting"], "dataset": df["dataset"], "model": df["label"],
                             "ours [95 % CI]": [_pm(r) for _, r in df.iterrows()], "n": df["n"],
                             "DPDL − this (paired)": [claims.fmt_interval(-r["diff_full"], -r["diff_full_hi"],
                                                                          -r["diff_full_lo"], True)
                                                      for _, r in df.iterrows()]})
        _display(styled(view))
        figures.ablation(df)
        plt.show()
        _training_curves(profile, results_dir)
    else:
        view = pd.DataFrame({"parameter": df["symbol"], "value": [claims._num(v) for v in df["value"]],
                             "dataset": df["dataset"], "ours [95 % CI]": [_pm(r) for _, r in df.iterrows()],
                             "n": df["n"], "the paper's value − this (paired)": [
                                 claims.fmt_interval(-r["diff_full"], -r["diff_full_hi"], -r["diff_full_lo"], True)
                                 for _, r in df.iterrows()]})
        _display(styled(view))
        figures.sensitivity(df)
    _outliers(df)
    plt.show()
    return None


def _per_cell(df: pd.DataFrame, profile: str, results_dir, setting: str, table: str) -> None:
    """Per cell: DPDL and the baselines run here in the same profile, every seed, beside the paper's DPDL."""
    import matplotlib.pyplot as plt

    from ..study import figures

    runs = tables._compared(analysis.load_runs(profile, results_dir))
    ps = analysis.per_seed(runs, setting)
    ps = ps[ps["dataset"].isin(set(ps.loc[ps["method"] == "dpdl", "dataset"]))]
    if ps.empty or ps["method"].nunique() < 2:
        return
    _display(_md(f"**Each cell, every seed.** DPDL and the baselines run here ({profile} profile, same splits and "
                 "seeds): dots are seeds, squares the mean with its 95 % interval, × the paper's DPDL."))
    figures.per_cell(ps, {(r["key"], int(r["M"])): r["paper_mean"] for _, r in df.iterrows()},
                     f"{table}: per-seed AUC per cell")
    plt.show()


def _training_curves(profile: str, results_dir) -> None:
    """The loss curves the Fig. 2 records hold (ELPV general M = 10: full, w/o DPL, w/o DFL)."""
    import matplotlib.pyplot as plt

    from ..study import figures

    runs = analysis.load_runs(profile, results_dir)
    runs = runs[(runs["method"] == "dpdl") & runs["variant"].isin(["full", "no_dpl", "no_dfl"])
                & (runs["setting"] == "general") & (runs["anomalies"] == 10)]
    runs = runs[runs["dataset"].isin(set(runs.loc[runs["variant"] != "full", "dataset"]))]
    if runs.empty:
        return
    _display(_md(f"**Training curves** of these runs ({', '.join(sorted(set(runs['dataset'])))}, general, M = 10): "
                 "each loss term per epoch as the run records hold it (`losses`), mean over seeds, band min–max."))
    if figures.training_curves(runs) is not None:
        plt.show()


def _data(profile: str, results_dir) -> dict:
    reasons = tables._reason_map(profile)
    return {"table1": tables.table1(profile, results_dir, reasons=reasons),
            "table2": tables.table2(profile, results_dir, reasons=reasons),
            "table3": tables.table3(profile, results_dir, reasons=reasons),
            "table5": tables.table5(profile, results_dir, reasons=reasons),
            "table6": tables.table6(profile, results_dir, reasons=reasons),
            "fig2": tables.fig2(profile, results_dir), "fig3": tables.fig3(profile, results_dir)}


def show_table4(profile: str, results_dir=None) -> None:
    """Table 4: our counts from the data beside the paper's, ``ours / paper`` per column."""
    df = tables.table4(profile, results_dir)
    view = pd.DataFrame({"dataset": df["dataset"], "type": df["type"]})
    for c, label in tables.TABLE4_LABELS.items():
        view[f"{label} (ours / paper)"] = [f"{'—' if pd.isna(o) else int(o)} / {int(p)}"
                                           for o, p in zip(df[f"ours_{c}"], df[f"paper_{c}"])]
    view["status"] = [f"{s}; differs: {d}" if d else s for s, d in zip(df["status"], df["differs"])]
    _display(_md("Each cell: ours / the paper's. *—*: the data are not on this machine. Where a measured count "
                 "differs from the paper's, the [Deviations](../deviations.md) page says why."), styled(view))


def rerun_box(profile: str, results_dir=None, runs: pd.DataFrame | None = None) -> str:
    """A MyST admonition with one command that reruns one number of the book, its expected AUC and time."""
    from .records import reproduce_command

    runs = analysis.load_runs(profile, results_dir) if runs is None else runs
    ok = runs[(runs["method"] == "dpdl") & (runs["variant"] == "full")]
    if ok.empty:
        return ""
    first = ok[(ok["dataset"] == "elpv") & (ok["setting"] == "general") & (ok["anomalies"] == 10)]
    r = (first if len(first) else ok).sort_values(["seed", "run_id"]).iloc[0]
    rec = r["record"]
    secs = (rec.get("timings") or {}).get("total_s")
    device = (rec.get("host") or {}).get("device", "cpu")
    took = f" It took {secs:.0f} s on {device} ({(rec.get('host') or {}).get('cpu_count', '?')} cores)." \
        if secs else ""
    return (f":::{{admonition}} Rerun this number\n:class: tip\n"
            f"{r['dataset']}, {r['setting']}, M={r['anomalies']}, seed {r['seed']}, {profile} profile: "
            f"AUC **{r['auc']:.4f}** (run `{r['run_id']}`).{took} From the repository root, after `make install`:\n\n"
            f"```bash\n.venv/bin/{reproduce_command(rec)}\n```\n\nIt writes `run.json`, whose `metrics.auc` should "
            f"equal {r['auc']:.4f} (same seed, same profile, same code version `{rec.get('code_version')}`).\n:::")


def show_answer(profile: str, results_dir=None, check=None, data=None) -> None:
    """The first screen: the study's answer in three lines (:func:`dpdl.study.answer.answer`)."""
    data = _data(profile, results_dir) if data is None else data
    check = claims.checklist(profile, results_dir, data) if check is None else check
    lines = answer.answer(check, data, profile, results_dir)
    _display(_md('<div class="dpdl-answer">\n\n' + "\n\n".join(lines) + "\n\n</div>"))


def show_summary(profile: str, results_dir=None) -> None:
    """The first page: the answer in three lines, the verdict rules, the forest plot of every claim tested, the
    claims one by one (those not testable here folded, each with its command), what ran and what built the book."""
    import matplotlib.pyplot as plt

    from ..records import code_version
    from ..study import figures

    data = _data(profile, results_dir)
    check = claims.checklist(profile, results_dir, data)
    runs = analysis.load_runs(profile, results_dir, include_failed=True)
    ok = runs[runs["status"] == "ok"]
    show_answer(profile, results_dir, check, data)
    _display(_md(INTRO.strip()))
    _display(_md("(verdict-rules)=\n## Verdict rules\n\n" + verdicts.RULES))
    untestable = check["verdict"] == verdicts.UNTESTABLE
    if (~untestable).any():
        _display(_md("## Every claim tested, ours minus the paper\n\nEach line: the signed difference (ours − paper, "
                     "or claimed better − claimed worse; for a claim of several comparisons, its weakest) with its 95 % "
                     "interval. Right of 0 agrees with the paper."))
        figures.forest(check[~untestable])
        plt.show()
    box = rerun_box(profile, results_dir, ok)
    if box:
        _display(_md(box))
    _display(_md("## The claims, one by one"))
    show_checklist(check)
    lines = [f"- run records of the **{profile}** profile: {len(runs)} ({len(ok)} finished, "
             f"{int((runs['status'] == 'failed').sum())} failed)"]
    if len(runs):
        for label, col in (("methods", "method"), ("datasets", "dataset"), ("variants", "variant"),
                           ("backbones", "backbone"), ("code versions", "code_version")):
            lines.append(f"- {label}: {', '.join(sorted(map(str, runs[col].dropna().unique())))}")
        lines.append(f"- dates: {runs['date'].min()} to {runs['date'].max()}")
    lines.append(f"- this book was built from commit `{code_version()}`; the records and tables it reads: "
                 f"{{download}}`results-{profile}.zip <results-{profile}.zip>` (`run.json` and `scores.json` of "
                 f"`results/runs/{profile}`, and `results/tables/{profile}`)")
    _display(_md("## What this study ran\n\n" + "\n".join(lines)))
    other = data["table1"][data["table1"]["paper_mean"].isna() & (data["table1"]["n"] > 0)]
    if len(other):
        _display(_md("Runs on datasets the paper does not have (Table 1 lists them too): " + "; ".join(
            f"{r['dataset']} M={r['M']}: {_pm(r)}" for _, r in other.iterrows())))
