"""dpdl.methods.dpdl.prototypes: VQ codebook (Eq. 15), initialisation, accessors, most probable prototype (Eq. 22)."""
from __future__ import annotations

import pytest
import torch

from dpdl.methods.dpdl.prototypes import MultiGaussianPrototypes, vq_codebook, vq_loss


def blobs(n_per=60, C=4, D=10, seed=0, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    centres = 10 * torch.randn(C, D, generator=g)
    x = torch.cat([centres[c] + spread * torch.randn(n_per, D, generator=g) for c in range(C)])
    return x[torch.randperm(len(x), generator=g)], centres


def test_vq_recovers_well_separated_centres_and_loss_decreases():
    x, centres = blobs()
    cb = vq_codebook(x, 4, iters=50, generator=torch.Generator().manual_seed(0))
    d = torch.cdist(centres, cb.centers)
    assert torch.all(d.min(1).values < 0.2)              # every true centre has a codebook vector nearby
    assert sorted(d.argmin(1).tolist()) == [0, 1, 2, 3]  # one-to-one
    assert all(a >= b - 1e-6 for a, b in zip(cb.losses, cb.losses[1:]))
    assert cb.losses[-1] == pytest.approx(vq_loss(x, cb.centers), rel=1e-5)
    assert cb.counts.tolist() == [60] * 4 and cb.assign.shape == (240,)


def test_vq_loss_decreases_from_seeding_on_unstructured_data():
    x = torch.randn(300, 5, generator=torch.Generator().manual_seed(2))
    cb = vq_codebook(x, 8, iters=30, generator=torch.Generator().manual_seed(0))
    assert cb.losses[-1] < cb.losses[0]
    assert all(a >= b - 1e-5 for a, b in zip(cb.losses, cb.losses[1:]))


def test_vq_deterministic_under_seed():
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(3))
    a = vq_codebook(x, 5, generator=torch.Generator().manual_seed(7)).centers
    b = vq_codebook(x, 5, generator=torch.Generator().manual_seed(7)).centers
    c = vq_codebook(x, 5, generator=torch.Generator().manual_seed(8)).centers
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_vq_fewer_samples_than_prototypes_warns():
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="repeating"):
        cb = vq_codebook(x, 7, generator=torch.Generator().manual_seed(0))
    assert cb.centers.shape == (7, 4) and torch.isfinite(cb.centers).all()
    assert torch.cdist(cb.centers, x).min(1).values.max() < 0.1


def test_prototype_module_init_and_accessors():
    p = MultiGaussianPrototypes(4, 10)
    torch.testing.assert_close(p.sigma, torch.ones(4, 10))       # σ = I at construction (paper)
    torch.testing.assert_close(p.alpha, torch.full((4,), 0.25))
    x, _ = blobs(n_per=30, C=4)
    cb = vq_codebook(x[:100], 4, generator=torch.Generator().manual_seed(0))
    p.init_from_codebook(cb)
    torch.testing.assert_close(p.mu.data, cb.centers)
    torch.testing.assert_close(p.sigma, torch.ones(4, 10))
    torch.testing.assert_close(p.alpha, cb.counts.float() / cb.counts.sum())
    assert bool(p.initialised)
    p.init_from_codebook(cb, alpha="uniform")
    torch.testing.assert_close(p.alpha, torch.full((4,), 0.25))
    la, mu, sigma = p.params()
    assert la.shape == (4,) and mu.shape == (4, 10) and sigma.shape == (4, 10)
    with pytest.raises(ValueError):
        p.init_from_codebook(torch.zeros(3, 10))


def test_most_probable_uses_component_density_without_alpha():
    eps = 0.1
    p = MultiGaussianPrototypes(2, 1)
    with torch.no_grad():
        p.mu.copy_(torch.tensor([[0.0], [1.0]]))
        p.log_sigma.copy_(torch.log(torch.tensor([[1.0], [4.0]])))
        p.logits_alpha.copy_(torch.tensor([10.0, -10.0]))        # α must not matter in Eq. (22)
    y = torch.tensor([[0.1], [0.9], [3.0], [-2.0]])
    ref = torch.stack([torch.distributions.Normal(p.mu[c, 0], (eps * p.sigma[c, 0]).sqrt()).log_prob(y[:, 0])
                       for c in range(2)], 1).argmax(1)
    assert torch.equal(p.most_probable(y, eps), ref)
    assert p.most_probable(y, eps).tolist() == [0, 1, 1, 1]
