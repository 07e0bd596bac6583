"""CutMix (CutPaste-like) pseudo anomalies: patch size and shape, locality, determinism."""
from __future__ import annotations

import torch

from dpdl.cutmix import ASPECT_RANGE, cutpaste, pseudo_anomaly


def test_patch_area_aspect_and_locality():
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(3, 96, 128)
    for _ in range(200):
        out, box = cutpaste(img, gen)
        frac = box.area_fraction(96, 128)
        assert 0.02 <= frac <= 0.15
        ph, pw = box.size
        aspect = pw / ph
        assert ASPECT_RANGE[0] * 0.9 <= aspect <= ASPECT_RANGE[1] * 1.1  # integer pixels round a little
        (dy, dx) = box.dst
        mask = torch.zeros(96, 128, dtype=torch.bool)
        mask[dy:dy + ph, dx:dx + pw] = True
        assert torch.equal(out[:, ~mask], img[:, ~mask])  # only the pasted box changes
        assert out.min() >= 0 and out.max() <= 1
        assert not torch.equal(out[:, mask], img[:, mask])


def test_deterministic_under_a_generator():
    img = torch.rand(3, 64, 64)
    a, ba = cutpaste(img, torch.Generator().manual_seed(7))
    b, bb = cutpaste(img, torch.Generator().manual_seed(7))
    c, _ = cutpaste(img, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and ba == bb
    assert not torch.equal(a, c)
    assert torch.equal(pseudo_anomaly(img, "k", 0), pseudo_anomaly(img, "k", 0))
    assert not torch.equal(pseudo_anomaly(img, "k", 0), pseudo_anomaly(img, "k", 1))
    assert torch.equal(img, img.clone())  # input untouched
