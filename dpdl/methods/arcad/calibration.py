"""ArcAD's latent calibration: SPM (Eqs. 2-4), DGC (Eqs. 5-8) and the discriminator's focal loss (Eq. 9).

Pure functions on unit token rows (N, D) and prototypes (K, D) on the sphere, plus the discriminator module.
The sphere is dpdl.methods.shared.sphere's (ẑ = z/‖z‖₂, Eq. 2's vMF), the transport dpdl.methods.shared.sinkhorn's.
Written from the ArcAD paper (Sec. 3.2-3.4), with its public code (LGC-AD/ArcAD) read for where the text is silent;
where they differ, the caller picks by a named option (dpdl.methods.arcad.model.ArcADConfig).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dpdl.methods.shared.sinkhorn import sinkhorn_log_plan


# ------------------------------------------------------------------------------------------------- SPM (Sec. 3.2)

def spherical_kmeans(z: Tensor, k: int, iters: int = 10, generator: torch.Generator | None = None) -> Tensor:
    """K prototypes (k, D) on the sphere from unit rows z (N, D), N >= k: k-means with cosine distance (Sec. 3.2:
    "we initialize K prototypes on the hypersphere using K-means with cosine distance"). Seeds: k distinct rows
    drawn with ``generator``; an empty cluster keeps its previous centre."""
    if len(z) < k:
        raise ValueError(f"{len(z)} normal tokens cannot seed K = {k} prototypes: lower option prototypes")
    mu = z[torch.randperm(len(z), generator=generator)[:k].to(z.device)].clone()
    for _ in range(iters):
        assign = (z @ mu.T).argmax(dim=1)
        sums = torch.zeros_like(mu).index_add_(0, assign, z)
        filled = torch.bincount(assign, minlength=k) > 0
        mu = torch.where(filled[:, None], F.normalize(sums, dim=1), mu)
    return mu


@torch.no_grad()
def sinkhorn_assign(sim: Tensor, eps: float, iters: int) -> Tensor:
    """Eq. (3): the equipartition assignment Q (N, K) of tokens to prototypes, Q = diag(u) exp(S/ε) diag(v) with
    ``iters`` Sinkhorn-Knopp iterations in log space (shared Sinkhorn, cost −S), scaled so that each token's row
    sums to 1 and each prototype's column to N/K. The plan is solved transposed (K, N), so the last half-iteration
    normalises the tokens: each row sums exactly to 1 after few iterations, the columns approximately (the order
    of SwAV's and ArcAD's code)."""
    n = sim.shape[0]
    return sinkhorn_log_plan(-sim.T, eps, iters=iters, tol=0.0).exp().T * n


def spm_loss(sim: Tensor, q: Tensor, tau: float) -> Tensor:
    """Eq. (4): −(1/N) Σ_i Σ_k Q_ik log softmax_k(S_i/τ), with S = ẑ μᵀ (N, K) and Q from Eq. (3) (no gradient)."""
    return -(q * F.log_softmax(sim / tau, dim=1)).sum(dim=1).mean()


@torch.no_grad()
def ema_prototypes(mu: Tensor, z: Tensor, q: Tensor, momentum: float) -> Tensor:
    """The M-step (Sec. 3.2): μ ← normalise(m μ + (1 − m) normalise(Qᵀ ẑ)), the EMA of each prototype towards the
    normalised mean of the tokens assigned to it (ArcAD's code's update); (K, D) on the sphere."""
    target = F.normalize(q.T @ z, dim=1)
    return F.normalize(momentum * mu + (1.0 - momentum) * target, dim=1)


# ------------------------------------------------------------------------------------------------- DGC (Sec. 3.3)

def synthesize(anchors: Tensor, mu: Tensor, sigma: float, n_cand: int,
               generator: torch.Generator | None = None) -> Tensor:
    """Eqs. (5)-(6): per unit anchor (N, D), ``n_cand`` candidates (z + ξ)/‖z + ξ‖, ξ ~ N(0, σ² I) (Eq. 5), and
    the one whose largest similarity to the prototypes μ (K, D) is smallest (Eq. 6); (N, D) on the sphere.
    Differentiable in the anchors (ArcAD's code keeps the graph)."""
    noise = torch.randn(anchors.shape[0], n_cand, anchors.shape[1], generator=generator, device=anchors.device,
                        dtype=anchors.dtype)
    cand = F.normalize(anchors[:, None, :] + sigma * noise, dim=2)             # Eq. (5): (N, n_cand, D)
    nearest = (cand.detach() @ mu.T).max(dim=2).values                       # max_k aᵀμ_k: (N, n_cand)
    best = nearest.argmin(dim=1)                                               # Eq. (6)
    return cand[torch.arange(len(cand), device=cand.device), best]


def topk_error_tokens(tokens: Tensor, err: Tensor, ratio: float) -> Tensor:
    """Eq. (7) without masks (a reading, option anomaly_tokens="topk_error"): for each anomaly image, its
    k = max(1, round(ratio·HW)) tokens of highest reconstruction error stand for the mask's m_i = 1.

    tokens (B, D, H, W), err (B, H, W) -> (B·k, D) token rows (not yet on the sphere)."""
    b, d = tokens.shape[:2]
    flat = tokens.flatten(2)                                                   # (B, D, HW)
    k = max(1, int(round(ratio * flat.shape[2])))
    idx = err.flatten(1).topk(k, dim=1).indices                                # (B, k)
    return flat.gather(2, idx[:, None, :].expand(b, d, k)).transpose(1, 2).reshape(b * k, d)


def dgc_loss(a: Tensor, mu: Tensor, syn: Tensor, push: str = "linear") -> Tensor:
    """Eq. (8): E_a[ max_k aᵀμ_k + (1 − (1/|A_syn|) Σ aᵀ a_syn) ] for unit anomaly tokens a (N_a, D), prototypes
    μ (K, D) and pseudo anomalies a_syn (N_s, D) (detached, as ArcAD's code). ``push="relu"``: the code's
    ReLU(max_k aᵀμ_k) instead of the text's max_k aᵀμ_k."""
    near = (a @ mu.T).max(dim=1).values
    if push == "relu":
        near = F.relu(near)
    pull = 1.0 - a @ syn.mean(dim=0)               # (1/|A_syn|) Σ aᵀa_syn = aᵀ mean(a_syn)
    return (near + pull).mean()


# ----------------------------------------------------------------------------------------- Eq. (9) (Sec. 3.4)

def focal_loss(logits: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Eq. (9)'s binary focal loss (Lin et al. 2017), mean over rows: α_t (1 − p_t)^γ BCE(logit, y), with
    p_t = p y + (1 − p)(1 − y) and α_t = α y + (1 − α)(1 − y) (α < 0: no weighting). logits, target (N,)."""
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.mean()


class Discriminator(nn.Module):
    """f_disc of Eq. (9), "a 2-layer MLP": Linear(D, D) -> BN -> LeakyReLU(0.2) -> Linear(D, 1) (the layers of
    ArcAD's code's SimpleNet-style discriminator). Unit tokens (N, D) -> logits (N,)."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.LeakyReLU(0.2),
                                 nn.Linear(dim, 1, bias=False))

    def forward(self, e: Tensor) -> Tensor:
        return self.net(e).squeeze(1)
