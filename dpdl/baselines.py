"""The baselines, re-run under our protocol: DevNet, DRA and a patch nearest-neighbour score (kNN).

Each is a pure torch module on feature maps x (B, C, H, W) with the interface of :mod:`dpdl.methods`.
Written from ../shared/protocol.md and a reading of DRA's public code (Choubo/DRA); no code is copied.

* **DevNet** (Pang et al., KDD 2019; the top-K MIL form DRA's code ships): one plain head (1x1 conv patch scores,
  |.|, mean of the top-K, K = max(floor(0.1 HW), 1)), the deviation loss, batches half normal, half seen
  anomalies (no pseudo anomalies). Score: the head's output.
* **DRA** (Ding et al., CVPR 2022): four heads on the same map, each trained with the deviation loss and
  summed:
  - holistic (GAP -> Linear(C, 256) -> ReLU -> Linear(256, 1) -> |.|), target "normal" (y == 0), all rows;
  - seen (plain head), on the normal and seen-anomaly rows (y != 2), target y != 0;
  - pseudo (plain head), on the normal and pseudo-anomaly rows (y != 1), target y != 0;
  - composite: (mean of the reference normals' maps - x) -> 3x3 conv -> BN -> ReLU -> plain head, all rows,
    target y != 0. Training batches carry ``n_reference = 5`` reference normals (y = -1), as DRA prepends 5.
  Score: -holistic + seen + pseudo + composite (DRA's test, no normalisation). Reference normals differ from DRA's
  code: its code draws them from its training loader for every test batch, so they are rotated
  (RandomRotation(180)) and about half of them turned into pseudo anomalies; ours are 5 clean (unrotated, never
  pseudo) training normals drawn once per run with the seed (``dpdl.modes._reference_rows``) and fixed
  (``calibrate``), so a score does not depend on the batch it is computed in. The difference is not measured.
* **Two scales** (DevNet and DRA, ``multiscale = True``): given a list of maps, one per input scale (dpdl.net.Net
  with the profile's ``scales``; DRA's code: 448 and 224), each head's score is the mean of its scores over the
  scales, in the losses and in the score; the composite head uses the reference mean of its own scale.
* **kNN** (an unsupervised floor, PatchCore without its coreset): the memory is the patch features of the
  training normals (random subsample of at most ``memory`` patches, seeded); a test image's score is the
  largest over its patches of the distance to the nearest memory patch. No training; raw backbone maps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .batches import Composition, batch_counts
from .heads import deviation_loss, topk_k
from .methods import MethodMixin


@dataclass(frozen=True)
class DevNetConfig:
    topk_ratio: float = 0.1

    def __post_init__(self):
        if not 0 < self.topk_ratio <= 1:
            raise ValueError(f"topk_ratio must lie in (0, 1], got {self.topk_ratio!r}")


@dataclass(frozen=True)
class DRAConfig(DevNetConfig):
    n_reference: int = 5
    hidden: int = 256

    def __post_init__(self):
        super().__post_init__()
        if not (isinstance(self.n_reference, int) and self.n_reference >= 1):
            raise ValueError(f"n_reference must be an integer >= 1, got {self.n_reference!r}")


@dataclass(frozen=True)
class KNNConfig:
    memory: int = 10000      # at most this many memory patches (random, seeded subsample)
    chunk: int = 4096        # query patches per distance block

    def __post_init__(self):
        for name in ("memory", "chunk"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


class PlainHead(nn.Module):
    """DRA's plain (seen/pseudo) head and DevNet's MIL head: (B, C, H, W) -> (B,) = mean top-K of |conv1x1(x)|."""

    def __init__(self, in_channels: int, topk_ratio: float = 0.1):
        super().__init__()
        self.conv, self.topk_ratio = nn.Conv2d(in_channels, 1, 1), topk_ratio

    def forward(self, x: Tensor) -> Tensor:
        s = self.conv(x).flatten(1).abs()
        return s.topk(topk_k(s.shape[1], self.topk_ratio), dim=1).values.mean(dim=1)


class HolisticHead(nn.Module):
    """DRA's holistic (normality) head: GAP -> Linear(C, hidden) -> ReLU -> Linear(hidden, 1) -> |.|; (B,)."""

    def __init__(self, in_channels: int, hidden: int = 256):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.mean(dim=(2, 3))).squeeze(1).abs()


class CompositeHead(nn.Module):
    """DRA's composite head: (ref_mean (C, H, W) - x) -> 3x3 conv -> BN -> ReLU -> plain head; (B,)."""

    def __init__(self, in_channels: int, topk_ratio: float = 0.1):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=1), nn.BatchNorm2d(in_channels),
                                  nn.ReLU())
        self.plain = PlainHead(in_channels, topk_ratio)

    def forward(self, x: Tensor, ref_mean: Tensor) -> Tensor:
        return self.plain(self.conv(ref_mean.unsqueeze(0) - x))


def _check_maps(x: Tensor, c: int, hw: tuple[int, int]) -> None:
    if x.ndim != 4 or x.shape[1] != c or tuple(x.shape[2:]) != hw:
        raise ValueError(f"expected feature maps of shape (B, {c}, {hw[0]}, {hw[1]}), got {tuple(x.shape)}")


def _scale_list(x, c: int, hw: tuple[int, int]) -> list[Tensor]:
    """x: maps (B, C, H, W) or a list of them, one per input scale (the first at feat_hw) -> a list."""
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    _check_maps(xs[0], c, hw)
    for m in xs[1:]:
        if m.ndim != 4 or m.shape[:2] != xs[0].shape[:2]:
            raise ValueError(f"every scale's maps must be (B, {c}, h, w) like the first, got {tuple(m.shape)}")
    return xs


def _mean_over(fn, xs: list[Tensor], rows: Tensor | None = None) -> Tensor:
    """A head's score averaged over the scales: mean_s fn(xs[s][rows]) -> (B',)."""
    outs = [fn(m if rows is None else m[rows]) for m in xs]
    return outs[0] if len(outs) == 1 else torch.stack(outs).mean(dim=0)


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
        xs = _scale_list(x, self.in_channels, self.feat_hw)
        keep = y >= 0
        loss = deviation_loss(_mean_over(self.head, xs, keep), (y[keep] > 0).to(xs[0].dtype))
        return {"head": loss, "total": loss}

    def score(self, x) -> Tensor:
        return _mean_over(self.head, _scale_list(x, self.in_channels, self.feat_hw))


class DRA(MethodMixin, nn.Module):
    """DRA: holistic, seen, pseudo and composite heads; score -holistic + seen + pseudo + composite."""

    # DRA's code (protocol.md): Adam 2e-4, wd 1e-5, grad-norm clip 1.0, StepLR(10, 0.1), 30 epochs x 20 steps,
    # half of the normal slots become pseudo anomalies (48 -> 16 normal, 16 seen, 16 pseudo).
    protocol = {"optimizer": "adam", "epochs": 30, "grad_clip": 1.0, "lr_step": 10, "lr_gamma": 0.1,
                "pseudo_slots": "normal"}
    multiscale = True

    def __init__(self, in_channels: int, feat_hw: tuple[int, int], cfg: DRAConfig | None = None):
        super().__init__()
        self.cfg, self.in_channels, self.feat_hw = cfg or DRAConfig(), in_channels, tuple(feat_hw)
        self.n_reference = self.cfg.n_reference
        self.holistic = HolisticHead(in_channels, self.cfg.hidden)
        self.seen = PlainHead(in_channels, self.cfg.topk_ratio)
        self.pseudo = PlainHead(in_channels, self.cfg.topk_ratio)
        self.composite = CompositeHead(in_channels, self.cfg.topk_ratio)
        self.register_buffer("ref_mean", torch.zeros(in_channels, *self.feat_hw))

    def calibrate(self, normal) -> None:
        """The composite head's reference at test: the mean map of ``normal`` (n_reference, C, H, W), or of each
        scale's maps when given a list (the extra scales' references are the buffers ``ref_mean_1``, ...)."""
        ns = _scale_list(normal, self.in_channels, self.feat_hw)
        self.ref_mean.copy_(ns[0].float().mean(dim=0))
        for i, m in enumerate(ns[1:], start=1):
            self.register_buffer(f"ref_mean_{i}", m.float().mean(dim=0))

    def ref_means(self, n: int) -> list[Tensor]:
        """The test references of ``n`` scales (calibrate first)."""
        refs = [self.ref_mean] + [getattr(self, f"ref_mean_{i}", None) for i in range(1, n)]
        if any(r is None for r in refs):
            raise RuntimeError(f"DRA: calibrate with maps of all {n} scales before scoring")
        return refs

    def head_scores(self, x, ref_mean) -> dict[str, Tensor]:
        """{"holistic", "seen", "pseudo", "composite"}: each (B,), averaged over the scales of x (one map or a list;
        ``ref_mean`` one (C, H, W) reference per scale)."""
        xs = _scale_list(x, self.in_channels, self.feat_hw)
        refs = list(ref_mean) if isinstance(ref_mean, (list, tuple)) else [ref_mean]
        composite = [self.composite(m, r) for m, r in zip(xs, refs)]
        return {"holistic": _mean_over(self.holistic, xs), "seen": _mean_over(self.seen, xs),
                "pseudo": _mean_over(self.pseudo, xs),
                "composite": composite[0] if len(xs) == 1 else torch.stack(composite).mean(dim=0)}

    def losses(self, x, y: Tensor) -> dict[str, Tensor]:
        xs = _scale_list(x, self.in_channels, self.feat_hw)
        is_ref, keep = y < 0, y >= 0
        if not bool(is_ref.any()):
            raise ValueError("DRA's training batch needs reference normal rows (label -1)")
        refs = [m[is_ref].mean(dim=0) for m in xs]
        xs, y = [m[keep] for m in xs], y[keep]
        anomal = (y != 0).to(xs[0].dtype)
        composite = [self.composite(m, r) for m, r in zip(xs, refs)]
        terms = {"holistic": deviation_loss(_mean_over(self.holistic, xs), (y == 0).to(xs[0].dtype)),
                 "seen": deviation_loss(_mean_over(self.seen, xs, y != 2), anomal[y != 2]),
                 "pseudo": deviation_loss(_mean_over(self.pseudo, xs, y != 1), anomal[y != 1]),
                 "composite": deviation_loss(composite[0] if len(xs) == 1 else torch.stack(composite).mean(dim=0),
                                             anomal)}
        terms["total"] = sum(terms.values())
        return terms

    @staticmethod
    def combine(s: dict[str, Tensor]) -> Tensor:
        """DRA's test score: -holistic + seen + pseudo + composite (B,)."""
        return -s["holistic"] + s["seen"] + s["pseudo"] + s["composite"]

    def score(self, x) -> Tensor:
        n = len(x) if isinstance(x, (list, tuple)) else 1
        return self.combine(self.head_scores(x, self.ref_means(n)))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for key in [k for k in state_dict if k.startswith(prefix + "ref_mean_")]:  # the extra scales' references
            self.register_buffer(key[len(prefix):], torch.empty_like(state_dict[key]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


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
        _check_maps(normal, self.in_channels, self.feat_hw)
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
        _check_maps(x, self.in_channels, self.feat_hw)
        return self.patch_distances(x).max(dim=1).values

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "memory"
        if key in state_dict:   # the memory's size is known only from the saved state
            self.memory = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
