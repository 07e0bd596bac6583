"""Frozen-backbone features, extracted once and cached on disk (the ``cpu`` and ``smoke`` profiles).

Layout: ``dpdl.paths.cache_dir()/features/<backbone>_<size>/<dataset>/<hh>/<digest>.pt``, one file per item (an
image, or the ``v``-th fixed CutMix pseudo anomaly of an image), keyed by the sample key and path. Each file holds
``{"meta": {...}, "low"|"mid"|"last": float16 tensor (C_tap, h_tap, w_tap)}``: every tap of the backbone at its own
resolution, so that any choice of taps (``"last"``, ``"mid+last"``, ...) reuses one extraction; the chosen taps are
resized and concatenated on loading (dpdl.backbones.combine_taps). ``meta`` names the backbone, image size,
weight file, item and a fingerprint of the source image file (path and a SHA-256 of its bytes), so a stale entry
(image changed, other weights) or a corrupt one is detected and rebuilt, while a dataset copied again to the same
place with the same bytes keeps its cache (the path is part of the entry's name).

Extraction runs on one CPU thread (:data:`EXTRACT_THREADS`): oneDNN's convolutions round differently with 1 and
2 threads, so maps made by processes with other thread counts differed in their last bits, and so did the runs
trained on them. With one thread an entry no longer depends on the thread count of the process that made it (it
may still depend on the CPU's instruction set, which oneDNN picks kernels by).

Writes are atomic (temp file + rename): concurrent runs may share the cache. The cache is shared across runs and
seeds.

Within one process the entries read last are also kept in memory (:data:`MEMO`, one dataset folder at a time, still
checked against the entry's ``meta``): the study runs several runs of a dataset in one kernel
(dpdl.study.runner, batches), and reading 3,354 small files per ELPV run was a third of a run's time.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import warnings
with warnings.catch_warnings():     # no "IProgress not found" notice in the book's pages (no ipywidgets there)
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

from .backbones import TAP_ORDER, FeatureExtractor, combine_taps
from .cutmix import pseudo_anomaly
from .paths import cache_dir

CACHE_VERSION = 4  # 3: one forward pass per image (per_image_taps); 4: one CPU thread, content fingerprint
EXTRACT_THREADS = 1  # CPU threads of an extraction, whatever the process's own setting (module docstring)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One image to featurise: a data sample, or (``pseudo >= 0``) its ``pseudo``-th CutMix pseudo anomaly."""

    sample: object  # dpdl.data.Sample
    pseudo: int = -1

    @property
    def key(self) -> str:
        return self.sample.key if self.pseudo < 0 else f"{self.sample.key}#cutmix{self.pseudo}"


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    rebuilt: int = 0
    load_s: float = 0.0
    extract_s: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


_DIGESTS: dict[str, tuple[tuple, str]] = {}   # path -> ((inode, size, mtime), SHA-256): each file hashed once


def source_fingerprint(sample) -> str:
    """Path and SHA-256 of the sample's file (and its crop box): changes when the image's bytes do. Each file is
    hashed once per process (again when its inode, size or mtime change): about 0.3 s for ELPV's 2,624 images."""
    path = os.path.abspath(sample.path)
    try:
        st = os.stat(path)
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        known = _DIGESTS.get(path)
        if known is None or known[0] != stamp:
            with open(path, "rb") as fh:
                known = _DIGESTS[path] = (stamp, hashlib.sha256(fh.read()).hexdigest())
        digest = known[1]
    except OSError:
        digest = "missing"
    return f"{path}|{digest}|{getattr(sample, 'box', None)}"


@contextmanager
def extraction_threads(device: torch.device):
    """Run the block on :data:`EXTRACT_THREADS` CPU threads when ``device`` is the CPU; the process's own setting is
    given back afterwards, also on an error."""
    was = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(EXTRACT_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(was)


def load_item(item: Item, size: int, loader: Callable | None = None) -> torch.Tensor:
    """The image of an item, (3, size, size) in [0, 1] (pseudo anomalies made with their fixed generator)."""
    if loader is None:
        from .data import load_image as loader
    img = loader(item.sample, size)
    return img if item.pseudo < 0 else pseudo_anomaly(img, item.sample.key, item.pseudo)


class _Memo:
    """The entries of the last feature-cache folder read in this process: {path: (meta, file stamp, {tap: tensor})},
    and their combined maps (``maps``, :meth:`FeatureCache.get`).
    A hit needs the same ``meta`` and the same file on disk (inode, size, mtime: an entry rewritten or corrupted by
    another process is read again). Tensors are only ever copied out of it (``get_taps`` fills its own output), so a
    hit gives the bytes the file holds."""

    def __init__(self):
        self.dir: Path | None = None
        self.entries: dict[Path, tuple[dict, tuple, dict]] = {}
        self.maps: dict[tuple, tuple[dict, tuple, torch.Tensor]] = {}   # (path, layers, map_size) -> combined map

    @staticmethod
    def stamp(path: Path) -> tuple | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def get(self, path: Path, meta: dict):
        hit = self.entries.get(path)
        if hit is None or hit[0] != meta or hit[1] != self.stamp(path):
            return None
        return hit[2]

    def put(self, folder: Path, path: Path, meta: dict, taps: dict) -> None:
        if self.enabled:
            self._folder(folder)
            self.entries[path] = (meta, self.stamp(path), taps)

    def get_map(self, path: Path, meta: dict, how: tuple):
        """The combined map (C, H, W) of an entry (``how``: its layers and map size), or None; the same checks."""
        hit = self.maps.get((path, how))
        if hit is None or hit[0] != meta or hit[1] != self.stamp(path):
            return None
        return hit[2]

    def put_map(self, folder: Path, path: Path, meta: dict, how: tuple, combined: torch.Tensor) -> None:
        if self.enabled:
            self._folder(folder)
            self.maps[(path, how)] = (meta, self.stamp(path), combined)

    def _folder(self, folder: Path) -> None:
        if folder != self.dir:                      # one dataset's entries at a time: bounded memory
            self.dir, self.entries, self.maps = folder, {}, {}

    def clear(self) -> None:
        self.dir, self.entries, self.maps = None, {}, {}

    enabled = os.environ.get("DPDL_FEATURE_MEMO", "1") != "0"


MEMO = _Memo()


class FeatureCache:
    """Disk cache of one frozen extractor's maps at one image size, for one dataset."""

    def __init__(self, extractor: FeatureExtractor, image_size: int, dataset: str, root: str | os.PathLike | None = None):
        self.extractor, self.image_size, self.dataset = extractor, image_size, dataset
        base = Path(root) if root is not None else cache_dir() / "features"
        self.dir = base / f"{extractor.name}_{image_size}" / dataset
        self.stats = CacheStats()
        self._last_stale: Path | None = None   # the last stale entry seen (named in the warning)

    def path(self, item: Item) -> Path:
        digest = hashlib.sha256(f"{item.key}|{os.path.abspath(item.sample.path)}".encode()).hexdigest()[:24]
        return self.dir / digest[:2] / f"{digest}.pt"

    def meta(self, item: Item) -> dict:
        return {"version": CACHE_VERSION, "backbone": self.extractor.name,
                "weights": str(self.extractor.weights_file), "image_size": self.image_size, "key": item.key,
                "pseudo": item.pseudo, "source": source_fingerprint(item.sample)}

    def tap_shapes(self) -> dict[str, tuple[int, int, int]]:
        """(C, h, w) of each tap at this image size."""
        from .backbones import BACKBONES
        side = self.image_size
        return {t: (c, -(-side // st), -(-side // st)) for t, (c, st) in BACKBONES[self.extractor.name].taps.items()}

    def _read(self, item: Item, shapes: dict) -> dict | None:
        p = self.path(item)
        meta = self.meta(item)
        hit = MEMO.get(p, meta)
        if hit is not None:
            return hit
        if not p.exists():
            return None
        try:
            blob = torch.load(p, map_location="cpu", weights_only=True)
            ok = (isinstance(blob, dict) and blob.get("meta") == meta
                  and all(tuple(blob[t].shape) == shapes[t] and bool(torch.isfinite(blob[t]).all())
                          for t in TAP_ORDER))
        except Exception:  # truncated, corrupt, not ours
            ok = False
        if not ok:
            log.debug("feature cache entry %s is stale or corrupt: rebuilding it", p)
            self.stats.rebuilt += 1
            self._last_stale = p
            return None
        MEMO.put(self.dir, p, meta, {t: blob[t] for t in TAP_ORDER})
        return blob

    def _write(self, item: Item, taps: dict) -> None:
        p = self.path(item)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=".tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save({"meta": self.meta(item), **{t: v.clone() for t, v in taps.items()}}, fh)
            os.replace(tmp, p)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @torch.no_grad()
    def get_taps(self, items: Sequence[Item], batch_size: int = 32, progress: bool = False,
                 loader: Callable | None = None, desc: str = "features") -> dict[str, torch.Tensor]:
        """Every tap of ``items``: {tap: (N, C_tap, h, w) float16}, read from disk or extracted (then written)."""
        shapes = self.tap_shapes()
        out = {t: torch.empty((len(items),) + shapes[t], dtype=torch.float16) for t in TAP_ORDER}
        t0 = time.perf_counter()
        todo, rebuilt_before = [], self.stats.rebuilt
        for i, item in enumerate(items):
            blob = self._read(item, shapes)
            if blob is None:
                todo.append(i)
            else:
                for t in TAP_ORDER:
                    out[t][i] = blob[t]
        stale = self.stats.rebuilt - rebuilt_before
        if stale:  # one line, not one per file (a moved dataset or a new cache version makes every entry stale)
            log.warning("%d feature cache %s under %s stale or corrupt (image file or weights changed; e.g. %s): "
                        "rebuilding", stale, "entry was" if stale == 1 else "entries were", self.dir, self._last_stale)
        self.stats.hits += len(items) - len(todo)
        self.stats.misses += len(todo)
        self.stats.load_s += time.perf_counter() - t0
        if todo:
            t1 = time.perf_counter()
            self.extractor.eval()
            dev = next(iter(self.extractor.parameters())).device
            bar = tqdm(total=len(todo), desc=f"{desc} ({self.extractor.name}, {self.image_size}px)",
                       disable=not progress, leave=False, unit="img")
            with extraction_threads(dev):
                self._extract(items, todo, batch_size, loader, dev, out, bar)
            bar.close()
            self.stats.extract_s += time.perf_counter() - t1
        return out

    def _extract(self, items, todo, batch_size, loader, dev, out, bar) -> None:
        """Extract, write and memo the entries ``todo`` (indices into ``items``), filling ``out``."""
        for s in range(0, len(todo), batch_size):
            idx = todo[s:s + batch_size]
            imgs = torch.stack([load_item(items[i], self.image_size, loader) for i in idx])
            taps = per_image_taps(self.extractor, imgs.to(dev))
            for t, v in taps.items():
                if not torch.isfinite(v).all():
                    raise ValueError(f"backbone {self.extractor.name} gave non-finite features for "
                                     f"{items[idx[0]].key} (or its batch)")
            for j, i in enumerate(idx):
                one = {t: taps[t][j].float().cpu().to(torch.float16) for t in TAP_ORDER}
                for t in TAP_ORDER:
                    out[t][i] = one[t]
                self._write(items[i], one)
                MEMO.put(self.dir, self.path(items[i]), self.meta(items[i]), one)
            bar.update(len(idx))

    def get(self, items: Sequence[Item], batch_size: int = 32, progress: bool = False,
            loader: Callable | None = None, desc: str = "features", chunk: int = 256) -> torch.Tensor:
        """The extractor's map (its taps combined) of ``items``: (N, C, H, W) float16.

        Within a process the combined maps are memoised too (:data:`MEMO`), so the later runs of a batch neither
        copy nor resize the taps again. The CPU's resizing (average pooling, bilinear) computes each image's planes
        alone, so a map is the same bits whichever items it was combined with (checked on ELPV's maps, and by
        tests/test_study_batch.py); the memo's maps are made by this code from the bytes the files hold."""
        how = (tuple(self.extractor.layers), int(self.extractor.map_size))
        maps = [MEMO.get_map(self.path(it), self.meta(it), how) for it in items]
        todo = [i for i, m in enumerate(maps) if m is None]
        self.stats.hits += len(items) - len(todo)
        if todo or not items:
            sub = [items[i] for i in todo]
            combined = combine_all(self.get_taps(sub, batch_size, progress, loader, desc), self.extractor.layers,
                                   chunk, self.extractor.map_size)
            if not items:
                return combined
            for j, i in enumerate(todo):
                maps[i] = combined[j]
                MEMO.put_map(self.dir, self.path(items[i]), self.meta(items[i]), how, combined[j])
        return torch.stack(maps)


def per_image_taps(extractor: FeatureExtractor, imgs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every tap of images (B, 3, S, S), one forward pass per image: {tap: (B, C_tap, h, w)}.

    A CNN's output depends in its last bits on the batch it is computed in (the CPU kernels are chosen by shape:
    about 1 % of the float16 values change between batch 1 and batch 32). One image per pass makes a cached map
    the same whichever other images were missing when it was made, so a run gives the same numbers whether its
    features came from the study's cache warm-up or from the run itself. On CPU it costs no time."""
    parts = [extractor.taps(imgs[k:k + 1], TAP_ORDER) for k in range(len(imgs))]
    return {t: torch.cat([p[t] for p in parts]) for t in TAP_ORDER}


def combine_all(taps: dict[str, torch.Tensor], layers: tuple[str, ...], chunk: int = 256,
                map_size: int = 0) -> torch.Tensor:
    """{tap: (N, C_tap, h, w)} -> (N, C, H, W) float16, in chunks (resize + concatenate, see combine_taps)."""
    n = len(next(iter(taps.values())))
    parts = [combine_taps({t: taps[t][s:s + chunk].float() for t in layers}, layers, map_size).to(torch.float16)
             for s in range(0, n, chunk)]
    if parts:
        return torch.cat(parts)
    one = combine_taps({t: taps[t][:1].float() for t in layers}, layers, map_size)
    return torch.empty((0,) + tuple(one.shape[1:]), dtype=torch.float16)


def extract_uncached(extractor: FeatureExtractor, items: Sequence[Item], image_size: int, batch_size: int = 32,
                     loader: Callable | None = None) -> torch.Tensor:
    """Features without the cache (for the speed-up benchmark and for scoring new images): (N, C, H, W) float32."""
    outs = []
    extractor.eval()
    dev = next(iter(extractor.parameters())).device
    with torch.no_grad(), extraction_threads(dev):   # the same thread count as the cache: the same maps
        for s in range(0, len(items), batch_size):
            imgs = torch.stack([load_item(it, image_size, loader) for it in items[s:s + batch_size]])
            outs.extend(extractor(imgs[k:k + 1].to(dev)).float().cpu() for k in range(len(imgs)))
    return torch.cat(outs) if outs else torch.empty(0)
