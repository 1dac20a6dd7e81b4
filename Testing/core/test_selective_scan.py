"""The chunked selective scan computes Mamba's S6 recurrence exactly and stays finite where closed forms overflow."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from MobileUViTSegmentLib.models import selective_scan as scan_module
from MobileUViTSegmentLib.models.selective_scan import selective_scan


def sequential_scan(u, delta, a, b, c, d=None, z=None, delta_bias=None, delta_softplus=False):
    """Token-by-token reference of the recurrence (slow, for testing only)."""
    u, delta = u.double(), delta.double()
    if delta_bias is not None:
        delta = delta + delta_bias.double()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    a, b, c = a.double(), b.double(), c.double()
    state = u.new_zeros(u.shape[0], u.shape[1], a.shape[1])
    outputs = []
    for t in range(u.shape[2]):
        state = torch.exp(delta[:, :, t, None] * a) * state + delta[:, :, t, None] * b[:, None, :, t] * u[:, :, t, None]
        outputs.append((state * c[:, None, :, t]).sum(-1))
    y = torch.stack(outputs, dim=-1)
    if d is not None:
        y = y + u * d.double()[None, :, None]
    if z is not None:
        y = y * F.silu(z.double())
    return y.float(), state.float()


@pytest.mark.parametrize("batch, channels, length, states", [(1, 4, 1, 2), (2, 8, 5, 4), (2, 16, 33, 8),
                                                             (1, 24, 100, 16)])
@pytest.mark.parametrize("with_extras", [False, True])
def test_chunked_scan_equals_the_sequential_recurrence(batch, channels, length, states, with_extras):
    generator = torch.Generator().manual_seed(length + states)
    u = torch.randn(batch, channels, length, generator=generator)
    delta = torch.randn(batch, channels, length, generator=generator)
    a = -torch.rand(channels, states, generator=generator) * 4
    b = torch.randn(batch, states, length, generator=generator)
    c = torch.randn(batch, states, length, generator=generator)
    extras = {}
    if with_extras:
        extras = dict(D=torch.randn(channels, generator=generator), z=torch.randn(batch, channels, length,
                                                                                 generator=generator),
                      delta_bias=torch.randn(channels, generator=generator), delta_softplus=True)
    else:
        delta = delta.abs()
    y, last = selective_scan(u, delta, a, b, c, return_last_state=True, **extras)
    expected, expected_last = sequential_scan(u, delta, a, b, c, extras.get("D"), extras.get("z"),
                                              extras.get("delta_bias"), extras.get("delta_softplus", False))
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(last, expected_last, rtol=1e-4, atol=1e-5)


def test_chunk_length_does_not_change_the_result(monkeypatch):
    generator = torch.Generator().manual_seed(3)
    args = (torch.randn(2, 8, 70, generator=generator), torch.rand(2, 8, 70, generator=generator),
            -torch.rand(8, 4, generator=generator), torch.randn(2, 4, 70, generator=generator),
            torch.randn(2, 4, 70, generator=generator))
    reference = selective_scan(*args)
    for chunk in (1, 7, 16, 128):
        monkeypatch.setattr(scan_module, "CHUNK", chunk)
        torch.testing.assert_close(selective_scan(*args), reference, rtol=1e-5, atol=1e-6)


def test_time_invariant_and_grouped_b_c_match_the_per_step_form():
    generator = torch.Generator().manual_seed(5)
    u, delta = torch.randn(2, 6, 20, generator=generator), torch.rand(2, 6, 20, generator=generator)
    a = -torch.rand(6, 3, generator=generator)
    fixed_b, fixed_c = torch.randn(6, 3, generator=generator), torch.randn(6, 3, generator=generator)
    y_fixed = selective_scan(u, delta, a, fixed_b, fixed_c)
    per_channel = [selective_scan(u[:, i:i + 1], delta[:, i:i + 1], a[i:i + 1],
                                  fixed_b[i][None, :, None].expand(2, 3, 20),
                                  fixed_c[i][None, :, None].expand(2, 3, 20))
                   for i in range(6)]
    torch.testing.assert_close(y_fixed, torch.cat(per_channel, dim=1), rtol=1e-4, atol=1e-5)
    grouped_b, grouped_c = torch.randn(2, 2, 3, 20, generator=generator), torch.randn(2, 2, 3, 20, generator=generator)
    y_grouped = selective_scan(u, delta, a, grouped_b, grouped_c)
    first = selective_scan(u[:, :3], delta[:, :3], a[:3], grouped_b[:, 0], grouped_c[:, 0])
    torch.testing.assert_close(y_grouped[:, :3], first, rtol=1e-4, atol=1e-5)


def test_long_sequence_with_large_timesteps_stays_finite_and_has_gradients():
    generator = torch.Generator().manual_seed(7)
    length = 4096
    u = torch.randn(1, 8, length, generator=generator, requires_grad=True)
    delta = (torch.rand(1, 8, length, generator=generator) * 50 + 50).requires_grad_()
    a = -torch.arange(1, 17, dtype=torch.float32).repeat(8, 1)
    b, c = torch.randn(1, 16, length, generator=generator), torch.randn(1, 16, length, generator=generator)
    y = selective_scan(u, delta, a, b, c, delta_softplus=True)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    assert torch.isfinite(u.grad).all() and torch.isfinite(delta.grad).all()
    # with decays this strong every state is just the current input: y_t = delta_t u_t <B_t, C_t>
    expected = F.softplus(delta.detach()) * u.detach() * (b * c).sum(1, keepdim=True)
    torch.testing.assert_close(y.detach()[..., 1:], expected[..., 1:], rtol=1e-3, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available() or scan_module._cuda_kernel() is None,
                    reason="needs CUDA and mamba-ssm's compiled kernel")
def test_cuda_kernel_path_matches_the_plain_pytorch_scan():
    generator = torch.Generator().manual_seed(11)
    args = [torch.randn(2, 64, 216, generator=generator), torch.randn(2, 64, 216, generator=generator),
            -torch.rand(64, 16, generator=generator), torch.randn(2, 16, 216, generator=generator),
            torch.randn(2, 16, 216, generator=generator), torch.randn(64, generator=generator),
            torch.randn(2, 64, 216, generator=generator), torch.randn(64, generator=generator)]
    expected = selective_scan(*args, delta_softplus=True)
    result = selective_scan(*[tensor.cuda() for tensor in args], delta_softplus=True)
    torch.testing.assert_close(result.cpu(), expected, rtol=1e-3, atol=1e-3)
