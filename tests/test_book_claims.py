"""The one analysis layer, the tables, the claims checklist and the first page agree, on synthetic records with
partial cells (a missing MVTec subset, a hard seed missing a known class, a baseline missing a seed).

Expected numbers are computed here from the records' AUCs with numpy and scipy.stats.t.interval, independently
of dpdl.study.analysis."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from dpdl import paper
from dpdl.methods.dpdl.model import paper_lam
from dpdl.study import analysis, claims, tables

PROFILE = "cpu"


def write(root, run_id, dataset, setting, m, seed, auc, known_class=None, method=None, status="ok", **cfg):
    config = {"dataset": dataset, "setting": setting, "known_class": known_class, "anomalies": m, "seed": seed,
              "heads": "n,a,r", "prototypes": 32, "eps": 1e-3, "kappa": 10.0, "lam": paper_lam(dataset), "use_dpl": True,
              "use_dfl": True}
    config.update(cfg)
    rec = {"status": status, "error": None, "run_id": run_id, "profile": PROFILE, "dataset": dataset,
           "setting": setting, "known_class": known_class, "anomalies": m, "seed": seed, "config": config,
           "metrics": {"auc": auc, "ap": auc}, "timings": {"total_s": 12.0}, "code_version": "abc",
           "host": {"device": "cpu", "cpu_count": 2}, "dpdl_config": {"dpl_loss": "bridge"}}
    if method:
        rec["method"], rec["variant"] = method, method
        rec["config"] = {k: config[k] for k in ("dataset", "setting", "known_class", "anomalies", "seed")}
    d = root / "runs" / PROFILE / run_id
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps(rec))


def t_interval(values):
    v = np.asarray(values, float)
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    return v.mean(), lo, hi


ELPV_G = {0: 0.80, 1: 0.90, 2: 0.70, 3: 0.85}
DRA_G = {0: 0.70, 1: 0.85, 2: 0.60}             # seed 3 missing: the paired test uses seeds 0-2
DEVNET_G = {0: 0.60, 1: 0.65, 2: 0.62, 3: 0.61}
HARD = {0: (0.6, 0.8), 1: (0.7, 0.9), 2: (0.5, None)}   # seed 2 lacks "poly": left out of the hard cell


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    for s, a in ELPV_G.items():
        write(root, f"elpv__general__M10__s{s}__full", "elpv", "general", 10, s, a)
    for s, a in DRA_G.items():
        write(root, f"elpv__general__M10__s{s}__dra", "elpv", "general", 10, s, a, method="dra")
    for s, a in DEVNET_G.items():
        write(root, f"elpv__general__M10__s{s}__devnet", "elpv", "general", 10, s, a, method="devnet")
    for s, (mono, poly) in HARD.items():
        write(root, f"elpv__hard-mono__M10__s{s}__full", "elpv", "hard", 10, s, mono, known_class="mono")
        if poly is not None:
            write(root, f"elpv__hard-poly__M10__s{s}__full", "elpv", "hard", 10, s, poly, known_class="poly")
    for sub, a in (("grid", 0.5), ("bottle", 0.7)):     # 2 of the 15 MVTec subsets
        for s in range(2):
            write(root, f"mvtec_{sub}__general__M10__s{s}__full", f"mvtec_{sub}", "general", 10, s, a)
    write(root, "sdd__general__M1__s9__full", "sdd", "general", 1, 9, 0.1, status="failed")
    for s, a in enumerate([0.95, 0.93, 0.94, 0.46, 0.92]):   # one outlier seed
        write(root, f"brainmri__general__M1__s{s}__full", "brainmri", "general", 1, s, a)
    for s, (full, no) in enumerate([(0.80, 0.70), (0.90, 0.81), (0.70, 0.62)]):
        write(root, f"elpv__general__M10__s{s}__no_dpl", "elpv", "general", 10, s, no, use_dpl=False)
    return root


def cell(df, key, m):
    return df[(df["key"] == key) & (df["M"] == m)].iloc[0]


def test_loader_reads_methods_and_variants(results):
    runs = analysis.load_runs(PROFILE, results)
    assert set(runs["method"]) == {"dpdl", "dra", "devnet"}
    assert set(runs.loc[runs["method"] == "dra", "variant"]) == {"dra"}
    assert "failed" not in set(runs["status"])
    every = analysis.load_runs(PROFILE, results, include_failed=True)
    assert len(every) == len(runs) + 1


def test_tables_equal_the_mean_of_their_records_including_partial_cells(results):
    t1 = tables.table1(PROFILE, results, reasons={})
    row = cell(t1, "elpv", 10)
    mean, lo, hi = t_interval(list(ELPV_G.values()))
    assert row.n == 4 and math.isclose(row.ours_mean, mean) and math.isclose(row.ci_lo, lo)
    assert math.isclose(row.ci_hi, hi)
    assert math.isclose(row["DRA (ours)"], np.mean(list(DRA_G.values())))
    assert math.isclose(row["DevNet (ours)"], np.mean(list(DEVNET_G.values())))
    assert row["rank"] == 1 and row["methods run"] == 3
    d, dlo, dhi = t_interval([ELPV_G[s] - DRA_G[s] for s in DRA_G])       # paired over the 3 common seeds
    assert row["vs DRA n"] == 3 and math.isclose(row["vs DRA"], d) and math.isclose(row["vs DRA lo"], dlo)
    assert math.isclose(row["vs DRA hi"], dhi)
    mv = cell(t1, "mvtec", 10)
    assert mv.n == 0 and mv.coverage == "2/15 subsets" and "2/15 subsets ran" in mv.status
    t2 = tables.table2(PROFILE, results, reasons={})
    hard = cell(t2, "elpv", 10)
    assert hard.n == 2 and math.isclose(hard.ours_mean, np.mean([np.mean(HARD[0]), np.mean(HARD[1])]))
    assert hard.known_classes == 2


def test_checklist_and_first_page_give_the_tables_numbers(results, monkeypatch):
    t1 = tables.table1(PROFILE, results, reasons={})
    t2 = tables.table2(PROFILE, results, reasons={})
    monkeypatch.setattr(tables, "_reason_map", lambda profile, results_dir=None: {})
    check = claims.checklist(PROFILE, results).set_index("claim")
    for table, df, setting in (("Table 1", t1, "general"), ("Table 2", t2, "hard")):
        for _, r in df[df["paper_mean"].notna()].iterrows():
            c = check.loc[f"{table}: DPDL on {r['dataset']}, {setting}, M={r['M']}"]
            assert c["n"] == r["n"]
            if r["n"]:
                assert math.isclose(c["value"], r["ours_mean"]) and math.isclose(c["value_lo"], r["ci_lo"])
                assert c["paper"].startswith(f"{r['paper_mean']:.3f}") and c["delta"].startswith(f"{r['diff']:+.3f}")
                assert math.isclose(c["d"], c["value"] - r["paper_mean"])          # ours − paper
            else:
                assert c["verdict"] == "not testable here"
    assert "2/15 subsets ran" in check.loc["Table 1: DPDL on MVTec AD, general, M=10", "why"]
    assert check.loc["Table 2: DPDL on ELPV, hard, M=10", "n"] == 2
    # the first page shows exactly these rows
    from dpdl.book import pages

    shown = []
    monkeypatch.setattr(pages, "_display", lambda *objs: shown.extend(objs))
    pages.show_summary(PROFILE, results)
    html = "".join(o.to_html() for o in shown if hasattr(o, "to_html"))
    html += "".join(getattr(o, "data", "") or "" for o in shown if not hasattr(o, "to_html"))
    elpv = check.loc["Table 1: DPDL on ELPV, general, M=10"]
    assert elpv["ours"] in html and "not testable here" in html
    from dpdl.study import answer

    assert answer.what_reproduces(claims.checklist(PROFILE, results), PROFILE) in html
    assert "Verdicts." in html                                            # the rules stand on this page


def test_beats_baselines_claim_is_paired(results, monkeypatch):
    monkeypatch.setattr(tables, "_reason_map", lambda profile, results_dir=None: {})
    check = claims.checklist(PROFILE, results).set_index("claim")
    row = check.loc["Table 1: DPDL beats DRA and DevNet on ELPV, general, M=10"]
    _, lo_dra, hi_dra = t_interval([ELPV_G[s] - DRA_G[s] for s in DRA_G])
    _, lo_dev, hi_dev = t_interval([ELPV_G[s] - DEVNET_G[s] for s in DEVNET_G])
    assert lo_dra > 0 and lo_dev > 0                    # both intervals above 0 (scipy): reproduced
    assert row["verdict"] == "reproduced" and "n=3" in row["ours"] and "n=4" in row["ours"]
    # a cell with no baseline run keeps its row, with the command that runs it
    nobase = check.loc["Table 1: DPDL beats DRA and DevNet on AITEX, general, M=10"]
    assert nobase["verdict"] == "not testable here" and "dpdl study run" in nobase["why"]


def test_outliers_flag_the_far_seed_with_its_run_id(results):
    t1 = tables.table1(PROFILE, results, reasons={})
    assert cell(t1, "brainmri", 1).outliers == "brainmri__general__M1__s3__full (0.460)"
    assert cell(t1, "elpv", 10).outliers == ""           # 0.70 is 0.125 from the median but within 3 MADs
    runs = analysis.load_runs(PROFILE, results)
    flags = analysis.outliers(runs)
    assert list(flags["run_id"]) == ["brainmri__general__M1__s3__full"]
    vals = np.array([0.95, 0.93, 0.94, 0.46, 0.92])
    med = np.median(vals)
    assert math.isclose(flags["mad"].iloc[0], np.median(np.abs(vals - med)))


def test_ablation_claim_is_a_paired_difference(results):
    f2 = tables.fig2(PROFILE, results)
    no = f2[(f2["setting"] == "general") & (f2["variant"] == "no_dpl")].iloc[0]
    diffs = [0.70 - 0.80, 0.81 - 0.90, 0.62 - 0.70]
    d, lo, hi = t_interval(diffs)
    assert math.isclose(no.diff_full, d) and math.isclose(no.diff_full_lo, lo) and math.isclose(no.diff_full_hi, hi)
    rows = {r["claim"]: r for r in claims.ablation_rows(f2, PROFILE, results)}
    row = rows["Fig. 2: w/o DPL is below the full model on ELPV, general, M=10"]
    assert row["verdict"] == "reproduced"                 # the full model is above w/o DPL on every seed
    assert math.isclose(row["d"], -d) and math.isclose(row["d_lo"], -hi)   # full − variant
    assert rows["Fig. 2: w/o DPL is below the full model on AITEX, general, M=10"]["verdict"] == "not testable here"


def test_interval_and_rank_edge_cases():
    assert analysis.interval([])["n"] == 0
    one = analysis.interval([0.5])
    assert one["sd"] == 0.0 and math.isnan(one["lo"])
    assert analysis.rank({"dpdl": 0.9, "dra": 0.95, "knn": float("nan")}) == {"dpdl": 2, "dra": 1, "knn": None}


def test_paper_names_come_from_the_registry():
    from dpdl.data.registry import REGISTRY

    for name, spec in REGISTRY.items():
        if name not in ("folder", "synthetic"):
            assert paper.paper_name(name) == spec.paper_name


def test_the_answer_is_computed_from_the_records(results, monkeypatch):
    from dpdl.study import answer

    monkeypatch.setattr(tables, "_reason_map", lambda profile, results_dir=None: {})
    data = {"table1": tables.table1(PROFILE, results, reasons={}), "table2": tables.table2(PROFILE, results, reasons={})}
    check = claims.checklist(PROFILE, results)
    line1, line2, line3 = answer.answer(check, data, PROFILE, results)
    tested = check[check["verdict"] != "not testable here"]
    n_rep = int((tested["verdict"] == "reproduced").sum())
    assert (f"{n_rep} of the {len(tested)} claims tested" in line1) if n_rep else ("No claim" in line1)
    d_dra, _, _ = t_interval([ELPV_G[s] - DRA_G[s] for s in DRA_G])
    assert f"{d_dra:+.3f}".replace("-", "−") in line2 and "DPDL − DRA" in line2
    assert "paper profile has not run on a GPU here" in line3
    assert "reading `bridge` (a learnt Schrödinger bridge, Eqs. 10–13 evaluated" in line3   # Method: 9, 14 not used
    assert "λ of the Table 1/2 runs per dataset as Sec. 5.7 says: brainmri 1, elpv 0.01" in line3
    assert "9–14" not in line3
    # a Table 1 run of ELPV at λ = 1 (not ELPV's paper λ): the line says so, whatever the tables' variant tag makes of it
    write(results, "elpv__general__M1__s0__full", "elpv", "general", 1, 0, 0.7, lam=1.0)
    # ... while a λ sweep run the study stored as such (groups fig3) is no Table 1/2 run
    write(results, "elpv__general__M10__s0__lam=10", "elpv", "general", 10, 0, 0.7, lam=10.0)
    (results / "runs" / PROFILE / "elpv__general__M10__s0__lam=10" / "run.json").write_text(json.dumps({
        **json.loads((results / "runs" / PROFILE / "elpv__general__M10__s0__lam=10" / "run.json").read_text()),
        "study": {"groups": ["fig3"], "variant": "lam=10"}}))
    try:
        line = answer.fidelity(PROFILE, results)
        assert "NOT all as Sec. 5.7 says: brainmri 1, elpv 0.01/1," in line and "elpv 0.01/1/10" not in line
    finally:
        for rid in ("elpv__general__M1__s0__full", "elpv__general__M10__s0__lam=10"):
            (results / "runs" / PROFILE / rid / "run.json").unlink()
            (results / "runs" / PROFILE / rid).rmdir()
    assert "as Sec. 5.7 says: brainmri 1, elpv 0.01" in answer.fidelity(PROFILE, results)
    assert "ELPV's test cells" not in line3          # no choice benchmark in these results: no such sentence
    bench = results / "benchmarks"
    bench.mkdir(exist_ok=True)
    (bench / "elpv_cpu_choice_x.json").write_text(json.dumps({"cells": {"general M=10": {}, "hard M=1": {}}}))
    try:
        assert "ELPV's test cells (2 cells, 1 benchmark files" in answer.fidelity(PROFILE, results)
    finally:
        (bench / "elpv_cpu_choice_x.json").unlink()


def test_fig3_sweeps_take_each_datasets_paper_lambda(tmp_path):
    """BrainMRI's full runs (λ = 1, Sec. 5.7) are the base of its C and λ sweeps, and its λ claim compares 1 with 0.01."""
    full, c16, lam001 = {0: 0.90, 1: 0.80, 2: 0.85}, {0: 0.85, 1: 0.78, 2: 0.80}, {0: 0.70, 1: 0.75, 2: 0.72}
    for s in full:
        write(tmp_path, f"brainmri__general__M10__s{s}__full", "brainmri", "general", 10, s, full[s])
        write(tmp_path, f"brainmri__general__M10__s{s}__C=16", "brainmri", "general", 10, s, c16[s], prototypes=16)
        write(tmp_path, f"brainmri__general__M10__s{s}__lam=0.01", "brainmri", "general", 10, s, lam001[s], lam=0.01)
    assert paper_lam("brainmri") == 1.0
    f3 = tables.fig3(PROFILE, tmp_path)
    c = f3[(f3["param"] == "prototypes") & (f3["key"] == "brainmri")].set_index("value")
    assert sorted(c.index) == [16.0, 32.0] and bool(c.loc[32.0, "is_default"]) and c.loc[32.0, "n"] == 3
    assert math.isclose(c.loc[32.0, "ours_mean"], np.mean(list(full.values())))
    assert math.isclose(c.loc[16.0, "diff_full"], np.mean([c16[s] - full[s] for s in full]))
    lam = f3[(f3["param"] == "lam") & (f3["key"] == "brainmri")].set_index("value")
    assert sorted(lam.index) == [0.01, 1.0] and bool(lam.loc[1.0, "is_default"]) and not bool(lam.loc[0.01, "is_default"])
    assert math.isclose(lam.loc[0.01, "diff_full"], np.mean([lam001[s] - full[s] for s in full]))
    d, lo, hi, n = claims._pair_from_runs(PROFILE, "brainmri", "lam", 1.0, 0.01, tmp_path)
    assert n == 3 and math.isclose(d, np.mean([full[s] - lam001[s] for s in full]))
    d, _, _, n = claims._pair_from_runs(PROFILE, "brainmri", "prototypes", 32.0, 16.0, tmp_path)
    assert n == 3 and math.isclose(d, np.mean([full[s] - c16[s] for s in full]))
    pairs = claims.FIG3_CLAIMS["lam"][1]
    assert pairs("brainmri", [0.01, 1.0]) == [(1.0, 0.01)] and pairs("elpv", [0.01, 1.0]) == [(0.01, 1.0)]
    assert claims.FIG3_CLAIMS["prototypes"][1]("elpv", [8.0, 64.0]) == [(32.0, 8.0), (32.0, 64.0)]
