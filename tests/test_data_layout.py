"""The registry, the data-root layouts and every bad input, each a one-sentence error naming the culprit."""
from __future__ import annotations

import pytest

from dpdl.data import DATASET_NAMES, MVTEC_CLASSES, get_dataset, list_datasets, make_split

PAPER_DATASETS = {"elpv", "brainmri", "sdd", "headct", "optical", "aitex", "mastcam", "hyperkvasir"}


@pytest.fixture
def no_data_root(monkeypatch):
    monkeypatch.delenv("DPDL_DATA", raising=False)


@pytest.fixture
def no_shared(monkeypatch, tmp_path):
    """No ../shared/data (AITEX, HeadCT, BrainMRI and SDD come from there first when it is present)."""
    monkeypatch.setenv("DPDL_SHARED", str(tmp_path / "no_shared_here"))


def one_sentence(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg.count(". ") == 0, msg
    return msg


def test_registry_names():
    names = set(DATASET_NAMES)
    assert PAPER_DATASETS <= names and {"folder", "synthetic"} <= names
    assert {f"mvtec_{s}" for s in MVTEC_CLASSES} <= names and len(MVTEC_CLASSES) == 15
    assert sum(len(c) for c in MVTEC_CLASSES.values()) == 73  # Table 4, MVTecAD row
    for name in names:
        assert get_dataset(name).layout


def test_list_datasets(no_data_root):
    rows = {r["name"]: r for r in list_datasets()}
    assert set(rows) == set(DATASET_NAMES)
    assert rows["elpv"]["available"] and rows["elpv"]["anomaly_classes"] == ["mono", "poly"]
    assert rows["synthetic"]["available"]
    assert not rows["mvtec_carpet"]["available"] and "DPDL_DATA" in rows["mvtec_carpet"]["reason"]
    assert rows["mvtec_carpet"]["anomaly_classes"] == list(MVTEC_CLASSES["carpet"])
    assert get_dataset("elpv").has_hard_setting and not get_dataset("brainmri").has_hard_setting


@pytest.mark.parametrize("parent", ["", "mvtec", "mvtec_anomaly_detection", "MVTec_Anomaly_Detection"])
def test_mvtec_root_variants(tmp_path, parent, mvtec_builder):
    mvtec_builder(tmp_path / parent / ("Carpet" if parent.startswith("MVTec") else "carpet"),
                classes={"color": 3, "cut": 2})
    split = make_split("mvtec_carpet", anomalies=2, seed=0, data_root=tmp_path)
    assert split.counts() == {"train_normal": 8, "train_anomaly": 2, "test_normal": 4, "test_anomaly": 3}
    assert split.train_anomaly[0].key.startswith("mvtec_carpet/")
    ok, source = get_dataset("mvtec_carpet", tmp_path).available()
    assert ok and "carpet" in source.lower()


def test_data_root_from_environment(tmp_path, monkeypatch, mvtec_builder):
    mvtec_builder(tmp_path / "Hyper-Kvasir", classes={"barretts": 3, "esophagitis-a": 3})
    monkeypatch.setenv("DPDL_DATA", str(tmp_path))
    split = make_split("hyperkvasir", "hard", anomalies=2, seed=0, known_class="barretts")
    assert split.test_anomaly_classes == ["esophagitis-a"]
    assert get_dataset("hyperkvasir").anomaly_classes == ["barretts", "esophagitis-a"]


def test_brainmri_and_headct_yes_no_from_data_root(tmp_path, monkeypatch, png_writer):
    monkeypatch.setenv("DPDL_SHARED", str(tmp_path / "no_shared_here"))
    for i, ext in enumerate([".jpg", ".jpeg", ".JPG", ".png", ".bmp", ".PNG", ".tif", ".webp"]):
        png_writer(tmp_path / "Brain_MRI" / "yes" / f"y{i}{ext}")
        png_writer(tmp_path / "head_ct" / "yes" / f"y{i}{ext}")
    for i in range(8):
        png_writer(tmp_path / "Brain_MRI" / "no" / f"n{i}.jpg")
        png_writer(tmp_path / "head_ct" / "no" / f"n{i}.png")
    (tmp_path / "Brain_MRI" / "yes" / "notes.txt").write_text("not an image")
    split = make_split("brainmri", anomalies=1, seed=0, data_root=tmp_path)
    assert split.counts() == {"train_normal": 6, "train_anomaly": 1, "test_normal": 2, "test_anomaly": 7}
    assert split.test_anomaly_classes == ["tumor"]
    assert make_split("headct", anomalies=1, seed=0, data_root=tmp_path).test_anomaly_classes == ["hemorrhage"]


def test_headct_kaggle_csv(tmp_path, png_writer, no_shared):
    root = tmp_path / "headct"
    rows = ["id, hemorrhage"]
    for i in range(12):
        png_writer(root / "head_ct" / "head_ct" / f"{i:03d}.png", mode="L")
        rows.append(f"{i}, {int(i % 2 == 0)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    split = make_split("headct", anomalies=2, seed=0, data_root=tmp_path)
    assert split.counts() == {"train_normal": 4, "train_anomaly": 2, "test_normal": 2, "test_anomaly": 4}


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad_row,named", [("x7, 1", "id is 'x7'"), ("7, yes", "hemorrhage is 'yes'"),
                                           ("7", "hemorrhage is missing"), ("7, 2", "hemorrhage is 2"),
                                           ("\u0667, 1", "id is")])
def test_headct_malformed_csv_names_the_file_and_line(bad_row, named, tmp_path, png_writer, no_shared):
    root = tmp_path / "headct"
    rows = ["id, hemorrhage"]
    for i in range(12):
        png_writer(root / "head_ct" / "head_ct" / f"{i:03d}.png", mode="L")
        rows.append(f"{i}, {int(i % 2 == 0)}")
    rows.insert(4, bad_row)                                              # line 5 of the file
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError) as exc:
        make_split("headct", anomalies=2, seed=0, data_root=tmp_path)
    msg = one_sentence(exc)
    assert f"{root / 'labels.csv'}, line 5" in msg and named in msg, msg


def test_unknown_dataset():
    with pytest.raises(ValueError) as exc:
        make_split("mvtec_carpets")
    msg = one_sentence(exc)
    assert "'mvtec_carpets'" in msg and "elpv" in msg and "mvtec_carpet," in msg and "synthetic" in msg


def test_missing_data_root(no_data_root, no_shared):
    with pytest.raises(FileNotFoundError) as exc:
        make_split("aitex")
    msg = one_sentence(exc)
    assert "'aitex'" in msg and "DPDL_DATA" in msg and "--data-root" in msg
    with pytest.raises(FileNotFoundError) as exc:
        make_split("folder")
    assert "'folder'" in one_sentence(exc) and "DPDL_DATA" in str(exc.value)


def test_missing_subset(tmp_path, no_data_root, mvtec_builder):
    mvtec_builder(tmp_path / "mvtec" / "grid")
    with pytest.raises(FileNotFoundError) as exc:
        make_split("mvtec_carpet", data_root=tmp_path)
    msg = one_sentence(exc)
    assert str(tmp_path / "carpet") in msg and str(tmp_path / "mvtec" / "carpet") in msg and "DPDL_DATA" in msg


def test_missing_folder_of_layout(tmp_path, mvtec_builder):
    mvtec_builder(tmp_path / "ds")
    for p in sorted((tmp_path / "ds" / "test" / "good").iterdir()):
        p.unlink()
    (tmp_path / "ds" / "test" / "good").rmdir()
    with pytest.raises(FileNotFoundError) as exc:
        make_split("folder", data_root=tmp_path / "ds", anomalies=1)
    assert str(tmp_path / "ds" / "test" / "good") in one_sentence(exc)


def test_empty_class_folder(mvtec_factory):
    root = mvtec_factory()
    (root / "test" / "scuff").mkdir()
    (root / "test" / "scuff" / "readme.txt").write_text("no images")
    with pytest.raises(ValueError) as exc:
        make_split("folder", anomalies=1, data_root=root)
    assert str(root / "test" / "scuff") in one_sentence(exc) and "no image" in str(exc.value)


@pytest.mark.parametrize("m", [0, -3])
def test_m_below_one(synthetic_root, m):
    with pytest.raises(ValueError) as exc:
        make_split("synthetic", anomalies=m)
    assert "--anomalies" in one_sentence(exc) and "at least 1" in str(exc.value)


def test_m_too_large(synthetic_root):
    with pytest.raises(ValueError) as exc:
        make_split("synthetic", anomalies=45)
    msg = one_sentence(exc)
    assert "45 anomalies" in msg and "--anomalies" in msg and "44" in msg
    assert make_split("synthetic", anomalies=44).counts()["test_anomaly"] == 1
    with pytest.raises(ValueError) as exc:
        make_split("synthetic", "hard", anomalies=16, known_class="spot")
    msg = one_sentence(exc)
    assert "'spot'" in msg and "15 anomalies" in msg and "--anomalies" in msg


def test_unknown_and_missing_known_class(synthetic_root):
    with pytest.raises(ValueError) as exc:
        make_split("synthetic", "hard", known_class="crack")
    msg = one_sentence(exc)
    assert "'crack'" in msg and "scratch, spot, stain" in msg
    with pytest.raises(ValueError) as exc:
        make_split("synthetic", "hard")
    msg = one_sentence(exc)
    assert "--known-class" in msg and "scratch, spot, stain" in msg
    with pytest.raises(ValueError) as exc:
        make_split("synthetic", "general", known_class="spot")
    assert "hard setting" in one_sentence(exc)


def test_hard_setting_on_one_class_dataset(mvtec_factory):
    root = mvtec_factory(classes={"defect": 4})
    with pytest.raises(ValueError) as exc:
        make_split("folder", "hard", anomalies=1, known_class="defect", data_root=root)
    msg = one_sentence(exc)
    assert "'folder'" in msg and "one anomaly class" in msg and "no hard setting" in msg


def test_unknown_setting(synthetic_root):
    with pytest.raises(ValueError) as exc:
        make_split("synthetic", "easy")
    assert "'easy'" in one_sentence(exc) and "general, hard" in str(exc.value)


def test_mvtec_aggregate_stats_and_hard_rows(tmp_path, mvtec_builder):
    from dpdl.data import dataset_stats, hard_settings

    for subset, classes in MVTEC_CLASSES.items():
        mvtec_builder(tmp_path / "mvtec_anomaly_detection" / subset, n_train=2, n_test=1,
                      classes={c: 1 for c in classes})
    row = dataset_stats("mvtec", tmp_path)
    assert (row["n_anomaly_classes"], row["train_normal"], row["test_normal"], row["test_anomaly"]) == (73, 30, 15, 73)
    one = dataset_stats("mvtec_pill", tmp_path)
    assert (one["n_anomaly_classes"], one["type"], one["paper_name"]) == (7, "Object", "Pill")
    assert hard_settings("mvtec_metal_nut", tmp_path) == ["bent", "color", "flip", "scratch"]
    assert hard_settings("mvtec_toothbrush", tmp_path) == []
    assert hard_settings("elpv") == ["mono", "poly"]
