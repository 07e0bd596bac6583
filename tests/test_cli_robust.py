"""The CLI as a hostile user meets it: every bad input is one sentence naming the option, exit status 2, nothing
written; outputs are checked before any work; `dpdl score --skip-bad`; the results folder's lock; temporary kernel
folders; matplotlib/IPython kept out of $HOME. The sweep stopped by a real signal is in test_sweep_signals.py."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dpdl.cli import main
from dpdl.paths import REPO_ROOT

TRAIN = ["train", "--dataset", "synthetic", "--profile", "smoke", "--quiet"]


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# (case id, argv with {T} = a scratch folder holding `file`, `dir/`, `bad.yaml`, `garbage.pt`; the option named)
BAD_INPUTS = [
    ("train-out-file", TRAIN + ["--out", "{T}/file"], "--out"),
    ("train-out-sys", TRAIN + ["--out", "/sys/dpdl-x"], "--out"),
    ("train-out-proc", TRAIN + ["--out", "/proc/dpdl-x"], "--out"),
    ("train-out-under-file", TRAIN + ["--out", "{T}/file/sub"], "--out"),
    ("train-epochs-abc", TRAIN + ["--out", "{T}/o", "--set", "epochs=abc"], "--set epochs"),
    ("train-epochs-0", TRAIN + ["--out", "{T}/o", "--set", "epochs=0"], "--set epochs"),
    ("train-lr-neg", TRAIN + ["--out", "{T}/o", "--set", "lr=-1"], "--set lr"),
    ("train-set-no-eq", TRAIN + ["--out", "{T}/o", "--set", "epochs"], "--set"),
    ("train-set-name", TRAIN + ["--out", "{T}/o", "--set", "name=paper"], "--set name"),
    ("train-set-unknown", TRAIN + ["--out", "{T}/o", "--set", "nosuch=1"], "nosuch"),
    ("train-lam-neg", TRAIN + ["--out", "{T}/o", "--lam", "-1"], "--lam"),
    ("train-kappa-neg", TRAIN + ["--out", "{T}/o", "--kappa", "-1"], "--kappa"),
    ("train-eps-0", TRAIN + ["--out", "{T}/o", "--eps", "0"], "--eps"),
    ("train-seed-neg", TRAIN + ["--out", "{T}/o", "--seed", "-1"], "--seed"),
    ("train-anomalies-neg", TRAIN + ["--out", "{T}/o", "--anomalies", "-1"], "--anomalies"),
    ("train-prototypes-0", TRAIN + ["--out", "{T}/o", "--prototypes", "0"], "--prototypes"),
    ("train-data-root-file", TRAIN + ["--out", "{T}/o", "--data-root", "{T}/file"], "--data-root"),
    ("train-data-root-missing", TRAIN + ["--out", "{T}/o", "--data-root", "{T}/nowhere"], "--data-root"),
    ("study-results-file", ["study", "run", "--profile", "smoke", "--results-dir", "{T}/file"], "--results-dir"),
    ("study-results-proc", ["study", "run", "--profile", "smoke", "--results-dir", "/proc/dpdl-x"], "--results-dir"),
    ("study-not-yaml", ["study", "run", "--profile", "smoke", "--results-dir", "{T}/r", "--study", "{T}/bad.yaml"],
     "--study"),
    ("study-yaml-not-study", ["study", "run", "--profile", "smoke", "--results-dir", "{T}/r", "--study",
                              "{T}/list.yaml"], "--study"),
    ("study-missing", ["study", "run", "--profile", "smoke", "--results-dir", "{T}/r", "--study", "{T}/no.yaml"],
     "--study"),
    ("study-seeds-neg", ["study", "run", "--profile", "smoke", "--results-dir", "{T}/r", "--seeds", "-1"],
     "--seeds"),
    ("study-datasets-nosuch", ["study", "run", "--profile", "smoke", "--results-dir", "{T}/r", "--datasets",
                               "nosuch"], "--datasets"),
    ("study-jobs-0", ["study", "run", "--profile", "smoke", "--results-dir", "{T}/r", "--jobs", "0"], "--jobs"),
    ("study-workers-0", ["study", "run", "--profile", "smoke", "--results-dir", "{T}/r", "--executor", "dask",
                         "--workers", "0"], "--workers"),
    ("study-data-root-file", ["study", "run", "--profile", "smoke", "--results-dir", "{T}/r", "--data-root",
                              "{T}/file"], "--data-root"),
    ("tables-results-file", ["study", "tables", "--profile", "smoke", "--results-dir", "{T}/file"], "--results-dir"),
    ("book-profile", ["book", "build", "--profile", "nosuch", "--out", "{T}/b"], "--profile"),
    ("book-out-file", ["book", "build", "--profile", "smoke", "--out", "{T}/file"], "--out"),
    ("score-model-plain-file", ["score", "--model", "{T}/file", "--images", "{T}/file"], "--model"),
    ("score-model-garbage", ["score", "--model", "{T}/garbage.pt", "--images", "{T}/file"], "--model"),
    ("score-model-missing", ["score", "--model", "{T}/nowhere", "--images", "{T}/file"], "--model"),
    ("score-folder-file", ["score", "--model", "{T}/garbage.pt", "--folder", "{T}/file"], "--folder"),
    ("score-folder-missing", ["score", "--model", "{T}/garbage.pt", "--folder", "{T}/nowhere"], "--folder"),
    ("score-images-dir", ["score", "--model", "{T}/garbage.pt", "--images", "{T}/dir"], "--images"),
    ("score-images-missing", ["score", "--model", "{T}/garbage.pt", "--images", "{T}/nowhere.png"], "--images"),
    ("datasets-root-missing", ["datasets", "--data-root", "{T}/nowhere"], "--data-root"),
    ("datasets-root-file", ["datasets", "--data-root", "{T}/file"], "--data-root"),
    ("split-seed-neg", ["split", "--dataset", "synthetic", "--seed", "-1"], "--seed"),
]


@pytest.fixture
def scratch(tmp_path):
    (tmp_path / "file").write_text("not a folder\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "bad.yaml").write_text("profiles: [unclosed\n")
    (tmp_path / "list.yaml").write_text("- just\n- a list\n")
    (tmp_path / "garbage.pt").write_bytes(b"PK\x03\x04 not really a zip" * 10)
    return tmp_path


def run_cli(argv: list[str]) -> int:
    """``dpdl ARGV`` in this process; its exit status (argparse's errors exit, the commands return)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("argv,option", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_sentence_naming_the_option_exit_2_nothing_written(argv, option, scratch, capsys):
    before = files_under(scratch)
    rc = run_cli([a.replace("{T}", str(scratch)) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert option in lines[0], lines[0]
    assert files_under(scratch) == before                      # nothing written, not even an empty folder
    assert not Path("/sys/dpdl-x").exists() and not Path("/proc/dpdl-x").exists()


def test_output_on_a_read_only_file_system_is_refused_before_work(tmp_path, monkeypatch, capsys):
    import dpdl.checks

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(dpdl.checks.tempfile, "mkdtemp", read_only)
    assert main(TRAIN + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--out" in err and "Read-only file system" in err
    assert not (tmp_path / "o").exists()


def test_output_check_leaves_no_probe_behind(tmp_path):
    from dpdl.checks import output_dir
    assert output_dir(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []


def test_bad_profile_values_are_refused_by_type_and_range():
    from dpdl.config import get_profile
    assert get_profile("smoke", epochs=2, lr=0.5, pseudo_share=1).epochs == 2
    for field, value in [("epochs", "abc"), ("epochs", 0), ("epochs", True), ("batch_size", 2), ("lr", 0),
                         ("lr", "x"), ("pseudo_share", 1.5), ("weight_decay", -1e-5), ("feature_cache", 1),
                         ("head_loss", 3), ("name", "paper")]:
        with pytest.raises(ValueError, match=f"profile field {field} "):
            get_profile("smoke", **{field: value})


# ------------------------------------------------------------------------------------------------- dpdl score

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    assert main(TRAIN + ["--anomalies", "3", "--set", "epochs=1", "--out", str(out)]) == 0
    return out


def test_score_names_every_unreadable_image_or_skips_them(trained, synthetic_root, tmp_path, capsys):
    good = sorted((synthetic_root / "test" / "good").iterdir())[:2]
    bad1 = tmp_path / "truncated.png"
    bad1.write_bytes(good[0].read_bytes()[:40])
    bad2 = tmp_path / "text.jpg"
    bad2.write_text("hello")
    files = [str(good[0]), str(bad1), str(good[1]), str(bad2)]
    capsys.readouterr()
    assert main(["score", "--model", str(trained), "--images", *files]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad1) in err[0] and str(bad2) in err[0] and "--skip-bad" in err[0]
    assert main(["score", "--model", str(trained), "--images", *files, "--skip-bad", "--json"]) == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out)
    assert [r["path"] for r in res["scores"]] == [str(good[0]), str(good[1])]
    assert res["unreadable"] == [str(bad1), str(bad2)]
    assert str(bad1) in cap.err and str(bad2) in cap.err
    # the readable images get the scores they get alone (up to the last float32 bits, which a CNN's batch size moves)
    assert main(["score", "--model", str(trained), "--images", str(good[1]), "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)["scores"][0]["score"]
    assert res["scores"][1]["score"] == pytest.approx(alone, rel=1e-4, abs=1e-5)


# ------------------------------------------------------------------------------------------------- the lock

def test_a_second_sweep_on_the_same_results_folder_refuses_or_waits(tmp_path, capsys):
    from dpdl.study.runner import run_specs
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from dpdl.study.lock import results_lock\n"
                               "with results_lock(sys.argv[1]):\n"
                               "    print('held', flush=True); time.sleep(float(sys.argv[2]))\n"
                               "print('released', flush=True)",
                               str(tmp_path), "4"], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        rc = main(["study", "run", "--profile", "smoke", "--results-dir", str(tmp_path), "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1
        assert "in use by another sweep" in err[0] and f"pid {holder.pid}" in err[0] and "--wait" in err[0]
        assert not (tmp_path / "runs").exists()                  # it did not start any run
        logs = []
        t0 = time.monotonic()
        res = run_specs([], "smoke", tmp_path, wait=True, progress=False, log=logs.append)
        assert time.monotonic() - t0 > 0.5 and holder.stdout.readline().strip() == "released"  # it waited
        assert res["ran"] == 0 and any("waiting for the other sweep" in m for m in logs)
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------------------------------------- temporary files

def test_stale_kernel_folders_are_removed_live_ones_kept(tmp_path, monkeypatch):
    from dpdl import kernels
    monkeypatch.setattr(kernels.tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"dpdl-kernel-{dead.pid}-abc" / "kernel.json").parent.mkdir()
    (tmp_path / f"dpdl-kernel-{dead.pid}-abc" / "kernel.json").write_text("{}")
    (tmp_path / f"dpdl-kernel-{os.getpid()}-def").mkdir()
    old = tmp_path / "dpdl-kernel-legacyxx"
    old.mkdir()
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    (tmp_path / "dpdl-kernel-recentxx").mkdir()
    removed = kernels.clean_stale_kernel_dirs()
    assert sorted(removed) == sorted([f"dpdl-kernel-{dead.pid}-abc", "dpdl-kernel-legacyxx"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"dpdl-kernel-{os.getpid()}-def",
                                                                 "dpdl-kernel-recentxx"])


def test_kernel_manager_keeps_its_connection_file_in_its_private_folder(tmp_path, monkeypatch):
    from dpdl import kernels
    monkeypatch.setattr(kernels.tempfile, "tempdir", str(tmp_path))
    km = kernels.IPCKernelManager(kernel_name="python3")
    folder = Path(km.private_dir)
    assert folder.parent == tmp_path and folder.name.startswith(f"dpdl-kernel-{os.getpid()}-")
    assert Path(km.connection_file).parent == folder
    if km.transport == "ipc":
        assert Path(km.ip).parent == folder
    km.cleanup_connection_file()
    assert not folder.exists()


def test_matplotlib_and_ipython_config_go_to_the_cache(monkeypatch, tmp_path):
    from dpdl.paths import set_tool_config_env
    monkeypatch.setenv("DPDL_CACHE", str(tmp_path))
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    monkeypatch.setenv("IPYTHONDIR", "/somewhere/mine")
    set_tool_config_env()
    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "config" / "matplotlib")
    assert os.environ["IPYTHONDIR"] == "/somewhere/mine"           # a user's own setting is kept
