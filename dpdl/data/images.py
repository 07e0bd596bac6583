"""Finding and loading images.

* :func:`list_images` – every image file in a folder, whatever the extension's case, sorted by name
  (the baselines kept only ``png``/``PNG``/``jpg``/``npy`` and silently dropped ``.jpeg``, ``.JPG``, ``.bmp``).
* :func:`load_image` – a sample as a float tensor ``(3, size, size)`` in ``[0, 1]``, RGB: grey, grey+alpha,
  RGBA, palette, CMYK and 16-bit images are converted (alpha is dropped); the sample's crop box, if any,
  is cut first; then the picture is resized bilinearly to ``size × size`` (no aspect-ratio padding).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .samples import Sample

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm",
                    ".pbm", ".npy")


def is_image_file(name: str) -> bool:
    """True for a visible file whose extension (any case) is in :data:`IMAGE_EXTENSIONS`."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in ``folder``, sorted by file name (independent of the listing order)."""
    folder = Path(folder)
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if is_image_file(e.name) and e.is_file()]
    return [folder / n for n in sorted(names)]


def _to_uint8_rgb(im: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(im, dtype=np.float32) / 257.0
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float32)
        top = float(arr.max()) if arr.size else 0.0
        if top > 255.0:
            arr = arr * (255.0 / top)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode == "P":
        im = im.convert("RGBA")  # honours a palette transparency entry before the alpha is dropped
    return im.convert("RGB")


def _from_npy(path: Path) -> Image.Image:
    arr = np.load(path, allow_pickle=False)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # CHW -> HWC
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.ndim not in (2, 3):
        raise ValueError(f"array of shape {arr.shape}")
    arr = arr.astype(np.float32)
    if arr.max(initial=0.0) <= 1.0:
        arr = arr * 255.0
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """The whole image at ``path`` as 8-bit RGB (fully decoded).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file when it cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist.")
    try:
        if path.suffix.lower() == ".npy":
            im = _from_npy(path)
        else:
            with warnings.catch_warnings():   # PIL's decompression-bomb warning is an error here, as beyond 2x
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as raw:
                    raw.load()
                    im = raw.copy()
        return _to_uint8_rgb(im)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise ValueError(f"cannot read image file {path}: expected a readable image "
                         f"(png, jpg, bmp, tif, ...) but decoding failed ({type(exc).__name__}).") from None


def load_pil(sample: Sample, size: int | None = None) -> Image.Image:
    """The sample as an RGB PIL image: cropped to ``sample.box`` and, when ``size`` is given, resized to
    ``size × size`` with bilinear interpolation."""
    im = open_rgb(sample.path)
    if sample.box is not None:
        im = im.crop(tuple(int(v) for v in sample.box))
    if size is not None:
        if int(size) < 1:
            raise ValueError(f"image size must be a positive integer, got {size}.")
        im = im.resize((int(size), int(size)), Image.BILINEAR)
    return im


def load_image(sample: Sample, size: int) -> torch.Tensor:
    """The sample as a ``torch.float32`` tensor of shape ``(3, size, size)`` with values in ``[0, 1]`` (RGB)."""
    arr = np.asarray(load_pil(sample, size), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)
