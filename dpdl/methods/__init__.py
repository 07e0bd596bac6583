"""The methods package: one home per method, the interface and the registry here (anomalib's
``models/image/<name>/torch_model.py`` layout, read to learn).

| method | home |
|---|---|
| DPDL | :mod:`dpdl.methods.dpdl` (prototypes, bridge, dispersion, heads, model) |
| DevNet, DRA, kNN | :mod:`dpdl.methods.devnet`, :mod:`dpdl.methods.dra`, :mod:`dpdl.methods.knn` |
| ArcAD and its base | :mod:`dpdl.methods.arcad` (base: reverse distillation; calibration: SPM, DGC, focal; model) |
| HGAD, HGAD+BG | :mod:`dpdl.methods.hgad` (flow, hierarchical prior, model; BGAD's push-pull) |
| VPDM | :mod:`dpdl.methods.vpdm` (schedule, VPOT, denoiser, model) |
| shared maths | :mod:`dpdl.methods.shared` (score heads; Gaussian-mixture densities; hypersphere and vMF; Sinkhorn) |

Every method plugs into one training loop (dpdl.train).

A method is a pure torch module on feature maps x (B, C, H, W) (anomalib's torch-model half; the training glue
is dpdl.train, the data dpdl.batches). It provides

* ``losses(x, y) -> dict[str, Tensor]``: named scalar loss terms and their sum ``"total"``; y (B,) long labels
  0 normal, 1 seen anomaly, 2 pseudo anomaly, -1 reference normal (only when ``n_reference > 0``);
* ``score(x) -> Tensor (B,)``: anomaly scores (higher = more anomalous), deterministic, no gradient needed;
* ``init(normal, generator)``: called once before training with the embedded training normals (N, C, H, W)
  (DPDL: prototypes, Eq. 15; kNN: its memory); ``calibrate(normal)``: called before scoring with embedded
  reference normals (DRA: the composite head's reference);
* class attributes (defaults in :class:`dpdl.methods.base.MethodMixin`): ``trainable`` (kNN: False, no optimisation), ``uses_adapter`` (kNN: False, raw backbone
  maps), ``n_reference`` (reference rows per batch), ``composition(...)`` (its batch), ``protocol`` (the
  profile fields of the method's own published training, applied where the profile says so: ``paper``),
  ``records_version`` (raised when a code change alters the method's numbers: older records count as outdated),
  ``per_image_scores`` (kNN: a test image's score is the same bits in any batch, so it is scored once per dataset
  and seed, dpdl.trained_once).

``build_method(name, in_channels, feat_hw, options)`` builds one; ``options`` are the fields of its config
dataclass (``method_config(name)``), stored in every run record and ``model.pt``.
"""
from __future__ import annotations

from dataclasses import asdict, fields
from importlib import import_module

from dpdl.methods.base import MethodMixin  # noqa: F401 (the interface's defaults)

# name -> (module, module class, config class): the one registry of methods. A new method adds one line.
_REGISTRY = {
    "dpdl": ("dpdl.methods.dpdl", "DPDL", "DPDLConfig"),
    "devnet": ("dpdl.methods.devnet", "DevNet", "DevNetConfig"),
    "dra": ("dpdl.methods.dra", "DRA", "DRAConfig"),
    "knn": ("dpdl.methods.knn", "KNN", "KNNConfig"),
    "arcad": ("dpdl.methods.arcad", "ArcAD", "ArcADConfig"),
    "arcad_base": ("dpdl.methods.arcad", "ArcADBase", "ArcADBaseConfig"),
    "hgad": ("dpdl.methods.hgad", "HGAD", "HGADConfig"),
    "hgad_bg": ("dpdl.methods.hgad", "HGADBG", "HGADBGConfig"),
    "vpdm": ("dpdl.methods.vpdm", "VPDM", "VPDMConfig"),
}
METHODS = tuple(_REGISTRY)


def _entry(name: str) -> tuple[type, type]:
    """(module class, config class) of method ``name``, imported on first use."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}: expected one of {', '.join(METHODS)}")
    module, cls, cfg = _REGISTRY[name]
    mod = import_module(module)
    return getattr(mod, cls), getattr(mod, cfg)


def method_config(name: str):
    """The config dataclass of method ``name`` (its fields are the method's options)."""
    return _entry(name)[1]


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
    return _entry(name)[0]
