"""Building blocks of SRSNet (Nian, Tang et al., IEEE TIP 2025), re-implemented from the method description.

See ``shared/reference/models/srsnet.md`` sections 3 and 6. The blocks are written against ``spatial_dims`` through
:mod:`.layers` where that is free; the method is 2D and the networks in :mod:`.srsnet` refuse 3D (PixelShuffle and the
per-sample grouped convolution are 2D here).

Modules marked "unused" exist only because the official networks instantiate them (they hold parameters, so official
checkpoints and parameter counts include them) but never call them in ``forward``; ``keep_unused=False`` drops them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import layers


class ConvNormAct(nn.Sequential):
    """Conv (k x k, bias) -> BatchNorm -> ReLU; the stem and every 1x1 projection of the fuse head use it."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__(
            layers.conv(spatial_dims, in_channels, out_channels, kernel_size),
            layers.norm(spatial_dims, out_channels),
            nn.ReLU(inplace=True),
        )


class ChannelAttention(nn.Module):
    """CBAM channel gate: a shared bottleneck MLP over the average- and max-pooled descriptors, summed, sigmoid.

    The reduction is 8: the official constructor takes a ratio of 16 but ignores it, and its checkpoints have C/8
    hidden channels (at least 1).
    """

    def __init__(self, spatial_dims: int, channels: int, reduction: int = 8):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.reduce = layers.conv(spatial_dims, channels, hidden, 1, bias=False)
        self.expand = layers.conv(spatial_dims, hidden, channels, 1, bias=False)

    def _mlp(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.expand(F.relu(self.reduce(pooled)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(range(2, x.ndim))
        pooled_mean = x.mean(dim=spatial, keepdim=True)
        pooled_max = x.amax(dim=spatial, keepdim=True)
        return torch.sigmoid(self._mlp(pooled_mean) + self._mlp(pooled_max))


class SpatialAttention(nn.Module):
    """CBAM spatial gate: 7x7 conv over the channel-mean and channel-max maps, sigmoid."""

    def __init__(self, spatial_dims: int, kernel_size: int = 7):
        super().__init__()
        self.conv = layers.conv(spatial_dims, 2, 1, kernel_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        descriptors = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(descriptors))


class AttentionResBlock(nn.Module):
    """Residual block with CBAM gating (the official ``Dense_BasicBlock_MALC``; stride always 1).

    conv3x3 -> BN -> ReLU -> conv3x3 -> BN, gated by channel then spatial attention, plus a projection shortcut
    (1x1 conv + BN) when the width changes, then ReLU.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = layers.conv(spatial_dims, in_channels, out_channels, 3)
        self.norm1 = layers.norm(spatial_dims, out_channels)
        self.conv2 = layers.conv(spatial_dims, out_channels, out_channels, 3)
        self.norm2 = layers.norm(spatial_dims, out_channels)
        self.channel_attention = ChannelAttention(spatial_dims, out_channels)
        self.spatial_attention = SpatialAttention(spatial_dims)
        self.shortcut = (nn.Identity() if in_channels == out_channels else nn.Sequential(
            layers.conv(spatial_dims, in_channels, out_channels, 1), layers.norm(spatial_dims, out_channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        out = out * self.channel_attention(out)
        out = out * self.spatial_attention(out)
        return F.relu(out + self.shortcut(x))


def attention_res_stack(spatial_dims: int, in_channels: int, out_channels: int, count: int) -> nn.Sequential:
    """One node of the nested layout: ``count`` blocks, the first changing the width."""
    return nn.Sequential(*[AttentionResBlock(spatial_dims, in_channels if i == 0 else out_channels, out_channels)
                           for i in range(count)])


class SubPixelUp(nn.Module):
    """x2 up-sampling by PixelShuffle (C -> C/4 channels), then conv3x3 + BN + ReLU (the official ``Spu``)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int):
        super().__init__()
        if in_channels % 4:
            raise ValueError(f"sub-pixel up-sampling needs a width divisible by 4, got {in_channels}")
        self.shuffle = nn.PixelShuffle(2)
        self.project = ConvNormAct(spatial_dims, in_channels // 4, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.shuffle(x))


class ECAGate(nn.Module):
    """The official ECA variant: max-pool of sigmoid(x), a 1D conv (k=3) across channels, sigmoid, times x."""

    def __init__(self, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        descriptor = torch.sigmoid(x).flatten(2).amax(dim=2).unsqueeze(1)  # (N, 1, C)
        gate = torch.sigmoid(self.conv(descriptor)).transpose(1, 2)  # (N, C, 1)
        return x * gate.reshape(*gate.shape, *([1] * (x.ndim - 3)))


class BLAM(nn.Module):
    """Bottom-up local attention fusion of a node (``low``) with the up-sampled deeper path (``residual``).

    ``low`` passes two 1x1 conv + BN + ReLU units; ``residual`` is ECA-gated; [gated residual, low] is fused by a
    1x1 conv + BN + ReLU. The concatenation order (residual first) matters for the fuse weights.
    """

    def __init__(self, spatial_dims: int, channels: int, keep_unused: bool = True):
        super().__init__()
        if keep_unused:  # official bn1/bn2: instantiated, never called
            self.unused_norm1 = layers.norm(spatial_dims, channels)
            self.unused_norm2 = layers.norm(spatial_dims, channels)
        self.local = nn.Sequential(ConvNormAct(spatial_dims, channels, channels, 1),
                                   ConvNormAct(spatial_dims, channels, channels, 1))
        self.eca = ECAGate()
        self.fuse = ConvNormAct(spatial_dims, 2 * channels, channels, 1)

    def forward(self, low: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.eca(residual), self.local(low)], dim=1))


class IPATR(nn.Module):
    """MSCN-like local-contrast enhancement (used by the reconstruction network before each BLAM).

    For three local-mean estimators (1x1, 3x3, 3x3 dilated by 2): mu = conv(x), sigma = sigmoid(conv(x - mu)),
    m_i = (x - mu + 1e-3) / (sigma + 1e-3); then out = x + sigmoid(mean_i m_i) * x.
    """

    def __init__(self, spatial_dims: int, channels: int, keep_unused: bool = True):
        super().__init__()
        conv_cls = {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]
        self.estimators = nn.ModuleList([
            conv_cls(channels, channels, 1),
            conv_cls(channels, channels, 3, padding=1),
            conv_cls(channels, channels, 3, padding=2, dilation=2),
        ])
        if keep_unused:  # official tr/tr_1: instantiated, never called
            self.unused_fuse3 = layers.conv(spatial_dims, 3 * channels, channels, 3)
            self.unused_fuse2 = layers.conv(spatial_dims, 2 * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        contrasts = []
        for estimator in self.estimators:
            centred = x - estimator(x)
            spread = torch.sigmoid(estimator(centred))
            contrasts.append((centred + 1e-3) / (spread + 1e-3))
        weight = torch.sigmoid(torch.stack(contrasts).mean(dim=0))
        return x + weight * x


class DPConv(nn.Module):
    """Dynamic-parameter convolution: a k x k convolution whose kernels are generated per sample from a guide.

    The guide (the reconstruction network's deepest feature) is refined as SA(CA(g)*g)*g (spatial gate computed on the
    channel-gated guide, applied to the original guide, as the description writes it), passed through a 1x1 conv,
    averaged globally, and a grouped 1x1 conv (one group per pooled scalar) turns the ``guide_channels`` scalars into
    ``out*in*k*k`` kernel values. All samples are then convolved in one grouped convolution over the batch
    (groups = N), so sample n only ever sees kernel n; no bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, guide_channels: int):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"DPConv needs an odd kernel size, got {kernel_size}")
        kernel_values = out_channels * in_channels * kernel_size ** 2
        if kernel_values % guide_channels:
            raise ValueError(f"{kernel_values} kernel values cannot be split into {guide_channels} guide groups")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.channel_attention = ChannelAttention(2, guide_channels)
        self.spatial_attention = SpatialAttention(2)
        self.guide_projection = nn.Conv2d(guide_channels, guide_channels, 1)
        self.kernel_generator = nn.Conv2d(guide_channels, kernel_values, 1, groups=guide_channels)

    def generate_kernels(self, guide: torch.Tensor) -> torch.Tensor:
        """(N, guide_channels, h, w) -> (N * out, in, k, k)."""
        gated = self.channel_attention(guide) * guide
        guide = self.spatial_attention(gated) * guide
        pooled = self.guide_projection(guide).mean(dim=(2, 3), keepdim=True)
        kernels = self.kernel_generator(pooled)
        return kernels.reshape(-1, self.in_channels, self.kernel_size, self.kernel_size)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        if guide.shape[0] != batch:
            raise ValueError(f"the guide has batch size {guide.shape[0]} but the input has {batch}")
        kernels = self.generate_kernels(guide)
        out = F.conv2d(x.reshape(1, batch * self.in_channels, *x.shape[2:]), kernels,
                       padding=self.kernel_size // 2, groups=batch)
        return out.reshape(batch, self.out_channels, *x.shape[2:])
