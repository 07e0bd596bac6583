"""VPDM (Li et al., ICML 2024), "Vague Prototype-Oriented Diffusion Model", on our cached frozen backbone maps.

No public code exists; written from the paper (../shared/papers/002) with its errata corrected
(:mod:`.schedule`, :mod:`.vpot`). Trained on normals only (``unsupervised``), on the raw maps (no adapter).

* Maps are standardised per channel with the training normals' mean and deviation (``standardize``; the paper
  works on raw EfficientNet maps, whose scale is not that of the unit noise N(ŷ, I) of Eq. 12).
* Training (Alg. 1, Eq. 17): ŷ, L_OT = VPOT(x^0) (Eqs. 7-12, one plan per batch); t ~ U{1..T}; ε ~ N(0, I);
  x^t by Eq. (14); L_ELBO (Eq. 16) in DDPM's simplified form, mean ‖ε − ε_θ(x^t, ŷ, t)‖² (the KL terms for t ≥ 2
  and L_0 reweighted to 1 as Ho et al.), plus the prior term KL(q(x^T | x^0, ŷ) ‖ N(ŷ, I)) per element;
  total = L_ELBO + L_OT.
* Generation (Alg. 2): x^T = ŷ + z, then ``"ancestral"`` (Alg. 2, all T steps) or ``"ddim"`` (DDIM on
  u = x − ŷ, ``steps`` steps, ``eta``), the same trained ε_θ; x̂^0 clipped to the training normals' per-channel
  range (``clip``; DDPM's code clips x̂^0 to the pixel range; unclipped, a weak ε_θ's error is amplified by
  1/√α^T ≈ 157 at the first step).
* Score (Sec. 3.4): S = ‖x^0 − x^0_rec‖₂ over channels (H, W), average-pooled (``pool`` x ``pool``, stride 1),
  its maximum.
* Determinism and independence at test: each test image shares its OT plan with ``pair`` fixed training normals
  drawn with the seed at ``init`` (:meth:`VPOT.paired`); every noise z is fixed (seeded by ``noise_seed`` and the
  step, the same for every image), so a score never depends on the other test images or on the batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dpdl.methods.base import MethodMixin, check_maps
from dpdl.methods.vpdm.denoiser import Denoiser
from dpdl.methods.vpdm.schedule import (ancestral_step, ddim_step, ddim_steps, linear_schedule, q_sample)
from dpdl.methods.vpdm.vpot import VPOT

_CHOICES = {"denoiser": ("conv", "mlp"), "sampler": ("ddim", "ancestral"), "proto_init": ("data", "random"),
            "start": ("noise", "mean")}
_INTS = {"prototypes": 1, "down": 1, "ot_iters": 1, "T": 1, "hidden": 8, "blocks": 0, "steps": 1, "pair": 0,
         "pool": 1, "noise_seed": 0, "chunk": 1}


@dataclass(frozen=True)
class VPDMConfig:
    prototypes: int = 50          # K (Sec. 4.1: 50)
    down: int = 4                 # T_down's multiplier N (Sec. 4.1: 4)
    ot_eps: float = 1.0           # the entropy weight of Eq. (11) (the text: 1)
    ot_iters: int = 100           # Sinkhorn iterations (fixed count: deterministic)
    T: int = 1000                 # diffusion steps (Sec. 4.1: 1000)
    beta_1: float = 1e-4          # linear schedule (Sec. 4.1)
    beta_T: float = 0.02
    denoiser: str = "mlp"         # the paper gives none: "mlp" (1x1 residual) or "conv" (3x3), see denoiser.py
    hidden: int = 64
    blocks: int = 2
    sampler: str = "ddim"         # "ddim" (on u = x − ŷ, deterministic with eta 0) or "ancestral" (Alg. 2, T steps)
    steps: int = 10               # DDIM steps
    eta: float = 0.0              # DDIM η (0: deterministic given x^T)
    clip: bool = True             # clip x̂^0 to the training normals' per-channel range (DDPM's code clips to pixels)
    start: str = "noise"          # x^T of Alg. 2: "noise" ŷ + z (z fixed, seeded) or "mean" ŷ (the mode of Eq. 12)
    pair: int = 47                # fixed training normals sharing each test image's plan (47: a plan of 48 rows)
    pool: int = 3                 # the score's average pooling (Sec. 3.4)
    standardize: bool = True      # maps standardised per channel with the training normals' statistics
    proto_init: str = "data"      # "data": K random training normals' vague maps; "random": N(0, 1) (the text)
    noise_seed: int = 0           # the fixed sampling noise
    chunk: int = 256              # test images per scoring block (memory only; scores do not depend on it)

    def __post_init__(self):
        for name, low in _INTS.items():
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= low):
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not (isinstance(self.ot_eps, (int, float)) and self.ot_eps > 0):
            raise ValueError(f"ot_eps must be a number > 0, got {self.ot_eps!r}")
        if not (0 < self.beta_1 <= self.beta_T < 1):
            raise ValueError(f"beta_1 and beta_T must satisfy 0 < beta_1 <= beta_T < 1, got {self.beta_1!r}, "
                             f"{self.beta_T!r}")
        if not 0 <= self.eta <= 1:
            raise ValueError(f"eta must lie in [0, 1], got {self.eta!r}")
        if self.steps > self.T:
            raise ValueError(f"steps must be at most T = {self.T}, got {self.steps!r}")
        if not (isinstance(self.standardize, bool) and isinstance(self.clip, bool)):
            raise ValueError(f"standardize and clip must be true or false, got {self.standardize!r}, {self.clip!r}")


class VPDM(MethodMixin, nn.Module):
    """VPOT prototypes + a prototype-conditioned diffusion on (standardised) maps (B, C, H, W)."""

    uses_adapter = False
    unsupervised = True
    # Appendix D: Adam, lr 1e-3, batch 32, T = 1000, linear β 1e-4..0.02, K = 50, N = 4 (the config's defaults).
    # The number of epochs is not given (the profile's stays).
    protocol = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "batch_size": 32}

    def __init__(self, in_channels: int, feat_hw: tuple[int, int], cfg: VPDMConfig | None = None):
        super().__init__()
        self.cfg, self.in_channels, self.feat_hw = cfg or VPDMConfig(), in_channels, tuple(feat_hw)
        c = self.cfg
        self.sched = linear_schedule(c.T, c.beta_1, c.beta_T)
        self.vpot = VPOT(in_channels, self.feat_hw, c.prototypes, c.down, c.ot_eps, c.ot_iters)
        self.eps_model = Denoiser(in_channels, c.hidden, c.blocks, c.denoiser)
        self.register_buffer("mean", torch.zeros(1, in_channels, 1, 1))
        self.register_buffer("std", torch.ones(1, in_channels, 1, 1))
        self.register_buffer("lo", torch.full((1, in_channels, 1, 1), -1e4))   # the normals' range (standardised)
        self.register_buffer("hi", torch.full((1, in_channels, 1, 1), 1e4))
        self.register_buffer("partners", torch.zeros(c.pair, in_channels, *self.feat_hw))

    # ------------------------------------------------------------------------------------------------- set-up
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "partners"
        if key in state_dict:   # the number of partners is known from the saved state
            self.partners = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def init(self, normal: Tensor, generator: torch.Generator | None = None) -> None:
        """From the training normals (N, C, H, W): the standardisation, the prototypes' start, and the ``pair``
        fixed partners of test-time OT (distinct normals drawn with ``generator``)."""
        check_maps(normal, self.in_channels, self.feat_hw)
        normal = normal.float()
        if self.cfg.standardize:
            self.mean.copy_(normal.mean(dim=(0, 2, 3), keepdim=True))
            self.std.copy_(normal.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6))
        z = self.standardise(normal)
        self.lo.copy_(z.amin(dim=(0, 2, 3), keepdim=True))
        self.hi.copy_(z.amax(dim=(0, 2, 3), keepdim=True))
        if self.cfg.proto_init == "data":
            self.vpot.init_prototypes(z, generator)
        else:
            self.vpot.prototypes.copy_(torch.randn(self.vpot.prototypes.shape, generator=generator))
        self.draw_partners(normal, generator)

    @torch.no_grad()
    def draw_partners(self, normal: Tensor, generator: torch.Generator | None = None) -> None:
        """Test-time OT's fixed partners: ``pair`` distinct training normals (N, C, H, W) drawn with ``generator``
        (all N when N < pair)."""
        rows = torch.randperm(len(normal), generator=generator)[:self.cfg.pair]
        self.partners = normal[rows.sort().values].float().to(self.partners.device).contiguous()

    def standardise(self, x: Tensor) -> Tensor:
        return (x.float() - self.mean) / self.std

    # ------------------------------------------------------------------------------------------------ training
    def losses(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Alg. 1 / Eq. (17) on a batch of normal maps x (B, C, H, W) (y is not used: all rows are normal)."""
        check_maps(x, self.in_channels, self.feat_hw)
        x0 = self.standardise(x)
        cond, l_ot = self.vpot(x0)                                            # Eqs. (7)-(12)
        t = torch.randint(1, self.cfg.T + 1, (len(x0),), device=x0.device)   # Alg. 1 line 4
        noise = torch.randn_like(x0)                                          # line 5
        xt = q_sample(self.sched, x0, cond, t, noise)                         # Eq. (14), corrected
        l_simple = (noise - self.eps_model(xt, cond, t)).pow(2).mean()       # Eq. (16), DDPM's simplified terms
        a_T = float(self.sched.alpha_cum[-1])                                 # Eq. (16)'s prior term, per element
        l_prior = 0.5 * (a_T * (x0 - cond).pow(2) - a_T - torch.log1p(torch.tensor(-a_T))).mean()
        return {"elbo": l_simple, "prior": l_prior, "ot": l_ot, "total": l_simple + l_prior + l_ot}

    # ----------------------------------------------------------------------------------------------- generation
    def _noise(self, t: int) -> Tensor:
        """The fixed noise z_t (C, H, W) of step t (t = T + 1: the start x^T = ŷ + z), the same for every image."""
        g = torch.Generator().manual_seed(self.cfg.noise_seed * 1_000_003 + t)
        return torch.randn(self.in_channels, *self.feat_hw, generator=g)

    @torch.no_grad()
    def generate(self, cond: Tensor, sampler: str | None = None, steps: int | None = None) -> Tensor:
        """Alg. 2 from ŷ (B, C, H, W): x^0_rec (B, C, H, W) by the ancestral sampler (T steps) or DDIM."""
        s, c = self.sched, self.cfg
        sampler, steps = sampler or c.sampler, steps or c.steps
        x = cond + self._noise(c.T + 1).to(cond) if c.start == "noise" else cond.clone()
        clip = (self.lo, self.hi) if c.clip else None
        times = list(range(c.T, 0, -1)) if sampler == "ancestral" else ddim_steps(c.T, steps)
        for i, t in enumerate(times):
            eps = self.eps_model(x, cond, torch.full((len(x),), t, dtype=torch.long, device=x.device))
            if sampler == "ancestral":
                x = ancestral_step(s, x, cond, t, eps, self._noise(t).to(x), clip)
            else:
                t_next = times[i + 1] if i + 1 < len(times) else 0
                x = ddim_step(s, x, cond, t, t_next, eps, c.eta, self._noise(t).to(x) if c.eta else None, clip)
        return x

    # ----------------------------------------------------------------------------------------------- scoring
    @torch.no_grad()
    def score_map(self, x: Tensor) -> Tensor:
        """Sec. 3.4: S = ‖x^0 − x^0_rec‖₂ over channels, (B, H, W), in the standardised space."""
        x0 = self.standardise(x)
        cond = self.vpot.paired(x0, self.standardise(self.partners))
        return (x0 - self.generate(cond)).pow(2).sum(1).sqrt()

    @torch.no_grad()
    def score(self, x: Tensor) -> Tensor:
        """Image scores (B,): the maximum of the average-pooled S (Sec. 3.4)."""
        check_maps(x, self.in_channels, self.feat_hw)
        out = []
        for block in x.split(self.cfg.chunk):
            s = self.score_map(block)[:, None]
            k = min(self.cfg.pool, *s.shape[-2:])
            out.append(F.avg_pool2d(s, k, stride=1).flatten(1).max(dim=1).values)
        return torch.cat(out)
