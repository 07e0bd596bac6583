r"""The Schrödinger bridge to the multi-Gaussian prototypes (Sec. 3, Eqs. 3–4 and 8–17).

We implement the *Light Schrödinger Bridge* (LightSB, Korotin et al., ICLR 2024) Gaussian-mixture
parameterisation exactly; the paper builds on it ([10, 17] in the paper), but its printed Eqs. (13)–(14)
mix two ε conventions (e.g. ``µ̃_c = µ_c + σ_c x / ε`` together with ``exp(½ xᵀσ_c x + µ̃_cᵀx/ε)``), so we
take LightSB's self-consistent version and derive everything from one definition.

Notation
--------
x ∈ R^D is a (flattened) feature, y = ψ_p(x) its image in prototype space, ε > 0 the bridge's volatility,
``Σ_c = diag(σ_c)`` with σ_c > 0, α = softmax(log_alpha) (``log_alpha`` need not be normalised; every
function here normalises it, so φ1 is a probability density).

**Adjusted Schrödinger potential (Eq. 8).**  ::

    φ1(y) = Σ_c α_c N(y | µ_c, ε Σ_c)                       (component covariance ε·σ_c)

(LightSB's "adjusted" potential v_θ), and the Schrödinger potential of Eq. (3)/(10) is
v*(y) = exp(‖y‖²/2ε) φ1(y).

**Normaliser (Eq. 12).** ϖ(x) = ∫ exp(⟨x, y⟩/ε) φ1(y) dy is a mixture of Gaussian moment-generating
functions evaluated at x/ε::

    ϖ(x) = Σ_c α_c exp( (xᵀ Σ_c x + 2 µ_cᵀ x) / 2ε ).

**Conditional plan (Eq. 13).** π(y | x) = exp(⟨x,y⟩/ε) φ1(y) / ϖ(x); completing the square per
component gives::

    π(y | x) = Σ_c w_c(x) N(y | µ_c + σ_c ⊙ x, ε Σ_c),   w_c(x) ∝ α_c exp((xᵀΣ_c x + 2µ_cᵀx)/2ε).

**Drift (Eq. 4 / Eq. 14).** g(x, t) = ε ∇_x log ∫ N(x' | x, (1−t)ε I) v*(x') dx'.  Everything factorises
over dimensions d (diagonal Σ_c). Write q = 1 − t, s = σ_{c,d}, m = µ_{c,d}.  Per component and dimension
the integrand is ``exp(−a x'²/2 + b x' + const)`` with::

    a = 1/(qε) − 1/ε + 1/(εs) = (t s + q) / (ε q s) > 0,     b = x/(qε) + m/(εs),

so the Gaussian integral is ``√(2π/a) exp(b²/2a)`` times constants.  Collecting the terms that depend on
c (those depending only on x or t cancel in the softmax over c) gives the time-t component log-weights::

    log w_c(x, t) = log α_c + Σ_d [ (s x²/q + 2 x m − t m²) / (2ε (t s + q)) − ½ log(t s + q) ] + const(x, t)

and, because ∂_x [b²/2a − x²/(2qε)] = b/(a q ε) − x/(qε), the drift::

    g(x, t) = ( Σ_c w_c(x, t) m_c(x, t) − x ) / (1 − t),    m_c(x, t) = (σ_c ⊙ x + (1−t) µ_c) / (t σ_c + 1 − t),

i.e. the Brownian-bridge drift towards E[X_1 | X_t = x]: X_1 | X_t = x is the Gaussian mixture with
weights w_c(x,t), means m_c(x,t) and variances ε(1−t)σ_c/(tσ_c + 1 − t).  At t = 0 the weights and means
reduce to those of the conditional plan (Eq. 13), as they must.  (This is LightSB's Proposition 3.3
written for diagonal Σ_c in log space; no autograd is needed at run time.)

**Losses (Eqs. 16–17).** LightSB's KL objective, empirical form, with the prototype means as the target
samples::

    L^n_DPL = mean_i log ϖ(x^n_i) − mean_c log φ1(µ_c)             (Eq. 16)
    L^a_DPL = mean_c log φ1(µ_c) − mean_i log ϖ(x^a_i)             (Eq. 17)

Known issues, documented rather than "fixed" (the functions below are exactly the paper's):

* The φ1 terms cancel in L^n + L^a, so whenever a batch has anomalies the prototype density terms have no
  effect at all; the sum is mean log ϖ(x^n) − mean log ϖ(x^a).
* Eq. (17) is unbounded below: log ϖ(x^a) grows without bound as ‖x^a‖ or ⟨µ_c, x^a⟩ grow (the features
  are learnable), and so is the sum.  Eq. (16) alone is unbounded below too: −log φ1(µ_c) contains
  +½ Σ_d log σ_{c,d}, so σ → 0 decreases it without limit while log ϖ stays bounded.
* Scale: for ε = 10⁻³ and D ≈ 10⁵ both terms are O(D/ε) ≈ 10⁸ (e.g. −(D/2) log 2πε in log φ1).
  :class:`dpdl.methods.dpdl.model.DPDLModel` multiplies them by ε/D by default (``dpl_scale="per_dim"``, a deviation).

Observation (for the book): the plan's component weights w_c(x) ∝ α_c exp((xᵀΣ_c x + 2µ_cᵀx)/2ε) rank
prototypes by *inner product*, not by distance: with σ_c = 1 (the initialisation) they reduce to
α_c exp(µ_cᵀx/ε), so a prototype with a large norm can win over the nearest one (nearest would be
argmax_c µ_cᵀx − ‖µ_c‖²/2).  At ε = 10⁻³ and D ≈ 10⁵ the weights are one-hot.  This is the quadratic-cost
EOT itself (LightSB has the same form), not an implementation choice.  When every row of a batch picks the
same component, the α-gradient of L^n + L^a is exactly zero.

Numerics: everything stays in log space (logsumexp over components, matmuls for the quadratic forms,
the O(D/ε) logits of Eqs. 8, 12, 13 accumulated in float64 and returned in the input dtype);
float32 stays finite at ε = 10⁻³, D = 5·10⁴ (tests/test_bridge.py).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from dpdl.methods.shared.mixture import (diag_gaussian_log_density, log_weights, mixture_from_components,
                                         mixture_log_density)

__all__ = [
    "log_normalizer",
    "plan_weights",
    "conditional_plan",
    "posterior_at",
    "drift",
    "sample_sde",
    "sample_plan",
    "log_potential",
    "dpl_normal_loss",
    "dpl_anomaly_loss",
    "dpl_losses",
    "soft_distance",
    "soft_distance_from_components",
    "margin_terms",
    "dpl_margin_losses",
    "plan_mean",
    "sb_loss",
]


def _component_logits(x: Tensor, log_alpha: Tensor, mu: Tensor, sigma: Tensor, eps: float) -> Tensor:
    """(B, C) terms log α_c + (xᵀΣ_c x + 2µ_cᵀx)/2ε of Eqs. (12)–(13)."""
    x64, mu64, s64 = x.double(), mu.double(), sigma.double()           # float64: logits are O(D/ε)
    quad = (x64 * x64) @ s64.T + 2.0 * (x64 @ mu64.T)                   # (B, C)
    return log_weights(log_alpha.double())[None, :] + quad / (2.0 * eps)


def log_normalizer(x: Tensor, log_alpha: Tensor, mu: Tensor, sigma: Tensor, eps: float) -> Tensor:
    """log ϖ(x) of Eq. (12): log Σ_c α_c exp((xᵀΣ_c x + 2µ_cᵀx)/2ε).

    x (B, D), log_alpha (C,), mu (C, D), sigma (C, D) > 0 → (B,).
    """
    return torch.logsumexp(_component_logits(x, log_alpha, mu, sigma, eps), dim=1).to(x.dtype)


def plan_weights(x: Tensor, log_alpha: Tensor, mu: Tensor, sigma: Tensor, eps: float) -> Tensor:
    """w_c(x) of Eq. (13), (B, C), summing to 1; no (B, C, D) tensor is formed."""
    return torch.softmax(_component_logits(x, log_alpha, mu, sigma, eps), dim=1).to(x.dtype)


def conditional_plan(x: Tensor, log_alpha: Tensor, mu: Tensor, sigma: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Eq. (13): π(y|x) = Σ_c w_c(x) N(y | µ_c + σ_c⊙x, εΣ_c).

    Returns (weights (B, C) summing to 1, means (B, C, D)); the component covariances are ε·σ_c.
    """
    w = plan_weights(x, log_alpha, mu, sigma, eps)
    means = mu[None, :, :] + sigma[None, :, :] * x[:, None, :]
    return w, means


def _posterior_scalar_t(x, t: float, log_alpha, mu, sigma, eps):
    """(B, C) float64 log-weights of X_1 | X_t = x (unnormalised) and 1/(tσ + 1 − t) (C, D)."""
    x, log_alpha, mu, sigma = x.double(), log_alpha.double(), mu.double(), sigma.double()
    q = 1.0 - t
    denom = t * sigma + q                                  # (C, D), > 0
    inv = 1.0 / denom
    # Σ_d (s x²/q + 2 x m − t m²) / (2ε(ts+q)) − ½ Σ_d log(ts+q), as matmuls over d.
    quad = (x * x) @ (sigma * inv / q).T + 2.0 * (x @ (mu * inv).T) - (t * mu * mu * inv).sum(1)[None, :]
    logits = log_weights(log_alpha)[None, :] + quad / (2.0 * eps) - 0.5 * torch.log(denom).sum(1)[None, :]
    return logits, inv


def posterior_at(x: Tensor, t: float, log_alpha: Tensor, mu: Tensor, sigma: Tensor, eps: float):
    """Law of X_1 given X_t = x on the bridge (derivation in the module docstring; t=0 gives Eq. 13).

    x (B, D), scalar t in [0, 1) → (log-weights (B, C) normalised, means (B, C, D), variances (C, D)).
    """
    t = float(t)
    logits, inv = _posterior_scalar_t(x, t, log_alpha, mu, sigma, eps)
    q = 1.0 - t
    inv = inv.to(x.dtype)
    means = (sigma[None] * x[:, None, :] + q * mu[None]) * inv[None]
    var = eps * q * sigma * inv
    return torch.log_softmax(logits, dim=1).to(x.dtype), means, var


def _drift_scalar_t(x: Tensor, t: float, log_alpha, mu, sigma, eps) -> Tensor:
    logits, inv = _posterior_scalar_t(x, t, log_alpha, mu, sigma, eps)
    w = torch.softmax(logits, dim=1).to(x.dtype)           # (B, C)
    inv = inv.to(x.dtype)
    q = 1.0 - t
    # Σ_c w_c (σ_c x + q µ_c)/(tσ_c + q) without materialising (B, C, D)
    mean = (w @ (sigma * inv)) * x + q * (w @ (mu * inv))
    return (mean - x) / q


def drift(x: Tensor, t, log_alpha: Tensor, mu: Tensor, sigma: Tensor, eps: float) -> Tensor:
    """Eq. (4)/(14): g(x, t) = ε∇_x log ∫ N(x'|x,(1−t)εI) exp(‖x'‖²/2ε) φ1(x') dx', in closed form.

    g = (Σ_c w_c(x,t) (σ_c⊙x + (1−t)µ_c)/(tσ_c + 1 − t) − x) / (1 − t).  x (B, D); t a float or a (B,)
    tensor with values in [0, 1) → (B, D).
    """
    if isinstance(t, Tensor) and t.ndim > 0:
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be a float or a tensor of shape ({x.shape[0]},), got {tuple(t.shape)}")
        if bool((t < 0).any()) or bool((t >= 1).any()):
            raise ValueError("t must lie in [0, 1)")
        return torch.cat([_drift_scalar_t(x[i:i + 1], float(t[i]), log_alpha, mu, sigma, eps)
                          for i in range(x.shape[0])], dim=0)
    t = float(t)
    if not 0.0 <= t < 1.0:
        raise ValueError(f"t must lie in [0, 1), got {t}")
    return _drift_scalar_t(x, t, log_alpha, mu, sigma, eps)


def sample_sde(x0: Tensor, log_alpha: Tensor, mu: Tensor, sigma: Tensor, eps: float,
               n_steps: int = 100, generator: torch.Generator | None = None) -> Tensor:
    """ψ_p(x0): Euler–Maruyama for dX = g(X, t) dt + √ε dW from t = 0 to 1 (Eq. 4/14).

    The drift is evaluated at t_k = k/n_steps, k = 0..n_steps−1, so always at t < 1.  x0 (B, D) → (B, D).
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    dt = 1.0 / n_steps
    x = x0
    gdev = x.device if generator is None else generator.device   # a CPU generator may drive CUDA tensors
    for k in range(n_steps):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=gdev).to(x.device)
        x = x + drift(x, k * dt, log_alpha, mu, sigma, eps) * dt + math.sqrt(eps * dt) * noise
    return x


def sample_plan(x: Tensor, log_alpha: Tensor, mu: Tensor, sigma: Tensor, eps: float,
                generator: torch.Generator | None = None, return_component: bool = False):
    """Exact sample y ~ π(·|x) of Eq. (13) (same law as :func:`sample_sde`'s endpoint).

    Picks c ~ w(x), then y = µ_c + σ_c⊙x + √(εσ_c)⊙z (reparameterised: differentiable in x, µ, σ).
    x (B, D) → y (B, D) [and the component indices (B,) when ``return_component``].
    """
    w = plan_weights(x.detach(), log_alpha.detach(), mu.detach(), sigma.detach(), eps)
    gdev = x.device if generator is None else generator.device   # a CPU generator may drive CUDA tensors
    c = torch.multinomial(w.to(torch.float64).to(gdev), 1, generator=generator).squeeze(1).to(x.device)
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=gdev).to(x.device)
    y = mu[c] + sigma[c] * x + torch.sqrt(eps * sigma[c]) * z
    return (y, c) if return_component else y


def log_potential(y: Tensor, log_alpha: Tensor, mu: Tensor, sigma: Tensor, eps: float) -> Tensor:
    """log φ1(y) of Eq. (8): log Σ_c α_c N(y | µ_c, εΣ_c), normalising constants included.

    y (B, D) → (B,).
    """
    return mixture_log_density(y, log_alpha, mu, sigma, eps).to(y.dtype)


def sb_loss(x: Tensor, y: Tensor, log_alpha: Tensor, mu: Tensor, sigma: Tensor, eps: float) -> Tensor:
    """LightSB's objective, empirical form: mean_i log ϖ_θ(x_i) − mean_j log φ_θ(y_j) (Eq. 16's form).

    Up to a constant independent of θ = (log_alpha, mu, sigma) it is KL(π* ‖ π_θ) between the entropic OT plan from
    the law of the source samples x (B, D) to that of the target samples y (B', D) and the plan of Eq. (13): its
    minimiser over θ is the Schrödinger bridge between the two laws.  Bounded below for bounded σ.  → scalar.
    """
    ln = torch.logsumexp(_component_logits(x, log_alpha, mu, sigma, eps), dim=1).mean()
    return (ln - mixture_log_density(y, log_alpha, mu, sigma, eps).mean()).to(x.dtype)


def dpl_normal_loss(x_n: Tensor, log_alpha: Tensor, mu: Tensor, sigma: Tensor, eps: float) -> Tensor:
    """Eq. (16): L^n_DPL = mean_i log ϖ(x^n_i) − mean_c log φ1(µ_c) (unscaled, as printed): :func:`sb_loss` with the
    prototype means as the target samples and the prototypes themselves as the potential."""
    return sb_loss(x_n, mu, log_alpha, mu, sigma, eps)


def dpl_anomaly_loss(x_a: Tensor, log_alpha: Tensor, mu: Tensor, sigma: Tensor, eps: float) -> Tensor:
    """Eq. (17): L^a_DPL = mean_c log φ1(µ_c) − mean_i log ϖ(x^a_i) (unscaled; unbounded below, see module doc)."""
    ln = torch.logsumexp(_component_logits(x_a, log_alpha, mu, sigma, eps), dim=1).mean()
    return (mixture_log_density(mu, log_alpha, mu, sigma, eps).mean() - ln).to(x_a.dtype)


def dpl_losses(x_n: Tensor | None, x_a: Tensor | None, log_alpha: Tensor, mu: Tensor, sigma: Tensor,
               eps: float) -> tuple[Tensor | None, Tensor | None]:
    """Eqs. (16) and (17) together, sharing mean_c log φ1(µ_c); a term is None when its rows are None/empty."""
    ref = x_n if x_n is not None else x_a
    lp_mu = mixture_log_density(mu, log_alpha, mu, sigma, eps).mean()

    def mean_ln(x):
        return torch.logsumexp(_component_logits(x, log_alpha, mu, sigma, eps), dim=1).mean()

    ln = (mean_ln(x_n) - lp_mu).to(ref.dtype) if x_n is not None and len(x_n) else None
    la = (lp_mu - mean_ln(x_a)).to(ref.dtype) if x_a is not None and len(x_a) else None
    return ln, la


# ------------------------------------------------------------------------------------------- the "margin" reading
def soft_distance(y: Tensor, log_alpha: Tensor, mu: Tensor, sigma: Tensor, eps: float) -> Tensor:
    """d(y) = −2ε [log φ1(y) + (D/2) log 2πε]: the potential of Eq. (8) as a soft squared distance.

    Exactly d(y) = −2ε log Σ_c exp(−d_c(y)/2ε) with d_c(y) = ‖y − µ_c‖²_{σ_c} + ε Σ_d log σ_cd − 2ε log α_c, a
    soft-min at temperature 2ε of the Mahalanobis distances to the prototypes (ε → 0: the nearest one).
    y (B, D) → (B,) (float64 inside, returned in y's dtype).
    """
    return soft_distance_from_components(diag_gaussian_log_density(y, mu, sigma, eps), log_alpha, eps,
                                         y.shape[1]).to(y.dtype)


def soft_distance_from_components(component_log_density: Tensor, log_alpha: Tensor, eps: float, D: int) -> Tensor:
    """:func:`soft_distance` from the prototypes' log-densities (B, C) of y (float64 (B,)): the same density matrix
    gives M_r's c* = argmax_c (Eq. 22), so a training step computes it once."""
    log_phi = mixture_from_components(component_log_density, log_alpha)
    return -2.0 * eps * (log_phi + 0.5 * D * math.log(2.0 * math.pi * eps))


def dpl_margin_losses(x_n: Tensor | None, x_a: Tensor | None, log_alpha: Tensor, mu: Tensor, sigma: Tensor,
                      eps: float, margin: float) -> tuple[Tensor | None, Tensor | None]:
    """Reading ``dpl_loss="margin"`` of Eqs. (16)–(17): the normal features are the bridge's target samples.

    L^n = mean_i d(x^n_i)  (LightSB's −E_{y∼p1} log φ1(y) with p1 = the normal features, up to 2ε and a constant:
    the prototypes model the normal features and the normal features are drawn to them);
    L^a = mean_i max(0, m + d̄^n − d(x^a_i)), d̄^n = mean_j d(x^n_j) of the batch, detached (0 without normal rows):
    anomalies pushed until they lie a margin m beyond the normal features — a bounded push.
    x_n (N, D), x_a (M, D) → (L^n, L^a), a term None when its rows are None/empty.
    """
    d_n = soft_distance(x_n, log_alpha, mu, sigma, eps) if x_n is not None and len(x_n) else None
    d_a = soft_distance(x_a, log_alpha, mu, sigma, eps) if x_a is not None and len(x_a) else None
    return margin_terms(d_n, d_a, margin)


def margin_terms(d_n: Tensor | None, d_a: Tensor | None, margin: float) -> tuple[Tensor | None, Tensor | None]:
    """(L^n, L^a) of :func:`dpl_margin_losses` from the soft distances d_n (N,) and d_a (M,) (None or empty: no term):
    L^n = mean d_n, L^a = mean max(0, m + mean(d_n) (detached; 0 without normal rows) − d_a)."""
    ln = la = None
    ref = 0.0
    if d_n is not None and len(d_n):
        ln, ref = d_n.mean(), d_n.mean().detach()
    if d_a is not None and len(d_a):
        la = torch.relu(margin + ref - d_a).mean()
    return ln, la


# ------------------------------------------------------------------------------------------- the "bridge" reading
def plan_mean(x: Tensor, log_alpha: Tensor, mu: Tensor, sigma: Tensor, eps: float) -> Tensor:
    """ψ_p(x) = E[y | x] under the plan of Eq. (13): Σ_c w_c(x) (µ_c + σ_c ⊙ x).

    x (B, D) → (B, D); differentiable in x and in the potential (through the weights too); no (B, C, D) tensor.
    """
    w = plan_weights(x, log_alpha, mu, sigma, eps)
    return w @ mu + (w @ sigma) * x

