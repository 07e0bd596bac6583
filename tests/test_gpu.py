"""Tests that need CUDA (marker ``gpu``; skipped, with the reason printed (``-rs``), on a machine without it).

Both modes on cuda, random draws from a CPU generator on CUDA tensors, and the same AUC from the same seed twice.
Also runnable without pytest (``python tests/test_gpu.py``), as ``benchmarks/gpu_check.sh`` does where pytest is
not installed.
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch

try:
    import pytest
except ImportError:  # plain-script mode (gpu_check.sh on a machine without pytest)
    pytest = None

CUDA = torch.cuda.is_available()
if pytest is not None:
    pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs CUDA: no GPU on this machine")]

# the paper profile made small: 64 px, a few steps, two scales for DevNet/DRA, CUDA, bf16 autocast, channels_last
SMALL = dict(image_size=64, epochs=2, iters_per_epoch=3, batch_size=12, num_workers=2, device="cuda", scales="32",
             method_protocol=False)


def _run(**kw):
    from dpdl.train import RunConfig, run
    with tempfile.TemporaryDirectory() as d:
        return run(RunConfig("synthetic", anomalies=5, out=d, **kw), progress=False)


def test_image_mode_on_cuda_every_method():
    for method in ("dpdl", "devnet", "dra", "knn"):
        rec = _run(profile="paper", backbone="mobilenet_v2", method=method, overrides=SMALL)
        assert rec["status"] == "ok", (method, rec["error"])
        assert rec["host"]["device"].startswith("cuda"), rec["host"]
        assert 0.0 <= rec["metrics"]["auc"] <= 1.0


def test_feature_mode_on_cuda():
    rec = _run(profile="smoke", overrides={"device": "cuda"})
    assert rec["status"] == "ok", rec["error"]
    assert rec["host"]["device"].startswith("cuda")


def test_same_seed_same_auc_twice_on_cuda():
    """Deterministic algorithms (CUBLAS_WORKSPACE_CONFIG set by dpdl.train): same seed -> same AUC and losses."""
    import os

    import dpdl.train  # noqa: F401  (sets CUBLAS_WORKSPACE_CONFIG)
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") in (":4096:8", ":16:8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = _run(profile="paper", backbone="mobilenet_v2", overrides=SMALL)
        b = _run(profile="paper", backbone="mobilenet_v2", overrides=SMALL)
    nondet = sorted({str(w.message)[:160] for w in caught if "deterministic" in str(w.message)})
    for msg in nondet:  # printed for the person who runs the check (with -s / in the script's output)
        print("non-deterministic op:", msg)
    assert a["status"] == b["status"] == "ok"
    assert a["metrics"]["auc"] == b["metrics"]["auc"]
    assert a["losses"] == b["losses"]


def test_cpu_generator_drives_cuda_draws():
    """Prototype init (Eq. 15) and the plan sample (Eq. 13) on CUDA tensors with a CPU generator: no device error,
    and the same draws as on the CPU."""
    from dpdl.methods.dpdl.bridge import sample_plan
    from dpdl.methods.dpdl.prototypes import vq_codebook
    torch.manual_seed(0)
    x = 10 * torch.randn(8, 64)[torch.arange(200) % 8] + 0.1 * torch.randn(200, 64)   # 8 clear clusters
    cpu = vq_codebook(x, 8, generator=torch.Generator().manual_seed(1))
    gpu = vq_codebook(x.cuda(), 8, generator=torch.Generator().manual_seed(1))
    assert gpu.centers.is_cuda
    assert torch.equal(cpu.assign, gpu.assign.cpu())
    assert torch.allclose(cpu.centers, gpu.centers.cpu(), atol=1e-4)
    la, mu, sig = torch.log_softmax(torch.zeros(8), 0), cpu.centers, torch.ones(8, 64)
    y_cpu, c_cpu = sample_plan(x[:16], la, mu, sig, 0.1, generator=torch.Generator().manual_seed(2),
                               return_component=True)
    y_gpu, c_gpu = sample_plan(x[:16].cuda(), la.cuda(), mu.cuda(), sig.cuda(), 0.1,
                               generator=torch.Generator().manual_seed(2), return_component=True)
    assert torch.equal(c_cpu, c_gpu.cpu())
    assert torch.allclose(y_cpu, y_gpu.cpu(), atol=1e-4)


def test_bf16_autocast_covers_the_backbone_only():
    from dpdl.backbones import build_backbone
    from dpdl.methods import build_method
    from dpdl.net import Adapter, Net
    bb = build_backbone("mobilenet_v2", "last", image_size=64)
    net = Net(Adapter(320, 0), build_method("devnet", 320, (2, 2)), bb, autocast="bf16", channels_last=True).cuda()
    x = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, device="cuda")
    maps = net.embed(x)
    assert maps.dtype == torch.float32 and maps.is_cuda
    ref = Net(Adapter(320, 0), net.method, bb, autocast="none").cuda().embed(x)
    assert torch.allclose(maps, ref, rtol=0.1, atol=0.1)      # bf16 close to float32
    assert net.score(x).dtype == torch.float32


if __name__ == "__main__":
    import sys
    import traceback
    if not CUDA:
        print("SKIPPED: needs CUDA: no GPU on this machine")
        sys.exit(0)
    failed = 0
    for name, fn in [(k, v) for k, v in sorted(globals().items()) if k.startswith("test_") and callable(v)]:
        try:
            fn()
            print(f"PASSED {Path(__file__).name}::{name}")
        except Exception:
            failed += 1
            print(f"FAILED {Path(__file__).name}::{name}\n{traceback.format_exc()}")
    sys.exit(1 if failed else 0)
