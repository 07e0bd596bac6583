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

    def __post_init__(self):
        value = self.memory
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise ValueError(f"memory must be an integer >= 1, got {value!r}")


class KNN(MethodMixin, nn.Module):
    """Patch nearest-neighbour distance to the training normals' patches (no training, raw backbone maps)."""

    trainable = False
    # a test image's score is the same bits whichever images it is scored with (one distance block per image,
    # :meth:`patch_distances`; tests/test_trained_once.py), so the study scores each test image once per dataset and
    # seed (dpdl.trained_once.evaluate_shared); 2: those per-image blocks (1: blocks of 4096 patches)
    per_image_scores = True
    records_version = 2
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
        """(B, H·W): each patch's Euclidean distance to its nearest memory patch.

        One distance block per image (its H·W patches against the memory): a matrix product's last bits depend on
        its shapes, so computing every image in a block of its own makes its distances the same bits whichever
        images it is scored with (``per_image_scores``; before, blocks of 4096 patches cut images apart)."""
        if len(self.memory) == 0:
            raise RuntimeError("KNN: call init(normal) before scoring")
        hw = self.feat_hw[0] * self.feat_hw[1]
        q = x.float().permute(0, 2, 3, 1).reshape(x.shape[0], hw, self.in_channels)
        m2 = (self.memory ** 2).sum(1)
        buf = self._scratch
        if buf is None or buf.shape != (hw, len(self.memory)) or buf.device != q.device:
            buf = self._scratch = torch.empty(hw, len(self.memory), device=q.device)
        out = torch.empty(x.shape[0], hw, device=q.device)
        for i, b in enumerate(q):
            # d2 = ‖b‖² − 2 b·m + ‖m‖² (the same operations in the same order as that expression), written into one
            # (H·W, memory) block kept across images and calls (allocating three per image cost more than the matmul)
            d2 = torch.mm(2 * b, self.memory.T, out=buf)
            torch.sub((b ** 2).sum(1, keepdim=True), d2, out=d2).add_(m2)
            out[i] = d2.min(dim=1).values.clamp_min(0).sqrt()
        return out

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
