"""AITEX and HeadCT: the readers on the copies in ../shared/data (counts of its README and the paper's Table 4),
HeadCT's Kaggle layouts, and splits that do not depend on the file system's listing order."""
from __future__ import annotations

import pytest

from dpdl import paths
from dpdl.data import dataset_stats, get_dataset, list_datasets, make_split

AITEX_CLASSES = {"broken_end": 10, "broken_pick": 63, "broken_yarn": 9, "contamination": 2, "crease": 6,
                 "cut_selvage": 12, "fuzzyball": 41, "knots": 1, "nep": 14, "warp_ball": 5, "weft_crack": 15,
                 "weft_curling": 7}   # ../shared/data/README.md, counted by hand from its folder list


def _needs(sub):
    return pytest.mark.skipif(not (paths.shared_data_dir() / sub).is_dir(),
                              reason=f"{sub}/ not found in {paths.shared_data_dir()} (../shared/data, or "
                                     f"$DPDL_SHARED/data)")


def _keys(samples):
    return [s.key for s in samples]


@_needs("aitex")
def test_aitex_counts():
    stats = dataset_stats("aitex")
    assert (stats["n_anomaly_classes"], stats["type"], stats["train_normal"], stats["test_normal"],
            stats["test_anomaly"]) == (12, "Texture", 1692, 564, 185)   # the paper's Table 4 says 183 anomalies
    assert stats["anomaly_class_counts"] == AITEX_CLASSES
    assert stats["source"].startswith("shared data")


@_needs("aitex")
def test_aitex_hard_setting_has_the_six_table6_classes():
    from dpdl.study.plan import _known_classes

    assert _known_classes("aitex", "table6", None) == ["broken_end", "broken_pick", "cut_selvage", "fuzzyball",
                                                       "nep", "weft_crack"]
    split = make_split("aitex", "hard", anomalies=10, seed=0, known_class="broken_end")
    assert split.counts() == {"train_normal": 1692, "train_anomaly": 10, "test_normal": 564,
                              "test_anomaly": 185 - 10}
    assert "broken_end" not in split.test_anomaly_classes and len(split.test_anomaly_classes) == 11


@_needs("headct")
def test_headct_counts():
    pool = get_dataset("headct").pool()
    assert len(pool.normal) == 100 and len(pool.anomaly) == 100 and pool.train_normal is None
    stats = dataset_stats("headct")
    assert (stats["n_anomaly_classes"], stats["train_normal"], stats["test_normal"], stats["test_anomaly"]) == \
        (1, 75, 25, 100)
    assert {s.key.rsplit("/", 1)[0] for s in pool.normal + pool.anomaly} == {"headct/head_ct"}
    split = make_split("headct", anomalies=10, seed=0)
    assert split.counts() == {"train_normal": 75, "train_anomaly": 10, "test_normal": 25, "test_anomaly": 90}
    assert not set(_keys(split.train)) & set(_keys(split.test))


@pytest.mark.parametrize("name,setting,known", [("headct", "general", None), ("aitex", "general", None),
                                                ("aitex", "hard", "nep")])
def test_shared_splits_ignore_listing_order(listing_order, name, setting, known):
    if not (paths.shared_data_dir() / name).is_dir():
        pytest.skip(f"{name}/ not found in {paths.shared_data_dir()}")
    ref = make_split(name, setting, anomalies=10, seed=2, known_class=known)
    listing_order("shuffled", seed=7)
    again = make_split(name, setting, anomalies=10, seed=2, known_class=known)
    assert again.fingerprint == ref.fingerprint
    assert _keys(again.train_anomaly) == _keys(ref.train_anomaly) and _keys(again.test_normal) == _keys(ref.test_normal)


@_needs("aitex")
def test_datasets_lists_both_from_shared():
    rows = {r["name"]: r for r in list_datasets()}
    for name in ("aitex", "headct"):
        assert rows[name]["available"] and rows[name]["source"].startswith("shared data")
        assert str(paths.shared_data_dir() / name) in rows[name]["source"]


# ------------------------------------------------------------------ HeadCT's Kaggle layouts (fixtures)
def _kaggle(root, png_writer, folder, n=8):
    rows = ["id, hemorrhage"]
    for i in range(n):
        png_writer(root.joinpath(*folder) / f"{i:03d}.png", mode="L", value=10 + i)
        rows.append(f"{i}, {int(i < n // 2)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("folder", [("head_ct", "head_ct"), ("head_ct",), ("Head_CT",), ()])
def test_headct_kaggle_folders(tmp_path, monkeypatch, png_writer, folder):
    monkeypatch.setenv("DPDL_SHARED", str(tmp_path / "no_shared_here"))
    root = tmp_path / "headct"
    _kaggle(root, png_writer, folder)
    pool = get_dataset("headct", tmp_path).pool()
    assert len(pool.normal) == 4 and len(pool.anomaly) == 4
    assert {s.cls for s in pool.anomaly} == {"hemorrhage"}
    assert sorted(int(s.key[-7:-4]) for s in pool.anomaly) == [0, 1, 2, 3]


def test_headct_reads_only_the_image_folder(tmp_path, monkeypatch, png_writer):
    """The doubled Kaggle folder wins; numbered images elsewhere below the root (an old conversion, a second
    copy) are not read."""
    monkeypatch.setenv("DPDL_SHARED", str(tmp_path / "no_shared_here"))
    root = tmp_path / "headct"
    _kaggle(root, png_writer, ("head_ct", "head_ct"))
    for i in range(8):
        png_writer(root / "head_ct" / f"{i:03d}.png", mode="L")       # a stray copy one level up
        png_writer(root / "converted" / "train" / "good" / f"{i:03d}.png", mode="L")
    pool = get_dataset("headct", tmp_path).pool()
    assert {s.key.rsplit("/", 1)[0] for s in pool.normal + pool.anomaly} == {"headct/head_ct/head_ct"}


def test_headct_missing_image_is_one_sentence(tmp_path, monkeypatch, png_writer):
    monkeypatch.setenv("DPDL_SHARED", str(tmp_path / "no_shared_here"))
    root = tmp_path / "headct"
    _kaggle(root, png_writer, ("head_ct",))
    (root / "head_ct" / "005.png").unlink()
    with pytest.raises(FileNotFoundError) as exc:
        get_dataset("headct", tmp_path).pool()
    assert "005.png" in str(exc.value) and "labels.csv" in str(exc.value) and "\n" not in str(exc.value)


@_needs("aitex")
def test_table4_page_rows_for_aitex_and_headct():
    """The Table 4 page's frame: our counts beside the paper's, the AITEX difference named."""
    from dpdl.study import tables

    df = tables.table4("cpu").set_index("key")
    aitex, headct = df.loc["aitex"], df.loc["headct"]
    assert aitex["status"] == "measured" and headct["status"] == "measured"
    assert [int(aitex[f"ours_{c}"]) for c in tables.TABLE4_LABELS] == [12, 1692, 564, 185]
    assert [int(aitex[f"paper_{c}"]) for c in tables.TABLE4_LABELS] == [12, 1692, 564, 183]
    assert aitex["differs"] == "test anomaly 185 vs 183"
    assert [int(headct[f"ours_{c}"]) for c in tables.TABLE4_LABELS] == [1, 75, 25, 100] and headct["differs"] == ""


@_needs("aitex")
@_needs("headct")
def test_cpu_study_plans_aitex_and_headct():
    """Table 1 (general, M = 10 and 1, five seeds, DPDL and the three baselines) for both; Tables 2 and 6 (hard)
    for AITEX with the six known classes of the paper's Table 6."""
    from collections import Counter

    from dpdl.study.plan import expand

    plan = expand("cpu", datasets=["aitex", "headct"])
    assert "aitex" not in plan.skipped and "headct" not in plan.skipped
    t1 = Counter((r.dataset, r.anomalies, r.variant) for r in plan.runs if "table1" in r.groups)
    every = ("full", "devnet", "dra", "knn", "arcad", "arcad_base", "hgad", "vpdm")   # DPDL, baselines, related systems
    assert t1 == {(d, m, v): 5 for d in ("aitex", "headct") for m in (10, 1) for v in every}
    hard = [r for r in plan.runs if r.setting == "hard"]
    assert {r.dataset for r in hard} == {"aitex"}
    six = {"broken_end", "broken_pick", "cut_selvage", "fuzzyball", "nep", "weft_crack"}
    assert Counter((r.known_class, r.anomalies, r.variant) for r in hard if "table2" in r.groups) == \
        {(c, m, v): 5 for c in six for m in (10, 1) for v in every}
    assert Counter((r.known_class, r.anomalies) for r in hard if "table6" in r.groups) == \
        {(c, m): 5 for c in six for m in (10, 1)}
    assert Counter(r.dataset for r in plan.runs) == {"aitex": 560, "headct": 80}   # 8 methods: (2 + 12) cells x 5 seeds
