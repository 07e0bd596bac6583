"""The two modes of a run: what each prepares before training (the net, its batches, the inputs to score).

* **feature mode** (``cpu``, ``smoke``): :func:`setup_features`: cached frozen-backbone maps (dpdl.features), an
  adapter calibrated on the training normals, the method on top; :func:`prepare_features` fills the cache.
* **image mode** (``paper``): :func:`setup_images`: the backbone inside the net (fine-tuned), images through
  DataLoaders as uint8, converted on the device.

``cfg`` is a :class:`dpdl.train.RunConfig` (its seed, method, weights), ``options`` the method's validated
config (dpdl.train.method_options).
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .backbones import build_backbone, check_backbone, feature_shape
from .batches import FeatureBatches, ImageBatches, image_loader, preload_images
from .config import Profile, get_profile
from .features import FeatureCache, Item
from .methods import build_method, method_class
from .net import Adapter, Net


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


@torch.no_grad()
def embed_all(net: Net, inputs, device: torch.device, chunk: int = 256) -> torch.Tensor:
    """The method inputs (N, C, H, W) of maps (a tensor) or images (a DataLoader of uint8 batches), eval mode; a
    list of them, one per scale, when the net embeds at several scales (dpdl.net.Net.scales)."""
    was = net.training
    net.eval()
    parts = inputs.split(chunk) if isinstance(inputs, torch.Tensor) else inputs
    out = [net.embed(x.to(device, non_blocking=True)) for x in parts]
    net.train(was)
    if out and isinstance(out[0], list):
        return [torch.cat([o[i] for o in out]) for i in range(len(out[0]))]
    return torch.cat(out)


def evaluate(net: Net, inputs, device: torch.device) -> np.ndarray:
    """Anomaly scores (N,) of maps (a tensor) or images (a DataLoader of uint8 batches), in order."""
    if isinstance(inputs, torch.Tensor):
        return net.score(inputs).numpy()
    return torch.cat([net.score(x.to(device, non_blocking=True)) for x in inputs]).numpy()


@dataclass
class Setup:
    """What a mode prepares for a run: the net, its batches, and the inputs for init / reference / test."""

    net: Net
    batches: object                 # FeatureBatches or ImageBatches
    normal_inputs: object           # training normals (maps, or uint8 images (N, 3, S, S)): method.init
    reference_inputs: object        # n_reference training normals (maps or uint8 images) or None: calibrate
    test_inputs: object             # test maps or image DataLoader
    composition: object
    extra: dict = field(default_factory=dict)


def _reference_rows(n_normal: int, k: int, seed: int) -> list[int]:
    return sorted(torch.randperm(n_normal, generator=torch.Generator().manual_seed(int(seed) + 1))[:k].tolist())


def setup_features(cfg, prof: Profile, backbone: str, split, device, progress: bool, options: dict) -> Setup:
    """Feature mode: cached frozen-backbone maps -> adapter (calibrated on the normals) -> method."""
    extractor = build_backbone(backbone, prof.feature_layers, weights=cfg.weights, image_size=prof.image_size,
                               map_size=prof.map_size).freeze().to(device)
    cache = FeatureCache(extractor, prof.image_size, split.dataset)
    kw = dict(progress=progress)
    f_norm = cache.get([Item(s) for s in split.train_normal], desc="train normal features", **kw)
    f_seen = cache.get([Item(s) for s in split.train_anomaly], desc="seen anomaly features", **kw)
    pseudo_items = [Item(s, v) for v in range(prof.pseudo_per_image) for s in split.train_normal]
    f_pseudo = cache.get(pseudo_items, desc="pseudo anomaly features", **kw)
    f_test = cache.get([Item(s) for s in split.test_normal + split.test_anomaly], desc="test features", **kw)
    extra = {"backbone_info": extractor.describe(), "feature_cache": {**cache.stats.to_dict(), "dir": str(cache.dir)}}
    seed_everything(cfg.seed)
    mcls = method_class(cfg.method)
    c, h, w = f_norm.shape[1:]
    adapter = Adapter(c, prof.adapter_dim if mcls.uses_adapter else 0)
    adapter.calibrate(f_norm)
    net = Net(adapter, build_method(cfg.method, adapter.out_channels, (h, w), options)).to(device)
    if net.method.unsupervised:   # normals only: the batches (and their randomness) do not depend on M
        f_seen, f_pseudo = f_seen[:0], f_pseudo[:0]
    comp = net.method.composition(prof, len(f_seen), len(f_pseudo) > 0)
    batches = FeatureBatches(f_norm, f_seen, f_pseudo, comp, cfg.seed, prof.feature_aug)
    ref = f_norm[_reference_rows(len(f_norm), comp.reference, cfg.seed)] if comp.reference else None
    if getattr(net.method, "reference_pool", False):   # references drawn per test image (DRA reference="code")
        ref = (f_norm, f_pseudo)
    return Setup(net, batches, f_norm, ref, f_test, comp, extra)


def setup_images(cfg, prof: Profile, backbone_name: str, split, device, progress: bool, options: dict) -> Setup:
    """Image mode (``paper``): backbone inside the net (fine-tuned unless the profile freezes it)."""
    if options.get("reference") == "code":
        raise ValueError(f"method option reference='code' is implemented in feature mode only, not in profile "
                         f"{prof.name!r} (image mode)")
    seed_everything(cfg.seed)
    backbone = build_backbone(backbone_name, prof.feature_layers, weights=cfg.weights, image_size=prof.image_size,
                              map_size=prof.map_size)
    if not prof.finetune_backbone:
        backbone.freeze()
    mcls = method_class(cfg.method)
    c, h, w = feature_shape(backbone_name, prof.feature_layers, prof.image_size, prof.map_size)
    adapter = Adapter(c, prof.adapter_dim if mcls.uses_adapter else 0)
    net = Net(adapter, build_method(cfg.method, adapter.out_channels, (h, w), options), backbone,
              scales=prof.scale_sides()[1:], autocast=prof.autocast, channels_last=prof.channels_last).to(device)
    pin = device.type == "cuda"
    prof = replace(prof, num_workers=min(prof.num_workers, os.cpu_count() or 1))   # no more workers than cores
    comp = net.method.composition(prof, len(split.train_anomaly), prof.pseudo_per_image > 0)
    steps = prof.epochs * prof.iters_per_epoch if mcls.trainable else 0
    normal_u8 = preload_images(split.train_normal, prof.image_size, prof.num_workers)   # decoded once
    seen_u8 = preload_images(split.train_anomaly, prof.image_size, prof.num_workers)
    batches = ImageBatches(split.train_normal, split.train_anomaly, comp, steps, prof.image_size, cfg.seed,
                           prof.num_workers, pin, rotate=prof.rotate, normal_u8=normal_u8, seen_u8=seen_u8)
    load = dict(size=prof.image_size, num_workers=prof.num_workers, pin_memory=pin)
    ref = _reference_rows(len(split.train_normal), comp.reference, cfg.seed) if comp.reference else None
    return Setup(net, batches, normal_u8, normal_u8[ref] if ref else None,
                 image_loader(split.test_normal + split.test_anomaly, **load), comp,
                 {"backbone_info": backbone.describe()})


def prepare_features(dataset: str, profile: str = "cpu", backbone: str | None = None, data_root: str | None = None,
                     weights: str | None = None, overrides: dict | None = None, progress: bool = True,
                     shard: tuple[int, int] = (0, 1)) -> dict:
    """Fill the feature cache for every image a run on ``dataset`` may need (all normals, all anomalies, the pseudo
    anomalies of the training normals), so that later runs (in parallel, any seed/M/setting) only read it.
    ``shard=(k, n)``: only every n-th of those items, from the k-th (:func:`prepare_features_parallel`).

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
    k, n = shard
    items = items[k::n]
    threads_was = torch.get_num_threads()
    if prof.threads:
        torch.set_num_threads(prof.threads)
    try:
        cache.get_taps(items, progress=progress, desc=f"{dataset} features")
    finally:
        torch.set_num_threads(threads_was)
    return {"dataset": dataset, "backbone": name, "image_size": prof.image_size, "items": len(items),
            "seconds": time.perf_counter() - t0, **cache.stats.to_dict(), "dir": str(cache.dir)}


FILL_WORKERS_MAX = 8   # cache-filling processes at most (each holds a backbone and torch: about 0.5 GB)


def prepare_features_parallel(datasets, profile: str = "cpu", data_root: str | None = None,
                              workers: int | None = None, initializer=None) -> dict[str, dict | Exception]:
    """:func:`prepare_features` of each dataset with ``workers`` processes (default: one per CPU core, at most
    :data:`FILL_WORKERS_MAX`), each filling
    every ``workers``-th item on one thread: extraction is single-threaded for reproducibility
    (dpdl.features.EXTRACT_THREADS), so processes are how a cold cache uses the cores. Entries are written atomically,
    so the shards share the cache safely. Returns ``{dataset: statistics summed over its shards, with "seconds"
    the wall time until its last shard ended}``, or the exception of a dataset that could not be prepared.
    ``initializer``: run first in each worker process (the sweep's: end with the process that started it)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    datasets = list(datasets)
    n = max(1, int(workers or min(os.cpu_count() or 1, FILL_WORKERS_MAX)))
    t0, out = time.perf_counter(), {}
    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"), initializer=initializer) as pool:
        futs = {d: [pool.submit(prepare_features, d, profile, data_root=data_root, overrides={"threads": 1},
                                progress=False, shard=(k, n))
                    for k in range(n)] for d in datasets}
        for d, fs in futs.items():
            try:
                parts = [f.result() for f in fs]
            except Exception as exc:  # noqa: BLE001 - reported per dataset by the caller
                out[d] = exc
                continue
            info = {**parts[0], "seconds": time.perf_counter() - t0}
            for key in ("items", "hits", "misses", "rebuilt", "load_s", "extract_s"):
                info[key] = sum(p.get(key, 0) for p in parts)
            out[d] = info
    return out
