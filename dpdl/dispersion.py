"""Dispersion feature learning on the hypersphere (Sec. 4.3, Eqs. 18–19).

Features are ℓ2-normalised, x̂ = x/‖x‖₂ (the paper prints x/‖x‖²₂, a typo: only ‖x‖₂ puts x̂ on the unit
sphere that the vMF density of Eq. (18) lives on).  The loss is the log of the mean vMF kernel
exp(κ⟨x̂_i, x̂_j⟩) over the other samples j ≠ i, averaged over i; minimising it spreads the batch's
features apart on the sphere (κ = 10 in the paper; κ = 0 makes it identically 0).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

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
    zh = F.normalize(z.reshape(U, -1), p=2, dim=1)
    logits = kappa * (zh @ zh.T)
    eye = torch.eye(U, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    return (torch.logsumexp(logits, dim=1) - math.log(U - 1)).mean()
