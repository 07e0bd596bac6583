"""Train once, score per cell: the trained state of an unsupervised method, reused across the cells of a dataset.

An unsupervised method (``method.unsupervised``: HGAD, VPDM, ArcAD's base) trains on the training normals only,
from all-normal batches whose randomness does not depend on M (dpdl.modes). The normal split is fixed per dataset
(dpdl.data.protocol), so every cell of a dataset and seed (general or hard, any M, any known class) trains the
very same model; only the test set differs. The first run trains it and keeps its state in
``$DPDL_CACHE/trained/<key>.pt``; the others load it and score their own test set. The key holds everything the
training reads: the profile's settings, the method and its options, the seed, the backbone and weights, the torch
build and the CPU's instruction set, the bytes of the training normals' feature maps and a digest of the source
that trains (:func:`source_digest`: the package without the book, the study's orchestration and the methods it does
not import), so a change to any of them trains anew. A run that reused a trained state says so in its record
(``trained_once``); its numbers are those of a lone run (tests/test_trained_once.py). Two processes of a sweep
that reach the same key at once do not both train: the second waits in :func:`claim` until the first has stored
the state, then loads it.

Scored once: a method that is not trained and whose test score of an image is the same bits whichever images it is
scored with (``per_image_scores``: kNN, whose memory depends only on the dataset's normals and the seed) keeps each
test image's score under the same kind of key in ``$DPDL_CACHE/trained/<key>.<device>.scores.pt``; a run scores only the
images that no earlier cell scored (:func:`evaluate_shared`). Its record is that of a lone run (tests).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from .paths import cache_dir

PACKAGE = Path(__file__).resolve().parent
RNG_OFFSET = 7919   # the global generator is reseeded with seed + this after training or loading, in both cases


# Not read by a training: the book, the study's orchestration (a run's settings reach the key through its profile
# and options), the command line and the paper's numbers. The homes under methods/ that a method does not import
# are left out per method (:func:`_homes`).
NOT_TRAINING = ("book", "study", "cli.py", "commands.py", "paper.py", "__main__.py")


def _homes(method: str) -> set[str]:
    """The names of the homes under ``methods/`` that a training of ``method`` reads: its own (from the registry)
    and, transitively, every other home its files import (``dpdl.methods.<home>``; HGAD's VQ initialisation is
    DPDL's ``vq_codebook``)."""
    import re
    from .methods import _REGISTRY
    pattern = re.compile(r"\bdpdl\.methods\.(\w+)")
    parts = _REGISTRY[method][0].split(".")
    todo, homes = (parts[2:3] if parts[:2] == ["dpdl", "methods"] else []), set()   # a method from outside: none
    while todo:
        home = todo.pop()
        if home in homes or home in ("base", "shared"):
            continue
        homes.add(home)
        base = PACKAGE / "methods"
        files = sorted((base / home).rglob("*.py")) if (base / home).is_dir() else [base / f"{home}.py"]
        for path in files:
            if path.is_file():
                todo.extend(pattern.findall(path.read_text(encoding="utf-8")))
    return homes


def _training_files(method: str | None) -> list[Path]:
    """The package's ``*.py`` files that a training of ``method`` reads (every file but :data:`NOT_TRAINING` and the
    homes under ``methods/`` that :func:`_homes` does not name; ``None``: every method's home)."""
    keep = None if method is None else _homes(method) | {"__init__", "base", "shared"}
    files = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).parts
        if rel[0] in NOT_TRAINING:
            continue
        if keep is not None and rel[0] == "methods" and len(rel) > 1:
            if (rel[1][:-3] if rel[1].endswith(".py") else rel[1]) not in keep:
                continue
        files.append(path)
    return files


@lru_cache(maxsize=None)
def source_digest(method: str | None = None) -> str:
    """sha256 of the source that trains ``method`` (:func:`_training_files`, sorted by path): a change to it, and only
    to it, trains anew; a change to the book or to another method keeps the stored state."""
    h = hashlib.sha256()
    for path in _training_files(method):
        h.update(str(path.relative_to(PACKAGE)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def applies(net, profile) -> bool:
    """Whether a run of ``net`` under ``profile`` may share its training: an unsupervised, trainable method in a
    feature-cache profile (image mode draws augmented images: not shared)."""
    method = net.method
    return bool(getattr(method, "unsupervised", False) and method.trainable and profile.feature_cache)


def key(cfg, profile, backbone: str, options: dict, normal_maps: torch.Tensor) -> str:
    """The key of a training: a sha256 of what it reads (module docstring)."""
    maps = normal_maps.detach().cpu().contiguous()
    blob = json.dumps({"profile": profile.to_dict(), "method": cfg.method, "options": options,
                       "seed": int(cfg.seed), "backbone": backbone, "weights": cfg.weights,
                       "maps": hashlib.sha256(maps.numpy().tobytes()).hexdigest(), "shape": list(maps.shape),
                       "dtype": str(maps.dtype), "source": source_digest(cfg.method),
                       "build": f"{torch.__version__}|{torch.backends.cpu.get_cpu_capability()}"},   # another build
                      sort_keys=True, default=str)                                    # rounds otherwise
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _path(k: str) -> Path:
    return cache_dir() / "trained" / f"{k}.pt"


@contextlib.contextmanager
def claim(k: str):
    """Hold the training of key ``k`` within (load, else train and store): another process that claims ``k``
    meanwhile waits, then finds the stored state. An exclusive ``flock`` on ``<key>.lock`` beside the state; it goes
    with the process however that ends. Without ``fcntl`` (Windows) nothing is held and a key may train twice."""
    path = _path(k).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def load(k: str, net) -> dict | None:
    """The stored training's info (``fit``'s return) with ``net`` loaded from it, or None when there is none."""
    path = _path(k)
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
        net.load_state_dict(blob["state"])
    except (OSError, RuntimeError, KeyError, EOFError, ValueError, pickle.UnpicklingError):   # damaged: retrained
        return None
    return blob["train"]


def store(k: str, net, train: dict) -> None:
    """Keep ``net``'s trained state and ``train`` under key ``k`` (atomic: a temporary file, then a rename)."""
    path = _path(k)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"state": {n: t.detach().cpu() for n, t in net.state_dict().items()}, "train": train}, tmp)
    os.replace(tmp, path)


def evaluate_shared(net, profile, cfg, backbone: str, options: dict, setup, split, score_fn):
    """Test scores (N,) of ``split``'s test images (normal, then anomalous; their inputs ``setup.test_inputs``, a
    tensor): for a method with ``per_image_scores`` that trains nothing, in a feature-cache profile, the scores
    stored under its key are read and only the other images are scored (``score_fn(inputs) -> (n,) array``) and
    stored; otherwise ``score_fn(setup.test_inputs)``. A stored score counts only for the same image key *and* the
    same bytes of its test map (a changed image, or a map extracted anew, is scored again). The key is the
    training's (:func:`key`: it holds the torch build and the CPU's instruction set) plus the scoring device.
    Sets ``setup.extra["scored_once"]`` (key, images reused, images scored) when shared."""
    method = net.method
    if not (getattr(method, "per_image_scores", False) and not method.trainable and profile.feature_cache
            and isinstance(setup.test_inputs, torch.Tensor)):
        return score_fn(setup.test_inputs)
    keys = [s.key for s in split.test_normal + split.test_anomaly]
    where = next(iter([*net.parameters(), *net.buffers()]), torch.empty(0)).device.type   # the scoring device
    k = f"{key(cfg, profile, backbone, options, setup.normal_inputs)}.{where}.scores"
    maps = setup.test_inputs.detach().cpu().contiguous()
    digests = [hashlib.sha256(m.numpy().tobytes()).hexdigest()[:16] for m in maps]
    path = _path(k)
    with claim(k):
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else {}
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):   # damaged: scored again
            stored = {}
        if not isinstance(stored, dict):
            stored = {}
        missing = [i for i, name in enumerate(keys) if not _holds(stored.get(name), digests[i])]
        if missing:
            new = np.asarray(score_fn(setup.test_inputs[missing]), dtype=np.float32)
            stored.update({keys[i]: (digests[i], float(v)) for i, v in zip(missing, new)})
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            torch.save(stored, tmp)
            os.replace(tmp, path)
    setup.extra["scored_once"] = {"key": k, "reused": len(keys) - len(missing), "scored": len(missing)}
    return np.array([stored[name][1] for name in keys], dtype=np.float32)


def _holds(entry, digest: str) -> bool:
    """Whether a stored entry is (the digest of the same test map, a score)."""
    return isinstance(entry, tuple) and len(entry) == 2 and entry[0] == digest and isinstance(entry[1], float)
