"""Fidelity profiles: ``paper`` (the paper's settings, for a GPU), ``cpu`` (a 2-core laptop), ``smoke`` (tests).

Every run record stores its profile's name and fields; the book labels every number with it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Profile:
    """How faithfully (and how expensively) a run follows the paper (Sec. 5.3)."""

    name: str
    image_size: int             # input side (paper: 448)
    backbone: str               # default backbone of the profile
    finetune_backbone: bool     # paper: ResNet-18 fine-tuned end to end
    feature_cache: bool         # frozen backbone: extract features once per image and size
    epochs: int                 # paper: 50
    iters_per_epoch: int        # paper: 20
    batch_size: int             # paper: 48, two thirds normal
    lr: float = 2e-4            # AdamW (paper)
    weight_decay: float = 1e-5  # AdamW (paper)
    adapter_dim: int = 0        # >0: a trainable 1x1-conv adapter on top of a frozen backbone
    pseudo_per_image: int = 1   # cached CutMix variants per normal image (feature-cache profiles)
    device: str = "auto"        # "auto" = CUDA when present

    def to_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "paper": Profile(name="paper", image_size=448, backbone="resnet18", finetune_backbone=True,
                     feature_cache=False, epochs=50, iters_per_epoch=20, batch_size=48),
    "cpu": Profile(name="cpu", image_size=224, backbone="mobilenet_v2", finetune_backbone=False,
                   feature_cache=True, epochs=20, iters_per_epoch=20, batch_size=48, lr=1e-3,
                   adapter_dim=128, device="cpu"),
    "smoke": Profile(name="smoke", image_size=64, backbone="mobilenet_v2", finetune_backbone=False,
                     feature_cache=True, epochs=3, iters_per_epoch=5, batch_size=24, lr=1e-3,
                     adapter_dim=32, device="cpu"),
}


def get_profile(name: str, **overrides) -> Profile:
    """The named profile, with ``overrides`` applied (unknown names are one clear error)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: expected one of {', '.join(PROFILES)}")
    return replace(PROFILES[name], **overrides) if overrides else PROFILES[name]
