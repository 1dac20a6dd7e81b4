"""Building blocks of HyMamba: MedNeXt and residual conv blocks, the Mamba mixer and its layer, the 3D sin-cos grid.

Written from ``shared/reference/models/mambamim.md`` section 3; module and tensor names follow the official state dict
so official checkpoints map onto ours by a short rename table (``conversion/hymamba_formats.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .selective_scan import selective_scan


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a (B, C, *spatial) tensor (ConvNeXt's "channels_first" LayerNorm)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.movedim(1, -1), self.weight.shape, self.weight, self.bias, self.eps).movedim(-1, 1)


class MedNeXtBlock(nn.Module):
    """Residual block: depthwise conv k^3 -> channel LayerNorm -> 1x1 expand -> GELU -> 1x1 compress, plus input."""

    def __init__(self, channels: int, expansion: int, kernel_size: int = 3):
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = ChannelsFirstLayerNorm(channels)
        self.conv2 = nn.Conv3d(channels, expansion * channels, 1)
        self.act = nn.GELU()
        self.conv3 = nn.Conv3d(expansion * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv3(self.act(self.conv2(self.norm(self.conv1(x)))))


class ResidualConvBlock(nn.Module):
    """The official repository's own UnetResBlock: two conv 3^3 + channel LayerNorm, LeakyReLU, residual.

    Unlike MONAI's block of the same name it uses LayerNorm and biased convolutions; the residual gets a 1x1 conv and
    a LayerNorm only when the width changes.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm1 = ChannelsFirstLayerNorm(out_channels)
        self.norm2 = ChannelsFirstLayerNorm(out_channels)
        self.act = nn.LeakyReLU(0.01)
        if in_channels != out_channels:
            self.conv3 = nn.Conv3d(in_channels, out_channels, 1)
            self.norm3 = ChannelsFirstLayerNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.norm3(self.conv3(x)) if hasattr(self, "conv3") else x
        out = self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))
        return self.act(out + residual)


def sincos_position_embedding_3d(grid: tuple[int, int, int], dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed (1, h*w*d, dim) embedding: sin and cos of the h, w and d coordinates, dim/6 frequencies each.

    Tokens are ordered as a (B, C, h, w, d) tensor flattened over its spatial axes (d fastest); the channel layout is
    [sin h, cos h, sin w, cos w, sin d, cos d].
    """
    if dim % 6:
        raise ValueError(f"the 3D sin-cos position embedding needs a width divisible by 6, got {dim}")
    per_axis = dim // 6
    omega = 1.0 / temperature ** (torch.arange(per_axis, dtype=torch.float32) / per_axis)
    axes = torch.meshgrid(*(torch.arange(size, dtype=torch.float32) for size in grid), indexing="ij")
    parts = []
    for coordinate in axes:
        angles = coordinate.flatten()[:, None] * omega[None, :]
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=1)[None]


class DirectionParameters(nn.Module):
    """A second (backward) scan direction's tensors: created by the official code, never used in its forward."""

    def __init__(self, inner: int, state: int, conv_kernel: int, dt_rank: int):
        super().__init__()
        self.A_log = nn.Parameter(torch.log(torch.arange(1, state + 1, dtype=torch.float32)).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.conv1d = nn.Conv1d(inner, inner, conv_kernel, padding=conv_kernel - 1, groups=inner)
        self.x_proj = nn.Linear(inner, dt_rank + 2 * state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, inner)


class Mamba(nn.Module):
    """Mamba mixer (selective state space), forward direction only, on (B, L, d_model) tokens.

    ``in_proj`` gives the scan input x and the gate z; x goes through a causal depthwise conv + SiLU, ``x_proj`` gives
    the per-token timestep rank, B and C; ``dt_proj`` lifts the timestep to every channel; the selective scan
    (:func:`.selective_scan.selective_scan`) runs with A = -exp(A_log), skip D and gate SiLU(z).

    ``unused_backward`` (official ``bimamba_type="v1"``, quirk 5): the official class also builds the tensors of a
    backward scan (A_b_log, D_b, conv1d_b, x_proj_b, dt_proj_b) but its v1 forward never runs them. Kept only when
    asked (for exact parameter counts and strict loading of official checkpoints), frozen.
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 keep_unused_backward: bool = False):
        super().__init__()
        inner = expand * d_model
        self.d_state, self.inner = d_state, inner
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * inner, bias=False)
        self.conv1d = nn.Conv1d(inner, inner, d_conv, padding=d_conv - 1, groups=inner)
        self.x_proj = nn.Linear(inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, inner)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, d_model, bias=False)
        if keep_unused_backward:
            self.unused_backward = DirectionParameters(inner, d_state, d_conv, self.dt_rank).requires_grad_(False)

    def reset_dt_projection(self, dt_min: float = 1e-3, dt_max: float = 0.1) -> None:
        """Mamba's own timestep initialisation: softplus(bias) log-uniform in [dt_min, dt_max]."""
        bound = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        dt = torch.exp(torch.rand(self.inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        x, z = self.in_proj(tokens).transpose(1, 2).chunk(2, dim=1)  # (B, inner, L) each
        x = F.silu(self.conv1d(x)[..., :length])
        dt, b, c = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)  # bias is added inside the scan
        y = selective_scan(x, delta, -torch.exp(self.A_log.float()), b.transpose(1, 2), c.transpose(1, 2), self.D,
                           z=z, delta_bias=self.dt_proj.bias, delta_softplus=True)
        return self.out_proj(y.transpose(1, 2))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MambaLayer(nn.Module):
    """x + Mamba(LN(x)), then x + MLP(LN(x)) with an MLP of ratio 2."""

    def __init__(self, dim: int, d_state: int = 16, keep_unused_backward: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mamba = Mamba(dim, d_state, keep_unused_backward=keep_unused_backward)
        self.mlp = Mlp(dim, 2 * dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mamba(self.norm1(x))
        return x + self.mlp(self.norm2(x))
