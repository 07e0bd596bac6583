"""The study definition, run ids, variants, resume bookkeeping and the tables' arithmetic (fast, no training)."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from dpdl.study import plan as P
from dpdl.study import runner, tables


def test_smoke_plan():
    pl = P.expand("smoke")
    ids = [r.run_id for r in pl.runs]
    assert len(ids) == len(set(ids)) == 15
    assert "synthetic__general__M10__s0__full" in ids
    for m in ("devnet", "dra", "knn"):                       # the baselines, same split and seed
        spec = next(r for r in pl.runs if r.run_id == f"synthetic__general__M10__s0__{m}")
        assert spec.config("smoke")["method"] == m and spec.groups == ("table1",)
    assert "synthetic__hard-scratch__M1__s1__full" in ids
    assert "synthetic__general__M10__s0__heads=a+r" in ids and "synthetic__general__M10__s0__C=8" in ids
    full = next(r for r in pl.runs if r.run_id == "synthetic__general__M10__s0__full")
    assert set(full.groups) == {"table1", "table3", "fig2", "fig3"}   # shared, run once
    by = pl.by_group()
    assert len(by["table1"]) == 7 and len(by["table2"]) == 4 and len(by["fig2"]) == 3


def test_only_seeds_and_datasets_filters():
    assert len(P.expand("smoke", only=["table1"], seeds=1).runs) == 5
    assert len(P.expand("smoke", only=["fig2", "fig3"]).runs) == 4
    assert P.expand("smoke", datasets=["elpv"]).runs == []
    with pytest.raises(ValueError, match="unknown group"):
        P.expand("smoke", only=["table9"])
    with pytest.raises(ValueError, match="unknown study profile"):
        P.expand("nope")


def test_methods_filter_keeps_every_variant_of_a_method_and_only_it():
    every = P.expand("smoke").runs
    dpdl = P.expand("smoke", methods=["dpdl"]).runs
    assert dpdl and all(dict(r.overrides).get("method", "dpdl") == "dpdl" for r in dpdl)
    assert {r.run_id for r in dpdl} == {r.run_id for r in every if dict(r.overrides).get("method", "dpdl") == "dpdl"}
    assert any(r.variant != "full" for r in dpdl)                       # the ablations come with it
    two = P.expand("smoke", methods=["devnet", "knn"]).runs
    assert sorted({r.config("smoke")["method"] for r in two}) == ["devnet", "knn"]
    with pytest.raises(ValueError, match="--methods nope"):
        P.expand("smoke", methods=["nope"])
    with pytest.raises(ValueError, match="no run of the smoke study"):
        P.expand("smoke", methods=["hgad_bg"])                          # a method the study does not run


def test_cpu_and_paper_profiles_expand():
    from dpdl.data import get_dataset
    cpu = P.expand("cpu")
    assert "mvtec_carpet" in cpu.skipped or os.environ.get("DPDL_DATA")
    if get_dataset("elpv").available()[0]:
        ids = {r.run_id for r in cpu.runs}
        assert "elpv__hard-mono__M1__s4__full" in ids and "elpv__general__M10__s1__lam=1" in ids
        assert not any(i.endswith("__lam=0.01") for i in ids)  # ELPV's paper λ (Sec. 5.7) is its "full" run
        assert "elpv__general__M10__s1__no_dfl" in ids and "elpv__hard-poly__M10__s1__heads=n+r" in ids
        assert "elpv__general__M10__s2__no_dfl" in ids          # ablations: three seeds in the cpu profile
        assert "elpv__general__M10__s3__no_dfl" not in ids
        assert "elpv__general__M10__s2__lam=1" in ids           # sensitivity grid: three seeds too
        assert "elpv__general__M10__s3__lam=1" not in ids
    paper = P.expand("paper", check_available=False)
    assert len(paper.runs) > 1000


def test_run_id_and_variants():
    s = P.RunSpec("elpv", "hard", "mono", 1, 3, "no_dfl", (("use_dfl", False),))
    assert s.run_id == "elpv__hard-mono__M1__s3__no_dfl"
    assert P.RunSpec("elpv", variant="C=16").run_id == "elpv__general__M10__s0__C=16"
    assert P.parse_variant("heads=a,r") == {"heads": "a,r"}
    assert P.parse_variant("eps=0.0001") == {"eps": 1e-4}
    for tag in ("full", "no_dpl", "no_dfl", "heads=r", "heads=n,r", "C=8", "eps=0.01", "kappa=1", "lam=0.1"):
        assert P.variant_tag(P.parse_variant(tag)) == tag
    assert P.variant_tag({"prototypes": 32}) == "full"
    with pytest.raises(ValueError):
        P.parse_variant("dropout=0.1")
    d = s.config("cpu", out="/x")
    assert d["use_dfl"] is False and d["run_id"] == s.run_id and d["out"] == "/x"
    assert P.RunSpec.from_dict(s.to_dict()) == s


def test_variant_tags_agree_with_training():
    from dpdl.train import RunConfig, variant_tag
    for tag in ("full", "no_dpl", "no_dfl", "heads=a,r", "C=16", "eps=0.0001", "kappa=50", "lam=1", "lam=0.1"):
        over = P.parse_variant(tag)
        cfg = RunConfig(dataset="synthetic", **over)
        assert variant_tag(cfg) == tag
        assert P.record_variant(cfg.to_dict()) == tag


def test_lambda_per_dataset():
    """Sec. 5.7: λ = 0.01 on the larger datasets, 1 on BrainMRI and HeadCT; "lam=<v>" always means that λ."""
    from dpdl.methods.dpdl.model import paper_lam
    from dpdl.train import RunConfig, method_options
    from dpdl.config import get_profile
    assert [paper_lam(d) for d in ("elpv", "sdd", "mvtec_carpet", "brainmri", "headct")] == [0.01] * 3 + [1.0] * 2
    for ds, lam in (("elpv", 0.01), ("brainmri", 1.0)):
        cfg = RunConfig(**P.RunSpec(ds).config("cpu"))
        assert cfg.lam == lam and method_options(cfg, get_profile("cpu"))["lam"] == lam
        assert RunConfig(dataset=ds).lam == lam                     # `dpdl train` without --lam
    assert P.RunSpec("elpv", variant="lam=1", overrides=(("lam", 1.0),)).config("cpu")["lam"] == 1.0
    assert P.variant_tag({"lam": 1.0}, dataset="brainmri") == "full"
    assert P.variant_tag({"lam": 0.01}, dataset="brainmri") == "lam=0.01"
    assert P.record_variant({"dataset": "elpv", "lam": 1.0}) == "lam=1"


def test_records_with_the_old_lambda_are_outdated():
    """A study record of ELPV's "full" made with λ = 1 (before λ per dataset) is outdated; its "lam=1" is not."""
    from dpdl.study.outdated import method_changes
    from dpdl.train import RunConfig, method_options
    from dpdl.config import get_profile

    def record(tag, ds, lam):
        over = tuple(sorted(P.parse_variant(tag).items()))
        cfg = RunConfig(**{**P.RunSpec(ds, variant=tag, overrides=over).config("cpu"), "lam": lam})
        return {"config": cfg.to_dict(), "method_options": method_options(cfg, get_profile("cpu")),
                "study": {"variant": tag}}
    assert method_changes(record("full", "elpv", 1.0), "cpu") == ["method:lam"]
    assert method_changes(record("full", "elpv", 0.01), "cpu") == []
    assert method_changes(record("lam=1", "elpv", 1.0), "cpu") == []
    assert method_changes(record("full", "brainmri", 1.0), "cpu") == []
    assert method_changes(record("no_dfl", "sdd", 1.0), "cpu") == ["method:lam"]


def test_clean_stale_tmp(tmp_path):
    tmp = tmp_path / "runs" / "smoke" / ".tmp"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp / f"a__run-{dead.pid}").mkdir(parents=True)
    (tmp / f"b__run-{os.getppid()}").mkdir()          # a live process: another sweep's run in flight
    removed = runner.clean_stale_tmp("smoke", tmp_path)
    assert removed == [f"a__run-{dead.pid}"]
    assert (tmp / f"b__run-{os.getppid()}").exists()


def _record(root, rid, dataset, setting, kc, m, seed, auc, status="ok", **cfg):
    d = root / "runs" / "t" / rid
    d.mkdir(parents=True)
    config = dict(dataset=dataset, setting=setting, known_class=kc, anomalies=m, seed=seed, heads="n,a,r",
                  prototypes=32, eps=1e-3, kappa=10.0, lam=0.01, use_dpl=True, use_dfl=True)
    config.update(cfg)
    rec = dict(status=status, error=None if status == "ok" else "boom", run_id=rid, dataset=dataset, setting=setting,
               known_class=kc, anomalies=m, seed=seed, config=config, metrics={"auc": auc, "ap": auc},
               timings={"total_s": 1.0})
    (d / "run.json").write_text(json.dumps(rec))


def test_table_arithmetic_on_handmade_records(tmp_path):
    """mean/std/n over seeds; hard = per-seed mean over known classes; failed runs ignored; paired seeds."""
    r = tmp_path
    for s, a in enumerate([0.8, 0.9, 0.7]):
        _record(r, f"elpv__general__M10__s{s}__full", "elpv", "general", None, 10, s, a)
    _record(r, "elpv__general__M10__s3__full", "elpv", "general", None, 10, 3, 0.1, status="failed")
    for s, (a, b) in enumerate([(0.6, 0.8), (0.7, 0.9)]):
        _record(r, f"elpv__hard-mono__M10__s{s}__full", "elpv", "hard", "mono", 10, s, a)
        _record(r, f"elpv__hard-poly__M10__s{s}__full", "elpv", "hard", "poly", 10, s, b)
    _record(r, "elpv__hard-mono__M10__s2__full", "elpv", "hard", "mono", 10, 2, 0.5)   # poly missing: dropped
    _record(r, "elpv__general__M10__s0__no_dpl", "elpv", "general", None, 10, 0, 0.5, use_dpl=False)
    _record(r, "elpv__general__M10__s1__no_dpl", "elpv", "general", None, 10, 1, 0.6, use_dpl=False)
    _record(r, "elpv__general__M10__s0__C=8", "elpv", "general", None, 10, 0, 0.75, prototypes=8)
    t1 = tables.table1("t", r, reasons={})
    row = t1[(t1["key"] == "elpv") & (t1["M"] == 10)].iloc[0]
    assert row.n == 3 and np.isclose(row.ours_mean, 0.8) and np.isclose(row.ours_std, np.std([.8, .9, .7], ddof=1))
    assert np.isclose(row.paper_mean, 0.937) and np.isclose(row["diff"], 0.8 - 0.937)
    assert row["AHL (reported)"] == 0.850
    assert t1[(t1["key"] == "sdd")].iloc[0].status.startswith("not run here")
    t2 = tables.table2("t", r, reasons={})
    row = t2[(t2["key"] == "elpv") & (t2["M"] == 10)].iloc[0]
    assert row.n == 2 and np.isclose(row.ours_mean, np.mean([0.7, 0.8])) and row.known_classes == 2
    t6 = tables.table6("t", r, reasons={})
    mono = t6[(t6["key"] == "elpv") & (t6["known_class"] == "mono") & (t6["M"] == 10)].iloc[0]
    assert mono.n == 3 and np.isclose(mono.ours_mean, 0.6) and np.isclose(mono.paper_mean, 0.793)
    f2 = tables.fig2("t", r).set_index("variant")
    assert f2.loc["full", "n"] == 2 and np.isclose(f2.loc["full", "ours_mean"], 0.85)   # paired with no_dpl
    assert np.isclose(f2.loc["no_dpl", "ours_mean"], 0.55)
    f3 = tables.fig3("t", r)
    c = f3[f3["param"] == "prototypes"].set_index("value")
    assert c.loc[8.0, "n"] == 1 and c.loc[32.0, "n"] == 1 and np.isclose(c.loc[32.0, "ours_mean"], 0.8)
    from dpdl.book.pages import main_view
    shown = main_view(t1)
    assert "ours [95 % CI]" in shown and "best reported baseline" in shown
    assert set(shown["dataset"]) == {"ELPV"}          # rows not run here become one line, not table rows


def test_default_jobs():
    assert runner.default_jobs("smoke") == max(1, (os.cpu_count() or 1))   # smoke pins one thread per run
    assert runner.default_jobs("paper") == 1


def test_a_dpdl_record_made_with_another_reading_is_outdated():
    from dataclasses import asdict
    from dpdl.config import get_profile
    from dpdl.methods.dpdl.model import PRINTED_READING, DPDLConfig
    from dpdl.train import RunConfig, method_options
    cfg = RunConfig("synthetic", profile="smoke")
    now = method_options(cfg, get_profile("smoke"))
    from dpdl.methods import method_class
    rec = {"config": cfg.to_dict(), "profile_settings": get_profile("smoke").to_dict(),
           "method_options": {**now, "heads": list(now["heads"])},
           "records_version": method_class("dpdl").records_version}
    assert runner.outdated_fields(rec, "smoke") == []
    old = {k: v for k, v in now.items() if k not in PRINTED_READING}   # a record from before the readings existed
    assert set(runner.outdated_fields({**rec, "method_options": None, "dpdl_config": old}, "smoke")) == \
        {f"method:{k}" for k, v in PRINTED_READING.items() if v != asdict(DPDLConfig())[k]}
    dra = RunConfig("synthetic", profile="smoke", method="dra")
    assert runner.outdated_fields({"config": dra.to_dict(), "profile_settings": rec["profile_settings"],
                                   "method_options": method_options(dra, get_profile("smoke"))}, "smoke") == []
