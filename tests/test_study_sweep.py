"""The sweep end to end through papermill on the `synthetic` data (smoke profile): resume after kill -9,
a failing run recorded as failed while the others finish, the two-worker Dask executor, the tables' numbers."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dpdl.paths import REPO_ROOT
from dpdl.study import plan as P
from dpdl.study import runner, tables

pytestmark = pytest.mark.slow
PY = sys.executable


class Result:
    def __init__(self, rc, stdout):
        self.returncode, self.stdout = rc, stdout


def cli(*args, results_dir, check=True):
    """``dpdl study ...`` in this process (the CLI's code path without a second interpreter's start-up)."""
    import contextlib
    import io

    from dpdl.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["study", *args, "--results-dir", str(results_dir)])
    if check:
        assert rc == 0, buf.getvalue()
    return Result(rc, buf.getvalue())


def make_smoke_results(tmp_path_factory) -> Path:
    """The whole smoke study, run once per test session (a second call resumes: nothing left to run)."""
    root = tmp_path_factory.getbasetemp() / "smoke_results"
    cli("run", "--profile", "smoke", "--no-progress", "--no-tables", results_dir=root)
    return root


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory):
    return make_smoke_results(tmp_path_factory)


def run_dirs(root, profile="smoke"):
    return sorted(p for p in (root / "runs" / profile).iterdir() if p.name != ".tmp")


def snapshot(root):
    return {p.name: ((p / "run.json").stat().st_mtime_ns, (p / "run.json").read_bytes()) for p in run_dirs(root)}


def test_smoke_sweep_end_to_end(smoke_results):
    dirs = run_dirs(smoke_results)
    assert [d.name for d in dirs] == sorted(r.run_id for r in P.expand("smoke").runs)
    for d in dirs:
        rec = json.loads((d / "run.json").read_text())
        assert rec["status"] == "ok", rec.get("error")
        assert rec["run_id"] == d.name and rec["profile"] == "smoke"
        assert 0.0 <= rec["metrics"]["auc"] <= 1.0
        assert (d / "experiment.ipynb").exists()
    assert not list((smoke_results / "runs" / "smoke" / ".tmp").glob("*"))
    before = snapshot(smoke_results)
    res = cli("run", "--profile", "smoke", "--no-progress", "--no-tables", results_dir=smoke_results)
    n = len(P.expand("smoke").runs)
    assert "0 to run" in res.stdout and f"{n} done" in res.stdout
    assert snapshot(smoke_results) == before                 # rerunning never recomputes a finished run
    st = cli("status", "--profile", "smoke", results_dir=smoke_results).stdout
    assert "table1" in st and "fig3" in st
    assert [l for l in st.splitlines() if l.startswith("all")][0].split()[1:4] == [str(n), "0", "0"]


def test_tables_equal_mean_of_records(smoke_results):
    cli("tables", "--profile", "smoke", results_dir=smoke_results)
    out = smoke_results / "tables" / "smoke"
    assert {p.name for p in out.glob("*.csv")} == set(tables.TABLE_FILES.values())
    recs = [json.loads(p.read_text()) for p in (smoke_results / "runs" / "smoke").glob("*/run.json")]
    df = pd.DataFrame([dict(setting=r["setting"], kc=r["known_class"], m=r["anomalies"], seed=r["seed"],
                            variant=r["variant"], auc=r["metrics"]["auc"]) for r in recs])
    t1 = pd.read_csv(out / "table1_general.csv")
    t2 = pd.read_csv(out / "table2_hard.csv")
    t6 = pd.read_csv(out / "table6_hard_per_class.csv")
    for m in (10, 1):
        ours = df[(df.setting == "general") & (df.m == m) & (df.variant == "full")].auc
        row = t1[(t1.key == "synthetic") & (t1.M == m)].iloc[0]
        assert row.n == len(ours) == 2
        assert np.isclose(row.ours_mean, ours.mean()) and np.isclose(row.ours_std, ours.std(ddof=1))
        hard = df[(df.setting == "hard") & (df.m == m) & (df.variant == "full")]
        per_seed = hard.groupby("seed").auc.mean()
        row = t2[(t2.key == "synthetic") & (t2.M == m)].iloc[0]
        assert row.n == len(per_seed) and np.isclose(row.ours_mean, per_seed.mean())
        row = t6[(t6.key == "synthetic") & (t6.M == m) & (t6.known_class == "scratch")].iloc[0]
        assert np.isclose(row.ours_mean, hard[hard.kc == "scratch"].auc.mean())
    f2 = pd.read_csv(out / "fig2_ablation.csv")
    for var in ("no_dpl", "no_dfl"):
        ours = df[(df.setting == "general") & (df.m == 10) & (df.variant == var)].auc
        assert np.isclose(f2[f2.variant == var].ours_mean.iloc[0], ours.mean())
    f3 = pd.read_csv(out / "fig3_sensitivity.csv")
    assert set(f3[f3.param == "prototypes"].value) == {8.0, 32.0}
    # datasets the paper has and this run had not are marked, never blank
    assert t1[t1.key == "elpv"].status.str.startswith("not run here").all()


def test_resume_after_kill(smoke_results, tmp_path):
    root = tmp_path / "res"
    shutil.copytree(smoke_results, root)
    base = root / "runs" / "smoke"
    missing = ["synthetic__general__M1__s1__full"]
    for rid in missing:
        shutil.rmtree(base / rid)
    before = snapshot(root)
    proc = subprocess.Popen([PY, "-m", "dpdl.cli", "study", "run", "--profile", "smoke", "--only", "table1",
                             "--no-progress", "--no-tables", "--results-dir", str(root)], cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list((base / ".tmp").glob("*")):
            time.sleep(0.2)
        assert list((base / ".tmp").glob("*")), "the sweep never started a run"
        time.sleep(2.0)                                    # mid-run: the kernel is up
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)            # the orphaned run processes/kernels of the sweep
        except ProcessLookupError:
            pass
    visible = run_dirs(root)
    for d in visible:                                      # no partial run folder is visible
        assert (d / "run.json").exists() and (d / "experiment.ipynb").exists(), d
    assert {d.name for d in visible} >= set(before)
    res = cli("run", "--profile", "smoke", "--only", "table1", "--no-progress", "--no-tables", results_dir=root)
    assert "removed" in res.stdout or len(run_dirs(root)) > len(visible)
    after = snapshot(root)
    for rid, snap in before.items():
        assert after[rid] == snap, f"{rid} was recomputed"
    for rid in missing:
        assert json.loads((base / rid / "run.json").read_text())["status"] == "ok"
    assert not list((base / ".tmp").glob("*"))


def test_failed_run_recorded_and_others_finish(smoke_results, tmp_path):
    root = tmp_path / "res"
    shutil.copytree(smoke_results, root)
    good = "synthetic__general__M1__s1__full"
    shutil.rmtree(root / "runs" / "smoke" / good)
    bad = P.RunSpec("synthetic", "general", None, 10000, 0, "full")
    specs = [bad] + [r for r in P.expand("smoke", only=["table1"]).runs]
    res = runner.run_specs(specs, "smoke", root, progress=False, log=lambda s: None, jobs=1)
    assert res["ran"] == 2 and res["ok"] == 1 and res["failed_now"] == 1
    rec = json.loads((root / "runs" / "smoke" / bad.run_id / "run.json").read_text())
    assert rec["status"] == "failed" and "10000" in rec["error"] and "\n" not in rec["error"]
    nb = (root / "runs" / "smoke" / bad.run_id / "experiment.ipynb").read_text()
    assert "10000" in nb                                   # the executed notebook keeps the error
    assert json.loads((root / "runs" / "smoke" / good / "run.json").read_text())["status"] == "ok"
    again = runner.run_specs(specs, "smoke", root, progress=False, log=lambda s: None)
    assert again["ran"] == 0 and again["failed_before"] == 1      # failed runs are not retried by default
    st = runner.study_status(P.expand("smoke", only=["table1"]), root)
    assert st["groups"]["table1"]["done"] and not st["groups"]["table1"]["pending"]
    t1 = tables.table1("smoke", root, reasons={})
    assert t1[(t1.key == "synthetic") & (t1.M == 10)].n.iloc[0] == 2     # the failed run is not averaged


def test_dask_two_workers(smoke_results, tmp_path):
    specs = P.expand("smoke", only=["table1"], seeds=1).runs
    res = runner.run_specs(specs, "smoke", tmp_path, executor="dask", workers=2, progress=False,
                           log=lambda s: None)
    assert res["ok"] == len(specs) >= 2, res["results"]
    for s in specs:
        d = json.loads((tmp_path / "runs" / "smoke" / s.run_id / "run.json").read_text())
        ref = json.loads((smoke_results / "runs" / "smoke" / s.run_id / "run.json").read_text())
        assert d["status"] == "ok"
        assert d["split"]["fingerprint"] == ref["split"]["fingerprint"]
        assert abs(d["metrics"]["auc"] - ref["metrics"]["auc"]) < 0.05
    assert not list((tmp_path / "runs" / "smoke" / ".tmp").glob("*"))


def test_runs_made_with_other_profile_settings_are_kept_unless_asked(smoke_results, tmp_path):
    root = tmp_path / "res"
    shutil.copytree(smoke_results, root)
    specs = P.expand("smoke", only=["table1"]).runs
    path = root / "runs" / "smoke" / specs[0].run_id / "run.json"
    rec = json.loads(path.read_text())
    assert runner.outdated_fields(rec, "smoke") == []
    rec["profile_settings"]["epochs"] += 1          # as if the profile had changed since the run
    del rec["profile_settings"]["feature_aug"]      # an older record: a missing field counts as its default
    path.write_text(json.dumps(rec))
    assert runner.outdated_fields(rec, "smoke") == ["epochs"]
    logs = []
    res = runner.run_specs(specs, "smoke", root, progress=False, log=logs.append, jobs=1)
    assert res["ran"] == 0 and any("--rerun-outdated" in m for m in logs)
    assert json.loads(path.read_text()) == rec                          # the finished result is not lost
    st = runner.study_status(P.expand("smoke", only=["table1"]), root)
    assert st["outdated"] == {specs[0].run_id: ["epochs"]}
    res = runner.run_specs(specs, "smoke", root, progress=False, log=lambda s: None, jobs=1, rerun_outdated=True)
    assert res["ran"] == 1 and res["ok"] == 1
    assert runner.outdated_fields(json.loads(path.read_text()), "smoke") == []


def test_a_record_without_a_later_profile_field_counts_as_its_old_behaviour():
    """Records from before head_loss existed were trained with BCE: under a deviation-loss profile they are
    outdated, under a BCE one they are not."""
    from dpdl.config import get_profile
    rec = {"profile_settings": {k: v for k, v in get_profile("smoke").to_dict().items() if k != "head_loss"}}
    assert get_profile("smoke").head_loss == "deviation"
    assert runner.outdated_fields(rec, "smoke") == ["head_loss"]
    rec["profile_settings"]["head_loss"] = "deviation"
    assert runner.outdated_fields(rec, "smoke") == []
