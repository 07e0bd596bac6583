"""The Related systems page's numbers (dpdl.book.related) and every method's rank in Tables 1-2, from records made
up here with known AUCs: the paired differences are checked against a hand computation."""
import numpy as np
import pytest

from dpdl.study import related
from dpdl.records import atomic_write_json
from dpdl.study import tables
from dpdl.study.analysis import METHOD_LABELS
from dpdl.methods import METHODS

AUCS = {"dpdl": [0.80, 0.82, 0.84], "dra": [0.85, 0.86, 0.90], "knn": [0.70, 0.71, 0.69], "hgad": [0.88, 0.90, 0.95]}


def _write(root, method, seed, auc):
    variant = "full" if method == "dpdl" else method
    rid = f"elpv__general__M10__s{seed}__{variant}"
    rec = {"schema": 1, "status": "ok", "error": None, "run_id": rid, "profile": "cpu", "method": method,
           "config": {"dataset": "elpv", "setting": "general", "known_class": None, "anomalies": 10, "seed": seed,
                      "profile": "cpu", "method": method, "use_dpl": True, "use_dfl": True, "heads": "n,a,r",
                      "prototypes": 32, "eps": 1e-3, "kappa": 10.0, "lam": 0.01},
           "dataset": "elpv", "setting": "general", "known_class": None, "anomalies": 10, "seed": seed,
           "backbone": "efficientnet_lite0", "variant": variant, "metrics": {"auc": auc, "ap": auc},
           "split": {"fingerprint": "0123456789abcdef"}, "timings": {"total_s": 1.0}, "code_version": "abc",
           "date": "2026-01-01T00:00:00+00:00", "host": {"device": "cpu"}}
    d = root / "runs" / "cpu" / rid
    d.mkdir(parents=True)
    atomic_write_json(d / "run.json", rec)


@pytest.fixture()
def results(tmp_path):
    for method, values in AUCS.items():
        for seed, auc in enumerate(values):
            _write(tmp_path, method, seed, auc)
    return tmp_path


def test_every_registered_method_has_a_label():
    assert set(METHODS) <= set(METHOD_LABELS)


def test_paired_differences_match_a_hand_computation(results):
    comp = related.comparisons("cpu", results)
    row = comp[(comp["method"] == "hgad") & (comp["reference"] == "dra")].iloc[0]
    d = np.array(AUCS["hgad"]) - np.array(AUCS["dra"])
    assert row["diff"] == pytest.approx(d.mean()) and row["n"] == 3
    half = 4.302652729911275 * d.std(ddof=1) / np.sqrt(3)          # t(0.975, 2)
    assert row["lo"] == pytest.approx(d.mean() - half) and row["hi"] == pytest.approx(d.mean() + half)
    counts = related.verdict_counts(comp).set_index(["method", "against"])
    assert counts.loc[("HGAD", "kNN"), "higher (interval > 0)"] == 1     # 0.18-0.26 above kNN on every seed
    assert counts.loc[("DPDL", "kNN"), "higher (interval > 0)"] == 1
    assert "beats DRA's mean in 1 of 1 (the best of 2 methods per cell: a maximum" in related.answer(comp)


def test_tables_rank_every_method(results, monkeypatch):
    monkeypatch.setattr(tables, "BASELINES_RUN", ("devnet", "dra", "knn", "hgad"))
    t1 = tables.table1("cpu", results)
    row = t1[(t1["key"] == "elpv") & (t1["M"] == 10)].iloc[0]
    assert row["HGAD rank"] == 1 and row["DRA rank"] == 2 and row["rank"] == 3 and row["kNN rank"] == 4
    assert row["methods run"] == 4


def test_no_related_runs_say_so(tmp_path):
    assert "No related system has run" in related.answer(related.comparisons("cpu", tmp_path))


def test_first_page_names_the_related_systems_only_when_they_ran(results, tmp_path_factory):
    from dpdl.study import answer
    line = answer.related_systems("cpu", results)
    assert line.startswith("**The related systems**")
    # HGAD is above DRA on every seed, DPDL below it; against kNN both are above (AUCS)
    assert ("in the 1 cell compared here" in line and "against DRA, higher in at most 1 cell (HGAD) and lower in 0 "
            "(HGAD) to 1 (DPDL) cells; against kNN, higher in at most 1 cell (DPDL, HGAD) and never lower.") in line
    only_dpdl = tmp_path_factory.mktemp("only_dpdl")
    for seed, auc in enumerate(AUCS["dpdl"]):
        _write(only_dpdl, "dpdl", seed, auc)
        _write(only_dpdl, "dra", seed, AUCS["dra"][seed])
    assert answer.related_systems("cpu", only_dpdl) is None
