"""Image loading (mode conversion, crops, resizing, bad files) and the SDD rasterisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dpdl.data import Sample, band_boxes, list_images, load_image, make_split, rasterise_polygons
from dpdl.data.sources import parse_yolo_polygons


def sample(path, box=None):
    return Sample(key=f"t/{path.name}", path=str(path), label=0, cls="good", box=box)


def check(t, size):
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    assert tuple(t.shape) == (3, size, size)
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0


def test_grey_image(tmp_path):
    p = tmp_path / "grey.png"
    Image.new("L", (40, 30), 200).save(p)
    t = load_image(sample(p), 16)
    check(t, 16)
    assert torch.allclose(t, torch.full_like(t, 200 / 255), atol=1e-6)


def test_rgba_image(tmp_path):
    p = tmp_path / "rgba.png"
    Image.new("RGBA", (20, 20), (255, 0, 0, 128)).save(p)
    t = load_image(sample(p), 24)
    check(t, 24)
    assert torch.allclose(t[0], torch.ones(24, 24)) and float(t[1:].abs().max()) == 0.0


def test_palette_image(tmp_path):
    p = tmp_path / "pal.png"
    im = Image.new("P", (10, 10), 1)
    im.putpalette([0, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    im.save(p)
    assert Image.open(p).mode == "P"
    t = load_image(sample(p), 8)
    check(t, 8)
    assert torch.allclose(t[1], torch.ones(8, 8)) and float(t[0].max()) == 0.0


def test_sixteen_bit_and_other_formats(tmp_path):
    p16 = tmp_path / "deep.png"
    Image.fromarray(np.full((12, 12), 65535, np.uint16)).save(p16)
    check(t := load_image(sample(p16), 12), 12)
    assert float(t.min()) > 0.99
    for ext in (".jpg", ".JPEG", ".bmp", ".tif"):
        p = tmp_path / f"img{ext}"
        Image.new("RGB", (9, 7), (10, 20, 30)).save(p, format={"jpg": "JPEG", "jpeg": "JPEG"}.get(
            ext[1:].lower(), ext[1:].upper().replace("TIF", "TIFF")))
        check(load_image(sample(p), 5), 5)
    npy = tmp_path / "arr.npy"
    np.save(npy, np.ones((6, 6), np.float32))
    check(load_image(sample(npy), 4), 4)
    assert {p.name for p in list_images(tmp_path)} == {"deep.png", "img.jpg", "img.JPEG", "img.bmp", "img.tif",
                                                       "arr.npy"}


def test_crop_box_then_resize(tmp_path):
    p = tmp_path / "halves.png"
    arr = np.zeros((30, 10, 3), np.uint8)
    arr[10:20] = 255  # the middle band is white
    Image.fromarray(arr).save(p)
    boxes = band_boxes(10, 30)
    assert boxes == [(0, 0, 10, 10), (0, 10, 10, 20), (0, 20, 10, 30)]
    assert band_boxes(30, 10) == [(0, 0, 10, 10), (10, 0, 20, 10), (20, 0, 30, 10)]
    assert float(load_image(sample(p, boxes[1]), 7).min()) == 1.0
    assert float(load_image(sample(p, boxes[0]), 7).max()) == 0.0


def test_corrupt_and_missing_images(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(ValueError) as exc:
        load_image(sample(bad), 8)
    assert str(bad) in str(exc.value) and "\n" not in str(exc.value)
    truncated = tmp_path / "cut.jpg"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.jpg"):
        load_image(sample(truncated), 8)
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        load_image(sample(tmp_path / "nothere.png"), 8)


def test_square_polygon_rasterisation():
    w, h = 100, 50
    # a contour traced around pixels x = 10..30, y = 5..25 (pixel centres), normalised as in YOLO labels
    text = f"0 {10 / w} {5 / h} {30 / w} {5 / h} {30 / w} {25 / h} {10 / w} {25 / h}\n"
    polys = parse_yolo_polygons(text)
    mask = rasterise_polygons(polys, w, h)
    assert mask.shape == (h, w)
    assert int(mask.sum()) == 21 * 21  # the traced pixels, outline included
    assert mask[5:26, 10:31].all() and not mask[:5].any() and not mask[:, :10].any()
    assert 20 * 20 <= int(mask.sum()) <= 21 * 21  # polygon area, within rounding
    assert not rasterise_polygons([], w, h).any()
    with pytest.raises(ValueError, match="line 1"):
        parse_yolo_polygons("0 0.1 0.2 0.3\n", "lbl.txt")


def test_synthetic_images_load(synthetic_root):
    split = make_split("synthetic", anomalies=3, seed=0)
    t = load_image(split.train_anomaly[0], 32)
    check(t, 32)
    normal = torch.stack([load_image(s, 64) for s in split.test_normal[:10]])
    anomal = torch.stack([load_image(s, 64) for s in split.test_anomaly[:10]])
    # the defects are visible: each anomaly deviates from the mean normal image somewhere by a lot
    mean = normal.mean(0)
    dev = (anomal - mean).abs().amax(dim=(1, 2, 3))
    assert float(dev.min()) > 0.2
