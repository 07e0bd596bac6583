"""DRA (Ding et al., CVPR 2022), re-run under our protocol; written from ../shared/protocol.md and a reading of its
public code (Choubo/DRA); no code is copied.

* **DRA** (Ding et al., CVPR 2022): four heads on the same map, each trained with the deviation loss and
  summed:
  - holistic (GAP -> Linear(C, 256) -> ReLU -> Linear(256, 1) -> |.|), target "normal" (y == 0), all rows;
  - seen (plain head), on the normal and seen-anomaly rows (y != 2), target y != 0;
  - pseudo (plain head), on the normal and pseudo-anomaly rows (y != 1), target y != 0;
  - composite: (mean of the reference normals' maps - x) -> 3x3 conv -> BN -> ReLU -> plain head, all rows,
    target y != 0. Training batches carry ``n_reference = 5`` reference normals (y = -1), as DRA prepends 5.
  Score: -holistic + seen + pseudo + composite (DRA's test, no normalisation).
* **The composite head's reference at test** (``DRAConfig.reference``). DRA's code (train.py ``eval``) draws
  ``nRef = 5`` rows from its reference loader for every test batch: training normals through the training
  transform, so each is turned by RandomRotation(180), and each is, with probability 1/2, replaced by a CutMix
  pseudo anomaly of a random training normal (datasets/mvtecad.py ``__getitem__``, label 2).
  - ``"fixed"`` (default): 5 clean (unrotated, never pseudo) training normals drawn once per run with the seed
    (``dpdl.modes._reference_rows``) and fixed (``calibrate``).
  - ``"code"``: the code's draw, once per test image: a generator seeded by the image's map (a hash of its bytes),
    so the score is deterministic and does not depend on the other images of its batch, draws 5 distinct training
    normals; each is replaced with probability 1/2 by a cached pseudo anomaly (CutMix variant) of a training normal
    drawn uniformly. The maps are the cached ones (feature mode): no rotated map is cached, so the references are
    **not rotated** (the code rotates them). ``calibrate(normal, pseudo)`` takes the pool (all training normals and
    their cached pseudo maps, variant-major); image mode (``paper``) refuses the option. The pool is not saved
    with the model: a reloaded model must be calibrated again.
  Measured on validation splits: book/baselines.md (``benchmarks/bench_dra_reference.py``).
* **Two scales** (DevNet and DRA, ``multiscale = True``): given a list of maps, one per input scale (dpdl.net.Net
  with the profile's ``scales``; DRA's code: 448 and 224), each head's score is the mean of its scores over the
  scales, in the losses and in the score; the composite head uses the reference mean of its own scale.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dpdl.methods.base import MethodMixin, mean_over, scale_list
from dpdl.methods.devnet import DevNetConfig
from dpdl.methods.shared.heads import PlainHead, deviation_loss


@dataclass(frozen=True)
class DRAConfig(DevNetConfig):
    n_reference: int = 5
    hidden: int = 256
    reference: str = "fixed"        # the composite head's test reference: "fixed" per run, or "code" per test image
    pseudo_share: float = 0.5       # "code": the chance that a reference row is a pseudo anomaly (DRA's randint(0, 1))

    def __post_init__(self):
        super().__post_init__()
        if not (isinstance(self.n_reference, int) and self.n_reference >= 1):
            raise ValueError(f"n_reference must be an integer >= 1, got {self.n_reference!r}")
        if self.reference not in ("fixed", "code"):
            raise ValueError(f"reference must be 'fixed' or 'code', got {self.reference!r}")
        if not (isinstance(self.pseudo_share, (int, float)) and 0.0 <= self.pseudo_share <= 1.0):
            raise ValueError(f"pseudo_share must be a number in [0, 1], got {self.pseudo_share!r}")


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
        """x (B, C, H, W); ref_mean (C, H, W), one reference for all rows, or (B, C, H, W), one per row."""
        return self.plain(self.conv((ref_mean if ref_mean.dim() == 4 else ref_mean.unsqueeze(0)) - x))


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

    @property
    def reference_pool(self) -> bool:
        """True when the test references are drawn per image (``reference="code"``): the run then calibrates with
        the pool, ``calibrate(normal, pseudo)``, not with n_reference fixed normals."""
        return self.cfg.reference == "code"

    def calibrate(self, normal, pseudo: Tensor | None = None) -> None:
        """The composite head's reference at test. ``"fixed"``: the mean map of ``normal`` (n_reference, C, H, W),
        or of each scale's maps when given a list (the extra scales' references are the buffers ``ref_mean_1``, ...).
        ``"code"``: the pool of one scale, ``normal`` (N, C, H, W) the training normals and ``pseudo`` (V·N, C, H, W)
        their cached pseudo maps, variant-major (row v·N + i: variant v of normal i); kept, not saved."""
        if self.reference_pool:
            if isinstance(normal, (list, tuple)) or normal.dim() != 4 or len(normal) < self.n_reference:
                raise ValueError(f"DRA reference='code' needs one scale of at least {self.n_reference} training "
                                 "normal maps (N, C, H, W)")
            if pseudo is None or len(pseudo) == 0 or len(pseudo) % len(normal):
                raise ValueError("DRA reference='code' needs the cached pseudo maps of the training normals (a "
                                 "profile with pseudo_per_image >= 1), V per normal, variant-major")
            self._pool = (normal.float(), pseudo.float().reshape(-1, *normal.shape))
            return
        ns = scale_list(normal, self.in_channels, self.feat_hw)
        self.ref_mean.copy_(ns[0].float().mean(dim=0))
        for i, m in enumerate(ns[1:], start=1):
            self.register_buffer(f"ref_mean_{i}", m.float().mean(dim=0))

    def ref_means(self, n: int) -> list[Tensor]:
        """The test references of ``n`` scales (calibrate first)."""
        refs = [self.ref_mean] + [getattr(self, f"ref_mean_{i}", None) for i in range(1, n)]
        if any(r is None for r in refs):
            raise RuntimeError(f"DRA: calibrate with maps of all {n} scales before scoring")
        return refs

    def code_references(self, x: Tensor) -> Tensor:
        """Reference means (B, C, H, W) drawn as DRA's code draws its references, one draw per row of x
        (B, C, H, W): a generator seeded by a hash of the row's bytes, so a row's reference depends on that row
        only. Each draw: n_reference distinct training normals, each replaced with probability ``pseudo_share`` by
        the cached pseudo map (variant uniform) of a training normal drawn uniformly; not rotated."""
        pool = getattr(self, "_pool", None)
        if pool is None:
            raise RuntimeError("DRA reference='code': calibrate with the training normals and their pseudo maps "
                               "before scoring")
        normal, pseudo = pool
        n, k, v = len(normal), self.n_reference, len(pseudo)
        rows = x.detach().float().cpu().contiguous()
        out = []
        for r in rows:
            seed = int.from_bytes(hashlib.blake2b(r.numpy().tobytes(), digest_size=8).digest(), "little")
            g = torch.Generator().manual_seed(seed & ((1 << 63) - 1))
            idx = torch.randperm(n, generator=g)[:k]
            turn = torch.rand(k, generator=g) < self.cfg.pseudo_share
            src = torch.randint(0, n, (k,), generator=g)
            var = torch.randint(0, v, (k,), generator=g)
            maps = torch.where(turn.view(k, 1, 1, 1), pseudo[var, src], normal[idx])
            out.append(maps.mean(dim=0))
        return torch.stack(out).to(x.device, x.dtype)

    def head_scores(self, x, ref_mean) -> dict[str, Tensor]:
        """{"holistic", "seen", "pseudo", "composite"}: each (B,), averaged over the scales of x (one map or a list;
        ``ref_mean`` one (C, H, W) reference per scale)."""
        xs = scale_list(x, self.in_channels, self.feat_hw)
        refs = list(ref_mean) if isinstance(ref_mean, (list, tuple)) else [ref_mean]
        composite = [self.composite(m, r) for m, r in zip(xs, refs)]
        return {"holistic": mean_over(self.holistic, xs), "seen": mean_over(self.seen, xs),
                "pseudo": mean_over(self.pseudo, xs),
                "composite": composite[0] if len(xs) == 1 else torch.stack(composite).mean(dim=0)}

    def losses(self, x, y: Tensor) -> dict[str, Tensor]:
        xs = scale_list(x, self.in_channels, self.feat_hw)
        is_ref, keep = y < 0, y >= 0
        if not bool(is_ref.any()):
            raise ValueError("DRA's training batch needs reference normal rows (label -1)")
        refs = [m[is_ref].mean(dim=0) for m in xs]
        xs, y = [m[keep] for m in xs], y[keep]
        anomal = (y != 0).to(xs[0].dtype)
        composite = [self.composite(m, r) for m, r in zip(xs, refs)]
        terms = {"holistic": deviation_loss(mean_over(self.holistic, xs), (y == 0).to(xs[0].dtype)),
                 "seen": deviation_loss(mean_over(self.seen, xs, y != 2), anomal[y != 2]),
                 "pseudo": deviation_loss(mean_over(self.pseudo, xs, y != 1), anomal[y != 1]),
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
        if self.reference_pool:
            if n != 1:
                raise ValueError("DRA reference='code' scores one scale of maps (feature mode)")
            return self.combine(self.head_scores(x, self.code_references(x)))
        return self.combine(self.head_scores(x, self.ref_means(n)))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for key in [k for k in state_dict if k.startswith(prefix + "ref_mean_")]:  # the extra scales' references
            self.register_buffer(key[len(prefix):], torch.empty_like(state_dict[key]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
