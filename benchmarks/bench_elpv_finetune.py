"""Diagnostic: does fine-tuning the backbone's last stage close the cpu profile's AUC gap on ELPV?

The ``cpu`` profile freezes EfficientNet-Lite0 and trains an adapter + DPDL on cached maps (``mid+last`` taps pooled
to 7x7). The paper fine-tunes the whole ResNet-18. This script keeps everything of the cpu profile (split, batches,
cached CutMix pseudo anomalies, d4 augmentation, adapter, DPDL, lr, steps) but makes the last stage (blocks 11-15,
14x14x112 -> 7x7x320) trainable: its input, the cached ``mid`` tap, is the only thing read from the cache, and the
d4 augmentation turns that 14x14 map. The stage's BatchNorm statistics stay frozen (ImageNet's), as is usual when
fine-tuning on a few hundred images. Both variants of each (cell, seed) are run here, so the comparison is paired.

Variants (``--variants``): DPDL in full and the Fig. 2 ablations without DPL / without DFL, each under the code's
default reading (each row records ``method_options``: reading, λ); ``--finetune-only`` skips the frozen runs (the
frozen ablations are the study's Fig. 2 records). Scored on the TEST split of the cell, as Fig. 2's records: a
diagnostic that reports, it chooses nothing.

Usage:
  python benchmarks/bench_elpv_finetune.py --cells general:1,general:10 --seeds 0,1,2
  python benchmarks/bench_elpv_finetune.py --cells general:10 --seeds 0,1,2 --variants full,no_dpl,no_dfl
      --finetune-only --tag _bridge      (one command; add --render to rewrite only the .md from the .json)
Result: results/benchmarks/elpv_cpu_finetune_last{tag}.json (AUC per run, frozen and/or fine-tuned, step time;
with --tag, rows already in that file are kept and not rerun; its "paired_finetuned" holds full − no_dpl and
full − no_dfl over the fine-tuned seeds with 95 % t-intervals, and the .md beside it shows them). It is a
diagnostic, not a profile: a fine-tuned step cost 17x a frozen one here (about 1 s, see ``step_ms``).
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


VARIANTS = {"full": {}, "no_dpl": {"use_dpl": False}, "no_dfl": {"use_dfl": False}}


def one(setting: str, known, m: int, seed: int, finetune: bool, variant: str = "full") -> dict:
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
    cfg = RunConfig("elpv", setting=setting, known_class=known, anomalies=m, seed=seed, profile="cpu",
                    **VARIANTS[variant])
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
           "variant": variant, "method_options": method_options(cfg, prof), **roc_metrics(labels, scores),
           "train_s": train_s, "step_ms": 1000 * train_s / train["steps"],
           "split_fingerprint": split.fingerprint}
    print(json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", default="general:1,general:10", help="setting[/known]:M, comma-separated")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--tag", default="")
    ap.add_argument("--variants", default="full", help=f"comma-separated, among {', '.join(VARIANTS)}")
    ap.add_argument("--finetune-only", action="store_true", help="skip the frozen runs")
    ap.add_argument("--render", action="store_true", help="with --tag: only rewrite the .md from the .json")
    a = ap.parse_args()
    if a.render:
        from types import SimpleNamespace

        from _common import ROOT
        name = f"elpv_cpu_finetune_last{a.tag}"
        data = json.loads((ROOT / "results" / "benchmarks" / f"{name}.json").read_text())
        args = SimpleNamespace(**data.get("args", {"cells": a.cells, "seeds": a.seeds, "variants": a.variants,
                                                    "finetune_only": a.finetune_only}))
        (ROOT / "results" / "benchmarks" / f"{name}.md").write_text(markdown(result(data["rows"], args), name))
        return
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
    variants = a.variants.split(",")
    if any(v not in VARIANTS for v in variants):
        ap.error(f"--variants: {a.variants!r} must list variants among {', '.join(VARIANTS)}")
    from _common import ROOT
    name = f"elpv_cpu_finetune_last{a.tag}"
    path = ROOT / "results" / "benchmarks" / f"{name}.json"
    rows = json.loads(path.read_text())["rows"] if a.tag and path.exists() else []
    done = {_key(r) for r in rows}
    for setting, known, m in cells:
        for s in seeds:
            for variant in variants:
                for ft in ((True,) if a.finetune_only else (False, True)):
                    if (setting, known, m, s, ft, variant) in done:
                        continue
                    rows.append(one(setting, known, m, s, ft, variant))
                    write(name, result(rows, a))
    write(name, result(rows, a))
    if a.tag:
        path.with_suffix(".md").write_text(markdown(result(rows, a), name))


def markdown(res: dict, name: str) -> str:
    """The fine-tuned runs of ``res`` as Markdown (results/benchmarks/<name>.md, included by the Fig. 2 page): AUC
    per variant and seed, and the paired differences full − no_dpl, full − no_dfl with their 95 % t-intervals."""
    tuned = [r for r in res["rows"] if r["finetune_last_stage"]]
    reading = sorted({f"`dpl_loss=\"{r['method_options'].get('dpl_loss')}\"`, λ = {r['method_options'].get('lam')}"
                      for r in tuned if "method_options" in r})
    seeds = sorted({r["seed"] for r in tuned})
    a = res["args"]
    lines = [f"Generated by `python benchmarks/bench_elpv_finetune.py --cells {a['cells']} --seeds {a['seeds']} "
             f"--variants {a['variants']} --finetune-only --tag {name.removeprefix('elpv_cpu_finetune_last')}` "
             f"(ELPV test cells, cpu profile with the backbone's last stage trainable; reading {', '.join(reading)}; "
             f"`results/benchmarks/{name}.json`). Seeds {', '.join(map(str, seeds))}.", "",
             "| cell | variant | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|---|" + "---|" * len(seeds)]
    for cell in dict.fromkeys(_cell(r) for r in tuned):
        for variant in VARIANTS:
            auc = {r["seed"]: r["auc"] for r in tuned if _cell(r) == cell and r.get("variant", "full") == variant}
            if auc:
                lines.append(f"| {cell} | {variant} | " + " | ".join(f"{auc[s]:.3f}" if s in auc else ""
                                                                    for s in seeds) + " |")
    lines += ["", "| cell | paired difference | per seed | mean [95 % t-interval] |", "|---|---|---|---|"]
    for cell in dict.fromkeys(_cell(r) for r in tuned):
        auc = {(r["seed"], r.get("variant", "full")): r["auc"] for r in tuned if _cell(r) == cell}
        for other in ("no_dpl", "no_dfl"):
            diffs = {sd: a_ - auc[(sd, other)] for (sd, v), a_ in auc.items() if v == "full" and (sd, other) in auc}
            if not diffs:
                continue
            iv = res["paired_finetuned"].get(cell, {}).get(f"full - {other}")
            lines.append(f"| {cell} | full − {other} | " + ", ".join(f"{d:+.3f} (seed {sd})" for sd, d in
                                                                   sorted(diffs.items())) + " | "
                         + (f"{iv['mean']:+.3f} [{iv['lo']:+.3f}, {iv['hi']:+.3f}]" if iv else
                            "no interval: one seed") + " |")
    return "\n".join(lines) + "\n"


def _key(r: dict) -> tuple:
    return r["setting"], r["known_class"], r["anomalies"], r["seed"], r["finetune_last_stage"], r.get("variant", "full")


def _cell(r: dict) -> str:
    return f"{r['setting']}{'/' + r['known_class'] if r['known_class'] else ''} M={r['anomalies']}"


def result(rows: list[dict], a) -> dict:
    """The JSON payload: rows, mean AUC per (cell, variant, frozen/fine-tuned), and the paired differences full −
    no_dpl, full − no_dfl over the seeds both have (95 % t-interval, dpdl.study.analysis.interval)."""
    from dpdl.study.analysis import interval
    cells, by_variant, paired = {}, {}, {}
    for r in rows:
        key = _cell(r)
        kind = ("finetuned" if r["finetune_last_stage"] else "frozen") + (
            "" if r.get("variant", "full") == "full" else f" {r['variant']}")
        if r.get("variant", "full") == "full":      # "cells": the full runs (the Performance page's table)
            cells.setdefault(key, {}).setdefault(kind, []).append(r["auc"])
        by_variant.setdefault(key, {}).setdefault(kind, []).append(r["auc"])
    by = {(_cell(q), q["seed"], q.get("variant", "full")): q["auc"] for q in rows if q["finetune_last_stage"]}
    for ck in dict.fromkeys(c for c, _, _ in by):
        for other in ("no_dpl", "no_dfl"):
            diffs = {sd: auc - by[(ck, sd, other)] for (c, sd, v), auc in by.items()
                     if c == ck and v == "full" and (ck, sd, other) in by}
            if len(diffs) >= 2:
                paired.setdefault(ck, {})[f"full - {other}"] = {**interval(list(diffs.values())),
                                                                 "seeds": sorted(diffs)}
    mean = lambda c: {k: {v: {"mean": statistics.fmean(x), "n": len(x)} for v, x in d.items()}  # noqa: E731
                      for k, d in c.items()}
    return {"rows": rows, "cells": mean(cells), "cells_by_variant": mean(by_variant), "paired_finetuned": paired,
            "args": {"cells": a.cells, "seeds": a.seeds, "variants": a.variants, "finetune_only": a.finetune_only}}


if __name__ == "__main__":
    main()
