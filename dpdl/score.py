"""Score new images with a trained model (``DIR/model.pt`` written by :func:`dpdl.train.run`).

``load_trained(dir)`` rebuilds backbone -> adapter -> method (any of dpdl.methods) from the saved state (the backbone's ImageNet weights
come from their local files again, or from the saved state when the run fine-tuned it);
``score_images(model, paths)`` returns one anomaly score per image (higher = more anomalous; the scale is the
method's own (DPDL: S = S_a + S_r - S_n), not a probability). An unreadable image is an error naming every such
file, or, with ``skip_bad``, gets no score (``None``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .backbones import FeatureExtractor
from .net import Net


@dataclass
class TrainedModel:
    net: Net
    extractor: FeatureExtractor | None  # frozen backbone outside the net (feature mode), else None
    image_size: int
    info: dict


def load_trained(model_dir: str | os.PathLike, weights: str | None = None) -> TrainedModel:
    """The trained model in ``model_dir`` (a run's --out folder, or the model.pt file itself), in eval mode."""
    p = Path(model_dir)
    p = p / "model.pt" if p.is_dir() else p
    if not p.is_file():
        raise FileNotFoundError(f"--model: no trained model at {p}: expected the --out folder of `dpdl train` "
                                "(or its model.pt)")
    if weights is not None:
        from .backbones import _load_state
        from .checks import input_file
        try:
            _load_state(input_file(weights, "--weights"))
        except ValueError as exc:
            raise ValueError(f"--weights {exc}" if not str(exc).startswith("--weights") else str(exc)) from None
    try:
        net, extractor, blob = Net.load(p, weights=weights)
    except ValueError as exc:
        raise ValueError(f"{'--weights' if weights and str(weights) in str(exc) else '--model'} {exc}") from None
    cfg = blob["config"]
    info = {"model": str(p), "dataset": cfg["dataset"], "profile": blob["profile"]["name"],
            "backbone": blob["backbone"]["name"], "method": blob["method"], "seed": cfg["seed"],
            "anomalies": cfg["anomalies"], "setting": cfg["setting"]}
    return TrainedModel(net, extractor, int(blob["profile"]["image_size"]), info)


def _load(path: str, size: int) -> torch.Tensor:
    from .data import Sample, load_image
    return load_image(Sample(key=str(path), path=str(path), label=0, cls="unknown"), size)


@torch.no_grad()
def score_images(model: TrainedModel, paths: Sequence[str | os.PathLike], batch_size: int = 16,
                 skip_bad: bool = False) -> list[float | None]:
    """One anomaly score per image file (any common image type; resized to the model's input size), in order.

    Unreadable files: a ``ValueError`` naming every one of them, or with ``skip_bad`` their score is ``None``."""
    bad: list[str] = []
    scores: dict[str, float] = {}
    batch: list[tuple[str, torch.Tensor]] = []

    def flush():
        if batch:
            imgs = torch.stack([img for _, img in batch])
            x = model.extractor(imgs) if model.extractor is not None else imgs
            scores.update(zip([p for p, _ in batch], (float(v) for v in model.net.score(x))))
            batch.clear()

    for p in map(str, paths):
        try:
            img = _load(p, model.image_size)
        except (OSError, ValueError):
            bad.append(p)
            continue
        if bad and not skip_bad:
            continue                  # an error anyway: only look for the other unreadable files
        batch.append((p, img))
        if len(batch) == batch_size:
            flush()
    flush()
    if bad and not skip_bad:
        raise ValueError(f"{len(bad)} image(s) cannot be read: {', '.join(bad)}; expected readable images "
                         "(or pass --skip-bad to score the others)")
    return [scores.get(str(p)) for p in paths]


def collect_images(paths: Sequence[str], folder: str | None = None) -> list[str]:
    """The image files named in ``paths`` plus every image below ``folder`` (sorted); missing files are an error."""
    from .checks import input_dir, input_file
    files = []
    for p in paths or []:
        if Path(p).is_dir():
            raise ValueError(f"--images {p} is a folder: expected image files (use --folder for a folder)")
        files.append(str(input_file(p, "--images")))
    if folder:
        input_dir(folder, "--folder")
        found = sorted(str(x) for x in Path(folder).rglob("*") if x.is_file() and _is_image(x.name))
        if not found:
            raise ValueError(f"folder {folder} holds no image files")
        files.extend(found)
    if not files:
        raise ValueError("no images to score: give image paths and/or --folder DIR")
    return files


def _is_image(name: str) -> bool:
    from .data.images import is_image_file
    return is_image_file(name)
