"""The "bridge" reading of Eqs. (8)-(17), (22): DPL as a learnt Schrödinger bridge (LightSB's objective), checked
against independent computations: the plan's mean against Monte Carlo, the objective's minimiser on a Gaussian pair
against the closed-form entropic OT plan, and finite, bounded losses and gradients at ε = 10⁻³."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dpdl.methods.dpdl import bridge
from dpdl.methods.dpdl.model import DPDLConfig, DPDLModel

BRIDGE = dict(alpha_param="eps_scaled", bridge_input="unit", dpl_loss="bridge", residual="bridge",
              log_sigma_bound=3.0, prototype_decay=False)


def feats(n, seed):
    """(n, 8, 4, 4) non-negative feature maps (ReLU of Gaussians), seeded."""
    return torch.relu(torch.randn(n, 8, 4, 4, generator=torch.Generator().manual_seed(seed)))


def model(seed=0, **kw):
    """A DPDL model with 4 prototypes on feats' maps, VQ-initialised on 40 of them."""
    torch.manual_seed(seed)
    m = DPDLModel(8, (4, 4), DPDLConfig(prototypes=4, **kw))
    m.init_prototypes(feats(40, seed), generator=torch.Generator().manual_seed(0))
    return m


def test_plan_mean_monte_carlo():
    """ψ_p(x) = E[y|x] by importance reweighting numpy samples of φ1 with exp(⟨x,y⟩/ε)."""
    eps, n, rng = 0.5, 400_000, np.random.default_rng(3)
    g = torch.Generator().manual_seed(4)
    la, mu = torch.randn(3, generator=g, dtype=torch.float64), 0.5 * torch.randn(3, 2, generator=g, dtype=torch.float64)
    sigma = torch.exp(0.3 * torch.randn(3, 2, generator=g, dtype=torch.float64))
    a = torch.softmax(la, 0).numpy()
    c = rng.choice(3, size=n, p=a)
    y = mu.numpy()[c] + np.sqrt(eps * sigma.numpy()[c]) * rng.standard_normal((n, 2))
    x = torch.tensor([[0.3, -0.2], [-0.4, 0.1]], dtype=torch.float64)
    got = bridge.plan_mean(x, la, mu, sigma, eps).numpy()
    for i in range(2):
        f = np.exp(y @ x[i].numpy() / eps)
        f = f / f.mean()
        est, se = (f[:, None] * y).mean(0), (f[:, None] * y).std(0) / math.sqrt(n)
        assert np.all(np.abs(est - got[i]) < 5 * se + 1e-3), (est, got[i], se)


def gaussian_sb_slope(a2, b2, eps):
    """Entropic OT between N(m0, a²) and N(m1, b²) with π ∝ u(x) exp(xy/ε) v(y): the joint Gaussian's precision has
    off-diagonal −1/ε, so the cross-covariance c solves c² + εc = a²b²; the plan y|x has slope c/a²."""
    c = (-eps + math.sqrt(eps * eps + 4 * a2 * b2)) / 2
    return c / a2


@pytest.mark.parametrize("eps", [0.05, 0.5])
def test_sb_loss_minimiser_is_the_closed_form_gaussian_bridge(eps):
    """One component, diagonal: the minimiser of LightSB's objective is y|x ~ N(m1 + S(x − m0), εS) with the closed
    form S (and the plan's conditional variance εS = b² − c²/a²)."""
    rng = np.random.default_rng(0)
    n, m0, a = 20_000, np.array([0.5, -1.0]), np.array([1.0, 0.6])
    m1, b = np.array([2.0, 0.3]), np.array([0.4, 1.5])
    x = torch.tensor(m0 + a * rng.standard_normal((n, 2)))
    y = torch.tensor(m1 + b * rng.standard_normal((n, 2)))
    la = torch.zeros(1, dtype=torch.float64)
    r = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    log_s = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    a2, b2 = x.var(0, unbiased=False).numpy(), y.var(0, unbiased=False).numpy()  # the samples' own moments
    want_s = np.array([gaussian_sb_slope(a2[d], b2[d], eps) for d in range(2)])
    want_r = y.mean(0).numpy() - want_s * x.mean(0).numpy()
    # the closed form is a stationary point of the empirical objective...
    r_star = torch.tensor(want_r[None], requires_grad=True)
    ls_star = torch.tensor(np.log(want_s)[None], requires_grad=True)
    best = bridge.sb_loss(x, y, la, r_star, ls_star.exp(), eps)
    best.backward()
    assert float(r_star.grad.abs().max()) < 1e-8 and float(ls_star.grad.abs().max()) < 1e-8
    # ...and the minimum that an optimiser started elsewhere reaches
    opt = torch.optim.LBFGS([r, log_s], lr=1, max_iter=500, line_search_fn="strong_wolfe", tolerance_grad=1e-14,
                            tolerance_change=0)

    def closure():
        opt.zero_grad()
        loss = eps * bridge.sb_loss(x, y, la, r, log_s.exp(), eps)
        loss.backward()
        return loss
    for _ in range(3):
        opt.step(closure)
    np.testing.assert_allclose(log_s.exp().detach().numpy()[0], want_s, rtol=1e-3)
    np.testing.assert_allclose(r.detach().numpy()[0], want_r, atol=1e-3)
    assert float(bridge.sb_loss(x, y, la, r, log_s.exp(), eps).detach()) >= float(best.detach()) - 1e-9
    # the fitted plan's conditional variance εS equals b² − c²/a² (independent of the objective)
    c = want_s * a2
    np.testing.assert_allclose(eps * want_s, b2 - c * c / a2, rtol=1e-8)


def test_bridge_reading_has_its_own_potential_and_it_feeds_the_residual():
    m = model(eps=1e-3, **BRIDGE)
    assert m.potential is not None and m.potential.mu is not m.prototypes.mu
    torch.testing.assert_close(m.potential.mu, m.prototypes.mu)          # VQ-initialised like the prototypes
    x, y = feats(12, 5), torch.tensor([0.0] * 8 + [1.0] * 4)
    terms = m.losses(x, y)
    terms["total"].backward()
    for p in (m.potential.mu, m.potential.log_sigma, m.potential.logits_alpha, m.prototypes.mu):
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0
    # moving θ_ψp alone changes the score: the learnt plan feeds M_r (Eq. 22)
    with torch.no_grad():
        s0 = m.score(x)
        m.potential.mu.add_(0.05 * torch.randn_like(m.potential.mu))
        assert float((m.score(x) - s0).abs().max()) > 1e-4
    with pytest.raises(ValueError, match="go together"):
        DPDLConfig(dpl_loss="bridge", residual="nearest")


def model_sb_term(m, x, y, monkeypatch):
    """(terms, sb): ``m.losses(x, y)`` and the SB objective exactly as DPDLModel's own loss code computed it inside
    that call (``bridge.sb_loss`` wrapped to keep its output; the model's arguments and detaches are untouched)."""
    seen = []

    def keep(*args, **kw):
        seen.append(sb_loss(*args, **kw))
        return seen[-1]
    sb_loss = bridge.sb_loss
    monkeypatch.setattr(bridge, "sb_loss", keep)
    terms = m.losses(x, y)
    assert len(seen) == 1
    return terms, seen[0]


def test_bridge_sb_term_does_not_move_the_features_or_the_prototypes(monkeypatch):
    """The model's SB term sees detached source features and the detached prototype means (its target samples):
    its gradient reaches θ_ψp only. The term is the one DPDLModel.losses computes, so removing a detach there fails."""
    m = model(eps=1e-3, **BRIDGE)
    with torch.no_grad():   # θ_ψp away from the prototypes (VQ-initialised equal, log v_θ is flat at its own means)
        m.potential.mu.add_(0.05 * torch.randn(m.potential.mu.shape, generator=torch.Generator().manual_seed(1)))
    x, y = feats(10, 2).requires_grad_(), torch.tensor([0.0] * 7 + [1.0] * 3)
    _, sb = model_sb_term(m, x, y, monkeypatch)
    theta = list(m.potential.parameters())
    g = torch.autograd.grad(sb, [x, m.prototypes.mu, m.prototypes.log_sigma, *theta], allow_unused=True)
    for gi in g[:3]:                                       # the features and the prototypes: no gradient
        assert gi is None or float(gi.abs().max()) == 0.0
    assert float(g[3 + [n for n, _ in m.potential.named_parameters()].index("mu")].abs().sum()) > 0   # θ_ψp's means


def test_bridge_potential_is_trained_jointly_by_the_total_loss(monkeypatch):
    """θ_ψp is trained by Eq. (23)'s total, not by the SB term alone: the transport margin (through ψ_p = the plan's
    mean) and M_r's loss (through the residual) reach it too (book/method.md, book/deviations.md)."""
    m = model(eps=1e-3, **BRIDGE)
    x, y = feats(12, 5), torch.tensor([0.0] * 8 + [1.0] * 4)
    terms, sb = model_sb_term(m, x, y, monkeypatch)
    margin_n = terms["dpl_n"] - m.cfg.dpl_weight * m.cfg.eps * sb          # L^n minus its SB part (const: no grad)
    for name, part in (("margin L^n", margin_n), ("M_r", terms["mr"])):
        g = torch.autograd.grad(part, m.potential.mu, allow_unused=True, retain_graph=True)[0]   # ψ_p is shared
        assert g is not None and float(g.abs().sum()) > 0, name


def test_bridge_losses_finite_and_bounded_at_eps_1e3():
    m = model(eps=1e-3, **BRIDGE)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    D, b = m.D, BRIDGE["log_sigma_bound"]
    lower = -1e-3 * D * b                                   # d ≥ ε Σ log σ ≥ −ε D b
    for step in range(30):
        x = feats(12, 100 + step)
        y = torch.tensor([0.0] * 8 + [1.0] * 4)
        terms = m.losses(x, y)
        opt.zero_grad()
        terms["total"].backward()
        for k, v in terms.items():
            assert math.isfinite(float(v.detach())), (step, k)
        assert all(bool(torch.isfinite(p.grad).all()) for p in m.parameters() if p.grad is not None)
        assert 0.0 <= float(terms["dpl_a"].detach()) <= DPDLConfig.dpl_margin + 4.0 * math.exp(b) - lower + 1e-6
        assert float(terms["dpl_n"].detach()) > -1e4                  # the SB term is bounded below for bounded σ
        opt.step()


def test_no_dpl_freezes_the_bridge_too():
    m = model(eps=1e-3, use_dpl=False, **BRIDGE)
    assert not any(p.requires_grad for p in m.potential.parameters())
    assert "dpl_n" not in m.losses(feats(6, 1), torch.tensor([0.0] * 4 + [1.0] * 2))
