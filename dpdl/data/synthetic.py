"""A small synthetic anomaly-detection dataset, so that tests and demos run without real data.

Normal images are a woven, beige textile texture (two sinusoidal thread patterns with a random phase and
pitch, slow shading and pixel noise). Anomalies are the same texture with one injected defect of one of
three classes:

* ``scratch`` – a thin (1–2 px) dark or bright line segment, 40–80 % of the image side long;
* ``spot`` – a dark round spot, radius 6–10 % of the side;
* ``stain`` – a soft reddish-brown colour patch, radius 12–20 % of the side.

Default: 64×64 px, 100 train normal, 30 test normal, 3 × 15 anomalies, written in the MVTec layout
(``train/good``, ``test/good``, ``test/<class>``) in about a second. Everything is a function of the parameters
(one ``numpy.random.RandomState`` per image, seeded from ``(seed, part, index)``). The dataset ``synthetic``
generates the default into ``dpdl.paths.cache_dir()/synthetic/<hash of the parameters>``: written to a
temporary folder, then renamed, so a half-written dataset is never read.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .. import paths

GENERATOR_VERSION = 1
DEFECT_CLASSES = ("scratch", "spot", "stain")


@dataclass(frozen=True)
class SyntheticParams:
    """The parameters of a synthetic dataset (their hash names its cache folder)."""

    seed: int = 0
    size: int = 64
    n_train: int = 100
    n_test_normal: int = 30
    n_per_class: int = 15
    classes: tuple[str, ...] = DEFECT_CLASSES

    def digest(self) -> str:
        blob = json.dumps({**asdict(self), "classes": list(self.classes), "version": GENERATOR_VERSION},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _rng(seed: int, part: int, index: int) -> np.random.RandomState:
    return np.random.RandomState([int(seed) & 0xFFFFFFFF, part, index])


def texture(rng: np.random.RandomState, size: int) -> np.ndarray:
    """A normal woven texture: float array ``(size, size, 3)`` in [0, 1]."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    pitch = size / rng.uniform(9.0, 11.0)
    px, py = rng.uniform(0, 2 * np.pi, 2)
    weave = 0.5 * np.sin(2 * np.pi * x / pitch + px) * np.sin(2 * np.pi * y / pitch + py)
    shade = 0.04 * np.sin(2 * np.pi * (x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1)) / (2 * size)
                          + rng.uniform(0, 2 * np.pi))
    base = np.array([0.72, 0.64, 0.50], np.float32) * rng.uniform(0.95, 1.05)
    grey = 0.08 * weave + shade + rng.normal(0.0, 0.02, (size, size)).astype(np.float32)
    return np.clip(base[None, None, :] + grey[..., None], 0.0, 1.0)


def add_defect(img: np.ndarray, kind: str, rng: np.random.RandomState) -> np.ndarray:
    """``img`` with one defect of class ``kind`` (``scratch``, ``spot`` or ``stain``) injected."""
    size = img.shape[0]
    out = img.copy()
    if kind == "scratch":
        mask = Image.new("L", (size, size), 0)
        length = rng.uniform(0.4, 0.8) * size
        angle = rng.uniform(0, np.pi)
        cx, cy = rng.uniform(0.3, 0.7, 2) * size
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        ImageDraw.Draw(mask).line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255,
                                  width=int(rng.randint(1, 3)))
        m = np.asarray(mask, np.float32)[..., None] / 255.0
        value = 0.15 if rng.rand() < 0.5 else 0.97
        out = out * (1 - m) + value * m
    elif kind == "spot":
        r = rng.uniform(0.06, 0.10) * size
        cx, cy = rng.uniform(0.2, 0.8, 2) * size
        y, x = np.mgrid[0:size, 0:size].astype(np.float32)
        m = np.clip(r + 0.5 - np.hypot(x - cx, y - cy), 0, 1)[..., None]
        out = out * (1 - m) + 0.1 * m
    elif kind == "stain":
        rx, ry = rng.uniform(0.12, 0.20, 2) * size
        cx, cy = rng.uniform(0.25, 0.75, 2) * size
        y, x = np.mgrid[0:size, 0:size].astype(np.float32)
        d = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
        m = (np.clip(1.5 - d, 0, 1) * 0.85)[..., None]
        tint = np.array([0.55, 0.25, 0.15], np.float32)
        out = out * (1 - m) + (out * 0.4 + tint * 0.6) * m
    else:
        raise ValueError(f"unknown synthetic defect class {kind!r}: expected one of {', '.join(DEFECT_CLASSES)}.")
    return np.clip(out, 0.0, 1.0)


def _save(arr: np.ndarray, path: Path) -> None:
    Image.fromarray((arr * 255.0 + 0.5).astype(np.uint8), "RGB").save(path, optimize=False)


def write_synthetic(folder: Path, params: SyntheticParams) -> None:
    """Write the dataset of ``params`` into ``folder`` (MVTec layout) plus ``params.json``."""
    folder = Path(folder)
    parts = [("train/good", params.n_train, None), ("test/good", params.n_test_normal, None)]
    parts += [(f"test/{c}", params.n_per_class, c) for c in params.classes]
    for part_id, (sub, count, kind) in enumerate(parts):
        d = folder / sub
        d.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            rng = _rng(params.seed, part_id, i)
            img = texture(rng, params.size)
            if kind is not None:
                img = add_defect(img, kind, rng)
            _save(img, d / f"{i:03d}.png")
    (folder / "params.json").write_text(json.dumps({**asdict(params), "classes": list(params.classes),
                                                    "version": GENERATOR_VERSION}, indent=1))


def synthetic_dir(params: SyntheticParams | None = None) -> Path:
    """The cache folder of a synthetic dataset (it may not exist yet)."""
    params = params or SyntheticParams()
    return paths.cache_dir() / "synthetic" / params.digest()


def make_synthetic(root: str | os.PathLike | None = None, *, seed: int = 0, size: int = 64, n_train: int = 100,
                   n_test_normal: int = 30, n_per_class: int = 15,
                   classes: tuple[str, ...] = DEFECT_CLASSES) -> Path:
    """Generate (once) a synthetic dataset and return its folder (MVTec layout).

    ``root`` – the folder to create; default ``cache_dir()/synthetic/<hash of the parameters>``. An existing
    folder with a ``params.json`` is reused as is. Written to a temporary sibling folder, then renamed.
    """
    params = SyntheticParams(seed=int(seed), size=int(size), n_train=int(n_train),
                             n_test_normal=int(n_test_normal), n_per_class=int(n_per_class),
                             classes=tuple(str(c) for c in classes))
    for kind in params.classes:
        if kind not in DEFECT_CLASSES:
            raise ValueError(f"unknown synthetic defect class {kind!r}: expected one of {', '.join(DEFECT_CLASSES)}.")
    if min(params.n_train, params.n_test_normal, params.n_per_class) < 1 or params.size < 16:
        raise ValueError("synthetic datasets need at least one image per folder and a size of 16 px or more.")
    final = Path(root) if root is not None else synthetic_dir(params)
    if (final / "params.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        write_synthetic(tmp, params)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "params.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
