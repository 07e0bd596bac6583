"""Backbones load offline, give maps of the documented shape, and fail clearly without weights."""
from __future__ import annotations

import pytest
import torch

from dpdl.backbones import build_backbone, feature_shape, parse_layers, weights_path


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
@pytest.mark.parametrize("layers", ["last", "mid+last"])
def test_offline_backbones_shapes(name, layers):
    net = build_backbone(name, layers, image_size=64).freeze()
    assert net.weights_file and weights_path(name).is_file()
    with torch.no_grad():
        y = net(torch.rand(2, 3, 64, 64))
    assert tuple(y.shape) == (2,) + feature_shape(name, layers, 64)
    assert y.shape[1] == net.out_channels
    assert torch.isfinite(y).all()
    assert not any(p.requires_grad for p in net.parameters())


def test_pretrained_weights_are_loaded_not_random():
    a = build_backbone("mobilenet_v2", "last").stages[0][0][0].weight
    b = build_backbone("mobilenet_v2", "last").stages[0][0][0].weight
    assert torch.equal(a, b)  # loaded from the file: identical; random inits would differ


def test_resnet18_offline_is_one_sentence_naming_the_file_and_folder(monkeypatch, tmp_path):
    import urllib.error

    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.delenv("DPDL_RESNET18_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    with pytest.raises(FileNotFoundError, match=f"could not be downloaded.*resnet18-f37072fd.pth.*{hub}/") as e:
        build_backbone("resnet18")
    assert "\n" not in str(e.value) and str(e.value).count(". ") == 0
    with pytest.raises(FileNotFoundError, match="missing.pth not found"):
        build_backbone("resnet18", weights=tmp_path / "missing.pth")


def test_resnet18_through_torchvisions_weights_api_from_the_hub_cache(monkeypatch, tmp_path):
    """A file in $TORCH_HOME/hub/checkpoints is what ResNet18_Weights.IMAGENET1K_V1 loads (no download)."""
    import torchvision
    from torchvision.models import ResNet18_Weights

    def no_download(*a, **k):
        raise AssertionError("nothing should be downloaded")
    monkeypatch.delenv("DPDL_RESNET18_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    torch.manual_seed(3)
    ref = torchvision.models.resnet18(weights=None)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(ref.state_dict(), hub / "resnet18-f37072fd.pth")
    assert ResNet18_Weights.IMAGENET1K_V1.url.endswith("/resnet18-f37072fd.pth")   # the name torchvision caches
    net = build_backbone("resnet18", "last")
    assert torch.equal(net.stages[0][0].weight, ref.conv1.weight)
    assert torch.equal(net.stages[2][1].conv2.weight, ref.layer4[1].conv2.weight)
    assert net.describe()["weights_file"] == str(hub / "resnet18-f37072fd.pth")


def test_resnet18_loads_a_weight_file(monkeypatch, tmp_path):
    import torchvision
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    net = build_backbone("resnet18", "mid+last", weights=path)
    assert torch.equal(net.stages[0][0].weight, ref.conv1.weight)
    monkeypatch.setenv("DPDL_RESNET18_WEIGHTS", str(path))
    net2 = build_backbone("resnet18", "last").freeze()
    with torch.no_grad():
        y = net2(torch.rand(1, 3, 64, 64))
    assert tuple(y.shape) == (1, 512, 2, 2)


def test_bad_names_are_errors():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg16")
    with pytest.raises(ValueError, match="bad feature layers"):
        parse_layers("mid+top")
