"""The content of the book's result pages. Each report notebook is thin: it calls ``pages.show(<page>, profile,
results_dir)``, which displays the page's claims (with verdicts), its table and its figure.

Every number comes from :mod:`dpdl.study.tables` and :mod:`dpdl.study.claims` (which read
:mod:`dpdl.study.analysis`), so the first page, the table pages and ``results/tables`` agree. A page states its
profile once, in the banner ``dpdl book build`` puts on top of it.
"""
from __future__ import annotations

import html
import re

import pandas as pd

from ..study import analysis, claims, tables
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


def show_checklist(check: pd.DataFrame, links: bool = True) -> None:
    """The claims (with verdicts) as a table, under the rule that gives the verdicts."""
    sty = render.verdict_style(styled(checklist_view(check, links)))
    _display(_md(claims.RULES), sty)


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


def main_view(df: pd.DataFrame, extra=()) -> pd.DataFrame:
    """Tables 1, 2, 5, 6 as shown: the measured rows, ours with its interval, the paper, Δ, the verdict,
    the baselines run here (when any), and the best baseline the paper reports."""
    d = df[df["n"] > 0]
    out = pd.DataFrame({"dataset": d["dataset"], **{c: d[c] for c in extra}, "M": d["M"],
                        "ours [95 % CI]": [_pm(r) for _, r in d.iterrows()], "n": d["n"],
                        "paper": [num(x) for x in d["paper_mean"]], "Δ": [num(x, signed=True) for x in d["diff"]]})
    out["verdict"] = [claims.absolute_verdict(r["ours_mean"], r["paper_mean"], int(r["n"])) for _, r in d.iterrows()]
    for label in (analysis.METHOD_LABELS[m] for m in tables.BASELINES_RUN):
        col = f"{label} (ours)"
        if col in d and d[col].notna().any():
            out[col] = [num(x) for x in d[col]]
    for label in (analysis.METHOD_LABELS[m] for m in tables.CLAIM_BASELINES):
        if f"vs {label} n" in d and (d[f"vs {label} n"] > 0).any():
            out[f"DPDL − {label} (paired)"] = [claims.fmt_interval(r[f"vs {label}"], r[f"vs {label} lo"],
                                                                   r[f"vs {label} hi"], True) for _, r in d.iterrows()]
    if "rank" in d and d["rank"].notna().any():
        out["rank"] = d["rank"]
    reported = [c for c in d.columns if c.endswith("(reported)")]
    if reported:
        rep = d[reported].astype(float)
        best = [rep.loc[i].idxmax() if rep.loc[i].notna().any() else None for i in d.index]
        out["best reported baseline"] = [
            f"{c.replace(' (reported)', '')} {d.loc[i, c]:.3f}" if c else "" for i, c in zip(d.index, best)]
    return out.reset_index(drop=True)


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
            rel = mine[~mine["claim"].str.startswith(table)]
            if len(rel):
                show_checklist(rel, links=False)
        elif len(mine):
            show_checklist(mine, links=False)
        line = not_reachable(df, profile, group, what)
        if (df["n"] > 0).any():
            _display(_md(f"Verdicts by the rule on the first page: *reproduced* when our mean is at most "
                         f"{claims.TOLERANCE} below the paper's DPDL."), styled(main_view(df, extra)))
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
        return None
    show_checklist(mine, links=False)
    if df.empty or (df["n"] == 0).all():
        _display(_md(render.not_run_line(what, claims.run_command(profile, group))))
        return None
    if page == "table3":
        d = df[df["n"] > 0]
        view = pd.DataFrame({"setting": d["setting"], "dataset": d["dataset"], "heads": d["heads"],
                             "ours [95 % CI]": [_pm(r) for _, r in d.iterrows()], "n": d["n"],
                             "paper": [num(x) for x in d["paper_mean"]], "Δ": [num(x, signed=True) for x in d["diff"]],
                             "− {n,a,r} (paired)": [claims.fmt_interval(r["diff_full"], r["diff_full_lo"],
                                                                        r["diff_full_hi"], True) for _, r in d.iterrows()]})
        line = not_reachable(df.drop_duplicates(["dataset"]).assign(n=df.groupby("dataset")["n"].transform("max")),
                             profile, group, what)
        _display(styled(view))
        if line:
            _display(_md(line))
        figures.heads_ablation(df)
    elif page == "fig2":
        view = pd.DataFrame({"setting": df["setting"], "dataset": df["dataset"], "model": df["label"],
                             "ours [95 % CI]": [_pm(r) for _, r in df.iterrows()], "n": df["n"],
                             "− DPDL (paired)": [claims.fmt_interval(r["diff_full"], r["diff_full_lo"],
                                                                    r["diff_full_hi"], True) for _, r in df.iterrows()]})
        _display(styled(view))
        figures.ablation(df)
    else:
        view = pd.DataFrame({"parameter": df["symbol"], "value": [claims._num(v) for v in df["value"]],
                             "dataset": df["dataset"], "ours [95 % CI]": [_pm(r) for _, r in df.iterrows()],
                             "n": df["n"], "− the paper's value (paired)": [
                                 claims.fmt_interval(r["diff_full"], r["diff_full_lo"], r["diff_full_hi"], True)
                                 for _, r in df.iterrows()]})
        _display(styled(view))
        figures.sensitivity(df)
    _outliers(df)
    plt.show()
    return None


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


def show_summary(profile: str, results_dir=None) -> None:
    """The first page: the headline, the claims checklist, the rerun box, what ran."""
    data = _data(profile, results_dir)
    check = claims.checklist(profile, results_dir, data)
    runs = analysis.load_runs(profile, results_dir, include_failed=True)
    ok = runs[runs["status"] == "ok"]
    _display(_md("**" + claims.headline(check, profile) + "**"))
    box = rerun_box(profile, results_dir, ok)
    if box:
        _display(_md(box))
    _display(_md("## The claims, one by one"))
    untestable = check["verdict"] == "not testable here"
    show_checklist(check[~untestable])
    if untestable.any():
        _display(render.collapsed(f"{int(untestable.sum())} claims not testable here, each with why and the "
                                  f"command that runs it", render.verdict_style(styled(checklist_view(
                                      check[untestable])))))
    lines = [f"- run records of the **{profile}** profile: {len(runs)} ({len(ok)} finished, "
             f"{int((runs['status'] == 'failed').sum())} failed)"]
    if len(runs):
        for label, col in (("methods", "method"), ("datasets", "dataset"), ("variants", "variant"),
                           ("backbones", "backbone"), ("code versions", "code_version")):
            lines.append(f"- {label}: {', '.join(sorted(map(str, runs[col].dropna().unique())))}")
        lines.append(f"- dates: {runs['date'].min()} to {runs['date'].max()}")
    _display(_md("## What this study ran\n\n" + "\n".join(lines)))
    other = data["table1"][data["table1"]["paper_mean"].isna() & (data["table1"]["n"] > 0)]
    if len(other):
        _display(_md("Runs on datasets the paper does not have (Table 1 lists them too): " + "; ".join(
            f"{r['dataset']} M={r['M']}: {_pm(r)}" for _, r in other.iterrows())))
