"""VPDM (dpdl.methods.vpdm) against independent computations: the iterated forward process, brute-force Gaussian
conditioning, the true noise, the shared Sinkhorn's marginals, finite differences, batch independence, learning."""
from __future__ import annotations

import pytest
import torch

from dpdl.methods import build_method, check_options
from dpdl.methods.vpdm import VPDM, VPDMConfig
from dpdl.methods.vpdm.schedule import (ddim_step, ddim_steps, forward_step, linear_schedule, posterior_coefficients,
                                        predict_x0, q_sample)
from dpdl.methods.vpdm.vpot import VPOT

D = torch.float64


def test_iterating_eq13_gives_the_corrected_closed_form_of_eq14_exactly():
    """Exact recursion (float64) of the mean coefficients and the variance of Eq. (13) from x^0 = 0 / ŷ = 0: mean
    √α^t x^0 + (1 − √α^t) ŷ and variance 1 − α^t (the printed 1 − √α^t is not)."""
    s = linear_schedule(1000)
    cx, cy, var = 1.0, 0.0, 0.0
    for t in range(1, 1001):
        a = float(s.alpha_step[t]) ** 0.5
        cx, cy, var = a * cx, a * cy + (1 - a), a * a * var + float(s.beta[t])
        if t in (1, 10, 500, 1000):
            ac = float(s.alpha_cum[t])
            assert cx == pytest.approx(ac ** 0.5, rel=1e-12)
            assert cy == pytest.approx(1 - ac ** 0.5, rel=1e-12)
            assert var == pytest.approx(1 - ac, rel=1e-10)
            assert t != 500 or abs(var - (1 - ac ** 0.5)) > 0.1   # the text's variance (erratum)


def test_forward_step_and_q_sample_agree_in_monte_carlo():
    """Iterating forward_step (Eq. 13) on 20,000 draws matches q_sample's law (Eq. 14) in mean and variance."""
    s = linear_schedule(50, 1e-3, 0.2)
    g = torch.Generator().manual_seed(0)
    x0, y = torch.tensor(1.5, dtype=D), torch.tensor(-2.0, dtype=D)
    x = x0.expand(20000, 1, 1, 1).clone()
    for t in range(1, 51):
        x = forward_step(s, x, y.expand_as(x), torch.full((len(x),), t), torch.randn(x.shape, generator=g, dtype=D))
    direct = q_sample(s, x0.expand_as(x), y.expand_as(x), torch.full((len(x),), 50),
                      torch.randn(x.shape, generator=g, dtype=D))
    ac = float(s.alpha_cum[50])
    mean, var = ac ** 0.5 * 1.5 + (1 - ac ** 0.5) * -2.0, 1 - ac
    for v in (x, direct):
        assert float(v.mean()) == pytest.approx(mean, abs=4 * (var / 20000) ** 0.5)
        assert float(v.var()) == pytest.approx(var, rel=0.05)


@pytest.mark.parametrize("t", [2, 3, 100, 1000])
def test_posterior_of_eq15_matches_brute_force_gaussian_conditioning(t):
    """q(x^{t−1} | x^t, x^0, ŷ) by conditioning the joint Gaussian of (x^{t−1}, x^t) (float64), its mean's
    coefficients read off at unit inputs; Eq. (15) with γ2 = 1 − γ0 − γ1 (Appendix A) matches, the main text's γ2
    does not."""
    s = linear_schedule(1000)
    ap, a, beta = float(s.alpha_cum[t - 1]), float(s.alpha_step[t]) ** 0.5, float(s.beta[t])
    v = 1 - ap                                                 # Var x^{t-1} | x^0, ŷ (Eq. 14)

    def cond_mean(x0, xt, y):
        m = ap ** 0.5 * x0 + (1 - ap ** 0.5) * y               # E x^{t-1}
        cov, var_t = a * v, a * a * v + beta                   # Cov(x^{t-1}, x^t), Var x^t
        return m + cov / var_t * (xt - (a * m + (1 - a) * y))

    g0, g1, g2, bt = posterior_coefficients(s, t)
    assert g0 == pytest.approx(cond_mean(1, 0, 0), rel=1e-9, abs=1e-15)
    assert g1 == pytest.approx(cond_mean(0, 1, 0), rel=1e-9)
    assert g2 == pytest.approx(cond_mean(0, 0, 1), rel=1e-9, abs=1e-12)
    assert bt == pytest.approx(v - (a * v) ** 2 / (a * a * v + beta), rel=1e-9)
    ac = float(s.alpha_cum[t])
    printed = 1 + (a - 1) * (a + ap ** 0.5) / (1 - ac)          # the main text's γ2 (erratum)
    assert abs(printed - g2) > 1e-4


def test_the_true_noise_returns_x0_by_the_reparameterisation_and_by_ddim():
    s = linear_schedule(1000)
    g = torch.Generator().manual_seed(1)
    x0, y, eps = (torch.randn(4, 3, 2, 2, generator=g, dtype=D) for _ in range(3))
    for t in (1, 37, 999, 1000):
        tt = torch.full((4,), t)
        xt = q_sample(s, x0, y, tt, eps)
        assert torch.allclose(predict_x0(s, xt, y, tt, eps), x0, atol=1e-9)      # Alg. 2 line 4, corrected
        ac = float(s.alpha_cum[t])
        printed = (xt - (1 - ac ** 0.5) * y - (1 - ac) ** 0.5 * eps) / ac        # the text: 1/α^t (erratum)
        assert t == 1 or not torch.allclose(printed, x0, atol=1e-3)
        assert torch.allclose(ddim_step(s, xt, y, t, 0, eps), x0, atol=1e-9)    # DDIM to 0
        if t > 1:                                                                # DDIM (η = 0) keeps the noise
            assert torch.allclose(ddim_step(s, xt, y, t, t // 2, eps), q_sample(s, x0, y, torch.full((4,), t // 2),
                                                                                 eps), atol=1e-9)
    lo, hi = torch.full_like(x0, -1.0), torch.full_like(x0, 1.0)                 # clip: x̂^0 to the data range
    xt = q_sample(s, x0, y, torch.full((4,), 500), eps)
    assert torch.allclose(ddim_step(s, xt, y, 500, 0, eps, clip=(lo, hi)), x0.clamp(-1, 1), atol=1e-9)
    wide = (torch.full_like(x0, -9.0), torch.full_like(x0, 9.0))
    assert torch.allclose(ddim_step(s, xt, y, 500, 250, eps, clip=wide), ddim_step(s, xt, y, 500, 250, eps), atol=1e-9)
    assert ddim_steps(1000, 4) == [1000, 667, 334, 1] and ddim_steps(5, 5) == [5, 4, 3, 2, 1]


def _vpot(k=3, eps=0.5, iters=3000):
    torch.manual_seed(0)
    return VPOT(2, (4, 4), k=k, down=2, eps=eps, iters=iters).double()


def test_vpot_plan_holds_its_marginals_and_conditions_are_barycentres():
    m = _vpot()
    x = torch.randn(5, 2, 4, 4, dtype=D)
    log_t, _ = m.transport(m.down(x))
    t = log_t.exp()
    assert torch.allclose(t.sum(1), torch.full((5,), 1 / 5, dtype=D), atol=1e-9)      # rows: 1/K_f (Eq. 7)
    assert torch.allclose(t.sum(0), torch.full((3,), 1 / 3, dtype=D), atol=1e-9)      # columns: 1/K (Eq. 8)
    assert torch.allclose(m.down(x), x.reshape(5, 2, 2, 2, 2, 2).mean((3, 5)).flatten(1))   # 2x2 average pooling
    cond = m.condition(log_t)
    bary = (5 * t) @ m.prototypes.flatten(1)                                          # Eq. (10), row-normalised
    want = torch.nn.functional.interpolate(bary.view(5, 2, 2, 2), size=(4, 4), mode="bilinear", align_corners=False)
    assert torch.allclose(cond, want, atol=1e-12)
    lone = m.paired(x, x[:0])                                                         # a 1 x K plan is uniform
    assert torch.allclose(lone, m.condition(torch.full((1, 1, 3), -torch.log(torch.tensor(3.0)), dtype=D))[0, 0]
                          .expand_as(lone), atol=1e-9)


def test_vpot_loss_gradient_in_the_prototypes_matches_finite_differences():
    """L_OT of Eq. (11) (⟨T, C⟩ + ε Σ T ln T at the plan, C Euclidean) differentiated by autograd through the
    unrolled Sinkhorn vs central differences of the value in each prototype coordinate (float64)."""
    m = _vpot()
    v = m.down(torch.randn(4, 2, 4, 4, dtype=D))
    (grad,) = torch.autograd.grad(m.transport(v)[1], m.prototypes)
    base, h = m.prototypes.detach().clone(), 1e-6
    for idx in [(0, 0, 0, 0), (1, 1, 0, 1), (2, 0, 1, 1), (2, 1, 1, 0)]:
        vals = []
        for sign in (1, -1):
            with torch.no_grad():
                m.prototypes.copy_(base)
                m.prototypes[idx] += sign * h
                vals.append(float(m.transport(v)[1]))
        assert float(grad[idx]) == pytest.approx((vals[0] - vals[1]) / (2 * h), abs=1e-6)
    with torch.no_grad():
        m.prototypes.copy_(base)


def _small(**kw):
    cfg = VPDMConfig(**{"prototypes": 4, "hidden": 16, "blocks": 1, "pair": 5, "T": 50, "steps": 5, **kw})
    m = VPDM(6, (5, 5), cfg)
    g = torch.Generator().manual_seed(0)
    m.init(torch.randn(30, 6, 5, 5, generator=g) * 2 + 1, generator=g)
    return m.eval()


@pytest.mark.parametrize("kw", [{}, {"sampler": "ancestral"}, {"eta": 1.0}, {"start": "mean", "denoiser": "mlp"}])
def test_a_test_images_score_does_not_depend_on_its_batch(kw):
    m = _small(**kw)
    g = torch.Generator().manual_seed(2)
    x, a, b = (torch.randn(n, 6, 5, 5, generator=g) for n in (3, 4, 7))
    first = m.score(torch.cat([x, a]))[:3]
    second = m.score(torch.cat([b, x]))[7:]
    assert torch.allclose(first, second, rtol=1e-5, atol=1e-6)
    assert torch.equal(m.score(x), m.score(x))                                    # deterministic


def test_losses_are_finite_and_reach_every_part():
    m = _small()
    m.train()
    terms = m.losses(torch.randn(8, 6, 5, 5), torch.zeros(8, dtype=torch.long))
    assert set(terms) == {"elbo", "prior", "ot", "total"}
    terms["total"].backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert m.vpot.prototypes.grad.abs().sum() > 0 and m.eps_model.inp.weight.grad.abs().sum() > 0


def test_saved_state_restores_the_scores_and_options_are_checked():
    m = _small()
    m2 = VPDM(6, (5, 5), m.cfg)
    m2.load_state_dict(m.state_dict())
    x = torch.randn(3, 6, 5, 5)
    assert torch.equal(m.score(x), m2.eval().score(x))
    assert check_options("vpdm", {"sampler": "ancestral"})["sampler"] == "ancestral"
    for bad in ({"sampler": "euler"}, {"steps": 0}, {"eta": 2.0}, {"steps": 2000}):
        with pytest.raises(ValueError):
            check_options("vpdm", bad)
    assert build_method("vpdm", 6, (5, 5)).unsupervised and not VPDM.uses_adapter


def test_paper_profile_carries_the_published_settings_and_cpu_keeps_its_own():
    from dpdl.config import get_profile
    from dpdl.train import method_profile
    own = method_profile(get_profile("paper"), "vpdm")
    assert (own.optimizer, own.lr, own.weight_decay, own.batch_size) == ("adam", 1e-3, 0.0, 32)   # Appendix D
    cfg = VPDMConfig()
    assert (cfg.prototypes, cfg.down, cfg.T, cfg.beta_1, cfg.beta_T) == (50, 4, 1000, 1e-4, 0.02)  # Sec. 4.1
    assert method_profile(get_profile("cpu"), "vpdm") == get_profile("cpu")
