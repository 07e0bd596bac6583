"""HGAD+BG: HGAD with BGAD's boundary-guided semi-push-pull loss on the seen anomalies (supplement Sec. A.2: "our
method can easily be combined with BGAD"; BGAD: Yao et al., CVPR 2023, github xcyao00/BGAD, read to learn).
Supervised: its batches hold the M seen anomalies. A row of its own (``--method hgad_bg``).

With l = log p_θ(x) / D per patch (the reading's prior, :meth:`HGAD.patch_nll` negated):
    b_n = the β-quantile of the batch's normal patches' l (detached),   b_a = b_n − τ,
    L_bg = mean_{normal, l < b_n} (b_n − l) + mean_{anomalous, l > b_a} (l − b_a)
(BGAD's semi-push-pull: normals below their boundary are pulled up, anomalies above theirs pushed down). Our seen
anomalies carry no masks, so an anomaly image's anomalous patches are a reading (``bg_patches``): "topk", its
``topk_ratio`` least likely patches (default); or "all" its patches. Total: HGAD's objective on the normal rows
+ λ_bg L_bg. Score: HGAD's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dpdl.batches import Composition, batch_counts
from dpdl.methods.hgad.model import HGAD, HGADConfig


@dataclass(frozen=True)
class HGADBGConfig(HGADConfig):
    lambda_bg: float = 1.0      # weight of L_bg
    beta: float = 0.05          # the normal boundary's quantile (BGAD: pos_beta 0.05)
    tau: float = 0.1            # margin between the normal and abnormal boundaries (BGAD: margin_tau 0.1)
    bg_patches: str = "topk"    # an anomaly image's anomalous patches: "topk" (its topk_ratio least likely) or "all"

    def __post_init__(self):
        super().__post_init__()
        if self.bg_patches not in ("topk", "all"):
            raise ValueError(f"bg_patches must be 'topk' or 'all', got {self.bg_patches!r}")
        if not 0 <= self.beta < 1:
            raise ValueError(f"beta must lie in [0, 1), got {self.beta!r}")
        for name in ("lambda_bg", "tau"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {getattr(self, name)!r}")


def semi_push_pull(l_normal: Tensor, l_anomal: Tensor, beta: float, tau: float) -> Tensor:
    """BGAD's L_bg for per-patch log-likelihoods l_normal (Nn,) and l_anomal (Na,) (module docstring)."""
    ln = l_normal.detach()
    b_n = ln.sort().values[int(beta * len(ln))]
    b_a = b_n - tau
    low, high = l_normal < b_n, l_anomal > b_a
    pull = (b_n - l_normal[low]).mean() if bool(low.any()) else l_normal.sum() * 0
    push = (l_anomal[high] - b_a).mean() if bool(high.any()) else l_anomal.sum() * 0
    return pull + push


class HGADBG(HGAD):
    """HGAD + BGAD's boundary-guided push-pull on the seen anomalies' log-likelihoods (supervised)."""

    unsupervised = False

    def __init__(self, in_channels: int, feat_hw: tuple[int, int], cfg: HGADBGConfig | None = None):
        super().__init__(in_channels, feat_hw, cfg or HGADBGConfig())

    def composition(self, profile, n_seen: int, has_pseudo: bool) -> Composition:
        """The profile's two thirds normal; the anomaly third seen anomalies (pseudo ones only when M = 0)."""
        n, s, p = batch_counts(profile.batch_size, n_seen, profile.pseudo_share, has_pseudo and n_seen == 0,
                               profile.pseudo_slots)
        return Composition(n, s, p, self.n_reference)

    def losses(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        z, logdet, cls = self.latents(x)
        hw = self.feat_hw[0] * self.feat_hw[1]
        normal = (y <= 0).repeat_interleave(hw)
        terms = self.flow_terms(z[normal], logdet[normal], cls[normal])
        if bool((y > 0).any()) and bool((y <= 0).any()):
            l = (self.prior.log_density(z) + logdet.double()) / self.in_channels            # (B·HW,)
            la = l[~normal].view(-1, hw)
            if self.cfg.bg_patches == "topk":
                la = la.topk(max(1, int(self.cfg.topk_ratio * hw)), dim=1, largest=False).values
            terms["L_bg"] = semi_push_pull(l[normal], la.flatten(), self.cfg.beta, self.cfg.tau)
            terms["total"] = terms["total"] + self.cfg.lambda_bg * terms["L_bg"]
        else:
            terms["L_bg"] = terms["total"].detach() * 0
        if self.training:
            self.steps += 1
        return terms
