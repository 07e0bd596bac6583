"""Issue 25, groups 9-13: hostile inputs found by the second round are one sentence naming the option or file,
exit status 2 and nothing written (no run folder, no partial folder); `score --skip-bad` skips a decompression
bomb; `ulimit -f` during a write names the path and leaves no temporary file; `python -m dpdl` works."""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dpdl.cli import main
from dpdl.paths import REPO_ROOT

SMOKE = ["--profile", "smoke", "--quiet"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Folder datasets (good, and one bad image each), a trained model, and bad weight/model files."""
    import torch
    from PIL import Image

    from dpdl.data import make_synthetic

    root = tmp_path_factory.mktemp("hostile")
    good = root / "good"
    shutil.copytree(make_synthetic(), good)
    victim = sorted((good / "test").rglob("*.png"))[0].relative_to(good)
    png = (good / victim).read_bytes()
    bad = {"zerobyte": b"", "truncated": png[: len(png) // 2], "random": os.urandom(2000)}
    for name, data in bad.items():
        shutil.copytree(good, root / name)
        (root / name / victim).write_bytes(data)
    shutil.copytree(good, root / "nonutf8")
    os.rename(root / "nonutf8" / victim, os.fsencode(root / "nonutf8" / victim.parent) + b"/x\xff.png")
    shutil.copytree(good, root / "bomb")
    Image.new("L", (20000, 20000)).save(root / "bomb.png")            # 4e8 pixels: PIL's decompression bomb
    shutil.copy(root / "bomb.png", root / "bomb" / victim)
    model = root / "model"
    assert main(["train", "--dataset", "folder", "--data-root", str(good), *SMOKE, "--out", str(model)]) == 0
    (root / "zero.pth").write_bytes(b"")
    (root / "random.pth").write_bytes(os.urandom(1000))
    blob = torch.load(model / "model.pt", weights_only=True)
    blob["feature_shape"] = [10**9, 1, 1]
    torch.save(blob, root / "crafted.pt")
    return {"root": root, "image": str(good / victim)}


def train(data: str, *extra: str) -> list[str]:
    return ["train", "--dataset", "folder", "--data-root", "{R}/" + data, *SMOKE, "--out", "{R}/out", *extra]


SCORE = ["score", "--model", "{R}/model", "--images", "{I}"]
CASES = [
    ("zero-byte-image", train("zerobyte"), "zerobyte"),
    ("truncated-image", train("truncated"), "truncated"),
    ("random-bytes-image", train("random"), "random"),
    ("decompression-bomb", train("bomb"), "bomb"),
    ("non-utf8-file-name", train("nonutf8"), "UTF-8"),
    ("opt-memory-0", train("good", "--method", "knn", "--opt", "memory=0"), "--opt"),
    ("device-nonsense", train("good", "--set", "device=nonsense"), "--set device"),
    ("prototypes-1e12", train("good", "--prototypes", "1000000000000"), "--prototypes"),
    ("prototypes-0", train("good", "--prototypes", "0"), "between 1 and"),
    ("image-size-30000", train("good", "--set", "image_size=30000"), "--set image_size"),
    ("weights-empty", train("good", "--weights", "{R}/zero.pth"), "zero.pth"),
    ("weights-random", train("good", "--weights", "{R}/random.pth"), "random.pth"),
    ("weights-a-model", train("good", "--weights", "{R}/model/model.pt"), "--weights"),
    ("seed-arabic-digit", train("good", "--seed", "\u0661"), "--seed"),
    ("seed-underscore", train("good", "--seed", "1_0"), "--seed"),
    ("seed-too-large", train("good", "--seed", "99999999999999999999"), "--seed"),
    ("anomalies-float", train("good", "--anomalies", "1e3"), "--anomalies"),
    ("score-weights-a-model", SCORE + ["--weights", "{R}/model/model.pt"], "--weights"),
    ("score-weights-empty", SCORE + ["--weights", "{R}/zero.pth"], "--weights"),
    ("score-crafted-shape", ["score", "--model", "{R}/crafted.pt", "--images", "{I}"], "feature_shape"),
    ("score-bomb", ["score", "--model", "{R}/model", "--images", "{R}/bomb.png"], "bomb.png"),
    ("book-jobs-0", ["book", "build", "--profile", "smoke", "--jobs", "0", "--out", "{R}/out"], "--jobs"),
    ("book-results-missing", ["book", "build", "--profile", "smoke", "--results-dir", "{R}/nowhere", "--out",
                              "{R}/out"], "--results-dir"),
    ("study-seeds-arabic", ["study", "run", "--profile", "smoke", "--seeds", "\u0662", "--results-dir", "{R}/out"],
     "--seeds"),
]


@pytest.mark.parametrize("argv,named", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_is_one_sentence_rc2_nothing_written(argv, named, world, capsys):
    root = world["root"]
    before = sorted(p.name for p in root.iterdir())
    capsys.readouterr()
    try:
        rc = main([a.replace("{R}", str(root)).replace("{I}", world["image"]) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err and "weights_only" not in err, err
    assert named in lines[0], lines[0]
    assert sorted(p.name for p in root.iterdir()) == before            # no out/, no .out.partial-<pid>


def test_score_skip_bad_skips_a_decompression_bomb(world, capsys):
    root = world["root"]
    assert main(["score", "--model", str(root / "model"), "--images", str(root / "bomb.png"), world["image"],
                 "--skip-bad"]) == 0
    out, err = capsys.readouterr()
    assert world["image"] in out and "bomb.png" not in out and "bomb.png" in err


def test_file_size_limit_during_the_write_names_the_path_and_leaves_nothing(world, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))     # model.pt is larger

    proc = subprocess.run([sys.executable, "-m", "dpdl", "train", "--dataset", "folder", "--data-root",
                           str(world["root"] / "good"), *SMOKE, "--out", str(out)], env=env, cwd=tmp_path,
                          preexec_fn=limit, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(out) in lines[0] and "cannot write" in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []                               # no run folder, no partial, no .tmp


def test_python_m_dpdl_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "dpdl", "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=120)
    assert proc.returncode == 0 and "study" in proc.stdout
