"""Pseudo anomalies (Sec. 5.3: "we use CutMix to create pseudo-anomaly samples"), made as the OSAD baselines make
them ("CutMix" in their code; CutPaste-like in fact).

A patch covering 2-15% of the image area, with aspect ratio (width / height) in [0.3, 1/0.3] (log-uniform), is cut
from a random place of a normal image, colour-jittered (brightness, contrast, saturation, hue: 0.1 each) and pasted
at another random place of the same image. Pure functions: image tensor + ``torch.Generator`` in, new tensor out.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
import torchvision.transforms.functional as TF

AREA_RANGE = (0.02, 0.15)
ASPECT_RANGE = (0.3, 1 / 0.3)
JITTER = 0.1


@dataclass(frozen=True)
class PasteBox:
    """Where the patch came from and where it went: (top, left) corners and its (height, width), in pixels."""

    src: tuple[int, int]
    dst: tuple[int, int]
    size: tuple[int, int]

    def area_fraction(self, h: int, w: int) -> float:
        return self.size[0] * self.size[1] / (h * w)


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _randint(gen: torch.Generator, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi] (inclusive)."""
    return int(torch.randint(lo, hi + 1, (), generator=gen))


def patch_size(h: int, w: int, gen: torch.Generator, area_range=AREA_RANGE, aspect_range=ASPECT_RANGE
               ) -> tuple[int, int]:
    """(ph, pw) with ph*pw/(h*w) in ``area_range`` and pw/ph close to a log-uniform draw from ``aspect_range``."""
    area = _uniform(gen, *area_range) * h * w
    aspect = math.exp(_uniform(gen, math.log(aspect_range[0]), math.log(aspect_range[1])))
    pw = max(1, min(w, round(math.sqrt(area * aspect))))
    ph = max(1, min(h, round(math.sqrt(area / aspect))))
    lo, hi = area_range[0] * h * w, area_range[1] * h * w
    if ph * pw > hi:       # rounding pushed it out of range: fix the width (or height) that still fits
        pw = max(1, math.floor(hi / ph))
    if ph * pw < lo:
        pw = min(w, math.ceil(lo / ph))
        if ph * pw < lo:
            ph = min(h, math.ceil(lo / pw))
    return ph, pw


def color_jitter(patch: torch.Tensor, gen: torch.Generator, strength: float = JITTER) -> torch.Tensor:
    """Brightness, contrast, saturation factors in [1-s, 1+s] and hue shift in [-s, s]: (3, h, w) in [0, 1]."""
    b, c, s = (_uniform(gen, 1 - strength, 1 + strength) for _ in range(3))
    hue = _uniform(gen, -strength, strength)
    out = TF.adjust_brightness(patch, b)
    out = TF.adjust_contrast(out, c)
    out = TF.adjust_saturation(out, s)
    out = TF.adjust_hue(out, hue)
    return out.clamp(0.0, 1.0)


def cutpaste(image: torch.Tensor, gen: torch.Generator, jitter: float = JITTER) -> tuple[torch.Tensor, PasteBox]:
    """A pseudo anomaly made from the normal ``image`` (3, H, W) in [0, 1]; only the pasted box changes.

    Returns the new image (3, H, W) and the :class:`PasteBox`. Deterministic given the generator's state.
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"cutpaste expects an image of shape (3, H, W), got {tuple(image.shape)}")
    _, h, w = image.shape
    ph, pw = patch_size(h, w, gen)
    sy, sx = _randint(gen, 0, h - ph), _randint(gen, 0, w - pw)
    dy, dx = _randint(gen, 0, h - ph), _randint(gen, 0, w - pw)
    patch = color_jitter(image[:, sy:sy + ph, sx:sx + pw], gen, jitter)
    out = image.clone()
    out[:, dy:dy + ph, dx:dx + pw] = patch
    return out, PasteBox((sy, sx), (dy, dx), (ph, pw))


def variant_seed(key: str, variant: int, base: int = 0) -> int:
    """A stable 63-bit seed for the ``variant``-th pseudo anomaly of the image with sample key ``key``."""
    digest = hashlib.sha256(f"{base}:{key}:{variant}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def pseudo_anomaly(image: torch.Tensor, key: str, variant: int, base: int = 0) -> torch.Tensor:
    """The fixed ``variant``-th pseudo anomaly of an image (same key and variant -> same image, in any run)."""
    gen = torch.Generator().manual_seed(variant_seed(key, variant, base))
    return cutpaste(image, gen)[0]
