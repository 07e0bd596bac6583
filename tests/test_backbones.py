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


def test_resnet18_without_weights_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("DPDL_RESNET18_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError, match="ResNet-18 ImageNet weights not found.*--weights"):
        build_backbone("resnet18")
    with pytest.raises(FileNotFoundError, match="not found"):
        build_backbone("resnet18", weights=tmp_path / "missing.pth")


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
