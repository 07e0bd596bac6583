"""``dpdl datasets``, ``dpdl split`` and ``dpdl stats`` through ``dpdl.cli.main`` and one real subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dpdl.cli import main


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_datasets_table_and_json(capsys, monkeypatch):
    monkeypatch.delenv("DPDL_DATA", raising=False)
    rc, out, _ = run(capsys, "datasets")
    assert rc == 0 and "elpv" in out and "mono, poly" in out and "mvtec_toothbrush" in out and "synthetic" in out
    rc, out, _ = run(capsys, "datasets", "--json")
    rows = json.loads(out)
    assert rc == 0 and {r["name"] for r in rows} >= {"elpv", "folder", "mvtec_carpet"}
    assert all({"name", "anomaly_classes", "available", "source", "reason"} <= set(r) for r in rows)


def test_split_json_and_summary(capsys, synthetic_root):
    rc, out, _ = run(capsys, "split", "--dataset", "elpv", "--setting", "general", "--anomalies", "10",
                     "--seed", "0", "--json")
    d = json.loads(out)
    assert rc == 0
    assert (d["train_normal"], d["train_anomaly"], d["test_normal"], d["test_anomaly"]) == (1131, 10, 377, 705)
    assert d["test_anomaly_classes"] == ["mono", "poly"] and len(d["fingerprint"]) == 16
    rc, out, _ = run(capsys, "split", "--dataset", "synthetic", "--setting", "hard", "--known-class", "spot",
                     "--anomalies", "5", "--seed", "2")
    assert rc == 0 and "synthetic" in out and "known class spot" in out and "scratch, stain" in out
    rc, out, _ = run(capsys, "split", "--dataset", "folder", "--data-root", str(synthetic_root), "--anomalies", "3",
                     "--seed", "0", "--json", "--samples")
    d = json.loads(out)
    assert rc == 0 and len(d["train_normal_keys"]) == 100 and d["test_anomaly"] == 42


def test_stats(capsys):
    rc, out, _ = run(capsys, "stats", "--dataset", "elpv", "--json")
    d = json.loads(out)
    assert rc == 0 and (d["train_normal"], d["test_normal"], d["test_anomaly"], d["n_anomaly_classes"]) == \
        (1131, 377, 715, 2)
    rc, out, _ = run(capsys, "stats", "--dataset", "synthetic")
    assert rc == 0 and "synthetic" in out and "100" in out


@pytest.mark.parametrize("argv, needle", [
    (["split", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["split", "--dataset", "elpv", "--anomalies", "0"], "at least 1"),
    (["split", "--dataset", "elpv", "--anomalies", "715"], "715"),
    (["split", "--dataset", "elpv", "--setting", "hard"], "--known-class"),
    (["split", "--dataset", "elpv", "--setting", "hard", "--known-class", "cigs"], "'cigs'"),
    (["split", "--dataset", "mvtec_wood"], "DPDL_DATA"),
    (["stats", "--dataset", "optical"], "DPDL_DATA"),
])
def test_bad_input_exits_2_with_one_sentence(capsys, monkeypatch, argv, needle):
    monkeypatch.delenv("DPDL_DATA", raising=False)
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and needle in err and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(f"dpdl {argv[0]}: error: ")


def test_subprocess_split_elpv():
    exe = Path(sys.executable).with_name("dpdl")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dpdl.cli"]
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.run(cmd + ["split", "--dataset", "elpv", "--setting", "general", "--anomalies", "10",
                                 "--seed", "0", "--json"], capture_output=True, text=True, cwd=repo, timeout=120)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert (d["train_normal"], d["train_anomaly"], d["test_normal"], d["test_anomaly"]) == (1131, 10, 377, 705)
