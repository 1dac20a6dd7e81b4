"""Inference-only CPU kernels for the 3D networks: the same maths as the modules, with fewer passes over memory.

Why these exist: on a CPU a 3D forward pass at 96^3 is bound by memory traffic, not arithmetic. The profile of the plain
module path showed three avoidable costs, each fixed here without touching parameters or state-dict keys:

* **layout**: oneDNN runs 3D convolutions two to four times faster on channels-last tensors (no re-ordering to its
  blocked format and back), and a channels-last feature map *is* the (voxels, channels) token matrix, so flattening to
  tokens costs nothing;
* **the slow fallback**: PyTorch's heuristic sends small dense convolutions (batch 1, few voxels) to ``slow_conv3d``,
  about ten times slower than oneDNN on the same call, so :func:`conv` calls oneDNN directly;
* **fresh allocations**: every out-of-place op on a full-resolution map allocates tens of megabytes that the kernel
  must fault in page by page (a fresh 56 MB map costs about as much as a 3x3x3 depthwise convolution over it), so
  norms, activations and gates work in place, each pooled skip is computed once, and the ConvUtr channel MLP, whose
  hidden map is four times wider, runs in cache-sized chunks and never stores it.

Everything here is called only under ``torch.no_grad()``/``torch.inference_mode()`` on CPU float32 tensors (see
:func:`applies`); training keeps the module path, so gradients are untouched. The norms are computed here rather than
by the modules, so they assume what ``layers.norm`` builds in 3D: ``InstanceNorm3d`` without affine parameters or
running statistics, eps 1e-5 (``Testing/core/test_mobile_u_vit_speed_equivalence.py`` compares both paths).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import flop_counter

CHANNELS_LAST = torch.channels_last_3d
_CHUNK_ROWS = 8192  # voxels per chunk: the hidden MLP chunk (8192 x 64 floats = 2 MiB) stays in cache
_EPS = 1e-5  # nn.InstanceNorm3d's default, which every norm of the 3D networks uses


def _mkldnn_convolution_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


# torch's FlopCounterMode knows aten.convolution but not the oneDNN op :func:`conv` calls directly; without this formula
# a FLOP count of the fast path would silently miss every convolution.
if torch.ops.aten.mkldnn_convolution not in flop_counter.flop_registry:
    flop_counter.register_flop_formula(torch.ops.aten.mkldnn_convolution)(_mkldnn_convolution_flops)


def applies(x: torch.Tensor) -> bool:
    """Whether the fast path may run: a 5D CPU float32 input, no autograd, oneDNN present."""
    return (x.dim() == 5 and x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and torch.backends.mkldnn.is_available())


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` with channels-last strides. A one-channel map counts as contiguous in both formats, but oneDNN reads the
    strides, so such a map is re-strided too (otherwise the convolution's output comes back channels-first)."""
    if x.stride(1) == 1 and x.is_contiguous(memory_format=CHANNELS_LAST):
        return x
    return torch.empty_like(x, memory_format=CHANNELS_LAST).copy_(x)


def rows(x: torch.Tensor) -> torch.Tensor:
    """(B, C, *spatial) channels-last map -> (B, voxels, C) view of the same memory."""
    return x.permute(0, 2, 3, 4, 1).reshape(x.shape[0], -1, x.shape[1])


def empty_channels_last(batch: int, channels: int, spatial: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(batch, *spatial, channels, dtype=dtype).permute(0, 4, 1, 2, 3)


def conv(x: torch.Tensor, module: nn.Conv3d) -> torch.Tensor:
    """The module's convolution through oneDNN, channels-last in and out."""
    return torch.ops.aten.mkldnn_convolution(channels_last(x), module.weight, module.bias, module.padding,
                                             module.stride, module.dilation, module.groups)


def gelu_(x: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.gelu_(x)


def _centred_square_sum(x_rows: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """sum over voxels of (x - mean)^2 for one sample's (voxels, C) rows, in chunks that stay in cache."""
    buffer = torch.empty(min(_CHUNK_ROWS, x_rows.shape[0]), x_rows.shape[1], dtype=x_rows.dtype)
    total = torch.zeros(x_rows.shape[1], dtype=torch.float64)
    for start in range(0, x_rows.shape[0], _CHUNK_ROWS):
        chunk = x_rows[start:start + _CHUNK_ROWS]
        centred = buffer[:chunk.shape[0]]
        torch.sub(chunk, mean, out=centred)
        total += centred.square_().sum(0)
    return total


def instance_norm_(x: torch.Tensor) -> torch.Tensor:
    """In-place ``InstanceNorm3d(affine=False)`` of a channels-last map (two-pass mean and biased variance)."""
    x_rows = rows(x)
    count = x_rows.shape[1]
    mean = x_rows.sum(1) / count  # (B, C)
    variance = torch.stack([_centred_square_sum(x_rows[b], mean[b]) for b in range(x.shape[0])]) / count
    rstd = (variance + _EPS).rsqrt()
    shape = (x.shape[0], x.shape[1]) + (1,) * (x.dim() - 2)
    shift = (-mean.double() * rstd).to(x.dtype).view(shape)
    # (x - mean) * rstd as one pass x * rstd + shift, written over x.
    return torch.addcmul(shift, x, rstd.to(x.dtype).view(shape), out=x)


def gate_(branch: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x + x * (sigmoid(branch) - 0.5)``, written into ``branch``."""
    return branch.sigmoid_().sub_(0.5).mul_(x).add_(x)


def _hidden(x_chunk: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """GELU(x_chunk @ weight + bias) written into ``buffer``: a reused buffer, because a fresh multi-megabyte
    result per chunk would be page-faulted in again each time (that alone cost more than the GEMM)."""
    return gelu_(torch.addmm(bias, x_chunk, weight, out=buffer[:x_chunk.shape[0]]))


def pointwise_mlp(x: torch.Tensor, first: nn.Conv3d, second: nn.Conv3d) -> torch.Tensor:
    """``GELU(second(InstanceNorm(GELU(first(x)))))`` for 1x1x1 convolutions, never storing the wide hidden map.

    The norm needs statistics over the whole volume before ``second`` can run, so the hidden activations are computed
    twice in cache-sized chunks: once for their per-channel mean and variance (chunk moments combined exactly), once
    to apply ``second`` with the norm folded into its weights and bias (as a BatchNorm is folded into a conv).
    """
    batch, channels = x.shape[:2]
    hidden = first.out_channels
    w1 = first.weight.reshape(hidden, channels).t()
    w2 = second.weight.reshape(second.out_channels, hidden).double()
    x_rows = rows(channels_last(x))
    count = x_rows.shape[1]
    out = empty_channels_last(batch, second.out_channels, tuple(x.shape[2:]), x.dtype)
    out_rows = rows(out)
    buffer = torch.empty(min(_CHUNK_ROWS, count), hidden, dtype=x.dtype)
    for b in range(batch):
        sums, square_sums, sizes = [], [], []
        for start in range(0, count, _CHUNK_ROWS):
            h = _hidden(x_rows[b, start:start + _CHUNK_ROWS], w1, first.bias, buffer)
            chunk_sum = h.sum(0)
            sums.append(chunk_sum)
            sizes.append(h.shape[0])
            square_sums.append(h.sub_(chunk_sum / h.shape[0]).square_().sum(0))
        sizes_t = torch.tensor(sizes, dtype=torch.float64)[:, None]
        sums_t = torch.stack(sums).double()
        mean = sums_t.sum(0) / count
        variance = (torch.stack(square_sums).double().sum(0)
                    + (sizes_t * (sums_t / sizes_t - mean).square()).sum(0)) / count
        rstd = (variance + _EPS).rsqrt()
        w2_folded = (w2 * rstd).t().to(x.dtype)
        b2_folded = (second.bias.double() - w2 @ (mean * rstd)).to(x.dtype)
        for start in range(0, count, _CHUNK_ROWS):
            h = _hidden(x_rows[b, start:start + _CHUNK_ROWS], w1, first.bias, buffer)
            gelu_(torch.addmm(b2_folded, h, w2_folded, out=out_rows[b, start:start + _CHUNK_ROWS]))
    return out


def max_pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool3d(x, 2, 2)
