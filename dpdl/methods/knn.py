"""kNN (an unsupervised floor, PatchCore without its coreset): the memory is the patch features of the
  training normals (random subsample of at most ``memory`` patches, seeded); a test image's score is the
  largest over its patches of the distance to the nearest memory patch. No training; raw backbone maps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dpdl.methods.base import MethodMixin, check_maps


@dataclass(frozen=True)
class KNNConfig:
    memory: int = 10000      # at most this many memory patches (random, seeded subsample)
    chunk: int = 4096        # query patches per distance block

    def __post_init__(self):
        for name in ("memory", "chunk"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


class KNN(MethodMixin, nn.Module):
    """Patch nearest-neighbour distance to the training normals' patches (no training, raw backbone maps)."""

    trainable = False
    uses_adapter = False

    def __init__(self, in_channels: int, feat_hw: tuple[int, int], cfg: KNNConfig | None = None):
        super().__init__()
        self.cfg, self.in_channels, self.feat_hw = cfg or KNNConfig(), in_channels, tuple(feat_hw)
        self.register_buffer("memory", torch.zeros(0, in_channels))
        self._scratch: Tensor | None = None   # patch_distances' work block (not state: never saved)

    def init(self, normal: Tensor, generator: torch.Generator | None = None) -> None:
        """The memory: patches (N·H·W, C) of ``normal`` (N, C, H, W), at most ``cfg.memory`` (random, seeded)."""
        check_maps(normal, self.in_channels, self.feat_hw)
        patches = normal.float().permute(0, 2, 3, 1).reshape(-1, self.in_channels)
        if len(patches) > self.cfg.memory:
            keep = torch.randperm(len(patches), generator=generator)[:self.cfg.memory].sort().values
            patches = patches[keep.to(patches.device)]
        self.memory = patches.contiguous()

    def patch_distances(self, x: Tensor) -> Tensor:
        """(B, H·W): each patch's Euclidean distance to its nearest memory patch."""
        if len(self.memory) == 0:
            raise RuntimeError("KNN: call init(normal) before scoring")
        q = x.float().permute(0, 2, 3, 1).reshape(-1, self.in_channels)
        m2 = (self.memory ** 2).sum(1)
        rows = min(self.cfg.chunk, len(q))
        buf = self._scratch
        if buf is None or buf.shape[0] < rows or buf.shape[1] != len(self.memory) or buf.device != q.device:
            buf = self._scratch = torch.empty(rows, len(self.memory), device=q.device)
        out = []
        for s in range(0, len(q), self.cfg.chunk):
            b = q[s:s + self.cfg.chunk]
            # d2 = ‖b‖² − 2 b·m + ‖m‖² (the same operations in the same order as that expression), written into one
            # (chunk, memory) block kept across calls: a block of 4096 x 10000 floats is 160 MB, and allocating
            # three per chunk cost more than the matmul
            d2 = torch.mm(2 * b, self.memory.T, out=buf[:len(b)])
            torch.sub((b ** 2).sum(1, keepdim=True), d2, out=d2).add_(m2)
            out.append(d2.min(dim=1).values.clamp_min(0).sqrt())
        return torch.cat(out).view(x.shape[0], -1)

    def losses(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        raise RuntimeError("KNN is not trained: it has no losses")

    def score(self, x: Tensor) -> Tensor:
        check_maps(x, self.in_channels, self.feat_hw)
        return self.patch_distances(x).max(dim=1).values

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "memory"
        if key in state_dict:   # the memory's size is known only from the saved state
            self.memory = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
