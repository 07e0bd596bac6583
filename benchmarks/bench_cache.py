"""Feature cache vs re-extracting: time to get the backbone maps of N ELPV images both ways (``cpu`` profile).

Usage: python benchmarks/bench_cache.py [--n 128] [--backbone mobilenet_v2]
"""
from __future__ import annotations

import argparse
import tempfile
import time

from _common import write


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--backbone", default=None)
    a = ap.parse_args()
    import torch
    from dpdl.backbones import build_backbone
    from dpdl.config import get_profile
    from dpdl.data import make_split
    from dpdl.features import FeatureCache, Item, extract_uncached
    prof = get_profile("cpu")
    name = a.backbone or prof.backbone
    split = make_split("elpv", anomalies=10, seed=0)
    items = [Item(s) for s in split.test_normal[:a.n]]
    net = build_backbone(name, prof.feature_layers, image_size=prof.image_size, map_size=prof.map_size).freeze()
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(net, prof.image_size, "elpv", root=tmp)
        t = time.perf_counter(); cold = cache.get(items); t_fill = time.perf_counter() - t
        t = time.perf_counter(); ref = extract_uncached(net, items, prof.image_size); t_extract = time.perf_counter() - t
        c2 = FeatureCache(net, prof.image_size, "elpv", root=tmp)
        t = time.perf_counter(); warm = c2.get(items); t_cached = time.perf_counter() - t
        assert torch.equal(cold, warm) and c2.stats.hits == len(items)
        err = float((warm.float() - ref).abs().max())
    write("feature_cache", {"backbone": name, "image_size": prof.image_size, "layers": prof.feature_layers,
                            "n_images": len(items), "extract_s": t_extract, "cached_s": t_cached,
                            "first_fill_s": t_fill, "speedup": t_extract / t_cached,
                            "max_abs_diff_float16": err, "per_image_ms": {"extract": 1000 * t_extract / len(items),
                                                                          "cached": 1000 * t_cached / len(items)}})


if __name__ == "__main__":
    main()
