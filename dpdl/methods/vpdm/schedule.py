"""VPDM's diffusion maths (Sec. 3.2, Eqs. 13-15, Alg. 2) with the text's errata corrected; pure functions of a
:class:`Schedule` (float64 buffers, indexed by t = 1..T, index 0 the clean data: α_0 = 1).

Notation. The paper swaps DDPM's names: its ᾱ^t := 1 − β^t is DDPM's α_t and its α^t := ∏ᵢ ᾱ^i is DDPM's ᾱ_t
(erratum: we name them ``alpha_step`` and ``alpha_cum``). With u = x − ŷ, Eq. (13) reads
u^t = √(1−β^t) u^{t−1} + √β^t ε: plain DDPM on u. Hence (each checked in tests/test_vpdm.py):

* Eq. (14), corrected: q(x^t | x^0, ŷ) = N(√α^t x^0 + (1 − √α^t) ŷ, (1 − α^t) I) (the text prints the variance
  1 − √α^t; iterating Eq. 13 gives 1 − α^t).
* Eq. (15), corrected: γ0 = β^t √α^{t−1} / (1 − α^t), γ1 = (1 − α^{t−1}) √ᾱ^t / (1 − α^t), γ2 = 1 − γ0 − γ1
  (Appendix A's last line; the main text's γ2 = 1 + (√ᾱ^t − 1)(√ᾱ^t + √α^{t−1})/(1 − α^t) is wrong),
  β̃^t = (1 − α^{t−1}) β^t / (1 − α^t).
* Alg. 2 line 4, corrected: x̂^0 = (x^t − (1 − √α^t) ŷ − √(1 − α^t) ε_θ) / √α^t (the text divides by α^t).
* DDIM (Song et al., 2021) on u: the same trained ε_θ, any sub-sequence of steps, η = 0 deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Schedule:
    """Linear β schedule (Sec. 4.1: β^1 = 1e-4 ... β^T = 0.02, T = 1000), float64 tensors of length T + 1."""

    beta: Tensor          # β^t, beta[0] = 0
    alpha_step: Tensor    # the paper's ᾱ^t = 1 − β^t (DDPM's α_t)
    alpha_cum: Tensor     # the paper's α^t = ∏_{i ≤ t} ᾱ^i (DDPM's ᾱ_t), alpha_cum[0] = 1

    @property
    def T(self) -> int:
        return len(self.beta) - 1


def linear_schedule(T: int = 1000, beta_1: float = 1e-4, beta_T: float = 0.02) -> Schedule:
    """The linear schedule of Sec. 4.1 (Ho et al., 2020)."""
    if not (isinstance(T, int) and T >= 1 and 0 < beta_1 <= beta_T < 1):
        raise ValueError(f"need T >= 1 and 0 < beta_1 <= beta_T < 1, got {T!r}, {beta_1!r}, {beta_T!r}")
    beta = torch.cat([torch.zeros(1, dtype=torch.float64),
                      torch.linspace(beta_1, beta_T, T, dtype=torch.float64)])
    alpha_step = 1.0 - beta
    return Schedule(beta, alpha_step, torch.cumprod(alpha_step, 0))


def _b(v: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """Schedule values at integer steps ``t`` (B,) shaped (B, 1, 1, 1) in ``like``'s dtype/device."""
    return v.to(like.device)[t].to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


def forward_step(s: Schedule, x_prev: Tensor, y: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """Eq. (13): x^t = √(1−β^t) x^{t−1} + (1 − √(1−β^t)) ŷ + √β^t ε; all (B, C, H, W), t (B,) in 1..T."""
    a = _b(s.alpha_step, t, x_prev).sqrt()
    return a * x_prev + (1 - a) * y + _b(s.beta, t, x_prev).sqrt() * noise


def q_sample(s: Schedule, x0: Tensor, y: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """Eq. (14) corrected: x^t = √α^t x^0 + (1 − √α^t) ŷ + √(1 − α^t) ε; all (B, C, H, W), t (B,) in 0..T."""
    a = _b(s.alpha_cum, t, x0)
    return a.sqrt() * x0 + (1 - a.sqrt()) * y + (1 - a).sqrt() * noise


def posterior_coefficients(s: Schedule, t: int) -> tuple[float, float, float, float]:
    """Eq. (15) corrected: (γ0, γ1, γ2, β̃^t) of q(x^{t−1} | x^0, x^t, ŷ), t in 1..T (float64 numbers)."""
    ac, ap = float(s.alpha_cum[t]), float(s.alpha_cum[t - 1])
    beta, a_step = float(s.beta[t]), float(s.alpha_step[t])
    g0 = beta * ap ** 0.5 / (1 - ac)
    g1 = (1 - ap) * a_step ** 0.5 / (1 - ac)
    return g0, g1, 1.0 - g0 - g1, (1 - ap) / (1 - ac) * beta


def predict_x0(s: Schedule, xt: Tensor, y: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """Alg. 2 line 4 corrected (the reparameterisation): x̂^0 = (x^t − (1−√α^t) ŷ − √(1−α^t) ε) / √α^t."""
    a = _b(s.alpha_cum, t, xt)
    return (xt - (1 - a.sqrt()) * y - (1 - a).sqrt() * eps) / a.sqrt()


def _clip(x0: Tensor, clip: tuple[Tensor, Tensor] | None) -> Tensor:
    """x̂^0 clipped to the data's range (lo, hi), as DDPM's code clips x̂^0 to the pixel range; None: as is."""
    return x0 if clip is None else torch.maximum(torch.minimum(x0, clip[1]), clip[0])


def ancestral_step(s: Schedule, xt: Tensor, y: Tensor, t: int, eps: Tensor, noise: Tensor,
                   clip: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Alg. 2 lines 4-7: x^{t−1} = γ0 x̂^0 + γ1 x^t + γ2 ŷ + √β^t z (t > 1), else x̂^0; (B, C, H, W)."""
    x0 = _clip(predict_x0(s, xt, y, torch.full((len(xt),), t, dtype=torch.long, device=xt.device), eps), clip)
    if t == 1:
        return x0
    g0, g1, g2, _ = posterior_coefficients(s, t)
    return g0 * x0 + g1 * xt + g2 * y + float(s.beta[t]) ** 0.5 * noise


def ddim_steps(T: int, n: int) -> list[int]:
    """n decreasing steps from T to 1, evenly spaced (n = T: every step)."""
    if not 1 <= n <= T:
        raise ValueError(f"the number of sampling steps must lie in 1..{T}, got {n!r}")
    return sorted({int(round(v)) for v in torch.linspace(T, 1, n, dtype=torch.float64).tolist()}, reverse=True)


def ddim_step(s: Schedule, xt: Tensor, y: Tensor, t: int, t_next: int, eps: Tensor, eta: float = 0.0,
              noise: Tensor | None = None, clip: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """One DDIM step on u = x − ŷ from t to t_next < t (t_next = 0: the clean estimate): û^0 = (u^t − √(1−α^t) ε)/√α^t,
    u^{t'} = √α^{t'} û^0 + √(1 − α^{t'} − σ²) ε + σ z, σ = η √((1−α^{t'})/(1−α^t)) √(1 − α^t/α^{t'}); (B, C, H, W).
    ``clip`` (lo, hi): x̂^0 = ŷ + û^0 clipped to the data's range and ε re-derived from it."""
    ac, an = float(s.alpha_cum[t]), float(s.alpha_cum[t_next])
    u0 = (xt - y - (1 - ac) ** 0.5 * eps) / ac ** 0.5
    if clip is not None:                      # x̂^0 clipped, ε re-derived from it (as DDIM's code does)
        u0 = _clip(u0 + y, clip) - y
        eps = (xt - y - ac ** 0.5 * u0) / (1 - ac) ** 0.5
    sigma = eta * ((1 - an) / (1 - ac) * (1 - ac / an)) ** 0.5
    u = an ** 0.5 * u0 + max(1 - an - sigma ** 2, 0.0) ** 0.5 * eps
    if sigma > 0 and noise is not None:
        u = u + sigma * noise
    return y + u
