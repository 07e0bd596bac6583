"""DPDL's own cost per training step over the backbone's, in the ``paper`` profile's setting.

ResNet-18 (random init: the number is about compute, not accuracy), 448x448 input, its last map (512 x 14 x 14),
fine-tuned end to end with AdamW, on CPU (this machine has no GPU: CPU numbers, small batch). Two step functions:

* ``dpdl``: backbone -> DPDLModel.losses (all terms: three heads, DPL with C=32 prototypes, DFL) -> backward -> step
* ``backbone``: backbone -> one top-K MIL head with BCE (the least a detector needs) -> backward -> step

overhead = (dpdl - backbone) / backbone, end to end; and, less noisy on a busy CPU, the same from the parts that
differ: (DPDL's forward - the MIL head's forward + the difference in backward) / backbone step (the backbone's
forward is the same work in both). Usage: python benchmarks/bench_step_paper.py [--batch 8] [--steps 4]
"""
from __future__ import annotations

import argparse

from _common import write

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class MILOnly(nn.Module):
    """The reference head: 1x1 conv patch logits, top-10% mean, BCE."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, 1, 1)

    def losses(self, x, y):
        s = self.conv(x).flatten(1)
        k = max(int(0.1 * s.shape[1]), 1)
        logit = s.topk(k, dim=1).values.mean(1)
        t = F.binary_cross_entropy_with_logits(logit, y)
        return {"ma": t, "total": t}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    from dpdl.backbones import build_backbone
    from dpdl.config import get_profile
    from dpdl.train import Adapter, DPDLNet, RunConfig, _optimizer, _step, build_dpdl
    torch.manual_seed(0)
    prof = get_profile("paper", batch_size=a.batch, image_size=a.size)
    bb = build_backbone("resnet18", "last", pretrained=False, image_size=a.size)
    with torch.no_grad():
        c, h, w = bb(torch.rand(1, 3, a.size, a.size)).shape[1:]
    dpdl, _ = build_dpdl(c, (h, w), RunConfig("bench"))
    with torch.no_grad():
        bb.eval()
        dpdl.init_prototypes(bb(torch.rand(max(32, a.batch), 3, a.size, a.size)))
    y = torch.cat([torch.zeros(a.batch - a.batch // 3), torch.ones(a.batch // 3)])
    x = torch.rand(a.batch, 3, a.size, a.size)
    res = {}
    for name, head in (("backbone", MILOnly(c)), ("dpdl", dpdl)):
        net = DPDLNet(Adapter(c, 0), head, bb)
        net.train()
        opt = _optimizer(net, prof)
        times: dict = {}
        _step(net, opt, x, y, 0, prof, None)  # warm-up
        for s in range(a.steps):
            _step(net, opt, x, y, s + 1, prof, times)
        res[name] = {k: 1000 * float(np.median(v)) for k, v in times.items()}
    over = (res["dpdl"]["step"] - res["backbone"]["step"]) / res["backbone"]["step"]
    d, b = res["dpdl"], res["backbone"]
    parts = (d["dpdl_fwd"] - b["dpdl_fwd"] + d["backward_opt"] - b["backward_opt"]) / b["step"]
    payload = {"device": "cpu", "note": "CPU numbers (no GPU here); ResNet-18 random init; median over steps",
               "batch": a.batch, "image_size": a.size, "steps": a.steps, "feature_map": [int(c), int(h), int(w)],
               "step_ms": res, "dpdl_overhead_fraction": over,
               "dpdl_overhead_fraction_from_parts": parts,
               "dpdl_forward_fraction_of_backbone_forward": res["dpdl"]["dpdl_fwd"] / res["dpdl"]["backbone_fwd"],
               "target": "DPDL terms <= 10% of the step time over the backbone"}
    write("step_paper" if a.batch == 8 else f"step_paper_b{a.batch}", payload)


if __name__ == "__main__":
    main()
