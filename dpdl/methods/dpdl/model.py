"""DPDL as one pure torch module on feature maps (Sec. 4, Eq. 23); no backbone, no data, no training loop.

``DPDLModel(in_channels, feat_hw, cfg)`` holds the multi-Gaussian prototypes (Eq. 8; D = Cf·H·W, the
flattened feature map, Sec. 4.2) and the three heads (Eqs. 20–22).  ``losses(x, y)`` returns every term of
Eq. (23) by name; ``score(x)`` the inference score S = S_a + S_r − S_n.

Decisions (see also :mod:`dpdl.methods.dpdl.bridge`, :mod:`dpdl.methods.dpdl.heads`, :mod:`dpdl.methods.dpdl.prototypes`):

* ``dpl_scale="per_dim"`` (default; printed reading only) multiplies L^n_DPL and L^a_DPL by ε/D so they are
  O(1) next to the MIL losses (raw they are O(D/ε) ≈ 10⁸ at the paper's settings, and the backbone/adapter is
  shared by all terms, so Adam's per-parameter scale invariance does not help); ``"none"`` is the raw sum.
* DPL over a batch: L^n over its normal rows, L^a over its anomaly rows (0 when the batch has none, and
  likewise L^n = 0 without normal rows).
* DFL over the flattened features of the whole batch (U = N + M of the batch; 0 if U < 2).
* ``use_dpl=False`` ("no_dpl"): no DPL terms, and the prototypes stay at their VQ initialisation (M_r
  still uses them, detached, so no loss term updates them).
* M_n is trained on the normality target 1 − y (so that S = S_a + S_r − S_n is an anomaly score).
* With ``residual="plan"``, M_r at training time uses a sample of the plan, at evaluation time its most
  probable mean (``residual_sample``); ``"nearest"`` and the default ``"bridge"`` (the learnt plan's mean) are
  deterministic.

Readings of Eqs. (8)–(17) and (22) (named options of :class:`DPDLConfig`, each stored in the run record's
``dpdl_config``; issue 12 measured them on validation splits, see book/method.md):

* ``alpha_param``: ``"softmax"`` α = softmax(θ); ``"eps_scaled"`` α = softmax(θ/ε) (LightSB's log α/ε).
* ``bridge_input``: ``"raw"`` x; ``"unit"`` x̂ = x/‖x‖₂ (over D) before the bridge, the DPL terms, the VQ
  initialisation (Eq. 15) and the residual (then the potential is bounded: ‖x̂‖ = 1).
* ``dpl_loss``: ``"printed"`` Eqs. (16)–(17) as printed (LightSB's KL with µ_c as target samples; ×``dpl_scale``);
  ``"margin"`` L^n = mean d(x̂ⁿ), L^a = mean max(0, m + d̄ⁿ − d(x̂ᵃ)) with d = −2ε log φ1 + const
  (:func:`dpdl.methods.dpdl.bridge.dpl_margin_losses`); ``"bridge"`` DPL as a learnt Schrödinger bridge (LightSB): its own
  potential θ_ψp (``DPDLModel.potential``, a Gaussian mixture separate from the prototypes, VQ-initialised like them);
  L^n = ε·:func:`dpdl.methods.dpdl.bridge.sb_loss` from the normal features (source, detached) to the prototype means (target
  samples as Eq. 16 prints them, detached; uniform point masses, no α or σ) plus the margin losses on the transported
  features ψ_p(x) = E_plan[y|x] (:func:`dpdl.methods.dpdl.bridge.plan_mean`): the transported normals are drawn to the prototypes,
  the transported anomalies kept a margin beyond them (the "transport margin", bounded, in place of the printed L^a);
  the default (it ties ``"margin"`` on validation splits and runs the bridge, book/method.md).  All are multiplied by
  ``dpl_weight``.  θ_ψp is trained jointly by Eq. (23)'s total: the SB term, the transport margin (ψ_p is not
  detached from θ_ψp) and M_r's loss (through :meth:`DPDLModel.transport`); the SB term alone has the Schrödinger
  bridge between its source and target as its minimiser.
* ``residual``: ``"plan"`` (ψ_p(x) − µ_{c*})/σ_{c*} with ψ_p the plan's endpoint (collapses to x when c* is the
  plan's component); ``"nearest"`` (x̃ − µ_{c*})/σ_{c*}, c* = argmax_c N(x̃; µ_c, εσ_c), the residual against the
  nearest prototype (x̃ = x̂ rescaled by ‖x‖ when ``bridge_input="unit"``); ``"bridge"`` (ψ_p(x) − µ_{c*})/σ_{c*}
  with ψ_p(x) the learnt plan's mean (only with ``dpl_loss="bridge"``).
* ``log_sigma_bound`` b > 0: σ = exp(b tanh(θ_σ/b)) ∈ [e^−b, e^b] (0: unbounded).
* ``prototype_decay``: False exempts µ, log σ and α from the optimiser's weight decay
  (:meth:`DPDLModel.no_decay_parameters`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dpdl.methods.dpdl import bridge
from dpdl.methods.shared.mixture import diag_gaussian_log_density
from dpdl.methods.dpdl.dispersion import dispersion_loss
from dpdl.methods.dpdl.heads import NormalHead, TopKHead, prototype_residual
from dpdl.methods.shared.heads import deviation_loss
from dpdl.methods.dpdl.prototypes import MultiGaussianPrototypes, vq_codebook

__all__ = ["DPDLConfig", "DPDLModel", "check_finite", "LOSS_TERMS", "PAPER_DEFAULTS", "PRINTED_READING", "READINGS",
           "paper_lam", "paper_defaults", "LAMBDA_SMALL_DATASETS"]

LOSS_TERMS = ("ma", "mn", "mr", "dpl_n", "dpl_a", "dfl", "total")
BINARY_LOSSES = ("bce", "deviation")
_HEADS = ("n", "a", "r")
# λ of Eq. (23) per dataset (Sec. 5.7): "λ = 0.01 achieves optimal performance on seven larger-scale datasets, while
# λ = 1 yields the best results on two datasets with limited data" (BrainMRI and HeadCT). The paper prints no single λ.
LAMBDA_SMALL_DATASETS = ("brainmri", "headct")
LAMBDA_LARGE, LAMBDA_SMALL = 0.01, 1.0


def paper_lam(dataset: str | None) -> float:
    """The paper's λ for ``dataset`` (Sec. 5.7): 1 on BrainMRI and HeadCT, 0.01 on every other dataset."""
    return LAMBDA_SMALL if str(dataset or "").lower() in LAMBDA_SMALL_DATASETS else LAMBDA_LARGE


READINGS = {"alpha_param": ("softmax", "eps_scaled"), "bridge_input": ("raw", "unit"),
            "dpl_loss": ("printed", "margin", "bridge"), "residual": ("plan", "nearest", "bridge")}


@dataclass(frozen=True)
class DPDLConfig:
    """Hyper-parameters of the method (paper defaults: C = 32, ε = 10⁻³, κ = 10, Sec. 5.2; λ per dataset, Sec. 5.7:
    0.01 here, 1 on BrainMRI and HeadCT, see :func:`paper_lam`)."""

    prototypes: int = 32
    eps: float = 1e-3
    kappa: float = 10.0
    lam: float = LAMBDA_LARGE
    use_dpl: bool = True
    use_dfl: bool = True
    heads: tuple = ("n", "a", "r")
    topk_ratio: float = 0.1
    dpl_scale: str = "per_dim"
    binary_loss: str = "deviation"
    normal_hidden: int = 256
    residual_sample: bool = True
    vq_iters: int = 50
    alpha_init: str = "proportions"
    # the reading of Eqs. (8)-(17), (22) (issue 12; the module docstring and book/method.md give each equation);
    # PRINTED_READING below restores the code before issue 12
    alpha_param: str = "eps_scaled"
    bridge_input: str = "unit"
    dpl_loss: str = "bridge"        # the learnt bridge (issue 19): ties `margin` on validation, and runs Eqs. 11-13
    dpl_margin: float = 0.1
    dpl_weight: float = 1.0
    residual: str = "bridge"
    log_sigma_bound: float = 3.0
    prototype_decay: bool = False

    def __post_init__(self):
        heads = self.heads
        if isinstance(heads, str):
            heads = tuple(h.strip() for h in heads.split(",") if h.strip())
        heads = tuple(heads)
        if not heads or any(h not in _HEADS for h in heads) or len(set(heads)) != len(heads):
            raise ValueError(f"heads must be a non-empty subset of {{n, a, r}} without repeats, got {self.heads!r}")
        object.__setattr__(self, "heads", tuple(h for h in _HEADS if h in heads))
        if not (isinstance(self.prototypes, int) and self.prototypes >= 1):
            raise ValueError(f"prototypes must be an integer >= 1, got {self.prototypes!r}")
        if not (self.eps > 0 and math.isfinite(self.eps)):
            raise ValueError(f"eps must be a finite number > 0, got {self.eps!r}")
        if not (self.kappa >= 0 and math.isfinite(self.kappa)):
            raise ValueError(f"kappa must be a finite number >= 0, got {self.kappa!r}")
        if not (self.lam >= 0 and math.isfinite(self.lam)):
            raise ValueError(f"lam must be a finite number >= 0, got {self.lam!r}")
        if not (0 < self.topk_ratio <= 1):
            raise ValueError(f"topk_ratio must lie in (0, 1], got {self.topk_ratio!r}")
        if self.dpl_scale not in ("per_dim", "none"):
            raise ValueError(f"dpl_scale must be 'per_dim' or 'none', got {self.dpl_scale!r}")
        if self.binary_loss not in BINARY_LOSSES:
            raise ValueError(f"binary_loss must be one of {', '.join(BINARY_LOSSES)}, got {self.binary_loss!r}")
        if not (isinstance(self.normal_hidden, int) and self.normal_hidden >= 1):
            raise ValueError(f"normal_hidden must be an integer >= 1, got {self.normal_hidden!r}")
        if not (isinstance(self.vq_iters, int) and self.vq_iters >= 1):
            raise ValueError(f"vq_iters must be an integer >= 1, got {self.vq_iters!r}")
        if self.alpha_init not in ("proportions", "uniform"):
            raise ValueError(f"alpha_init must be 'proportions' or 'uniform', got {self.alpha_init!r}")
        for name, allowed in READINGS.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if (self.dpl_loss == "bridge") != (self.residual == "bridge"):
            raise ValueError(f"dpl_loss 'bridge' and residual 'bridge' go together (the learnt bridge ψ_p feeds M_r), "
                             f"got dpl_loss={self.dpl_loss!r}, residual={self.residual!r}")
        for name in ("dpl_margin", "dpl_weight", "log_sigma_bound"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")


# The readings as the paper prints them (the code before issue 12): unbounded L^a, no prototype in the test score.
PRINTED_READING = {"alpha_param": "softmax", "bridge_input": "raw", "dpl_loss": "printed", "residual": "plan",
                   "log_sigma_bound": 0.0, "prototype_decay": True}

# The paper's hyper-parameters (Sec. 5.2): the one place every other module (train, study, book, tables) reads.
# "lam" here is the value of the seven larger datasets; paper_defaults(dataset) gives a dataset's own (Sec. 5.7).
PAPER_DEFAULTS = {"prototypes": DPDLConfig.prototypes, "eps": DPDLConfig.eps, "kappa": DPDLConfig.kappa,
                  "lam": DPDLConfig.lam, "heads": ",".join(DPDLConfig.heads), "use_dpl": DPDLConfig.use_dpl,
                  "use_dfl": DPDLConfig.use_dfl}


def paper_defaults(dataset: str | None = None) -> dict:
    """PAPER_DEFAULTS with the paper's λ for ``dataset`` (:func:`paper_lam`): the "full" DPDL of that dataset."""
    return {**PAPER_DEFAULTS, "lam": paper_lam(dataset)}


def check_finite(terms: dict, step: int) -> None:
    """Raise FloatingPointError naming the step and the first non-finite loss term of ``terms``."""
    for name, value in terms.items():
        v = float(value.detach()) if isinstance(value, Tensor) else float(value)
        if not math.isfinite(v):
            raise FloatingPointError(f"step {step}: loss term '{name}' is not finite ({v})")


class DPDLModel(nn.Module):
    """DPDL on feature maps x (B, Cf, H, W): prototypes (Eq. 8), bridge (Eqs. 12–17), DFL (Eq. 19), heads (Eqs. 20–22)."""

    def __init__(self, in_channels: int, feat_hw: tuple[int, int], cfg: DPDLConfig | None = None):
        super().__init__()
        cfg = cfg or DPDLConfig()
        H, W = int(feat_hw[0]), int(feat_hw[1])
        if in_channels < 1 or H < 1 or W < 1:
            raise ValueError(f"in_channels and feat_hw must be positive, got {in_channels}, {feat_hw}")
        self.cfg = cfg
        self.in_channels, self.feat_hw = int(in_channels), (H, W)
        self.D = self.in_channels * H * W
        self.prototypes = MultiGaussianPrototypes(cfg.prototypes, self.D,
                                                  alpha_temperature=cfg.eps if cfg.alpha_param == "eps_scaled" else 1.0,
                                                  log_sigma_bound=cfg.log_sigma_bound)
        self.head_a = TopKHead(in_channels, cfg.topk_ratio) if "a" in cfg.heads else None
        self.head_n = NormalHead(in_channels, cfg.normal_hidden) if "n" in cfg.heads else None
        self.head_r = TopKHead(in_channels, cfg.topk_ratio) if "r" in cfg.heads else None
        self.potential = None                  # θ_ψp of Eq. (23): the bridge reading's own Gaussian-mixture potential
        if cfg.dpl_loss == "bridge":
            self.potential = MultiGaussianPrototypes(cfg.prototypes, self.D, log_sigma_bound=cfg.log_sigma_bound,
                                                     alpha_temperature=self.prototypes.alpha_temperature)
        if not cfg.use_dpl:
            self.prototypes.requires_grad_(False)
            if self.potential is not None:
                self.potential.requires_grad_(False)

    # ---------------------------------------------------------------- prototypes
    @torch.no_grad()
    def init_prototypes(self, normal_feats: Tensor, generator: torch.Generator | None = None):
        """Eq. (15): VQ codebook of the flattened normal features (N, Cf, H, W) → µ; σ = 1; α (see prototypes)."""
        self._check_x(normal_feats)
        cb = vq_codebook(self.to_bridge(normal_feats.flatten(1).float()), self.cfg.prototypes, iters=self.cfg.vq_iters,
                         generator=generator)
        self.prototypes.init_from_codebook(cb, alpha=self.cfg.alpha_init)
        if self.potential is not None:
            self.potential.init_from_codebook(cb, alpha=self.cfg.alpha_init)
        return cb

    def _proto_params(self):
        la, mu, sigma = self.prototypes.params()
        if not self.cfg.use_dpl:      # "no_dpl": frozen at the VQ initialisation
            la, mu, sigma = la.detach(), mu.detach(), sigma.detach()
        return la, mu, sigma

    def to_bridge(self, flat: Tensor) -> Tensor:
        """The bridge's input for flattened features (B, D): x, or x̂ = x/‖x‖₂ (``bridge_input="unit"``)."""
        return F.normalize(flat, dim=1, eps=1e-12) if self.cfg.bridge_input == "unit" else flat

    def no_decay_parameters(self) -> list:
        """Parameters the optimiser should not weight-decay: the prototypes (and the bridge's potential) when
        ``prototype_decay`` is False."""
        if self.cfg.prototype_decay:
            return []
        return list(self.prototypes.parameters()) + (list(self.potential.parameters()) if self.potential else [])

    def transport(self, xb: Tensor, potential: tuple | None = None) -> Tensor:
        """ψ_p(x̂) (B, D): the mean of the learnt plan of Eq. (13) under θ_ψp (reading ``dpl_loss="bridge"``;
        ``potential``: θ_ψp's ``params()`` when the caller has them)."""
        pl, pm, ps = potential if potential is not None else self.potential.params()
        return bridge.plan_mean(xb, pl, pm, ps, self.cfg.eps)

    def _require_init(self):
        if getattr(self, "_init_seen", False):   # checked once: reading the CUDA buffer is a host sync
            return
        if not bool(self.prototypes.initialised):
            raise RuntimeError("DPDLModel: call init_prototypes(normal_feats) before losses/score")
        self._init_seen = True

    def _check_x(self, x: Tensor):
        if x.ndim != 4 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != self.feat_hw:
            raise ValueError(f"expected feature maps of shape (B, {self.in_channels}, {self.feat_hw[0]}, "
                             f"{self.feat_hw[1]}), got {tuple(x.shape)}")

    # ---------------------------------------------------------------- heads
    def _shares_density(self) -> bool:
        """Whether the DPL terms' soft distances (``dpl_loss`` "margin"/"bridge") are of M_r's y (Eq. 22): then one
        (B, C) prototype density matrix serves both c* and the distances (y = x̂ for "nearest", ψ_p(x̂) for "bridge")."""
        cfg = self.cfg
        return cfg.use_dpl and (cfg.dpl_loss == "bridge" or (cfg.dpl_loss == "margin" and cfg.residual == "nearest"))

    def _shared(self, x: Tensor, sample: bool | None = None, generator: torch.Generator | None = None,
                residual: bool = True, density_grad: bool = False) -> dict:
        """What the heads and the DPL terms of one step share, each computed once: the prototype parameters, x̂, and
        (residual "nearest"/"bridge") y and its (B, C) float64 prototype log-densities (``density_grad``: differentiable,
        for the DPL soft distances; else under no_grad, for c* only), plus M_r's residual r (B, Cf, H, W), c_plan, c*."""
        self._require_init()
        cfg = self.cfg
        if sample is None:
            sample = self.training and cfg.residual_sample
        la, mu, sigma = self._proto_params()
        flat = x.flatten(1)
        xb = self.to_bridge(flat)
        out = {"flat": flat, "xb": xb, "params": (la, mu, sigma)}
        if cfg.residual in ("nearest", "bridge"):
            if cfg.residual == "bridge":
                out["potential"] = self.potential.params()
            y = self.transport(xb, out["potential"]) if cfg.residual == "bridge" else xb
            with torch.set_grad_enabled(density_grad and torch.is_grad_enabled()):
                dens = diag_gaussian_log_density(y, mu, sigma, cfg.eps)
            c_star = dens.detach().argmax(dim=1)
            out.update(y=y, density=dens, c_plan=c_star, c_star=c_star)
            if residual:
                out["r"] = (y - mu[c_star]) / sigma[c_star]
        elif residual:
            out["r"], out["c_plan"], out["c_star"] = prototype_residual(xb, la, mu, sigma, cfg.eps, sample=sample,
                                                                        generator=generator)
        if residual:
            r = out["r"]
            if cfg.bridge_input == "unit":       # back to the feature's scale, so M_r sees inputs like M_a's
                r = r * flat.norm(dim=1, keepdim=True)
            out["r"] = r.view_as(x)
        return out

    def residual(self, x: Tensor, sample: bool | None = None, generator: torch.Generator | None = None):
        """Eq. (22) input: (ψ_p(x) − µ_{c*})/σ_{c*} as (B, Cf, H, W), plus (c_plan, c_star)."""
        s = self._shared(x, sample, generator)
        return s["r"], s["c_plan"], s["c_star"]

    def head_logits(self, x: Tensor, shared: dict | None = None) -> dict[str, Tensor]:
        """Per-head image logits {"a": S_a, "n": S_n (normality), "r": S_r}, each (B,), enabled heads only
        (``shared``: :meth:`_shared` of x, when the caller has it)."""
        self._check_x(x)
        out = {}
        if self.head_n is not None:
            out["n"] = self.head_n(x)
        if self.head_a is not None:
            out["a"] = self.head_a(x)
        if self.head_r is not None:
            out["r"] = self.head_r((shared if shared is not None else self._shared(x))["r"])
        return out

    @staticmethod
    def combine(logits: dict[str, Tensor]) -> Tensor:
        """Inference score S = S_a + S_r − S_n over the enabled heads (Sec. 4.4)."""
        s = 0
        for name, v in logits.items():
            s = s - v if name == "n" else s + v
        return s

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """{"a", "n", "r" (enabled heads' logits, (B,)), "score": S (B,)}."""
        out = self.head_logits(x)
        out["score"] = self.combine(out)
        return out

    def score(self, x: Tensor) -> Tensor:
        """S = S_a + S_r − S_n (B,) with only the enabled heads; deterministic (plan mean for ψ_p)."""
        was = self.training
        self.eval()
        try:
            return self.combine(self.head_logits(x))
        finally:
            self.train(was)

    # ---------------------------------------------------------------- losses
    def _binary(self, logits: Tensor, target: Tensor) -> Tensor:
        """L_binary of Eqs. (20)–(22): BCE with logits, or DevNet's deviation loss (``cfg.binary_loss``)."""
        if self.cfg.binary_loss == "deviation":
            return deviation_loss(logits, target)
        return F.binary_cross_entropy_with_logits(logits, target)

    def losses(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Every term of Eq. (23) that is switched on, by name, plus "total".

        x (B, Cf, H, W), y (B,) in {0, 1} (1 = anomaly).  total = L_Ma + L_Mn + L_Mr + L^n_DPL + L^a_DPL
        + λ L_DFL; the DPL terms (reading ``dpl_loss``) are multiplied by ``dpl_weight``, and the printed ones also by
        ε/D (ε for unit inputs) when ``dpl_scale="per_dim"``.
        """
        self._check_x(x)
        y = y.to(x.dtype).reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        cfg = self.cfg
        share = self._shares_density()
        shared = (self._shared(x, residual=self.head_r is not None, density_grad=share)
                  if self.head_r is not None or share else None)
        logits = self.head_logits(x, shared)
        terms: dict[str, Tensor] = {}
        if "a" in logits:
            terms["ma"] = self._binary(logits["a"], y)                 # Eq. (20)
        if "n" in logits:
            terms["mn"] = self._binary(logits["n"], 1.0 - y)           # Eq. (21), normality target
        if "r" in logits:
            terms["mr"] = self._binary(logits["r"], y)                 # Eq. (22)
        flat = x.flatten(1)
        if cfg.use_dpl:
            self._require_init()
            la, mu, sigma = shared["params"] if shared is not None else self.prototypes.params()
            xb = shared["xb"] if shared is not None else self.to_bridge(flat)
            normal, anomal = y < 0.5, y >= 0.5
            zero = flat.sum() * 0.0
            scale = cfg.dpl_weight
            if share:        # "margin" (y = x̂) and "bridge" (y = ψ_p(x̂)): distances from M_r's density matrix
                d = bridge.soft_distance_from_components(shared["density"], la, cfg.eps, self.D).to(x.dtype)
                ln, la_ = bridge.margin_terms(d[normal], d[anomal], cfg.dpl_margin)
                if cfg.dpl_loss == "bridge" and ln is not None:
                    ln = self._sb_term(xb[normal], mu, shared["potential"]) + ln
            elif cfg.dpl_loss == "margin":
                ln, la_ = bridge.dpl_margin_losses(xb[normal], xb[anomal], la, mu, sigma, cfg.eps, cfg.dpl_margin)
            else:
                per_dim = cfg.eps / (1.0 if cfg.bridge_input == "unit" else self.D)
                scale = cfg.dpl_weight * (per_dim if cfg.dpl_scale == "per_dim" else 1.0)
                ln, la_ = bridge.dpl_losses(xb[normal], xb[anomal], la, mu, sigma, cfg.eps)
            terms["dpl_n"] = scale * ln if ln is not None else zero     # Eq. (16)
            terms["dpl_a"] = scale * la_ if la_ is not None else zero   # Eq. (17)
        if cfg.use_dfl:
            terms["dfl"] = dispersion_loss(flat, cfg.kappa) if x.shape[0] >= 2 else flat.sum() * 0.0  # Eq. (19)
        total = 0
        for name, v in terms.items():
            total = total + (cfg.lam * v if name == "dfl" else v)
        terms["total"] = total                                          # Eq. (23)
        return terms

    def _sb_term(self, xn: Tensor, mu: Tensor, potential: tuple) -> Tensor:
        """The SB part of the reading ``dpl_loss="bridge"``'s L^n: ε·(sb_loss(θ_ψp; x̂ⁿ detached → µ_c detached) + const).

        L^n = this + mean d(ψ_p(x̂ⁿ)) and L^a = mean max(0, m + d̄ⁿ − d(ψ_p(x̂ᵃ))) (the transport margin, bounded, in
        place of the printed L^a), d the soft distance to the prototypes (:func:`dpdl.methods.dpdl.bridge.margin_terms`,
        computed in :meth:`losses` from M_r's density matrix of ψ_p(x̂)).  Eq. (16)'s LightSB objective with the
        bridge's own potential θ_ψp and the prototype means as the (fixed) target samples, as Eq. (16) prints them (a
        sample of N(µ_c, εσ_c) would lie far off the unit sphere: its noise has ‖·‖² ≈ εD ≈ 6 at D = 6272, against
        ‖µ_c‖² ≤ 1); then the transported normals draw the prototypes (and the features) together.  Only the SB
        term's inputs are detached: the margin terms reach θ_ψp through ψ_p, so θ_ψp is trained by the whole of
        Eq. (23), not by the SB term alone.
        """
        cfg, (pl, pm, ps) = self.cfg, potential
        const = -0.5 * xn.shape[1] * math.log(2.0 * math.pi * cfg.eps)   # log N(·)'s constant, as in d: O(1)
        return cfg.eps * (bridge.sb_loss(xn.detach(), mu.detach(), pl, pm, ps, cfg.eps) + const)

    check_finite = staticmethod(check_finite)
