"""The on-disk feature cache: hit equals miss, stale or corrupt entries are rebuilt."""
from __future__ import annotations

import os

import torch

from dpdl.backbones import build_backbone
from dpdl.data import make_split, make_synthetic
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
    # a copy with the same bytes (a new mtime) keeps its entries; other bytes make the entry stale
    root = make_synthetic(tmp_path / "data", n_train=6, n_test_normal=2, n_per_class=1)
    own = [Item(s) for s in make_split("folder", anomalies=1, seed=0, data_root=str(root)).train_normal[:2]]
    FeatureCache(net, 32, "own", root=tmp_path).get(own)
    os.utime(own[0].sample.path, ns=(1, 1))
    same = FeatureCache(net, 32, "own", root=tmp_path)
    same.get(own)
    assert same.stats.rebuilt == 0 and same.stats.hits == 2
    _repaint(own[0].sample.path)
    changed = FeatureCache(net, 32, "own", root=tmp_path)
    changed.get(own)
    assert changed.stats.rebuilt == 1 and changed.stats.hits == 1


def _repaint(path):
    """Rewrite an image file with other pixels (same name and format)."""
    from PIL import Image, ImageOps
    with Image.open(path) as im:
        out = ImageOps.invert(im.convert("RGB"))
    out.save(path)


def test_cached_maps_do_not_depend_on_the_process_thread_count(tmp_path):
    """Extraction runs on one thread (EXTRACT_THREADS): a process set to 2 threads writes the same bytes as one set
    to 1 (oneDNN's convolutions round differently with 1 and 2 threads, so without the pin they differ)."""
    if (os.cpu_count() or 1) < 2:
        import pytest
        pytest.skip("needs 2 cores")
    net = build_backbone("mobilenet_v2", "mid+last", image_size=64).freeze()
    items = _items(4)
    was = torch.get_num_threads()
    try:
        maps = {}
        for th in (1, 2):
            torch.set_num_threads(th)
            maps[th] = FeatureCache(net, 64, "synthetic", root=tmp_path / str(th)).get(items)
            assert torch.get_num_threads() == th              # the process's own setting is given back
    finally:
        torch.set_num_threads(was)
    assert torch.equal(maps[1], maps[2])


def test_stale_entries_are_reported_in_one_line(tmp_path, caplog):
    """A changed dataset makes every entry stale: one warning for the batch, not one per file."""
    import logging
    import os

    from dpdl.features import FeatureCache, Item
    from dpdl.backbones import build_backbone
    from dpdl.data import make_split
    from dpdl.data import make_synthetic
    root = make_synthetic(tmp_path / "data", n_train=12, n_test_normal=4, n_per_class=2)
    split = make_split("folder", anomalies=1, seed=0, data_root=str(root))
    items = [Item(s) for s in split.train_normal[:5]]
    ex = build_backbone("mobilenet_v2", "last", image_size=32).freeze()
    cache = FeatureCache(ex, 32, "synthetic", root=tmp_path / "cache")
    cache.get(items)
    for it in items:                                   # new pixels: every entry is now stale
        _repaint(it.sample.path)
    with caplog.at_level(logging.WARNING, logger="dpdl.features"):
        cache.get(items)
    lines = [r for r in caplog.records if "stale or corrupt" in r.getMessage()]
    assert len(lines) == 1 and lines[0].getMessage().startswith("5 feature cache entries")
    assert cache.stats.rebuilt == 5


def test_a_cached_map_does_not_depend_on_what_else_was_extracted(tmp_path):
    """Maps extracted alone and among others are bit-identical (one forward pass per image)."""
    from dpdl.backbones import build_backbone
    from dpdl.data import make_split, make_synthetic
    from dpdl.features import FeatureCache, Item
    root = make_synthetic(tmp_path / "data", n_train=12, n_test_normal=4, n_per_class=2)
    split = make_split("folder", anomalies=1, seed=0, data_root=str(root))
    items = [Item(s) for s in split.train_normal[:9]] + [Item(split.train_normal[0], 0)]
    ex = build_backbone("mobilenet_v2", "mid+last", image_size=64).freeze()
    alone = FeatureCache(ex, 64, "x", root=tmp_path / "a").get(items[:2], batch_size=1)
    among = FeatureCache(ex, 64, "x", root=tmp_path / "b").get(items, batch_size=32)
    assert torch.equal(alone, among[:2])


def test_parallel_fill_writes_the_entries_of_a_sequential_one(tmp_path, monkeypatch):
    """Two worker processes, each a shard of the items on one thread, write the bytes one process writes alone."""
    from dpdl.modes import prepare_features, prepare_features_parallel
    root = make_synthetic(tmp_path / "data", n_train=8, n_test_normal=3, n_per_class=2)
    monkeypatch.setenv("DPDL_CACHE", str(tmp_path / "par"))
    got = prepare_features_parallel(["folder"], "smoke", data_root=str(root), workers=2)["folder"]
    monkeypatch.setenv("DPDL_CACHE", str(tmp_path / "seq"))
    one = prepare_features("folder", "smoke", data_root=str(root), progress=False)
    assert got["items"] == one["items"] == got["misses"] and one["misses"] == one["items"]
    files = sorted(p.relative_to(tmp_path / "par") for p in (tmp_path / "par").rglob("*.pt"))
    assert len(files) == one["items"]
    assert files == sorted(p.relative_to(tmp_path / "seq") for p in (tmp_path / "seq").rglob("*.pt"))
    for f in files:
        a, b = (torch.load(tmp_path / d / f, weights_only=True) for d in ("par", "seq"))
        assert a.keys() == b.keys() and a["meta"] == b["meta"]
        assert all(torch.equal(a[k], b[k]) for k in a if k != "meta")
    bad = prepare_features_parallel(["no_such_dataset"], "smoke", workers=2)["no_such_dataset"]
    assert isinstance(bad, ValueError)
