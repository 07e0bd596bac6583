"""Anomaly score heads M_a, M_n, M_r (Sec. 4.4, Eqs. 20–22) and the prototype residual.

All heads act on feature maps x (B, Cf, H, W) and return one logit per image (B,).

* M_a (Eq. 20): a 1×1-conv patch classifier S_a; the image logit is the mean of the top-K patch logits,
  K = max(⌊ratio·H·W⌋, 1), ratio = 0.1 (MIL, as in DRA's plain head).
* M_n (Eq. 21): global mean pooling then a fully connected classifier S_n; we use DRA's holistic head
  (Linear Cf→256, ReLU, Linear 256→1).  S_n is a *normality* logit: it is trained on the target 1 − y so
  that the paper's inference score S = S_a + S_r − S_n (Sec. 4.4, "Inference") is an anomaly score.
* M_r (Eq. 22): the same top-K head as M_a (its own weights) on the prototype residual
  (ψ_p(x) − µ_{c*}) / σ_{c*} reshaped to (B, Cf, H, W), c* = argmax_c N(ψ_p(x); µ_c, ε σ_c).

L_binary (Eqs. 20–22) is "a binary classification loss function"; the paper does not say which.  Two readings
are implemented (``DPDLConfig.binary_loss``): binary cross-entropy with logits, and the deviation loss of DevNet
(:func:`deviation_loss`), the default criterion of DRA's public code, whose heads (holistic, top-K plain) DPDL's
M_n and M_a mirror.  Which one a run used is stored in its record.

**Finding (documented for the book).**  Under the LightSB parameterisation the bridge maps x to
ψ_p(x) = µ_c + σ_c ⊙ x (+ √(εσ_c)⊙z when sampled) for a component c drawn from w(x) (Eq. 13).  Whenever the
most probable prototype c* of Eq. (22) equals that c, the residual (ψ_p(x) − µ_{c*})/σ_{c*} = x
(+ √(ε/σ_c)⊙z): it *collapses to the input feature* and M_r becomes a second M_a on the same features.
Only when c* ≠ c (c* maximises N(ψ; µ_c, εσ_c) over all c, which need not be the component the plan chose)
does the prototype information enter.  :func:`prototype_residual` returns both indices so this can be
measured.  ψ_p: at test time (``sample=False``) we use the mean of the plan's most probable component,
µ_c + σ_c ⊙ x with c = argmax_c w_c(x) (deterministic; the SDE endpoint without noise); at training
time (``sample=True``) an exact reparameterised sample of the plan (:func:`dpdl.methods.dpdl.bridge.sample_plan`),
which has the law of the SDE endpoint of Eq. (14) without integrating it.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from dpdl.methods.dpdl import bridge
from dpdl.methods.shared.mixture import diag_gaussian_log_density

from dpdl.methods.shared.heads import deviation_loss, topk_k, topk_mean  # noqa: F401 (Eqs. 20-22)

__all__ = ["TopKHead", "NormalHead", "prototype_residual"]


class TopKHead(nn.Module):
    """S_a (Eq. 20) and S_r (Eq. 22): 1×1-conv patch logits, image logit = top-K mean.  (B,Cf,H,W) → (B,)."""

    def __init__(self, in_channels: int, topk_ratio: float = 0.1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, kernel_size=1)
        self.topk_ratio = topk_ratio

    def patch_logits(self, x: Tensor) -> Tensor:
        """(B, H, W) patch-level logits S_a(v_i)."""
        return self.conv(x).squeeze(1)

    def forward(self, x: Tensor) -> Tensor:
        return topk_mean(self.patch_logits(x).flatten(1), self.topk_ratio)


class NormalHead(nn.Module):
    """S_n (Eq. 21): mean-pool over H×W, then Linear(Cf, hidden) → ReLU → Linear(hidden, 1).  (B,Cf,H,W) → (B,)."""

    def __init__(self, in_channels: int, hidden: int = 256):
        super().__init__()
        self.fc1 = nn.Linear(in_channels, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))).squeeze(1)


def prototype_residual(x: Tensor, log_alpha: Tensor, mu: Tensor, sigma: Tensor, eps: float,
                       sample: bool = False, generator: torch.Generator | None = None):
    """Eq. (22) input: r = (ψ_p(x) − µ_{c*}) / σ_{c*}, c* = argmax_c N(ψ_p(x); µ_c, εσ_c).

    x (B, D) flattened features → (r (B, D), c_plan (B,), c_star (B,)), where c_plan is the plan
    component that produced ψ_p(x) (sampled if ``sample`` else argmax_c w_c(x)).  See the module
    docstring: r = x exactly when c_star == c_plan and ``sample`` is False.
    """
    if sample:
        psi, c_plan = bridge.sample_plan(x, log_alpha, mu, sigma, eps, generator=generator, return_component=True)
    else:
        with torch.no_grad():
            c_plan = bridge.plan_weights(x, log_alpha, mu, sigma, eps).argmax(dim=1)
        psi = mu[c_plan] + sigma[c_plan] * x
    with torch.no_grad():
        c_star = diag_gaussian_log_density(psi, mu, sigma, eps).argmax(dim=1)
    r = (psi - mu[c_star]) / sigma[c_star]
    return r, c_plan, c_star
