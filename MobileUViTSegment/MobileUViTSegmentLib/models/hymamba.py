"""HyMamba: a MedNeXt-style 3D CNN encoder, a Mamba bottleneck at 1/16 scale and a UNETR-style decoder.

Re-implemented from ``shared/reference/models/mambamim.md`` (section 3); the network of MambaMIM (Tang et al.,
Medical Image Analysis 2025, arXiv 2408.08070), official class ``Hybird``. Module names follow the official state dict
(``embeddings``, ``mae``, ``decoder``), so the encoder that MambaMIM pre-trains (:mod:`.mambamim`) and official
checkpoints (:mod:`..conversion.hymamba_formats`) load with the same keys.

* ``hymamba``: the official configuration, 41,841,134 parameters (1 input channel, 14 classes, 96^3 windows).
* ``hymamba_small``: channels (8, 16, 32, 48, 96), d_state 8, 2 Mamba layers, 2.43 M parameters (14 classes,
  96^3 windows), for CPUs.

Decisions on the official code's quirks (numbers of section 11 of the reference):

5. ``bimamba_type="v1"`` only scans forward; the official layers still hold backward-scan tensors. ``hymamba`` keeps
   them (``official_unused_modules=True``, frozen, under ``mamba.unused_backward``) because only then the parameter
   count is the official one and every tensor of an official checkpoint has a place (strict loading); they never
   change the output. ``hymamba_small`` drops them.
6. Xavier-uniform re-initialisation of every Linear of the bottleneck, biases zero, including Mamba's ``dt_proj``
   (so softplus(dt) starts near 0.69 instead of Mamba's log-uniform 1e-3..0.1): followed by default
   (``dt_init="xavier"``), because fine-tuning results of the method were obtained with it; ``dt_init="mamba"``
   restores Mamba's own timestep initialisation for experiments.
8. The fixed sin-cos position embedding is built for the grid ``img_size / 16`` of the config; ``img_size`` may be a
   3-tuple (e.g. (48, 64, 48) -> 3x4x3 tokens). Other input sizes are refused with the expected size named: the
   inference engine runs sliding windows of exactly the card's patch size.
9. The selective scan runs in plain PyTorch on any device; mamba-ssm's CUDA kernel is used when importable on CUDA.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from monai.networks.blocks import UnetrUpBlock
from torch import nn

from .hymamba_blocks import MambaLayer, MedNeXtBlock, ResidualConvBlock, sincos_position_embedding_3d
from .layers import flatten_tokens, unflatten_tokens
from .registry import register_model

DOWNSAMPLING = 16


@dataclass(frozen=True)
class HyMambaConfig:
    spatial_dims: int = 3
    in_channels: int = 1
    out_channels: int = 14
    channels: tuple[int, int, int, int, int] = (32, 64, 128, 192, 384)
    depths: tuple[int, int, int, int, int] = (1, 2, 2, 2, 1)  # depths[0] is unused, as in the official code
    expansion: tuple[int, int, int, int, int] = (2, 2, 4, 4, 4)  # expansion[0] is unused
    kernel_size: int = 3
    img_size: int | tuple[int, int, int] = 96
    mamba_depth: int = 4
    d_state: int = 16
    dt_init: str = "xavier"  # "xavier" (official, quirk 6) or "mamba"
    official_unused_modules: bool = True

    def __post_init__(self):
        if self.spatial_dims != 3:
            raise ValueError(f"HyMamba is a 3D network (3D position embedding); spatial_dims={self.spatial_dims} is "
                             "not supported")
        size = self.input_size
        if any(length % DOWNSAMPLING for length in size):
            raise ValueError(f"img_size {size} must be a multiple of {DOWNSAMPLING} along every axis")
        if self.dt_init not in ("xavier", "mamba"):
            raise ValueError(f"dt_init must be 'xavier' or 'mamba', got {self.dt_init!r}")

    @property
    def input_size(self) -> tuple[int, int, int]:
        size = self.img_size
        return (size,) * 3 if isinstance(size, int) else tuple(int(length) for length in size)

    @property
    def token_grid(self) -> tuple[int, int, int]:
        return tuple(length // DOWNSAMPLING for length in self.input_size)

    def to_dict(self) -> dict:
        return asdict(self)


class HyMambaEncoder(nn.Module):
    """The CNN part (official ``Embeddings``): stem, width expansions, MedNeXt stages and skip refinements.

    ``stages`` gives the raw features x1..x5 (x1..x4 at full to 1/8 scale, x5 at 1/16); ``forward`` refines x1..x4
    with ``encoder1..4`` for the decoder's skips.
    """

    def __init__(self, config: HyMambaConfig):
        super().__init__()
        c, k = config.channels, config.kernel_size
        self.stem = nn.Conv3d(config.in_channels, c[0], 3, padding=1)
        for level in range(2, 6):
            width = c[level - 1]
            blocks = [MedNeXtBlock(width, config.expansion[level - 1], k) for _ in range(config.depths[level - 1])]
            self.add_module(f"layer{level}", nn.Sequential(*blocks))
        self.down = nn.MaxPool3d(2)
        for level in range(1, 5):
            self.add_module(f"expend{level}", nn.Conv3d(c[level - 1], c[level], 3, padding=1))
        for level in range(1, 5):
            self.add_module(f"encoder{level}", ResidualConvBlock(c[level], c[level], k))

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        x1 = self.expend1(self.stem(x))
        x2 = self.expend2(self.layer2(self.down(x1)))
        x3 = self.expend3(self.layer3(self.down(x2)))
        x4 = self.expend4(self.layer4(self.down(x3)))
        x5 = self.layer5(self.down(x4))
        return [x1, x2, x3, x4, x5]

    def refine(self, level: int, feature: torch.Tensor) -> torch.Tensor:
        """Skip refinement ``encoder<level>`` (level 1..4) of the raw feature x<level>."""
        return getattr(self, f"encoder{level}")(feature)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.stages(x)
        return [self.refine(level, feature) for level, feature in enumerate(features[:4], start=1)] + features[4:]


class MambaBottleneck(nn.Module):
    """Official ``MaskedAutoencoderMamba`` without masking: tokens + fixed sin-cos embedding through Mamba layers."""

    def __init__(self, config: HyMambaConfig):
        super().__init__()
        dim = config.channels[-1]
        self.grid = config.token_grid
        self.pos_embed = nn.Parameter(sincos_position_embedding_3d(self.grid, dim), requires_grad=False)
        self.blocks = nn.ModuleList(MambaLayer(dim, config.d_state, config.official_unused_modules)
                                    for _ in range(config.mamba_depth))
        self._initialize(config.dt_init)

    def _initialize(self, dt_init: str) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if dt_init == "mamba":
            for block in self.blocks:
                block.mamba.reset_dt_projection()

    def run_blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            tokens = block(tokens)
        return tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.run_blocks(flatten_tokens(x) + self.pos_embed)
        return unflatten_tokens(tokens, tuple(x.shape[2:]))


class OutputHead(nn.Module):
    """1x1x1 convolution to the class logits (held as ``conv``, like the official ``UnetOutBlock``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class HyMambaDecoder(nn.Module):
    """UNETR-style decoder: four MONAI UnetrUpBlocks (instance norm, residual), a residual block and a 1x1 head."""

    def __init__(self, config: HyMambaConfig):
        super().__init__()
        c = config.channels
        up = dict(spatial_dims=3, kernel_size=3, upsample_kernel_size=2, norm_name="instance", res_block=True)
        self.decoder5 = UnetrUpBlock(in_channels=c[4], out_channels=c[4], **up)
        self.decoder4 = UnetrUpBlock(in_channels=c[4], out_channels=c[3], **up)
        self.decoder3 = UnetrUpBlock(in_channels=c[3], out_channels=c[2], **up)
        self.decoder2 = UnetrUpBlock(in_channels=c[2], out_channels=c[1], **up)
        self.decoder1 = ResidualConvBlock(c[1], c[0], config.kernel_size)
        self.out = OutputHead(c[0], config.out_channels)

    def forward(self, skips: list[torch.Tensor], bottleneck: torch.Tensor) -> torch.Tensor:
        x = self.decoder5(bottleneck, skips[3])
        x = self.decoder4(x, skips[2])
        x = self.decoder3(x, skips[1])
        x = self.decoder2(x, skips[0])
        return self.out(self.decoder1(x))


class HyMamba(nn.Module):
    """``forward(x)`` -> logits for a (B, in_channels, *img_size) window."""

    def __init__(self, config: HyMambaConfig):
        super().__init__()
        self.config = config
        self.embeddings = HyMambaEncoder(config)
        self.mae = MambaBottleneck(config)
        self.decoder = HyMambaDecoder(config)

    def check_input(self, x: torch.Tensor) -> None:
        expected = self.config.input_size
        if x.ndim != 5 or tuple(x.shape[2:]) != expected or x.shape[1] != self.config.in_channels:
            raise ValueError(f"HyMamba expects (batch, {self.config.in_channels}, {', '.join(map(str, expected))}) "
                             f"inputs (its position embedding is fixed to img_size {expected}), got shape "
                             f"{tuple(x.shape)}; cut larger volumes into windows of exactly this size")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        features = self.embeddings(x)
        return self.decoder(features[:4], self.mae(features[4]))


# ----------------------------------------------------------------------------------------------------- factories

SMALL_VARIANT = dict(channels=(8, 16, 32, 48, 96), d_state=8, mamba_depth=2, official_unused_modules=False)


def _sequence(value):
    """Cards store tuples as JSON lists."""
    return tuple(value) if isinstance(value, list) else value


@register_model("hymamba")
def hymamba(spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 14, **overrides) -> HyMamba:
    """Official HyMamba (``build_hybird``): 41,841,134 parameters with 14 classes and 96^3 windows."""
    overrides = {key: _sequence(value) for key, value in overrides.items()}
    return HyMamba(HyMambaConfig(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                                 **overrides))


@register_model("hymamba_small")
def hymamba_small(spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 14, **overrides) -> HyMamba:
    """A CPU-sized HyMamba: channels (8, 16, 32, 48, 96), d_state 8, 2 Mamba layers, no unused tensors."""
    settings = {**SMALL_VARIANT, **{key: _sequence(value) for key, value in overrides.items()}}
    return HyMamba(HyMambaConfig(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                                 **settings))
