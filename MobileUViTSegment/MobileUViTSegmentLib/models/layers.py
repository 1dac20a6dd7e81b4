"""Dimension-agnostic layer factories shared by every architecture.

The networks are written once and instantiated for 2D or 3D through ``spatial_dims``, as MONAI's networks are. These
helpers pick the matching PyTorch class so blocks never branch on dimensionality themselves.
"""

from __future__ import annotations

import torch
from torch import nn

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_TRANSPOSE = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_MAX_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVG_POOL = {2: nn.AvgPool2d, 3: nn.AvgPool3d}


def _check_dims(spatial_dims: int) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


def conv(spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, *, groups: int = 1,
         bias: bool = True) -> nn.Module:
    """A 'same'-padded convolution (odd kernels keep the spatial size)."""
    _check_dims(spatial_dims)
    return _CONV[spatial_dims](in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups,
                               bias=bias)


def conv_transpose(spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int, stride: int, *,
                   groups: int = 1) -> nn.Module:
    _check_dims(spatial_dims)
    return _CONV_TRANSPOSE[spatial_dims](in_channels, out_channels, kernel_size, stride=stride, groups=groups)


def norm(spatial_dims: int, channels: int) -> nn.Module:
    """BatchNorm in 2D, InstanceNorm without affine parameters in 3D.

    This mirrors the official Mobile U-ViT code: its 3D file swaps every BatchNorm2d for ``InstanceNorm3d`` with the
    default ``affine=False``, which is why the 3D state dict has no norm entries besides the LayerNorms.
    """
    _check_dims(spatial_dims)
    if spatial_dims == 2:
        return nn.BatchNorm2d(channels)
    return nn.InstanceNorm3d(channels)


def max_pool(spatial_dims: int, kernel_size: int = 2) -> nn.Module:
    _check_dims(spatial_dims)
    return _MAX_POOL[spatial_dims](kernel_size, stride=kernel_size)


def strided_pick(spatial_dims: int, stride: int) -> nn.Module:
    """Keep every ``stride``-th position (an average pool of kernel 1, as the official sparse-attention sampler)."""
    _check_dims(spatial_dims)
    return _AVG_POOL[spatial_dims](kernel_size=1, stride=stride)


def upsample(spatial_dims: int, scale_factor: int = 2) -> nn.Module:
    """Parameter-free x2 up-sampling: bilinear with aligned corners in 2D, trilinear without in 3D (as upstream)."""
    _check_dims(spatial_dims)
    if spatial_dims == 2:
        return nn.Upsample(scale_factor=scale_factor, mode="bilinear", align_corners=True)
    return nn.Upsample(scale_factor=scale_factor, mode="trilinear", align_corners=False)


def flatten_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, *spatial) -> (B, N, C)."""
    return x.flatten(2).transpose(1, 2)


def unflatten_tokens(tokens: torch.Tensor, spatial_shape: tuple[int, ...]) -> torch.Tensor:
    """(B, N, C) -> (B, C, *spatial)."""
    batch, _, channels = tokens.shape
    return tokens.transpose(1, 2).reshape(batch, channels, *spatial_shape)
