"""HGAD (Yao et al., ECCV 2024), unsupervised: a conditional coupling flow φ_θ on the frozen backbone's patch features
(:mod:`.flow`) with a hierarchical Gaussian-mixture latent prior (:mod:`.prior`), trained on the training normals.

Written from the supplement (../shared/papers/004) and a reading of the public code (xcyao00/HGAD); no code copied.
Each patch token x (D = C channels) with its position's encoding p is mapped to z = φ_θ(x; p); the losses are the
supplement's Eqs. (4), (10), (11) and the main text's entropy term (Eq. 9), in two stages (supp. Sec. C):
    steps < stage1_steps:  λ_g L_g + λ_mi L_mi + λ_e L_e
    afterwards:            λ_g L_g + λ_mi L_mi + λ_e L_e + L_in  (+ L_z = −log σ(log p/D), the code's extra term,
                           only with ``code_terms``)

Our datasets hold one class each, so HGAD's classes need a reading (``reading``):
  * "likelihood": one class (K = 1; L_mi and L_e are identically 0), its M intra-class centres; the score is the
    negative log-likelihood −log p_θ(x) = −log p_Z(φ_θ(x)) − log|det J| per patch under the whole prior;
  * "clusters": K pseudo-classes, an image's class being the nearest k-means centroid (fitted on the training
    normals' pooled standardised features in ``init``; supp. Sec. A.2 suggests clustering); the same NLL score;
  * "clusters_assigned": as "clusters", but the score is the NLL under the image's own pseudo-class's intra-class
    mixture (the official score's intra-class log-likelihood, its class found by the same clustering).
The image score is the max (``aggregate="max"``) or the mean of the top ``topk_ratio`` of its patch NLLs. The official
score (test-set-max normalised likelihood x entropy) is not used: with one class the entropy map is constant, and a
test-set normalisation makes a score depend on the other test images. Input standardisation (per-channel mean and
std of the training normals' patches, in ``init``) is the only calibration; it never sees a test image.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dpdl.methods.base import MethodMixin, check_maps
from dpdl.methods.dpdl.prototypes import vq_codebook
from dpdl.methods.hgad.flow import ConditionalFlow, positional_encoding_2d
from dpdl.methods.hgad.prior import HierarchicalPrior

READINGS = ("likelihood", "clusters", "clusters_assigned")


@dataclass(frozen=True)
class HGADConfig:
    reading: str = "likelihood"     # see the module docstring (chosen on validation splits: bench_related_hgad.py)
    n_clusters: int = 4             # K pseudo-classes of the "clusters" readings (ignored by "likelihood": K = 1)
    n_intra: int = 10               # M intra-class centres per class, the main one included (code: 10)
    n_blocks: int = 4               # coupling blocks (paper: 12)
    hidden: int = 64                # the subnet's hidden width (two-layer MLP, supp. Sec. C)
    mixing: str = "permutation"     # channel mixing after each block: "permutation" or "orthogonal" (supp. Sec. C)
    pos_dim: int = 64               # positional-encoding channels (paper: 256)
    clamp: float = 1.9              # soft clamp of s (Real-NVP/FrEIA; code: 1.9)
    lambda_g: float = 1.0           # weight of L_g (Eq. 4; code: λ1 = 1)
    lambda_mi: float = 100.0        # weight of L_mi (Eq. 10; code: λ2 = 100)
    lambda_e: float = 1.0           # weight of L_e (main Eq. 9)
    stage1_steps: int = 20          # steps of the first stage (L_g, L_mi, L_e; supp. Sec. C): cpu 1 epoch of 12
    #                                 (the code: 2 of 25 meta-epochs)
    delta_std: float = 0.1          # std of the initial intra-class offsets Δµ (the code: 1.0; see prior.py)
    code_terms: bool = False        # add the code's L_z = −log σ(log p / D) (in no text)
    aggregate: str = "max"          # patch NLLs -> image score: "max" or "topk" (mean of the top topk_ratio)
    topk_ratio: float = 0.1

    def __post_init__(self):
        if self.reading not in READINGS:
            raise ValueError(f"reading must be one of {', '.join(READINGS)}, got {self.reading!r}")
        if self.mixing not in ("permutation", "orthogonal"):
            raise ValueError(f"mixing must be 'permutation' or 'orthogonal', got {self.mixing!r}")
        if self.aggregate not in ("max", "topk"):
            raise ValueError(f"aggregate must be 'max' or 'topk', got {self.aggregate!r}")
        for name, low in (("n_clusters", 1), ("n_intra", 1), ("n_blocks", 1), ("hidden", 1), ("stage1_steps", 0)):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= low):
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if not (isinstance(self.pos_dim, int) and self.pos_dim >= 4 and self.pos_dim % 4 == 0):
            raise ValueError(f"pos_dim must be a positive multiple of 4, got {self.pos_dim!r}")
        for name in ("clamp", "delta_std"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a number > 0, got {getattr(self, name)!r}")
        for name in ("lambda_g", "lambda_mi", "lambda_e"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {getattr(self, name)!r}")
        if not 0 < self.topk_ratio <= 1:
            raise ValueError(f"topk_ratio must lie in (0, 1], got {self.topk_ratio!r}")
        if not isinstance(self.code_terms, bool):
            raise ValueError(f"code_terms must be true or false, got {self.code_terms!r}")


class HGAD(MethodMixin, nn.Module):
    """HGAD on maps x (B, C, H, W): flow + hierarchical prior; losses(x, y) -> dict, score(x) -> (B,)."""

    uses_adapter = False     # the frozen backbone's maps, as the paper's frozen extractor
    unsupervised = True      # trained on the training normals only
    # the public code's optimiser (Adam 2e-4, weight decay 1e-4), applied in the ``paper`` profile; its 3x learning
    # rate for the centres, warm-up, cosine schedule and 25 x 8 epochs of batch 8 are not reproduced
    protocol = {"optimizer": "adam", "lr": 2e-4, "weight_decay": 1e-4}

    def __init__(self, in_channels: int, feat_hw: tuple[int, int], cfg: HGADConfig | None = None):
        super().__init__()
        self.cfg, self.in_channels, self.feat_hw = cfg or HGADConfig(), in_channels, tuple(feat_hw)
        k = 1 if self.cfg.reading == "likelihood" else self.cfg.n_clusters
        self.flow = ConditionalFlow(in_channels, self.cfg.pos_dim, self.cfg.n_blocks, self.cfg.hidden, self.cfg.clamp,
                                    self.cfg.mixing)
        self.prior = HierarchicalPrior(in_channels, k, self.cfg.n_intra, self.cfg.delta_std)
        self.register_buffer("pos", positional_encoding_2d(self.cfg.pos_dim, *self.feat_hw))    # (H·W, P)
        self.register_buffer("mean", torch.zeros(in_channels))
        self.register_buffer("std", torch.ones(in_channels))
        self.register_buffer("centroids", torch.zeros(k, in_channels))                  # k-means of pooled features
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))               # optimisation steps taken

    # -- calibration on the training normals ----------------------------------------------------------------------
    def init(self, normal: Tensor, generator: torch.Generator | None = None) -> None:
        """Per-channel mean/std of the patches of ``normal`` (N, C, H, W); the k-means centroids of their pooled
        standardised features (the "clusters" readings; Eq.-free, supp. Sec. A.2's suggestion)."""
        check_maps(normal, self.in_channels, self.feat_hw)
        patches = normal.float().permute(0, 2, 3, 1).reshape(-1, self.in_channels)
        self.mean = patches.mean(0).to(self.mean)
        self.std = patches.std(0).clamp_min(1e-6).to(self.std)
        if self.prior.n_classes > 1:
            pooled = self._standardise(normal.float()).mean(dim=(2, 3))
            self.centroids = vq_codebook(pooled.cpu(), self.prior.n_classes, generator=generator).centers.to(
                self.centroids)

    def _standardise(self, x: Tensor) -> Tensor:
        return (x - self.mean[None, :, None, None]) / self.std[None, :, None, None]

    def classes(self, x: Tensor) -> Tensor:
        """(B,) each image's (pseudo-)class: the nearest centroid of its pooled standardised features (0 if K = 1)."""
        if self.prior.n_classes == 1:
            return torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        pooled = self._standardise(x.float()).mean(dim=(2, 3))
        return torch.cdist(pooled, self.centroids).argmin(dim=1)

    def latents(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, C, H, W) -> z (B·H·W, C), log|det J| (B·H·W,), class of each patch (B·H·W,)."""
        check_maps(x, self.in_channels, self.feat_hw)
        b, hw = x.shape[0], self.feat_hw[0] * self.feat_hw[1]
        tokens = self._standardise(x.float()).permute(0, 2, 3, 1).reshape(b * hw, self.in_channels)
        z, logdet = self.flow(tokens, self.pos.repeat(b, 1))
        return z, logdet, self.classes(x).repeat_interleave(hw)

    # -- training ------------------------------------------------------------------------------------------------
    def losses(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """The two-stage objective (module docstring); every term a float64 mean over patches."""
        terms = self.flow_terms(*self.latents(x))
        if self.training:
            self.steps += 1
        return terms

    def flow_terms(self, z: Tensor, logdet: Tensor, cls: Tensor) -> dict[str, Tensor]:
        """HGAD's terms and their "total" on latents z (N, D), log|det J| (N,), classes (N,) (no step counted)."""
        cfg, p = self.cfg, self.prior
        terms = {"L_g": p.nll_inter(z, logdet).mean(), "L_mi": p.mutual_info(z, cls).mean(),
                 "L_e": p.entropy(z).mean()}
        total = cfg.lambda_g * terms["L_g"] + cfg.lambda_mi * terms["L_mi"] + cfg.lambda_e * terms["L_e"]
        stage2 = int(self.steps) >= cfg.stage1_steps
        nll_in = p.nll_intra(z, logdet, cls)
        terms["L_in"] = nll_in.mean() if stage2 else nll_in.mean().detach()
        if stage2:
            total = total + terms["L_in"]
        if cfg.code_terms:
            lz = torch.nn.functional.softplus(nll_in).mean()           # −log σ(log p / D) = softplus(NLL / D)
            terms["L_z"] = lz if stage2 else lz.detach()
            if stage2:
                total = total + lz
        terms["total"] = total
        return terms

    # -- scoring -------------------------------------------------------------------------------------------------
    def patch_nll(self, x: Tensor) -> Tensor:
        """(B, H·W) float64 per-patch negative log-likelihood −log p_θ(x) per dimension under the reading's prior."""
        z, logdet, cls = self.latents(x)
        if self.cfg.reading == "clusters_assigned":
            ll = self.prior.intra_log_density(z, cls, detach_main=False)
        else:
            ll = self.prior.log_density(z)
        return (-(ll + logdet.double()) / self.in_channels).view(x.shape[0], -1)

    @torch.no_grad()
    def score(self, x: Tensor) -> Tensor:
        nll = self.patch_nll(x)
        if self.cfg.aggregate == "max":
            return nll.max(dim=1).values.float()
        k = max(1, int(self.cfg.topk_ratio * nll.shape[1]))
        return nll.topk(k, dim=1).values.mean(dim=1).float()
