"""Diagnostic: does fine-tuning the backbone's last stage close the cpu profile's AUC gap on ELPV?

The ``cpu`` profile freezes EfficientNet-Lite0 and trains an adapter + DPDL on cached maps (``mid+last`` taps pooled
to 7x7). The paper fine-tunes the whole ResNet-18. This script keeps everything of the cpu profile (split, batches,
cached CutMix pseudo anomalies, d4 augmentation, adapter, DPDL, lr, steps) but makes the last stage (blocks 11-15,
14x14x112 -> 7x7x320) trainable: its input, the cached ``mid`` tap, is the only thing read from the cache, and the
d4 augmentation turns that 14x14 map. The stage's BatchNorm statistics stay frozen (ImageNet's), as is usual when
fine-tuning on a few hundred images. Both variants of each (cell, seed) are run here, so the comparison is paired.

Usage:
  python benchmarks/bench_elpv_finetune.py --cells general:1,general:10 --seeds 0,1,2
Result: results/benchmarks/elpv_cpu_finetune_last.json (AUC per run, frozen and fine-tuned, and the step time).
It is a diagnostic, not a profile: a fine-tuned step cost 17x a frozen one here (about 1 s, see ``step_ms``).
"""
from __future__ import annotations

import argparse
import json
import statistics

import torch
from torch import nn

from _common import write


class LastStage(nn.Module):
    """Cached ``mid`` maps (B, 112, 14, 14) -> the cpu profile's map (B, 432, 7, 7): trainable last stage, frozen BN."""

    def __init__(self, extractor):
        super().__init__()
        self.stage = extractor.stages[2]
        self.layers, self.map_size = extractor.layers, extractor.map_size

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, mid):
        from dpdl.backbones import combine_taps
        mid = mid.float()
        return combine_taps({"mid": mid, "last": self.stage(mid)}, self.layers, self.map_size)


def one(setting: str, known, m: int, seed: int, finetune: bool) -> dict:
    from dpdl.backbones import build_backbone
    from dpdl.config import get_profile
    from dpdl.data import make_split
    from dpdl.features import FeatureCache, Item, combine_all
    from dpdl.batches import FeatureBatches
    from dpdl.methods import build_method
    from dpdl.net import Adapter, Net
    from dpdl.train import RunConfig, embed_all, evaluate, fit, method_options, roc_metrics, seed_everything
    prof = get_profile("cpu")
    torch.set_num_threads(prof.threads or torch.get_num_threads())
    cfg = RunConfig("elpv", setting=setting, known_class=known, anomalies=m, seed=seed, profile="cpu")
    split = make_split("elpv", setting=setting, known_class=known, anomalies=m, seed=seed)
    ext = build_backbone(prof.backbone, prof.feature_layers, image_size=prof.image_size, map_size=prof.map_size)
    ext = ext.freeze()
    cache = FeatureCache(ext, prof.image_size, split.dataset)
    test = split.test_normal + split.test_anomaly
    groups = {"norm": [Item(s) for s in split.train_normal], "seen": [Item(s) for s in split.train_anomaly],
              "pseudo": [Item(s, v) for v in range(prof.pseudo_per_image) for s in split.train_normal],
              "test": [Item(s) for s in test]}
    taps = {k: cache.get_taps(v) for k, v in groups.items()}
    combined = {k: combine_all(t, ext.layers, map_size=ext.map_size) for k, t in taps.items()}
    inputs = {k: t["mid"] for k, t in taps.items()} if finetune else combined

    seed_everything(seed)
    c, h, w = combined["norm"].shape[1:]
    adapter = Adapter(c, prof.adapter_dim)
    adapter.calibrate(combined["norm"])
    method = build_method("dpdl", adapter.out_channels, (h, w), method_options(cfg, prof))
    backbone = None
    if finetune:
        backbone = LastStage(ext)
        for p in backbone.parameters():
            p.requires_grad_(True)
    net, cpu = Net(adapter, method, backbone), torch.device("cpu")
    method.init(embed_all(net, inputs["norm"], cpu), generator=torch.Generator().manual_seed(seed))
    comp = method.composition(prof, len(inputs["seen"]), len(inputs["pseudo"]) > 0)
    batches = FeatureBatches(inputs["norm"], inputs["seen"], inputs["pseudo"], comp, seed, prof.feature_aug)
    train = fit(net, batches, prof, cpu)
    train_s = train["train_s"]
    scores = evaluate(net, inputs["test"], cpu)
    labels = [s.label for s in test]
    row = {"setting": setting, "known_class": known, "anomalies": m, "seed": seed, "finetune_last_stage": finetune,
           **roc_metrics(labels, scores), "train_s": train_s, "step_ms": 1000 * train_s / train["steps"],
           "split_fingerprint": split.fingerprint}
    print(json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", default="general:1,general:10", help="setting[/known]:M, comma-separated")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    cells = []
    for cell in a.cells.split(","):
        where, _, m = cell.partition(":")
        setting, _, known = where.partition("/")
        if setting not in ("general", "hard") or not m.isdigit() or (setting == "hard") != bool(known):
            ap.error(f"--cells: {cell!r} is not setting[/known]:M (e.g. general:1 or hard/mono:10)")
        cells.append((setting, known or None, int(m)))
    try:
        seeds = [int(v) for v in a.seeds.split(",")]
    except ValueError:
        ap.error(f"--seeds: {a.seeds!r} is not a comma-separated list of integers")
    rows = []
    for setting, known, m in cells:
        for s in seeds:
            for ft in (False, True):
                rows.append(one(setting, known, m, s, ft))
    cells = {}
    for r in rows:
        key = f"{r['setting']}{'/' + r['known_class'] if r['known_class'] else ''} M={r['anomalies']}"
        cells.setdefault(key, {}).setdefault("finetuned" if r["finetune_last_stage"] else "frozen", []).append(r["auc"])
    summary = {k: {v: {"mean": statistics.fmean(x), "n": len(x)} for v, x in d.items()} for k, d in cells.items()}
    write(f"elpv_cpu_finetune_last{a.tag}", {"rows": rows, "cells": summary})


if __name__ == "__main__":
    main()
