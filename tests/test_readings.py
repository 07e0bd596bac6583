"""Issue 12: the readings of Eqs. (8)-(17) and (22) (DPDLConfig options), checked against independent computations.

Soft distance against explicit Gaussian densities, the margin losses' bounds and direction, α's gradient under
log α/ε, the prototypes entering the score (residual "nearest"), and every loss term staying bounded while a small
conv net (a stand-in for the fine-tuned backbone) trains many steps at a high learning rate.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dpdl.methods.dpdl import bridge
from dpdl.methods.dpdl.model import PRINTED_READING, DPDLConfig, DPDLModel
from dpdl.methods.dpdl.prototypes import MultiGaussianPrototypes

CF, HW = 8, (4, 4)
D = CF * HW[0] * HW[1]
MARGIN = dict(alpha_param="eps_scaled", bridge_input="unit", dpl_loss="margin", residual="nearest",
              log_sigma_bound=3.0, prototype_decay=False)


def feats(n, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, CF, *HW, generator=g) + shift)


def model(seed=0, **kw):
    torch.manual_seed(seed)
    m = DPDLModel(CF, HW, DPDLConfig(prototypes=4, **kw))
    m.init_prototypes(feats(40, seed), generator=torch.Generator().manual_seed(0))
    return m


@pytest.mark.parametrize("kw,name", [(dict(alpha_param="lightsb"), "alpha_param"),
                                     (dict(bridge_input="l1"), "bridge_input"), (dict(dpl_loss="kl"), "dpl_loss"),
                                     (dict(residual="mean"), "residual"), (dict(dpl_margin=-1), "dpl_margin"),
                                     (dict(dpl_weight=float("nan")), "dpl_weight"),
                                     (dict(log_sigma_bound=-1), "log_sigma_bound")])
def test_reading_options_are_validated(kw, name):
    with pytest.raises(ValueError, match=name):
        DPDLConfig(**kw)


def test_soft_distance_is_the_mixture_potential_and_a_softmin():
    g = torch.Generator().manual_seed(0)
    C, d, eps = 3, 5, 0.05
    y, mu = torch.randn(7, d, generator=g, dtype=torch.float64), torch.randn(C, d, generator=g, dtype=torch.float64)
    sigma = torch.rand(C, d, generator=g, dtype=torch.float64) + 0.5
    logits = torch.randn(C, generator=g, dtype=torch.float64)
    la = torch.log_softmax(logits, 0)
    # independent: torch.distributions densities of the mixture of Eq. (8) (covariance ε·σ_c)
    comp = torch.stack([torch.distributions.MultivariateNormal(mu[c], torch.diag(eps * sigma[c])).log_prob(y)
                        for c in range(C)], 1)
    expect = -2 * eps * (torch.logsumexp(la + comp, 1) + 0.5 * d * math.log(2 * math.pi * eps))
    torch.testing.assert_close(bridge.soft_distance(y, logits, mu, sigma, eps), expect)
    # ε → 0 with σ = 1: the squared distance to the nearest prototype (plus the vanishing −2ε log α)
    ones = torch.ones(C, d, dtype=torch.float64)
    nearest = torch.cdist(y, mu).pow(2).min(1).values
    torch.testing.assert_close(bridge.soft_distance(y, logits, mu, ones, 1e-6), nearest, atol=1e-4, rtol=0)


def test_margin_losses_are_bounded_and_pull_prototypes_to_the_normals():
    g = torch.Generator().manual_seed(1)
    xn = torch.nn.functional.normalize(torch.randn(20, 6, generator=g) + 3, dim=1)
    xa = torch.nn.functional.normalize(torch.randn(10, 6, generator=g), dim=1)
    mu = torch.nn.functional.normalize(torch.randn(2, 6, generator=g), dim=1).requires_grad_()
    la, sigma, eps, m = torch.zeros(2), torch.ones(2, 6), 1e-2, 0.3
    ln, l_a = bridge.dpl_margin_losses(xn, xa, la, mu, sigma, eps, m)
    dn = bridge.soft_distance(xn, la, mu, sigma, eps).detach()
    da = bridge.soft_distance(xa, la, mu, sigma, eps).detach()
    torch.testing.assert_close(l_a.detach(), torch.relu(m + dn.mean() - da).mean())
    assert 0 <= float(l_a.detach()) <= m + float(dn.mean()) - float(da.min()) + 1e-6
    ln.backward()
    # −∇µ L^n points from each prototype to (the normal features it owns): the prototypes model the normals
    owner = torch.cdist(xn, mu.detach()).argmin(1)
    for c in owner.unique():
        pull = xn[owner == c].mean(0) - mu.detach()[c]
        assert torch.cosine_similarity(-mu.grad[c], pull, dim=0) > 0.9
    # anomalies beyond the margin contribute nothing
    _, far = bridge.dpl_margin_losses(xn, -xn, la, mu.detach(), sigma, eps, 0.01)
    assert float(far) == 0.0


def test_eps_scaled_alpha_same_init_and_a_real_gradient():
    a, b = model(eps=1e-3, alpha_param="softmax"), model(eps=1e-3, alpha_param="eps_scaled")
    torch.testing.assert_close(a.prototypes.log_alpha, b.prototypes.log_alpha)
    x, y = feats(12, 5), torch.tensor([0.0] * 8 + [1.0] * 4)
    m = model(eps=1e-3, **MARGIN)
    m.losses(x, y)["total"].backward()
    ga = m.prototypes.logits_alpha.grad
    assert ga is not None and float(ga.abs().max()) > 1e-2            # was ~1e-9 with the printed reading
    opt = torch.optim.Adam(m.prototypes.parameters(), lr=1e-4)
    before = m.prototypes.alpha.detach().clone()
    opt.step()                                                        # one step of 1e-4 moves log α by 0.1
    assert float((m.prototypes.log_alpha.detach() - before.log()).abs().max()) > 0.05


def test_sigma_bound():
    p = MultiGaussianPrototypes(2, 3, log_sigma_bound=2.0)
    with torch.no_grad():
        p.log_sigma.copy_(torch.tensor([[-1e3, 0.0, 1e3], [0.5, -0.5, 5.0]]))
    s = p.sigma
    s = s.detach()
    assert float(s.min()) >= math.exp(-2) - 1e-7 and float(s.max()) <= math.exp(2) + 1e-5
    assert abs(float(s[0, 1]) - 1.0) < 1e-7


def test_unit_input_makes_the_dpl_terms_scale_free():
    m = model(eps=1e-2, **MARGIN)
    x, y = feats(12, 7), torch.tensor([0.0] * 8 + [1.0] * 4)
    t1, t2 = m.losses(x, y), m.losses(3.0 * x, y)
    for k in ("dpl_n", "dpl_a"):
        torch.testing.assert_close(t1[k], t2[k])


@pytest.mark.parametrize("residual", ["plan", "nearest"])
def test_prototypes_enter_the_score_only_with_the_nearest_residual(residual):
    m = model(eps=1e-3, **{**MARGIN, "residual": residual}).eval()
    x = feats(16, 9)
    with torch.no_grad():
        s0 = m.score(x)
        r, c_plan, c_star = m.residual(x)
        m.prototypes.mu.add_(0.1 * torch.randn_like(m.prototypes.mu))
        s1 = m.score(x)
    change = float((s1 - s0).abs().max())
    if residual == "plan":     # r = x exactly when c* is the plan's component (the finding of the issue)
        assert bool((c_plan == c_star).all())
        torch.testing.assert_close(r, x * 1.0, atol=1e-5, rtol=1e-5)
        assert change < 1e-4
    else:
        assert change > 1e-3
        m.score(x).sum().backward()
        g = m.prototypes.mu.grad
        assert g is not None and float(g.abs().sum()) > 0


def test_no_decay_parameters():
    assert model(prototype_decay=True).no_decay_parameters() == []
    m = model(prototype_decay=False)
    own = list(m.prototypes.parameters()) + (list(m.potential.parameters()) if m.potential is not None else [])
    assert {id(p) for p in m.no_decay_parameters()} == {id(p) for p in own}


class TinyBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, CF, 3, stride=4, padding=1),
                                 nn.ReLU())

    def forward(self, img):
        return self.net(img)


def finetune(steps=150, lr=1e-2, **kw):
    """Train a tiny conv net end to end with DPDL on synthetic images: the fine-tuned backbone in miniature."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                               # tiny tensors: one thread is fastest on a shared box
    try:
        return _finetune(steps, lr, **kw)
    finally:
        torch.set_num_threads(threads)


def _finetune(steps, lr, **kw):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    normal = torch.rand(64, 3, 16, 16, generator=g) * 0.5
    anomal = normal[:32].clone()
    anomal[:, :, 4:10, 4:10] += torch.rand(32, 3, 6, 6, generator=g) * 2
    net = TinyBackbone()
    m = DPDLModel(CF, HW, DPDLConfig(prototypes=4, eps=1e-3, **kw))
    with torch.no_grad():
        m.init_prototypes(net(normal), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(list(net.parameters()) + list(m.parameters()), lr=lr)
    hist = []
    for step in range(steps):
        i, j = torch.randint(64, (16,), generator=g), torch.randint(32, (8,), generator=g)
        x = net(torch.cat([normal[i], anomal[j]]))
        terms = m.losses(x, torch.tensor([0.0] * 16 + [1.0] * 8))
        m.check_finite(terms, step)
        opt.zero_grad()
        terms["total"].backward()
        grads = [p.grad for p in list(net.parameters()) + list(m.parameters()) if p.grad is not None]
        assert all(bool(torch.isfinite(q).all()) for q in grads), f"non-finite gradient at step {step}"
        opt.step()
        hist.append({k: float(v.detach()) for k, v in terms.items()})
    return hist, m


def test_the_defaults_are_the_chosen_reading():
    c = DPDLConfig()
    chosen = {**MARGIN, "dpl_loss": "bridge", "residual": "bridge"}     # the bridge reading (tests/test_bridge_reading)
    assert all(getattr(c, k) == v for k, v in chosen.items())


def test_every_term_stays_bounded_with_a_trainable_feature_map():
    hist, m = finetune(**MARGIN)
    b = MARGIN["log_sigma_bound"]
    lower = -1e-3 * D * b                                  # d ≥ ε Σ log σ ≥ −ε D b (log α ≤ 0, distances ≥ 0)
    for h in hist:
        assert h["dpl_n"] >= lower - 1e-6
        assert 0.0 <= h["dpl_a"] <= DPDLConfig.dpl_margin + 4.0 * math.exp(b) + 1e-6 - lower
        assert 0.0 <= h["ma"] <= 50 and 0.0 <= h["mr"] <= 50 and 0.0 <= h["mn"] <= 50
        assert -1e-6 <= h["dfl"] <= 10.0                    # Eq. (19): log of a mean of exp(κ·cos) ≤ κ
    tail = [h["dpl_a"] for h in hist[-30:]]
    assert max(tail) <= DPDLConfig.dpl_margin + 1.0        # no drift: the push is bounded


def test_the_printed_anomaly_term_runs_away_with_a_trainable_feature_map():
    """The failure the margin reading fixes (issue 12, finding 4): L^a_DPL as printed falls without bound."""
    hist, _ = finetune(**PRINTED_READING)
    first, last = hist[0]["dpl_a"], hist[-1]["dpl_a"]
    assert last < first - 5.0
