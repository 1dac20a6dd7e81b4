"""The fast CPU inference path of Mobile U-ViT-3D gives the module path's logits and leaves training alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch.utils.flop_counter import FlopCounterMode

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
from MobileUViTSegmentLib.model_loading import load_network
from MobileUViTSegmentLib.models import create_model

TOLERANCE = 1e-4  # max |logit difference| allowed between the two paths


def _both_paths(model: torch.nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        model.fast_inference = False
        module_path = model(inputs)
        model.fast_inference = True
        fast_path = model(inputs)
    return module_path, fast_path


@pytest.mark.parametrize("name", ["mobileuvit_s", "mobileuvit_l"])
def test_fast_inference_gives_the_module_paths_logits(name):
    torch.manual_seed(0)
    model = create_model(name, spatial_dims=3, out_channels=4).eval()
    inputs = torch.randn(2, 1, 32, 48, 32) * 2 + 1  # batch 2, anisotropic, off-centre intensities
    untouched = inputs.clone()
    module_path, fast_path = _both_paths(model, inputs)
    assert fast_path.shape == module_path.shape == (2, 4, 32, 48, 32)
    assert (fast_path - module_path).abs().max() < TOLERANCE
    assert torch.equal(inputs, untouched)  # the in-place kernels never write into the caller's tensor


def test_the_shipped_model_gives_the_same_logits_on_a_real_case_either_way(hippocampus_dataset: Path):
    model = load_network(Catalog().get(DEFAULT_MODEL_ID), torch.device("cpu"))
    image = sorted((hippocampus_dataset / "imagesTr").glob("*.nii.gz"))[0]
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(image))).astype(np.float32)
    array = (array - array.mean()) / array.std()
    window = np.zeros((48, 64, 48), np.float32)
    crop = array[:48, :64, :48]
    window[:crop.shape[0], :crop.shape[1], :crop.shape[2]] = crop
    module_path, fast_path = _both_paths(model, torch.from_numpy(window)[None, None])
    assert (fast_path - module_path).abs().max() < TOLERANCE
    assert torch.equal(fast_path.argmax(1), module_path.argmax(1))


def test_training_and_autograd_keep_the_module_path():
    torch.manual_seed(0)
    model = create_model("mobileuvit_s", spatial_dims=3, out_channels=2)
    inputs = torch.randn(1, 1, 32, 32, 32)
    model.eval()
    logits = model(inputs)  # eval but autograd on (e.g. saliency): must stay differentiable
    assert logits.grad_fn is not None
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.fast_inference = False
    with torch.no_grad():
        assert torch.equal(model(inputs), logits.detach())


def test_a_flop_count_of_the_fast_path_sees_its_convolutions():
    model = create_model("mobileuvit_s", spatial_dims=3, out_channels=2).eval()
    inputs = torch.randn(1, 1, 32, 32, 32)
    counts = {}
    for fast in (False, True):
        model.fast_inference = fast
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(inputs)
        counts[fast] = counter.get_total_flops()
    # The fast path recomputes the first ConvUtr MLP layer instead of storing it, so it counts a little more.
    assert counts[False] <= counts[True] < 1.1 * counts[False]


def test_2d_inference_keeps_working_with_batch_norm():
    torch.manual_seed(0)
    model = create_model("mobileuvit_s", spatial_dims=2).eval()
    with torch.inference_mode():
        logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 1, 64, 64) and torch.isfinite(logits).all()
