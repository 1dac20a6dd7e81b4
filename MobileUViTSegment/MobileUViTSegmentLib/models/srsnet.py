"""SRSNet (Siamese Reconstruction-Segmentation network with DPConv), re-implemented from the method description.

Reference: Nian, Tang et al., IEEE TIP 2025 (arXiv 2312.01741); ``shared/reference/models/srsnet.md``. The official code
carries no licence, so nothing of it is reused here.

Two U-Net++-style networks share one nested layout (:class:`NestedAttentionUNet`): encoder nodes x0_0..x3_0 with
max-pooling, nested nodes x0_1, x1_1, x2_1, x0_2, x1_2, x0_3 of CBAM residual blocks, and a fuse head that climbs back
from x3_0 by sub-pixel up-sampling and BLAM fusion.

* ``srsnet_r`` (:class:`SRSReconstruction`, 795,586 parameters): widths 8/16/32/64, trained first to reproduce its
  input (3 output channels); IPATR local-contrast enhancement before each BLAM. :meth:`SRSReconstruction.encode`
  returns its deepest encoder feature, the "guide".
* ``srsnet_s`` (:class:`SRSSegmentation`, 11,207,308 parameters): widths 16/64/128/256; its deepest feature is
  modulated by DPConv, x3_0 += DPConv(x3_0, guide), whose kernels are generated per sample from the guide.
* ``srsnet`` (:class:`SRSNet`): the frozen R plus S, ``forward(x)`` -> logits; what the engine and trainer use.

Quirks of the official networks and what we do (``official_unused_modules``, default True): S instantiates three
IPATR modules (1.33 M parameters) that its forward never calls; BLAM holds two BatchNorms and IPATR two convs that are
never called; a 1x1 projection from the deepest width (``conv0_3_1x1``) is never called. We keep them by default, so
parameter counts equal the official ones and official checkpoints load strictly, but under names starting with
``unused_`` and frozen (``requires_grad=False``), so optimisers that filter on ``requires_grad`` skip them.
``official_unused_modules=False`` drops them (S then has 9,874,220 parameters, R 734,250); outputs are unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from . import layers
from .registry import register_model
from .srsnet_blocks import BLAM, IPATR, ConvNormAct, DPConv, SubPixelUp, attention_res_stack


@dataclass(frozen=True)
class SRSNetConfig:
    """Hyper-parameters of one nested network; the defaults are the segmentation network S."""

    spatial_dims: int = 2
    in_channels: int = 3
    out_channels: int = 1
    stem_channels: int = 8
    widths: tuple[int, int, int, int] = (16, 64, 128, 256)
    blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    contrast_enhancement: bool = False  # IPATR before the BLAMs (R only)
    guide_channels: int = 64  # DPConv's "infor_channel": the width of R's deepest feature (S only)
    dynamic_kernel_size: int = 3
    official_unused_modules: bool = True

    @property
    def divisor(self) -> int:
        """Every spatial size must be a multiple of this (three max-poolings)."""
        return 8

    def to_dict(self) -> dict:
        return asdict(self)


R_VARIANT = dict(out_channels=3, stem_channels=16, widths=(8, 16, 32, 64), blocks=(5, 5, 5, 5),
                 contrast_enhancement=True)
S_VARIANT = dict(out_channels=1, stem_channels=8, widths=(16, 64, 128, 256), blocks=(3, 4, 6, 3),
                 contrast_enhancement=False)


def _check_spatial_dims(spatial_dims: int) -> None:
    if spatial_dims != 2:
        raise ValueError(f"SRSNet is a 2D method (PixelShuffle, per-sample 2D kernels); spatial_dims={spatial_dims} "
                         "is not supported, use spatial_dims=2")


class NestedAttentionUNet(nn.Module):
    """The nested (U-Net++) layout and fuse head shared by R and S; subclasses decide what runs between them."""

    def __init__(self, config: SRSNetConfig):
        super().__init__()
        _check_spatial_dims(config.spatial_dims)
        self.config = config
        sd, (c0, c1, c2, c3), (b0, b1, b2, b3) = config.spatial_dims, config.widths, config.blocks
        keep = config.official_unused_modules
        self.stem = ConvNormAct(sd, config.in_channels, config.stem_channels, 3)
        self.pool = layers.max_pool(sd)
        self.up = layers.upsample(sd, 2)
        self.up4 = layers.upsample(sd, 4)
        self.node0_0 = attention_res_stack(sd, config.stem_channels, c0, b0)
        self.node1_0 = attention_res_stack(sd, c0, c1, b1)
        self.node2_0 = attention_res_stack(sd, c1, c2, b2)
        self.node3_0 = attention_res_stack(sd, c2, c3, b3)
        self.node0_1 = attention_res_stack(sd, c0 + c1, c0, b0)
        self.node1_1 = attention_res_stack(sd, c1 + c2 + c0, c1, b1)
        self.node2_1 = attention_res_stack(sd, c2 + c3 + c1, c2, b2)
        self.node0_2 = attention_res_stack(sd, c0 + c1 + c0, c0, b0)
        self.node1_2 = attention_res_stack(sd, c1 + c2 + c1 + c0, c1, b1)
        self.node0_3 = attention_res_stack(sd, c0 + c1 + c0, c0, b0)
        if config.contrast_enhancement or keep:
            # S instantiates the IPATRs too but never calls them: there they are named unused_ipatr*.
            prefix = "" if config.contrast_enhancement else "unused_"
            for level, width in ((2, c2), (1, c1), (0, c0)):
                self.add_module(f"{prefix}ipatr{level}", IPATR(sd, width, keep))
        self.fuse_up3 = SubPixelUp(sd, c3, c2)
        self.fuse_up2 = SubPixelUp(sd, c2, c1)
        self.fuse_up1 = SubPixelUp(sd, c1, c0)
        self.blam3 = BLAM(sd, c2, keep)
        self.blam2 = BLAM(sd, c1, keep)
        self.blam1 = BLAM(sd, c0, keep)
        if keep:  # official conv0_3_1x1: instantiated, never called
            self.unused_project3 = layers.conv(sd, c3, c0, 1)
        self.project2 = layers.conv(sd, c2, c0, 1)
        self.project1 = layers.conv(sd, c1, c0, 1)
        self.fuse_block = attention_res_stack(sd, 3 * c0, c0, 1)
        self.head = layers.conv(sd, c0, config.out_channels, 1)
        self._freeze_unused()

    def _freeze_unused(self) -> None:
        """Modules kept only for official checkpoints never get a gradient; keep them out of the optimiser."""
        for name, parameter in self.named_parameters():
            if "unused_" in name:
                parameter.requires_grad_(False)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Refuse shapes the network cannot process; repeat a grey image to the 3 channels the 2D models take."""
        if x.ndim != 4:
            raise ValueError(f"expected a 4D tensor (batch, channels, height, width), got shape {tuple(x.shape)}")
        divisor = self.config.divisor
        if any(size % divisor for size in x.shape[2:]):
            raise ValueError(f"every spatial size must be a multiple of {divisor}, got {tuple(x.shape[2:])}; pad the "
                             "input (the inference engine does this)")
        if x.shape[1] == 1 and self.config.in_channels == 3:
            x = x.repeat(1, 3, 1, 1)
        return x

    def encoder_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x0_0 .. x3_0 (full, 1/2, 1/4, 1/8 resolution) of an already prepared input."""
        x0_0 = self.node0_0(self.stem(x))
        x1_0 = self.node1_0(self.pool(x0_0))
        x2_0 = self.node2_0(self.pool(x1_0))
        x3_0 = self.node3_0(self.pool(x2_0))
        return [x0_0, x1_0, x2_0, x3_0]

    def decode(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Nested nodes and fuse head from the four encoder features; returns the head's output."""
        x0_0, x1_0, x2_0, x3_0 = features
        up, pool = self.up, self.pool
        x0_1 = self.node0_1(torch.cat([x0_0, up(x1_0)], dim=1))
        x1_1 = self.node1_1(torch.cat([x1_0, up(x2_0), pool(x0_1)], dim=1))
        x2_1 = self.node2_1(torch.cat([x2_0, up(x3_0), pool(x1_1)], dim=1))
        x0_2 = self.node0_2(torch.cat([x0_1, up(x1_1), x0_0], dim=1))
        x1_2 = self.node1_2(torch.cat([x1_1, up(x2_1), x1_0, pool(x0_2)], dim=1))
        x0_3 = self.node0_3(torch.cat([x0_2, up(x1_2), x0_1], dim=1))
        if self.config.contrast_enhancement:
            x2_1, x1_2, x0_3 = self.ipatr2(x2_1), self.ipatr1(x1_2), self.ipatr0(x0_3)
        f3 = self.blam3(x2_1, self.fuse_up3(x3_0))
        f2 = self.blam2(x1_2, self.fuse_up2(f3))
        f1 = self.blam1(x0_3, self.fuse_up1(f2))
        fused = torch.cat([f1, up(self.project1(f2)), self.up4(self.project2(f3))], dim=1)
        return self.head(self.fuse_block(fused))


class SRSReconstruction(NestedAttentionUNet):
    """Reconstruction network R: ``forward(x)`` reproduces the (3-channel) input; ``encode(x)`` gives the guide."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encoder_features(self.prepare_input(x)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The deepest encoder feature x3_0 (widths[3] channels at 1/8 resolution); the decoder is not run."""
        return self.encoder_features(self.prepare_input(x))[3]


class SRSSegmentation(NestedAttentionUNet):
    """Segmentation network S: ``forward(x, guide)`` -> logits, with x3_0 += DPConv(x3_0, guide)."""

    def __init__(self, config: SRSNetConfig):
        super().__init__(config)
        c3 = config.widths[3]
        self.dynamic_conv = DPConv(c3, c3, config.dynamic_kernel_size, config.guide_channels)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        features = self.encoder_features(self.prepare_input(x))
        features[3] = features[3] + self.dynamic_conv(features[3], guide)
        return self.decode(features)


class SRSNet(nn.Module):
    """The deployable pair: a frozen reconstruction network R and the segmentation network S.

    R is kept whole (decoder included, 0.32 M parameters that segmentation never runs), because then its keys under
    ``reconstruction.`` are exactly a trained ``srsnet_r`` state dict (the official segmentation-time R, ``SRS_RTS``,
    also stores the whole module). R's parameters never require gradients and R stays in eval mode whatever
    :meth:`train` is given: it is a fixed feature extractor, as in the official second phase.
    """

    def __init__(self, reconstruction: SRSReconstruction, segmentation: SRSSegmentation):
        super().__init__()
        if reconstruction.config.widths[3] != segmentation.config.guide_channels:
            raise ValueError(f"R's deepest width {reconstruction.config.widths[3]} differs from S's guide width "
                             f"{segmentation.config.guide_channels}")
        self.config = segmentation.config
        self.reconstruction = reconstruction.requires_grad_(False).eval()
        self.segmentation = segmentation

    def train(self, mode: bool = True) -> SRSNet:
        super().train(mode)
        self.reconstruction.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            guide = self.reconstruction.encode(x)
        return self.segmentation(x, guide)


# ----------------------------------------------------------------------------------------------------- factories


def _config(variant: dict, spatial_dims: int, in_channels: int, out_channels: int | None, **overrides) -> SRSNetConfig:
    _check_spatial_dims(spatial_dims)
    settings = {**variant, **overrides}
    if out_channels is not None:
        settings["out_channels"] = out_channels
    return SRSNetConfig(spatial_dims=spatial_dims, in_channels=in_channels, **settings)


@register_model("srsnet_r")
def srsnet_r(spatial_dims: int = 2, in_channels: int = 3, out_channels: int | None = None,
             **overrides) -> SRSReconstruction:
    """SRSNet reconstruction network R: 795,586 parameters (3 in, 3 out)."""
    return SRSReconstruction(_config(R_VARIANT, spatial_dims, in_channels, out_channels, **overrides))


@register_model("srsnet_s")
def srsnet_s(spatial_dims: int = 2, in_channels: int = 3, out_channels: int | None = None,
             **overrides) -> SRSSegmentation:
    """SRSNet segmentation network S alone, ``forward(x, guide)``: 11,207,308 parameters (3 in, 1 out)."""
    return SRSSegmentation(_config(S_VARIANT, spatial_dims, in_channels, out_channels, **overrides))


@register_model("srsnet")
def srsnet(spatial_dims: int = 2, in_channels: int = 3, out_channels: int | None = None,
           official_unused_modules: bool = True) -> SRSNet:
    """Frozen R + S, ``forward(x)`` -> logits: 12,002,894 parameters stored, 9,874,220 of them trained."""
    reconstruction = srsnet_r(spatial_dims, in_channels, official_unused_modules=official_unused_modules)
    segmentation = srsnet_s(spatial_dims, in_channels, out_channels, official_unused_modules=official_unused_modules)
    return SRSNet(reconstruction, segmentation)
