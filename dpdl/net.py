"""What is trained and saved: backbone (fine-tuned, inside; or frozen, outside) -> adapter -> a method's module.

``Net(adapter, method, backbone=None, scales=(), autocast="none", channels_last=False)``: ``embed(x)`` maps images
(uint8 or float in [0, 1], (B, 3, S, S)) or cached maps (B, Cin, H, W) to the method's input (B, C, H, W); for a
multi-scale method (``method.multiscale``: DevNet, DRA) with extra ``scales`` (input sides, DRA's code: 224) it is a
list of such maps, one per scale, the images resized by ``F.interpolate`` (nearest, its default, as DRA's code does).
``autocast="bf16"`` runs the backbone under bf16 autocast on CUDA (the adapter and the method in float32);
``channels_last`` keeps the backbone and its input in that memory format. ``score(x)`` gives anomaly scores (N,).
``Net.save(path, meta)`` / ``Net.load(path)`` write and rebuild it (``model.pt``, read by ``dpdl score``).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MODEL_FORMAT = 2


class Adapter(nn.Module):
    """Trainable 1x1 conv -> BN -> ReLU on the backbone's maps: (B, Cin, H, W) -> (B, dim, H, W).

    ``dim = 0`` is the identity (the ``paper`` profile trains the backbone itself; kNN uses the raw maps)."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.in_channels, self.dim = in_channels, dim
        self.out_channels = dim or in_channels
        self.net = (nn.Sequential(nn.Conv2d(in_channels, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU())
                    if dim else nn.Identity())

    def forward(self, x):
        return self.net(x)

    @torch.no_grad()
    def calibrate(self, feats: torch.Tensor, chunk: int = 256) -> None:
        """Set BN's running statistics to the exact mean/variance of ``feats`` (N, Cin, H, W) (cumulative pass)."""
        bns = [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]
        if not bns:
            return
        was = self.training
        dev = bns[0].running_mean.device
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        self.train()
        for s in range(0, len(feats), chunk):
            self(feats[s:s + chunk].to(dev).float())
        for bn in bns:
            bn.momentum = 0.1
        self.train(was)


def as_float_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (B, 3, S, S) -> float32 in [0, 1] (on x's device); float tensors pass unchanged."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


class Net(nn.Module):
    """Backbone (optional, fine-tuned) -> adapter -> method. The method (dpdl.methods) has ``losses``/``score``."""

    def __init__(self, adapter: Adapter, method: nn.Module, backbone: nn.Module | None = None,
                 scales: tuple[int, ...] = (), autocast: str = "none", channels_last: bool = False):
        super().__init__()
        if autocast not in ("none", "bf16"):
            raise ValueError(f"autocast must be 'none' or 'bf16', got {autocast!r}")
        self.adapter, self.method, self.backbone = adapter, method, backbone
        multi = backbone is not None and getattr(method, "multiscale", False)
        self.scales = tuple(int(s) for s in scales) if multi else ()
        self.autocast, self.channels_last = autocast, bool(channels_last and backbone is not None)
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)

    def _maps(self, img: torch.Tensor) -> torch.Tensor:
        """Float images (B, 3, s, s) -> adapter output (B, C, h, w), float32."""
        if self.channels_last:
            img = img.contiguous(memory_format=torch.channels_last)
        with torch.autocast(img.device.type, dtype=torch.bfloat16,
                            enabled=self.autocast == "bf16" and img.device.type == "cuda"):
            maps = self.backbone(img)
        return self.adapter(maps.float())

    def embed(self, x: torch.Tensor):
        """Images (when the backbone is inside) or cached maps -> the method's input x (B, C, H, W); a list of
        them, one per scale (the first at the input's own size), when the net has extra ``scales``."""
        if self.backbone is None:
            return self.adapter(x.float())
        img = as_float_images(x)
        if not self.scales:
            return self._maps(img)
        return [self._maps(img)] + [self._maps(F.interpolate(img, size=(s, s))) for s in self.scales]

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        """The method's named loss terms (with "total") on a batch of images/maps x and labels y (B,)."""
        return self.method.losses(self.embed(x), y)

    @torch.no_grad()
    def score(self, x: torch.Tensor, chunk: int = 128) -> torch.Tensor:
        """Anomaly scores (N,) of images/maps x, in eval mode, in chunks; on the CPU, float32."""
        was = self.training
        self.eval()
        dev = next(iter(self.state_dict().values())).device   # kNN has buffers only
        out = [self.method.score(self.embed(x[s:s + chunk].to(dev, non_blocking=True))).float()
               for s in range(0, len(x), chunk)]
        out = [o.cpu() for o in out]
        self.train(was)
        return torch.cat(out) if out else torch.empty(0)

    # ------------------------------------------------------------------------------------------ save / load
    def save(self, path: str | os.PathLike, meta: dict) -> None:
        """Write ``model.pt`` atomically: the states plus ``meta`` (method name and options, shapes, profile...).

        ``meta`` must hold ``method``, ``method_options``, ``feature_shape`` (Cin, H, W of the adapter's input),
        ``adapter_dim``, ``backbone`` (describe() of the extractor) and ``profile`` (its fields); the net's scales,
        autocast and memory format are added."""
        blob = {"format": MODEL_FORMAT, **meta, "scales": list(self.scales), "autocast": self.autocast,
                "channels_last": self.channels_last, "adapter": self.adapter.state_dict(),
                "method_state": self.method.state_dict(),
                "backbone_state": self.backbone.state_dict() if self.backbone is not None else None}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(blob, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, weights: str | None = None):
        """(net, frozen extractor or None, blob) from a ``model.pt``; the net in eval mode, on the CPU.

        Raises ValueError (one sentence) for a file that is not a model written by ``dpdl train``."""
        p = Path(path)
        try:
            blob = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{p} is not a model.pt written by dpdl train (torch.load failed: "
                             f"{type(exc).__name__})") from None
        if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
            raise ValueError(f"{p} is not a model.pt written by this version of dpdl train "
                             f"(format {blob.get('format') if isinstance(blob, dict) else None!r}, "
                             f"expected {MODEL_FORMAT}); retrain it")
        try:
            return cls._rebuild(p, blob, weights)
        except (KeyError, TypeError, IndexError, AttributeError, RuntimeError, ValueError) as exc:
            if isinstance(exc, ValueError) and ("weight" in str(exc) or str(p) in str(exc)):
                raise
            text = (str(exc).splitlines() or [""])[0][:150]
            raise ValueError(f"{p} cannot be rebuilt as a model of dpdl train ({type(exc).__name__}: {text}); "
                             "retrain it") from None

    @classmethod
    def _rebuild(cls, p: Path, blob: dict, weights):
        from .backbones import build_backbone, feature_shape
        from .methods import build_method
        binfo, prof = blob["backbone"], blob["profile"]
        expected = list(feature_shape(binfo["name"], binfo["layers"], prof["image_size"], binfo.get("map_size", 0)))
        if list(blob["feature_shape"]) != expected:     # a crafted shape would allocate without bound
            raise ValueError(f"{p} has feature_shape {blob['feature_shape']!r} where its backbone "
                             f"{binfo['name']} gives {expected}: the file was altered; retrain it")
        c, h, w = expected
        try:
            backbone = build_backbone(binfo["name"], binfo["layers"], weights=weights or blob.get("weights"),
                                      image_size=prof["image_size"], pretrained=blob["backbone_state"] is None,
                                      map_size=binfo.get("map_size", 0))
        except RuntimeError as exc:   # load_state_dict: the weight file is of another network
            raise ValueError(f"weight file {weights or blob.get('weights')} does not fit backbone {binfo['name']} "
                             f"({(str(exc).splitlines() or [''])[0][:100]})") from None
        adapter = Adapter(c, blob["adapter_dim"])
        method = build_method(blob["method"], adapter.out_channels, (h, w), blob["method_options"])
        adapter.load_state_dict(blob["adapter"])
        method.load_state_dict(blob["method_state"])
        if blob["backbone_state"] is not None:
            backbone.load_state_dict(blob["backbone_state"])
            net = cls(adapter, method, backbone, scales=tuple(blob.get("scales", ())),
                      autocast=blob.get("autocast", "none"), channels_last=blob.get("channels_last", False))
            extractor = None
        else:
            net, extractor = cls(adapter, method), backbone.freeze()
        return net.eval(), extractor, blob
