"""dpdl.methods.dpdl.heads: top-K pooling (Eq. 20), shapes, the normal head (Eq. 21), the prototype residual (Eq. 22)."""
from __future__ import annotations

import pytest
import torch

from dpdl.methods.dpdl import bridge
from dpdl.methods.dpdl.heads import NormalHead, TopKHead, prototype_residual, topk_k, topk_mean


@pytest.mark.parametrize("n,ratio,k", [(196, 0.1, 19), (9, 0.1, 1), (1, 0.1, 1), (49, 0.1, 4), (100, 0.25, 25), (10, 1.0, 10)])
def test_topk_k_rule(n, ratio, k):
    assert topk_k(n, ratio) == k


def test_topk_mean_vs_sort_reference():
    s = torch.randn(5, 196, generator=torch.Generator().manual_seed(0))
    k = 19
    ref = torch.stack([torch.tensor(sorted(row.tolist(), reverse=True)[:k]).mean() for row in s])
    torch.testing.assert_close(topk_mean(s, 0.1), ref)


def test_heads_shapes_and_topk_head_is_conv_then_topk():
    torch.manual_seed(0)
    x = torch.randn(3, 16, 7, 7)
    ha, hn = TopKHead(16), NormalHead(16, hidden=8)
    assert ha(x).shape == (3,) and hn(x).shape == (3,)
    assert ha.patch_logits(x).shape == (3, 7, 7)
    patch = torch.einsum("bchw,c->bhw", x, ha.conv.weight.view(-1)) + ha.conv.bias
    ref = patch.flatten(1).sort(dim=1, descending=True).values[:, :4].mean(1)
    torch.testing.assert_close(ha(x), ref)
    # the normal head only sees the spatial mean
    perm = x.flatten(2)[:, :, torch.randperm(49)].view_as(x)
    torch.testing.assert_close(hn(perm), hn(x))
    ref_n = hn.fc2(torch.relu(hn.fc1(x.mean((2, 3))))).squeeze(1)
    torch.testing.assert_close(hn(x), ref_n)


def _params(C=4, D=6, seed=0, eps=0.05):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(C, generator=g), 3 * torch.randn(C, D, generator=g), torch.exp(0.3 * torch.randn(C, D, generator=g))


def test_residual_deterministic_definition_and_collapse_finding():
    eps = 0.05
    la, mu, sigma = _params()
    x = torch.randn(10, 6, generator=torch.Generator().manual_seed(1))
    r, c_plan, c_star = prototype_residual(x, la, mu, sigma, eps, sample=False)
    w, means = bridge.conditional_plan(x, la, mu, sigma, eps)
    assert torch.equal(c_plan, w.argmax(1))
    psi = means[torch.arange(10), c_plan]
    dens = torch.stack([torch.distributions.Normal(mu[c], torch.sqrt(eps * sigma[c])).log_prob(psi).sum(1)
                        for c in range(4)], 1)
    assert torch.equal(c_star, dens.argmax(1))
    torch.testing.assert_close(r, (psi - mu[c_star]) / sigma[c_star])
    same = c_plan == c_star
    assert same.any()
    torch.testing.assert_close(r[same], x[same])          # the documented collapse r = x when c* = c


def test_residual_sampled_is_stochastic_and_differentiable():
    eps = 0.05
    la, mu, sigma = _params()
    mu.requires_grad_(True)
    x = torch.randn(10, 6, generator=torch.Generator().manual_seed(1))
    r1, _, _ = prototype_residual(x, la, mu, sigma, eps, sample=True, generator=torch.Generator().manual_seed(0))
    r2, _, _ = prototype_residual(x, la, mu, sigma, eps, sample=True, generator=torch.Generator().manual_seed(1))
    r3, _, _ = prototype_residual(x, la, mu, sigma, eps, sample=True, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(r1, r2) and torch.equal(r1, r3)
    r1.sum().backward()
    assert mu.grad is not None and torch.isfinite(mu.grad).all()


def test_deviation_loss_matches_devnet_with_a_sampled_reference():
    """DevNet's form draws reference scores r ~ N(0, 1) and uses (s - mean r) / std r; with many draws it must
    agree with ours (exact mean 0, std 1)."""
    from dpdl.methods.shared.heads import deviation_loss
    g = torch.Generator().manual_seed(0)
    s = torch.randn(64, generator=g, dtype=torch.float64) * 4 + 1
    t = (torch.rand(64, generator=g) < 0.4).double()
    ref = torch.randn(2_000_000, generator=g, dtype=torch.float64)
    dev = (s - ref.mean()) / ref.std()
    devnet = torch.mean((1 - t) * dev.abs() + t * (5.0 - dev).clamp(min=0))
    assert abs(float(deviation_loss(s, t)) - float(devnet)) < 5e-3 * float(devnet)


def test_deviation_loss_closed_form_cases_and_gradient():
    from dpdl.methods.shared.heads import deviation_loss
    assert float(deviation_loss(torch.tensor([0.0, 7.0]), torch.tensor([0.0, 1.0]))) == 0.0   # both satisfied
    # a normal at -3 costs 3, an anomaly at 2 costs 5 - 2 = 3: mean 3
    assert float(deviation_loss(torch.tensor([-3.0, 2.0]), torch.tensor([0.0, 1.0]))) == pytest.approx(3.0)
    s = torch.tensor([1.5, -0.5, 3.0], requires_grad=True)
    deviation_loss(s, torch.tensor([0.0, 0.0, 1.0])).backward()
    # d/ds of |s|/3 is sign(s)/3 for normals; of (5 - s)/3 is -1/3 for an anomaly below the margin
    torch.testing.assert_close(s.grad, torch.tensor([1 / 3, -1 / 3, -1 / 3]))
