"""The on-disk feature cache: hit equals miss, stale or corrupt entries are rebuilt."""
from __future__ import annotations

import os

import torch

from dpdl.backbones import build_backbone
from dpdl.data import make_split
from dpdl.features import FeatureCache, Item, extract_uncached


def _items(n=6):
    split = make_split("synthetic", anomalies=2, seed=0)
    return [Item(s) for s in split.train_normal[:n]] + [Item(split.train_normal[0], 0)]


def test_second_call_loads_from_disk_and_equals_first(tmp_path):
    net = build_backbone("mobilenet_v2", "mid+last", image_size=32).freeze()
    items = _items()
    c1 = FeatureCache(net, 32, "synthetic", root=tmp_path)
    f1 = c1.get(items)
    assert c1.stats.misses == len(items) and c1.stats.hits == 0
    c2 = FeatureCache(net, 32, "synthetic", root=tmp_path)
    f2 = c2.get(items)
    assert c2.stats.hits == len(items) and c2.stats.misses == 0
    assert torch.equal(f1, f2)
    ref = extract_uncached(net, items, 32)
    assert torch.allclose(f1.float(), ref, atol=2e-2, rtol=1e-2)  # float16 storage
    assert not torch.equal(f1[0], f1[-1])  # the pseudo anomaly is its own entry


def test_corrupt_and_stale_entries_are_rebuilt(tmp_path):
    net = build_backbone("mobilenet_v2", "last", image_size=32).freeze()
    items = _items(3)
    cache = FeatureCache(net, 32, "synthetic", root=tmp_path)
    f1 = cache.get(items)
    cache.path(items[0]).write_bytes(b"not a tensor file")                    # corrupt
    blob = torch.load(cache.path(items[1]), weights_only=True)
    blob["meta"]["source"] = "some other image"                               # stale
    torch.save(blob, cache.path(items[1]))
    c2 = FeatureCache(net, 32, "synthetic", root=tmp_path)
    f2 = c2.get(items)
    assert c2.stats.rebuilt == 2 and c2.stats.hits == len(items) - 2
    assert torch.equal(f1, f2)
    # the image file changing (mtime) makes its entry stale too
    p = items[2].sample.path
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    c3 = FeatureCache(net, 32, "synthetic", root=tmp_path)
    c3.get(items)
    assert c3.stats.rebuilt >= 1
