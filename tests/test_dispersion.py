"""dpdl.methods.dpdl.dispersion (Eq. 19) against a direct double loop."""
from __future__ import annotations

import math

import pytest
import torch

from dpdl.methods.dpdl.dispersion import dispersion_loss


def loop_reference(z, kappa):
    U = len(z)
    zh = [[v / math.sqrt(sum(a * a for a in row)) for v in row] for row in z]
    total = 0.0
    for i in range(U):
        s = 0.0
        for j in range(U):
            if i != j:
                s += math.exp(kappa * sum(a * b for a, b in zip(zh[i], zh[j])))
        total += math.log(s / (U - 1))
    return total / U


@pytest.mark.parametrize("U,D,kappa", [(2, 3, 10.0), (5, 7, 10.0), (9, 4, 1.0), (6, 12, 0.0)])
def test_matches_double_loop(U, D, kappa):
    z = torch.randn(U, D, generator=torch.Generator().manual_seed(U * D), dtype=torch.float64) * 3
    got = dispersion_loss(z, kappa).item()
    assert got == pytest.approx(loop_reference(z.tolist(), kappa), rel=1e-10, abs=1e-12)


def test_scale_invariant_feature_maps_and_kappa_zero():
    z = torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert dispersion_loss(z, 10.0).item() == pytest.approx(dispersion_loss(5.0 * z, 10.0).item(), rel=1e-12)
    assert dispersion_loss(z, 10.0).item() == pytest.approx(dispersion_loss(z.flatten(1), 10.0).item())
    assert dispersion_loss(z, 0.0).item() == pytest.approx(0.0, abs=1e-12)


def test_collapsed_batch_is_worse_than_spread_batch_and_grad_spreads():
    e = torch.eye(4, dtype=torch.float64)
    collapsed = e[0].repeat(4, 1)
    assert dispersion_loss(collapsed, 10.0).item() == pytest.approx(10.0)   # all cosines 1 → log e^κ
    assert dispersion_loss(e, 10.0).item() == pytest.approx(0.0, abs=1e-12)
    z = (torch.tensor([[1.0, 0.1], [1.0, -0.1]], dtype=torch.float64)).requires_grad_(True)
    dispersion_loss(z, 10.0).backward()
    # descending the gradient increases the angle between the two rows
    z2 = (z - 0.1 * z.grad).detach()
    cos = lambda a: torch.nn.functional.cosine_similarity(a[0:1], a[1:2]).item()
    assert cos(z2) < cos(z.detach())


def test_large_kappa_is_finite_and_small_U_raises():
    z = torch.randn(8, 100, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(dispersion_loss(z, 1e4))
    with pytest.raises(ValueError, match="U >= 2"):
        dispersion_loss(z[:1], 10.0)
