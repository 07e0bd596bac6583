"""Shared fixtures: a private cache for the whole test session and the synthetic dataset."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Point ``DPDL_CACHE`` at a temporary folder shared by the session, unless the caller already set it, so tests
    never read or write the repository's cache. Session-scoped, so it is in place before any module-scoped fixture
    (e.g. a smoke run) asks for the cache."""
    mp = pytest.MonkeyPatch()
    if not os.environ.get("DPDL_CACHE"):
        mp.setenv("DPDL_CACHE", str(tmp_path_factory.mktemp("dpdl_cache")))
    yield
    mp.undo()


@pytest.fixture
def synthetic_root():
    """The folder of the default synthetic dataset (MVTec layout), generated once per cache."""
    from dpdl.data import make_synthetic

    return make_synthetic()


def write_png(path, size=8, value=128, mode="RGB"):
    """A tiny image file at ``path`` (parents created)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode in ("L", "P") else tuple([value] * len(mode))
    Image.new(mode, (size, size), color).save(path)
    return path


def build_mvtec(root, n_train=8, n_test=4, classes=None, reverse=False):
    """A tiny MVTec-layout folder at ``root``; ``reverse`` creates the files in the opposite order."""
    classes = classes if classes is not None else {"crack": 5, "hole": 4, "stain": 3}
    files = [f"train/good/{i:03d}.png" for i in range(n_train)]
    files += [f"test/good/{i:03d}.png" for i in range(n_test)]
    for cls, n in classes.items():
        files += [f"test/{cls}/{i:03d}.png" for i in range(n)]
    for rel in (reversed(files) if reverse else files):
        write_png(root / rel, value=(sum(rel.encode()) % 200) + 20)
    return root


@pytest.fixture
def mvtec_factory(tmp_path):
    """``make(name="ds", **kw) -> Path``: build a tiny MVTec-layout folder under a temporary directory."""
    def make(name="ds", **kw):
        return build_mvtec(tmp_path / name, **kw)
    return make


@pytest.fixture
def png_writer():
    """``write(path, size=8, value=128, mode="RGB") -> path``: write a tiny image file."""
    return write_png


@pytest.fixture
def mvtec_builder():
    """``build(root, n_train=8, n_test=4, classes=None, reverse=False) -> root``: a tiny MVTec-layout folder."""
    return build_mvtec


def shuffle_listing(monkeypatch, order="shuffled", seed=123):
    """Make ``os.listdir``, ``os.scandir`` and ``Path.iterdir`` hand out entries ``reversed`` or ``shuffled``
    (seeded): a file system's listing order is arbitrary, and nothing may depend on it."""
    import os
    import random
    from pathlib import Path

    def reorder(items):
        items = list(items)
        if order == "reversed":
            return items[::-1]
        random.Random(seed).shuffle(items)
        return items

    real_listdir, real_scandir, real_iterdir = os.listdir, os.scandir, Path.iterdir

    class FakeScandir:
        def __init__(self, path="."):
            with real_scandir(path) as it:
                self.entries = reorder(it)

        def __enter__(self):
            return iter(self.entries)

        def __exit__(self, *exc):
            return False

        def __iter__(self):
            return iter(self.entries)

    monkeypatch.setattr(os, "listdir", lambda p=".": reorder(real_listdir(p)))
    monkeypatch.setattr(os, "scandir", FakeScandir)
    monkeypatch.setattr(Path, "iterdir", lambda self: iter(reorder(real_iterdir(self))))


@pytest.fixture
def listing_order(monkeypatch):
    """``apply(order="shuffled", seed=123)``: from then on, directory listings come in that order."""
    return lambda order="shuffled", seed=123: shuffle_listing(monkeypatch, order, seed)
