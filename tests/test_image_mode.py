"""Image mode (the ``paper`` profile's path) end to end on the CPU: synthetic data, 64 px, backbone fine-tuned,
a few steps, every method; the two scales of DevNet/DRA; preloaded images equal to the files."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dpdl.config import get_profile
from dpdl.train import RunConfig, run

# the paper profile made small: 64 px, 2 steps, batch 12, two scales (64 and 32), no workers
SMALL = dict(image_size=64, epochs=1, iters_per_epoch=2, batch_size=12, num_workers=0, device="cpu", scales="32",
             threads=1, method_protocol=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for m in ("dpdl", "devnet", "dra", "knn"):
        d = tmp_path_factory.mktemp(m)
        out[m] = (run(RunConfig("synthetic", profile="paper", backbone="mobilenet_v2", method=m, anomalies=5,
                                overrides=SMALL, out=str(d)), progress=False), d)
    return out


@pytest.mark.parametrize("method", ["dpdl", "devnet", "dra", "knn"])
def test_every_method_runs_in_image_mode(runs, method):
    rec, d = runs[method]
    assert rec["status"] == "ok", rec["error"]
    assert 0.0 <= rec["metrics"]["auc"] <= 1.0 and math.isfinite(rec["metrics"]["ap"])
    assert rec["profile_settings"]["finetune_backbone"] and rec["profile_settings"]["rotate"] == 180
    assert any("mobilenet_v2" in x for x in rec["deviations"])        # the run's backbone, not the profile's
    if method != "knn":
        assert rec["timings"]["steps"] == 2 and set(rec["losses"]) >= {"total"}
    from dpdl.net import Net
    net, extractor, blob = Net.load(d / "model.pt")
    assert extractor is None and net.backbone is not None              # the fine-tuned backbone is in the model
    assert net.scales == ((32,) if method in ("devnet", "dra") else ())


def test_the_backbone_is_fine_tuned(runs):
    from dpdl.backbones import build_backbone
    from dpdl.net import Net
    net, _, _ = Net.load(runs["dpdl"][1] / "model.pt")
    ref = build_backbone("mobilenet_v2", "last", image_size=64)
    changed = [k for k, v in ref.state_dict().items()
               if v.dtype.is_floating_point and not torch.equal(v, net.backbone.state_dict()[k])]
    assert len(changed) > 10


def test_a_saved_model_scores_as_the_run_did(runs):
    import json
    from dpdl.data import make_split
    from dpdl.batches import preload_images
    from dpdl.net import Net
    rec, d = runs["dra"]
    net, _, _ = Net.load(d / "model.pt")
    split = make_split("synthetic", anomalies=5, seed=0)
    x = preload_images(split.test_normal + split.test_anomaly, 64)
    want = json.loads((d / "scores.json").read_text())["scores"]
    assert torch.allclose(net.score(x), torch.tensor(want), atol=1e-4)


def _net(method, scales):
    from dpdl.backbones import build_backbone
    from dpdl.methods import build_method
    from dpdl.net import Adapter, Net
    torch.manual_seed(0)
    bb = build_backbone("mobilenet_v2", "last", image_size=64)
    m = build_method(method, 320, (2, 2))
    return Net(Adapter(320, 0), m, bb, scales=scales).eval()


def test_devnet_two_scales_average_the_head_over_nearest_resized_inputs():
    net = _net("devnet", (32,))
    x = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    img = x.float() / 255
    with torch.no_grad():
        m64, m32 = net.backbone(img), net.backbone(img[:, :, ::2, ::2])   # nearest 64 -> 32 takes every other pixel
        want = (net.method.head(m64) + net.method.head(m32)) / 2
        assert torch.allclose(net.score(x), want, atol=1e-5)
        from dpdl.methods.shared.heads import deviation_loss
        y = torch.tensor([0, 0, 1, 1])                      # the loss is taken on the averaged scores
        assert float(net.losses(x, y)["head"]) == pytest.approx(float(deviation_loss(want, y.float())), rel=1e-5)
    one = _net("devnet", ())
    with torch.no_grad():
        assert torch.allclose(one.score(x), net.method.head(m64), atol=1e-5)


def test_dra_two_scales_use_each_scales_reference_and_survive_save_load(tmp_path):
    from dpdl.net import Net
    net = _net("dra", (32,))
    normal = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        maps = net.embed(normal)
        assert [tuple(m.shape) for m in maps] == [(5, 320, 2, 2), (5, 320, 1, 1)]
        net.method.calibrate(maps)
        x = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
        xs = net.embed(x)
        d = net.method
        per = [{"holistic": d.holistic(m), "seen": d.seen(m), "pseudo": d.pseudo(m), "composite": d.composite(m, r)}
               for m, r in zip(xs, (maps[0].mean(0), maps[1].mean(0)))]
        want = net.method.combine({k: (per[0][k] + per[1][k]) / 2 for k in per[0]})
        assert torch.allclose(net.score(x), want, atol=1e-5)
    net.save(tmp_path / "model.pt", {"method": "dra", "method_options": {}, "feature_shape": [320, 2, 2],
                                     "adapter_dim": 0, "backbone": net.backbone.describe(),
                                     "profile": get_profile("paper", image_size=64).to_dict()})
    again, _, _ = Net.load(tmp_path / "model.pt")
    assert again.scales == (32,)
    assert torch.allclose(again.score(x), want, atol=1e-5)


def test_preloaded_items_equal_items_read_from_the_files():
    from dpdl.batches import ImageItems, preload_images
    from dpdl.data import make_split
    split = make_split("synthetic", anomalies=5, seed=0)
    normal, seen = split.train_normal[:6], split.train_anomaly[:3]
    files = ImageItems(normal, seen, 64, rotate=180)
    mem = ImageItems(normal, seen, 64, rotate=180, normal_u8=preload_images(normal, 64),
                     seen_u8=preload_images(seen, 64))
    for spec in [("normal", 2, 11), ("reference", 0, 5), ("seen", 1, 7), ("pseudo", 4, 123456789)]:
        a, b = files[spec], mem[spec]
        assert a[0].dtype == torch.uint8 and torch.equal(a[0], b[0]) and a[1] == b[1]
    plain = ImageItems(normal, seen, 64)
    assert not torch.equal(files[("normal", 2, 11)][0], plain[("normal", 2, 11)][0])   # rotated


def test_paper_profile_fields_and_deviations():
    p = get_profile("paper")
    assert (p.rotate, p.scale_sides(), p.autocast, p.channels_last) == (180, (448, 224), "bf16", True)
    assert (p.lr_step, p.grad_clip) == (0, 0.0)
    dev = " | ".join(p.deviations())
    for word in ("L_binary", "StepLR", "CutPaste", "pseudo anomalies take", "one input scale", "bf16",
                 "own code's protocol"):
        assert word in dev, word
    assert "backbone efficientnet_lite0" in " ".join(p.deviations("efficientnet_lite0"))
    with pytest.raises(ValueError, match="scales"):
        get_profile("paper", scales="224+x").scale_sides()
    with pytest.raises(ValueError, match="scales applies to image mode"):
        run(RunConfig("synthetic", profile="smoke", overrides={"scales": "32"}), progress=False)
    with pytest.raises(ValueError, match="autocast"):
        run(RunConfig("synthetic", profile="smoke", overrides={"autocast": "fp8"}), progress=False)


def test_nearest_resize_is_every_other_pixel():
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(F.interpolate(x, size=(4, 4)), x[:, :, ::2, ::2])


def test_cublas_workspace_config_is_set_by_the_code():
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    out = subprocess.run([sys.executable, "-c", "import os, dpdl.train; print(os.environ['CUBLAS_WORKSPACE_CONFIG'])"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == ":4096:8"


def test_gpu_check_dry_run_prints_every_part_and_writes_nothing(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    out, summary = tmp_path / "records", tmp_path / "gpu_check.json"
    p = subprocess.run(["bash", str(root / "benchmarks" / "gpu_check.sh"), "--dry-run", "--elpv", "yes", "--out",
                        str(out), "--summary", str(summary)], env={**os.environ, "PYTHON": sys.executable},
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    for part in ("tests", "bench", "brainmri_full", "brainmri_no_dpl_no_dfl", "elpv_full", "elpv_no_dpl_no_dfl"):
        assert f"would run {part} " in p.stdout, part
    assert "--no-dpl --no-dfl" in p.stdout and "--profile paper" in p.stdout and "--anomalies 10" in p.stdout
    assert not out.exists() and not summary.exists()
