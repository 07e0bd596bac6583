"""ArcAD (Han et al., "Anomaly-Rectified Calibration for Cold-Start Supervised Anomaly Detection") and its base.

* :class:`ArcADBase` (registry name ``arcad_base``): the RD4AD-style reconstruction base alone (Eq. 1; the three λ
  of Eq. 10 at 0), trained on the training normals only (``unsupervised = True``). Score: the reconstruction error
  (Sec. 3.4; dpdl.methods.arcad.base).
* :class:`ArcAD` (``arcad``): the base plus SPM (Eqs. 2-4), DGC (Eqs. 5-8) and the discriminator (Eq. 9) on the
  bottleneck's tokens, total Eq. (10) with λ1 = λ2 = λ3 = 0.1; supervised (the M seen anomalies; the profile's
  batch). The score is the base's: the discriminator and the prototypes are not used at test.

Gradient routing (Sec. 3.4): the decoder sees only L_recon of the normal rows (anomaly rows are decoded without a
graph, for Eq. 7's reading), the discriminator only L_cls; the bottleneck all four terms. One optimiser (dpdl.train),
so the discriminator's steps scale with λ3 (Adam(W) is invariant to that scale up to its ε). The bottleneck runs
once on the normal and anomaly rows together (its BN batch statistics see both, as ArcAD's code's single forward);
at test it uses its running statistics, so a score does not depend on the other images of its batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dpdl.methods.base import MethodMixin, check_maps
from dpdl.methods.shared.sphere import to_sphere
from . import calibration as cal
from .base import Bottleneck, Decoder, cosine_error_map, image_score, recon_loss, tap_split

_CHOICES = {"push": ("linear", "relu"), "disc_inputs": ("text", "code"), "proto_init": ("kmeans", "kmeans_separate"),
            "anomaly_tokens": ("all", "topk_error"), "cutmix_rows": ("ignore", "anomaly")}


def _int_at_least(obj, name: str, low: int) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _positive(obj, name: str, allow_zero: bool = False) -> None:
    value = getattr(obj, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and value < float("inf")
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")


@dataclass(frozen=True)
class ArcADBaseConfig:
    taps: str = "auto"          # each tap's channels joined by "+", or "auto" (dpdl.methods.arcad.base.tap_split)
    hidden: int = 64            # channels of each tap's projection and of the decoder
    dim: int = 64               # D: channels of the bottleneck's tokens

    def __post_init__(self):
        if self.taps != "auto" and not (isinstance(self.taps, str) and all(
                p.strip().isdigit() and int(p) > 0 for p in self.taps.split("+"))):
            raise ValueError(f"taps must be 'auto' or positive channel counts joined by '+', got {self.taps!r}")
        _int_at_least(self, "hidden", 1)
        _int_at_least(self, "dim", 2)


@dataclass(frozen=True)
class ArcADConfig(ArcADBaseConfig):
    lam_spm: float = 0.1        # λ1 of Eq. (10)
    lam_dgc: float = 0.1        # λ2
    lam_cls: float = 0.1        # λ3
    prototypes: int = 500       # K (Fig. 5: 500)
    sinkhorn_eps: float = 0.05  # ε of Eq. (3)
    sinkhorn_iters: int = 3     # Sinkhorn-Knopp iterations (text: 3)
    tau: float = 0.1            # τ = 1/κ of Eq. (4)
    ema: float = 0.99           # prototype EMA momentum (M-step)
    sigma: float = 0.015        # σ of Eq. (5)
    n_cand: int = 5             # candidates per anchor (text: 5; code: 50)
    push: str = "linear"        # Eq. (8)'s push: "linear" (text) or "relu" (code: ReLU(max sim))
    disc_inputs: str = "text"   # Eq. (9): "text" (one mean over Z ∪ A_syn ∪ Â) or "code" (normal/syn halves + all
    #                             tokens of the anomaly images)
    proto_init: str = "kmeans"  # "kmeans" (text: spherical k-means on the bottleneck's own tokens of the training
    #                             normals) or "kmeans_separate" (code: on a separately initialised bottleneck)
    anomaly_tokens: str = "all"  # Eq. (7) without masks: "all" (every token of a seen anomaly image) or "topk_error"
    #                              (its tokens of highest reconstruction error); "all" had the higher validation AUC
    #                              (benchmarks/bench_related_arcad.py; within the seed spread)
    anomaly_topk: float = 0.1   # share of an anomaly image's positions that "topk_error" keeps (at least one)
    cutmix_rows: str = "ignore"  # the batch's CutMix pseudo-anomaly rows (y = 2): "ignore" (ArcAD makes its own,
    #                              Eqs. 5-6) or "anomaly" (read as seen anomaly images for Eq. 7)
    focal_alpha: float = 0.25   # α of the focal loss (Lin et al.'s default; ArcAD's code: 0.75); < 0: none
    focal_gamma: float = 2.0    # γ of the focal loss

    def __post_init__(self):
        super().__post_init__()
        for name in ("lam_spm", "lam_dgc", "lam_cls", "sigma", "focal_gamma"):
            _positive(self, name, allow_zero=True)
        for name in ("sinkhorn_eps", "tau"):
            _positive(self, name)
        for name, low in (("prototypes", 1), ("sinkhorn_iters", 1), ("n_cand", 1)):
            _int_at_least(self, name, low)
        if not (isinstance(self.ema, (int, float)) and 0 <= self.ema < 1):
            raise ValueError(f"ema must be a number in [0, 1), got {self.ema!r}")
        if not (isinstance(self.anomaly_topk, (int, float)) and 0 < self.anomaly_topk <= 1):
            raise ValueError(f"anomaly_topk must be a number in (0, 1], got {self.anomaly_topk!r}")
        if not (isinstance(self.focal_alpha, (int, float)) and self.focal_alpha <= 1):
            raise ValueError(f"focal_alpha must be a number <= 1 (< 0: no weighting), got {self.focal_alpha!r}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")


def token_rows(z: Tensor) -> Tensor:
    """Tokens (B, D, H, W) -> rows (B·H·W, D), image-major (the N_p = H x W patch embeddings of Sec. 3.2)."""
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


class ArcADBase(MethodMixin, nn.Module):
    """The reconstruction base (Eq. 1): x (B, C, H, W) -> tokens z = B(x) (B, D, H, W) -> each tap rebuilt by D.
    Trained on normals only; score max_p mean_t (1 − cos) (Sec. 3.4)."""

    uses_adapter = False        # the raw frozen taps are the encoder's features E(x)
    unsupervised = True
    # ArcAD's training (Sec. 4.1): AdamW lr 2e-3, betas (0.9, 0.999), weight decay 1e-4, 10,000 iterations (its
    # code: batch 16); the encoder frozen (a reverse-distillation base needs a fixed target).
    protocol = {"optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-4, "finetune_backbone": False,
                "epochs": 50, "iters_per_epoch": 200, "batch_size": 16}

    def __init__(self, in_channels: int, feat_hw: tuple[int, int], cfg: ArcADBaseConfig | None = None):
        super().__init__()
        self.cfg, self.in_channels, self.feat_hw = cfg or ArcADBaseConfig(), int(in_channels), tuple(feat_hw)
        self.split = tap_split(self.in_channels, self.cfg.taps)
        self.bottleneck = Bottleneck(self.split, self.cfg.hidden, self.cfg.dim)
        self.decoder = Decoder(self.split, self.cfg.hidden, self.cfg.dim)

    def error_map(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        """(B, T, H, W): 1 − cos per tap and position between x's taps and their reconstruction from z = B(x)."""
        z = self.bottleneck(x) if z is None else z
        return cosine_error_map(x.float(), self.decoder(z), self.split)

    def losses(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        check_maps(x, self.in_channels, self.feat_hw)
        normal = x[y == 0]
        if len(normal) == 0:
            raise ValueError("ArcAD's training batch needs normal rows (label 0)")
        loss = recon_loss(self.error_map(normal))
        return {"recon": loss, "total": loss}

    def score(self, x: Tensor) -> Tensor:
        check_maps(x, self.in_channels, self.feat_hw)
        return image_score(self.error_map(x))


class ArcAD(ArcADBase):
    """ArcAD on the base: SPM, DGC and the discriminator on the bottleneck's tokens; Eq. (10)."""

    unsupervised = False

    def __init__(self, in_channels: int, feat_hw: tuple[int, int], cfg: ArcADConfig | None = None):
        cfg = cfg or ArcADConfig()
        super().__init__(in_channels, feat_hw, cfg)
        self.discriminator = cal.Discriminator(cfg.dim)
        self.register_buffer("prototypes", torch.zeros(cfg.prototypes, cfg.dim))

    @torch.no_grad()
    def init(self, normal: Tensor, generator: torch.Generator | None = None) -> None:
        """Prototypes (Sec. 3.2): spherical k-means of the training normals' bottleneck tokens (train-mode BN, as
        in training; at most 512 images, drawn with ``generator``); ``proto_init="kmeans_separate"``: the tokens
        of a separately initialised bottleneck (ArcAD's code)."""
        check_maps(normal, self.in_channels, self.feat_hw)
        gen = generator or torch.Generator().manual_seed(0)
        rows = torch.randperm(len(normal), generator=gen)[:512].sort().values
        net = self.bottleneck
        if self.cfg.proto_init == "kmeans_separate":
            state = torch.random.get_rng_state()
            torch.manual_seed(int(torch.randint(2 ** 31 - 1, (1,), generator=gen)))
            net = Bottleneck(self.split, self.cfg.hidden, self.cfg.dim).to(self.prototypes.device)
            torch.random.set_rng_state(state)
        was = net.training
        net.train()
        z = torch.cat([to_sphere(token_rows(net(normal[rows[s:s + 128]].to(self.prototypes.device).float())))
                       for s in range(0, len(rows), 128)])
        net.train(was)
        self.prototypes = cal.spherical_kmeans(z, self.cfg.prototypes, generator=gen)

    def _anomaly_tokens(self, z_anom: Tensor, x_anom: Tensor) -> Tensor:
        """Eq. (7)'s Â (unit rows) from the anomaly images' tokens under the named reading (anomaly_tokens)."""
        if self.cfg.anomaly_tokens == "all":
            return to_sphere(token_rows(z_anom))
        with torch.no_grad():       # the decoder learns from normal rows only (Sec. 3.4)
            err = self.error_map(x_anom, z_anom.detach()).mean(dim=1)
        return to_sphere(cal.topk_error_tokens(z_anom, err, self.cfg.anomaly_topk))

    def losses(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        check_maps(x, self.in_channels, self.feat_hw)
        cfg = self.cfg
        is_anom = (y == 1) | ((y == 2) if cfg.cutmix_rows == "anomaly" else torch.zeros_like(y, dtype=torch.bool))
        keep = (y == 0) | is_anom
        x, is_anom = x[keep], is_anom[keep]
        if not bool((~is_anom).any()):
            raise ValueError("ArcAD's training batch needs normal rows (label 0)")
        z = self.bottleneck(x.float())                                            # Eq. (1): B(E(x))
        terms = {"recon": recon_loss(self.error_map(x[~is_anom], z[~is_anom]))}
        zn = to_sphere(token_rows(z[~is_anom]))                           # Eq. (2): normal tokens ẑ
        mu = self.prototypes
        sim = zn @ mu.T
        q = cal.sinkhorn_assign(sim.detach(), cfg.sinkhorn_eps, cfg.sinkhorn_iters)   # Eq. (3)
        terms["spm"] = cal.spm_loss(sim, q, cfg.tau)                              # Eq. (4)
        syn = cal.synthesize(zn, mu, cfg.sigma, cfg.n_cand)                       # Eqs. (5)-(6)
        if bool(is_anom.any()):
            a_hat = self._anomaly_tokens(z[is_anom], x[is_anom])                  # Eq. (7)
            terms["dgc"] = cal.dgc_loss(a_hat, mu, syn.detach(), cfg.push)        # Eq. (8)
        else:
            a_hat = zn[:0]
            terms["dgc"] = zn.new_zeros(())
        terms["cls"] = self._cls_loss(zn, syn, a_hat, z[is_anom])                # Eq. (9)
        terms["total"] = (terms["recon"] + cfg.lam_spm * terms["spm"] + cfg.lam_dgc * terms["dgc"]
                          + cfg.lam_cls * terms["cls"])                            # Eq. (10)
        if self.training:                                                          # the M-step (EMA)
            self.prototypes = cal.ema_prototypes(mu, zn.detach(), q, cfg.ema)
        return terms

    def _cls_loss(self, zn: Tensor, syn: Tensor, a_hat: Tensor, z_anom: Tensor) -> Tensor:
        """Eq. (9): the focal loss of f_disc on normal tokens (y = 0), pseudo anomalies and anomaly tokens (y = 1).
        "text": one mean over Z ∪ A_syn ∪ Â; "code": (mean over Z + mean over A_syn)/2 + mean over every token of
        the anomaly images (ArcAD's code)."""
        cfg, f = self.cfg, self.discriminator
        fl = lambda e, t: cal.focal_loss(f(e), torch.full((len(e),), float(t), device=e.device),  # noqa: E731
                                         cfg.focal_alpha, cfg.focal_gamma)
        if cfg.disc_inputs == "text":
            e = torch.cat([zn, syn, a_hat])
            t = torch.cat([zn.new_zeros(len(zn)), zn.new_ones(len(syn) + len(a_hat))])
            return cal.focal_loss(f(e), t, cfg.focal_alpha, cfg.focal_gamma)
        loss = 0.5 * (fl(zn, 0) + fl(syn, 1))
        if len(z_anom):
            loss = loss + fl(to_sphere(token_rows(z_anom)), 1)
        return loss
