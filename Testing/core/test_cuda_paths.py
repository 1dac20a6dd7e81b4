"""The networks on a CUDA GPU compute what they compute on the CPU; mamba-ssm's kernel, when present, likewise.

Skipped without CUDA (CI has none); run on a GPU machine with ``python -m pytest Testing/core/test_cuda_paths.py``.
Only torch (and einops) are needed, so the file also runs where MONAI and SimpleITK are not installed.
"""

from __future__ import annotations

import pytest
import torch

from MobileUViTSegmentLib.models import create_model
from MobileUViTSegmentLib.models import selective_scan as scan_module
from MobileUViTSegmentLib.models.mambamim import MambaMIM, MambaMIMConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")



@pytest.fixture(autouse=True)
def full_precision_float32(monkeypatch):
    """CUDA convolutions default to TF32 (10-bit mantissa); comparisons with the CPU need real float32."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


needs_kernel = pytest.mark.skipif(not torch.cuda.is_available() or scan_module._cuda_kernel() is None,
                                  reason="needs mamba-ssm's compiled CUDA kernel")


def _scan_arguments(generator: torch.Generator, batch=2, channels=96, states=8, length=27):
    return [torch.randn(batch, channels, length, generator=generator),
            torch.randn(batch, channels, length, generator=generator),
            -torch.rand(channels, states, generator=generator) - 0.1,
            torch.randn(batch, states, length, generator=generator),
            torch.randn(batch, states, length, generator=generator),
            torch.randn(channels, generator=generator),
            torch.randn(batch, channels, length, generator=generator),
            torch.randn(channels, generator=generator)]


@needs_kernel
def test_kernel_and_plain_scan_agree_in_value_and_gradient():
    arguments = _scan_arguments(torch.Generator().manual_seed(3))
    results, gradients = [], []
    for use_kernel in (True, False):
        leaves = [tensor.cuda().requires_grad_() for tensor in arguments]
        y = scan_module.selective_scan(*leaves, delta_softplus=True, use_kernel=use_kernel)
        (y * torch.linspace(-1, 1, y.shape[-1], device="cuda")).sum().backward()
        results.append(y.detach().cpu())
        gradients.append([leaf.grad.cpu() for leaf in leaves])
    torch.testing.assert_close(results[0], results[1], rtol=1e-3, atol=1e-3)
    for kernel_grad, plain_grad in zip(*gradients):
        torch.testing.assert_close(kernel_grad, plain_grad, rtol=2e-3, atol=2e-3)


def test_plain_scan_on_the_gpu_matches_the_cpu():
    arguments = _scan_arguments(torch.Generator().manual_seed(4), length=216)
    expected = scan_module.selective_scan(*arguments, delta_softplus=True)
    result = scan_module.selective_scan(*[t.cuda() for t in arguments], delta_softplus=True, use_kernel=False)
    torch.testing.assert_close(result.cpu(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name, size", [("mobileuvit_s", (48, 64, 48)), ("mobileuvit_l", (48, 64, 48)),
                                        ("hymamba_small", (48, 64, 48))])
def test_3d_networks_give_the_cpu_result_on_the_gpu_and_train_under_amp(name, size):
    torch.manual_seed(0)
    kwargs = {"img_size": list(size)} if name.startswith("hymamba") else {"spatial_dims": 3}
    network = create_model(name, in_channels=1, out_channels=3, **kwargs).eval()
    image = torch.randn(1, 1, *size)
    with torch.no_grad():
        expected = network(image)
        network.cuda()
        result = network(image.cuda()).cpu()
    torch.testing.assert_close(result, expected, rtol=1e-3, atol=2e-3)
    network.train()
    optimizer = torch.optim.SGD(network.parameters(), lr=1e-3)
    labels = torch.randint(0, 3, (2, *size), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = network(torch.randn(2, 1, *size, device="cuda"))
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in network.parameters() if p.grad is not None)
    optimizer.step()


def test_srsnet_composite_runs_on_the_gpu_like_on_the_cpu():
    torch.manual_seed(0)
    network = create_model("srsnet", in_channels=3, out_channels=1).eval()
    image = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        expected = network(image)
        result = network.cuda()(image.cuda()).cpu()
    torch.testing.assert_close(result, expected, rtol=1e-3, atol=2e-3)


def test_mambamim_pretraining_step_on_the_gpu():
    torch.manual_seed(0)
    encoder = create_model("hymamba_small", img_size=[48, 64, 48]).config
    model = MambaMIM(encoder, MambaMIMConfig()).cuda()
    loss, reconstruction, mask = model(torch.randn(2, 1, 48, 64, 48, device="cuda"))
    loss.backward()
    assert torch.isfinite(loss) and reconstruction.shape == (2, 1, 48, 64, 48)
    assert model.A_interpolation.grad is not None
