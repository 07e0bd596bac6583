"""`dpdl data convert aitex RAW OUT` on tiny fixture releases built here, with every named quirk, checked against
a hand count; broken releases fail with one sentence, exit status 2 and nothing written."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpdl import paths
from dpdl.cli import main
from dpdl.data import get_dataset, make_split
from dpdl.data.aitex import DEFECT_CLASSES, convert_aitex, split_normal_names, tile_boxes

H = 256


def strip(width, seed):
    """A grey strip whose every column differs (value = f(column, seed)), so a tile's origin can be checked."""
    cols = (np.arange(width) * 7 + seed * 31) % 251
    rows = np.arange(H)[:, None] % 3
    return (cols[None, :] + rows).astype(np.uint8)


def mask(width, *cols):
    m = np.zeros((H, width), np.uint8)
    for c in cols:
        m[100:110, c] = 200
    return m


def save(arr, path, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr, mode="L")
    if mode == "RGBA":
        im = Image.merge("RGBA", [im, im, im, Image.new("L", im.size, 255)])
    elif mode == "LA":
        im = Image.merge("LA", [im, Image.new("L", im.size, 255)])
    im.save(path)


def build_release(raw: Path) -> dict:
    """The fixture release; returns the strips' arrays by stem.

    Hand count: defect-free tiles 3 + 3 + 3 (600 px: narrow, last tile 88 px) + 2 (RGBA) = 11 → test
    ceil(11/4) = 3, train 8. Anomaly tiles: 0010 (Broken_end) tiles 0, 2 → 2; 0011 (Broken_pick, masks split
    into _mask1 tile 1 and _mask2 tile 2, no merged mask) → 2; 0012 (Broken_pick, merged _mask tile 0 used,
    its parts mark tile 1) → 1; 0013 (Fuzzyball, no mask) → 0; 0014 (Weft_crack, 600 px, LA mask fully opaque,
    marked in the 88-px last tile) → 1. Total 6 in 3 classes.
    """
    arrays = {}
    normal = raw / "NODefect_images"
    for fabric, stem, width, mode, seed in (("fabA", "0001_000_00", 768, "L", 1), ("fabA", "0002_000_00", 768, "L", 2),
                                            ("fabB", "0003_000_01", 600, "L", 3), ("fabB", "0004_000_01", 512, "RGBA", 4)):
        arrays[stem] = strip(width, seed)
        save(arrays[stem], normal / fabric / f"{stem}.png", mode)
    defect, masks = raw / "Defect_images" / "Defect_images", raw / "Mask_images"   # doubled as downloaded
    for stem, width, seed in (("0010_002_00", 768, 10), ("0011_010_01", 768, 11), ("0012_010_02", 768, 12),
                              ("0013_019_03", 768, 13), ("0014_036_04", 600, 14)):
        arrays[stem] = strip(width, seed)
        save(arrays[stem], defect / f"{stem}.png")
    save(mask(768, 5, 600), masks / "0010_002_00_mask.png")
    save(mask(768, 300), masks / "0011_010_01_mask1.png")
    save(mask(768, 700), masks / "0011_010_01_mask2.png")
    save(mask(768, 10), masks / "0012_010_02_mask.png")
    save(mask(768, 300), masks / "0012_010_02_mask1.png")
    save(mask(768, 400), masks / "0012_010_02_mask2.png")
    save(mask(600, 555), masks / "0014_036_04_mask.png", "LA")
    (raw / "NODefect_images" / "fabA" / "Thumbs.db").write_bytes(b"not an image")
    return arrays


NORMAL_NAMES = sorted([f"fabA_0001_000_00_{i}" for i in range(3)] + [f"fabA_0002_000_00_{i}" for i in range(3)]
                      + [f"fabB_0003_000_01_{i}" for i in range(3)] + [f"fabB_0004_000_01_{i}" for i in range(2)])
ANOMALIES = {"Broken_end": ["0010_002_00_0", "0010_002_00_2"], "Broken_pick": ["0011_010_01_1", "0011_010_01_2",
             "0012_010_02_0"], "Weft_crack": ["0014_036_04_2"]}


def stems(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.png"))


@pytest.fixture
def release(tmp_path):
    raw = tmp_path / "raw"
    return raw, build_release(raw)


def test_tile_boxes():
    assert tile_boxes(4096) == [(256 * i, 256 * (i + 1)) for i in range(16)]
    assert tile_boxes(3796)[-1] == (3584, 3796) and len(tile_boxes(3796)) == 15   # the release's narrow strip
    assert tile_boxes(600) == [(0, 256), (256, 512), (512, 600)]


def test_normal_split_is_the_baselines_permutation():
    """train_test_split(test_size=0.25, random_state=42) is ShuffleSplit: RandomState(42).permutation(n), the
    first ceil(n/4) test; checked here against that permutation, and independent of the order of the names."""
    names = [f"t{i:03d}" for i in range(37)]
    perm = np.random.RandomState(42).permutation(37)
    train, test = split_normal_names(random.Random(3).sample(names, 37))
    assert test == [names[i] for i in perm[:10]] and train == [names[i] for i in perm[10:]]


def test_convert_fixture_release(release, tmp_path, capsys):
    raw, arrays = release
    out = tmp_path / "out" / "aitex"
    assert main(["data", "convert", "aitex", str(raw), str(out)]) == 0
    captured = capsys.readouterr()
    assert "8 train/good, 3 test/good" in captured.out and "6 anomaly tiles in 3 classes" in captured.out
    assert "warning: no mask: 0013_019_03.png" in captured.err
    assert "split mask: 0011_010_01.png" in captured.err and "0011_010_01_mask1.png + 0011_010_01_mask2.png" in captured.err
    assert "split mask: 0012_010_02.png has split masks: used 0012_010_02_mask.png" in captured.err
    assert "alpha: 0004_000_01.png" in captured.err and "alpha: 0014_036_04_mask.png" in captured.err
    assert "narrow strip: 0003_000_01.png is 600 px wide: last tile 88 px" in captured.err

    train, test = stems(out / "train" / "good"), stems(out / "test" / "good")
    assert sorted(train + test) == NORMAL_NAMES and len(train) == 8 and len(test) == 3
    perm = np.random.RandomState(42).permutation(11)
    assert test == sorted(NORMAL_NAMES[i] for i in perm[:3])
    classes = sorted(p.name for p in (out / "test").iterdir() if p.name != "good")
    assert classes == sorted(ANOMALIES)
    for cls, names in ANOMALIES.items():
        assert stems(out / "test" / cls) == names
        assert stems(out / "ground_truth" / cls) == [f"{n}_mask" for n in names]
    # tiles are the strips' columns, grey, alpha dropped; the narrow strip's last tile is 88 px wide
    for folder, name in ((out / "train" / "good", None), (out / "test" / "good", None)):
        for p in folder.glob("*.png"):
            fabric, rest = p.stem.split("_", 1)
            stem_, i = rest.rsplit("_", 1)
            left, right = tile_boxes(arrays[stem_].shape[1])[int(i)]
            im = Image.open(p)
            assert im.mode == "L" and np.array_equal(np.asarray(im), arrays[stem_][:, left:right])
    last = Image.open(out / "test" / "Weft_crack" / "0014_036_04_2.png")
    assert last.size == (88, 256) and np.array_equal(np.asarray(last), arrays["0014_036_04"][:, 512:600])
    gt = np.asarray(Image.open(out / "ground_truth" / "Weft_crack" / "0014_036_04_2_mask.png"))
    assert gt.shape == (256, 88) and gt.max() == 200 and (gt > 0).sum() == 10   # alpha not counted as defect
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())   # no temporary folder left

    # the study reads the result as any MVTec-layout AITEX: classes in lower case, its own split
    pool = get_dataset("folder", out).pool()
    assert (len(pool.train_normal), len(pool.test_normal), len(pool.anomaly)) == (8, 3, 6)
    assert sorted({s.cls for s in pool.anomaly}) == ["broken_end", "broken_pick", "weft_crack"]
    split = make_split("folder", "hard", anomalies=2, seed=0, known_class="broken_pick", data_root=out)
    assert split.test_anomaly_classes == ["broken_end", "weft_crack"]


def test_convert_ignores_listing_order(release, tmp_path, monkeypatch, listing_order):
    raw, _ = release
    convert_aitex(raw, tmp_path / "a")
    listing_order("shuffled", seed=11)
    convert_aitex(raw, tmp_path / "b")
    monkeypatch.undo()
    for part in ("train/good", "test/good", "test/Broken_pick", "ground_truth/Broken_end"):
        assert stems(tmp_path / "a" / part) == stems(tmp_path / "b" / part)
    assert stems(tmp_path / "a" / "test" / "good") != []


def test_convert_into_an_empty_existing_folder(release, tmp_path):
    raw, _ = release
    (tmp_path / "empty").mkdir()
    report = convert_aitex(raw, tmp_path / "empty")
    assert (report.train_normal, report.test_normal, report.test_anomaly) == (8, 3, 6)


def _break_mask_folder(raw):
    for p in (raw / "Mask_images").iterdir():
        p.unlink()
    (raw / "Mask_images").rmdir()
    return "Mask_images"


def _corrupt_strip(raw):
    (raw / "Defect_images" / "Defect_images" / "0012_010_02.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return "0012_010_02.png"


def _corrupt_normal_strip(raw):
    (raw / "NODefect_images" / "fabB" / "0003_000_01.png").write_bytes(b"garbage")
    return "0003_000_01.png"


def _unknown_code(raw):
    save(strip(512, 9), raw / "Defect_images" / "Defect_images" / "0099_099_00.png")
    return "0099_099_00.png"


def _bad_name(raw):
    save(strip(512, 9), raw / "Defect_images" / "Defect_images" / "defect7.png")
    return "defect7.png"


def _mask_of_other_size(raw):
    save(mask(512, 5), raw / "Mask_images" / "0010_002_00_mask.png")
    return "0010_002_00_mask.png"


def _existing_output(raw):
    return None


def _save16(arr, raw, rel: str) -> str:
    """``arr`` as a 16-bit grey PNG at ``raw/rel`` (values above 255: convert("L") would clip them); its name."""
    Image.fromarray(arr.astype(np.uint16) * 257).save(raw / rel)
    return Path(rel).name


def _sixteen_bit_strip(raw):
    return _save16(strip(768, 12), raw, "Defect_images/Defect_images/0012_010_02.png")


def _sixteen_bit_mask(raw):
    return _save16(mask(768, 5), raw, "Mask_images/0010_002_00_mask.png")


@pytest.mark.parametrize("breaker", [_break_mask_folder, _corrupt_strip, _corrupt_normal_strip, _unknown_code,
                                     _bad_name, _mask_of_other_size, _existing_output, _sixteen_bit_strip,
                                     _sixteen_bit_mask])
def test_broken_release_one_sentence_rc2_nothing_written(release, tmp_path, capsys, breaker):
    raw, _ = release
    culprit = breaker(raw)
    parent = tmp_path / "outs"
    parent.mkdir()
    out = parent / "aitex"
    if culprit is None:
        (out / "train").mkdir(parents=True)
        culprit = str(out)
    before = sorted(p.relative_to(parent) for p in parent.rglob("*"))
    assert main(["data", "convert", "aitex", str(raw), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("dpdl data: error:") and culprit in err, err
    assert sorted(p.relative_to(parent) for p in parent.rglob("*")) == before   # nothing written, no temp left


def test_a_broken_release_leaves_no_parent_folder_behind(release, tmp_path, capsys):
    raw, _ = release
    _corrupt_strip(raw)
    assert main(["data", "convert", "aitex", str(raw), str(tmp_path / "new" / "deeper" / "aitex")]) == 2
    assert "0012_010_02.png" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()                               # the folders made for OUT are gone too


def test_defect_codes_are_the_twelve_classes_of_shared():
    assert len(DEFECT_CLASSES) == 12
    shared = paths.shared_data_dir() / "aitex" / "test"
    if not shared.is_dir():
        pytest.skip(f"aitex/ not found in {paths.shared_data_dir()}")
    assert sorted(DEFECT_CLASSES.values()) == sorted(p.name for p in shared.iterdir() if p.name != "good")
    for cls_dir in shared.iterdir():   # each tile's code DDD (name NNNN_DDD_FF_i) maps to its folder
        for p in list(cls_dir.glob("*.png"))[:3]:
            if cls_dir.name != "good":
                assert DEFECT_CLASSES[p.stem.split("_")[1]] == cls_dir.name


def test_split_reproduces_shared_tiles():
    """Applied to the sorted names of ../shared's 2,256 normal tiles, the split gives its train/good exactly."""
    root = paths.shared_data_dir() / "aitex"
    if not root.is_dir():
        pytest.skip(f"aitex/ not found in {paths.shared_data_dir()}")
    train, test = stems(root / "train" / "good"), stems(root / "test" / "good")
    got_train, got_test = split_normal_names(train + test)
    assert (sorted(got_train), sorted(got_test)) == (train, test) and (len(train), len(test)) == (1692, 564)


def test_convert_bad_arguments(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    assert main(["data", "convert", "aitex", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "RAW" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main(["data", "convert", "aitex", str(tmp_path), str(tmp_path / "a_file")]) == 2
    assert "OUT" in capsys.readouterr().err
    assert main(["data", "convert", "aitex", str(tmp_path), str(tmp_path / "out")]) == 2   # not a release
    err = capsys.readouterr().err
    assert "NODefect_images" in err and err.count("\n") == 1 and not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exc:
        main(["data", "convert", "mvtec", str(tmp_path), str(tmp_path / "out")])
    assert exc.value.code == 2
