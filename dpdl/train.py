"""The training glue (Algorithm 1; Sec. 5.3): one OSAD run (split -> features -> training -> test scores -> AUC) and
its run record, for every method of :mod:`dpdl.methods` (DPDL, DevNet, DRA, kNN) through one loop.

* :func:`fit` optimises a :class:`~dpdl.net.Net` on a batch source (dpdl.batches) for the profile's
  epochs x iterations; :func:`evaluate` scores inputs with it. Both are public: benchmarks build on them.
* Two modes, chosen by the profile (dpdl.config): **feature mode** (``cpu``, ``smoke``: a frozen ImageNet backbone,
  maps of every image and of ``pseudo_per_image`` fixed CutMix pseudo anomalies per training normal come from the
  disk cache, dpdl.features; a small adapter and the method train on top) and **image mode** (``paper``: the
  backbone fine-tuned end to end at 448 px, images through a DataLoader, pseudo anomalies made on the fly).
* ``run(RunConfig(...))`` returns the run record (schema: dpdl.records) and, with ``out`` set, writes
  ``out/run.json``, ``out/model.pt`` (:meth:`Net.save`; scored by ``dpdl score``) and ``out/scores.json``, all
  three only once the run has finished (:func:`dpdl.records.write_run_files`: an old run in ``out`` stays until
  then). A non-finite loss stops the run: status ``"failed"``, an error naming the step and term; its record never
  replaces a finished one (it goes to ``out/run.failed.json`` then). Bad input found mid-run (an unreadable image)
  is a ValueError and writes nothing.

The loop reads loss values once per epoch (no host synchronisation per step): a non-finite term is found at the
epoch's end, and the error still names its first step and term.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import os
import platform
import random
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
import warnings
with warnings.catch_warnings():     # no "IProgress not found" notice in the book's pages (no ipywidgets there)
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

# Deterministic cuBLAS (torch.use_deterministic_algorithms on CUDA needs it): set here, before any CUDA work.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

from .backbones import check_backbone, feature_shape, parse_layers, weights_path
from .checks import check_weight_file
from .config import Profile, get_profile
from .methods import METHODS, check_options, method_class
from .modes import embed_all, evaluate, prepare_features, seed_everything, setup_features, setup_images  # noqa: F401
from .methods.dpdl.model import PAPER_DEFAULTS, paper_defaults, paper_lam
from .net import Net
from . import trained_once
from .records import (SCHEMA_VERSION, atomic_write_json, code_version, holds_finished_run, utc_now,
                      write_run_files)

HEAD_NAMES = ("n", "a", "r")
PROTOTYPES_MAX = 4096    # --prototypes: the paper uses C = 32; more than this is a typo, not a study
IMAGE_SIZE_MAX = 2048    # --set image_size: the paper trains at 448 px; larger would not fit a GPU's memory
DEFAULTS = PAPER_DEFAULTS  # the paper's C, eps, kappa, lam, heads: defined once, in dpdl.methods.dpdl.model


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
    method: str = "dpdl"                 # dpdl | devnet | dra | knn (dpdl.methods)
    use_dpl: bool = PAPER_DEFAULTS["use_dpl"]
    use_dfl: bool = PAPER_DEFAULTS["use_dfl"]
    heads: str = PAPER_DEFAULTS["heads"]
    prototypes: int = PAPER_DEFAULTS["prototypes"]
    eps: float = PAPER_DEFAULTS["eps"]
    kappa: float = PAPER_DEFAULTS["kappa"]
    lam: float | None = None             # None: the paper's λ for the dataset (dpdl.methods.dpdl.model.paper_lam, Sec. 5.7)
    method_options: dict = field(default_factory=dict)  # more fields of the method's config (dpdl.methods)
    data_root: str | None = None
    out: str | None = None
    run_id: str | None = None
    weights: str | None = None           # backbone weight file (ResNet-18: else $DPDL_RESNET18_WEIGHTS / hub cache)
    overrides: dict = field(default_factory=dict)  # profile fields changed for this run (tuning, benchmarks)
    overwrite: bool = False              # replace an existing finished out/run.json
    eval_on: str = "test"                # "val": train on the reduced training split, score its validation split

    def __post_init__(self):
        if self.lam is None:
            self.lam = paper_lam(self.dataset)

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


def _option_tags(options: dict) -> list[str]:
    return [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(options.items())]


def variant_tag(cfg: RunConfig) -> str:
    """``"full"`` for the paper's DPDL defaults, else short tags joined by '+' (``"no_dpl"``, ``"heads=a,r"``, ...);
    a baseline's tag is its method name (``"dra"``), with its options if any (``"knn+memory=5000"``)."""
    if cfg.method != "dpdl":
        return "+".join([cfg.method] + _option_tags(cfg.method_options or {}))
    defaults, tags = paper_defaults(cfg.dataset), []
    if not cfg.use_dpl:
        tags.append("no_dpl")
    if not cfg.use_dfl:
        tags.append("no_dfl")
    heads = ",".join(parse_heads(cfg.heads))
    if heads != defaults["heads"]:
        tags.append(f"heads={heads}")
    if cfg.prototypes != defaults["prototypes"]:
        tags.append(f"C={cfg.prototypes}")
    for name in ("eps", "kappa", "lam"):
        value = getattr(cfg, name)
        if float(value) != defaults[name]:
            tags.append(f"{name}={float(value):g}")
    return "+".join(tags + _option_tags(cfg.method_options or {})) or "full"


def default_run_id(cfg: RunConfig, backbone: str) -> str:
    known = f"-{cfg.known_class}" if cfg.known_class else ""
    return (f"{cfg.dataset}-{cfg.setting}{known}-M{cfg.anomalies}-{variant_tag(cfg)}-{backbone}-"
            f"s{cfg.seed}").replace(",", "").replace("=", "")


def method_options(cfg: RunConfig, profile: Profile) -> dict:
    """The method's full config as a dict (validated): DPDL's from the run's C, eps, kappa, lam, heads, switches and
    the profile's head loss, then ``cfg.method_options``; a baseline's from ``cfg.method_options``."""
    opts = {}
    if cfg.method == "dpdl":
        opts = {"prototypes": int(cfg.prototypes), "eps": float(cfg.eps), "kappa": float(cfg.kappa),
                "lam": float(cfg.lam), "use_dpl": bool(cfg.use_dpl), "use_dfl": bool(cfg.use_dfl),
                "heads": parse_heads(cfg.heads), "binary_loss": profile.head_loss}
    return check_options(cfg.method, {**opts, **(cfg.method_options or {})})


def method_profile(profile: Profile, method: str) -> Profile:
    """The profile a method trains under: where ``profile.method_protocol`` (``paper``), its own published
    training (``protocol`` of dpdl.methods: DRA's optimiser, schedule, batch); elsewhere the profile unchanged."""
    own = method_class(method).protocol
    return replace(profile, **own) if profile.method_protocol and own else profile


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for but CUDA is not available on this machine")
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"profile field device {name!r} (--set device) is not a device: expected auto, cpu, cuda "
                         "or cuda:N") from None


def roc_metrics(labels, scores) -> dict:
    """AUC (sklearn roc_auc_score) and AUC-PR (average_precision_score) of image scores."""
    from sklearn.metrics import average_precision_score, roc_auc_score
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if not np.isfinite(scores).all():
        raise NonFiniteLossError("the model gave non-finite test scores")
    return {"auc": float(roc_auc_score(labels, scores)), "ap": float(average_precision_score(labels, scores))}


def host_info(device: torch.device) -> dict:
    return {"device": str(device), "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                                                   else platform.processor() or platform.machine()),
            "torch": torch.__version__, "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform()}


def validate(cfg: RunConfig) -> tuple[Profile, str]:
    """Check every parameter before any work (each problem is one clear sentence). Returns (profile, backbone)."""
    profile = get_profile(cfg.profile, **(cfg.overrides or {}))
    backbone = cfg.backbone or profile.backbone
    check_backbone(backbone)
    weights_path(backbone, cfg.weights)  # missing weights: one clear FileNotFoundError before any work
    if cfg.weights:                      # a weight file that cannot be read or fits no backbone: before any work
        check_weight_file(backbone, cfg.weights)
    parse_layers(profile.feature_layers)
    parse_heads(cfg.heads)
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}: expected one of {', '.join(METHODS)}")
    if cfg.method != "dpdl":
        changed = [k for k in ("use_dpl", "use_dfl", "heads", "prototypes", "eps", "kappa", "lam")
                   if getattr(cfg, k) != paper_defaults(cfg.dataset).get(k, RunConfig.__dataclass_fields__[k].default)]
        if changed:
            raise ValueError(f"{', '.join(changed)} are options of DPDL, not of method {cfg.method!r}")
    if cfg.setting not in ("general", "hard"):
        raise ValueError(f"unknown setting {cfg.setting!r}: expected 'general' or 'hard'")
    if cfg.setting == "hard" and not cfg.known_class:
        raise ValueError("the hard setting needs --known-class (the one anomaly class seen in training)")
    for name, low, high in (("anomalies", 0, None), ("seed", 0, 2**32 - 1), ("prototypes", 1, PROTOTYPES_MAX)):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{name} (--{name}) must be an integer, got {value!r}")
        if value < low or (high is not None and value > high):
            raise ValueError(f"{name} (--{name}) must be between {low} and {high}, got {value}" if high is not None
                             else f"{name} (--{name}) must be >= {low}, got {value}")
    if not 8 <= profile.image_size <= IMAGE_SIZE_MAX:
        raise ValueError(f"profile field image_size (--set image_size) must be between 8 and {IMAGE_SIZE_MAX} "
                         f"pixels, got {profile.image_size}")
    for name, strict in (("eps", True), ("kappa", True), ("lam", False)):  # bridge noise, DFL concentration, weight
        value = float(getattr(cfg, name))
        if not (value > 0 if strict else value >= 0) or not math.isfinite(value):
            raise ValueError(f"{name} (--{name}) must be a finite number {'>' if strict else '>='} 0, got {value}")
    from .checks import cache_folder, data_root, output_dir
    data_root(cfg.data_root)
    if cfg.out:
        output_dir(cfg.out, "--out")
    cache_folder()
    if profile.batch_size < 3:
        raise ValueError(f"batch size must be >= 3, got {profile.batch_size}")
    from .methods.dpdl.model import BINARY_LOSSES
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
        p = Path(cfg.out).expanduser() / "run.json"
        if p.exists():
            try:
                from .records import read_record
                finished = read_record(p).get("status") == "ok"
            except Exception:
                finished = False
            if finished:
                raise ValueError(f"{p} already holds a finished run; choose another --out or pass --overwrite")
    if profile.autocast not in ("none", "bf16"):
        raise ValueError(f"profile field autocast must be 'none' or 'bf16', got {profile.autocast!r}")
    profile.scale_sides()  # a bad scales field is one sentence
    if profile.scales and profile.feature_cache:
        raise ValueError("profile field scales applies to image mode only (a profile without feature_cache)")
    if profile.optimizer not in ("adamw", "adam"):
        raise ValueError(f"profile field optimizer must be 'adamw' or 'adam', got {profile.optimizer!r}")
    if cfg.eval_on not in ("test", "val"):
        raise ValueError(f"eval_on must be 'test' or 'val', got {cfg.eval_on!r}")
    method_options(cfg, profile)
    resolve_device(profile.device)
    return profile, backbone


def _split(cfg: RunConfig):
    from .data import make_split, validation_split
    split = make_split(cfg.dataset, setting=cfg.setting, anomalies=int(cfg.anomalies), seed=int(cfg.seed),
                       known_class=cfg.known_class, data_root=cfg.data_root)
    return validation_split(split, int(cfg.seed)) if cfg.eval_on == "val" else split


def _optimizer(net: nn.Module, profile: Profile):
    """The profile's optimiser (AdamW, the paper's; or Adam, DRA's) and StepLR when ``lr_step`` > 0."""
    params = [p for p in net.parameters() if p.requires_grad]
    skip = {id(p) for p in getattr(getattr(net, "method", None), "no_decay_parameters", list)()}  # DPDL's option
    groups = [{"params": [p for p in params if id(p) not in skip]},
              {"params": [p for p in params if id(p) in skip], "weight_decay": 0.0}]
    cls = torch.optim.AdamW if profile.optimizer == "adamw" else torch.optim.Adam
    opt = cls([g for g in groups if g["params"]], lr=profile.lr, weight_decay=profile.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, profile.lr_step, profile.lr_gamma) if profile.lr_step else None
    return opt, sched



def _first_bad(stacked: torch.Tensor, names: list[str], step0: int) -> str | None:
    """The first non-finite (step, term) of an epoch's stacked loss terms (iters, terms) as one sentence."""
    bad = ~torch.isfinite(stacked)
    if not bool(bad.any()):
        return None
    row = int(bad.any(dim=1).nonzero()[0])
    cols = [names[c] for c in bad[row].nonzero().flatten().tolist()]
    term = next((c for c in cols if c != "total"), cols[0])
    value = float(stacked[row, names.index(term)])
    return f"step {step0 + row}: loss term '{term}' is not finite ({value})"


def fit(net: Net, batches, profile: Profile, device: torch.device, progress: bool = False,
        desc: str = "train") -> dict:
    """Optimise ``net`` for ``profile.epochs x profile.iters_per_epoch`` steps on the total of its method's losses.

    ``batches``: a callable ``step -> (x, y)`` or an iterable of ``(x, y)`` (dpdl.batches). Loss values stay on
    the device and are read once per epoch. Returns ``{"curves": {term: [per-epoch means]}, "steps": n,
    "train_s": s, "data_s": s}``. Raises :class:`NonFiniteLossError` naming the first bad step and term."""
    opt, sched = _optimizer(net, profile)
    total = profile.epochs * profile.iters_per_epoch
    source = iter(batches) if not callable(batches) else None
    curves: dict[str, list[float]] = {}
    net.train()
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False, unit="step")
    step, data_s, t0 = 0, 0.0, time.perf_counter()
    for epoch in range(profile.epochs):
        rows, names = [], None
        for _ in range(profile.iters_per_epoch):
            td = time.perf_counter()
            x, y = next(source) if source is not None else batches(step)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            data_s += time.perf_counter() - td
            try:
                terms = net.losses(x, y)
            except Exception:  # an error caused by an earlier non-finite step names that step instead
                bad = _first_bad(torch.stack(rows).cpu(), names, step - len(rows)) if rows else None
                if bad:
                    bar.close()
                    raise NonFiniteLossError(bad) from None
                raise
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            if profile.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), profile.grad_clip)
            opt.step()
            names = names or list(terms)
            rows.append(torch.stack([terms[k].detach().float() for k in names]))
            step += 1
            bar.update(1)
        stacked = torch.stack(rows).cpu()      # the epoch's one host synchronisation
        bad = _first_bad(stacked, names, step - len(rows))
        if bad:
            bar.close()
            raise NonFiniteLossError(bad)
        for k, v in zip(names, stacked.mean(dim=0).tolist()):
            curves.setdefault(k, []).append(v)
        bar.set_postfix(epoch=epoch + 1, loss=f"{curves['total'][-1]:.4f}")
        if sched is not None:
            sched.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    bar.close()
    return {"curves": curves, "steps": total, "train_s": time.perf_counter() - t0, "data_s": data_s}


def _base_record(cfg: RunConfig, profile: Profile, backbone: str, run_id: str) -> dict:
    return {"schema": SCHEMA_VERSION, "status": "running", "error": None, "run_id": run_id,
            "profile": profile.name, "profile_settings": profile.to_dict(), "deviations": profile.deviations(backbone),
            "config": cfg.to_dict(), "method": cfg.method, "dataset": cfg.dataset, "setting": cfg.setting,
            "known_class": cfg.known_class, "anomalies": int(cfg.anomalies), "seed": int(cfg.seed),
            "backbone": backbone, "variant": variant_tag(cfg), "metrics": {"auc": None, "ap": None},
            "split": None, "timings": {}, "code_version": code_version(), "date": utc_now()}


def _train_and_test(cfg: RunConfig, prof: Profile, backbone: str, split, device, progress) -> tuple:
    """(net, setup, labels, scores, timings, train info) of one run: setup, method.init, fit, calibrate, test."""
    timings = {}
    t0 = time.perf_counter()
    setup = (setup_features if prof.feature_cache else setup_images)(cfg, prof, backbone, split, device, progress,
                                                                      method_options(cfg, prof))
    net = setup.net
    seed = int(cfg.seed)
    from .methods import MethodMixin
    if type(net.method).init is not MethodMixin.init:   # DPDL's prototypes, kNN's memory; no pass for the others
        net.method.init(embed_all(net, setup.normal_inputs, device), generator=torch.Generator().manual_seed(seed))
    timings["features_s"] = time.perf_counter() - t0
    train, shared = None, None
    with contextlib.ExitStack() as held:
        if trained_once.applies(net, prof):    # an unsupervised method: one training per dataset and seed
            shared = {"key": trained_once.key(cfg, prof, backbone, method_options(cfg, prof), setup.normal_inputs)}
            held.enter_context(trained_once.claim(shared["key"]))    # a concurrent run of the key waits, then loads
            train = trained_once.load(shared["key"], net)
            shared["reused"] = train is not None
        if net.method.trainable and train is None:
            train = fit(net, setup.batches, prof, device, progress,
                        desc=f"{cfg.method} {cfg.dataset} M={cfg.anomalies} s{cfg.seed}")
            if shared is not None:
                trained_once.store(shared["key"], net, train)
    if train is not None:
        timings.update(train_s=train["train_s"], step_ms=1000.0 * train["train_s"] / max(train["steps"], 1),
                       step_data_ms=1000.0 * train["data_s"] / max(train["steps"], 1), steps=train["steps"])
    if shared is not None:
        timings["train_reused"] = shared["reused"]
        setup.extra["trained_once"] = shared
        torch.manual_seed(seed + trained_once.RNG_OFFSET)   # the same generator state whether trained or loaded
    t1 = time.perf_counter()
    if isinstance(setup.reference_inputs, tuple):   # a pool (DRA reference="code"): each part embedded
        net.method.calibrate(*[embed_all(net, r, device) for r in setup.reference_inputs])
    elif setup.reference_inputs is not None:
        net.method.calibrate(embed_all(net, setup.reference_inputs, device))
    scores = trained_once.evaluate_shared(net, prof, cfg, backbone, method_options(cfg, prof), setup, split,
                                          lambda x: evaluate(net, x, device))   # kNN: each test image scored once
    timings["test_s"] = time.perf_counter() - t1
    labels = np.array([s.label for s in split.test_normal + split.test_anomaly])
    return net, setup, labels, scores, timings, train


def run(cfg: RunConfig, progress: bool = True) -> dict:
    """Train and test one run; returns the record (written to ``cfg.out/run.json`` when ``out`` is set).

    Bad parameters raise ValueError/FileNotFoundError (one sentence) before anything is written. A non-finite
    loss returns (and writes) a record with status ``"failed"`` and the message naming step and term.
    """
    t_start, c_start = time.perf_counter(), time.process_time()
    base_profile, backbone = validate(cfg)
    profile = method_profile(base_profile, cfg.method)
    device = resolve_device(profile.device)
    run_id = cfg.run_id or default_run_id(cfg, backbone)
    record = _base_record(cfg, profile, backbone, run_id)
    record["method_options"] = method_options(cfg, profile)
    from .methods import method_class
    record["records_version"] = int(method_class(cfg.method).records_version)
    out = Path(cfg.out).expanduser() if cfg.out else None
    split = _split(cfg)
    record["split"] = {"fingerprint": split.fingerprint, **split.counts(),
                       "test_anomaly_classes": list(split.test_anomaly_classes),
                       "train_anomaly_keys": [s.key for s in split.train_anomaly]}
    det_was, threads_was = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    if profile.threads:
        torch.set_num_threads(profile.threads)
    timings, train, writers = {}, None, {}
    try:
        net, setup, labels, scores, timings, train = _train_and_test(cfg, profile, backbone, split, device, progress)
        record.update(setup.extra)
        record["batch"] = setup.composition.to_dict()
        record["dpdl_config"] = record["method_options"] if cfg.method == "dpdl" else None
        record["metrics"] = roc_metrics(labels, scores)
        record["status"] = "ok"
        if out is not None:
            meta = {"method": cfg.method, "method_options": record["method_options"], "config": cfg.to_dict(),
                    "profile": profile.to_dict(), "backbone": setup.extra.get("backbone_info"),
                    "weights": cfg.weights, "adapter_dim": net.adapter.dim,
                    "feature_shape": list(feature_shape(backbone, profile.feature_layers, profile.image_size,
                                                        profile.map_size))}
            test = split.test_normal + split.test_anomaly
            score_blob = {"keys": [s.key for s in test], "labels": labels.tolist(), "classes": [s.cls for s in test],
                          "scores": [float(v) for v in scores]}
            writers = {"model.pt": lambda path: net.save(path, meta),
                       "scores.json": lambda path: atomic_write_json(path, score_blob)}
    except NonFiniteLossError as exc:
        record["status"], record["error"] = "failed", str(exc)
    except (ValueError, OSError):  # bad input found mid-run (an unreadable image, a bad option): nothing written
        raise
    except Exception as exc:  # a bug mid-run: leave a failed record behind (never over a finished one), then raise
        record["status"], record["error"] = "failed", f"{type(exc).__name__}: {exc}"
        if out is not None:
            record["timings"] = {"total_s": round(time.perf_counter() - t_start, 4)}
            record["host"] = host_info(device)
            write_failed_record(out, record)
        raise
    finally:
        torch.use_deterministic_algorithms(det_was)
        torch.set_num_threads(threads_was)
    if train:
        record["losses"] = train["curves"]
    timings["total_s"] = time.perf_counter() - t_start
    timings["cpu_s"] = time.process_time() - c_start  # CPU time of this process (all threads)
    record["timings"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in timings.items()}
    record["host"] = host_info(device)
    record["host"]["threads"] = profile.threads or threads_was
    if out is not None and record["status"] == "ok":
        write_run_files(out, {**writers, "run.json": lambda path: atomic_write_json(path, _jsonable(record))})
    elif out is not None:
        write_failed_record(out, record)
    return record


def write_failed_record(out: Path, record: dict) -> Path:
    """Write a failed run's record: ``out/run.json``, unless ``out`` holds a finished run, which is kept (the
    failed attempt's record then goes to ``out/run.failed.json``). Returns the path written."""
    path = out / ("run.failed.json" if holds_finished_run(out) else "run.json")
    atomic_write_json(path, _jsonable(record))
    return path


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

