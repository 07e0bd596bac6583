"""Issue 25, groups 1-2: no finished record, model or scores is ever replaced by a failed run; `~` is expanded where
paths are written; foreign and malformed records stay out of the tables; lost or stale tables are rebuilt; a bad
cache is refused before any run; `--seeds N` plans at most the study's seeds."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from dpdl.cli import build_parser, expand_user_paths, main
from dpdl.records import SCHEMA_VERSION, atomic_write_json, holds_finished_run, read_record, write_run_files

TRAIN = ["train", "--dataset", "folder", "--profile", "smoke", "--quiet"]


def digests(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def one_line_rc2(rc: int, err: str, *names: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for name in names:
        assert name in lines[0], lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished smoke run on a folder copy of the synthetic data, plus a copy with one zero-byte test image."""
    import shutil

    from dpdl.data import make_synthetic

    root = tmp_path_factory.mktemp("lost")
    good, zero = root / "good", root / "zerobyte"
    shutil.copytree(make_synthetic(), good)
    shutil.copytree(good, zero)
    victim = sorted((zero / "test").rglob("*.png"))[0]
    victim.write_bytes(b"")
    out = root / "runs" / "x"
    assert main(TRAIN + ["--data-root", str(good), "--out", str(out)]) == 0
    return {"good": good, "zero": zero, "out": out, "digests": digests(out)}


def test_overwrite_with_bad_input_keeps_the_finished_run(finished, capsys):
    capsys.readouterr()
    rc = main(TRAIN + ["--data-root", str(finished["zero"]), "--out", str(finished["out"]), "--overwrite"])
    one_line_rc2(rc, capsys.readouterr().err, "zerobyte")
    assert digests(finished["out"]) == finished["digests"]
    assert sorted(p.name for p in finished["out"].parent.iterdir()) == ["x"]     # no partial folder left


def test_overwrite_with_a_failing_run_keeps_the_finished_run(finished, capsys):
    capsys.readouterr()
    rc = main(TRAIN + ["--data-root", str(finished["good"]), "--out", str(finished["out"]), "--overwrite",
                       "--kappa", "1e308"])
    err = capsys.readouterr().err
    assert rc == 1 and "is kept" in err, err
    now = digests(finished["out"])
    failed = read_record(finished["out"] / "run.failed.json")
    assert failed["status"] == "failed" and failed["error"]
    assert {k: v for k, v in now.items() if k != "run.failed.json"} == finished["digests"]
    assert read_record(finished["out"] / "run.json")["status"] == "ok"


def test_a_failed_write_leaves_the_folder_as_it_was_and_names_the_path(tmp_path):
    out = tmp_path / "run"
    write_run_files(out, {"a.txt": lambda p: p.write_text("old"), "run.json": lambda p: p.write_text("{}")})
    before = digests(out)

    def full(path):
        path.write_text("partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as info:
        write_run_files(out, {"a.txt": full, "run.json": lambda p: p.write_text('{"new": 1}')})
    assert info.value.filename == str(out / "a.txt") and "No space left" in info.value.strerror
    assert digests(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]          # no partial folder, no .tmp file


def test_torch_save_failure_is_an_os_error_naming_the_file(tmp_path):
    def torch_like(path):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file")

    with pytest.raises(OSError, match="cannot write") as info:
        write_run_files(tmp_path / "o", {"model.pt": torch_like, "run.json": lambda p: p.write_text("{}")})
    assert info.value.filename == str(tmp_path / "o" / "model.pt")
    assert not (tmp_path / "o").exists()


def _ok_record(run_id: str, **extra) -> dict:
    return {"schema": SCHEMA_VERSION, "status": "ok", "run_id": run_id, "error": None, "metrics": {"auc": 0.9},
            **extra}


def test_failed_study_rerun_keeps_the_finished_run(tmp_path):
    from dpdl.study.plan import RunSpec
    from dpdl.study.runner import _finish_run, run_state

    spec = RunSpec(dataset="synthetic", groups=("fig3",))
    base = tmp_path / "runs" / "smoke"
    final, tmp = base / spec.run_id, base / ".tmp" / f"{spec.run_id}-1"
    final.mkdir(parents=True)
    tmp.mkdir(parents=True)
    atomic_write_json(final / "run.json", _ok_record(spec.run_id, study={"groups": ["fig3"]}))
    (final / "model.pt").write_bytes(b"model")
    before = digests(final)
    atomic_write_json(tmp / "run.json", {"status": "failed", "error": "OSError: cache", "run_id": spec.run_id})
    res = _finish_run(spec, "smoke", tmp, final, base, {}, None, 1.0)
    assert res["status"] == "failed" and "kept" in res["error"]
    after = digests(final)
    assert {k: v for k, v in after.items() if k != "run.failed.json"} == before
    assert read_record(final / "run.failed.json")["status"] == "failed"
    assert not tmp.exists() and run_state(spec, "smoke", tmp_path)[0] == "done"


def test_record_of_another_schema_is_not_done(tmp_path):
    from dpdl.study.plan import RunSpec
    from dpdl.study.runner import run_state

    spec = RunSpec(dataset="synthetic")
    d = tmp_path / "runs" / "smoke" / spec.run_id
    d.mkdir(parents=True)
    atomic_write_json(d / "run.json", {**_ok_record(spec.run_id), "schema": 99})
    assert run_state(spec, "smoke", tmp_path)[0] == "failed"
    assert not holds_finished_run(d)
    (d / "run.json").write_text("[1, 2]")
    assert run_state(spec, "smoke", tmp_path)[0] == "failed"


@pytest.mark.parametrize("argv,attr", [
    (["train", "--dataset", "synthetic", "--out", "~/run"], "out"),
    (["study", "tables", "--results-dir", "~/res"], "results_dir"),
    (["study", "run", "--data-root", "~/data", "--study", "~/s.yaml"], "study"),
    (["book", "build", "--out", "~/book"], "out"),
    (["score", "--model", "~/m", "--images", "~/a.png"], "images"),
])
def test_tilde_is_expanded_in_every_path_option(argv, attr, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    args = build_parser().parse_args(argv)
    expand_user_paths(args)
    value = getattr(args, attr)
    for v in value if isinstance(value, list) else [value]:
        assert v.startswith(str(tmp_path)) and "~" not in v


def test_train_out_with_tilde_writes_under_home(finished, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(TRAIN + ["--data-root", str(finished["good"]), "--out", "~/run"]) == 0
    assert (tmp_path / "home" / "run" / "run.json").is_file() and not (tmp_path / "~").exists()


def _records(root: Path, profile="smoke"):
    from dpdl.study.plan import expand
    plan = expand(profile, only=["fig3"], check_available=False)
    base = root / "runs" / profile
    for s in plan.runs:
        atomic_write_json(base / s.run_id / "run.json", _ok_record(s.run_id, study={"groups": list(s.groups)}))
    return plan


def test_foreign_and_malformed_records_stay_out_of_the_tables_and_status_shows_them(tmp_path):
    from dpdl.study.analysis import load_runs
    from dpdl.study.status import study_status

    plan = _records(tmp_path)
    base = tmp_path / "runs" / "smoke"
    atomic_write_json(base / "my_run" / "run.json", _ok_record("x", config={"out": "my_run"}))  # by hand
    atomic_write_json(base / "my_id" / "run.json", _ok_record("my_id", config={"out": "my_id"}))  # --run-id
    atomic_write_json(base / "as_list" / "run.json", [1, 2, 3])                           # a JSON list
    bad = _ok_record("bad_m", study={"groups": ["fig3"]}, anomalies=[1, 2])
    atomic_write_json(base / "bad_m" / "run.json", bad)                                   # a list where an int goes
    ids = set(load_runs("smoke", tmp_path)["run_id"])
    assert ids == {s.run_id for s in plan.runs}
    st = study_status(plan, tmp_path)
    assert set(st["foreign"]) == {"my_run", "my_id", "as_list", "bad_m"}


def test_lost_or_stale_tables_are_found(tmp_path):
    from dpdl.study.status import tables_stale
    from dpdl.study.tables import TABLE_FILES

    plan = _records(tmp_path)
    assert "missing" in tables_stale(plan, tmp_path)
    folder = tmp_path / "tables" / "smoke"
    folder.mkdir(parents=True)
    for name in TABLE_FILES.values():
        (folder / name).write_text("x\n")
    assert tables_stale(plan, tmp_path) is None
    rec = tmp_path / "runs" / "smoke" / plan.runs[0].run_id / "run.json"
    later = time.time() + 10
    os.utime(rec, (later, later))
    assert "older" in tables_stale(plan, tmp_path)


def test_seeds_n_plans_at_most_the_studys_seeds():
    from dpdl.study.plan import expand

    full = expand("smoke", check_available=False).runs
    for n in (1, 2, 3, 10):
        capped = expand("smoke", seeds=n, check_available=False).runs
        assert {s.run_id for s in capped} <= {s.run_id for s in full}
        assert all(s.seed < n for s in capped)


BAD_STUDIES = {
    "group-is-a-string": {"profiles": {"smoke": {"groups": {"fig3": "oops"}}}},
    "block-without-datasets": {"profiles": {"smoke": {"groups": {"fig3": [{"seeds": 2}]}}}},
    "negative-seeds": {"profiles": {"smoke": {"groups": {"fig3": [{"datasets": ["synthetic"], "seeds": -1}]}}}},
    "negative-anomalies": {"profiles": {"smoke": {"groups": {
        "fig3": [{"datasets": ["synthetic"], "anomalies": [-3]}]}}}},
    "unknown-group": {"profiles": {"smoke": {"groups": {"table9": [{"datasets": ["synthetic"]}]}}}},
    "groups-a-list": {"profiles": {"smoke": {"groups": ["fig3"]}}},
    "sweep-not-numbers": {"profiles": {"smoke": {"groups": {"fig3": [{"datasets": ["synthetic"],
                                                                      "sweep": {"eps": ["abc"]}}]}}}},
}


@pytest.mark.parametrize("name", sorted(BAD_STUDIES))
def test_malformed_study_yaml_is_one_sentence(name, tmp_path, capsys):
    import yaml
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(BAD_STUDIES[name]))
    before = sorted(tmp_path.rglob("*"))
    rc = main(["study", "run", "--profile", "smoke", "--results-dir", str(tmp_path / "r"), "--study", str(path)])
    one_line_rc2(rc, capsys.readouterr().err, "--study")
    assert sorted(tmp_path.rglob("*")) == before


def test_bad_cache_is_refused_before_any_run(tmp_path, monkeypatch, capsys):
    (tmp_path / "cachefile").write_text("not a folder")
    monkeypatch.setenv("DPDL_CACHE", str(tmp_path / "cachefile"))
    rc = main(["study", "run", "--profile", "smoke", "--results-dir", str(tmp_path / "r"), "--no-progress"])
    one_line_rc2(rc, capsys.readouterr().err, "$DPDL_CACHE")
    assert not (tmp_path / "r").exists()
    rc = main(["train", "--dataset", "synthetic", "--profile", "smoke", "--out", str(tmp_path / "o")])
    one_line_rc2(rc, capsys.readouterr().err, "$DPDL_CACHE")
    assert not (tmp_path / "o").exists()


def test_packaged_study_passes_the_check():
    from dpdl.study.plan import check_study, load_study
    assert check_study(load_study())["profiles"]
    assert json.loads(json.dumps(sorted(load_study()["profiles"])))
