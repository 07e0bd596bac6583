"""Fast checks of the book's machinery: toc, rerun commands, provenance and timing tables, number formats, the site
checker, publishing (no build). The claims and tables are tested in test_book_claims.py."""
from __future__ import annotations

import json
import math

import pytest

from dpdl import book
from dpdl.book import pages, records, render
from dpdl.paths import REPO_ROOT
from dpdl.study.analysis import load_runs


def test_toc_names_existing_pages_and_report_notebooks():
    files = book.toc_files(REPO_ROOT / "_toc.yml")
    assert files[0] == "book/_generated/report_summary"
    names = book.report_notebooks(REPO_ROOT / "_toc.yml")
    for mine in ("report_summary", "report_performance", "report_provenance"):
        assert mine in names
    assert book.check_toc(REPO_ROOT, REPO_ROOT / "notebooks") == []


def test_check_toc_reports_missing_pages(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "here.md").write_text("# Here\n")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/here\nchapters:\n  - file: book/gone\n  - file: book/_generated/report_x\n")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "report_unlisted.ipynb").write_text("{}")
    problems = book.check_toc(tmp_path, tmp_path / "notebooks")
    assert len(problems) == 3
    assert "book/gone" in problems[0] and "notebooks/report_x.ipynb" in problems[1]
    assert "report_unlisted.ipynb" in problems[2] and "does not list" in problems[2]


def _record(run_id, dataset, setting, anomalies, seed, auc, known_class=None, variant="full", status="ok"):
    return {"schema": 1, "status": status, "error": None, "run_id": run_id, "profile": "cpu",
            "config": {"dataset": dataset, "setting": setting, "known_class": known_class, "anomalies": anomalies,
                       "seed": seed, "profile": "cpu", "use_dpl": variant != "no_dpl", "use_dfl": True,
                       "heads": "n,a,r", "prototypes": 32, "eps": 1e-3, "kappa": 10.0, "lam": 0.01},
            "dataset": dataset, "setting": setting, "known_class": known_class, "anomalies": anomalies,
            "seed": seed, "backbone": "mobilenet_v2", "variant": variant,
            "metrics": {"auc": auc, "ap": auc}, "split": {"fingerprint": "0123456789abcdef"},
            "timings": {"total_s": 10.0 + seed, "features_s": 4.0, "train_s": 5.0, "test_s": 1.0},
            "code_version": "abc", "date": "2026-01-01T00:00:00+00:00",
            "host": {"device": "cpu", "torch": "2", "cpu_count": 2}}


def _records_frame(tmp_path, recs):
    for r in recs:
        d = tmp_path / "runs" / "cpu" / r["run_id"]
        d.mkdir(parents=True)
        from dpdl.records import atomic_write_json
        atomic_write_json(d / "run.json", r)
    return load_runs("cpu", tmp_path, include_failed=True)


def test_empty_results_give_not_run_everywhere(tmp_path):
    frame = load_runs("cpu", tmp_path, include_failed=True)
    assert records.provenance_table(tmp_path, "cpu", records=frame).empty
    perf = records.performance_tables(tmp_path, "cpu", records=frame)
    assert perf["per_run"].empty and perf["benchmarks"] == []
    assert pages.rerun_box("cpu", tmp_path) == ""


def test_reproduce_command_and_provenance(tmp_path):
    rec = _record("elpv__hard-mono__M1__s3__no_dpl", "elpv", "hard", 1, 3, 0.8, known_class="mono",
                  variant="no_dpl")
    rec["config"]["prototypes"] = 16
    cmd = records.reproduce_command(rec)
    assert cmd.startswith("dpdl train --dataset elpv --setting hard --known-class mono --anomalies 1 --seed 3")
    assert cmd.endswith("--run-id elpv__hard-mono__M1__s3__no_dpl --out reruns/cpu/elpv__hard-mono__M1__s3__no_dpl")
    assert "--profile cpu" in cmd and "--no-dpl" in cmd and "--prototypes 16" in cmd
    assert "--no-dfl" not in cmd and "--eps" not in cmd
    prov = records.provenance_table(tmp_path, "cpu", records=_records_frame(tmp_path, [rec]))
    assert list(prov.columns) == ["run_id", "status", "auc", "code_version", "profile", "seed", "fingerprint", "date",
                                  "groups", "command", "error"]
    assert prov.loc[0, "command"] == cmd and prov.loc[0, "fingerprint"] == "0123456789abcdef"


def _validated(cmd: str):
    """Parse a rerun command with the CLI's own parser and check it with dpdl.train.validate (as `dpdl train` does)."""
    import shlex

    from dpdl.cli import build_parser
    from dpdl.train import RunConfig, validate

    argv = shlex.split(cmd)
    assert argv[:2] == ["dpdl", "train"]
    a = build_parser().parse_args(argv[1:])
    cfg = RunConfig(dataset=a.dataset, setting=a.setting, known_class=a.known_class, anomalies=a.anomalies,
                    seed=a.seed, profile=a.profile, backbone=a.backbone, method=a.method, use_dpl=not a.no_dpl,
                    use_dfl=not a.no_dfl, heads=a.heads, prototypes=a.prototypes, eps=a.eps, kappa=a.kappa, lam=a.lam,
                    out=a.out, run_id=a.run_id)
    validate(cfg)
    return cfg


@pytest.mark.parametrize("dataset", ["aitex", "brainmri"])
def test_rerun_commands_parse_validate_and_keep_lambda(dataset):
    from dpdl.methods.dpdl.model import paper_lam

    # a baseline record whose config stored DPDL's options (lam 1.0 from an older default): none reach its command
    base = _record(f"{dataset}__general__M10__s0__devnet", dataset, "general", 10, 0, 0.7, variant="devnet")
    base["method"] = "devnet"
    base["config"].update(method="devnet", lam=1.0, prototypes=16)
    cfg = _validated(records.reproduce_command(base))
    assert cfg.method == "devnet"
    # a DPDL record at the other λ than the dataset's paper λ: its command reruns that λ, not the default
    other = 1.0 if paper_lam(dataset) == 0.01 else 0.01
    rec = _record(f"{dataset}__general__M10__s0__lam", dataset, "general", 10, 0, 0.8, variant=f"lam={other:g}")
    rec["config"]["lam"] = other
    cmd = records.reproduce_command(rec)
    assert math.isclose(_validated(cmd).lam, other) and f"--lam {other}" in cmd
    # the dataset's full run: no --lam, and rerun with that dataset's λ
    rec["config"]["lam"] = paper_lam(dataset)
    cmd = records.reproduce_command(rec)
    assert "--lam" not in cmd
    from dpdl.methods.dpdl.model import paper_defaults
    cfg = _validated(cmd)
    assert math.isclose(cfg.lam, paper_defaults(dataset)["lam"])


def test_performance_tables(tmp_path):
    frame = _records_frame(tmp_path, [_record(f"e{s}", "elpv", "general", 10, s, 0.9) for s in range(2)])
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "cache.json").write_text('{"command": "python benchmarks/x.py", "speedup": 3}')
    perf = records.performance_tables(tmp_path, "cpu", records=frame)
    assert math.isclose(float(perf["study"]["sum of in-process times (h)"].iloc[0]), 21.0 / 3600)
    assert set(perf["breakdown"].part) >= {"features_s", "train_s", "test_s"}
    other = perf["breakdown"].set_index("part").loc["other_s (total_s minus the above)", "mean_s"]
    assert math.isclose(other, 10.5 - 10.0)
    assert perf["benchmarks"][0][0] == "cache.json"


def test_profile_banner_names_the_profile():
    text = book.profile_banner("cpu", "report_table1_general")
    assert "Profile: cpu" in text and "deviations.md" in text and "report_provenance.ipynb" in text
    assert text.count("cpu") == 2  # the title and "the **cpu** profile", not a third time in the body
    assert "from the data" in book.profile_banner("smoke", "report_table4_datasets")


def test_check_site_finds_broken_links(tmp_path):
    (tmp_path / "index.html").write_text(
        '<html><body><h1 id="top">x</h1><a href="page.html#sec">ok</a><a href="gone.html">bad</a>'
        '<img src="_static/missing.png"><a href="#top">self</a><a href="#nope">bad anchor</a>'
        '<a href="https://example.org">reader link, fine</a>'
        '<script src="https://cdn.example.org/x.js"></script></body></html>')
    (tmp_path / "page.html").write_text('<html><body><section id="sec"></section></body></html>')
    problems = book.check_site(tmp_path)
    text = "\n".join(problems)
    assert "gone.html" in text and "missing.png" in text and "#nope" in text and "cdn.example.org" in text
    assert "page.html#sec" not in text and "example.org\"" not in text and len(problems) == 4


def _report_notebook(tmp_path, name: str, source: str):
    """notebooks/<name>.ipynb under tmp_path: the report parameters cell, then one code cell; returns the folder."""
    import nbformat

    nbdir = tmp_path / "notebooks"
    nbdir.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('profile = "cpu"\nresults_dir = "results"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nbdir / f"{name}.ipynb")
    return nbdir


def test_book_error_names_the_failing_notebook(tmp_path):
    nbdir = _report_notebook(tmp_path, "report_broken", "raise RuntimeError('no records')")
    with pytest.raises(book.BookError, match=r"notebooks/report_broken\.ipynb failed \(RuntimeError: no records\)"):
        book.execute_reports(["report_broken"], nbdir, tmp_path / "gen", "cpu", tmp_path, log=lambda *_: None)


def test_choice_table_reads_the_choice_benchmarks_and_keeps_them_out_of_the_raw_dump(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    rows = [{"setting": "general", "anomalies": 10, "auc": a, "paper_dpdl": 0.937, "paper_best_baseline": 0.85}
            for a in (0.8, 0.9)]
    payload = {"choice": "deviation_d4", "overrides": {"head_loss": "deviation", "feature_aug": "d4"}, "rows": rows,
               "cells": {"general M=10": {"mean": 0.85, "sd": 0.0707, "n": 2}}, "code_version": "abc"}
    (tmp_path / "benchmarks" / "elpv_cpu_choice_deviation_d4.json").write_text(json.dumps(payload))
    table = records.choice_table(tmp_path)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["choice"], row["profile fields"], row["cell"]) == ("deviation_d4", "feature_aug=d4, head_loss=deviation",
                                                                   "general M=10")
    assert math.isclose(row["AUC mean"], 0.85) and row["paper DPDL"] == 0.937 and row["best baseline"] == 0.85
    assert records.performance_tables(tmp_path, "cpu", records=load_runs("cpu", tmp_path))["benchmarks"] == []
    assert records.choice_table(tmp_path / "nothing").empty
    (tmp_path / "benchmarks" / "elpv_cpu_choice_broken.json").write_text('{"cells": {"general M=10": {}}}')
    table = records.choice_table(tmp_path)
    bad = table[table["file"] == "elpv_cpu_choice_broken.json"].iloc[0]
    assert "not a choice benchmark file" in bad["error"] and len(table) == 2


def test_kernel_stderr_goes_to_a_log_beside_the_notebook_not_to_the_build_output(tmp_path, capfd):
    import nbformat

    nbdir = _report_notebook(tmp_path, "report_noisy",
                             'get_ipython().kernel.log.error("kernel noise 4711")\nprint("cell output")')
    book.execute_reports(["report_noisy"], nbdir, tmp_path / "gen", "cpu", tmp_path, log=lambda *_: None)
    out, err = capfd.readouterr()
    assert "kernel noise 4711" not in out + err
    assert "kernel noise 4711" in book.kernel_log_path(tmp_path / "gen" / "report_noisy.ipynb").read_text()
    executed = nbformat.read(tmp_path / "gen" / "report_noisy.ipynb", as_version=4)
    assert any("cell output" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))


def test_numbers_are_printed_readably():
    assert render.num(1e-4) == "1e-04" and render.num(0.001) == "1e-03"     # not "0.000"
    from dpdl.study.claims import _num
    assert _num(1e-4) == "1e-04" and _num(0.01) == "0.01" and _num(32.0) == "32"   # Fig. 3's parameter values
    assert render.num(0.8481) == "0.848" and render.num(-0.0224, signed=True) == "-0.022"
    assert render.num(32) == "32" and render.num(1.0) == "1.000" and render.num(float("nan")) == ""
    assert render.mean_ci(0.8, 0.75, 0.85) == "0.800 [0.750, 0.850]" and render.mean_ci(0.8, float("nan"), 1) == "0.800"


def test_rerun_box_gives_one_command_its_auc_and_time(tmp_path):
    frame = _records_frame(tmp_path, [_record(f"elpv__general__M10__s{s}__full", "elpv", "general", 10, s, 0.8 + s / 100)
                                      for s in (1, 0)])
    box = pages.rerun_box("cpu", tmp_path, frame[frame["status"] == "ok"])
    assert box.count("```bash") == 1 and "--seed 0" in box and "0.8000" in box and "took 10 s" in box


def test_not_reachable_rows_become_one_line():
    import pandas as pd

    df = pd.DataFrame({"dataset": ["A", "B"], "n": [0, 0], "status": ["not run here (needs a data root)"] * 2})
    line = pages.not_reachable(df, "cpu", "table5", "Table 5")
    assert line.count("\n") == 0 and "A, B (their data need a data root)" in line
    assert "--only table5 --data-root PATH" in line
    mixed = pages.not_reachable(df.assign(status=["not run here (needs a data root)", "not run here"]), "cpu", "t", "T")
    assert "A (their data need a data root); B (not run in this profile)" in mixed
    assert pages.not_reachable(df.assign(n=[3, 3]), "cpu", "table5", "Table 5") is None


def test_publish_commits_the_site_to_gh_pages(tmp_path, monkeypatch):
    import subprocess

    for who in ("AUTHOR", "COMMITTER"):   # ghp-import commits with git's identity: give the test one
        monkeypatch.setenv(f"GIT_{who}_NAME", "t")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "t@example.org")
    from dpdl.book.publish import PublishError, publish

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "README.md").write_text("x\n")
    subprocess.run(git + ["add", "README.md"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-qm", "init"], cwd=repo, check=True)
    with pytest.raises(PublishError, match="index.html is missing"):
        publish(repo / "_build" / "html", repo)
    html = repo / "_build" / "html"
    (html / "_static").mkdir(parents=True)
    (html / "index.html").write_text("<html>book</html>")
    (html / "_static" / "dpdl.css").write_text("body {}")
    commit = publish(html, repo, message="site")
    files = subprocess.run(["git", "ls-tree", "-r", "--name-only", "gh-pages"], cwd=repo, capture_output=True,
                           text=True, check=True).stdout.split()
    assert sorted(files) == [".nojekyll", "_static/dpdl.css", "index.html"]
    assert commit and subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=repo, capture_output=True,
                                         text=True).stdout.strip() == "main"   # the work tree is left alone


def test_deviations_page_types_no_number_by_hand():
    import re

    text = (REPO_ROOT / "book" / "deviations.md").read_text(encoding="utf-8")
    assert not re.findall(r"\b0\.\d{3}\b", text), "an AUC typed by hand: link the generated table instead"
    assert "Which data chose each choice" in text


def test_main_view_of_a_dataset_the_paper_lacks():
    import pandas as pd

    df = pd.DataFrame({"dataset": ["synthetic", "ELPV"], "key": ["synthetic", "elpv"], "M": [10, 10], "n": [2, 2],
                       "ours_mean": [0.7, 0.8], "ours_std": [0.1, 0.1], "ci_lo": [0.6, 0.7], "ci_hi": [0.8, 0.9],
                       "paper_mean": [float("nan"), 0.937], "diff": [float("nan"), -0.137],
                       "status": ["measured"] * 2, "AHL (reported)": [float("nan"), 0.85],
                       "DRA (reported)": [float("nan"), 0.79]})
    view = pages.main_view(df)
    assert list(view["best reported baseline"]) == ["", "AHL 0.850"]
    assert list(view["verdict"]) == ["not testable here", "not reproduced"]


def test_performance_page_gpu_figures_come_from_records_or_say_none_exist(tmp_path, monkeypatch):
    import json as _json

    from dpdl.book.about import gpu_tables
    monkeypatch.setenv("DPDL_SHARED", str(tmp_path / "shared"))
    g = gpu_tables(tmp_path)
    assert g["check"] is None and g["runs"].empty
    run = tmp_path / "runs" / "paper" / "brainmri__general__M10__s0__full"
    run.mkdir(parents=True)
    rec = {"status": "ok", "host": {"device": "cuda", "device_name": "NVIDIA H100"}, "backbone": "resnet18",
           "variant": "full", "dataset": "brainmri", "anomalies": 10, "metrics": {"auc": 0.9},
           "timings": {"total_s": 50.0, "train_s": 40.0, "steps": 1000}}
    (run / "run.json").write_text(_json.dumps(rec))
    cpu = tmp_path / "runs" / "paper" / "cpu_run"
    cpu.mkdir()
    (cpu / "run.json").write_text(_json.dumps({**rec, "host": {"device": "cpu"}}))   # not a GPU record
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "gpu_check.json").write_text(_json.dumps({"device": "NVIDIA H100"}))
    g = gpu_tables(tmp_path)
    assert g["check"] == {"device": "NVIDIA H100"}
    assert list(g["runs"]["record"]) == ["brainmri__general__M10__s0__full"]
    assert g["runs"]["wall ms / step"].iloc[0] == 40.0


def test_step_table_reads_the_step_benchmark(tmp_path):
    from dpdl.book.records import step_table
    assert step_table(tmp_path).empty
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "step_cpu.json").write_text(json.dumps({
        "command": "python bench_step_cpu.py", "target_ratio": 1.5, "results": {
            "devnet": {"batch": 48, "step_ms": 10.0, "ratio_to_devnet": 1.0, "step_cpu_ms": 9.0,
                       "cpu_ratio_to_devnet": 1.0, "flops_adapter": 5e8},
            "hgad": {"batch": 48, "step_ms": 30.0, "ratio_to_devnet": 3.0, "step_cpu_ms": 27.0,
                     "cpu_ratio_to_devnet": 3.0, "flops_adapter": 0}}}))
    df = step_table(tmp_path).set_index("method")
    assert df.loc["HGAD", "× DevNet"] == 3.0 and df.loc["DevNet", "adapter fwd+bwd (GFLOP)"] == 0.5
    assert df.attrs["command"] == "python bench_step_cpu.py"
    assert "step GFLOP" not in df                      # a file from before the FLOP columns: none shown


def test_step_table_shows_the_flop_columns_when_measured(tmp_path):
    from dpdl.book.records import step_table
    (tmp_path / "benchmarks").mkdir()
    row = {"batch": 48, "step_ms": 10.0, "ratio_to_devnet": 1.0, "step_cpu_ms": 10.0, "cpu_ratio_to_devnet": 1.0,
           "flops_adapter": 5e8, "flops_step": 5e8, "gflops_per_s": 50.0, "flops_ratio_to_devnet": 1.0,
           "peak_ratio_to_devnet": 0.5}
    (tmp_path / "benchmarks" / "step_cpu.json").write_text(json.dumps({"peak_gflops_per_s": 100.0, "results": {
        "devnet": row, "dra": {**row, "flops_step": 2.5e9, "flops_ratio_to_devnet": 5.0, "peak_ratio_to_devnet": 2.5}}}))
    df = step_table(tmp_path).set_index("method")
    assert df.loc["DRA", "step GFLOP"] == 2.5 and df.loc["DRA", "FLOPs × DevNet's"] == 5.0
    assert df.loc["DRA", "at peak × DevNet"] == 2.5 and df.attrs["peak"] == 100.0


def test_step_table_shows_the_compiled_columns_only_when_measured(tmp_path):
    from dpdl.book.records import step_table
    (tmp_path / "benchmarks").mkdir()
    row = {"batch": 48, "step_ms": 10.0, "ratio_to_devnet": 1.0, "step_cpu_ms": 9.0, "cpu_ratio_to_devnet": 1.0,
           "flops_adapter": 5e8}
    path = tmp_path / "benchmarks" / "step_cpu.json"
    path.write_text(json.dumps({"results": {"devnet": row}}))
    assert "compiled speed-up" not in step_table(tmp_path)
    path.write_text(json.dumps({"compiled": True, "results": {
        "devnet": {**row, "compiled_step_cpu_ms": 12.0, "compiled_speedup_cpu": 0.75,
                   "compiled_first_total_rel_diff": 1e-7},
        "hgad": {**row, "compile_error": "Unsupported: a graph break"}}}))
    df = step_table(tmp_path).set_index("method")
    assert df.loc["DevNet", "compiled speed-up"] == 0.75 and df.loc["HGAD", "compile error"].startswith("Unsupported")
    row_ok = {"devnet": {**row, "compiled_step_cpu_ms": 12.0, "compiled_speedup_cpu": 0.75,
                         "compiled_first_total_rel_diff": 0.0}}
    path.write_text(json.dumps({"compiled": True, "results": row_ok}))
    assert "compile error" not in step_table(tmp_path)


def test_step_verdict_names_who_meets_the_target_and_who_cannot(tmp_path):
    import pandas as pd
    from dpdl.book.about import step_verdict
    steps = pd.DataFrame({"method": ["DevNet", "DRA", "DPDL", "kNN-like"], "CPU × DevNet": [1.0, 4.0, 5.9, 1.2],
                          "at peak × DevNet": [0.5, 2.4, 0.96, 0.3]})
    steps.attrs["target"] = 1.5
    text = step_verdict(steps, tmp_path)                     # no study_time.json: no study sentence
    assert "kNN-like meets the step target of 1.5×" in text and "For DRA the counted FLOPs" in text
    assert "DPDL" not in text and "whole study" not in text
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "study_time.json").write_text(json.dumps({
        "profile": "cpu", "runs": 1115, "jobs": 2, "projected_study_wall_min": 168.5, "projected_at_devnet_rate_min": 100.0,
        "command": "python benchmarks/bench_study_time.py"}))
    assert "cpu-profile study (1,115 runs, 2 jobs, this 2-core machine) projects at 168.5 min" in step_verdict(
        steps, tmp_path)
    assert "No method but DevNet itself meets" in step_verdict(steps[steps["method"] != "kNN-like"], tmp_path)
