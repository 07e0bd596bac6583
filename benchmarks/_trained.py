"""Shared by bench_dpl_signs.py and bench_prototype_sensitivity.py: a DPDL model trained on ELPV's reduced training
split (general, M = 10, cpu profile, the code's default reading and the paper's λ) and its validation split's
embedded features. The test images are never read. Models are kept in $DPDL_CACHE/bench_models/ (refilled at will).
"""
from __future__ import annotations

from pathlib import Path

import torch


# the DPDLConfig fields that make a reading (bench_dpdl_readings.READINGS' keys): a cached model is named by their
# resolved values, so that a change of the code's default reading never reuses a model trained under the old one
READING_FIELDS = ("alpha_param", "bridge_input", "dpl_loss", "residual", "log_sigma_bound", "prototype_decay",
                  "dpl_margin", "dpl_weight")


def resolved(options: dict) -> dict:
    """``options`` over the code's default reading (DPDLConfig's values of READING_FIELDS)."""
    from dpdl.methods.dpdl.model import DPDLConfig
    default = DPDLConfig()
    return {**{k: getattr(default, k) for k in READING_FIELDS}, **options}


def model_dir(seed: int, steps: int | None, options: dict) -> Path:
    from dpdl.paths import cache_dir
    tag = "_".join(f"{k}={v}" for k, v in sorted(resolved(options).items()))
    return cache_dir() / "bench_models" / f"elpv_general_M10_s{seed}_{'init' if steps else 'trained'}_{tag}"


def trained(seed: int, steps: int | None = None, options: dict | None = None):
    """(TrainedModel, run record) of DPDL on ELPV general M = 10, ``eval_on="val"``; ``steps``: train that many steps
    only (1: the model at its initialisation, after one step)."""
    import json

    from dpdl.score import load_trained
    from dpdl.train import RunConfig, run
    options = resolved(options or {})
    out = model_dir(seed, steps, options)
    rec = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    stale = any(rec.get("method_options", {}).get(k) != v for k, v in options.items())
    if stale or not (out / "model.pt").exists():
        over = {"epochs": 1, "iters_per_epoch": int(steps)} if steps else {}
        run(RunConfig("elpv", anomalies=10, seed=seed, profile="cpu", eval_on="val", out=str(out), overrides=over,
                      method_options=options, overwrite=True), progress=False)
    return load_trained(out), json.loads((out / "run.json").read_text())


def features(model, seed: int):
    """Embedded maps (x (N, C, H, W), y (N,) 1 = anomaly) of the reduced training split (normals, seen anomalies)
    and of the validation split, as the trained net sees them; and the raw cached maps of the validation split."""
    from dpdl.data import make_split, validation_split
    from dpdl.features import FeatureCache, Item
    split = validation_split(make_split("elpv", setting="general", anomalies=10, seed=seed), seed)
    cache = FeatureCache(model.extractor, model.image_size, split.dataset)
    out = {}
    for part, (normal, anomal) in {"train": (split.train_normal, split.train_anomaly),
                                   "val": (split.test_normal, split.test_anomaly)}.items():
        raw = cache.get([Item(s) for s in list(normal) + list(anomal)])
        y = torch.tensor([0.0] * len(normal) + [1.0] * len(anomal))
        with torch.no_grad():
            x = model.net.embed(raw)
        out[part] = (x, y, raw)
    return out
