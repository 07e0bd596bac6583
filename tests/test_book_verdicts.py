"""The verdict rules (dpdl.study.verdicts) at their boundaries, and the sign convention of every difference the
book shows: ours − paper, claimed better − claimed worse, the same on the first page and on the result pages."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dpdl.study import claims, verdicts as V

NAN = float("nan")


def test_absolute_rule_boundaries():
    tol = V.TOLERANCE
    assert V.absolute(0.9 - tol + 1e-9, 0.95, 0.9, 3) == V.REPRODUCED
    assert V.absolute(0.95, 0.99, 0.9, 3) == V.REPRODUCED                 # above the paper is reproduced too
    assert V.absolute(0.85, 0.9 - tol - 1e-6, 0.9, 3) == V.NOT_REPRODUCED  # the interval's top is short
    assert V.absolute(0.85, 0.9 - tol + 1e-6, 0.9, 3) == V.INCONCLUSIVE    # the interval reaches p − τ
    assert V.absolute(0.5, NAN, 0.9, 1) == V.INCONCLUSIVE                  # one seed: no interval
    assert V.absolute(NAN, NAN, 0.9, 0) == V.UNTESTABLE
    assert V.absolute(0.8, 0.9, NAN, 3) == V.UNTESTABLE                    # no paper value


def test_relative_rule_boundaries():
    assert V.relative(0.01, 0.05, 3) == V.REPRODUCED
    assert V.relative(-0.05, -0.01, 3) == V.REVERSED
    assert V.relative(-0.01, 0.02, 3) == V.INCONCLUSIVE                    # holds 0
    assert V.relative(0.01, 0.02, 1) == V.INCONCLUSIVE                     # one seed
    assert V.relative(NAN, NAN, 0) == V.UNTESTABLE
    # with a size named by the paper (t): short of it, right direction -> not reproduced
    assert V.relative(0.01, 0.04, 5, size=0.05) == V.NOT_REPRODUCED
    assert V.relative(0.04, 0.08, 5, size=0.05) == V.INCONCLUSIVE
    assert V.relative(0.06, 0.08, 5, size=0.05) == V.REPRODUCED
    assert V.relative(-0.02, -0.01, 5, size=0.05) == V.REVERSED


def test_rank_rule():
    assert V.rank(1, 4) == V.REPRODUCED and V.rank(2, 3) == V.REPRODUCED
    assert V.rank(3, 4) == V.NOT_REPRODUCED
    assert V.rank(1, 2) == V.UNTESTABLE and V.rank(None, 4) == V.UNTESTABLE


@pytest.mark.parametrize("parts, expected", [
    ([V.REPRODUCED, V.REPRODUCED], V.REPRODUCED),
    ([V.REPRODUCED, V.REVERSED], V.REVERSED),
    ([V.NOT_REPRODUCED, V.REVERSED, V.INCONCLUSIVE], V.REVERSED),
    ([V.REPRODUCED, V.NOT_REPRODUCED], V.NOT_REPRODUCED),
    ([V.REPRODUCED, V.INCONCLUSIVE], V.INCONCLUSIVE),
    ([V.REPRODUCED, V.UNTESTABLE], V.INCONCLUSIVE),      # half a claim run is not the claim
    ([V.UNTESTABLE, V.UNTESTABLE], V.UNTESTABLE),
    ([], V.UNTESTABLE),
])
def test_combine_rule(parts, expected):
    assert V.combine(parts) == expected


def test_every_verdict_word_is_in_the_rules_and_the_page_colours():
    from dpdl.book import render

    for v in V.VERDICTS:
        assert f"*{v}*" in V.RULES and v in render.VERDICT_CLASS
    assert "ours − paper" in V.RULES and "claimed better − claimed worse" in V.RULES


def test_clip_auc():
    assert V.clip_auc(0.9, 1.04) == (0.9, 1.0) and V.clip_auc(-0.1, 0.5) == (0.0, 0.5)
    lo, hi = V.clip_auc(NAN, NAN)
    assert math.isnan(lo) and math.isnan(hi)


def _t(values):
    v = np.asarray(values, float)
    return (v.mean(), *stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v)))


def test_sign_convention_absolute_and_relative_rows():
    """An absolute row's Δ is ours − paper; a combined relative row's d is its weakest part, claimed better minus
    claimed worse; a Table 3 row negates the table's variant − full."""
    seeds = [0.80, 0.84, 0.82]
    m, lo, hi = _t(seeds)
    df = pd.DataFrame([{"dataset": "ELPV", "key": "elpv", "M": 10, "n": 3, "ours_mean": m, "ci_lo": lo, "ci_hi": hi,
                        "paper_mean": 0.9, "paper_std": 0.01, "diff": m - 0.9, "outliers": "", "status": "measured"}])
    row = claims.absolute_rows(df, "Table 1", "cpu", lambda r: "x")[0]
    assert math.isclose(row["d"], m - 0.9) and math.isclose(row["d_lo"], lo - 0.9) and row["d"] < 0
    assert row["delta"].startswith(f"{m - 0.9:+.3f}") and row["paper"] == "0.900 ± 0.010"
    assert row["verdict"] == V.absolute(m, hi, 0.9, 3)
    # Table 3: variant − full in the table (diff_full) -> full − variant in the claim
    full = [0.9, 0.92, 0.91]
    subset = [0.85, 0.86, 0.88]
    dv, dlo, dhi = _t(np.subtract(subset, full))            # variant − full, as dpdl.study.tables computes
    t3 = pd.DataFrame([
        {"setting": "general", "key": "elpv", "dataset": "ELPV", "heads": "{n,a,r}", "n": 3, "paper_mean": 0.937,
         "diff_full": NAN, "diff_full_lo": NAN, "diff_full_hi": NAN, "status": "measured"},
        {"setting": "general", "key": "elpv", "dataset": "ELPV", "heads": "{r}", "n": 3, "paper_mean": 0.919,
         "diff_full": dv, "diff_full_lo": dlo, "diff_full_hi": dhi, "status": "measured"}])
    r = claims.heads_rows(t3, "cpu")[0]
    assert math.isclose(r["d"], -dv) and math.isclose(r["d_lo"], -dhi) and r["d"] > 0
    assert r["verdict"] == V.relative(-dhi, -dlo, 3) == V.REPRODUCED
    assert r["paper"] == f"{0.937 - 0.919:+.3f}"                          # the paper's full − subset, same sign


def test_pages_show_the_same_signs(monkeypatch):
    """The result pages' paired columns are headed and computed claimed better − claimed worse."""
    from dpdl.book import pages

    src = open(pages.__file__, encoding="utf-8").read()
    for head in ("{n,a,r} − this (paired)", "DPDL − this (paired)", "the paper's value − this (paired)",
                 "Δ ours − paper"):
        assert head in src
    for wrong in ("− {n,a,r} (paired)", "− DPDL (paired)", "− the paper's value (paired)"):
        assert wrong not in src


def test_main_view_shows_the_papers_std_integer_ranks_and_unrun_paper_cells():
    from dpdl.book import pages

    df = pd.DataFrame({"dataset": ["Carpet", "Grid"], "key": ["mvtec_carpet", "mvtec_grid"], "M": [10, 10],
                       "n": [3, 0], "ours_mean": [0.9, NAN], "ours_std": [0.01, NAN], "ci_lo": [0.88, NAN],
                       "ci_hi": [1.0, NAN], "paper_mean": [0.95, 0.97], "paper_std": [0.004, 0.002],
                       "diff": [-0.05, NAN], "status": ["measured", "not run here"], "rank": [3.0, NAN],
                       "methods run": [4, 0]})
    seen = pages.main_view(df)
    assert list(seen["dataset"]) == ["Carpet"] and list(seen["rank"]) == ["3 of 4"]
    every = pages.main_view(df, all_rows=True)           # Table 5/6: the paper's numbers even where none ran
    assert list(every["paper (mean ± std)"]) == ["0.950 ± 0.004", "0.970 ± 0.002"]
    assert list(every["verdict"]) == [V.absolute(0.9, 1.0, 0.95, 3), V.UNTESTABLE]
    assert list(every["Δ ours − paper"])[0] == "-0.050"
