"""The protocol on the real data: ELPV (PyPI, always here), BrainMRI and SDD (../shared/data)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from dpdl import paths
from dpdl.data import dataset_stats, get_dataset, load_image, make_split

pytestmark = pytest.mark.realdata

needs_shared = pytest.mark.skipif(
    not (paths.shared_data_dir() / "brainmri").is_dir() or not (paths.shared_data_dir() / "sdd_yolo").is_dir(),
    reason=f"BrainMRI/SDD not found in {paths.shared_data_dir()} (../shared/data, or $DPDL_SHARED/data)")


def keys(samples):
    return [s.key for s in samples]


def no_overlap(split):
    assert not set(keys(split.train)) & set(keys(split.test))


def test_elpv_general_matches_table4():
    split = make_split("elpv", "general", anomalies=10, seed=0)
    assert split.counts() == {"train_normal": 1131, "train_anomaly": 10, "test_normal": 377, "test_anomaly": 705}
    assert split.test_anomaly_classes == ["mono", "poly"]
    no_overlap(split)
    assert make_split("elpv", anomalies=1, seed=0).counts()["test_anomaly"] == 714
    assert keys(make_split("elpv", anomalies=10, seed=1).train_anomaly) != keys(split.train_anomaly)


def test_elpv_stats_and_hard_setting():
    stats = dataset_stats("elpv")
    assert {k: stats[k] for k in ("n_anomaly_classes", "type", "train_normal", "test_normal", "test_anomaly")} == \
        {"n_anomaly_classes": 2, "type": "Texture", "train_normal": 1131, "test_normal": 377, "test_anomaly": 715}
    assert stats["anomaly_class_counts"] == {"mono": 313, "poly": 402}
    for known, other, n_other in (("mono", "poly", 402), ("poly", "mono", 313)):
        split = make_split("elpv", "hard", anomalies=10, seed=0, known_class=known)
        assert all(s.cls == known for s in split.train_anomaly)
        assert split.test_anomaly_classes == [other] and len(split.test_anomaly) == n_other
        no_overlap(split)
    t = load_image(split.train_anomaly[0], 32)
    assert tuple(t.shape) == (3, 32, 32)


@needs_shared
def test_brainmri_matches_table4():
    split = make_split("brainmri", anomalies=10, seed=0)
    assert split.counts() == {"train_normal": 73, "train_anomaly": 10, "test_normal": 25, "test_anomaly": 145}
    assert split.test_anomaly_classes == ["tumor"]
    no_overlap(split)
    stats = dataset_stats("brainmri")
    assert (stats["train_normal"], stats["test_normal"], stats["test_anomaly"]) == (73, 25, 155)
    # every file is read, whatever its extension (the baselines dropped .jpeg and .JPG)
    exts = {Path(s.path).suffix for s in get_dataset("brainmri").pool().normal + get_dataset("brainmri").pool().anomaly}
    assert {".jpeg", ".JPG", ".jpg", ".png"} <= exts
    for s in split.train_anomaly[:3] + split.test_normal[:3]:
        assert tuple(load_image(s, 24).shape) == (3, 24, 24)


@needs_shared
def test_brainmri_split_ignores_listing_order(monkeypatch):
    ref = make_split("brainmri", anomalies=10, seed=3)
    real_scandir = os.scandir

    class Reversed:
        def __init__(self, path):
            with real_scandir(path) as it:
                self.entries = list(it)[::-1]

        def __enter__(self):
            return iter(self.entries)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(os, "scandir", Reversed)
    again = make_split("brainmri", anomalies=10, seed=3)
    assert again.fingerprint == ref.fingerprint and keys(again.test_normal) == keys(ref.test_normal)


@needs_shared
def test_sdd_bands():
    pool = get_dataset("sdd").pool()
    everything = pool.normal + pool.anomaly
    assert len(everything) == 3 * 399
    assert len({s.path for s in everything}) == 399
    by_image = {}
    for s in everything:
        by_image.setdefault(s.path, []).append(s.box)
    for path, boxes in list(by_image.items())[::40]:  # the three bands tile the image along its long side
        width, height = Image.open(path).size
        assert height > width
        boxes = sorted(boxes, key=lambda b: b[1])
        assert boxes[0][1] == 0 and boxes[-1][3] == height and all(b[0] == 0 and b[2] == width for b in boxes)
        assert boxes[0][3] == boxes[1][1] and boxes[1][3] == boxes[2][1]
        assert max(b[3] - b[1] for b in boxes) - min(b[3] - b[1] for b in boxes) <= 1
    assert {s.cls for s in pool.anomaly} == {"defect"}
    assert len({s.path for s in pool.anomaly}) == 52  # 52 images have a defect
    split = make_split("sdd", anomalies=10, seed=0)
    # our numbers (the paper's Table 4 says 594 / 286 / 54; documented deviation)
    assert split.counts() == {"train_normal": 857, "train_anomaly": 10, "test_normal": 286, "test_anomaly": 44}
    no_overlap(split)
    t = load_image(split.train_anomaly[0], 48)
    assert tuple(t.shape) == (3, 48, 48)
