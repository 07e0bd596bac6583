"""DPDL's own cost per training step over the backbone's, in the ``paper`` profile's setting, CUDA-synchronised.

Two nets on the public API (dpdl.methods.build_method, dpdl.net.Net), the same backbone (random init: the number
is about compute, not accuracy), the paper profile's input size, batch, autocast and memory format:

* ``mil``: backbone -> one top-K MIL head with the deviation loss (``build_method("devnet")``, one scale);
* ``dpdl``: backbone -> every DPDL term (three heads, DPL with the prototypes of Eq. 15, DFL).

A step is uint8 images already on the device -> ``net.losses`` -> backward -> AdamW step, with no host read of the
losses. Each variant is timed over ``--steps`` steps between two ``torch.cuda.synchronize()`` (after a warm-up);
``overhead = (dpdl - mil) / mil`` (target: <= 10%). ``host_syncs_per_step`` counts the synchronising calls of one
step (``torch.cuda.set_sync_debug_mode("warn")``). ``fit_step_ms``: the same DPDL step through
:func:`dpdl.train.fit` (batches from pinned CPU memory, loss values read once per epoch).

Usage: python benchmarks/bench_step_paper.py [--backbone resnet18] [--steps 30] [--batch 48] [--size 448]
       [--precision both|profile|fp32] [--out FILE]. Without CUDA it runs on the CPU (small defaults).
"""
from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import replace
from pathlib import Path

from _common import write

import torch


def build(method: str, backbone: str, prof, device, opts: dict | None = None):
    """(net, (C, H, W)): ``method`` on a random-init ``backbone`` in an image-mode Net of the profile's settings."""
    from dpdl.backbones import build_backbone, feature_shape
    from dpdl.methods import build_method
    from dpdl.net import Adapter, Net
    torch.manual_seed(0)
    bb = build_backbone(backbone, "last", pretrained=False, image_size=prof.image_size)
    c, h, w = feature_shape(backbone, "last", prof.image_size)
    net = Net(Adapter(c, 0), build_method(method, c, (h, w), opts or {}), bb, autocast=prof.autocast,
              channels_last=prof.channels_last).to(device)
    return net, (c, h, w)


def labels(prof, device) -> torch.Tensor:
    """y of a paper batch (two thirds normal, seen and pseudo anomalies: dpdl.batches.batch_counts)."""
    from dpdl.batches import Composition, batch_counts
    return Composition(*batch_counts(prof.batch_size, 10, prof.pseudo_share, True)).labels().to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(net, x, y, prof, device, steps: int, warmup: int = 3) -> dict:
    """ms per step (synchronised at both ends of ``steps`` steps) and the host syncs of one step."""
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=prof.lr,
                            weight_decay=prof.weight_decay)
    net.train()

    def step():
        terms = net.losses(x, y)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()

    for _ in range(warmup):
        step()
    syncs = None
    if device.type == "cuda":
        sync(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                step()
            finally:
                torch.cuda.set_sync_debug_mode(0)
        syncs = sum("synchroniz" in str(w.message).lower() for w in caught)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return {"step_ms": 1000 * (time.perf_counter() - t0) / steps, "host_syncs_per_step": syncs}


def fit_step_ms(net, x, y, prof, device, steps: int) -> float:
    """ms per step of :func:`dpdl.train.fit` on one pinned CPU batch (includes the copy to the device)."""
    from dpdl.train import fit
    xc = x.cpu().pin_memory() if device.type == "cuda" else x.cpu()
    yc = y.cpu()
    p = replace(prof, epochs=1, iters_per_epoch=steps)
    fit(net, lambda s: (xc, yc), replace(p, iters_per_epoch=2), device)          # warm-up
    return 1000 * fit(net, lambda s: (xc, yc), p, device)["train_s"] / steps


def main():
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--steps", type=int, default=30 if cuda else 2)
    ap.add_argument("--batch", type=int, default=48 if cuda else 6)
    ap.add_argument("--size", type=int, default=448 if cuda else 128)
    ap.add_argument("--precision", choices=["both", "profile", "fp32"], default="both")
    ap.add_argument("--out", default=None, help="JSON file (default results/benchmarks/step_paper_<device>.json)")
    a = ap.parse_args()
    import os
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    from dpdl.config import get_profile
    device = torch.device("cuda" if cuda else "cpu")
    base = get_profile("paper", batch_size=a.batch, image_size=a.size)
    precisions = {"profile": base, "fp32": replace(base, autocast="none", channels_last=False)}
    chosen = list(precisions) if a.precision == "both" else [a.precision]
    x = torch.randint(0, 256, (a.batch, 3, a.size, a.size), dtype=torch.uint8, device=device)
    y = labels(base, device)
    res = {}
    for pname in chosen:
        prof = precisions[pname]
        mil, (c, h, w) = build("devnet", a.backbone, prof, device)
        dpdl, _ = build("dpdl", a.backbone, prof, device)
        with torch.no_grad():
            normal = torch.randint(0, 256, (max(32, a.batch), 3, a.size, a.size), dtype=torch.uint8, device=device)
            dpdl.method.init(dpdl.eval().embed(normal), generator=torch.Generator().manual_seed(0))
        r = {"mil": time_steps(mil, x, y, prof, device, a.steps), "dpdl": time_steps(dpdl, x, y, prof, device, a.steps)}
        r["overhead"] = (r["dpdl"]["step_ms"] - r["mil"]["step_ms"]) / r["mil"]["step_ms"]
        r["fit_step_ms"] = fit_step_ms(dpdl, x, y, prof, device, a.steps)
        r.update(autocast=prof.autocast, channels_last=prof.channels_last)
        res[pname] = r
        del mil, dpdl
        if cuda:
            torch.cuda.empty_cache()
    payload = {"device": str(device), "device_name": torch.cuda.get_device_name(0) if cuda else "cpu",
               "synchronised": cuda, "backbone": a.backbone, "init": "random", "batch": a.batch, "image_size": a.size,
               "steps": a.steps, "feature_map": [int(c), int(h), int(w)], "D": int(c * h * w), "results": res,
               "target_overhead": 0.10,
               "note": "ms per step between two torch.cuda.synchronize(); mil = backbone + one top-K MIL head "
                       "(DevNet's, deviation loss); dpdl = backbone + every DPDL term"}
    if a.out:
        from dpdl.records import atomic_write_json
        atomic_write_json(Path(a.out), {"benchmark": "step_paper", **payload})
        print(payload)
    else:
        write(f"step_paper_{device.type}", payload)


if __name__ == "__main__":
    main()
