"""Readers: one per on-disk layout. Each turns a folder into a :class:`~dpdl.data.samples.Pool`.

Where each dataset comes from
=============================

* **ELPV** (``elpv``) – embedded: the PyPI package ``elpv-dataset`` (``elpv_dataset/data/labels.csv`` and
  ``images/``); no data root needed. Normal = defect probability 0 (1,508 cells), anomaly = probability 1
  (715 cells), anomaly classes ``mono`` (313) and ``poly`` (402) from the cell type; cells with probability
  1/3 or 2/3 are dropped.
* **BrainMRI** (``brainmri``) – ``../shared/data/brainmri`` (``dpdl.paths.shared_data_dir()``), else
  ``<data root>/brainmri``: ``no/`` normal, ``yes/`` anomalies (one class, ``tumor``). Every common image type
  is read (``.jpg .jpeg .JPG .png .bmp ...``); the baselines dropped ``.jpeg``/``.JPG`` files.
* **SDD** (``sdd``, KolektorSDD) – ``../shared/data/sdd_yolo``, else ``<data root>/sdd``, in one of three layouts:
  YOLO (``images/<part>/NNN.jpg`` + ``labels/<part>/NNN.txt``, one polygon per line ``0 x1 y1 x2 y2 ...``
  normalised to [0, 1]; the ``<part>`` folders, e.g. train/val, are pooled; a missing or empty label file
  means no defect), the original KolektorSDD (``kosNN/PartN.jpg`` + ``kosNN/PartN_label.bmp``), or the
  converted MVTec layout. The masks of the YOLO layout are re-rasterised: each polygon is filled, outline
  included (the pixel-centre convention of the OpenCV contours it was traced from). Each image is cut into
  three equal bands along its long side (``[0, L/3)``, ``[L/3, 2L/3)``, ``[2L/3, L)``, integer division); a
  band is an anomaly (class ``defect``) when its mask has a positive pixel. Our counts from the YOLO copy
  in ``../shared/data``: 399 images → 1,197 bands; 54 anomalous bands (from the 52 images with a defect) and
  1,143 normal bands, split 3:1 → **857 train normal / 286 test normal / 54 anomalies**. The paper's Table 4
  says 594 / 286 / 54: same anomalies and test normals, fewer training normals (not explained by the
  protocol; a documented deviation).
* **MVTec AD** (``mvtec_<subset>``) – data root, as downloaded: ``<root>/<subset>``,
  ``<root>/mvtec/<subset>`` or ``<root>/mvtec_anomaly_detection/<subset>`` (also ``mvtec_ad``, ``mvtecad``).
* **HeadCT** (``headct``) – ``<root>/headct`` (also ``head_ct``, ``head-ct``): MVTec layout, or ``no/`` +
  ``yes/`` like BrainMRI (class ``hemorrhage``), or the Kaggle release (``labels.csv`` with columns ``id`` and
  ``hemorrhage``; images ``NNN.png`` in ``head_ct/head_ct/`` as Kaggle ships them, ``head_ct/`` as in
  ``../shared/data/headct``, or the folder itself). Found in ``../shared/data/headct`` first: 100 normal,
  100 anomalies, split 75 / 25 / 100 by the protocol (the paper's Table 4).
* **AITEX** (``aitex``) – ``../shared/data/aitex``, else ``<root>/aitex``: the baselines' 256-px tiles in the
  MVTec layout (``dpdl data convert aitex RAW OUT`` makes them from the raw release, see
  :mod:`dpdl.data.aitex`); the tiles keep their own 1,692 / 564 normal split; 185 anomaly tiles in 12 classes.
* **Optical** (``optical``, DAGM 2007), **Mastcam** (``mastcam``), **Hyper-Kvasir**
  (``hyperkvasir``) – ``<root>/<name>`` in the MVTec layout that the baselines' conversion scripts (DRA, AHL)
  write. Folder names match case-insensitively and ignoring ``-``, ``_`` and spaces
  (``Hyper-Kvasir``, ``hyper_kvasir``, ``AITEX`` …).
* **folder** (``folder``) – any directory in the MVTec layout; the data root *is* that directory.
* **synthetic** (``synthetic``) – generated on demand into ``dpdl.paths.cache_dir()/synthetic/<hash>``
  (MVTec layout), see :mod:`dpdl.data.synthetic`.

The data root is ``--data-root`` on the command line, the ``data_root`` argument in Python, or the
environment variable ``DPDL_DATA``.

The MVTec layout
================
::

    <dataset>/train/good/*.png        normal training images
    <dataset>/test/good/*.png         normal test images
    <dataset>/test/<class>/*.png      anomalies, one folder per anomaly class (any other name than "good")

Datasets in this layout keep their own train/test split of the normal images; other datasets have their
normal images split 3:1 by the protocol. Anomaly class names are the folder names in lower case. Only the
``train/good``, ``test/good`` and ``test/<class>`` folders are read (``ground_truth/`` and the like are ignored).
Files are read in sorted order of their names, so nothing depends on the file system's listing order.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .images import list_images
from .samples import NORMAL_CLASS, Pool, Sample

MVTEC_LAYOUT = "<dataset>/train/good/, <dataset>/test/good/, <dataset>/test/<class>/"


# --------------------------------------------------------------------------- helpers
def norm_name(name: str) -> str:
    """A folder name for case-insensitive matching: lower case, without ``-``, ``_`` and spaces."""
    return re.sub(r"[-_\s]", "", name.lower())


def find_child(parent: Path, aliases: tuple[str, ...] | list[str]) -> Path | None:
    """The sub-folder of ``parent`` whose normalised name equals one of ``aliases`` (first alias wins;
    among folders matching the same alias the first in sorted order)."""
    if parent is None or not parent.is_dir():
        return None
    children = sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))
    by_norm: dict[str, Path] = {}
    for child in children:
        by_norm.setdefault(norm_name(child.name), child)
    for alias in aliases:
        hit = by_norm.get(norm_name(alias))
        if hit is not None:
            return hit
    return None


def _key(dataset: str, root: Path, path: Path, suffix: str = "") -> str:
    return f"{dataset}/{path.relative_to(root).as_posix()}{suffix}"


def _images_in(folder: Path, dataset: str) -> list[Path]:
    """The images in ``folder``; a missing or image-less folder is one clear error naming it."""
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset {dataset!r}: folder {folder} does not exist.")
    files = list_images(folder)
    if not files:
        raise ValueError(f"dataset {dataset!r}: folder {folder} holds no image files; "
                         f"expected at least one image (png, jpg, jpeg, bmp, tif, ...).")
    return files


def is_mvtec_layout(folder: Path) -> bool:
    return (folder / "train" / "good").is_dir() and (folder / "test").is_dir()


# --------------------------------------------------------------------------- MVTec layout
def read_mvtec_layout(root: Path, dataset: str) -> Pool:
    """``root/train/good`` (train normal), ``root/test/good`` (test normal), ``root/test/<class>/`` (anomalies).

    Missing ``train/good``, ``test/`` or ``test/good`` is a ``FileNotFoundError``; an anomaly class folder
    without images, or no anomaly class at all, is a ``ValueError``; each names the folder.
    """
    root = Path(root)
    for need in (root / "train" / "good", root / "test", root / "test" / "good"):
        if not need.is_dir():
            raise FileNotFoundError(
                f"dataset {dataset!r}: folder {need} is missing; expected the MVTec layout {MVTEC_LAYOUT} "
                f"under {root}.")
    train = [Sample(_key(dataset, root, p), str(p), 0, NORMAL_CLASS)
             for p in _images_in(root / "train" / "good", dataset)]
    test = [Sample(_key(dataset, root, p), str(p), 0, NORMAL_CLASS)
            for p in _images_in(root / "test" / "good", dataset)]
    class_dirs = sorted(p for p in (root / "test").iterdir()
                        if p.is_dir() and not p.name.startswith(".") and p.name.lower() != NORMAL_CLASS)
    if not class_dirs:
        raise ValueError(f"dataset {dataset!r}: folder {root / 'test'} has no anomaly class folder; "
                         f"expected at least one test/<class>/ folder besides test/good.")
    anomalies = []
    for d in class_dirs:
        anomalies += [Sample(_key(dataset, root, p), str(p), 1, d.name.lower()) for p in _images_in(d, dataset)]
    return Pool(normal=sorted(train + test), anomaly=sorted(anomalies),
                train_normal=sorted(train), test_normal=sorted(test))


# --------------------------------------------------------------------------- ELPV
def elpv_dir() -> Path:
    """The data folder of the installed PyPI package ``elpv-dataset`` (holds ``labels.csv`` and ``images/``)."""
    try:
        import elpv_dataset
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise FileNotFoundError("dataset 'elpv' needs the PyPI package elpv-dataset; "
                                "install it with `pip install elpv-dataset`.") from exc
    return Path(elpv_dataset.__file__).resolve().parent / "data"


def read_elpv(folder: Path | None = None, dataset: str = "elpv") -> Pool:
    """ELPV from ``labels.csv`` (``path probability type``, whitespace separated): probability 0 → normal,
    1 → anomaly of class ``type`` (``mono``/``poly``); 1/3 and 2/3 are dropped."""
    folder = Path(folder) if folder is not None else elpv_dir()
    labels = folder / "labels.csv"
    if not labels.is_file():
        raise FileNotFoundError(f"dataset {dataset!r}: label file {labels} does not exist.")
    normal, anomaly = [], []
    for lineno, line in enumerate(labels.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise ValueError(f"dataset {dataset!r}: line {lineno} of {labels} is not 'path probability type'.")
        rel, prob, cell_type = parts[0], float(parts[1]), parts[2].lower()
        path = folder / rel
        key = f"{dataset}/{Path(rel).as_posix()}"
        if prob == 0.0:
            normal.append(Sample(key, str(path), 0, NORMAL_CLASS))
        elif prob == 1.0:
            anomaly.append(Sample(key, str(path), 1, cell_type))
    return Pool(normal=sorted(normal), anomaly=sorted(anomaly))


# --------------------------------------------------------------------------- yes/no folders
def read_yes_no(root: Path, dataset: str, anomaly_class: str) -> Pool:
    """``root/no/`` normal, ``root/yes/`` anomalies of one class (BrainMRI, HeadCT)."""
    root = Path(root)
    no_dir, yes_dir = find_child(root, ["no"]), find_child(root, ["yes"])
    if no_dir is None or yes_dir is None:
        raise FileNotFoundError(f"dataset {dataset!r}: {root} needs the folders no/ (normal) and yes/ (anomalies).")
    normal = [Sample(_key(dataset, root, p), str(p), 0, NORMAL_CLASS) for p in _images_in(no_dir, dataset)]
    anomaly = [Sample(_key(dataset, root, p), str(p), 1, anomaly_class) for p in _images_in(yes_dir, dataset)]
    return Pool(normal=sorted(normal), anomaly=sorted(anomaly))


# --------------------------------------------------------------------------- HeadCT (Kaggle)
HEADCT_IMAGE_DIRS = (("head_ct", "head_ct"), ("head_ct",), ())


def headct_image_dir(root: Path, dataset: str = "headct") -> Path:
    """The folder of the Kaggle HeadCT images ``NNN.png``: ``head_ct/head_ct/`` (the Kaggle download, which the
    baselines' convert_HeadCT.py reads), else ``head_ct/``, else ``root`` itself; the first of them that holds
    an image with a numeric name. Only that folder is read, so other images below ``root`` are never picked up."""
    for parts in HEADCT_IMAGE_DIRS:
        folder: Path | None = Path(root)
        for part in parts:
            folder = find_child(folder, [part])
        if folder is not None and any(p.stem.isdigit() for p in list_images(folder)):
            return folder
    raise FileNotFoundError(f"dataset {dataset!r}: no images NNN.png in {Path(root) / 'head_ct' / 'head_ct'}, "
                            f"{Path(root) / 'head_ct'} or {root}; expected the Kaggle layout labels.csv + "
                            f"head_ct/NNN.png.")


def read_headct_csv(root: Path, dataset: str = "headct") -> Pool:
    """Kaggle HeadCT: ``labels.csv`` (columns ``id``, ``hemorrhage``) and images ``NNN.png`` in the folder that
    :func:`headct_image_dir` finds (``head_ct/head_ct/``, ``head_ct/`` or ``root``)."""
    root = Path(root)
    labels = root / "labels.csv"
    by_id: dict[int, Path] = {}
    for p in list_images(headct_image_dir(root, dataset)):
        if p.stem.isdigit():
            by_id.setdefault(int(p.stem), p)
    normal, anomaly = [], []
    with labels.open(newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        if "id" not in header or "hemorrhage" not in header:
            raise ValueError(f"dataset {dataset!r}: {labels} must have the columns id and hemorrhage.")
        i_id, i_h = header.index("id"), header.index("hemorrhage")
        for row in reader:
            if not row:
                continue
            ident, hem = (_csv_int(row, i, name, labels, reader.line_num, dataset)
                          for i, name in ((i_id, "id"), (i_h, "hemorrhage")))
            if hem not in (0, 1):
                raise ValueError(f"dataset {dataset!r}: {labels}, line {reader.line_num}: hemorrhage is {hem}: "
                                 "expected 0 or 1.")
            if ident not in by_id:
                raise FileNotFoundError(f"dataset {dataset!r}: no image {ident:03d}.png below {root} "
                                        f"for the row id={ident} of {labels}.")
            p = by_id[ident]
            if hem:
                anomaly.append(Sample(_key(dataset, root, p), str(p), 1, "hemorrhage"))
            else:
                normal.append(Sample(_key(dataset, root, p), str(p), 0, NORMAL_CLASS))
    return Pool(normal=sorted(normal), anomaly=sorted(anomaly))


def _csv_int(row: list[str], i: int, name: str, path: Path, line: int, dataset: str) -> int:
    """Column ``i`` (``name``) of a CSV row as a non-negative integer (ASCII digits); else one sentence naming the
    file and the line."""
    value = row[i].strip() if i < len(row) else None
    if value is None or not re.fullmatch(r"[0-9]+", value):
        found = "missing" if value is None else repr(value)
        raise ValueError(f"dataset {dataset!r}: {path}, line {line}: {name} is {found}: expected an integer.")
    return int(value)


# --------------------------------------------------------------------------- SDD
def band_boxes(width: int, height: int, bands: int = 3) -> list[tuple[int, int, int, int]]:
    """``bands`` equal crops ``(left, top, right, bottom)`` along the long side (rows when height ≥ width)."""
    if height >= width:
        return [(0, height * k // bands, width, height * (k + 1) // bands) for k in range(bands)]
    return [(width * k // bands, 0, width * (k + 1) // bands, height) for k in range(bands)]


def parse_yolo_polygons(text: str, source: str = "label file") -> list[list[tuple[float, float]]]:
    """YOLO segmentation lines ``cls x1 y1 x2 y2 ...`` (normalised) → list of polygons [(x, y), ...]."""
    polys = []
    for lineno, line in enumerate(text.splitlines(), 1):
        vals = line.split()
        if not vals:
            continue
        coords = vals[1:]
        if len(coords) < 6 or len(coords) % 2:
            raise ValueError(f"line {lineno} of {source} is not a YOLO polygon 'class x1 y1 x2 y2 x3 y3 ...'.")
        xy = [float(v) for v in coords]
        polys.append(list(zip(xy[0::2], xy[1::2])))
    return polys


def rasterise_polygons(polygons: list[list[tuple[float, float]]], width: int, height: int) -> np.ndarray:
    """Boolean mask ``(height, width)``: every polygon (normalised coordinates) filled, outline included.

    Vertex ``(x, y)`` maps to pixel ``(round(x·width), round(y·height))``, the centre convention of the OpenCV
    contours the polygons were traced from, so a contour around pixels 10..30 gives back those 21×21 pixels.
    """
    canvas = Image.new("L", (int(width), int(height)), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        pts = [(int(round(x * width)), int(round(y * height))) for x, y in poly]
        if len(pts) >= 2:
            draw.polygon(pts, fill=1, outline=1)
    return np.asarray(canvas, dtype=np.uint8) > 0


def _bands(dataset: str, root: Path, img: Path, mask: np.ndarray | None, size: tuple[int, int]) -> list[Sample]:
    width, height = size
    out = []
    for k, box in enumerate(band_boxes(width, height)):
        left, top, right, bottom = box
        bad = bool(mask is not None and mask[top:bottom, left:right].any())
        out.append(Sample(_key(dataset, root, img, f"#band{k}"), str(img), int(bad),
                          "defect" if bad else NORMAL_CLASS, box))
    return out


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read image file {path}: expected a readable image "
                         f"(png, jpg, bmp, tif, ...) but decoding failed ({type(exc).__name__}).") from None


def read_sdd_yolo(root: Path, dataset: str = "sdd") -> Pool:
    """SDD from the YOLO layout (``images/<part>/`` + ``labels/<part>/``, parts pooled) → three bands per image."""
    root = Path(root)
    images_root, labels_root = root / "images", root / "labels"
    parts = sorted(p for p in images_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not parts:
        parts = [images_root]
    samples: list[Sample] = []
    for part in parts:
        for img in list_images(part):
            label_file = labels_root / part.relative_to(images_root) / (img.stem + ".txt")
            text = label_file.read_text() if label_file.is_file() else ""
            polys = parse_yolo_polygons(text, str(label_file))
            size = _image_size(img)
            mask = rasterise_polygons(polys, *size) if polys else None
            samples += _bands(dataset, root, img, mask, size)
    if not samples:
        raise ValueError(f"dataset {dataset!r}: folder {images_root} holds no image files; expected images/<part>/*.jpg.")
    return _band_pool(samples)


def _band_pool(samples: list[Sample]) -> Pool:
    """A pool of SDD bands, split by label and sorted by key (3:1 normal split applies: no own split)."""
    return Pool(normal=sorted(s for s in samples if s.label == 0), anomaly=sorted(s for s in samples if s.label == 1))


def read_sdd_kolektor(root: Path, dataset: str = "sdd") -> Pool:
    """SDD from the original KolektorSDD layout (``kosNN/PartN.jpg`` + ``kosNN/PartN_label.bmp``)."""
    root = Path(root)
    samples: list[Sample] = []
    for kos in sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower().startswith("kos")):
        for img in list_images(kos):
            if img.stem.lower().endswith("_label"):
                continue
            label = next((p for p in list_images(kos) if p.stem.lower() == img.stem.lower() + "_label"), None)
            if label is None:
                raise FileNotFoundError(f"dataset {dataset!r}: mask {kos / (img.stem + '_label.bmp')} is missing.")
            size = _image_size(img)
            try:
                with Image.open(label) as m:
                    mask = np.asarray(m.convert("L")) > 0
            except (OSError, SyntaxError, ValueError):
                raise ValueError(f"cannot read image file {label}: expected a readable mask image.") from None
            samples += _bands(dataset, root, img, mask, size)
    if not samples:
        raise ValueError(f"dataset {dataset!r}: {root} holds no kosNN/PartN.jpg images.")
    return _band_pool(samples)


def read_sdd(root: Path, dataset: str = "sdd") -> Pool:
    """SDD in any of its three layouts (YOLO, original KolektorSDD, MVTec)."""
    root = Path(root)
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return read_sdd_yolo(root, dataset)
    if is_mvtec_layout(root):
        return read_mvtec_layout(root, dataset)
    if any(p.is_dir() and p.name.lower().startswith("kos") for p in root.iterdir()):
        return read_sdd_kolektor(root, dataset)
    raise ValueError(f"dataset {dataset!r}: {root} is in no known SDD layout; expected images/ + labels/ (YOLO), "
                     f"kosNN/PartN.jpg + PartN_label.bmp (KolektorSDD), or the MVTec layout {MVTEC_LAYOUT}.")
