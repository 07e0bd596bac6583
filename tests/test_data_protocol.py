"""The OSAD protocol on synthetic and hand-made data: counts, no leakage, determinism, hard setting."""
from __future__ import annotations

import numpy as np
import pytest

from dpdl.data import Split, get_dataset, make_split, make_synthetic
from dpdl.data.protocol import draw, split_normals


def keys(samples):
    return [s.key for s in samples]


def assert_no_overlap(split: Split):
    train = set(keys(split.train)) | {s.path + str(s.box) for s in split.train}
    test = set(keys(split.test)) | {s.path + str(s.box) for s in split.test}
    assert not (train & test)
    assert len(set(keys(split.train))) == len(split.train)
    assert len(set(keys(split.test))) == len(split.test)


def test_synthetic_general_counts(synthetic_root):
    split = make_split("synthetic", "general", anomalies=10, seed=0)
    assert split.counts() == {"train_normal": 100, "train_anomaly": 10, "test_normal": 30, "test_anomaly": 35}
    assert split.test_anomaly_classes == ["scratch", "spot", "stain"]
    assert all(s.label == 0 and s.cls == "good" for s in split.train_normal + split.test_normal)
    assert all(s.label == 1 and s.cls != "good" for s in split.train_anomaly + split.test_anomaly)
    assert_no_overlap(split)
    # the folder dataset reads the same files; only the key prefix differs
    folder = make_split("folder", anomalies=10, seed=0, data_root=synthetic_root)
    assert folder.counts() == split.counts()
    assert [k.split("/", 1)[1] for k in keys(folder.train_anomaly)] == \
        [k.split("/", 1)[1] for k in keys(split.train_anomaly)]


def test_synthetic_generation_is_deterministic(tmp_path, synthetic_root):
    a = make_synthetic(tmp_path / "a", seed=0)
    files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*.png"))
    files_s = sorted(p.relative_to(synthetic_root).as_posix() for p in synthetic_root.rglob("*.png"))
    assert files_a == files_s and len(files_a) == 100 + 30 + 45
    for rel in files_a[::17]:
        assert (a / rel).read_bytes() == (synthetic_root / rel).read_bytes()
    b = make_synthetic(tmp_path / "b", seed=1, n_train=3, n_test_normal=2, n_per_class=2)
    assert (a / "train/good/000.png").read_bytes() != (b / "train/good/000.png").read_bytes()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # temporary folders are gone


def test_general_draw_is_the_seeded_shuffle_of_sorted_keys(synthetic_root):
    pool = get_dataset("synthetic").pool()
    ordered = sorted(pool.anomaly, key=lambda s: s.key)
    for seed in (0, 3):
        expected = list(ordered)
        np.random.RandomState(seed).shuffle(expected)
        split = make_split("synthetic", anomalies=7, seed=seed)
        assert set(keys(split.train_anomaly)) == set(keys(expected[:7]))
        assert set(keys(split.test_anomaly)) == set(keys(expected[7:]))
    assert keys(draw(list(reversed(ordered)), 5)) == keys(draw(ordered, 5))


def test_same_seed_same_split_different_seeds_differ(synthetic_root):
    a = make_split("synthetic", anomalies=10, seed=1)
    b = make_split("synthetic", anomalies=10, seed=1)
    assert a.fingerprint == b.fingerprint and keys(a.train_anomaly) == keys(b.train_anomaly)
    draws = {tuple(keys(make_split("synthetic", anomalies=10, seed=s).train_anomaly)) for s in range(5)}
    assert len(draws) == 5
    fps = {make_split("synthetic", anomalies=10, seed=s).fingerprint for s in range(5)}
    assert len(fps) == 5


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
def test_split_ignores_listing_order(listing_order, synthetic_root, order):
    reference = {s: make_split("synthetic", anomalies=5, seed=s) for s in (0, 1)}
    ref_hard = make_split("synthetic", "hard", anomalies=3, seed=0, known_class="spot")

    listing_order(order)
    for seed, ref in reference.items():
        again = make_split("synthetic", anomalies=5, seed=seed)
        assert again.fingerprint == ref.fingerprint
        assert keys(again.train_anomaly) == keys(ref.train_anomaly)
        assert keys(again.test_normal) == keys(ref.test_normal)
    assert make_split("synthetic", "hard", anomalies=3, seed=0, known_class="spot").fingerprint == ref_hard.fingerprint


def test_split_ignores_file_creation_order(mvtec_factory):
    a = mvtec_factory("a", reverse=False)
    b = mvtec_factory("b", reverse=True)
    for seed in (0, 1, 2):
        sa = make_split("folder", anomalies=3, seed=seed, data_root=a)
        sb = make_split("folder", anomalies=3, seed=seed, data_root=b)
        assert sa.fingerprint == sb.fingerprint
        assert keys(sa.train_anomaly) == keys(sb.train_anomaly)


@pytest.mark.parametrize("known", ["scratch", "spot", "stain"])
def test_hard_setting(synthetic_root, known):
    split = make_split("synthetic", "hard", anomalies=5, seed=0, known_class=known)
    assert split.known_class == known
    assert len(split.train_anomaly) == 5 and all(s.cls == known for s in split.train_anomaly)
    assert known not in split.test_anomaly_classes
    assert all(s.cls != known for s in split.test_anomaly)
    assert split.test_anomaly_classes == sorted({"scratch", "spot", "stain"} - {known})
    assert split.counts() == {"train_normal": 100, "train_anomaly": 5, "test_normal": 30, "test_anomaly": 30}
    assert_no_overlap(split)
    # the whole known class may be seen (nothing of it is tested)
    assert len(make_split("synthetic", "hard", anomalies=15, seed=0, known_class=known.upper()).train_anomaly) == 15


def test_own_split_is_kept_and_m_bounds(mvtec_factory):
    root = mvtec_factory(n_train=6, n_test=3, classes={"a": 2, "b": 3})
    split = make_split("folder", anomalies=4, seed=0, data_root=root)
    assert split.counts() == {"train_normal": 6, "train_anomaly": 4, "test_normal": 3, "test_anomaly": 1}
    assert all("/train/good/" in s.key for s in split.train_normal)
    assert all("/test/good/" in s.key for s in split.test_normal)
    assert make_split("folder", anomalies=1, seed=0, data_root=root).counts()["train_anomaly"] == 1


def test_three_to_one_split_without_own_split():
    from dpdl.data.samples import Pool, Sample

    normals = [Sample(f"x/{i:03d}", f"/p/{i}", 0, "good") for i in range(20)]
    train, test = split_normals(Pool(normal=list(reversed(normals)), anomaly=[]))
    assert (len(train), len(test)) == (15, 5)
    train2, test2 = split_normals(Pool(normal=normals, anomaly=[]))
    assert keys(train) == keys(train2) and keys(test) == keys(test2)
    assert not set(keys(train)) & set(keys(test))


def test_split_to_dict(synthetic_root):
    split = make_split("synthetic", anomalies=2, seed=0)
    d = split.to_dict()
    assert d["train_anomaly"] == 2 and d["fingerprint"] == split.fingerprint and len(d["fingerprint"]) == 16
    assert d["train_anomaly_keys"] == keys(split.train_anomaly)
    assert len(split.to_dict(samples=True)["test_normal_keys"]) == 30


def test_synthetic_lives_in_the_cache(synthetic_root):
    from dpdl import paths

    assert synthetic_root.is_relative_to(paths.cache_dir() / "synthetic")
    assert (synthetic_root / "params.json").is_file()
    assert get_dataset("synthetic").available() == (True, "generated (synthetic textures, cached)")


# ---------------------------------------------------------------------------------------------- validation split

def test_validation_split_uses_training_data_only(synthetic_root):
    from dpdl.data import validation_split
    split = make_split("synthetic", "general", anomalies=10, seed=3)
    val = validation_split(split, seed=3)
    train_keys = set(keys(split.train))
    assert set(keys(val.train)) | set(keys(val.test)) == train_keys        # a partition of the training part
    assert not set(keys(val.train)) & set(keys(val.test))
    assert not set(keys(val.train) + keys(val.test)) & set(keys(split.test))  # no test image anywhere
    assert (len(val.test_normal), len(val.train_normal)) == (25, 75)         # a quarter of 100 training normals
    assert (len(val.test_anomaly), len(val.train_anomaly), val.anomalies) == (5, 5, 5)
    other = validation_split(split, seed=3, fold=1)                           # the two folds swap the anomalies
    assert set(keys(other.test_anomaly)) == set(keys(val.train_anomaly))
    assert keys(other.test_normal) == keys(val.test_normal)
    assert val.fingerprint == validation_split(split, seed=3).fingerprint     # deterministic
    assert val.fingerprint != validation_split(split, seed=4).fingerprint


def test_validation_split_m1_holds_the_anomaly_out_and_ignores_order(synthetic_root):
    from dataclasses import replace

    from dpdl.data import validation_split
    split = make_split("synthetic", "hard", known_class="spot", anomalies=1, seed=0)
    val = validation_split(split, seed=0)
    assert keys(val.test_anomaly) == keys(split.train_anomaly) and val.train_anomaly == [] and val.anomalies == 0
    shuffled = replace(split, train_normal=split.train_normal[::-1], fingerprint="")
    assert validation_split(shuffled, seed=0).fingerprint == val.fingerprint  # listing order does not matter
    with pytest.raises(ValueError, match="fold"):
        validation_split(split, seed=0, fold=2)
