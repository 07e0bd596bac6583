"""Multi-Gaussian prototypes (Eq. 8) and their vector-quantisation initialisation (Eq. 15).

The prototypes P_MGP = {α_c, µ_c, diag σ_c}, c = 1..C, are the adjusted Schrödinger potential
φ1(y) = Σ_c α_c N(y | µ_c, ε·diag σ_c) of :mod:`dpdl.methods.dpdl.bridge` (the component covariance carries the bridge's
ε, LightSB's convention).  Parameters: ``logits_alpha`` (α = softmax), ``mu`` and ``log_sigma``
(σ = exp(log_sigma) > 0, initialised to 0 so σ = I as the paper says).

Initialisation (Eq. 15): a k-means (Lloyd) codebook of the normal training features; µ_c = e_c, σ_c = 1
(paper), and α_c = the fraction of features assigned to e_c.  The paper only fixes µ and σ; we take α from
the cluster proportions (the VQ's own estimate of the mixture weights, the choice the authors' later
MPFM work hints at); ``init_from_codebook(..., alpha="uniform")`` gives uniform α instead.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["MultiGaussianPrototypes", "Codebook", "vq_codebook", "vq_loss"]


@dataclass
class Codebook:
    """Result of :func:`vq_codebook`: centres (C, D), assignment (N,), counts (C,), loss per iteration."""

    centers: Tensor
    assign: Tensor
    counts: Tensor
    losses: list[float] = field(default_factory=list)


def _sq_dists(x: Tensor, e: Tensor) -> Tensor:
    """(N, C) squared Euclidean distances ‖x_i − e_c‖², clamped at 0."""
    d = (x * x).sum(1, keepdim=True) - 2.0 * (x @ e.T) + (e * e).sum(1)[None, :]
    return d.clamp_min_(0.0)


def vq_loss(feats: Tensor, centers: Tensor) -> float:
    """Eq. (15) objective: mean_i ‖x_i − e_{c*(i)}‖², c*(i) = argmin_c ‖x_i − e_c‖."""
    return float(_sq_dists(feats, centers).min(1).values.mean())


def vq_codebook(feats: Tensor, C: int, iters: int = 50, generator: torch.Generator | None = None,
                tol: float = 1e-6) -> Codebook:
    """Eq. (15): codebook {e_c} minimising E‖x − e_{c*}‖² by k-means++ seeding then Lloyd iterations.

    feats (N, D) → :class:`Codebook` with centres (C, D).  Deterministic for a given ``generator``.
    If N < C the features are repeated with small Gaussian noise (a warning says so); empty clusters
    are re-seeded with the point farthest from its centre.
    """
    if feats.ndim != 2:
        raise ValueError(f"feats must have shape (N, D), got {tuple(feats.shape)}")
    if C < 1:
        raise ValueError(f"C must be >= 1, got {C}")
    x = feats.detach().to(torch.float32)
    gdev = x.device if generator is None else generator.device   # draws on the generator's device (CUDA maps)
    N = x.shape[0]
    if N == 0:
        raise ValueError("vq_codebook needs at least one feature vector")
    if N < C:
        warnings.warn(f"vq_codebook: only {N} feature vectors for {C} prototypes; repeating them with small "
                      f"noise (the extra prototypes are near-duplicates)", stacklevel=2)
        reps = math.ceil(C / N)
        scale = 1e-3 * (x.std() if N > 1 else x.abs().mean()).clamp_min(1e-6)
        extra = x.repeat(reps - 1, 1)
        extra = extra + scale * torch.randn(extra.shape, generator=generator, dtype=x.dtype, device=gdev).to(x.device)
        x = torch.cat([x, extra], 0)
        N = x.shape[0]
    # k-means++ seeding
    idx = [int(torch.randint(N, (1,), generator=generator, device=gdev))]
    d2 = _sq_dists(x, x[idx[0]:idx[0] + 1]).squeeze(1)
    for _ in range(1, C):
        p = d2.to(torch.float64)
        if float(p.sum()) <= 0:
            p = torch.ones_like(p)
        j = int(torch.multinomial((p / p.sum()).to(gdev), 1, generator=generator))
        idx.append(j)
        d2 = torch.minimum(d2, _sq_dists(x, x[j:j + 1]).squeeze(1))
    centers = x[idx].clone()
    losses: list[float] = []
    assign = torch.zeros(N, dtype=torch.long, device=x.device)
    for _ in range(max(1, iters)):
        d = _sq_dists(x, centers)
        mind, assign = d.min(1)
        losses.append(float(mind.mean()))
        counts = torch.bincount(assign, minlength=C)
        new = (torch.zeros_like(centers).index_add_(0, assign, x) if not x.is_cuda   # CUDA's index_add_ is not
               else torch.nn.functional.one_hot(assign, C).to(x.dtype).T @ x)      # deterministic: a matmul
        nonempty = counts > 0
        new[nonempty] /= counts[nonempty, None].to(x.dtype)
        for c in torch.nonzero(~nonempty).flatten().tolist():  # re-seed empty clusters
            far = int(mind.argmax())
            new[c] = x[far]
            mind[far] = -1.0
        shift = float(((new - centers) ** 2).sum(1).max())
        centers = new
        if shift <= tol * (1.0 + float((centers ** 2).sum(1).max())):
            break
    d = _sq_dists(x, centers)
    mind, assign = d.min(1)
    losses.append(float(mind.mean()))
    counts = torch.bincount(assign, minlength=C)
    return Codebook(centers=centers.to(feats.dtype), assign=assign[:feats.shape[0]], counts=counts, losses=losses)


class MultiGaussianPrototypes(nn.Module):
    """P_MGP of Eq. (8): C diagonal Gaussians {α_c, µ_c, σ_c} in R^D.

    Parameters: logits_alpha (C,), mu (C, D), log_sigma (C, D).  α = softmax(logits_alpha / alpha_temperature)
    (``alpha_temperature = ε`` is LightSB's log α/ε parameterisation: a step of Adam moves log α by lr/ε instead of
    lr); σ = exp(log_sigma), or exp(b·tanh(log_sigma/b)) with ``log_sigma_bound = b > 0`` (σ ∈ [e^−b, e^b]).
    """

    def __init__(self, C: int, D: int, alpha_temperature: float = 1.0, log_sigma_bound: float = 0.0):
        super().__init__()
        if C < 1 or D < 1:
            raise ValueError(f"C and D must be >= 1, got C={C}, D={D}")
        if not alpha_temperature > 0 or not log_sigma_bound >= 0:
            raise ValueError(f"alpha_temperature must be > 0 and log_sigma_bound >= 0, got {alpha_temperature}, "
                             f"{log_sigma_bound}")
        self.C, self.D = C, D
        self.alpha_temperature, self.log_sigma_bound = float(alpha_temperature), float(log_sigma_bound)
        self.logits_alpha = nn.Parameter(torch.zeros(C))
        self.mu = nn.Parameter(torch.zeros(C, D))
        self.log_sigma = nn.Parameter(torch.zeros(C, D))       # σ = I (paper)
        self.register_buffer("initialised", torch.tensor(False))

    @property
    def log_alpha(self) -> Tensor:
        """log α (C,), normalised."""
        return torch.log_softmax(self.logits_alpha / self.alpha_temperature, dim=0)

    @property
    def alpha(self) -> Tensor:
        return torch.exp(self.log_alpha)

    @property
    def sigma(self) -> Tensor:
        """σ (C, D) > 0, the diagonal of Σ_c (component covariance is ε·σ_c); bounded when log_sigma_bound > 0."""
        b = self.log_sigma_bound
        return torch.exp(b * torch.tanh(self.log_sigma / b) if b > 0 else self.log_sigma)

    def params(self) -> tuple[Tensor, Tensor, Tensor]:
        """(log_alpha, mu, sigma), the argument triple of every :mod:`dpdl.methods.dpdl.bridge` function."""
        return self.log_alpha, self.mu, self.sigma

    def component_log_density(self, y: Tensor, eps: float) -> Tensor:
        """(B, C) log N(y | µ_c, ε·diag σ_c)."""
        from dpdl.methods.shared.mixture import diag_gaussian_log_density
        return diag_gaussian_log_density(y, self.mu, self.sigma, eps)

    def most_probable(self, y: Tensor, eps: float) -> Tensor:
        """Eq. (22): c* = argmax_c N(y; µ_c, ε·diag σ_c) (no α, as in the paper) for y (B, D) → (B,)."""
        return self.component_log_density(y, eps).argmax(dim=1)

    @torch.no_grad()
    def init_from_codebook(self, codebook: Codebook | Tensor, alpha: str = "proportions") -> None:
        """Eq. (15) initialisation: µ = codebook, σ = 1, α = cluster proportions (or ``alpha="uniform"``)."""
        centers = codebook.centers if isinstance(codebook, Codebook) else codebook
        if tuple(centers.shape) != (self.C, self.D):
            raise ValueError(f"codebook must have shape ({self.C}, {self.D}), got {tuple(centers.shape)}")
        self.mu.copy_(centers.to(self.mu.dtype))
        self.log_sigma.zero_()
        if alpha == "proportions" and isinstance(codebook, Codebook):
            p = codebook.counts.to(torch.float64).clamp_min(0.5)
            self.logits_alpha.copy_((self.alpha_temperature * torch.log(p / p.sum())).to(self.logits_alpha.dtype))
        elif alpha in ("uniform", "proportions"):
            self.logits_alpha.zero_()
        else:
            raise ValueError(f"alpha must be 'proportions' or 'uniform', got {alpha!r}")
        self.initialised.fill_(True)

    def extra_repr(self) -> str:
        return f"C={self.C}, D={self.D}"
