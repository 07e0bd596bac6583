"""The baselines (DevNet, DRA, kNN) under the method interface: hand-computed heads, batches, learning, save/load."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dpdl.methods.devnet import DevNet
from dpdl.methods.dra import DRA, DRAConfig
from dpdl.methods.knn import KNN, KNNConfig
from dpdl.config import get_profile
from dpdl.methods.shared.heads import deviation_loss
from dpdl.methods import METHODS, build_method, check_options
from dpdl.train import RunConfig, run, variant_tag


def _set_plain(head, w: float, b: float):
    with torch.no_grad():
        head.conv.weight.fill_(w)
        head.conv.bias.fill_(b)


def test_dra_score_combines_heads_as_its_code_by_hand():
    """C = 1, 2x2 maps, K = max(floor(0.1*4), 1) = 1: every head reduces to a number computable by hand."""
    torch.manual_seed(0)
    m = DRA(1, (2, 2), DRAConfig(topk_ratio=0.1, hidden=1)).eval()
    _set_plain(m.seen, 2.0, -1.0)         # seen patch score |2v - 1|
    _set_plain(m.pseudo, -1.0, 0.5)       # pseudo patch score |-v + 0.5|
    _set_plain(m.composite.plain, 1.0, 0.0)
    with torch.no_grad():
        m.holistic.fc[0].weight.fill_(3.0)
        m.holistic.fc[0].bias.fill_(0.0)
        m.holistic.fc[2].weight.fill_(-1.0)
        m.holistic.fc[2].bias.fill_(0.25)
        m.composite.conv[0].weight.zero_()
        m.composite.conv[0].weight[0, 0, 1, 1] = 1.0   # the 3x3 conv is the identity
        m.composite.conv[0].bias.zero_()
        bn = m.composite.conv[1]
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)             # BN in eval: (v - 0) / sqrt(1) = v
        bn.weight.fill_(1.0)
        bn.bias.zero_()
    x = torch.tensor([[[[0.0, 1.0], [2.0, -1.0]]]])
    m.calibrate(torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[3.0, 3.0], [3.0, 3.0]]]]))  # reference mean 2
    holistic = abs(-1.0 * max(3.0 * np.mean([0, 1, 2, -1]), 0.0) + 0.25)      # |fc2(relu(fc1(gap)))| = 0.5
    seen = max(abs(2 * v - 1) for v in (0, 1, 2, -1))                         # 3
    pseudo = max(abs(-v + 0.5) for v in (0, 1, 2, -1))                        # 1.5
    composite = max(abs(max(2.0 - v, 0.0)) for v in (0, 1, 2, -1))           # relu(ref - x), top-1 = 3
    want = -holistic + seen + pseudo + composite
    got = float(m.score(x)[0].detach())
    assert got == pytest.approx(want, abs=1e-6)
    parts = {k: float(v[0]) for k, v in m.head_scores(x, m.ref_mean).items()}
    assert parts == pytest.approx({"holistic": holistic, "seen": seen, "pseudo": pseudo, "composite": composite})


def test_dra_losses_use_each_heads_rows_and_targets():
    torch.manual_seed(1)
    m = DRA(4, (3, 3))
    x = torch.randn(9, 4, 3, 3)
    y = torch.tensor([-1, -1, 0, 0, 0, 1, 1, 2, 2])
    terms = m.losses(x, y)
    ref, xs, ys = x[:2], x[2:], y[2:]
    an = (ys != 0).float()
    want = {"holistic": deviation_loss(m.holistic(xs), (ys == 0).float()),
            "seen": deviation_loss(m.seen(xs[ys != 2]), an[ys != 2]),
            "pseudo": deviation_loss(m.pseudo(xs[ys != 1]), an[ys != 1]),
            "composite": deviation_loss(m.composite(xs, ref.mean(0)), an)}
    for k, v in want.items():
        assert float(terms[k]) == pytest.approx(float(v), rel=1e-6), k
    assert float(terms["total"]) == pytest.approx(sum(float(v) for v in want.values()), rel=1e-6)
    with pytest.raises(ValueError, match="reference"):
        m.losses(xs, ys)


def test_devnet_batch_is_half_normal_half_seen_and_dra_has_references():
    prof = get_profile("paper")
    assert DevNet(8, (2, 2)).composition(prof, n_seen=10, has_pseudo=True).to_dict() == \
        {"normal": 24, "seen": 24, "pseudo": 0, "reference": 0}
    dra = build_method("dra", 8, (2, 2))
    from dpdl.train import method_profile
    own = method_profile(prof, "dra")
    assert (own.optimizer, own.epochs, own.lr_step, own.grad_clip, own.pseudo_slots) == ("adam", 30, 10, 1.0, "normal")
    assert dra.composition(own, 10, True).to_dict() == {"normal": 16, "seen": 16, "pseudo": 16, "reference": 5}
    assert method_profile(get_profile("cpu"), "dra") == get_profile("cpu")   # cpu: DPDL's schedule for all


def test_knn_distances_equal_the_plain_expression_bit_for_bit():
    """The work block reused across images and calls gives exactly ‖b‖² − 2 b·m + ‖m‖² of each image's patches
    evaluated afresh (calls with fewer and more images)."""
    torch.manual_seed(3)
    m = KNN(5, (3, 3), KNNConfig(memory=20))
    m.init(torch.randn(6, 5, 3, 3), generator=torch.Generator().manual_seed(0))
    for n in (4, 1, 3):
        x = torch.randn(n, 5, 3, 3)
        q = x.permute(0, 2, 3, 1).reshape(n, 9, 5)
        want = torch.stack([((b ** 2).sum(1, keepdim=True) - 2 * b @ m.memory.T + (m.memory ** 2).sum(1))
                            .min(dim=1).values.clamp_min(0).sqrt() for b in q])
        assert torch.equal(m.patch_distances(x), want)


def test_knn_score_is_the_largest_nearest_patch_distance():
    torch.manual_seed(2)
    normal = torch.randn(6, 5, 3, 3)
    m = KNN(5, (3, 3), KNNConfig(memory=20))
    m.init(normal, generator=torch.Generator().manual_seed(0))
    assert m.memory.shape == (20, 5)
    patches = normal.permute(0, 2, 3, 1).reshape(-1, 5)
    assert all(bool((patches == row).all(1).any()) for row in m.memory)       # a subsample of the patches
    x = torch.randn(4, 5, 3, 3)
    q = x.permute(0, 2, 3, 1).reshape(4, 9, 5)
    want = torch.stack([torch.cdist(q[i].double(), m.memory.double()).min(1).values.max() for i in range(4)])
    assert torch.allclose(m.score(x).double(), want, atol=1e-4)
    m2 = KNN(5, (3, 3), KNNConfig(memory=20))
    m2.init(normal, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m.memory, m2.memory)                                   # seeded
    m3 = KNN(5, (3, 3))
    m3.load_state_dict(m.state_dict())
    assert torch.equal(m3.score(x), m.score(x))


def test_options_are_checked_in_one_sentence():
    assert check_options("knn", {"memory": 50})["memory"] == 50
    with pytest.raises(ValueError, match="unknown option.*nosuch.*'dra'"):
        check_options("dra", {"nosuch": 1})
    with pytest.raises(ValueError, match="unknown method"):
        check_options("svm", {})
    with pytest.raises(ValueError, match="options of DPDL"):
        run(RunConfig("synthetic", profile="smoke", method="dra", use_dfl=False), progress=False)
    assert variant_tag(RunConfig("synthetic", method="knn", method_options={"memory": 5})) == "knn+memory=5"


@pytest.fixture(scope="module")
def method_runs(tmp_path_factory):
    out = {}
    for m in METHODS:
        d = tmp_path_factory.mktemp(m)
        out[m] = (d, run(RunConfig("synthetic", profile="smoke", anomalies=5, seed=0, method=m, out=str(d)),
                         progress=False))
    return out


@pytest.mark.parametrize("method", METHODS)
def test_each_method_learns_and_is_deterministic(method_runs, method):
    d, rec = method_runs[method]
    assert rec["status"] == "ok", rec["error"]
    assert rec["method"] == method and rec["metrics"]["auc"] > 0.8
    again = run(RunConfig("synthetic", profile="smoke", anomalies=5, seed=0, method=method), progress=False)
    assert again["metrics"] == rec["metrics"]


@pytest.mark.parametrize("method", METHODS)
def test_saved_model_scores_like_the_run(method_runs, method):
    from dpdl.score import load_trained
    d, rec = method_runs[method]
    model = load_trained(d)
    assert model.info["method"] == method
    saved = json.loads((d / "scores.json").read_text())
    from dpdl.data import make_split
    split = make_split("synthetic", anomalies=5, seed=0)
    test = {s.key: s for s in split.test_normal + split.test_anomaly}
    from dpdl.score import score_images
    keys = saved["keys"][:6]
    got = score_images(model, [test[k].path for k in keys])
    assert np.allclose(got, saved["scores"][:6], rtol=1e-3, atol=1e-3)


def test_devnet_and_dra_train_under_their_public_code_in_the_paper_profile():
    """DevNet (DRA's repository): Adam, StepLR(10, 0.1), clip 1.0; DRA also 30 epochs and its 16/16/16 batch;
    the cpu profile keeps its own settings for every method."""
    from dpdl.config import get_profile
    from dpdl.train import method_profile
    dev = method_profile(get_profile("paper"), "devnet")
    assert (dev.optimizer, dev.lr_step, dev.lr_gamma, dev.grad_clip, dev.epochs) == ("adam", 10, 0.1, 1.0, 50)
    dra = method_profile(get_profile("paper"), "dra")
    assert (dra.optimizer, dra.lr_step, dra.grad_clip, dra.epochs, dra.pseudo_slots) == ("adam", 10, 1.0, 30, "normal")
    assert method_profile(get_profile("cpu"), "devnet") == get_profile("cpu")
    assert method_profile(get_profile("paper"), "dpdl") == get_profile("paper")
