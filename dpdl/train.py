"""The training loop (Algorithm 1; Sec. 5.3): one OSAD run (split -> features -> DPDL training on the total loss of
Eq. (23) -> test score S = Sa + Sr - Sn -> AUC) and its run record.

Two modes, chosen by the profile (dpdl.config):

* **feature mode** (``cpu``, ``smoke``): the ImageNet backbone is frozen; its maps of every image, and of
  ``pseudo_per_image`` fixed CutMix pseudo anomalies per training normal image, come from the disk cache
  (dpdl.features). A small adapter (1x1 conv -> BN -> ReLU) and every DPDL component train on top.
* **image mode** (``paper``): ResNet-18 fine-tuned end to end at 448 px; images are loaded per batch by a
  DataLoader and the pseudo anomalies are made on the fly.

Batches (both modes): two thirds normal, one third anomalies (seen anomalies and pseudo anomalies, ``pseudo_share``
of the third), each drawn from its own endless shuffled stream (a fresh permutation per pass).

``run(RunConfig(...))`` returns the run record (schema: dpdl.records) and, with ``out`` set, writes
``out/run.json`` (atomically), ``out/model.pt`` (adapter + DPDL state + config; scored by ``dpdl score``) and
``out/scores.json`` (test scores). A non-finite loss stops the run: the record has status ``"failed"`` and an
error naming the step and the loss term.
"""
from __future__ import annotations

import math
import os
import platform
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .backbones import build_backbone, check_backbone, feature_shape, parse_layers, weights_path
from .config import Profile, get_profile
from .features import FeatureCache, Item
from .model import PAPER_DEFAULTS
from .records import SCHEMA_VERSION, atomic_write_json, code_version, utc_now

HEAD_NAMES = ("n", "a", "r")
DEFAULTS = PAPER_DEFAULTS  # the paper's C, eps, kappa, lam, heads: defined once, in dpdl.model


class NonFiniteLossError(FloatingPointError):
    """A training step produced a NaN or infinite loss; the message names the step and the term."""


@dataclass
class RunConfig:
    """Every parameter of one run (stored verbatim in the record's ``config``)."""

    dataset: str
    setting: str = "general"
    known_class: str | None = None
    anomalies: int = 10
    seed: int = 0
    profile: str = "cpu"
    backbone: str | None = None          # None: the profile's default backbone
    use_dpl: bool = True
    use_dfl: bool = True
    heads: str = "n,a,r"
    prototypes: int = 32
    eps: float = 1e-3
    kappa: float = 10.0
    lam: float = 1.0
    data_root: str | None = None
    out: str | None = None
    run_id: str | None = None
    weights: str | None = None           # backbone weight file (ResNet-18: else $DPDL_RESNET18_WEIGHTS / hub cache)
    overrides: dict = field(default_factory=dict)  # profile fields changed for this run (tuning, benchmarks)
    overwrite: bool = False              # replace an existing finished out/run.json

    def to_dict(self) -> dict:
        d = asdict(self)
        d["heads"] = ",".join(parse_heads(self.heads))
        return d


# ---------------------------------------------------------------------------------------------- small pure helpers

def parse_heads(heads) -> tuple[str, ...]:
    """``"n,a,r"`` (or a sequence) -> ``("n", "a", "r")``; anything else than a non-empty subset is an error."""
    parts = [h.strip().lower() for h in (heads.split(",") if isinstance(heads, str) else heads)]
    parts = [p for p in parts if p]
    if not parts or any(p not in HEAD_NAMES for p in parts) or len(set(parts)) != len(parts):
        raise ValueError(f"bad heads {heads!r}: expected a comma-separated subset of n,a,r (e.g. 'n,a,r' or 'a,r')")
    return tuple(h for h in HEAD_NAMES if h in parts)


def variant_tag(cfg: RunConfig) -> str:
    """``"full"`` for the paper's DPDL defaults, else short tags joined by '+' (``"no_dpl"``, ``"heads=a,r"``, ...)."""
    tags = []
    if not cfg.use_dpl:
        tags.append("no_dpl")
    if not cfg.use_dfl:
        tags.append("no_dfl")
    heads = ",".join(parse_heads(cfg.heads))
    if heads != DEFAULTS["heads"]:
        tags.append(f"heads={heads}")
    if cfg.prototypes != DEFAULTS["prototypes"]:
        tags.append(f"C={cfg.prototypes}")
    for name in ("eps", "kappa", "lam"):
        value = getattr(cfg, name)
        if float(value) != DEFAULTS[name]:
            tags.append(f"{name}={float(value):g}")
    return "+".join(tags) or "full"


def default_run_id(cfg: RunConfig, backbone: str) -> str:
    known = f"-{cfg.known_class}" if cfg.known_class else ""
    return (f"{cfg.dataset}-{cfg.setting}{known}-M{cfg.anomalies}-{variant_tag(cfg)}-{backbone}-"
            f"s{cfg.seed}").replace(",", "").replace("=", "")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for but CUDA is not available on this machine")
    return torch.device(name)


def batch_counts(batch_size: int, n_seen: int, pseudo_share: float, has_pseudo: bool,
                 slots: str = "anomaly") -> tuple[int, int, int]:
    """(normal, seen-anomaly, pseudo-anomaly) slots of a batch drawn two thirds normal, one third anomalies.

    ``slots="anomaly"``: the pseudo anomalies take ``pseudo_share`` of the anomaly third (48 -> 32, 8, 8).
    ``slots="normal"`` (DRA's code, ../shared/protocol.md): the anomaly third is seen anomalies and ``pseudo_share``
    of the normal two thirds are turned into pseudo anomalies (48 -> 16, 16, 16). Without seen anomalies (M = 0)
    the anomaly third is pseudo anomalies in both; without pseudo anomalies it is all seen ones."""
    if slots not in ("anomaly", "normal"):
        raise ValueError(f"pseudo_slots must be 'anomaly' or 'normal', got {slots!r}")
    n_norm = int(round(batch_size * 2 / 3))
    n_anom = batch_size - n_norm
    if n_seen == 0 and not has_pseudo:
        raise ValueError("no anomalies to train with: M = 0 and no pseudo anomalies")
    if not has_pseudo:
        return n_norm, n_anom, 0
    if slots == "normal":
        n_conv = min(n_norm - 1, max(1, int(round(n_norm * pseudo_share))))
        return n_norm - n_conv, (n_anom if n_seen else 0), n_conv + (0 if n_seen else n_anom)
    if n_seen == 0:
        return n_norm, 0, n_anom
    n_pseudo = min(n_anom - 1, max(1, int(round(n_anom * pseudo_share))))
    return n_norm, n_anom - n_pseudo, n_pseudo


class Stream:
    """An endless shuffled stream of indices 0..n-1: a fresh permutation every pass (seeded generator)."""

    def __init__(self, n: int, gen: torch.Generator):
        self.n, self.gen, self.buf, self.pos = n, gen, torch.empty(0, dtype=torch.long), 0

    def take(self, k: int) -> torch.Tensor:
        out = []
        while k > 0:
            if self.pos >= len(self.buf):
                self.buf, self.pos = torch.randperm(self.n, generator=self.gen), 0
            chunk = self.buf[self.pos:self.pos + k]
            out.append(chunk)
            self.pos += len(chunk)
            k -= len(chunk)
        return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


class Adapter(nn.Module):
    """Trainable 1x1 conv -> BN -> ReLU on the frozen backbone's maps: (B, Cin, H, W) -> (B, dim, H, W).

    ``dim = 0`` is the identity (the ``paper`` profile trains the backbone itself)."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.out_channels = dim or in_channels
        self.net = (nn.Sequential(nn.Conv2d(in_channels, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU())
                    if dim else nn.Identity())

    def forward(self, x):
        return self.net(x)

    @torch.no_grad()
    def calibrate(self, feats: torch.Tensor, chunk: int = 256) -> None:
        """Set BN's running statistics to the exact mean/variance of ``feats`` (N, Cin, H, W) (cumulative pass)."""
        bns = [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]
        if not bns:
            return
        was = self.training
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        self.train()
        for s in range(0, len(feats), chunk):
            self(feats[s:s + chunk].float())
        for bn in bns:
            bn.momentum = 0.1
        self.train(was)


AUG_SEED_OFFSET = 7919


def d4_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each map of x (B, C, H, W), H == W, turned by a random element of the square's symmetry group D4
    (rot90 by k = 0..3, then or not a left-right flip; uniform over the 8). Returns a new (B, C, H, W) tensor.

    Cached features cannot be re-extracted from rotated images; a CNN's map of a rotated image is close to the
    rotated map, so this stands in for the baselines' RandomRotation(180) of training images (``cpu`` profile).
    """
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"d4 augmentation needs square feature maps (B, C, H, H), got {tuple(x.shape)}")
    code = torch.randint(0, 8, (x.shape[0],), generator=gen)
    out = x.clone()
    for c in range(1, 8):
        rows = (code == c).nonzero().flatten()
        if len(rows):
            v = x[rows]
            v = v.flip(-1) if c >= 4 else v
            out[rows] = torch.rot90(v, c % 4, dims=(-2, -1))
    return out


def roc_metrics(labels, scores) -> dict:
    """AUC (sklearn roc_auc_score) and AUC-PR (average_precision_score) of image scores."""
    from sklearn.metrics import average_precision_score, roc_auc_score
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if not np.isfinite(scores).all():
        raise NonFiniteLossError("the model gave non-finite test scores")
    return {"auc": float(roc_auc_score(labels, scores)), "ap": float(average_precision_score(labels, scores))}


def check_terms(model, terms: dict, step: int) -> None:
    """Stop with :class:`NonFiniteLossError` (naming the step and the term) when a loss term is NaN or infinite."""
    bad = [k for k, v in terms.items() if not bool(torch.isfinite(v.detach()).all())]
    if not bad:
        return
    msg = None
    if hasattr(model, "check_finite"):
        try:
            model.check_finite(terms, step)
        except Exception as exc:  # the method's own one-sentence message
            msg = str(exc)
    if not msg:
        order = [k for k in bad if k != "total"] or bad
        msg = f"non-finite loss at step {step}: term {order[0]!r} is {float(terms[order[0]].detach())}"
    raise NonFiniteLossError(msg)


def host_info(device: torch.device) -> dict:
    return {"device": str(device), "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                                                   else platform.processor() or platform.machine()),
            "torch": torch.__version__, "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform()}


# ---------------------------------------------------------------------------------------------- the model

def build_dpdl(in_channels: int, feat_hw: tuple[int, int], cfg: RunConfig, binary_loss: str = "deviation"):
    from .model import DPDLConfig, DPDLModel
    dcfg = DPDLConfig(prototypes=cfg.prototypes, eps=cfg.eps, kappa=cfg.kappa, lam=cfg.lam, use_dpl=cfg.use_dpl,
                      use_dfl=cfg.use_dfl, heads=parse_heads(cfg.heads), binary_loss=binary_loss)
    return DPDLModel(in_channels, tuple(feat_hw), dcfg), dcfg


class DPDLNet(nn.Module):
    """Backbone (frozen and outside, or fine-tuned and inside) -> adapter -> DPDL: what is trained and saved."""

    def __init__(self, adapter: Adapter, dpdl, backbone: nn.Module | None = None):
        super().__init__()
        self.adapter, self.dpdl, self.backbone = adapter, dpdl, backbone

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone maps (or images, when the backbone is inside) -> DPDL's input x (B, Cf, H, W)."""
        if self.backbone is not None:
            x = self.backbone(x)
        return self.adapter(x.float())

    @torch.no_grad()
    def score(self, x: torch.Tensor, chunk: int = 128) -> torch.Tensor:
        """Anomaly scores S (N,) for maps/images x, in eval mode, in chunks."""
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        out = [self.dpdl.score(self.embed(x[s:s + chunk].to(dev))).float().cpu() for s in range(0, len(x), chunk)]
        self.train(was)
        return torch.cat(out) if out else torch.empty(0)


# ---------------------------------------------------------------------------------------------- the run

@dataclass
class _Ctx:
    cfg: RunConfig
    profile: Profile
    backbone: str
    device: torch.device
    progress: bool
    timings: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def validate(cfg: RunConfig) -> tuple[Profile, str]:
    """Check every parameter before any work (each problem is one clear sentence). Returns (profile, backbone)."""
    profile = get_profile(cfg.profile, **(cfg.overrides or {}))
    backbone = cfg.backbone or profile.backbone
    check_backbone(backbone)
    weights_path(backbone, cfg.weights)  # missing weights: one clear FileNotFoundError before any work
    parse_layers(profile.feature_layers)
    parse_heads(cfg.heads)
    if cfg.setting not in ("general", "hard"):
        raise ValueError(f"unknown setting {cfg.setting!r}: expected 'general' or 'hard'")
    if cfg.setting == "hard" and not cfg.known_class:
        raise ValueError("the hard setting needs --known-class (the one anomaly class seen in training)")
    if int(cfg.anomalies) < 0:
        raise ValueError(f"the number of seen anomalies M must be >= 0, got {cfg.anomalies}")
    if int(cfg.prototypes) < 1:
        raise ValueError(f"the number of prototypes C must be >= 1, got {cfg.prototypes}")
    if not float(cfg.eps) > 0:
        raise ValueError(f"eps must be > 0, got {cfg.eps}")
    if profile.batch_size < 3:
        raise ValueError(f"batch size must be >= 3, got {profile.batch_size}")
    from .model import BINARY_LOSSES
    if profile.head_loss not in BINARY_LOSSES:
        raise ValueError(f"profile field head_loss must be one of {', '.join(BINARY_LOSSES)}, "
                         f"got {profile.head_loss!r}")
    if profile.feature_aug not in ("none", "d4"):
        raise ValueError(f"profile field feature_aug must be 'none' or 'd4', got {profile.feature_aug!r}")
    if profile.feature_aug != "none" and not profile.feature_cache:
        raise ValueError("profile field feature_aug applies to cached features only (a feature-cache profile)")
    if profile.pseudo_slots not in ("anomaly", "normal"):
        raise ValueError(f"profile field pseudo_slots must be 'anomaly' or 'normal', got {profile.pseudo_slots!r}")
    if profile.feature_cache and profile.finetune_backbone:
        raise ValueError("a profile cannot both fine-tune the backbone and cache its features")
    if cfg.out and not cfg.overwrite:
        p = Path(cfg.out) / "run.json"
        if p.exists():
            try:
                from .records import read_record
                finished = read_record(p).get("status") == "ok"
            except Exception:
                finished = False
            if finished:
                raise ValueError(f"{p} already holds a finished run; choose another --out or pass --overwrite")
    resolve_device(profile.device)
    return profile, backbone


def _split(cfg: RunConfig):
    from .data import make_split
    return make_split(cfg.dataset, setting=cfg.setting, anomalies=int(cfg.anomalies), seed=int(cfg.seed),
                      known_class=cfg.known_class, data_root=cfg.data_root)


def _optimizer(net: nn.Module, profile: Profile):
    params = [p for p in net.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=profile.lr, weight_decay=profile.weight_decay)


def _step(net: DPDLNet, opt, x, y, step: int, profile: Profile, times: dict | None = None) -> dict:
    """One optimisation step on a batch (maps or images) -> detached loss terms. Raises NonFiniteLossError."""
    t0 = time.perf_counter()
    if net.backbone is not None:
        feats = net.backbone(x)
        t1 = time.perf_counter()
        emb = net.adapter(feats)
    else:
        t1 = t0
        emb = net.adapter(x.float())
    terms = net.dpdl.losses(emb, y)
    t2 = time.perf_counter()
    check_terms(net.dpdl, terms, step)
    opt.zero_grad(set_to_none=True)
    terms["total"].backward()
    if profile.grad_clip:
        torch.nn.utils.clip_grad_norm_(net.parameters(), profile.grad_clip)
    opt.step()
    t3 = time.perf_counter()
    if times is not None:
        times.setdefault("backbone_fwd", []).append(t1 - t0)
        times.setdefault("dpdl_fwd", []).append(t2 - t1)
        times.setdefault("backward_opt", []).append(t3 - t2)
        times.setdefault("step", []).append(t3 - t0)
    return {k: float(v.detach()) for k, v in terms.items()}


def _loop(ctx: _Ctx, net: DPDLNet, next_batch, desc: str) -> dict:
    """epochs x iters steps; ``next_batch(step) -> (x, y)``. Returns per-epoch mean loss terms and step times."""
    prof = ctx.profile
    opt = _optimizer(net, prof)
    total = prof.epochs * prof.iters_per_epoch
    curves: dict[str, list[float]] = {}
    times: dict[str, list[float]] = {}
    net.train()
    bar = tqdm(total=total, desc=desc, disable=not ctx.progress, leave=False, unit="step")
    step = 0
    for epoch in range(prof.epochs):
        acc: dict[str, float] = {}
        for _ in range(prof.iters_per_epoch):
            td = time.perf_counter()
            x, y = next_batch(step)
            times.setdefault("data", []).append(time.perf_counter() - td)
            terms = _step(net, opt, x.to(ctx.device), y.to(ctx.device), step, prof, times)
            for k, v in terms.items():
                acc[k] = acc.get(k, 0.0) + v
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{terms['total']:.4f}")
        for k, v in acc.items():
            curves.setdefault(k, []).append(v / prof.iters_per_epoch)
    bar.close()
    ms = {k: 1000.0 * float(np.mean(v)) for k, v in times.items() if v}
    return {"curves": curves, "ms": ms, "steps": total}


def _run_features(ctx: _Ctx, split) -> tuple[DPDLNet, np.ndarray, np.ndarray]:
    """Feature mode: cached frozen-backbone maps -> adapter + DPDL. Returns (net, test labels, test scores)."""
    prof, cfg = ctx.profile, ctx.cfg
    t0 = time.perf_counter()
    extractor = build_backbone(ctx.backbone, prof.feature_layers, weights=cfg.weights, image_size=prof.image_size,
                               map_size=prof.map_size).freeze().to(ctx.device)
    cache = FeatureCache(extractor, prof.image_size, split.dataset)
    ctx.extra["backbone_info"] = extractor.describe()
    kw = dict(progress=ctx.progress)
    f_norm = cache.get([Item(s) for s in split.train_normal], desc="train normal features", **kw)
    f_seen = cache.get([Item(s) for s in split.train_anomaly], desc="seen anomaly features", **kw)
    pseudo_items = [Item(s, v) for v in range(prof.pseudo_per_image) for s in split.train_normal]
    f_pseudo = cache.get(pseudo_items, desc="pseudo anomaly features", **kw)
    test = split.test_normal + split.test_anomaly
    f_test = cache.get([Item(s) for s in test], desc="test features", **kw)
    ctx.timings["features_s"] = time.perf_counter() - t0
    ctx.extra["feature_cache"] = {**cache.stats.to_dict(), "dir": str(cache.dir)}
    del extractor

    seed_everything(cfg.seed)
    c, h, w = f_norm.shape[1:]
    adapter = Adapter(c, prof.adapter_dim)
    adapter.calibrate(f_norm)
    dpdl, dcfg = build_dpdl(adapter.out_channels, (h, w), cfg, prof.head_loss)
    net = DPDLNet(adapter, dpdl).to(ctx.device)
    ctx.extra["dpdl_config"] = asdict(dcfg)
    with torch.no_grad():
        adapter.eval()
        init = torch.cat([adapter(f_norm[s:s + 256].float().to(ctx.device)) for s in range(0, len(f_norm), 256)])
        dpdl.init_prototypes(init, generator=torch.Generator().manual_seed(int(cfg.seed)))
        del init

    gen = torch.Generator().manual_seed(int(cfg.seed))
    n_norm, n_seen, n_pseudo = batch_counts(prof.batch_size, len(f_seen), prof.pseudo_share, len(f_pseudo) > 0,
                                            prof.pseudo_slots)
    s_norm = Stream(len(f_norm), gen)
    s_seen = Stream(max(len(f_seen), 1), gen)
    s_pseudo = Stream(max(len(f_pseudo), 1), gen)
    y = torch.cat([torch.zeros(n_norm), torch.ones(n_seen + n_pseudo)])
    ctx.extra["batch"] = {"normal": n_norm, "seen": n_seen, "pseudo": n_pseudo}
    aug_gen = torch.Generator().manual_seed(int(cfg.seed) + AUG_SEED_OFFSET)  # its own stream: batches unchanged

    def next_batch(step):
        parts = [f_norm[s_norm.take(n_norm)]]
        if n_seen:
            parts.append(f_seen[s_seen.take(n_seen)])
        if n_pseudo:
            parts.append(f_pseudo[s_pseudo.take(n_pseudo)])
        x = torch.cat(parts).float()
        return (d4_augment(x, aug_gen) if prof.feature_aug == "d4" else x), y

    t1 = time.perf_counter()
    ctx.extra["train"] = _loop(ctx, net, next_batch, desc=f"train {cfg.dataset} M={cfg.anomalies} s{cfg.seed}")
    ctx.timings["train_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    scores = net.score(f_test).numpy()
    ctx.timings["test_s"] = time.perf_counter() - t2
    labels = np.array([s.label for s in test])
    return net, labels, scores


class _ImageItems(torch.utils.data.Dataset):
    """Image mode: item (kind, index, pseudo_seed) -> (image (3, S, S), label)."""

    def __init__(self, normal, seen, size: int):
        self.normal, self.seen, self.size = normal, seen, size

    def __len__(self):
        return len(self.normal) + len(self.seen)

    def __getitem__(self, spec):
        from .cutmix import cutpaste
        from .data import load_image
        kind, idx, pseed = spec
        if kind == "seen":
            return load_image(self.seen[idx], self.size), 1.0
        img = load_image(self.normal[idx], self.size)
        if kind == "pseudo":
            return cutpaste(img, torch.Generator().manual_seed(pseed))[0], 1.0
        return img, 0.0


def _run_images(ctx: _Ctx, split) -> tuple[DPDLNet, np.ndarray, np.ndarray]:
    """Image mode (``paper``): backbone fine-tuned end to end, images per batch, pseudo anomalies on the fly."""
    from .cutmix import variant_seed
    from .data import load_image
    prof, cfg = ctx.profile, ctx.cfg
    seed_everything(cfg.seed)
    backbone = build_backbone(ctx.backbone, prof.feature_layers, weights=cfg.weights, image_size=prof.image_size,
                              map_size=prof.map_size)
    ctx.extra["backbone_info"] = backbone.describe()
    if not prof.finetune_backbone:
        backbone.freeze()
    c, h, w = feature_shape(ctx.backbone, prof.feature_layers, prof.image_size, prof.map_size)
    adapter = Adapter(c, prof.adapter_dim)
    dpdl, dcfg = build_dpdl(adapter.out_channels, (h, w), cfg, prof.head_loss)
    net = DPDLNet(adapter, dpdl, backbone).to(ctx.device)
    ctx.extra["dpdl_config"] = asdict(dcfg)
    t0 = time.perf_counter()
    with torch.no_grad():  # prototypes from the pretrained backbone's maps of the training normals
        net.eval()
        maps = []
        for s in range(0, len(split.train_normal), 32):
            imgs = torch.stack([load_image(x, prof.image_size) for x in split.train_normal[s:s + 32]])
            maps.append(net.embed(imgs.to(ctx.device)).cpu())
        dpdl.init_prototypes(torch.cat(maps).to(ctx.device),
                            generator=torch.Generator().manual_seed(int(cfg.seed)))
        del maps
    ctx.timings["features_s"] = time.perf_counter() - t0

    gen = torch.Generator().manual_seed(int(cfg.seed))
    has_pseudo = prof.pseudo_per_image > 0
    n_norm, n_seen, n_pseudo = batch_counts(prof.batch_size, len(split.train_anomaly), prof.pseudo_share, has_pseudo,
                                            prof.pseudo_slots)
    s_norm, s_seen = Stream(len(split.train_normal), gen), Stream(max(len(split.train_anomaly), 1), gen)
    s_src = Stream(len(split.train_normal), gen)
    total = prof.epochs * prof.iters_per_epoch

    def specs():
        for step in range(total):
            b = [("normal", int(i), 0) for i in s_norm.take(n_norm)]
            b += [("seen", int(i), 0) for i in s_seen.take(n_seen)]
            b += [("pseudo", int(i), variant_seed(split.train_normal[int(i)].key, step * prof.batch_size + j,
                                                  int(cfg.seed)))
                  for j, i in enumerate(s_src.take(n_pseudo))]
            yield b

    loader = torch.utils.data.DataLoader(_ImageItems(split.train_normal, split.train_anomaly, prof.image_size),
                                         batch_sampler=list(specs()), num_workers=prof.num_workers,
                                         pin_memory=ctx.device.type == "cuda")
    it = iter(loader)

    def next_batch(step):
        x, y = next(it)
        return x, y.float()

    ctx.extra["batch"] = {"normal": n_norm, "seen": n_seen, "pseudo": n_pseudo}
    t1 = time.perf_counter()
    ctx.extra["train"] = _loop(ctx, net, next_batch, desc=f"train {cfg.dataset} M={cfg.anomalies} s{cfg.seed}")
    ctx.timings["train_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    test = split.test_normal + split.test_anomaly
    scores = []
    for s in range(0, len(test), 32):
        imgs = torch.stack([load_image(x, prof.image_size) for x in test[s:s + 32]])
        scores.append(net.score(imgs))
    ctx.timings["test_s"] = time.perf_counter() - t2
    return net, np.array([s.label for s in test]), torch.cat(scores).numpy()


def _base_record(cfg: RunConfig, profile: Profile, backbone: str, run_id: str) -> dict:
    return {"schema": SCHEMA_VERSION, "status": "running", "error": None, "run_id": run_id,
            "profile": profile.name, "profile_settings": profile.to_dict(), "deviations": profile.deviations(),
            "config": cfg.to_dict(), "dataset": cfg.dataset, "setting": cfg.setting,
            "known_class": cfg.known_class, "anomalies": int(cfg.anomalies), "seed": int(cfg.seed),
            "backbone": backbone, "variant": variant_tag(cfg), "metrics": {"auc": None, "ap": None},
            "split": None, "timings": {}, "code_version": code_version(), "date": utc_now()}


def save_model(path: str | os.PathLike, net: DPDLNet, ctx: _Ctx, feat_shape: tuple) -> None:
    """``model.pt``: adapter + DPDL state (+ the backbone's when fine-tuned) and everything to rebuild them."""
    blob = {"format": 1, "config": ctx.cfg.to_dict(), "profile": ctx.profile.to_dict(),
            "backbone": ctx.extra.get("backbone_info"), "feature_shape": list(feat_shape),
            "dpdl_config": ctx.extra.get("dpdl_config"), "adapter_dim": ctx.profile.adapter_dim,
            "adapter": net.adapter.state_dict(), "dpdl": net.dpdl.state_dict(),
            "backbone_state": net.backbone.state_dict() if net.backbone is not None else None}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def run(cfg: RunConfig, progress: bool = True) -> dict:
    """Train and test one run; returns the record (written to ``cfg.out/run.json`` when ``out`` is set).

    Bad parameters raise ValueError/FileNotFoundError (one sentence) before anything is written. A non-finite
    loss returns (and writes) a record with status ``"failed"`` and the message naming step and term.
    """
    t_start, c_start = time.perf_counter(), time.process_time()
    profile, backbone = validate(cfg)
    device = resolve_device(profile.device)
    run_id = cfg.run_id or default_run_id(cfg, backbone)
    record = _base_record(cfg, profile, backbone, run_id)
    ctx = _Ctx(cfg, profile, backbone, device, progress)
    out = Path(cfg.out) if cfg.out else None
    split = _split(cfg)
    record["split"] = {"fingerprint": split.fingerprint, **split.counts(),
                       "test_anomaly_classes": list(split.test_anomaly_classes),
                       "train_anomaly_keys": [s.key for s in split.train_anomaly]}
    det_was, threads_was = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    if profile.threads:
        torch.set_num_threads(profile.threads)
    try:
        runner = _run_features if profile.feature_cache else _run_images
        net, labels, scores = runner(ctx, split)
        record["metrics"] = roc_metrics(labels, scores)
        record["status"] = "ok"
        if out is not None:
            save_model(out / "model.pt", net, ctx, feature_shape(backbone, profile.feature_layers,
                                                                 profile.image_size, profile.map_size))
            test = split.test_normal + split.test_anomaly
            atomic_write_json(out / "scores.json", {"keys": [s.key for s in test], "labels": labels.tolist(),
                                                    "classes": [s.cls for s in test],
                                                    "scores": [float(v) for v in scores]})
    except NonFiniteLossError as exc:
        record["status"], record["error"] = "failed", str(exc)
    except Exception as exc:  # a bug or a broken file mid-run: leave a failed record behind, then raise
        record["status"], record["error"] = "failed", f"{type(exc).__name__}: {exc}"
        if out is not None:
            record["timings"] = {"total_s": round(time.perf_counter() - t_start, 4)}
            record["host"] = host_info(device)
            atomic_write_json(out / "run.json", _jsonable(record))
        raise
    finally:
        torch.use_deterministic_algorithms(det_was)
        torch.set_num_threads(threads_was)
    train = ctx.extra.pop("train", None)
    if train:
        ms = train["ms"]
        ctx.timings.update({"step_ms": ms.get("step"), "step_data_ms": ms.get("data"),
                            "step_backbone_ms": ms.get("backbone_fwd") if profile.finetune_backbone else 0.0,
                            "step_dpdl_ms": ms.get("dpdl_fwd"), "step_backward_ms": ms.get("backward_opt"),
                            "steps": train["steps"]})
        record["losses"] = train["curves"]
    ctx.timings["total_s"] = time.perf_counter() - t_start
    ctx.timings["cpu_s"] = time.process_time() - c_start  # CPU time of this process (all threads)
    record["timings"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in ctx.timings.items()}
    record.update({k: v for k, v in ctx.extra.items()})
    record["host"] = host_info(device)
    record["host"]["threads"] = profile.threads or threads_was
    if out is not None:
        atomic_write_json(out / "run.json", _jsonable(record))
    return record


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def config_fields() -> list[str]:
    return [f.name for f in fields(RunConfig)]


def prepare_features(dataset: str, profile: str = "cpu", backbone: str | None = None, data_root: str | None = None,
                     weights: str | None = None, overrides: dict | None = None, progress: bool = True) -> dict:
    """Fill the feature cache for every image a run on ``dataset`` may need (all normals, all anomalies, the pseudo
    anomalies of the training normals), so that later runs (in parallel, any seed/M/setting) only read it.

    Returns the cache statistics and the time taken. Feature-cache profiles only."""
    prof = get_profile(profile, **(overrides or {}))
    if not prof.feature_cache:
        raise ValueError(f"profile {prof.name!r} does not cache features")
    name = backbone or prof.backbone
    check_backbone(name)
    from .data import make_split
    t0 = time.perf_counter()
    split = make_split(dataset, setting="general", anomalies=1, seed=0, data_root=data_root)
    extractor = build_backbone(name, prof.feature_layers, weights=weights, image_size=prof.image_size).freeze()
    cache = FeatureCache(extractor, prof.image_size, split.dataset)
    items = ([Item(s) for s in split.train_normal + split.train_anomaly + split.test_normal + split.test_anomaly]
             + [Item(s, v) for v in range(prof.pseudo_per_image) for s in split.train_normal])
    threads_was = torch.get_num_threads()
    if prof.threads:
        torch.set_num_threads(prof.threads)
    try:
        cache.get_taps(items, progress=progress, desc=f"{dataset} features")
    finally:
        torch.set_num_threads(threads_was)
    return {"dataset": dataset, "backbone": name, "image_size": prof.image_size, "items": len(items),
            "seconds": time.perf_counter() - t0, **cache.stats.to_dict(), "dir": str(cache.dir)}
