"""Fast checks of the book's machinery: toc, verdict rule, tables from records, site checker (no build)."""
from __future__ import annotations

import json
import math

import pytest

from dpdl import book
from dpdl.paths import REPO_ROOT


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


def test_verdict_rule():
    assert book.verdict(None, 0.9, 0.8) == "not run here"
    assert book.verdict(float("nan"), 0.9, 0.8) == "not run here"
    assert book.verdict(0.95, 0.9, 0.8) == "supports"
    assert book.verdict(0.9 - book.TOLERANCE + 1e-9, 0.9, 0.8) == "supports"
    assert book.verdict(0.85, 0.9, 0.8) == "below paper, above baselines"
    assert book.verdict(0.75, 0.9, 0.8) == "below baselines"


def _record(run_id, dataset, setting, anomalies, seed, auc, known_class=None, variant="full", status="ok"):
    return {"schema": 1, "status": status, "error": None, "run_id": run_id, "profile": "cpu",
            "config": {"dataset": dataset, "setting": setting, "known_class": known_class, "anomalies": anomalies,
                       "seed": seed, "profile": "cpu", "use_dpl": variant != "no_dpl", "use_dfl": True,
                       "heads": "n,a,r", "prototypes": 32, "eps": 1e-3, "kappa": 10.0, "lam": 1.0},
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
    return book.load_records(tmp_path, "cpu")


def test_summary_table_and_sentence(tmp_path):
    paper = book.load_paper_table("table1_general")
    elpv = paper[(paper.dataset == "ELPV") & (paper.n_anomalies == 10)]
    dpdl = float(elpv[elpv.method == "DPDL"].auc_mean.iloc[0])
    recs = [_record(f"elpv{s}", "elpv", "general", 10, s, dpdl + 0.01 * (s - 1)) for s in range(3)]
    recs.append(_record("elpv_abl", "elpv", "general", 10, 0, 0.1, variant="no_dpl"))   # not the full model
    recs.append(_record("elpv_bad", "elpv", "general", 1, 0, None, status="failed"))
    recs.append(_record("syn0", "synthetic", "general", 10, 0, 0.7))
    frame = _records_frame(tmp_path, recs)
    table = book.summary_table(records=frame, profile="cpu")
    row = table[(table.dataset == "ELPV") & (table.setting == "general") & (table.M == 10)].iloc[0]
    assert row.seeds == 3 and row.runs == 3
    assert math.isclose(row.ours_mean, dpdl, abs_tol=1e-9)
    assert math.isclose(row.ours_std, 0.01, rel_tol=1e-6)   # the sample sd over seeds, as in results/tables
    assert row.verdict == "supports"
    assert (table[table.dataset != "ELPV"].verdict == "not run here").all()
    sentence = book.verdict_sentence(table, "cpu")
    assert "ELPV (general M=10)" in sentence and "cpu" in sentence
    other = book.other_runs_table(records=frame, profile="cpu")
    assert list(other.dataset) == ["synthetic"]


def test_summary_hard_and_mvtec_means(tmp_path):
    recs = [_record(f"c{k}{s}", "mvtec_carpet", "hard", 10, s, a, known_class=k)
            for s in range(2) for k, a in (("color", 0.6), ("cut", 0.8))]
    recs += [_record(f"g{s}", "mvtec_grid", "general", 10, s, 0.5) for s in range(2)]
    recs += [_record(f"b{s}", "mvtec_bottle", "general", 10, s, 0.7) for s in range(2)]
    table = book.summary_table(records=_records_frame(tmp_path, recs), profile="cpu")
    carpet = table[(table.dataset == "Carpet") & (table.M == 10)].iloc[0]
    assert math.isclose(carpet.ours_mean, 0.7) and carpet.coverage == "2 known classes"
    mv = table[(table.dataset == "MVTec AD") & (table.M == 10)].iloc[0]
    assert math.isclose(mv.ours_mean, 0.6) and mv.coverage == "2/15 subsets"
    assert mv.verdict == "below baselines"


def test_empty_results_give_not_run_everywhere(tmp_path):
    frame = book.load_records(tmp_path, "cpu")
    table = book.summary_table(records=frame, profile="cpu")
    assert len(table) > 0 and (table.verdict == "not run here").all()
    assert "cannot yet say" in book.verdict_sentence(table, "cpu")
    assert book.provenance_table(records=frame, profile="cpu").empty
    perf = book.performance_tables(records=frame, results=tmp_path, profile="cpu")
    assert perf["per_run"].empty and perf["benchmarks"] == []


def test_reproduce_command_and_provenance(tmp_path):
    rec = _record("elpv__hard-mono__M1__s3__no_dpl", "elpv", "hard", 1, 3, 0.8, known_class="mono",
                  variant="no_dpl")
    rec["config"]["prototypes"] = 16
    cmd = book.reproduce_command(rec)
    assert cmd.startswith("dpdl train --dataset elpv --setting hard --known-class mono --anomalies 1 --seed 3")
    assert cmd.endswith("--run-id elpv__hard-mono__M1__s3__no_dpl --out reruns/cpu/elpv__hard-mono__M1__s3__no_dpl")
    assert "--profile cpu" in cmd and "--no-dpl" in cmd and "--prototypes 16" in cmd
    assert "--no-dfl" not in cmd and "--eps" not in cmd
    prov = book.provenance_table(records=_records_frame(tmp_path, [rec]), profile="cpu")
    assert list(prov.columns) == ["run_id", "status", "auc", "code_version", "profile", "seed", "fingerprint", "date",
                                  "groups", "command", "error"]
    assert prov.loc[0, "command"] == cmd and prov.loc[0, "fingerprint"] == "0123456789abcdef"


def test_performance_tables(tmp_path):
    frame = _records_frame(tmp_path, [_record(f"e{s}", "elpv", "general", 10, s, 0.9) for s in range(2)])
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "cache.json").write_text('{"command": "python benchmarks/x.py", "speedup": 3}')
    perf = book.performance_tables(records=frame, results=tmp_path, profile="cpu")
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
    table = book.choice_table(tmp_path)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["choice"], row["profile fields"], row["cell"]) == ("deviation_d4", "feature_aug=d4, head_loss=deviation",
                                                                   "general M=10")
    assert math.isclose(row["AUC mean"], 0.85) and row["paper DPDL"] == 0.937 and row["best baseline"] == 0.85
    assert book.performance_tables(records=book.load_records(tmp_path, "cpu"), results=tmp_path,
                                   profile="cpu")["benchmarks"] == []
    assert book.choice_table(tmp_path / "nothing").empty
    (tmp_path / "benchmarks" / "elpv_cpu_choice_broken.json").write_text('{"cells": {"general M=10": {}}}')
    table = book.choice_table(tmp_path)
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
