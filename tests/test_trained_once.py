"""Train once, score per cell (dpdl.trained_once): a run that reuses an unsupervised method's trained state gives the
record of the same run trained alone; a supervised method never shares; a changed option trains anew."""
import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from dpdl import methods, trained_once
from dpdl.methods.base import MethodMixin
from dpdl.paths import cache_dir
from dpdl import train
from dpdl.train import RunConfig, run


@dataclass(frozen=True)
class RecConfig:
    width: int = 8


class Reconstruct(MethodMixin, nn.Module):
    """A toy unsupervised method: a 1x1-conv autoencoder of the normal maps; score = max patch error (B,)."""

    unsupervised = True
    uses_adapter = False

    def __init__(self, in_channels, feat_hw, cfg=None):
        super().__init__()
        cfg = cfg or RecConfig()
        self.net = nn.Sequential(nn.Conv2d(in_channels, cfg.width, 1), nn.ReLU(), nn.Conv2d(cfg.width, in_channels, 1))

    def losses(self, x, y):
        assert bool((y == 0).all()), "an unsupervised method's batches are all normal"
        loss = (self.net(x) - x).pow(2).mean()
        return {"rec": loss, "total": loss}

    def score(self, x):
        return (self.net(x) - x).pow(2).sum(1).flatten(1).max(1).values


@pytest.fixture()
def toy_method(monkeypatch):
    mod = types.ModuleType("toy_reconstruct")
    mod.Reconstruct, mod.RecConfig = Reconstruct, RecConfig
    monkeypatch.setitem(sys.modules, "toy_reconstruct", mod)
    monkeypatch.setitem(methods._REGISTRY, "toyrec", ("toy_reconstruct", "Reconstruct", "RecConfig"))
    names = (*methods.METHODS, "toyrec")
    monkeypatch.setattr(methods, "METHODS", names)
    monkeypatch.setattr(train, "METHODS", names)
    monkeypatch.setenv("DPDL_CACHE", str(cache_dir()))
    yield "toyrec"


def _run(m, **kw):
    return run(RunConfig("synthetic", profile="smoke", anomalies=m, seed=1, method="toyrec", **kw), progress=False)


def _clear():
    for f in (cache_dir() / "trained").glob("*.pt"):
        f.unlink()


def test_reused_training_gives_the_lone_runs_record(toy_method):
    _clear()
    first = _run(5)
    assert first["trained_once"]["reused"] is False
    shared = _run(3)                       # another cell of the same dataset and seed: loads the trained state
    assert shared["trained_once"] == {"key": first["trained_once"]["key"], "reused": True}
    _clear()
    alone = _run(3)                        # the same cell trained alone
    assert alone["trained_once"]["reused"] is False
    assert shared["metrics"] == alone["metrics"]
    assert np.isfinite(alone["metrics"]["auc"])
    assert shared["losses"] == alone["losses"]


def test_other_options_or_seed_train_anew(toy_method):
    _clear()
    a = _run(5)
    b = run(RunConfig("synthetic", profile="smoke", anomalies=5, seed=1, method="toyrec",
                      method_options={"width": 4}), progress=False)
    c = run(RunConfig("synthetic", profile="smoke", anomalies=5, seed=2, method="toyrec"), progress=False)
    keys = {a["trained_once"]["key"], b["trained_once"]["key"], c["trained_once"]["key"]}
    assert len(keys) == 3 and not b["trained_once"]["reused"] and not c["trained_once"]["reused"]


def test_a_damaged_state_is_retrained(toy_method):
    _clear()
    a = _run(5)
    path = cache_dir() / "trained" / f"{a['trained_once']['key']}.pt"
    path.write_bytes(b"not a torch file")
    again = _run(5)
    assert again["trained_once"]["reused"] is False and again["metrics"] == a["metrics"]
    assert trained_once.load(a["trained_once"]["key"], types.SimpleNamespace(load_state_dict=lambda s: None))


def test_supervised_methods_do_not_share():
    rec = run(RunConfig("synthetic", profile="smoke", anomalies=5, seed=0, method="devnet"), progress=False)
    assert "trained_once" not in rec


@pytest.mark.skipif(trained_once.fcntl is None, reason="no flock on this platform")
def test_a_concurrent_claim_of_the_same_key_waits_until_the_first_is_done(tmp_path, monkeypatch):
    """Two runs of one key at once (two processes of a sweep): the second waits, so the key trains once."""
    import threading
    monkeypatch.setenv("DPDL_CACHE", str(tmp_path))
    order = []

    def second():
        with trained_once.claim("k"):
            order.append("second")

    with trained_once.claim("k"):
        waiter = threading.Thread(target=second)
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive() and order == []     # still waiting while the first holds the key
        with trained_once.claim("another key"):      # other keys are free
            order.append("first")
    waiter.join(10)
    assert order == ["first", "second"] and not waiter.is_alive()


def test_the_source_digest_follows_the_code_that_trains_and_only_it(tmp_path, monkeypatch):
    """A change to the method's home, the training loop or the shared maths trains anew; a change to the book, the
    study's orchestration or another method keeps the stored state (on a copy of the package)."""
    import shutil
    pkg = tmp_path / "dpdl"
    shutil.copytree(trained_once.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(trained_once, "PACKAGE", pkg)

    def digest():
        trained_once.source_digest.cache_clear()
        return trained_once.source_digest("hgad")

    def touch(rel):
        with open(pkg / rel, "a") as f:
            f.write("\n# changed\n")

    try:
        before = digest()
        for rel in ("book/about.py", "study/plan.py", "methods/vpdm/model.py", "methods/dra.py", "cli.py"):
            touch(rel)
            assert digest() == before, rel
        for rel in ("methods/hgad/model.py", "methods/shared/mixture.py", "train.py",
                    "methods/dpdl/prototypes.py"):      # HGAD's VQ initialisation is DPDL's vq_codebook
            touch(rel)
            now = digest()
            assert now != before, rel
            before = now
    finally:
        trained_once.source_digest.cache_clear()


def _knn(m, out):
    return run(RunConfig("synthetic", profile="smoke", anomalies=m, seed=1, method="knn", out=str(out)),
               progress=False)


def test_knn_scores_each_test_image_once_and_gives_the_lone_runs_record(tmp_path):
    """Another cell of the same dataset and seed reads the test scores an earlier cell stored and scores only the
    images it lacks: its record (AUC, every score) is the one the same cell gives alone."""
    import json
    _clear()
    first = _knn(5, tmp_path / "a")
    assert first["scored_once"]["reused"] == 0 and first["scored_once"]["scored"] > 0
    shared = _knn(1, tmp_path / "b")
    assert shared["scored_once"]["key"] == first["scored_once"]["key"] and shared["scored_once"]["reused"] > 0
    _clear()
    alone = _knn(1, tmp_path / "c")
    assert alone["scored_once"]["reused"] == 0 and shared["metrics"] == alone["metrics"]
    assert json.loads((tmp_path / "b" / "scores.json").read_text()) == json.loads(
        (tmp_path / "c" / "scores.json").read_text())


def test_a_stored_score_counts_only_for_the_same_test_map_and_a_damaged_store_is_rescored(tmp_path):
    """A stored score whose image's test map differs (the image changed, or its map was extracted anew) is scored
    again, and so is every image of a store that is damaged or not a dict: the record stays the lone run's."""
    import json
    _clear()
    first = _knn(1, tmp_path / "a")
    path = cache_dir() / "trained" / f"{first['scored_once']['key']}.pt"
    stored = torch.load(path, weights_only=True)
    name = next(iter(stored))
    stored[name] = ("0" * 16, stored[name][1] + 1.0)          # as if made from another map of that image
    torch.save(stored, path)
    again = _knn(1, tmp_path / "b")
    assert again["scored_once"]["scored"] == 1 and again["metrics"] == first["metrics"]
    for n, damaged in enumerate((b"not a torch file", None)):
        if damaged is None:
            torch.save(["not", "a", "dict"], path)
        else:
            path.write_bytes(damaged)
        redo = _knn(1, tmp_path / f"c{n}")
        assert redo["scored_once"]["reused"] == 0 and redo["metrics"] == first["metrics"]
        assert json.loads((tmp_path / "a" / "scores.json").read_text()) == json.loads(
            (tmp_path / f"c{n}" / "scores.json").read_text())


def test_knn_scores_are_per_image():
    """The property score-once rests on: kNN's score of an image is the same bits alone, in any subset and in any
    order (one distance block per image)."""
    from dpdl.methods import build_method
    g = torch.Generator().manual_seed(0)
    knn = build_method("knn", 16, (7, 7), {"memory": 300})
    knn.init(torch.randn(20, 16, 7, 7, generator=g), generator=torch.Generator().manual_seed(1))
    x = torch.randn(30, 16, 7, 7, generator=g)
    full = knn.score(x)
    for trial in range(5):
        idx = torch.randperm(30, generator=g)[: int(torch.randint(1, 30, (1,), generator=g))]
        assert torch.equal(knn.score(x[idx]), full[idx])
    assert all(torch.equal(knn.score(x[i:i + 1]), full[i:i + 1]) for i in range(30))
