"""dpdl.methods.dpdl.bridge against independent computations: Monte Carlo, quadrature, scipy densities, generic
Gaussian integrals + autograd, and the SDE endpoint law."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.special import logsumexp as np_logsumexp
from scipy.stats import multivariate_normal

from dpdl.methods.dpdl import bridge


def make_params(C=3, D=3, seed=0, scale_mu=0.5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    log_alpha = torch.randn(C, generator=g, dtype=dtype)          # unnormalised on purpose
    mu = scale_mu * torch.randn(C, D, generator=g, dtype=dtype)
    sigma = torch.exp(0.4 * torch.randn(C, D, generator=g, dtype=dtype))
    return log_alpha, mu, sigma


def sample_phi1(n, log_alpha, mu, sigma, eps, seed=1):
    """Draw n samples from φ1 = Σ α_c N(µ_c, ε diag σ_c) with numpy (independent of the module)."""
    rng = np.random.default_rng(seed)
    a = np.exp(log_alpha.numpy() - np_logsumexp(log_alpha.numpy()))
    c = rng.choice(len(a), size=n, p=a)
    z = rng.standard_normal((n, mu.shape[1]))
    return mu.numpy()[c] + np.sqrt(eps * sigma.numpy()[c]) * z


# ------------------------------------------------------------------ log ϖ (Eq. 12)
def test_log_normalizer_monte_carlo():
    eps, n = 0.5, 200_000
    log_alpha, mu, sigma = make_params(C=3, D=3)
    y = sample_phi1(n, log_alpha, mu, sigma, eps)
    x = torch.tensor([[0.3, -0.2, 0.1], [-0.1, 0.25, 0.2], [0.0, 0.0, 0.0]], dtype=torch.float64)
    got = bridge.log_normalizer(x, log_alpha, mu, sigma, eps).numpy()
    for i in range(x.shape[0]):
        f = np.exp(y @ x[i].numpy() / eps)
        est, se = f.mean(), f.std() / math.sqrt(n)
        assert abs(math.exp(got[i]) - est) < 5 * se + 1e-12, (i, math.exp(got[i]), est, se)
    assert abs(got[2]) < 1e-12                                # ϖ(0) = ∫ φ1 = 1 (α normalised)


def test_log_normalizer_quadrature_1d():
    eps = 0.3
    log_alpha, mu, sigma = make_params(C=3, D=1, seed=3)
    a = np.exp(log_alpha.numpy() - np_logsumexp(log_alpha.numpy()))

    def phi1(y):
        return sum(a[c] * math.exp(-(y - mu[c, 0].item()) ** 2 / (2 * eps * sigma[c, 0].item()))
                   / math.sqrt(2 * math.pi * eps * sigma[c, 0].item()) for c in range(3))

    for xv in (-0.7, 0.0, 0.4, 1.1):
        val, _ = integrate.quad(lambda yy: math.exp(xv * yy / eps) * phi1(yy), -30, 30, limit=400)
        got = bridge.log_normalizer(torch.tensor([[xv]], dtype=torch.float64), log_alpha, mu, sigma, eps)
        assert got.item() == pytest.approx(math.log(val), abs=1e-7)


# ------------------------------------------------------------------ conditional plan (Eq. 13)
def test_conditional_plan_closed_form_by_hand():
    eps = 0.2
    log_alpha, mu, sigma = make_params(C=4, D=5, seed=4)
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    w, means = bridge.conditional_plan(x, log_alpha, mu, sigma, eps)
    la, m, s, xn = log_alpha.numpy(), mu.numpy(), sigma.numpy(), x.numpy()
    for b in range(6):
        logits = np.array([la[c] + (np.sum(xn[b] * s[c] * xn[b]) + 2 * m[c] @ xn[b]) / (2 * eps) for c in range(4)])
        ref = np.exp(logits - np_logsumexp(logits))
        np.testing.assert_allclose(w[b].numpy(), ref, rtol=1e-10, atol=1e-14)
        for c in range(4):
            np.testing.assert_allclose(means[b, c].numpy(), m[c] + s[c] * xn[b], rtol=1e-12)
    np.testing.assert_allclose(w.sum(1).numpy(), 1.0, rtol=1e-12)


def test_conditional_plan_mean_monte_carlo():
    """E_π[y|x] by importance reweighting samples of φ1 with exp(⟨x,y⟩/ε)/ϖ(x)."""
    eps, n = 0.5, 200_000
    log_alpha, mu, sigma = make_params(C=3, D=3, seed=5)
    y = sample_phi1(n, log_alpha, mu, sigma, eps, seed=2)
    x = torch.tensor([[0.2, -0.3, 0.15]], dtype=torch.float64)
    w, means = bridge.conditional_plan(x, log_alpha, mu, sigma, eps)
    mean_plan = (w[0, :, None] * means[0]).sum(0).numpy()
    f = np.exp(y @ x[0].numpy() / eps)
    f = f / f.mean()
    est = (f[:, None] * y).mean(0)
    se = (f[:, None] * y).std(0) / math.sqrt(n)
    assert np.all(np.abs(est - mean_plan) < 5 * se + 2e-3), (est, mean_plan, se)


# ------------------------------------------------------------------ drift (Eq. 4 / 14)
def log_h_generic(x, t, log_alpha, mu, sigma, eps):
    """log ∫ N(x'|x,(1−t)εI) exp(‖x'‖²/2ε) φ1(x') dx' for one x (D,), via the generic full-matrix
    Gaussian integral ∫exp(−½x'ᵀAx' + bᵀx' + k) = exp(k + ½bᵀA⁻¹b)(2π)^{D/2}|A|^{-1/2} (torch float64)."""
    D = x.shape[0]
    tau = (1 - t) * eps
    la = torch.log_softmax(log_alpha, 0)
    I = torch.eye(D, dtype=torch.float64)
    terms = []
    for c in range(mu.shape[0]):
        S = torch.diag(eps * sigma[c])
        Sinv = torch.linalg.inv(S)
        A = I / tau - I / eps + Sinv
        b = x / tau + Sinv @ mu[c]
        k = (-(x @ x) / (2 * tau) - 0.5 * mu[c] @ Sinv @ mu[c]
             - 0.5 * D * math.log(2 * math.pi * tau) - 0.5 * D * math.log(2 * math.pi) - 0.5 * torch.logdet(S))
        val = k + 0.5 * b @ torch.linalg.solve(A, b) + 0.5 * D * math.log(2 * math.pi) - 0.5 * torch.logdet(A)
        terms.append(la[c] + val)
    return torch.logsumexp(torch.stack(terms), 0)


@pytest.mark.parametrize("t", [0.0, 0.3, 0.7, 0.95])
def test_drift_matches_autograd_of_generic_integral(t):
    eps = 0.25
    log_alpha, mu, sigma = make_params(C=3, D=3, seed=6)
    xs = torch.randn(4, 3, generator=torch.Generator().manual_seed(t.__hash__() % 1000), dtype=torch.float64)
    got = bridge.drift(xs, t, log_alpha, mu, sigma, eps)
    for i in range(4):
        x = xs[i].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(log_h_generic(x, t, log_alpha, mu, sigma, eps), x)
        np.testing.assert_allclose(got[i].numpy(), (eps * grad).numpy(), rtol=1e-8, atol=1e-10)


def test_drift_matches_quadrature_finite_difference_1d():
    eps, t, h = 0.4, 0.5, 1e-4
    log_alpha, mu, sigma = make_params(C=2, D=1, seed=7)
    a = np.exp(log_alpha.numpy() - np_logsumexp(log_alpha.numpy()))
    m, s = mu[:, 0].numpy(), sigma[:, 0].numpy()
    tau = (1 - t) * eps

    def h_of(xv):
        def f(xp):
            phi = sum(a[c] * math.exp(-(xp - m[c]) ** 2 / (2 * eps * s[c])) / math.sqrt(2 * math.pi * eps * s[c])
                      for c in range(2))
            return math.exp(-(xp - xv) ** 2 / (2 * tau) + xp ** 2 / (2 * eps)) / math.sqrt(2 * math.pi * tau) * phi
        return integrate.quad(f, -20, 20, limit=400, epsabs=1e-13, epsrel=1e-12)[0]

    for xv in (-0.5, 0.2, 0.9):
        fd = eps * (math.log(h_of(xv + h)) - math.log(h_of(xv - h))) / (2 * h)
        got = bridge.drift(torch.tensor([[xv]], dtype=torch.float64), t, log_alpha, mu, sigma, eps).item()
        assert got == pytest.approx(fd, abs=1e-5)


def test_drift_at_zero_is_plan_mean_minus_x_and_tensor_t():
    eps = 0.1
    log_alpha, mu, sigma = make_params(C=3, D=4, seed=8)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w, means = bridge.conditional_plan(x, log_alpha, mu, sigma, eps)
    g0 = bridge.drift(x, 0.0, log_alpha, mu, sigma, eps)
    np.testing.assert_allclose(g0.numpy(), ((w[:, :, None] * means).sum(1) - x).numpy(), rtol=1e-10, atol=1e-12)
    lw, pm, _ = bridge.posterior_at(x, 0.0, log_alpha, mu, sigma, eps)
    np.testing.assert_allclose(lw.exp().numpy(), w.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(pm.numpy(), means.numpy(), rtol=1e-12)
    ts = torch.tensor([0.0, 0.2, 0.5, 0.8, 0.99], dtype=torch.float64)
    gt = bridge.drift(x, ts, log_alpha, mu, sigma, eps)
    for i in range(5):
        np.testing.assert_allclose(gt[i].numpy(), bridge.drift(x[i:i + 1], float(ts[i]), log_alpha, mu, sigma, eps)[0].numpy(),
                                   rtol=1e-12)
    with pytest.raises(ValueError):
        bridge.drift(x, 1.0, log_alpha, mu, sigma, eps)


def test_sde_endpoint_matches_plan_samples():
    """Euler–Maruyama endpoint of dX = g dt + √ε dW has the law of π(·|x) (Eq. 13): moments agree."""
    eps, n = 0.2, 10_000
    log_alpha, mu, sigma = make_params(C=3, D=2, seed=10, scale_mu=0.8)
    x0 = torch.tensor([0.3, -0.4], dtype=torch.float64).repeat(n, 1)
    g = torch.Generator().manual_seed(0)
    y_sde = bridge.sample_sde(x0, log_alpha, mu, sigma, eps, n_steps=100, generator=g)
    y_plan = bridge.sample_plan(x0, log_alpha, mu, sigma, eps, generator=g)
    # exact moments of the plan
    w, means = bridge.conditional_plan(x0[:1], log_alpha, mu, sigma, eps)
    w, means = w[0], means[0]
    m_exact = (w[:, None] * means).sum(0)
    v_exact = (w[:, None] * (eps * sigma + means ** 2)).sum(0) - m_exact ** 2
    from scipy.stats import kstest, norm

    for y in (y_sde, y_plan):
        for d in range(2):                      # each marginal against the exact mixture CDF
            cdf = lambda v, d=d: sum(w[c].item() * norm.cdf(v, means[c, d].item(), math.sqrt(eps * sigma[c, d].item()))
                                     for c in range(3))
            assert kstest(y[:, d].numpy(), cdf).pvalue > 1e-3
        se_m = torch.sqrt(v_exact / n)
        assert torch.all((y.mean(0) - m_exact).abs() < 5 * se_m + 0.01), (y.mean(0), m_exact)
        assert torch.all((y.var(0) / v_exact - 1).abs() < 0.1), (y.var(0), v_exact)


def test_sample_plan_component_frequencies():
    eps, n = 0.3, 30_000
    log_alpha, mu, sigma = make_params(C=3, D=2, seed=11)
    x = torch.tensor([[0.1, 0.2]], dtype=torch.float64).repeat(n, 1)
    _, c = bridge.sample_plan(x, log_alpha, mu, sigma, eps, generator=torch.Generator().manual_seed(3),
                              return_component=True)
    w, _ = bridge.conditional_plan(x[:1], log_alpha, mu, sigma, eps)
    freq = torch.bincount(c, minlength=3).double() / n
    assert torch.all((freq - w[0]).abs() < 5 * torch.sqrt(w[0] * (1 - w[0]) / n) + 1e-3)


# ------------------------------------------------------------------ log φ1 (Eq. 8) and the losses (16–17)
def test_log_potential_vs_scipy():
    eps = 0.05
    log_alpha, mu, sigma = make_params(C=4, D=3, seed=12)
    y = torch.randn(7, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.5
    got = bridge.log_potential(y, log_alpha, mu, sigma, eps).numpy()
    a = np.exp(log_alpha.numpy() - np_logsumexp(log_alpha.numpy()))
    ref = np.log(sum(a[c] * multivariate_normal(mu[c].numpy(), np.diag(eps * sigma[c].numpy())).pdf(y.numpy())
                     for c in range(4)))
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    # at the means (the terms of Eqs. 16–17), in log space against scipy's logpdf
    got_mu = bridge.log_potential(mu, log_alpha, mu, sigma, eps).numpy()
    ref_mu = np_logsumexp(np.stack([np.log(a[c]) + multivariate_normal(mu[c].numpy(), np.diag(eps * sigma[c].numpy()))
                                    .logpdf(mu.numpy()) for c in range(4)]), axis=0)
    np.testing.assert_allclose(got_mu, ref_mu, rtol=1e-9)


def test_dpl_losses_are_the_printed_equations():
    eps = 0.1
    log_alpha, mu, sigma = make_params(C=3, D=4, seed=13)
    g = torch.Generator().manual_seed(5)
    xn, xa = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(2, 4, generator=g, dtype=torch.float64)
    lp_mu = bridge.log_potential(mu, log_alpha, mu, sigma, eps).mean()
    ln = bridge.dpl_normal_loss(xn, log_alpha, mu, sigma, eps)
    la = bridge.dpl_anomaly_loss(xa, log_alpha, mu, sigma, eps)
    assert ln.item() == pytest.approx((bridge.log_normalizer(xn, log_alpha, mu, sigma, eps).mean() - lp_mu).item(), rel=1e-12)
    assert la.item() == pytest.approx((lp_mu - bridge.log_normalizer(xa, log_alpha, mu, sigma, eps).mean()).item(), rel=1e-12)
    # the φ1 terms cancel in the sum (documented issue)
    s = bridge.log_normalizer(xn, log_alpha, mu, sigma, eps).mean() - bridge.log_normalizer(xa, log_alpha, mu, sigma, eps).mean()
    assert (ln + la).item() == pytest.approx(s.item(), rel=1e-10, abs=1e-12)
    # Eq. (17) is unbounded below: scaling the anomaly features makes it arbitrarily negative
    assert bridge.dpl_anomaly_loss(10 * xa, log_alpha, mu, sigma, eps) < la - 100
    # Eq. (16) is unbounded below in σ: shrinking every σ_c lowers it without limit
    assert bridge.dpl_normal_loss(xn, log_alpha, mu, sigma * 1e-6, eps) < ln - 10


# ------------------------------------------------------------------ numerics at the paper's scale
def test_float32_finite_at_paper_scale():
    eps, B, C, D = 1e-3, 6, 32, 50_000
    g = torch.Generator().manual_seed(0)
    feats = torch.relu(torch.randn(B + C, D, generator=g))               # ResNet-like post-ReLU features
    x = feats[:B].clone().requires_grad_(True)
    mu = (feats[B:] + 0.1 * torch.randn(C, D, generator=g)).requires_grad_(True)
    log_sigma = (0.1 * torch.randn(C, D, generator=g)).requires_grad_(True)
    log_alpha = torch.zeros(C, requires_grad=True)
    sigma = log_sigma.exp()
    ln = bridge.log_normalizer(x, log_alpha, mu, sigma, eps)
    assert ln.dtype == torch.float32 and torch.isfinite(ln).all()
    assert ln.abs().max() > 1e6                                            # O(D/ε): really the hard regime
    lp = bridge.log_potential(mu, log_alpha, mu, sigma, eps)
    assert torch.isfinite(lp).all()
    loss = (bridge.dpl_normal_loss(x[:4], log_alpha, mu, sigma, eps)
            + bridge.dpl_anomaly_loss(x[4:], log_alpha, mu, sigma, eps)) * eps / D
    assert torch.isfinite(loss)
    loss.backward()
    for t in (x, mu, log_sigma, log_alpha):
        assert torch.isfinite(t.grad).all()
    w, _ = bridge.conditional_plan(x.detach(), log_alpha.detach(), mu.detach(), sigma.detach(), eps)
    assert torch.isfinite(w).all() and torch.allclose(w.sum(1), torch.ones(B))
    gdr = bridge.drift(x.detach(), 0.9, log_alpha.detach(), mu.detach(), sigma.detach(), eps)
    assert torch.isfinite(gdr).all()


def test_dpl_losses_shared_equals_separate():
    eps = 0.1
    log_alpha, mu, sigma = make_params(C=3, D=4, seed=14)
    g = torch.Generator().manual_seed(6)
    xn, xa = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(2, 4, generator=g, dtype=torch.float64)
    ln, la = bridge.dpl_losses(xn, xa, log_alpha, mu, sigma, eps)
    assert ln.item() == pytest.approx(bridge.dpl_normal_loss(xn, log_alpha, mu, sigma, eps).item(), rel=1e-12)
    assert la.item() == pytest.approx(bridge.dpl_anomaly_loss(xa, log_alpha, mu, sigma, eps).item(), rel=1e-12)
    ln, la = bridge.dpl_losses(xn, xa[:0], log_alpha, mu, sigma, eps)
    assert la is None and ln is not None


def test_plan_weights_rank_by_inner_product_not_distance():
    """Documented observation: with σ = 1 the plan picks argmax_c µ_cᵀx, not the nearest prototype."""
    eps = 0.01
    mu = torch.tensor([[1.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    sigma = torch.ones(2, 2, dtype=torch.float64)
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)          # sits on prototype 0
    w = bridge.plan_weights(x, torch.zeros(2, dtype=torch.float64), mu, sigma, eps)
    assert w[0, 1] > 0.999
    w2, _ = bridge.conditional_plan(x, torch.zeros(2, dtype=torch.float64), mu, sigma, eps)
    torch.testing.assert_close(w, w2)
