"""VPOT, vague prototype-oriented optimal transport (Sec. 3.1, Eqs. 7-12), on the method package's one Sinkhorn
(:mod:`dpdl.methods.shared.sinkhorn`).

* T_down (Sec. 3.1): average pooling by the down-sampling multiplier N (paper: 4); a map (C, H, W) becomes the
  "vague" vector f_down of d = C·⌈H/N⌉·⌈W/N⌉ (adaptive pooling when N does not divide H, as for our 7x7 maps).
* Eqs. (7)-(8): uniform empirical measures over the K_f vague maps of a batch and over the K prototypes β (K, d).
* Eq. (9): the cost C_ij = ‖f_down^i − β^j‖₂ (Euclidean distance, not squared).
* Eq. (11): L_OT = Σ T_ij C_ij + ε Σ T_ij ln T_ij at the entropic plan (the text's entropy weight is 1: ε = 1).
  Erratum: the text swaps the marginals; a plan T (K_f, K) has rows summing to 1/K_f and columns to 1/K.
* Eq. (10): y = T β. Read row-normalised (y_i = K_f Σ_j T_ij β_j, the barycentric projection): the printed T β has
  rows of mass 1/K_f, i.e. y shrunk K_f-fold towards 0, which no reading of "condition on the data's scale" fits.
* Eq. (12): ŷ = T_up(y), bilinear up-sampling back to (C, H, W).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dpdl.methods.shared.sinkhorn import sinkhorn_log_plan


def vague_hw(hw: tuple[int, int], down: int) -> tuple[int, int]:
    """The vague maps' size ⌈H/N⌉ x ⌈W/N⌉."""
    return math.ceil(hw[0] / down), math.ceil(hw[1] / down)


class VPOT(nn.Module):
    """K learnable vague prototypes (K, C, h, w) and the transport that turns maps into vague conditions ŷ."""

    def __init__(self, channels: int, hw: tuple[int, int], k: int = 50, down: int = 4, eps: float = 1.0,
                 iters: int = 100):
        super().__init__()
        self.hw, self.small, self.eps, self.iters = tuple(hw), vague_hw(hw, down), float(eps), int(iters)
        self.prototypes = nn.Parameter(torch.randn(k, channels, *self.small))

    def down(self, x: Tensor) -> Tensor:
        """T_down: (B, C, H, W) -> vague vectors (B, d)."""
        return F.adaptive_avg_pool2d(x, self.small).flatten(1)

    @torch.no_grad()
    def init_prototypes(self, x: Tensor, generator: torch.Generator | None = None) -> None:
        """The prototypes start at K vague maps of distinct random training normals (N >= K) plus small noise."""
        v = F.adaptive_avg_pool2d(x.float(), self.small)
        k = len(self.prototypes)
        rows = torch.randperm(len(v), generator=generator)[:k]
        rows = torch.cat([rows, torch.randint(len(v), (k - len(rows),), generator=generator)])
        noise = torch.randn(self.prototypes.shape, generator=generator)
        self.prototypes.copy_(v[rows] + 0.01 * noise * v.std())

    def cost(self, v: Tensor) -> Tensor:
        """Eq. (9): C (..., K_f, K), the Euclidean distances of vague vectors v (..., K_f, d) to the prototypes."""
        b = self.prototypes.flatten(1)
        d2 = (v ** 2).sum(-1, keepdim=True) - 2 * v @ b.T + (b ** 2).sum(-1)
        return d2.clamp_min(1e-12).sqrt()

    def transport(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """Eqs. (9)-(11): (log plan (..., K_f, K), L_OT per problem (...)) for vague vectors v (..., K_f, d)."""
        c = self.cost(v)
        log_t = sinkhorn_log_plan(c, self.eps, iters=self.iters, tol=0.0)
        t = log_t.exp()
        return log_t, (t * (c + self.eps * log_t)).sum((-2, -1))

    def condition(self, log_t: Tensor) -> Tensor:
        """Eqs. (10), (12): ŷ (..., C, H, W) from a log plan (..., K_f, K): row-normalised T β, then bilinear T_up."""
        w = torch.softmax(log_t, dim=-1)                           # each row of T divided by its mass 1/K_f
        y = w @ self.prototypes.flatten(1)                         # (..., K_f, d)
        lead = y.shape[:-1]
        y = y.reshape(-1, self.prototypes.shape[1], *self.small)
        y = F.interpolate(y, size=self.hw, mode="bilinear", align_corners=False)
        return y.reshape(*lead, *y.shape[1:])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """A training batch x (B, C, H, W) -> (ŷ (B, C, H, W), L_OT scalar): one plan between the batch and β."""
        log_t, loss = self.transport(self.down(x))
        return self.condition(log_t), loss

    def paired(self, x: Tensor, partners: Tensor) -> Tensor:
        """Test-time OT: each image of x (B, C, H, W) shares a plan with the same fixed normals ``partners``
        (P, C, H, W) only, so its ŷ (B, C, H, W) never depends on the other test images (P = 0: a lone 1 x K plan,
        forced uniform: ŷ = the prototypes' mean for every image)."""
        v = self.down(x)[:, None, :]                               # (B, 1, d)
        if len(partners):
            p = self.down(partners)[None].expand(len(x), -1, -1)   # (B, P, d)
            v = torch.cat([v, p], dim=1)
        log_t, _ = self.transport(v)                               # (B, 1 + P, K)
        return self.condition(log_t[:, :1])[:, 0]
