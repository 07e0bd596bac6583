"""ArcAD's reconstruction base: RD4AD-style reverse distillation of the cached frozen taps (Eq. 1; Sec. 3.4).

ArcAD (Han et al.) is a plug-in on a reconstruction model with a frozen encoder E, a bottleneck B and a decoder D.
The paper's own bases are Dinomaly, ReContrast and RD4AD (Deng & Li, CVPR 2022); on our frozen-feature cache the
RD4AD form fits: E is the frozen backbone (its taps, cached), B a one-class embedding of all taps fused, and D a
small decoder that reconstructs every tap separately from B's tokens. Written from the two papers; no code copied.

* **Taps.** The method's input x (B, C, H, W) is the concatenation of the backbone taps (dpdl.backbones: every tap
  resized to one H x W). :func:`tap_split` finds each tap's channel count from C (``"auto"``: the unique split of C
  into the taps of a backbone that dpdl.backbones knows, e.g. 432 = 112 + 320, EfficientNet-Lite0 "mid+last"), or
  takes them from the config (``"112+320"``).
* **Eq. (1)**, with RD4AD's distance: L_recon = Σ_t mean_{positions} (1 − cos(E_t(x), D_t(B(E(x))))), the sum over
  taps of the mean over positions of one minus the cosine over channels (RD4AD's loss), on normal images only.
* **Score (Sec. 3.4)**: the reconstruction-error map m(p) = mean_t (1 − cos(E_t, D_t))(p) (RD4AD's anomaly map, its
  sum over taps divided by the number of taps: the same ranking), and the image score max_p m(p): RD4AD's maximum of
  the map (its Gaussian smoothing is left out: on a 7x7 map it would blur the map's maximum into its neighbours).
"""
from __future__ import annotations

from itertools import combinations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dpdl.backbones import BACKBONES, TAP_ORDER


def known_tap_splits(in_channels: int) -> set[tuple[int, ...]]:
    """The channel splits (shallow to deep) of every backbone tap combination (dpdl.backbones) that sum to C."""
    out = set()
    for info in BACKBONES.values():
        for r in range(1, len(TAP_ORDER) + 1):
            for taps in combinations(TAP_ORDER, r):   # combinations keep TAP_ORDER: the extractor's concat order
                split = tuple(info.taps[t][0] for t in taps)
                if sum(split) == in_channels:
                    out.add(split)
    return out


def tap_split(in_channels: int, taps: str = "auto") -> tuple[int, ...]:
    """Each tap's channel count, shallow to deep, summing to ``in_channels``.

    ``taps="auto"``: the one split of a known backbone's taps that sums to C (no known one: the whole map is one
    tap; two different ones: an error naming the option); else channel counts joined by "+" ("112+320")."""
    if taps == "auto":
        found = known_tap_splits(in_channels)
        if len(found) > 1:
            raise ValueError(f"{in_channels} channels split into backbone taps in several ways "
                             f"({sorted(found)}): give --opt taps=C1+C2 explicitly")
        return found.pop() if found else (int(in_channels),)
    split = tuple(int(p) for p in str(taps).split("+"))
    if sum(split) != in_channels:
        raise ValueError(f"option taps={taps!r} sums to {sum(split)} channels, but the maps have {in_channels}")
    return split


def conv_bn(cin: int, cout: int, k: int = 1, relu: bool = True) -> nn.Sequential:
    """k x k conv ("same" padding, no bias) -> BN (-> ReLU): (B, cin, H, W) -> (B, cout, H, W)."""
    layers = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """B of Eq. (1), RD4AD's one-class embedding on taps already at one resolution: each tap 1x1-projected to
    ``hidden`` channels (conv-BN-ReLU; RD4AD's multi-scale fusion), concatenated, then a 3x3 conv-BN to ``dim``
    channels (its one-class embedding; no ReLU, so tokens may point anywhere on the sphere).

    (B, ΣC_t, H, W) -> tokens z (B, dim, H, W)."""

    def __init__(self, split: tuple[int, ...], hidden: int, dim: int):
        super().__init__()
        self.split = tuple(split)
        self.proj = nn.ModuleList(conv_bn(c, hidden) for c in self.split)
        self.embed = conv_bn(hidden * len(self.split), dim, k=3, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        parts = torch.split(x, list(self.split), dim=1)
        return self.embed(torch.cat([p(t) for p, t in zip(self.proj, parts)], dim=1))


class Decoder(nn.Module):
    """D of Eq. (1): a shared 3x3 conv-BN-ReLU from the tokens, then per tap a 1x1 conv-BN-ReLU and a 1x1 conv to
    the tap's channels (RD4AD's student decoder, one branch per tap).

    z (B, dim, H, W) -> [(B, C_t, H, W) for each tap]."""

    def __init__(self, split: tuple[int, ...], hidden: int, dim: int):
        super().__init__()
        self.split = tuple(split)
        self.shared = conv_bn(dim, hidden, k=3)
        self.heads = nn.ModuleList(nn.Sequential(conv_bn(hidden, hidden), nn.Conv2d(hidden, c, 1)) for c in split)

    def forward(self, z: Tensor) -> list[Tensor]:
        h = self.shared(z)
        return [head(h) for head in self.heads]


def cosine_error_map(x: Tensor, recon: list[Tensor], split: tuple[int, ...]) -> Tensor:
    """(B, T, H, W): per tap t and position, 1 − cos(E_t(x), D_t) over channels (RD4AD's distance, Eq. 1's d)."""
    parts = torch.split(x, list(split), dim=1)
    return torch.stack([1.0 - F.cosine_similarity(e, d, dim=1, eps=1e-6) for e, d in zip(parts, recon)], dim=1)


def recon_loss(err: Tensor) -> Tensor:
    """Eq. (1) with RD4AD's distance: err (B, T, H, W) -> Σ_t mean_{b, positions} err (scalar)."""
    return err.mean(dim=(0, 2, 3)).sum()


def image_score(err: Tensor) -> Tensor:
    """Sec. 3.4 (RD4AD's anomaly score): err (B, T, H, W) -> max over positions of the mean over taps, (B,)."""
    return err.mean(dim=1).flatten(1).max(dim=1).values
