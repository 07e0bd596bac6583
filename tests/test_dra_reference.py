"""DRA's composite-head reference drawn as its public code draws it (``DRAConfig(reference="code")``): per test
image, from the training normals and their pseudo maps; deterministic and independent of the other images."""
from __future__ import annotations

import pytest
import torch

from dpdl.methods.dra import DRA, DRAConfig
from dpdl.train import RunConfig, run

N, V, HW = 7, 2, (2, 2)          # 7 training normals, 2 pseudo variants each


def _one_hot_pool():
    """Normal i: one-hot channel i; pseudo row r = v·N + j: one-hot channel N + r. A reference mean times
    n_reference then counts how often each pool row was drawn."""
    c = N + V * N
    eye = torch.eye(c).view(c, c, 1, 1).expand(c, c, *HW).clone()
    return eye[:N], eye[N:]


def _model(share=0.5, c=N + V * N):
    torch.manual_seed(0)
    m = DRA(c, HW, DRAConfig(reference="code", pseudo_share=share)).eval()
    return m


def _counts(share: float, images: int) -> torch.Tensor:
    """(images, N + V·N): how often each pool row entered each image's reference (one-hot pool)."""
    m = _model(share=share)
    m.calibrate(*_one_hot_pool())
    x = torch.randn(images, N + V * N, *HW, generator=torch.Generator().manual_seed(images))
    return (m.code_references(x)[:, :, 0, 0] * m.n_reference).round()


def test_each_draw_is_five_distinct_normals_or_pseudo_maps_as_the_code_draws():
    counts = _counts(0.0, 50)
    assert torch.all(counts[:, :N].sum(1) == 5) and torch.all(counts[:, :N].max(1).values == 1)   # 5 distinct
    assert torch.all(counts[:, N:] == 0)                                                         # no pseudo
    counts = _counts(1.0, 50)
    assert torch.all(counts[:, :N] == 0) and torch.all(counts[:, N:].sum(1) == 5)               # all pseudo


def test_about_half_the_references_are_pseudo_and_the_draws_vary_between_images():
    counts = _counts(0.5, 400)
    share = float(counts[:, N:].sum() / counts.sum())
    sd = (0.25 / counts.sum()) ** 0.5                       # binomial, 2000 draws
    assert abs(share - 0.5) < 4 * float(sd)
    assert torch.all(counts[:, N:].sum(0) > 0)              # every pseudo row (variant, normal) is reachable
    assert len({tuple(r.tolist()) for r in counts}) > 100   # a fresh draw per image


def test_score_is_deterministic_and_independent_of_the_batch():
    m = _model(share=0.5, c=6)
    g = torch.Generator().manual_seed(1)
    m.calibrate(torch.randn(N, 6, *HW, generator=g), torch.randn(V * N, 6, *HW, generator=g))
    x = torch.randn(9, 6, *HW, generator=g)
    with torch.no_grad():
        s = m.score(x)
        assert torch.equal(s, m.score(x))                                 # same inputs, same scores
        alone = torch.cat([m.score(x[i:i + 1]) for i in range(len(x))])   # each image in a batch of its own
        perm = torch.randperm(len(x), generator=g)
        assert torch.allclose(alone, s, rtol=0, atol=1e-6)
        assert torch.allclose(m.score(x[perm]), s[perm], rtol=0, atol=1e-6)
        assert torch.equal(m.code_references(x[perm]), m.code_references(x)[perm])
        # the composite head with per-row references equals the head run row by row with that row's reference
        refs = m.code_references(x)
        rows = torch.cat([m.composite(x[i:i + 1], refs[i]) for i in range(len(x))])
        assert torch.allclose(m.composite(x, refs), rows, rtol=0, atol=1e-6)


def test_bad_use_is_one_sentence():
    with pytest.raises(ValueError, match="reference must be 'fixed' or 'code'"):
        DRAConfig(reference="random")
    with pytest.raises(ValueError, match="pseudo_share"):
        DRAConfig(pseudo_share=1.5)
    m = _model(c=6)
    with pytest.raises(RuntimeError, match="calibrate"):
        m.score(torch.randn(2, 6, *HW))
    with pytest.raises(ValueError, match="pseudo maps"):
        m.calibrate(torch.randn(N, 6, *HW), None)
    from dpdl.config import get_profile
    from dpdl.modes import setup_images
    with pytest.raises(ValueError, match="feature mode only"):      # refused before any backbone is built
        setup_images(None, get_profile("paper"), "resnet18", None, None, False, {"reference": "code"})


def test_a_run_with_the_codes_references_is_deterministic_and_differs_from_fixed():
    kw = dict(profile="smoke", anomalies=5, seed=0, method="dra")
    code = run(RunConfig("synthetic", method_options={"reference": "code"}, **kw), progress=False)
    assert code["status"] == "ok" and code["method_options"]["reference"] == "code"
    again = run(RunConfig("synthetic", method_options={"reference": "code"}, **kw), progress=False)
    assert again["metrics"] == code["metrics"]
    fixed = run(RunConfig("synthetic", **kw), progress=False)
    assert fixed["method_options"]["reference"] == "fixed"
    assert fixed["losses"] == code["losses"]          # training is the same: only the test reference differs
