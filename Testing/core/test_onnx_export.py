"""ONNX export and the ONNX Runtime CPU backend: the exported networks pass ``onnx.checker`` and give PyTorch's logits;
a card asking for ONNX Runtime segments as PyTorch does, exports once into the cache, and falls back to PyTorch (with
the reason logged) where ONNX Runtime cannot run."""

from __future__ import annotations

import copy
import json
import logging

import pytest
import SimpleITK as sitk
import torch

from MobileUViTSegmentLib.card import card_from_dict
from MobileUViTSegmentLib.cli.main import main
from MobileUViTSegmentLib.errors import ModelError
from MobileUViTSegmentLib.image_io import read_image
from MobileUViTSegmentLib.inference import onnx_backend
from MobileUViTSegmentLib.inference.engine import Segmenter
from MobileUViTSegmentLib.inference.onnx_backend import OnnxRuntimeNetwork, export_onnx
from MobileUViTSegmentLib.models import create_model
from MobileUViTSegmentLib.resources import CACHE_VARIABLE, models_dir, sample_data_dir

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

HIPPOCAMPUS_CARD = models_dir() / "hippocampus-mri.card.json"
SAMPLE = sample_data_dir() / "hippocampus_046.nii.gz"


def max_difference(network: torch.nn.Module, runtime: OnnxRuntimeNetwork, sample: torch.Tensor) -> float:
    with torch.inference_mode():
        expected = network(sample)
    return float((runtime(sample) - expected).abs().max())


@pytest.mark.parametrize("architecture, spatial_dims, window", [
    ("mobileuvit_s", 2, (64, 64)),
    ("mobileuvit_s", 3, (32, 32, 32)),
])
def test_mobile_u_vit_exports_to_onnx_that_matches_pytorch(tmp_path, architecture, spatial_dims, window):
    torch.manual_seed(0)
    network = create_model(architecture, spatial_dims=spatial_dims).eval()
    channels = network.config.in_channels
    path = tmp_path / "network.onnx"
    dynamic = export_onnx(network, channels, window, path)
    onnx.checker.check_model(str(path))
    runtime = OnnxRuntimeNetwork(path, threads=1)
    assert runtime.window == window
    assert dynamic == (runtime.fixed_batch is None)
    if spatial_dims == 2:
        assert dynamic  # the 2D network traces with a free batch axis
    for batch in (1, 3):  # 3 also exercises the fixed-batch chunking and padding
        assert max_difference(network, runtime, torch.randn(batch, channels, *window)) < 1e-4
    assert network.fast_inference  # the export traced the module path without leaving it switched off


def test_export_command_writes_a_checked_onnx_file_for_the_shipped_model(tmp_path, capsys):
    target = tmp_path / "hippocampus.onnx"
    assert main(["export", "hippocampus-mri", "--onnx", str(target)]) == 0
    onnx.checker.check_model(str(target))
    model = onnx.load(str(target))
    dims = [dim.dim_value for dim in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    assert dims == [1, 48, 64, 48]  # channels and the card's window
    assert "max abs logit difference" in capsys.readouterr().out


def test_export_command_refuses_a_bad_target_in_one_line(tmp_path, capsys):
    assert main(["export", "hippocampus-mri", "--onnx", str(tmp_path / "missing" / "x.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


def hippocampus_card(backend: str | None):
    data = copy.deepcopy(json.loads(HIPPOCAMPUS_CARD.read_text(encoding="utf-8")))
    if backend is not None:
        data.setdefault("inference", {})["backend"] = backend
    return card_from_dict(data, models_dir(), "test card")


def test_card_backend_defaults_to_pytorch_and_rejects_unknown_names():
    assert hippocampus_card(None).inference.backend == "pytorch"
    assert hippocampus_card("onnxruntime").inference.backend == "onnxruntime"
    with pytest.raises(ModelError, match="backend"):
        hippocampus_card("tensorrt")


def test_onnxruntime_backend_segments_like_pytorch_and_exports_once(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path / "cache"))
    image = read_image(SAMPLE)
    reference = Segmenter(hippocampus_card(None), torch.device("cpu")).segment(image)
    segmenter = Segmenter(hippocampus_card("onnxruntime"), torch.device("cpu"))
    assert isinstance(segmenter.network, OnnxRuntimeNetwork)
    cached = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(cached) == 1 and not str(cached[0]).startswith(str(models_dir()))
    result = segmenter.segment(image)
    ours, theirs = sitk.GetArrayFromImage(result.labels), sitk.GetArrayFromImage(reference.labels)
    assert (ours != theirs).mean() < 1e-4  # equal up to float ties at class boundaries
    stamp = cached[0].stat().st_mtime_ns
    assert isinstance(Segmenter(hippocampus_card("onnxruntime"), torch.device("cpu")).network, OnnxRuntimeNetwork)
    assert cached[0].stat().st_mtime_ns == stamp  # the second engine reuses the cached export


def test_onnxruntime_backend_falls_back_to_pytorch_with_a_logged_reason(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.setattr(onnx_backend, "missing_onnx_packages", lambda: ["onnxruntime"])
    with caplog.at_level(logging.WARNING, logger=onnx_backend.__name__):
        segmenter = Segmenter(hippocampus_card("onnxruntime"), torch.device("cpu"))
    assert isinstance(segmenter.network, torch.nn.Module)
    assert "onnxruntime not installed" in caplog.text
    monkeypatch.setattr(onnx_backend, "missing_onnx_packages", lambda: [])
    with caplog.at_level(logging.WARNING, logger=onnx_backend.__name__):
        chosen = onnx_backend.with_requested_backend(hippocampus_card("onnxruntime"), segmenter.network,
                                                     torch.device("cuda"))
    assert chosen is segmenter.network and "CPU only" in caplog.text
    assert not (tmp_path / "cache").exists()  # nothing exported when ONNX Runtime is not used
