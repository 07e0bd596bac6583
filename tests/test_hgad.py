"""HGAD (dpdl.methods.hgad): the flow against autograd and a grid integral, the prior's terms against scipy, the
two-stage objective, batch independence, and learning on the synthetic data."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from dpdl.methods import build_method, check_options
from dpdl.methods.hgad import HGAD, HGADConfig
from dpdl.methods.hgad.flow import ConditionalFlow, positional_encoding_2d
from dpdl.methods.hgad.prior import HierarchicalPrior


def _random_flow(dim, cond_dim, n_blocks=3, mixing="permutation", seed=0, scale=0.5):
    """A flow whose zero-initialised subnet outputs and scalings are made random, so s and t are not trivial."""
    torch.manual_seed(seed)
    flow = ConditionalFlow(dim, cond_dim, n_blocks, hidden=8, mixing=mixing).double()
    with torch.no_grad():
        for b in flow.blocks:
            b.subnet[-1].weight.normal_(0, scale)
            b.subnet[-1].bias.normal_(0, scale)
            b.log_scale.normal_(0, 0.2)
    return flow


@pytest.mark.parametrize("mixing", ["permutation", "orthogonal"])
def test_flow_logdet_matches_autograd_jacobian_and_inverts(mixing):
    dim, cdim = 7, 4
    flow = _random_flow(dim, cdim, mixing=mixing)
    x = torch.randn(5, dim, dtype=torch.float64)
    cond = torch.randn(5, cdim, dtype=torch.float64)
    z, logdet = flow(x, cond)
    for n in range(5):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None], cond[n:n + 1])[0][0], x[n])
        sign, ref = torch.linalg.slogdet(jac)
        assert float(sign) != 0.0
        assert float(logdet[n].detach()) == pytest.approx(float(ref), abs=1e-9)
    assert torch.allclose(flow.inverse(z, cond), x, atol=1e-10)


def test_two_dimensional_flow_density_integrates_to_one():
    """p(x) = p_Z(φ(x)) |det J| with the hierarchical prior (2 classes x 2 intra centres), summed on a grid."""
    flow = _random_flow(2, 4, n_blocks=4, seed=3, scale=0.3)
    prior = HierarchicalPrior(2, n_classes=2, n_intra=2, delta_std=1.0).double()
    with torch.no_grad():
        prior.phi_inter.copy_(torch.tensor([0.3, -0.2]))
        prior.phi_intra.normal_()
    h = 0.05                                      # the flow's mass reaches |x| ~ 15: a grid of side 48
    g = torch.arange(-24.0, 24.0, h, dtype=torch.float64)
    xx = torch.cartesian_prod(g, g)
    cond = torch.tensor([[0.5, -1.0, 0.2, 0.1]], dtype=torch.float64).expand(len(xx), -1)
    with torch.no_grad():
        z, logdet = flow(xx, cond)
        mass = float(torch.exp(prior.log_density(z) + logdet).sum()) * h * h
    assert mass == pytest.approx(1.0, abs=2e-3)


def _prior_and_numpy(K=3, M=4, D=5, seed=0):
    torch.manual_seed(seed)
    p = HierarchicalPrior(D, K, M, delta_std=0.7, seed=seed).double()
    with torch.no_grad():
        p.mu.normal_()
        p.phi_inter.normal_()
        p.phi_intra.normal_()
    return p, {k: v.detach().numpy() for k, v in p.named_parameters()}


def test_prior_terms_match_scipy():
    K, M, D, N = 3, 4, 5, 9
    p, w = _prior_and_numpy(K, M, D)
    z = torch.randn(N, D, dtype=torch.float64) * 1.5
    logdet = torch.randn(N, dtype=torch.float64)
    y = torch.randint(K, (N,))
    zn, ld, yn = z.numpy(), logdet.numpy(), y.numpy()
    lpy = w["phi_inter"] - logsumexp(w["phi_inter"])
    lpi = w["phi_intra"] - logsumexp(w["phi_intra"], axis=1, keepdims=True)
    centres = np.concatenate([w["mu"][:, None], w["mu"][:, None] + w["delta"]], axis=1)      # (K, M, D)
    lg = np.stack([multivariate_normal(w["mu"][k], np.eye(D)).logpdf(zn) for k in range(K)], 1)  # (N, K)
    lgi = np.stack([[multivariate_normal(centres[k, i], np.eye(D)).logpdf(zn) for i in range(M)]
                    for k in range(K)]).transpose(2, 0, 1)                                          # (N, K, M)
    # supp. Eq. (4): L_g
    want_g = -(logsumexp(lg + lpy, axis=1) + ld) / D
    np.testing.assert_allclose(p.nll_inter(z, logdet).detach().numpy(), want_g, rtol=1e-10)
    # supp. Eq. (10): L_mi
    post = lg + lpy - logsumexp(lg + lpy, axis=1, keepdims=True)
    want_mi = -(post[np.arange(N), yn] - lpy[yn])
    np.testing.assert_allclose(p.mutual_info(z, y).detach().numpy(), want_mi, rtol=1e-10)
    # main Eq. (9) (the code's form): entropy of softmax(-|z - mu|^2 / 2)
    q = np.exp(lg - logsumexp(lg, axis=1, keepdims=True))
    np.testing.assert_allclose(p.entropy(z).detach().numpy(), -(q * np.log(q)).sum(1), rtol=1e-9)
    # supp. Eq. (11): L_in, the class's own intra mixture
    want_in = -(logsumexp(lgi[np.arange(N), yn] + lpi[yn], axis=1) + ld) / D
    np.testing.assert_allclose(p.nll_intra(z, logdet, y).detach().numpy(), want_in, rtol=1e-10)
    # supp. Eqs. (5)-(6): the whole hierarchical prior
    want_all = logsumexp((lgi + lpy[None, :, None] + lpi[None]).reshape(N, -1), axis=1)
    np.testing.assert_allclose(p.log_density(z).detach().numpy(), want_all, rtol=1e-10)


def test_eq11_stops_the_main_centre_gradient_and_terms_stay_finite_far_away():
    p, _ = _prior_and_numpy()
    z = (1e3 * torch.randn(6, 5, dtype=torch.float64)).requires_grad_()     # exp(-|z - µ|²/2) underflows
    logdet = torch.zeros(6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    total = (p.nll_inter(z, logdet).mean() + p.mutual_info(z, y).mean() + p.entropy(z).mean()
             + p.nll_intra(z, logdet, y).mean())
    assert torch.isfinite(total)
    p.nll_intra(z, logdet, y).mean().backward()
    assert p.mu.grad is None or float(p.mu.grad.abs().max()) == 0.0           # SG[µ_1^y]
    assert float(p.delta.grad.abs().max()) > 0 and torch.isfinite(z.grad).all()


def _maps(n, c=6, hw=(3, 3), seed=0):
    return torch.randn(n, c, *hw, generator=torch.Generator().manual_seed(seed)) * 2.0 + 0.5


@pytest.mark.parametrize("reading", ["likelihood", "clusters", "clusters_assigned"])
def test_losses_finite_two_stage_and_score_independent_of_batch(reading):
    torch.manual_seed(0)
    m = HGAD(6, (3, 3), HGADConfig(reading=reading, n_clusters=2, n_intra=3, n_blocks=2, hidden=8, pos_dim=4,
                                     stage1_steps=1))
    normal = _maps(20)
    m.init(normal, torch.Generator().manual_seed(0))
    assert torch.allclose(m.mean, normal.permute(0, 2, 3, 1).reshape(-1, 6).mean(0), atol=1e-5)
    y = torch.zeros(8, dtype=torch.long)
    grads = []
    for _ in range(2):                                    # step 0: stage 1 (no L_in); step 1: stage 2
        m.zero_grad()
        terms = m.losses(normal[:8], y)
        assert all(torch.isfinite(v) for v in terms.values())
        terms["total"].backward()
        assert all(torch.isfinite(q.grad).all() for q in m.parameters() if q.grad is not None)
        grads.append(None if m.prior.delta.grad is None else float(m.prior.delta.grad.abs().max()))
    assert grads[0] in (None, 0.0) and grads[1] > 0
    if reading != "likelihood":                           # the pseudo-class: the nearest k-means centroid
        pooled = ((normal - m.mean[None, :, None, None]) / m.std[None, :, None, None]).mean(dim=(2, 3))
        want = torch.cdist(pooled, m.centroids).argmin(1)
        assert torch.equal(m.classes(normal), want) and len(set(want.tolist())) == 2
    m.eval()
    test = _maps(6, seed=5)
    alone = torch.cat([m.score(test[i:i + 1]) for i in range(6)])
    mixed = m.score(torch.cat([test, _maps(4, seed=9)]))[:6]
    assert torch.allclose(alone, mixed, atol=1e-5)
    assert torch.equal(m.score(test), m.score(test))


def test_score_is_the_max_or_topk_of_patch_nll():
    m = HGAD(6, (3, 3), HGADConfig(n_blocks=1, hidden=8, pos_dim=4, aggregate="topk", topk_ratio=0.3)).eval()
    m.init(_maps(10))
    x = _maps(3, seed=2)
    nll = m.patch_nll(x)
    assert torch.allclose(m.score(x), nll.sort(dim=1, descending=True).values[:, :2].mean(1).float())
    z, logdet, _ = m.latents(x)
    assert torch.allclose(nll.flatten(), -(m.prior.log_density(z) + logdet.double()) / 6)


def test_positional_encoding_is_sinusoidal_per_axis():
    pe = positional_encoding_2d(8, 3, 5).view(3, 5, 8)
    assert torch.allclose(pe[1, 2, 0], torch.sin(torch.tensor(2.0)))                     # column, frequency 1
    assert torch.allclose(pe[2, 4, 5], torch.cos(torch.tensor(2.0)))                     # row, frequency 1
    assert torch.allclose(pe[0, 3, 2], torch.sin(torch.tensor(3.0 / 100.0)))             # column, 1/10000^(2/4)


def test_config_rejects_bad_options_in_one_sentence():
    with pytest.raises(ValueError, match="reading must be one of"):
        HGADConfig(reading="entropy")
    with pytest.raises(ValueError, match="hgad"):
        check_options("hgad", {"n_blocks": 0})
    assert build_method("hgad", 6, (3, 3), {"n_blocks": 1}).unsupervised


def test_hgad_learns_on_synthetic_and_is_deterministic():
    from dpdl.train import RunConfig, run
    cfg = RunConfig("synthetic", profile="smoke", anomalies=5, seed=0, method="hgad")
    rec = run(cfg, progress=False)
    assert rec["status"] == "ok", rec["error"]
    assert rec["metrics"]["auc"] > 0.8
    assert run(cfg, progress=False)["metrics"] == rec["metrics"]


def test_semi_push_pull_matches_a_hand_computation():
    from dpdl.methods.hgad.bg import semi_push_pull
    rng = np.random.default_rng(0)
    ln, la = rng.normal(size=40), rng.normal(-0.5, 1, size=12)
    beta, tau = 0.1, 0.2
    b_n = np.sort(ln)[int(beta * 40)]
    b_a = b_n - tau
    want = (b_n - ln[ln < b_n]).mean() + (la[la > b_a] - b_a).mean()
    got = semi_push_pull(torch.tensor(ln), torch.tensor(la), beta, tau)
    assert float(got) == pytest.approx(want, rel=1e-12)


def test_hgad_bg_pushes_seen_anomaly_patches_and_stays_finite():
    from dpdl.methods.hgad import HGADBG, HGADBGConfig
    m = HGADBG(6, (3, 3), HGADBGConfig(n_blocks=1, hidden=8, pos_dim=4, topk_ratio=0.3))
    assert not m.unsupervised
    m.init(_maps(10))
    x = torch.cat([_maps(6), _maps(3, seed=4) + 3.0])
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1])
    terms = m.losses(x, y)
    assert torch.isfinite(terms["L_bg"]) and float(terms["L_bg"].detach()) > 0
    terms["total"].backward()
    assert all(torch.isfinite(q.grad).all() for q in m.parameters() if q.grad is not None)
    only_normal = m.losses(x[:6], y[:6])
    assert float(only_normal["L_bg"]) == 0.0
