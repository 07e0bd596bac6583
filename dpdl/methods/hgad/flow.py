"""HGAD's normalizing flow (supplement Sec. C): a conditional Real-NVP of affine-coupling blocks on patch features,
conditioned on a 2-D sinusoidal positional encoding. Written from the supplement's text; no code copied.

One block (supp. Sec. C; main text Eq. (4)): x = [x1, x2] ->
    y1 = x1,   y2 = x2 · exp(s(x1, p)) + t(x1, p),   log|det J| = Σ s,
with [s, t] from one two-layer MLP subnet on concat(x1, p) (p: the positional encoding, "concatenated with the first
half of the input features"), s soft-clamped as in Real-NVP/FrEIA (s = 0.636·clamp·atan(s_raw/clamp)); then a fixed
random channel mixing, |det| = 1: a hard permutation (``mixing="permutation"``, our cpu default: free) or the
supplement's "soft permutation", a random orthogonal matrix (``mixing="orthogonal"``, a D x D matmul per block); and a
learned per-channel scaling (ActNorm-like, log|det J| = Σ a). The subnet's last layer starts at zero, so the flow
starts as a fixed mixing.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def positional_encoding_2d(dim: int, h: int, w: int) -> Tensor:
    """(H·W, dim) 2-D sinusoidal positional encoding (supp. Sec. C): the first dim/2 channels encode the column,
    the last dim/2 the row, each as [sin, cos] pairs at frequencies 1/10000^(2k/(dim/2)). Rows in raster order."""
    if dim % 4:
        raise ValueError(f"the positional encoding's dim must be a multiple of 4, got {dim}")
    half = dim // 2
    freq = torch.exp(torch.arange(0, half, 2, dtype=torch.float64) * (-math.log(10000.0) / half))   # (half/2,)
    col = torch.arange(w, dtype=torch.float64)[:, None] * freq[None, :]                           # (W, half/2)
    row = torch.arange(h, dtype=torch.float64)[:, None] * freq[None, :]                           # (H, half/2)
    pe = torch.zeros(h, w, dim, dtype=torch.float64)
    pe[:, :, 0:half:2] = torch.sin(col)[None, :, :]
    pe[:, :, 1:half:2] = torch.cos(col)[None, :, :]
    pe[:, :, half::2] = torch.sin(row)[:, None, :]
    pe[:, :, half + 1::2] = torch.cos(row)[:, None, :]
    return pe.reshape(h * w, dim).float()


class CouplingBlock(nn.Module):
    """One conditional affine-coupling block (main text Eq. (4)) + fixed orthogonal mixing + per-channel scaling.

    forward(x (N, D), cond (N, P)) -> (z (N, D), log|det J| (N,)); inverse(z, cond) -> x."""

    def __init__(self, dim: int, cond_dim: int, hidden: int, clamp: float, seed: int, mixing: str = "permutation"):
        super().__init__()
        self.d1 = dim // 2
        self.d2 = dim - self.d1
        self.clamp = float(clamp)
        self.subnet = nn.Sequential(nn.Linear(self.d1 + cond_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * self.d2))
        nn.init.zeros_(self.subnet[-1].weight)
        nn.init.zeros_(self.subnet[-1].bias)
        g = torch.Generator().manual_seed(seed)
        self.orthogonal = mixing == "orthogonal"
        if self.orthogonal:
            q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
            rot = (q * torch.sign(torch.diagonal(r))[None, :]).float()
            self.register_buffer("rotation", rot)                                               # (D, D)
            # |det| = 1 only to float32 rounding: its exact log|det| joins the block's, inverse by a solve
            self.register_buffer("rot_logdet", torch.linalg.slogdet(rot.double())[1].float())
        else:
            perm = torch.randperm(dim, generator=g)
            self.register_buffer("perm", perm)                                                # (D,)
            self.register_buffer("unperm", torch.argsort(perm))
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def _mix(self, x: Tensor) -> Tensor:
        return x @ self.rotation.T if self.orthogonal else x[:, self.perm]

    def _unmix(self, y: Tensor) -> Tensor:
        return torch.linalg.solve(self.rotation, y.T).T if self.orthogonal else y[:, self.unperm]

    def _st(self, x1: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self.subnet(torch.cat([x1, cond], dim=1)).chunk(2, dim=1)
        return 0.636 * self.clamp * torch.atan(s / self.clamp), t           # soft clamp (Real-NVP, FrEIA)

    def forward(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        x1, x2 = x[:, :self.d1], x[:, self.d1:]
        s, t = self._st(x1, cond)
        y = self._mix(torch.cat([x1, x2 * torch.exp(s) + t], dim=1))
        y = y * torch.exp(self.log_scale)
        logdet = s.sum(dim=1) + self.log_scale.sum()
        return y, (logdet + self.rot_logdet.to(logdet)) if self.orthogonal else logdet

    def inverse(self, z: Tensor, cond: Tensor) -> Tensor:
        y = self._unmix(z * torch.exp(-self.log_scale))
        y1, y2 = y[:, :self.d1], y[:, self.d1:]
        s, t = self._st(y1, cond)
        return torch.cat([y1, (y2 - t) * torch.exp(-s)], dim=1)


class ConditionalFlow(nn.Module):
    """φ_θ: ``n_blocks`` coupling blocks (supp. Sec. C: 12 in the paper). forward(x (N, D), cond (N, P)) ->
    (z (N, D), log|det J| (N,)); inverse(z, cond) -> x."""

    def __init__(self, dim: int, cond_dim: int, n_blocks: int, hidden: int, clamp: float = 2.0,
                 mixing: str = "permutation"):
        super().__init__()
        if mixing not in ("permutation", "orthogonal"):
            raise ValueError(f"mixing must be 'permutation' or 'orthogonal', got {mixing!r}")
        self.blocks = nn.ModuleList(CouplingBlock(dim, cond_dim, hidden, clamp, seed=1000 + i, mixing=mixing)
                                    for i in range(n_blocks))

    def forward(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for block in self.blocks:
            x, ld = block(x, cond)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: Tensor, cond: Tensor) -> Tensor:
        for block in reversed(self.blocks):
            z = block.inverse(z, cond)
        return z
