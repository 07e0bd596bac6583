"""Fidelity profiles: ``paper`` (the paper's settings, for a GPU), ``cpu`` (a 2-core laptop), ``smoke`` (tests).

Every run record stores its profile's name and fields (``profile_settings``) and the list of the ways the profile
departs from the paper (``deviations``); the book labels every number with it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


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
    adapter_dim: int = 0        # >0: a trainable 1x1 conv -> BN -> ReLU adapter on top of the backbone
    pseudo_per_image: int = 1   # cached CutMix variants per normal image (feature-cache profiles)
    feature_layers: str = "last"  # backbone taps: "last", "mid", "low", joined by "+" (see dpdl.backbones)
    map_size: int = 0           # >0: resize the feature map to map_size x map_size (avg pooling when shrinking)
    pseudo_share: float = 0.5   # share of the anomaly third of a batch given to pseudo anomalies
    grad_clip: float = 0.0      # >0: clip the gradient norm (not in the paper)
    num_workers: int = 0        # image-loading workers (image mode only)
    threads: int = 0            # >0: torch intra-op threads during the run (0: leave torch's default)
    device: str = "auto"        # "auto" = CUDA when present
    head_loss: str = "deviation"  # L_binary of Eqs. (20)-(22): "deviation" (DevNet/DRA) or "bce"; the paper is silent
    feature_aug: str = "none"   # "d4": random rot90/flip of cached feature maps (feature-cache profiles)
    pseudo_slots: str = "anomaly"  # whose slots pseudo anomalies take: "anomaly" (pseudo_share of the anomaly third)
    #                                or "normal" (DRA's code: pseudo_share of the normal two thirds; see batch_counts)
    optimizer: str = "adamw"    # "adamw" (the paper) or "adam" (DRA's code)
    lr_step: int = 0            # >0: StepLR every lr_step epochs by lr_gamma (DRA's code: 10, 0.1; the paper is silent)
    lr_gamma: float = 0.1
    rotate: float = 0.0         # image mode: RandomRotation(rotate) of training images (DRA's code: 180)
    method_protocol: bool = False  # baselines train under their own published protocol (dpdl.methods: protocol)
    scales: str = ""            # image mode: extra input sides joined by "+" ("224"): a multi-scale method's (DevNet,
    #                             DRA) head scores averaged over image_size and these (DRA's code); DPDL: one scale
    autocast: str = "none"      # "bf16": the backbone's forward under bf16 autocast on CUDA (the method in float32)
    channels_last: bool = False  # the backbone and its input images in channels_last memory format (CUDA speed)

    def to_dict(self) -> dict:
        return asdict(self)

    def scale_sides(self) -> tuple[int, ...]:
        """(image_size, *extra scales): the input sides a multi-scale method sees (image mode)."""
        extra = [p.strip() for p in str(self.scales).split("+") if p.strip()]
        if not all(p.isdigit() and int(p) >= 32 for p in extra):
            raise ValueError(f"profile field scales must be input sides >= 32 joined by '+', got {self.scales!r}")
        return (self.image_size, *(int(p) for p in extra if int(p) != self.image_size))

    def deviations(self, backbone: str | None = None) -> list[str]:
        """Plain-language list of where this profile departs from the paper's Sec. 5.3 and from DRA's protocol
        (../shared/protocol.md), including the choices where the paper is silent; ``backbone``: the run's."""
        out: list[str] = []
        backbone = backbone or self.backbone
        if self.image_size != 448:
            out.append(f"input {self.image_size}x{self.image_size} instead of 448x448")
        if backbone != "resnet18":
            out.append(f"backbone {backbone} (ImageNet) instead of ResNet-18")
        if not self.finetune_backbone:
            out.append("backbone frozen (ImageNet weights), not fine-tuned end to end")
        if self.feature_cache:
            out.append("backbone features extracted once per image and cached on disk")
            out.append(f"pseudo anomalies: {self.pseudo_per_image} fixed CutMix (CutPaste-like) variant(s) per "
                       "training normal image, made once with a fixed generator and cached, "
                       "instead of fresh ones every batch")
        if self.adapter_dim:
            out.append(f"a trainable 1x1 conv adapter ({self.adapter_dim} channels, BN, ReLU) on the backbone maps")
        if self.feature_layers != "last":
            out.append(f"feature map from backbone taps {self.feature_layers!r} (resized to one map, concatenated)")
        if self.map_size:
            out.append(f"feature map resized to {self.map_size}x{self.map_size} (average pooling when shrinking)")
        if (self.epochs, self.iters_per_epoch) != (50, 20):
            out.append(f"{self.epochs} epochs x {self.iters_per_epoch} iterations instead of 50 x 20")
        if self.batch_size != 48:
            out.append(f"batch {self.batch_size} instead of 48")
        if self.lr != 2e-4:
            out.append(f"AdamW lr {self.lr:g} instead of 2e-4")
        if self.weight_decay != 1e-5:
            out.append(f"AdamW weight decay {self.weight_decay:g} instead of 1e-5")
        if self.feature_aug == "d4":
            out.append("training feature maps randomly rotated by multiples of 90 degrees and flipped (the "
                       "cached-feature stand-in for the baselines' RandomRotation(180) of training images)")
        if self.grad_clip:
            out.append(f"gradient-norm clipping at {self.grad_clip:g}")
        if self.optimizer != "adamw":
            out.append(f"optimiser {self.optimizer} instead of AdamW")
        if self.lr_step:
            out.append(f"StepLR: lr x {self.lr_gamma:g} every {self.lr_step} epochs (the paper states no schedule)")
        out += self._silent_choices()
        return out

    def _silent_choices(self) -> list[str]:
        """Where the paper is silent and this profile picks one reading (differences from DRA's code included)."""
        out = [f"L_binary of Eqs. (20)-(22): {'DevNet deviation loss' if self.head_loss == 'deviation' else 'BCE'}"
               " (the paper names no loss)"]
        if not (self.lr_step or self.grad_clip):
            out.append("no learning-rate schedule and no gradient clipping for DPDL (the paper states neither; "
                       "DRA's code: StepLR(10, 0.1), clip 1.0)")
        out.append("pseudo anomalies CutPaste-like, as DRA's code makes them (the paper says CutMix)")
        if self.pseudo_slots == "anomaly":
            from .batches import batch_counts
            n, s, p = batch_counts(self.batch_size, 10, self.pseudo_share, True)
            out.append(f"pseudo anomalies take {self.pseudo_share:g} of the anomaly third of a batch ({n} normal, "
                       f"{s} seen, {p} pseudo); DRA's code turns half of the normal slots into pseudo anomalies")
        if not self.feature_cache:
            if self.rotate != 180:
                out.append(f"training images rotated by up to {self.rotate:g} degrees; DRA's code: RandomRotation(180)")
            sides = self.scale_sides()
            out.append("DPDL scored at one input scale (the paper: 448x448; its prototypes have one dimension "
                       "D = C*H*W); " + ("DevNet and DRA average each head's score over inputs "
                                         + " and ".join(map(str, sides)) if len(sides) > 1 else
                                         "DevNet and DRA at one scale too, DRA's code averages 448 and 224"))
            if self.autocast == "bf16":
                out.append("backbone forward in bf16 autocast on CUDA (the method's terms in float32); the paper "
                           "states no precision")
        if self.method_protocol:
            out.append("baselines trained under their own code's protocol (DRA: Adam, StepLR(10, 0.1), clip 1.0, "
                       "30 epochs, 16/16/16 batches; DevNet: Adam, StepLR(10, 0.1), clip 1.0), DPDL under the paper's")
        return out


# Fields added after the first run records, with the behaviour those records had (a record without the field was
# made with this value): read by `dpdl score` (old model.pt) and by the study's outdated-run check.
VALUE_BEFORE_FIELD = {"head_loss": "bce", "feature_aug": "none", "pseudo_slots": "anomaly"}


def recorded_value(settings: dict, name: str):
    """A profile field's value as stored in a record's/model's ``profile_settings`` (VALUE_BEFORE_FIELD if absent)."""
    if name in settings:
        return settings[name]
    if name in VALUE_BEFORE_FIELD:
        return VALUE_BEFORE_FIELD[name]
    return {f.name: f.default for f in fields(Profile)}.get(name)


PROFILES: dict[str, Profile] = {
    # paper: StepLR and gradient clipping are off for DPDL (the paper states neither; a schedule would be ours);
    # DRA trains with its code's StepLR(10, 0.1) and clip 1.0 through method_protocol (dpdl.methods.DRA.protocol).
    # rotate, scales: DRA's code; autocast/channels_last: GPU speed; 12 loader workers for a 16-core GPU machine.
    "paper": Profile(name="paper", image_size=448, backbone="resnet18", finetune_backbone=True,
                     feature_cache=False, epochs=50, iters_per_epoch=20, batch_size=48,
                     feature_layers="last", num_workers=12, method_protocol=True, rotate=180.0, scales="224",
                     autocast="bf16", channels_last=True),
    # cpu: tuned on ELPV general M=10 seed 0 (benchmarks/bench_elpv_cpu.py): EfficientNet-Lite0 beat MobileNetV2,
    # the paper's lr 2e-4 over-fitted the frozen features after ~4 epochs (1e-4 for 12 epochs held up), and
    # 14x14 maps cost 4x the step time of 7x7 for no gain. head_loss "deviation" and feature_aug "d4": the best mean
    # AUC over the four ELPV target cells, 5 seeds each (bench_elpv_cpu.py choices; results/benchmarks/).
    "cpu": Profile(name="cpu", image_size=224, backbone="efficientnet_lite0", finetune_backbone=False,
                   feature_cache=True, epochs=12, iters_per_epoch=20, batch_size=48, lr=1e-4,
                   adapter_dim=128, pseudo_per_image=1, feature_layers="mid+last", map_size=7, threads=1,
                   device="cpu", feature_aug="d4"),
    "smoke": Profile(name="smoke", image_size=64, backbone="mobilenet_v2", finetune_backbone=False,
                     feature_cache=True, epochs=3, iters_per_epoch=5, batch_size=24, lr=1e-3,
                     adapter_dim=32, pseudo_per_image=1, feature_layers="mid+last", threads=1, device="cpu"),
}


# What a changed field (``--set FIELD=VALUE``) may hold: (type, lowest value, lowest excluded?, highest or None).
_INT_AT_LEAST = {"image_size": 1, "epochs": 1, "iters_per_epoch": 1, "batch_size": 3, "adapter_dim": 0,
                 "pseudo_per_image": 0, "map_size": 0, "num_workers": 0, "threads": 0}
_FLOAT_RANGE = {"lr": (0.0, True, None), "weight_decay": (0.0, False, None), "grad_clip": (0.0, False, None),
                "pseudo_share": (0.0, False, 1.0)}


def check_override(name: str, value) -> None:
    """One sentence (``ValueError``) when ``value`` cannot be profile field ``name`` (its type and range)."""
    kind = {f.name: f.type for f in fields(Profile)}[name]
    where = f"profile field {name} (--set {name}=VALUE)"
    if name == "name":
        raise ValueError(f"{where} cannot be changed: expected another --profile instead")
    if kind == "int":
        low = _INT_AT_LEAST[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{where} must be an integer >= {low}, got {value!r}")
    elif kind == "float":
        low, strict, high = _FLOAT_RANGE[name]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
        if not ok or value < low or (strict and value == low) or (high is not None and value > high):
            rng = f"{'>' if strict else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
            raise ValueError(f"{where} must be a number {rng}, got {value!r}")
    elif kind == "bool" and not isinstance(value, bool):
        raise ValueError(f"{where} must be true or false, got {value!r}")
    elif kind == "str" and not isinstance(value, str):
        raise ValueError(f"{where} must be a word, got {value!r}")


def get_profile(name: str, /, **overrides) -> Profile:
    """The named profile, with ``overrides`` applied (unknown names and bad values are one clear error)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: expected one of {', '.join(PROFILES)}")
    known = {f.name for f in fields(Profile)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ValueError(f"unknown profile field(s) {', '.join(bad)}: expected some of {', '.join(sorted(known))}")
    for key, value in overrides.items():
        check_override(key, value)
    return replace(PROFILES[name], **overrides) if overrides else PROFILES[name]
