"""AITEX: the raw release → the OSAD baselines' 256-px tiles in the MVTec layout (``dpdl data convert aitex``).

The rule is the one of the baselines' conversion (github Choubo/deviation-network-image, ``data/convert_AITEX.py``),
which made the tiles in ``../shared/data/aitex``:

* **The raw release**: ``NODefect_images/<fabric>/NNNN_000_FF.png`` (defect-free strips, one folder per fabric),
  ``Defect_images/NNNN_DDD_FF.png`` (``DDD`` the defect code) and ``Mask_images/NNNN_DDD_FF_mask.png``; each of
  ``Defect_images`` and ``Mask_images`` may be doubled (``Defect_images/Defect_images/``) as in the download.
  Strips are 8-bit grey, 4096 × 256.
* **Tiles**: each strip is cut along its width into tiles of ``tile`` px (256): tile ``i`` is columns
  ``[i·tile, min((i+1)·tile, W))`` and the whole height, ``ceil(W / tile)`` tiles; the last tile of a narrower
  strip is narrower (the release's 3796-px strip gives a 212-px last tile).
* **Anomalies**: a defect strip's tile is an anomaly of the strip's class (:data:`DEFECT_CLASSES`, from the code
  ``DDD``) when its mask tile has a non-zero pixel; its defect-free tiles are not used. Written as
  ``test/<Class>/<strip>_<i>.png`` with the mask tile ``ground_truth/<Class>/<strip>_<i>_mask.png``.
* **Normals**: every tile of the defect-free strips, named ``<fabric>_<strip>_<i>``, split 75 / 25 into
  ``train/good`` / ``test/good`` by ``sklearn.model_selection.train_test_split(names, test_size=0.25,
  random_state=42)`` applied to the **sorted** tile names (the baselines applied it to ``os.listdir`` order,
  which is not reproducible; on the release the sorted order gives the 1,692 / 564 tiles of ``../shared``).

Quirks of the release, each handled by name (:data:`QUIRKS`):

* ``no mask`` – a defect strip without any mask (``0100_025_08`` in the release): its tiles are not used and a
  warning names it (the baselines' script crashes on it).
* ``split mask`` – masks split into ``<strip>_mask1.png``, ``<strip>_mask2.png`` …: the merged ``<strip>_mask.png``
  is used when present (as the release has for both such strips), else the parts are merged (pixel-wise max).
* ``alpha`` – an alpha channel (strip or mask) is dropped before anything else; tiles are written 8-bit grey.
* ``narrow strip`` – a strip narrower than a whole number of tiles: its last tile is narrower.

A broken release (a missing folder, an unreadable strip or mask, one of more than 8 bits per pixel, a defect code
not in :data:`DEFECT_CLASSES`, a strip name not ``NNNN_DDD_FF``, a mask of another size than its strip) is one
``ValueError``/``FileNotFoundError`` sentence naming the file, and nothing is written: the tiles go to a temporary
folder beside ``out`` that is moved into place only when everything has been converted (parent folders made for
``out`` are removed again).
"""
from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.model_selection import train_test_split

from .images import list_images
from .sources import find_child

# The release's defect codes → class names (the folder names of ../shared/data/aitex/test).
DEFECT_CLASSES: dict[str, str] = {
    "002": "Broken_end", "006": "Broken_yarn", "010": "Broken_pick", "016": "Weft_curling", "019": "Fuzzyball",
    "022": "Cut_selvage", "023": "Crease", "025": "Warp_ball", "027": "Knots", "029": "Contamination",
    "030": "Nep", "036": "Weft_crack"}
QUIRKS = ("no mask", "split mask", "alpha", "narrow strip")
TILE = 256
NORMAL_TEST_SIZE = 0.25
NORMAL_SPLIT_SEED = 42
STRIP_NAME = re.compile(r"^\d+_(\d{3})_\d+$")
RELEASE = "the raw AITEX release (NODefect_images/<fabric>/, Defect_images/, Mask_images/)"


@dataclass
class ConvertReport:
    """What :func:`convert_aitex` did: tile counts, anomaly tiles per class, and the quirks met (one line each)."""

    out: str
    train_normal: int = 0
    test_normal: int = 0
    anomaly_classes: dict[str, int] = field(default_factory=dict)
    normal_strips: int = 0
    defect_strips: int = 0
    quirks: list[str] = field(default_factory=list)

    @property
    def test_anomaly(self) -> int:
        return sum(self.anomaly_classes.values())

    def summary(self) -> str:
        classes = ", ".join(f"{c} {n}" for c, n in sorted(self.anomaly_classes.items()))
        return (f"AITEX tiles written to {self.out}: {self.train_normal} train/good, {self.test_normal} test/good "
                f"(from {self.normal_strips} defect-free strips), {self.test_anomaly} anomaly tiles in "
                f"{len(self.anomaly_classes)} classes (from {self.defect_strips} defect strips): {classes}")


# --------------------------------------------------------------------------- reading
def _release_dir(raw: Path, name: str) -> Path:
    """``raw/<name>``, or ``raw/<name>/<name>`` when the download doubled it (names match case-insensitively)."""
    folder = find_child(raw, [name])
    if folder is None:
        raise FileNotFoundError(f"AITEX release {raw}: folder {raw / name} is missing; expected {RELEASE}.")
    inner = find_child(folder, [name])
    return inner if inner is not None else folder


def _drop_alpha(im: Image.Image) -> Image.Image:
    """The image without its alpha channel (quirk ``alpha``): ``LA`` → ``L``, ``RGBA``/``PA``/``P`` → ``RGB``."""
    if im.mode == "LA":
        return im.getchannel("L")
    if im.mode in ("RGBA", "PA", "P") or "transparency" in im.info:
        return im.convert("RGBA").convert("RGB")
    return im


def read_grey(path: Path, what: str) -> tuple[np.ndarray, bool]:
    """``(array (H, W) uint8, had_alpha)``: the image at ``path``, alpha dropped, colour channels reduced by max.

    For the strips (grey in the release) the max of equal channels is the grey value; for masks it keeps every
    non-zero pixel of any channel. An unreadable file, or one of more than 8 bits per channel (16-bit, 32-bit or
    float grey: reducing it to 8 bits would clip it), is one ``ValueError`` naming it and ``what`` it is.
    """
    try:
        with Image.open(path) as im:
            deep = im.mode if im.mode.startswith(("I", "F")) else None
            if deep:
                raise _TooDeep
            im.load()
            had_alpha = im.mode in ("LA", "RGBA", "PA") or "transparency" in im.info
            im = _drop_alpha(im)
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB") if im.mode in ("CMYK", "YCbCr", "HSV", "LAB") else im.convert("L")
            arr = np.asarray(im)
    except _TooDeep:
        raise ValueError(f"AITEX release: the {what} {path} has more than 8 bits per pixel (mode {deep}): expected "
                         "an 8-bit image as in the release (reducing it to 8 bits would clip it).") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"AITEX release: cannot read the {what} {path}: expected a readable 8-bit image "
                         f"({type(exc).__name__}).") from None
    if arr.ndim == 3:
        arr = arr.max(axis=-1)
    return np.ascontiguousarray(arr.astype(np.uint8)), had_alpha


class _TooDeep(Exception):
    """An image of more than 8 bits per channel (read_grey refuses it)."""


def tile_boxes(width: int, tile: int = TILE) -> list[tuple[int, int]]:
    """Column ranges ``[(left, right), ...]`` of the ``ceil(width / tile)`` tiles; the last may be narrower."""
    return [(i * tile, min((i + 1) * tile, width)) for i in range(math.ceil(width / tile))]


def defect_class(strip: Path) -> str:
    """The class of defect strip ``strip`` (``NNNN_DDD_FF``) from its code ``DDD``; else one sentence naming it."""
    m = STRIP_NAME.match(strip.stem)
    if m is None:
        raise ValueError(f"AITEX release: defect strip {strip} is not named NNNN_DDD_FF (DDD the defect code).")
    if m.group(1) not in DEFECT_CLASSES:
        raise ValueError(f"AITEX release: defect strip {strip} has the unknown defect code {m.group(1)}; expected "
                         f"one of {', '.join(sorted(DEFECT_CLASSES))}.")
    return DEFECT_CLASSES[m.group(1)]


def find_mask(mask_dir: Path, strip: Path) -> tuple[list[Path], str | None]:
    """``(mask files, quirk)``: ``<strip>_mask.*`` alone; else the split parts ``<strip>_mask1.*``, ``_mask2.*`` …
    (quirk ``split mask``); else ``[]`` (quirk ``no mask``). Parts are also reported when a merged mask exists."""
    by_stem = {p.stem.lower(): p for p in list_images(mask_dir)}
    stem = strip.stem.lower()
    merged = by_stem.get(f"{stem}_mask")
    parts = [by_stem[k] for k in sorted(by_stem, key=lambda k: (len(k), k))
             if re.fullmatch(re.escape(stem) + r"_mask\d+", k)]
    if merged is not None:
        return [merged], ("split mask" if parts else None)
    if parts:
        return parts, "split mask"
    return [], "no mask"


def split_normal_names(names: list[str]) -> tuple[list[str], list[str]]:
    """``(train, test)``: the baselines' 75 / 25 split, ``train_test_split(sorted(names), test_size=0.25,
    random_state=42)``, so it does not depend on the order the names come in."""
    if len(names) < 2:
        raise ValueError(f"the AITEX normal split needs at least 2 defect-free tiles, got {len(names)}.")
    train, test = train_test_split(sorted(names), test_size=NORMAL_TEST_SIZE, random_state=NORMAL_SPLIT_SEED)
    return list(train), list(test)


# --------------------------------------------------------------------------- converting
def _save(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode="L").save(path)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"output folder {out} already exists and is not empty: expected a new folder for the "
                         f"AITEX tiles (nothing was written).")


def convert_aitex(raw, out, tile: int = TILE) -> ConvertReport:
    """Convert the raw AITEX release at ``raw`` into the MVTec layout at ``out`` (a new or empty folder).

    Out: a :class:`ConvertReport`. Bad input raises ``ValueError``/``FileNotFoundError`` with one sentence naming
    the file, and leaves nothing behind (``out`` is only created, by one rename, once every tile is written).
    """
    raw, out = Path(raw), Path(out)
    if not raw.is_dir():
        raise FileNotFoundError(f"AITEX release folder {raw} does not exist; expected {RELEASE}.")
    if int(tile) < 1:
        raise ValueError(f"the tile size must be at least 1 px, got {tile}.")
    _check_out(out)
    normal_dir = _release_dir(raw, "NODefect_images")
    defect_dir = _release_dir(raw, "Defect_images")
    mask_dir = _release_dir(raw, "Mask_images")
    report = ConvertReport(out=str(out))
    made = [a for a in reversed(out.absolute().parents) if not a.exists()]   # out's missing parents, outermost first
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.converting-", dir=out.parent))
        _convert_into(tmp, normal_dir, defect_dir, mask_dir, int(tile), report)
        if out.exists():
            out.rmdir()   # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(made):      # the parent folders made for out go too: nothing is left behind
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return report


def _note(report: ConvertReport, quirk: str, path: Path, what: str) -> None:
    report.quirks.append(f"{quirk}: {path.name} {what}")


def _convert_into(tmp: Path, normal_dir: Path, defect_dir: Path, mask_dir: Path, tile: int,
                  report: ConvertReport) -> None:
    # defect-free strips → every tile, named <fabric>_<strip>_<i>, kept aside until the split
    pending = tmp / "_normal"
    names: list[str] = []
    fabrics = sorted(p for p in normal_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    for fabric in fabrics:
        for strip in list_images(fabric):
            arr, alpha = read_grey(strip, "defect-free strip")
            if alpha:
                _note(report, "alpha", strip, "had an alpha channel, dropped")
            boxes = tile_boxes(arr.shape[1], tile)
            if arr.shape[1] % tile:
                _note(report, "narrow strip", strip, f"is {arr.shape[1]} px wide: last tile "
                                                     f"{boxes[-1][1] - boxes[-1][0]} px")
            for i, (left, right) in enumerate(boxes):
                name = f"{fabric.name}_{strip.stem}_{i}"
                _save(arr[:, left:right], pending / f"{name}.png")
                names.append(name)
            report.normal_strips += 1
    if len(names) < 2:
        raise ValueError(f"AITEX release: {normal_dir} holds {len(names)} defect-free tiles; expected "
                         f"NODefect_images/<fabric>/*.png strips giving at least 2 tiles.")
    if len(set(names)) != len(names):
        dup = sorted(n for n in set(names) if names.count(n) > 1)[0]
        raise ValueError(f"AITEX release: two defect-free strips give the same tile name {dup} in {normal_dir}.")
    train, test = split_normal_names(names)
    for part, chosen in (("train", train), ("test", test)):
        (tmp / part / "good").mkdir(parents=True, exist_ok=True)
        for name in chosen:
            os.replace(pending / f"{name}.png", tmp / part / "good" / f"{name}.png")
    pending.rmdir()
    report.train_normal, report.test_normal = len(train), len(test)

    # defect strips → the tiles whose mask has a non-zero pixel
    strips = list_images(defect_dir)
    if not strips:
        raise ValueError(f"AITEX release: folder {defect_dir} holds no defect strips; expected NNNN_DDD_FF.png.")
    for strip in strips:
        cls = defect_class(strip)
        arr, alpha = read_grey(strip, "defect strip")
        masks, quirk = find_mask(mask_dir, strip)
        if quirk == "no mask":
            _note(report, "no mask", strip, f"has no mask in {mask_dir}: its tiles are not used")
            continue
        if quirk == "split mask":
            _note(report, "split mask", strip, "has split masks: used " + " + ".join(m.name for m in masks))
        if alpha:
            _note(report, "alpha", strip, "had an alpha channel, dropped")
        mask = None
        for m in masks:
            part, m_alpha = read_grey(m, "mask")
            if m_alpha:
                _note(report, "alpha", m, "had an alpha channel, dropped")
            if part.shape != arr.shape:
                raise ValueError(f"AITEX release: mask {m} is {part.shape[1]}x{part.shape[0]} px but its strip "
                                 f"{strip.name} is {arr.shape[1]}x{arr.shape[0]}; expected the same size.")
            mask = part if mask is None else np.maximum(mask, part)
        boxes = tile_boxes(arr.shape[1], tile)
        if arr.shape[1] % tile:
            _note(report, "narrow strip", strip, f"is {arr.shape[1]} px wide: last tile "
                                                 f"{boxes[-1][1] - boxes[-1][0]} px")
        for i, (left, right) in enumerate(boxes):
            m_tile = mask[:, left:right]
            if not m_tile.any():
                continue
            _save(arr[:, left:right], tmp / "test" / cls / f"{strip.stem}_{i}.png")
            _save(m_tile, tmp / "ground_truth" / cls / f"{strip.stem}_{i}_mask.png")
            report.anomaly_classes[cls] = report.anomaly_classes.get(cls, 0) + 1
        report.defect_strips += 1
