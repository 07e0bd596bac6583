"""The unit hypersphere and the von Mises-Fisher kernel, written once (DPDL's DFL, Eqs. 18-19; ArcAD).

Features are ℓ2-normalised, x̂ = x/‖x‖₂ (DPDL prints x/‖x‖²₂, a typo: only ‖x‖₂ puts x̂ on the unit sphere that
the vMF density lives on). The vMF density with concentration κ and mean direction ν is C_D(κ) exp(κ⟨x̂, ν⟩).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["to_sphere", "log_mean_vmf_kernel"]


def to_sphere(z: Tensor) -> Tensor:
    """z (U, ...) -> (U, D) rows on the unit sphere, x̂ = x/‖x‖₂ (trailing dims flattened)."""
    return F.normalize(z.reshape(z.shape[0], -1), p=2, dim=1)


def log_mean_vmf_kernel(zh: Tensor, kappa: float) -> Tensor:
    """(U,) log( (1/(U−1)) Σ_{j≠i} exp(κ⟨ẑ_i, ẑ_j⟩) ) for unit rows zh (U, D), U ≥ 2: the log of the mean vMF
    kernel of each sample against the others (C_D(κ) cancels). logsumexp with a −inf diagonal."""
    U = zh.shape[0]
    logits = kappa * (zh @ zh.T)
    eye = torch.eye(U, dtype=torch.bool, device=zh.device)
    logits = logits.masked_fill(eye, float("-inf"))
    return torch.logsumexp(logits, dim=1) - math.log(U - 1)
