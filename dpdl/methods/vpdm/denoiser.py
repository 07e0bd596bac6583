"""VPDM's denoiser ε_θ(x^t, ŷ, t) (Alg. 1-2). The paper gives no architecture; ours is small and named:

* ``"conv"``: 1x1 conv (2C -> h) on [x^t − ŷ, ŷ], + an MLP of the sinusoidal embedding of t, ``blocks`` residual
  blocks (GroupNorm -> SiLU -> 3x3 conv -> + time -> GroupNorm -> SiLU -> 3x3 conv), GroupNorm -> SiLU -> 1x1 conv
  (h -> C);
* ``"mlp"``: the same with 1x1 convolutions in the blocks (each location on its own).

The input [x^t − ŷ, ŷ] is an invertible linear map of the paper's (x^t, ŷ).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding (Ho et al., 2020) of integer steps t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    ang = t.float()[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=1)


def _norm(h: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, h), h)


class ResBlock(nn.Module):
    """Pre-activation residual block with a time shift: (B, h, H, W), (B, h) -> (B, h, H, W)."""

    def __init__(self, h: int, kernel: int):
        super().__init__()
        pad = kernel // 2
        self.a = nn.Sequential(_norm(h), nn.SiLU(), nn.Conv2d(h, h, kernel, padding=pad))
        self.b = nn.Sequential(_norm(h), nn.SiLU(), nn.Conv2d(h, h, kernel, padding=pad))
        self.time = nn.Linear(h, h)

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        return x + self.b(self.a(x) + self.time(temb)[:, :, None, None])


class Denoiser(nn.Module):
    """ε_θ: (x^t (B, C, H, W), ŷ (B, C, H, W), t (B,)) -> ε̂ (B, C, H, W)."""

    def __init__(self, channels: int, hidden: int = 128, blocks: int = 2, kind: str = "conv"):
        super().__init__()
        kernel = 3 if kind == "conv" else 1
        self.hidden = hidden
        self.inp = nn.Conv2d(2 * channels, hidden, 1)
        self.temb = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.blocks = nn.ModuleList(ResBlock(hidden, kernel) for _ in range(blocks))
        self.out = nn.Sequential(_norm(hidden), nn.SiLU(), nn.Conv2d(hidden, channels, 1))

    def forward(self, xt: Tensor, y: Tensor, t: Tensor) -> Tensor:
        temb = self.temb(timestep_embedding(t, self.hidden))
        h = self.inp(torch.cat([xt - y, y], dim=1))
        for block in self.blocks:
            h = block(h, temb)
        return self.out(h)
