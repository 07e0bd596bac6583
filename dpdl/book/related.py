"""The Related systems results page: the computation is :mod:`dpdl.study.related`; this module displays it."""
from __future__ import annotations

import pandas as pd

from ..study import analysis
from ..study.related import FAMILY, REFERENCES, answer, comparisons, verdict_counts
from .render import num, styled


def show(profile: str = "cpu", results_dir=None) -> None:
    """Display the answer, the counts and, per cell, every method's mean AUC beside DRA and kNN."""
    from IPython.display import Markdown, display

    comp = comparisons(profile, results_dir)
    display(Markdown(f"**Answer.** {answer(comp)}"))
    if comp.empty:
        return
    display(Markdown("**Cells where each method's paired difference to DRA and to kNN is shown above or below 0** "
                     "(5 seeds per cell; a difference counts only where its 95 % interval excludes 0):"),
            styled(verdict_counts(comp), {"mean difference": lambda x: num(x, signed=True)}))
    wide = comp[comp["reference"] == "dra"].pivot_table(index=["setting", "dataset", "M"], columns="method",
                                                        values="mean").reset_index()
    refs = comp.groupby(["setting", "dataset", "M", "reference"])["ref_mean"].first().unstack().reset_index()
    wide = wide.merge(refs, on=["setting", "dataset", "M"], how="left")
    cols = [m for m in (*FAMILY, *REFERENCES) if m in wide]
    view = wide[["setting", "dataset", "M"]].copy()
    for m in cols:
        view[analysis.METHOD_LABELS[m]] = [num(v) for v in wide[m]]
    view["best"] = [analysis.METHOD_LABELS[max(((m, r[m]) for m in cols if not pd.isna(r[m])),
                                               key=lambda t: t[1])[0]] for _, r in wide.iterrows()]
    display(Markdown("**Mean AUC per cell** (every method on the same splits and seeds; hard setting: mean over "
                     "the known classes):"), styled(view))
