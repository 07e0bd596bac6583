"""The method interface: DPDL and the baselines DevNet, DRA and kNN plug into one training loop (dpdl.train).

A method is a pure torch module on feature maps x (B, C, H, W) (anomalib's torch-model half; the training glue
is dpdl.train, the data dpdl.batches). It provides

* ``losses(x, y) -> dict[str, Tensor]``: named scalar loss terms and their sum ``"total"``; y (B,) long labels
  0 normal, 1 seen anomaly, 2 pseudo anomaly, -1 reference normal (only when ``n_reference > 0``);
* ``score(x) -> Tensor (B,)``: anomaly scores (higher = more anomalous), deterministic, no gradient needed;
* ``init(normal, generator)``: called once before training with the embedded training normals (N, C, H, W)
  (DPDL: prototypes, Eq. 15; kNN: its memory); ``calibrate(normal)``: called before scoring with embedded
  reference normals (DRA: the composite head's reference);
* class attributes: ``trainable`` (kNN: False, no optimisation), ``uses_adapter`` (kNN: False, raw backbone
  maps), ``n_reference`` (reference rows per batch), ``composition(...)`` (its batch), ``protocol`` (the
  profile fields of the method's own published training, applied where the profile says so: ``paper``).

``build_method(name, in_channels, feat_hw, options)`` builds one; ``options`` are the fields of its config
dataclass (``method_config(name)``), stored in every run record and ``model.pt``.
"""
from __future__ import annotations

from dataclasses import asdict, fields

import torch
from torch import Tensor

from .batches import Composition, batch_counts
from .model import DPDLConfig, DPDLModel

METHODS = ("dpdl", "devnet", "dra", "knn")


class MethodMixin:
    """Defaults of the interface (see the module docstring)."""

    trainable = True
    uses_adapter = True
    n_reference = 0
    multiscale = False          # True: losses/score also take a list of maps, one per input scale (DevNet, DRA)
    protocol: dict = {}

    def composition(self, profile, n_seen: int, has_pseudo: bool) -> Composition:
        """The batch: the profile's (two thirds normal; pseudo anomalies as ``pseudo_slots`` says)."""
        n, s, p = batch_counts(profile.batch_size, n_seen, profile.pseudo_share, has_pseudo, profile.pseudo_slots)
        return Composition(n, s, p, self.n_reference)

    def init(self, normal: Tensor, generator: torch.Generator | None = None) -> None:
        pass

    def calibrate(self, normal: Tensor) -> None:
        pass


class DPDL(MethodMixin, DPDLModel):
    """DPDL (dpdl.model.DPDLModel) under the interface: anomaly = seen or pseudo (y > 0), Eq. (23)."""

    def init(self, normal: Tensor, generator: torch.Generator | None = None) -> None:
        self.init_prototypes(normal, generator=generator)                      # Eq. (15)

    def losses(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        if self.n_reference:   # drop reference rows (y = -1); boolean indexing is a host sync, so only if any
            x, y = x[y >= 0], y[y >= 0]
        return super().losses(x, (y > 0).to(x.dtype))


def method_config(name: str):
    """The config dataclass of method ``name`` (its fields are the method's options)."""
    from . import baselines
    configs = {"dpdl": DPDLConfig, "devnet": baselines.DevNetConfig, "dra": baselines.DRAConfig,
               "knn": baselines.KNNConfig}
    if name not in configs:
        raise ValueError(f"unknown method {name!r}: expected one of {', '.join(METHODS)}")
    return configs[name]


def check_options(name: str, options: dict) -> dict:
    """``options`` validated against method ``name``'s config (one sentence per problem); returns asdict(config)."""
    cfg_cls = method_config(name)
    known = {f.name for f in fields(cfg_cls)}
    bad = sorted(set(options) - known)
    if bad:
        raise ValueError(f"unknown option(s) {', '.join(bad)} for method {name!r} (--opt): expected some of "
                         f"{', '.join(sorted(known))}")
    try:
        return asdict(cfg_cls(**options))
    except (ValueError, TypeError) as exc:
        text = str(exc.args[0] if exc.args else exc)
        raise ValueError(text if "--" in text else f"--opt of method {name!r}: {text}") from None


def build_method(name: str, in_channels: int, feat_hw: tuple[int, int], options: dict | None = None):
    """Method ``name`` on maps of ``in_channels`` x feat_hw, with config ``options`` (see :func:`method_config`)."""
    cfg = method_config(name)(**(options or {}))
    return method_class(name)(int(in_channels), tuple(feat_hw), cfg)


def method_class(name: str):
    """The module class of method ``name`` (its class attributes: trainable, uses_adapter, protocol...)."""
    from . import baselines
    method_config(name)
    return {"dpdl": DPDL, "devnet": baselines.DevNet, "dra": baselines.DRA, "knn": baselines.KNN}[name]
