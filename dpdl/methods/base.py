"""The base of every method: :class:`MethodMixin` (the interface's defaults, see :mod:`dpdl.methods`) and the
checks of feature-map inputs that the methods share.
"""
from __future__ import annotations

import torch
from torch import Tensor

from dpdl.batches import Composition, batch_counts


class MethodMixin:
    """Defaults of the interface (see the module docstring)."""

    trainable = True
    uses_adapter = True
    n_reference = 0
    multiscale = False          # True: losses/score also take a list of maps, one per input scale (DevNet, DRA)
    unsupervised = False        # True: trained on the training normals only (batches all normal, M plays no part),
    #                             so one trained model serves every cell of a dataset and seed (dpdl.train)
    protocol: dict = {}
    # Raised when a change of the code (not of an option) changes the method's numbers, e.g. a rewrite of its step
    # with the same mathematics but other rounding: every record stores it (``records_version``), and a record made
    # with another value counts as outdated (dpdl.study.outdated), so `dpdl study run --rerun-outdated` replaces it.
    records_version = 1
    # True: a test image's score is the same bits whichever images it is scored with, so an untrained method's scores
    # are kept per image and reused by the other cells of a dataset and seed (dpdl.trained_once.evaluate_shared: kNN)
    per_image_scores = False

    def composition(self, profile, n_seen: int, has_pseudo: bool) -> Composition:
        """The batch: the profile's (two thirds normal; pseudo anomalies as ``pseudo_slots`` says); an unsupervised
        method's batch is all normal."""
        if self.unsupervised:
            return Composition(profile.batch_size, 0, 0, self.n_reference)
        n, s, p = batch_counts(profile.batch_size, n_seen, profile.pseudo_share, has_pseudo, profile.pseudo_slots)
        return Composition(n, s, p, self.n_reference)

    def init(self, normal: Tensor, generator: torch.Generator | None = None) -> None:
        pass

    def calibrate(self, normal: Tensor) -> None:
        pass


def check_maps(x: Tensor, c: int, hw: tuple[int, int]) -> None:
    if x.ndim != 4 or x.shape[1] != c or tuple(x.shape[2:]) != hw:
        raise ValueError(f"expected feature maps of shape (B, {c}, {hw[0]}, {hw[1]}), got {tuple(x.shape)}")


def scale_list(x, c: int, hw: tuple[int, int]) -> list[Tensor]:
    """x: maps (B, C, H, W) or a list of them, one per input scale (the first at feat_hw) -> a list."""
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    check_maps(xs[0], c, hw)
    for m in xs[1:]:
        if m.ndim != 4 or m.shape[:2] != xs[0].shape[:2]:
            raise ValueError(f"every scale's maps must be (B, {c}, h, w) like the first, got {tuple(m.shape)}")
    return xs


def mean_over(fn, xs: list[Tensor], rows: Tensor | None = None) -> Tensor:
    """A head's score averaged over the scales: mean_s fn(xs[s][rows]) -> (B',)."""
    outs = [fn(m if rows is None else m[rows]) for m in xs]
    return outs[0] if len(outs) == 1 else torch.stack(outs).mean(dim=0)
