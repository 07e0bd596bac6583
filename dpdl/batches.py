"""Where training batches come from: one batch source per mode, shared by every method (dpdl.methods).

A batch is ``(x, y)``: x the inputs (cached feature maps (B, C, H, W), or images (B, 3, S, S) as uint8), y (B,)
long labels: 0 normal, 1 seen anomaly, 2 pseudo anomaly, -1 a normal *reference* row (DRA's composite head
prepends ``n_reference`` of them; other methods ask for none). Binary methods read ``y > 0`` as "anomaly".

* :func:`batch_counts`: the batch composition (the protocol's two thirds normal, DRA's or DevNet's variants);
* :class:`Stream`: endless shuffled index streams (a fresh permutation per pass, seeded generator);
* :class:`FeatureBatches`: cached frozen-backbone maps (``cpu``, ``smoke``), optional D4 augmentation;
* :class:`ImageBatches`: images through a DataLoader, pseudo anomalies made on the fly (``paper``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

NORMAL, SEEN, PSEUDO, REFERENCE = 0, 1, 2, -1
AUG_SEED_OFFSET = 7919


@dataclass(frozen=True)
class Composition:
    """Slots of one batch: normal, seen-anomaly and pseudo-anomaly rows, plus reference normals (DRA)."""

    normal: int
    seen: int
    pseudo: int
    reference: int = 0

    def labels(self) -> torch.Tensor:
        """y (reference + normal + seen + pseudo,) in the order the sources stack the rows."""
        return torch.tensor([REFERENCE] * self.reference + [NORMAL] * self.normal + [SEEN] * self.seen
                            + [PSEUDO] * self.pseudo, dtype=torch.long)

    def to_dict(self) -> dict:
        return {"normal": self.normal, "seen": self.seen, "pseudo": self.pseudo, "reference": self.reference}


def batch_counts(batch_size: int, n_seen: int, pseudo_share: float, has_pseudo: bool,
                 slots: str = "anomaly", normal_share: float = 2 / 3) -> tuple[int, int, int]:
    """(normal, seen-anomaly, pseudo-anomaly) slots of a batch, ``normal_share`` of it normal (protocol: 2/3).

    ``slots="anomaly"``: the pseudo anomalies take ``pseudo_share`` of the anomaly part (48 -> 32, 8, 8).
    ``slots="normal"`` (DRA's code, ../shared/protocol.md): the anomaly part is seen anomalies and ``pseudo_share``
    of the normal part is turned into pseudo anomalies (48 -> 16, 16, 16). Without seen anomalies (M = 0) the
    anomaly part is pseudo anomalies in both; without pseudo anomalies it is all seen ones (DevNet: 24, 24, 0)."""
    if slots not in ("anomaly", "normal"):
        raise ValueError(f"pseudo_slots must be 'anomaly' or 'normal', got {slots!r}")
    n_norm = int(round(batch_size * normal_share))
    n_anom = batch_size - n_norm
    if n_seen == 0 and not has_pseudo:
        raise ValueError("no anomalies to train with: M = 0 and no pseudo anomalies")
    if not has_pseudo:
        return n_norm, n_anom, 0
    if slots == "normal":
        n_conv = min(n_norm - 1, max(1, int(round(n_norm * pseudo_share))))
        return n_norm - n_conv, (n_anom if n_seen else 0), n_conv + (0 if n_seen else n_anom)
    if n_seen == 0:
        return n_norm, 0, n_anom
    n_pseudo = min(n_anom - 1, max(1, int(round(n_anom * pseudo_share))))
    return n_norm, n_anom - n_pseudo, n_pseudo


class Stream:
    """An endless shuffled stream of indices 0..n-1: a fresh permutation every pass (seeded generator)."""

    def __init__(self, n: int, gen: torch.Generator):
        self.n, self.gen, self.buf, self.pos = n, gen, torch.empty(0, dtype=torch.long), 0

    def take(self, k: int) -> torch.Tensor:
        out = []
        while k > 0:
            if self.pos >= len(self.buf):
                self.buf, self.pos = torch.randperm(self.n, generator=self.gen), 0
            chunk = self.buf[self.pos:self.pos + k]
            out.append(chunk)
            self.pos += len(chunk)
            k -= len(chunk)
        return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


@functools.lru_cache(maxsize=8)
def d4_index(side: int) -> torch.Tensor:
    """(8, side·side) long: row c is the flat source position of each output position of a (side, side) map under
    D4 element c (rot90 by c % 4, after a left-right flip when c >= 4), the code order of :func:`d4_augment`.
    Cached and shared: read it, never change it in place."""
    grid = torch.arange(side * side).view(side, side)
    return torch.stack([torch.rot90(grid.flip(-1) if c >= 4 else grid, c % 4, dims=(-2, -1)).flatten()
                        for c in range(8)])


def d4_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each map of x (B, C, H, W), H == W, turned by a random element of the square's symmetry group D4
    (rot90 by k = 0..3, then or not a left-right flip; uniform over the 8). Returns a new (B, C, H, W) tensor.

    One ``randint(0, 8, (B,))`` from ``gen`` picks the elements; the maps are then permuted by one gather (a pure
    copy, so the values are exactly those of ``torch.rot90``/``flip``: tests/test_train.py checks it).
    Cached features cannot be re-extracted from rotated images; a CNN's map of a rotated image is close to the
    rotated map, so this stands in for the baselines' RandomRotation(180) of training images (``cpu`` profile).
    """
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"d4 augmentation needs square feature maps (B, C, H, H), got {tuple(x.shape)}")
    b, c, h, w = x.shape
    code = torch.randint(0, 8, (b,), generator=gen)
    where = d4_index(h).to(x.device)[code.to(x.device)]                      # (B, H·W)
    return x.reshape(b, c, h * w).gather(2, where.unsqueeze(1).expand(b, c, h * w)).view(b, c, h, w)


class _Streams:
    """The index streams of one run, all on one seeded generator (normal, seen, pseudo source, reference)."""

    def __init__(self, comp: Composition, n_normal: int, n_seen: int, n_pseudo_src: int, seed: int):
        self.comp, gen = comp, torch.Generator().manual_seed(int(seed))
        self.normal, self.seen = Stream(n_normal, gen), Stream(max(n_seen, 1), gen)
        self.pseudo = Stream(max(n_pseudo_src, 1), gen)
        self.ref = Stream(n_normal, gen) if comp.reference else None

    def draw(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reference, normal, seen, pseudo) index tensors of the next batch (order of the rows)."""
        c = self.comp
        ref = self.ref.take(c.reference) if self.ref is not None else torch.empty(0, dtype=torch.long)
        return ref, self.normal.take(c.normal), self.seen.take(c.seen), self.pseudo.take(c.pseudo)


class FeatureBatches:
    """Batches of cached maps: ``f_norm`` (N, C, H, W), ``f_seen`` (M, ...), ``f_pseudo`` (P, ...) -> (x, y).

    x is float32 (B, C, H, W), D4-augmented when ``augment == "d4"`` (its own generator, so the batches' rows are
    the same with or without it); y (B,) long labels (module docstring). Call it with the step index.
    The three sets are stacked once, as float32, into one store (twice their float16 size: about 0.2 GB for ELPV);
    a batch is one ``index_select`` of it (the same values as indexing each set and converting: the float16 ->
    float32 cast is exact)."""

    def __init__(self, f_norm, f_seen, f_pseudo, comp: Composition, seed: int, augment: str = "none"):
        self.f_norm, self.f_seen, self.f_pseudo, self.comp, self.augment = f_norm, f_seen, f_pseudo, comp, augment
        self.streams = _Streams(comp, len(f_norm), len(f_seen), len(f_pseudo), seed)
        self.y = comp.labels()
        self.aug_gen = torch.Generator().manual_seed(int(seed) + AUG_SEED_OFFSET)
        self.store = torch.cat([f_norm, f_seen, f_pseudo]).float()
        self.seen_at, self.pseudo_at = len(f_norm), len(f_norm) + len(f_seen)

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        ref, norm, seen, pseudo = self.streams.draw()
        rows = torch.cat([ref, norm, seen + self.seen_at, pseudo + self.pseudo_at])
        x = self.store.index_select(0, rows)
        return (d4_augment(x, self.aug_gen) if self.augment == "d4" else x), self.y


class ImageItems(torch.utils.data.Dataset):
    """Image mode: item ``(kind, index, pseudo_seed)`` -> (uint8 image (3, S, S), label y).

    Kinds "normal", "reference" (a training normal), "seen" (a seen anomaly), "pseudo" (a CutPaste-like pseudo
    anomaly of a training normal, made from ``pseudo_seed``). ``rotate``: RandomRotation(rotate) degrees on
    training images (DRA's code: 180), from a generator seeded by the item, so batches are reproducible.
    ``normal_u8``/``seen_u8``: the images already decoded, uint8 (N, 3, S, S) (:func:`preload_images`); then
    no file is read per item."""

    def __init__(self, normal, seen, size: int, rotate: float = 0.0, normal_u8=None, seen_u8=None):
        self.normal, self.seen, self.size, self.rotate = normal, seen, size, float(rotate)
        self.normal_u8, self.seen_u8 = normal_u8, seen_u8

    def __len__(self):
        return len(self.normal) + len(self.seen)

    def _image(self, kind: str, idx: int) -> torch.Tensor:
        cached = self.seen_u8 if kind == "seen" else self.normal_u8
        if cached is not None:
            return cached[idx]
        from .data import load_image
        return to_uint8(load_image((self.seen if kind == "seen" else self.normal)[idx], self.size))

    def __getitem__(self, spec):
        from .cutmix import cutpaste
        kind, idx, pseed = spec
        img = self._image(kind, idx)
        if kind == "pseudo":
            img = to_uint8(cutpaste(img.float().div_(255.0), torch.Generator().manual_seed(pseed))[0])
        if self.rotate:
            img = _rotate(img, self.rotate, pseed)
        y = {"normal": NORMAL, "reference": REFERENCE, "seen": SEEN, "pseudo": PSEUDO}[kind]
        return img, y


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """Float image in [0, 1] -> uint8 (rounded), same shape."""
    return img.mul(255.0).round_().to(torch.uint8)


def _rotate(img: torch.Tensor, degrees: float, seed: int) -> torch.Tensor:
    """RandomRotation(degrees) of img (3, S, S): angle uniform in [-degrees, degrees], nearest pixel (torchvision's
    default), corners filled with 0; exact on uint8 images."""
    from torchvision.transforms.functional import rotate
    g = torch.Generator().manual_seed(int(seed) & ((1 << 63) - 1))
    angle = float((torch.rand((), generator=g) * 2 - 1) * degrees)
    return rotate(img, angle)


def preload_images(samples, size: int, num_workers: int = 0) -> torch.Tensor:
    """Every sample decoded and resized once: uint8 (N, 3, S, S) (N = 0 gives (0, 3, S, S))."""
    if not len(samples):
        return torch.empty(0, 3, size, size, dtype=torch.uint8)
    return torch.cat(list(image_loader(samples, size, batch_size=64, num_workers=num_workers)))


class ImageBatches:
    """Batches of images through a DataLoader (``num_workers``, pinned memory on CUDA) -> (uint8 x, y).
    ``normal_u8``/``seen_u8``: the images preloaded (:func:`preload_images`), read instead of the files.

    ``normal``/``seen``: the split's sample lists; pseudo anomalies are made from training normals with a seed per
    (step, slot), so a run's batches depend only on its seed. Iterate it: ``for x, y in ImageBatches(...)``."""

    def __init__(self, normal, seen, comp: Composition, steps: int, size: int, seed: int, num_workers: int = 0,
                 pin_memory: bool = False, rotate: float = 0.0, batch_size: int | None = None, normal_u8=None,
                 seen_u8=None):
        from .cutmix import variant_seed
        streams = _Streams(comp, len(normal), len(seen), len(normal), seed)
        bsz = batch_size or (comp.normal + comp.seen + comp.pseudo)
        specs = []
        for step in range(steps):
            ref, norm, seen_i, pseudo = streams.draw()
            rot = [variant_seed("rot", step * bsz + j, int(seed)) for j in range(len(ref) + bsz)]
            b = [("reference", int(i), rot[j]) for j, i in enumerate(ref)]
            b += [("normal", int(i), rot[len(b) + j]) for j, i in enumerate(norm)]
            b += [("seen", int(i), rot[len(b) + j]) for j, i in enumerate(seen_i)]
            b += [("pseudo", int(i), variant_seed(normal[int(i)].key, step * bsz + j, int(seed)))
                  for j, i in enumerate(pseudo)]
            specs.append(b)
        items = ImageItems(normal, seen, size, rotate, normal_u8, seen_u8)
        self.loader = torch.utils.data.DataLoader(items, batch_sampler=specs,
                                                  num_workers=num_workers, pin_memory=pin_memory,
                                                  persistent_workers=False)

    def __iter__(self):
        return iter(self.loader)

    def __len__(self):
        return len(self.loader)


class ImageList(torch.utils.data.Dataset):
    """Plain images (uint8 (3, S, S), no augmentation) of a sample list: prototype initialisation and test sets."""

    def __init__(self, samples, size: int):
        self.samples, self.size = list(samples), size

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        from .data import load_image
        return to_uint8(load_image(self.samples[i], self.size))


def image_loader(samples, size: int, batch_size: int = 32, num_workers: int = 0, pin_memory: bool = False):
    """A DataLoader over :class:`ImageList` in order (no shuffling): yields uint8 (b, 3, S, S)."""
    return torch.utils.data.DataLoader(ImageList(samples, size), batch_size=batch_size, shuffle=False,
                                       num_workers=num_workers, pin_memory=pin_memory)
