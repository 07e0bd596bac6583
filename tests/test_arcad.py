"""ArcAD and its base (dpdl.methods.arcad) against independent computations: brute-force loops, torchvision's focal
loss, plain-exp Sinkhorn, torch's soft-label cross entropy; batch independence, gradient routing, learning."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dpdl.methods import build_method, check_options, method_class
from dpdl.methods.arcad import calibration as cal
from dpdl.methods.arcad.base import cosine_error_map, image_score, recon_loss, tap_split
from dpdl.methods.arcad.model import ArcAD, ArcADConfig, token_rows
from dpdl.train import RunConfig, run


def _unit(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_synthesis_keeps_the_candidate_farthest_from_every_prototype_as_a_loop_does():
    """Eqs. (5)-(6): the same noise redrawn, then per anchor a loop over candidates and prototypes."""
    anchors, mu = _unit(7, 5, 0), _unit(4, 5, 1)
    sigma, n_cand = 0.5, 6
    got = cal.synthesize(anchors, mu, sigma, n_cand, generator=torch.Generator().manual_seed(3))
    noise = torch.randn(7, n_cand, 5, generator=torch.Generator().manual_seed(3))
    for i in range(7):
        best, best_near = None, math.inf
        for c in range(n_cand):
            v = (anchors[i] + sigma * noise[i, c]).tolist()
            norm = math.sqrt(sum(t * t for t in v))
            v = [t / norm for t in v]
            near = max(sum(a * b for a, b in zip(v, mu[k].tolist())) for k in range(4))
            if near < best_near:
                best, best_near = v, near
        assert got[i].tolist() == pytest.approx(best, abs=1e-6)
    assert torch.allclose(got.norm(dim=1), torch.ones(7))


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.75, 2.0), (-1.0, 1.5), (0.5, 0.0)])
def test_focal_loss_equals_torchvision(alpha, gamma):
    from torchvision.ops import sigmoid_focal_loss
    g = torch.Generator().manual_seed(0)
    logits, target = 3 * torch.randn(50, generator=g), (torch.rand(50, generator=g) > 0.6).float()
    want = sigmoid_focal_loss(logits, target, alpha=alpha, gamma=gamma, reduction="mean")
    assert float(cal.focal_loss(logits, target, alpha, gamma)) == pytest.approx(float(want), rel=1e-6)


def test_sinkhorn_assignment_equals_plain_exp_iterations_and_its_marginals():
    """Eq. (3): Q = diag(u) exp(S/ε) diag(v) by plain Sinkhorn-Knopp (prototype sums first, then token sums)."""
    z, mu = _unit(40, 6, 2), _unit(8, 6, 3)
    s = (z @ mu.T).double()
    q = cal.sinkhorn_assign(s, 0.05, 3)
    m = torch.exp(s / 0.05)
    m = m / m.sum()
    for _ in range(3):
        m = m / m.sum(dim=0, keepdim=True) / 8      # each prototype mass 1/K
        m = m / m.sum(dim=1, keepdim=True) / 40     # each token mass 1/N
    assert torch.allclose(q, m * 40, rtol=1e-6, atol=1e-9)
    assert torch.allclose(q.sum(dim=1), torch.ones(40, dtype=q.dtype))
    many = cal.sinkhorn_assign(s, 0.05, 500)
    assert torch.allclose(many.sum(dim=0), torch.full((8,), 40 / 8, dtype=q.dtype), atol=1e-4)


def test_spm_loss_is_torch_soft_label_cross_entropy():
    """Eq. (4) = cross entropy of softmax(S/τ) against the soft targets Q."""
    s = _unit(9, 4, 4) @ _unit(5, 4, 5).T
    q = torch.softmax(torch.randn(9, 5, generator=torch.Generator().manual_seed(6)), dim=1)
    assert float(cal.spm_loss(s, q, 0.1)) == pytest.approx(float(F.cross_entropy(s / 0.1, q)), rel=1e-6)


@pytest.mark.parametrize("push", ["linear", "relu"])
def test_dgc_loss_equals_a_loop(push):
    a, mu, syn = _unit(6, 3, 7), _unit(4, 3, 8), _unit(5, 3, 9)
    terms = []
    for i in range(6):
        near = max(float(a[i] @ mu[k]) for k in range(4))
        near = max(near, 0.0) if push == "relu" else near
        terms.append(near + 1 - sum(float(a[i] @ syn[j]) for j in range(5)) / 5)
    assert float(cal.dgc_loss(a, mu, syn, push)) == pytest.approx(sum(terms) / 6, abs=1e-6)


def test_topk_error_tokens_are_each_images_highest_error_positions():
    """Eq. (7)'s reading: per image the k tokens of highest error, k = round(0.25 * 9) = 2."""
    g = torch.Generator().manual_seed(1)
    tokens, err = torch.randn(2, 4, 3, 3, generator=g), torch.rand(2, 3, 3, generator=g)
    got = cal.topk_error_tokens(tokens, err, 0.25)
    want = []
    for b in range(2):
        order = sorted(range(9), key=lambda p: -float(err[b].flatten()[p]))[:2]
        want += [tokens[b, :, p // 3, p % 3] for p in order]
    assert torch.equal(got, torch.stack(want))


def test_error_map_loss_and_score_by_hand():
    """Eq. (1) with RD4AD's 1 − cos per tap; the score: max over positions of the mean over taps."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, 2, 2, generator=g)
    rec = [torch.randn(2, 2, 2, 2, generator=g), torch.randn(2, 3, 2, 2, generator=g)]
    err = cosine_error_map(x, rec, (2, 3))
    for b in range(2):
        for t, (lo, hi) in enumerate(((0, 2), (2, 5))):
            for i in range(2):
                for j in range(2):
                    e, d = x[b, lo:hi, i, j], rec[t][b, :, i, j]
                    assert float(err[b, t, i, j]) == pytest.approx(1 - float(e @ d / (e.norm() * d.norm())), abs=1e-6)
    assert float(recon_loss(err)) == pytest.approx(float(err[:, 0].mean() + err[:, 1].mean()), abs=1e-6)
    assert image_score(err).tolist() == pytest.approx([float(err[b].mean(0).max()) for b in range(2)])


def test_tap_split_reads_the_backbone_taps():
    assert tap_split(432) == (112, 320)          # EfficientNet-Lite0 mid+last (the cpu profile)
    assert tap_split(416) == (96, 320)           # MobileNetV2 mid+last (the smoke profile)
    assert tap_split(17) == (17,)                # no known split: one tap
    assert tap_split(12, "5+7") == (5, 7)
    with pytest.raises(ValueError, match="sums to"):
        tap_split(12, "5+8")
    with pytest.raises(ValueError, match="several ways"):
        tap_split(128)                           # MobileNetV2 low+mid or ResNet-18 low


@pytest.mark.parametrize("bad", [{"prototypes": 0}, {"tau": 0.0}, {"ema": 1.0}, {"push": "square"},
                                 {"anomaly_topk": 0}, {"taps": "a+b"}, {"lam_dgc": -1.0}, {"n_cand": 1.5}])
def test_bad_options_are_one_sentence(bad):
    with pytest.raises(ValueError) as e:
        check_options("arcad", bad)
    assert str(e.value).count(".") <= 2 and list(bad)[0] in str(e.value)


def _model(seed=0, **opts):
    torch.manual_seed(seed)
    m = ArcAD(12, (3, 3), ArcADConfig(taps="5+7", hidden=8, dim=6, prototypes=4, **opts))
    m.init(torch.randn(20, 12, 3, 3), torch.Generator().manual_seed(seed))
    return m


def test_score_does_not_depend_on_the_other_images_of_its_batch():
    m = _model()
    m.losses(torch.randn(9, 12, 3, 3), torch.tensor([0] * 6 + [1] * 3))   # BN statistics leave their defaults
    m.eval()
    x = torch.randn(3, 12, 3, 3)
    alone = m.score(x)
    for other in (torch.randn(5, 12, 3, 3), 100 * torch.randn(1, 12, 3, 3)):
        assert torch.equal(m.score(torch.cat([x, other]))[:3], alone)


@pytest.mark.parametrize("opts", [{}, {"disc_inputs": "code", "push": "relu", "focal_alpha": 0.75},
                                  {"anomaly_tokens": "topk_error", "cutmix_rows": "anomaly"}, {"proto_init": "kmeans_separate"}])
def test_losses_and_gradients_are_finite_and_routed(opts):
    """Every term finite; the decoder's gradient comes from L_recon only, the discriminator's from L_cls only."""
    m = _model(**opts)
    y = torch.tensor([0] * 6 + [1] * 2 + [2] * 2)
    torch.manual_seed(5)
    terms = m.losses(torch.randn(10, 12, 3, 3), y)
    assert set(terms) == {"recon", "spm", "dgc", "cls", "total"}
    assert all(torch.isfinite(v) for v in terms.values())
    total = terms["total"]
    total.backward(retain_graph=True)
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    m.zero_grad()
    (total - terms["recon"]).backward(retain_graph=True)      # λ-terms: nothing reaches the decoder
    assert all(p.grad is None or float(p.grad.abs().max()) < 1e-7 for p in m.decoder.parameters())
    assert any(p.grad is not None and float(p.grad.abs().max()) > 0 for p in m.bottleneck.parameters())
    m.zero_grad()
    (total - 0.1 * terms["cls"]).backward()                   # without L_cls: nothing reaches the discriminator
    assert all(p.grad is None or float(p.grad.abs().max()) < 1e-7 for p in m.discriminator.parameters())


def test_prototypes_stay_on_the_sphere_and_move_by_the_ema():
    m = _model()
    before = m.prototypes.clone()
    assert torch.allclose(before.norm(dim=1), torch.ones(4), atol=1e-5)
    m.losses(torch.randn(8, 12, 3, 3), torch.tensor([0] * 6 + [1] * 2))
    assert torch.allclose(m.prototypes.norm(dim=1), torch.ones(4), atol=1e-5) and not torch.equal(before, m.prototypes)
    z, q = _unit(10, 6, 1), torch.softmax(torch.randn(10, 4), dim=1)
    assert torch.allclose(cal.ema_prototypes(before, z, q, 0.0), F.normalize(q.T @ z, dim=1), atol=1e-6)


def test_no_anomaly_rows_leave_dgc_at_zero_and_token_rows_are_image_major():
    m = _model()
    terms = m.losses(torch.randn(6, 12, 3, 3), torch.tensor([0] * 4 + [2] * 2))   # CutMix rows ignored
    assert float(terms["dgc"]) == 0 and torch.isfinite(terms["total"])
    z = torch.arange(2 * 3 * 2 * 2.).view(2, 3, 2, 2)
    assert torch.equal(token_rows(z)[5], z[1, :, 0, 1])


def test_base_is_unsupervised_and_arcad_is_not():
    assert method_class("arcad_base").unsupervised and not method_class("arcad").unsupervised
    assert not method_class("arcad").uses_adapter and method_class("arcad").protocol["lr"] == 2e-3
    base = build_method("arcad_base", 12, (3, 3), {"taps": "5+7", "hidden": 4, "dim": 4})
    assert set(base.losses(torch.randn(4, 12, 3, 3), torch.zeros(4, dtype=torch.long))) == {"recon", "total"}


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    out = {}
    for m in ("arcad_base", "arcad"):
        d = tmp_path_factory.mktemp(m)
        out[m] = (d, run(RunConfig("synthetic", profile="smoke", anomalies=5, seed=0, method=m, out=str(d)),
                         progress=False))
    return out


@pytest.mark.parametrize("method", ["arcad_base", "arcad"])
def test_each_learns_on_synthetic_and_is_deterministic(smoke_runs, method):
    d, rec = smoke_runs[method]
    assert rec["status"] == "ok" and rec["metrics"]["auc"] > 0.9
    recon = rec["losses"]["recon"]
    assert recon[-1] < 0.8 * recon[0]                         # the base's reconstruction is learnt
    if method == "arcad_base":
        assert rec["batch"]["seen"] == 0 and rec["batch"]["pseudo"] == 0
    again = run(RunConfig("synthetic", profile="smoke", anomalies=5, seed=0, method=method), progress=False)
    assert again["metrics"] == rec["metrics"]


def test_saved_model_scores_like_the_run(smoke_runs):
    import json

    import numpy as np

    from dpdl.net import Net
    d, rec = smoke_runs["arcad"]
    net, extractor, _ = Net.load(d / "model.pt")
    assert extractor is not None and torch.allclose(net.method.prototypes.norm(dim=1), torch.ones(500), atol=1e-4)
    scores = json.loads((d / "scores.json").read_text())
    assert np.isfinite(scores["scores"]).all() and len(scores["scores"]) == len(scores["labels"])


def test_paper_profile_carries_arcads_training():
    """Sec. 4.1 in ``protocol``; the cpu profile keeps its own settings."""
    from dpdl.config import get_profile
    from dpdl.train import method_profile
    p = method_profile(get_profile("paper"), "arcad")
    assert (p.optimizer, p.lr, p.weight_decay, p.finetune_backbone, p.epochs * p.iters_per_epoch, p.batch_size) == \
        ("adamw", 2e-3, 1e-4, False, 10000, 16)
    assert method_profile(get_profile("cpu"), "arcad") == get_profile("cpu")


@pytest.mark.slow
def test_image_mode_with_a_frozen_backbone_trains_and_scores(monkeypatch):
    """The paper profile's path (backbone inside the net, frozen by ArcAD's protocol), shrunk to two steps."""
    from dpdl.methods.arcad import ArcADBase
    small = {**ArcADBase.protocol, "epochs": 1, "iters_per_epoch": 2, "batch_size": 6, "image_size": 64,
             "device": "cpu", "num_workers": 0, "autocast": "none", "channels_last": False}
    monkeypatch.setattr(ArcADBase, "protocol", small)
    rec = run(RunConfig("synthetic", profile="paper", backbone="mobilenet_v2", anomalies=2, method="arcad",
                        method_options={"prototypes": 16}), progress=False)
    assert rec["status"] == "ok" and math.isfinite(rec["metrics"]["auc"])
