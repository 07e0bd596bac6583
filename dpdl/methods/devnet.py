"""DevNet (Pang et al., KDD 2019; the top-K MIL form that DRA's public code ships), re-run under our protocol.

Written from ../shared/protocol.md and a reading of DRA's public code (Choubo/DRA); no code is copied. One plain head
(1x1 conv patch scores, |.|, mean of the top-K, K = max(floor(0.1 HW), 1)), the deviation loss, batches half normal,
half seen anomalies (no pseudo anomalies). Score: the head's output. Two scales (``multiscale = True``): given a
list of maps, one per input scale (the profile's ``scales``; DRA's code: 448 and 224), the score is the mean over
the scales, in the loss and in the score.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dpdl.batches import Composition, batch_counts
from dpdl.methods.base import MethodMixin, mean_over, scale_list
from dpdl.methods.shared.heads import PlainHead, deviation_loss


@dataclass(frozen=True)
class DevNetConfig:
    topk_ratio: float = 0.1

    def __post_init__(self):
        if not 0 < self.topk_ratio <= 1:
            raise ValueError(f"topk_ratio must lie in (0, 1], got {self.topk_ratio!r}")


class DevNet(MethodMixin, nn.Module):
    """DevNet: one top-K MIL head and the deviation loss; batches half normal, half seen anomalies."""

    # DevNet as DRA's repository trains it (its public code; protocol.md): Adam, grad-norm clip 1.0, StepLR(10, 0.1);
    # its 50 x 20 schedule and batch size are the profile's. Applied where the profile says so (paper: method_protocol).
    protocol = {"optimizer": "adam", "grad_clip": 1.0, "lr_step": 10, "lr_gamma": 0.1}
    multiscale = True

    def __init__(self, in_channels: int, feat_hw: tuple[int, int], cfg: DevNetConfig | None = None):
        super().__init__()
        self.cfg, self.in_channels, self.feat_hw = cfg or DevNetConfig(), in_channels, tuple(feat_hw)
        self.head = PlainHead(in_channels, self.cfg.topk_ratio)

    def composition(self, profile, n_seen: int, has_pseudo: bool) -> Composition:
        """Half normal, half seen anomalies (DevNet uses no pseudo anomalies; with M = 0, pseudo ones)."""
        n, s, p = batch_counts(profile.batch_size, n_seen, profile.pseudo_share, has_pseudo and n_seen == 0,
                               normal_share=0.5)
        return Composition(n, s, p)

    def losses(self, x, y: Tensor) -> dict[str, Tensor]:
        xs = scale_list(x, self.in_channels, self.feat_hw)
        keep = y >= 0
        loss = deviation_loss(mean_over(self.head, xs, keep), (y[keep] > 0).to(xs[0].dtype))
        return {"head": loss, "total": loss}

    def score(self, x) -> Tensor:
        return mean_over(self.head, scale_list(x, self.in_channels, self.feat_hw))
