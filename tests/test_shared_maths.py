"""The methods' shared maths (dpdl.methods.shared) against independent computations: scipy's densities and exact
assignment, autograd and finite differences."""
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import multivariate_normal

from dpdl.methods.shared.mixture import diag_gaussian_log_density, mixture_log_density
from dpdl.methods.shared.sinkhorn import ot_value, sinkhorn_plan
from dpdl.methods.shared.sphere import log_mean_vmf_kernel, to_sphere


def test_mixture_log_density_matches_scipy():
    g = torch.Generator().manual_seed(0)
    y, mu = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    sigma = torch.rand(4, 3, generator=g, dtype=torch.float64) + 0.2
    log_alpha = torch.randn(4, generator=g, dtype=torch.float64)
    scale = 0.3
    w = np.exp(log_alpha.numpy()) / np.exp(log_alpha.numpy()).sum()
    comp = np.stack([multivariate_normal(mu[c].numpy(), np.diag(scale * sigma[c].numpy())).logpdf(y.numpy())
                     for c in range(4)], axis=1)
    np.testing.assert_allclose(diag_gaussian_log_density(y, mu, sigma, scale).numpy(), comp, rtol=1e-10)
    ref = np.log((w[None, :] * np.exp(comp)).sum(1))
    np.testing.assert_allclose(mixture_log_density(y, log_alpha, mu, sigma, scale).numpy(), ref, rtol=1e-10)


def test_mixture_log_density_finite_at_small_scale():
    y, mu = torch.randn(5, 64) * 10, torch.randn(3, 64)
    out = mixture_log_density(y, torch.zeros(3), mu, torch.ones(3, 64), 1e-3)
    assert torch.isfinite(out).all() and (out < 0).all()


def test_sphere_rows_are_unit_and_kernel_matches_loop():
    z = torch.randn(6, 2, 5, dtype=torch.float64)
    zh = to_sphere(z)
    assert torch.allclose(zh.norm(dim=1), torch.ones(6, dtype=torch.float64))
    loop = [math.log(sum(math.exp(2.5 * float(zh[i] @ zh[j])) for j in range(6) if j != i) / 5) for i in range(6)]
    assert np.allclose(log_mean_vmf_kernel(zh, 2.5).numpy(), loop)


def test_sinkhorn_marginals_hold():
    g = torch.Generator().manual_seed(1)
    cost = torch.rand(9, 4, generator=g, dtype=torch.float64)
    a = torch.rand(9, generator=g, dtype=torch.float64) + 0.1
    a = a / a.sum()
    p = sinkhorn_plan(cost, 0.05, a=a, iters=2000)
    assert torch.allclose(p.sum(1), a, atol=1e-8)
    assert torch.allclose(p.sum(0), torch.full((4,), 0.25, dtype=torch.float64), atol=1e-8)


def test_sinkhorn_tends_to_the_exact_assignment():
    g = torch.Generator().manual_seed(2)
    cost = torch.rand(6, 6, generator=g, dtype=torch.float64)
    rows, cols = linear_sum_assignment(cost.numpy())
    p = sinkhorn_plan(cost, 1e-3, iters=5000, tol=1e-12)
    assert torch.equal(p.argmax(1), torch.as_tensor(cols))
    exact = cost.numpy()[rows, cols].sum() / 6
    assert abs(float((p * cost).sum()) - exact) < 1e-3


def test_ot_value_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(3)
    x, proto = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g, dtype=torch.float64)

    def value(p):
        return ot_value(torch.cdist(x, p) ** 2, 0.5, iters=3000, tol=1e-13)

    p = proto.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(value(p), p)
    h, fd = 1e-6, torch.zeros_like(proto)
    for i in range(2):
        for j in range(3):
            e = torch.zeros_like(proto)
            e[i, j] = h
            fd[i, j] = (value(proto + e) - value(proto - e)) / (2 * h)
    assert torch.allclose(grad, fd, atol=1e-6)


def test_sinkhorn_batched_costs_solve_independent_problems():
    """A cost (B, N, K) gives each item's own plan (VPDM's test-time plans, one per test image)."""
    g = torch.Generator().manual_seed(4)
    cost = torch.rand(3, 5, 4, generator=g, dtype=torch.float64)
    batched = sinkhorn_plan(cost, 0.1, iters=3000, tol=1e-13)
    for i in range(3):
        assert torch.allclose(batched[i], sinkhorn_plan(cost[i], 0.1, iters=3000, tol=1e-13), atol=1e-12)
    assert torch.allclose(batched.sum(-1), torch.full((3, 5), 0.2, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(batched.sum(-2), torch.full((3, 4), 0.25, dtype=torch.float64), atol=1e-10)


def test_sinkhorn_rejects_bad_input():
    with pytest.raises(ValueError, match="eps"):
        sinkhorn_plan(torch.rand(3, 2), 0.0)
    with pytest.raises(ValueError, match="cost"):
        sinkhorn_plan(torch.rand(3), 0.1)
