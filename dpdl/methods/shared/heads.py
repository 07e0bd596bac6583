"""Score-head pieces that several methods share: DevNet's deviation loss, the top-K MIL mean and its K, and the
plain head of DRA's code (DevNet's head, DRA's seen and pseudo heads; DPDL's M_a and M_r are top-K heads too).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["deviation_loss", "topk_k", "topk_mean", "PlainHead"]


def deviation_loss(scores: Tensor, target: Tensor, margin: float = 5.0) -> Tensor:
    """L_binary as DevNet's deviation loss (Pang et al., KDD 2019, Eq. 6; DRA's default criterion).

    dev = (s − µ_R)/σ_R against the reference prior R = N(0, 1); loss = mean((1 − t)|dev| + t·max(0, a − dev)),
    a = ``margin`` = 5.  We use the prior's exact µ_R = 0, σ_R = 1 where DevNet's code draws 5000 reference
    scores per call (the same in expectation, without the sampling noise).  scores, target (B,) → scalar.
    """
    dev = scores
    target = target.to(scores.dtype)
    return ((1.0 - target) * dev.abs() + target * torch.clamp(margin - dev, min=0.0)).mean()


def topk_k(n: int, ratio: float = 0.1) -> int:
    """K of Eq. (20): max(⌊ratio·n⌋, 1) for n = H·W patches."""
    return max(int(ratio * n), 1)


def topk_mean(scores: Tensor, ratio: float = 0.1) -> Tensor:
    """(1/K) Σ TopK of each row of scores (B, N) → (B,) (Eq. 20)."""
    k = topk_k(scores.shape[1], ratio)
    return scores.topk(k, dim=1).values.mean(dim=1)


class PlainHead(nn.Module):
    """DRA's plain (seen/pseudo) head and DevNet's MIL head: (B, C, H, W) -> (B,) = mean top-K of |conv1x1(x)|."""

    def __init__(self, in_channels: int, topk_ratio: float = 0.1):
        super().__init__()
        self.conv, self.topk_ratio = nn.Conv2d(in_channels, 1, 1), topk_ratio

    def forward(self, x: Tensor) -> Tensor:
        s = self.conv(x).flatten(1).abs()
        return s.topk(topk_k(s.shape[1], self.topk_ratio), dim=1).values.mean(dim=1)
