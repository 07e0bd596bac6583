"""Dispersion feature learning on the hypersphere (Sec. 4.3, Eqs. 18–19).

Features are ℓ2-normalised on the unit sphere (:func:`dpdl.methods.shared.sphere.to_sphere`; the paper prints
x/‖x‖²₂, a typo).  The loss is the log of the mean vMF kernel
exp(κ⟨x̂_i, x̂_j⟩) over the other samples j ≠ i, averaged over i; minimising it spreads the batch's
features apart on the sphere (κ = 10 in the paper; κ = 0 makes it identically 0).
"""
from __future__ import annotations

from torch import Tensor

from dpdl.methods.shared.sphere import log_mean_vmf_kernel, to_sphere

__all__ = ["dispersion_loss"]


def dispersion_loss(z: Tensor, kappa: float) -> Tensor:
    """Eq. (19): (1/U) Σ_i log( (1/(U−1)) Σ_{j≠i} exp(κ⟨ẑ_i, ẑ_j⟩) ), ẑ = z/‖z‖₂ row-wise.

    z (U, ...) with U ≥ 2 (trailing dims are flattened) → scalar.  Computed with logsumexp and a −inf
    diagonal mask.
    """
    if z.ndim < 2:
        raise ValueError(f"z must have shape (U, D), got {tuple(z.shape)}")
    U = z.shape[0]
    if U < 2:
        raise ValueError(f"dispersion_loss needs U >= 2 samples, got U={U}")
    return log_mean_vmf_kernel(to_sphere(z), kappa).mean()
