"""Mobile U-ViT (Tang et al., ACM MM 2025) for 2D and 3D, re-implemented from the paper's description.

One implementation serves 2D and 3D through ``spatial_dims``. The topology (see
``shared/reference/models/mobile_u_vit.md``):

* **ConvUtr patch embedding**: a conv stem, then three stages of "transformer-like" CNN blocks (depthwise token mixer
  and inverted-bottleneck MLP, each a residual unit with conv -> GELU -> norm), each stage ending in a 3x3 conv that
  expands the width; max-pooling between stages.
* **Large-kernel Local-Global-Local (LK-LGL) blocks** at 1/8 resolution: 9x9(x9) depthwise local aggregation with
  sigmoid-gated residuals, sparse global attention among every second token, and a transposed-conv local propagation.
* a **shallow transformer bottleneck** (plain multi-head self-attention) at a wider width,
* a **cascaded decoder** whose skip connections are max-pooled before concatenation ("down-sampled skips"), so it
  runs one level coarser than the encoder and only the last up-sampling restores full resolution.

Parameter counts match the official models exactly (tested): 2D S 1,390,305 and L 6,209,217 (3 in, 1 out), 3D S
2,758,270 and L 11,060,206 (1 in, 14 out). Names of our modules differ from the official state dict on purpose
(PEP 8, readable); a mapping belongs to the weight converter. ``mobileutr_s``/``mobileutr_l`` register the same network
under its earlier MobileUtr name.

3D inference on CPU runs each block's ``forward_fast`` (channels-last, in place, see :mod:`.fast_ops`): about 2.6x
faster than the module path at 96^3 on two threads, logits equal within 1e-4. Training always uses ``forward``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from monai.networks.layers import DropPath
from torch import nn

from . import fast_ops, layers
from .registry import register_model


@dataclass(frozen=True)
class MobileUViTConfig:
    """Hyper-parameters of Mobile U-ViT; the defaults are the S ("mobileuvit") configuration in 3D."""

    spatial_dims: int = 3
    in_channels: int = 1
    out_channels: int = 14
    dims: tuple[int, int, int, int] = (16, 32, 64, 128)
    depths: tuple[int, int, int, int, int] = (1, 1, 3, 3, 3)
    kernels: tuple[int, int, int] = (3, 3, 7)
    embed_dim: int = 256
    mlp_ratio: int = 4
    local_kernel: int = 9
    sparse_ratio: int = 2
    drop_path: float = 0.1

    @property
    def num_heads(self) -> int:
        # Upstream derives the head count from an embed_dim that is otherwise unused: heads = embed_dim / 64.
        return self.embed_dim // 64

    @property
    def divisor(self) -> int:
        """Every spatial size must be a multiple of this (three poolings, then a stride-2 sparse sampler)."""
        return 8 * self.sparse_ratio

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------------- ConvUtr encoder


class Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(x)


class ConvUtrStage(nn.Module):
    """``depth`` x (depthwise token mixer + pointwise MLP) at ``in_channels``, then a 3x3 conv to ``out_channels``.

    Norm comes after the activation (conv -> GELU -> norm), as in the paper's ConvUtr figure and the official code.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, depth: int, kernel_size: int,
                 mlp_ratio: int = 4):
        super().__init__()
        hidden = in_channels * mlp_ratio
        units = []
        for _ in range(depth):
            token_mixer = Residual(nn.Sequential(
                layers.conv(spatial_dims, in_channels, in_channels, kernel_size, groups=in_channels),
                nn.GELU(),
                layers.norm(spatial_dims, in_channels),
            ))
            channel_mlp = Residual(nn.Sequential(
                layers.conv(spatial_dims, in_channels, hidden, 1),
                nn.GELU(),
                layers.norm(spatial_dims, hidden),
                layers.conv(spatial_dims, hidden, in_channels, 1),
                nn.GELU(),
                layers.norm(spatial_dims, in_channels),
            ))
            units.append(nn.Sequential(token_mixer, channel_mlp))
        self.blocks = nn.Sequential(*units)
        self.expand = ConvNormAct(spatial_dims, in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.blocks(x))

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """Inference path (see :mod:`.fast_ops`): same result, in place, hidden MLP map never stored."""
        for token_mixer, channel_mlp in self.blocks:
            mixed = fast_ops.gelu_(fast_ops.conv(x, token_mixer.fn[0]))
            x = fast_ops.instance_norm_(mixed).add_(x)
            refined = fast_ops.pointwise_mlp(x, channel_mlp.fn[0], channel_mlp.fn[3])
            x = fast_ops.instance_norm_(refined).add_(x)
        return self.expand.forward_fast(x)


class ConvNormAct(nn.Sequential):
    """3x3 conv -> norm -> ReLU."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int):
        super().__init__(
            layers.conv(spatial_dims, in_channels, out_channels, 3),
            layers.norm(spatial_dims, out_channels),
            nn.ReLU(inplace=True),
        )

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        return fast_ops.instance_norm_(fast_ops.conv(x, self[0])).relu_()


class DoubleConv(nn.Sequential):
    """Two ConvNormAct units (the decoder's and the width-changing 'expand/reduce dims' block)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int):
        super().__init__(
            ConvNormAct(spatial_dims, in_channels, out_channels),
            ConvNormAct(spatial_dims, out_channels, out_channels),
        )

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        return self[1].forward_fast(self[0].forward_fast(x))


class UpConv(nn.Sequential):
    """x2 up-sampling -> ConvNormAct."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int):
        super().__init__(layers.upsample(spatial_dims), ConvNormAct(spatial_dims, in_channels, out_channels))

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        return self[1].forward_fast(self[0](x))


class PatchEmbedding(nn.Module):
    """Stem and three ConvUtr stages; returns the three skip features (full, 1/2 and 1/4 resolution)."""

    def __init__(self, config: MobileUViTConfig):
        super().__init__()
        sd, (c0, c1, c2, _), (k1, k2, k3) = config.spatial_dims, config.dims, config.kernels
        self.stem = ConvNormAct(sd, config.in_channels, c0)
        self.stage1 = ConvUtrStage(sd, c0, c0, config.depths[0], k1, config.mlp_ratio)
        self.stage2 = ConvUtrStage(sd, c0, c1, config.depths[1], k2, config.mlp_ratio)
        self.stage3 = ConvUtrStage(sd, c1, c2, config.depths[2], k3, config.mlp_ratio)
        self.pool = layers.max_pool(sd)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        skip0 = self.stage1(self.stem(x))
        skip1 = self.stage2(self.pool(skip0))
        skip2 = self.stage3(self.pool(skip1))
        return skip0, skip1, skip2


# ------------------------------------------------------------------------------------------------- LGL bottleneck


def _gate(x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """The gated residual term ``x * (sigmoid(branch) - 0.5)`` LocalAgg adds instead of the branch itself."""
    return x * (torch.sigmoid(branch) - 0.5)


class LocalAggregation(nn.Module):
    """Large-kernel local aggregation: three sigmoid-gated residual branches (position, mixing, grouped MLP)."""

    def __init__(self, spatial_dims: int, dim: int, kernel_size: int, mlp_ratio: int, drop_path: float):
        super().__init__()
        self.position = layers.conv(spatial_dims, dim, dim, kernel_size, groups=dim)
        self.norm1 = layers.norm(spatial_dims, dim)
        self.mix_in = layers.conv(spatial_dims, dim, dim, 1)
        self.mix_spatial = layers.conv(spatial_dims, dim, dim, kernel_size, groups=dim)
        self.mix_out = layers.conv(spatial_dims, dim, dim, 1)
        self.norm2 = layers.norm(spatial_dims, dim)
        # A grouped 3x3 "conv MLP" (not pointwise), as described for the LocalAgg block.
        self.mlp = nn.Sequential(
            layers.conv(spatial_dims, dim, dim * mlp_ratio, 3, groups=dim),
            nn.GELU(),
            layers.conv(spatial_dims, dim * mlp_ratio, dim, 3, groups=dim),
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + _gate(x, self.position(x))
        x = x + self.drop_path(_gate(x, self.mix_out(self.mix_spatial(self.mix_in(self.norm1(x))))))
        return x + self.drop_path(_gate(x, self.mlp(self.norm2(x))))

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """Inference path: the same three gated residuals, computed in place on channels-last maps."""
        x = fast_ops.gate_(fast_ops.conv(x, self.position), x)
        mixed = fast_ops.instance_norm_(fast_ops.channels_last(x.clone()))
        for conv in (self.mix_in, self.mix_spatial, self.mix_out):
            mixed = fast_ops.conv(mixed, conv)
        x = fast_ops.gate_(mixed, x)
        hidden = fast_ops.gelu_(fast_ops.conv(fast_ops.instance_norm_(fast_ops.channels_last(x.clone())), self.mlp[0]))
        return fast_ops.gate_(fast_ops.conv(hidden, self.mlp[2]), x)


class SparseGlobalAttention(nn.Module):
    """Select-attend-propagate attention: attend among every ``sparse_ratio``-th token, propagate back by a transposed
    depthwise conv. With ``sparse_ratio == 1`` it is plain multi-head self-attention over all tokens."""

    def __init__(self, spatial_dims: int, dim: int, num_heads: int, sparse_ratio: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.sparse_ratio = sparse_ratio
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        if sparse_ratio > 1:
            self.select = layers.strided_pick(spatial_dims, sparse_ratio)
            self.propagate = layers.conv_transpose(spatial_dims, dim, dim, sparse_ratio, sparse_ratio, groups=dim)
            self.propagate_norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, spatial_shape: tuple[int, ...]) -> torch.Tensor:
        if self.sparse_ratio > 1:
            picked = self.select(layers.unflatten_tokens(tokens, spatial_shape))
            sparse_shape = tuple(picked.shape[2:])
            tokens = layers.flatten_tokens(picked)
        batch, count, dim = tokens.shape
        qkv = self.qkv(tokens).reshape(batch, count, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        tokens = attended.transpose(1, 2).reshape(batch, count, dim)
        if self.sparse_ratio > 1:
            spread = self.propagate(layers.unflatten_tokens(tokens, sparse_shape))
            tokens = self.propagate_norm(layers.flatten_tokens(spread))
        return self.proj(tokens)


class SelfAttentionBlock(nn.Module):
    """Conditional position encoding (3x3 depthwise), pre-norm attention and MLP, on a feature map."""

    def __init__(self, spatial_dims: int, dim: int, num_heads: int, mlp_ratio: int, sparse_ratio: int,
                 drop_path: float):
        super().__init__()
        self.position = layers.conv(spatial_dims, dim, dim, 3, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SparseGlobalAttention(spatial_dims, dim, num_heads, sparse_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.position(x)
        spatial_shape = tuple(x.shape[2:])
        tokens = layers.flatten_tokens(x)
        tokens = tokens + self.drop_path(self.attn(self.norm1(tokens), spatial_shape))
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        return layers.unflatten_tokens(tokens, spatial_shape)


class LGLBlock(nn.Module):
    """Local aggregation (only when attention is sparse) followed by the self-attention block.

    ``sparse_ratio > 1`` gives the large-kernel LGL block of the bottleneck; ``sparse_ratio == 1`` the plain
    transformer block of the deeper bottleneck (the MobileUtr paper's "adaptive" LGL).
    """

    def __init__(self, spatial_dims: int, dim: int, num_heads: int, mlp_ratio: int, sparse_ratio: int,
                 local_kernel: int, drop_path: float):
        super().__init__()
        self.local = (LocalAggregation(spatial_dims, dim, local_kernel, mlp_ratio, drop_path)
                      if sparse_ratio > 1 else nn.Identity())
        self.attention = SelfAttentionBlock(spatial_dims, dim, num_heads, mlp_ratio, sparse_ratio, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(self.local(x))

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.local, LocalAggregation):
            x = self.local.forward_fast(x)
        return self.attention(x)  # token ops: a channels-last map flattens to tokens without a copy


# ------------------------------------------------------------------------------------------------------- network


class MobileUViT(nn.Module):
    """Mobile U-ViT segmentation network; returns raw logits at the input resolution.

    3D inference on CPU (eval mode, no autograd) takes the channels-last, in-place path of :mod:`.fast_ops` and returns
    channels-last logits; set ``fast_inference = False`` on an instance to run the module path instead.
    """

    fast_inference: bool = True

    def __init__(self, config: MobileUViTConfig):
        super().__init__()
        self.config = config
        sd, (c0, c1, c2, c3) = config.spatial_dims, config.dims
        depth_lgl, depth_transformer = config.depths[3], config.depths[4]
        self.patch_embedding = PatchEmbedding(config)
        self.pool = layers.max_pool(sd)
        self.lgl_bottleneck = nn.Sequential(*[
            LGLBlock(sd, c2, config.num_heads, config.mlp_ratio, config.sparse_ratio, config.local_kernel,
                     config.drop_path)
            for _ in range(depth_lgl)
        ])
        self.expand_dims = DoubleConv(sd, c2, c3)
        self.transformer_bottleneck = nn.Sequential(*[
            LGLBlock(sd, c3, config.num_heads, config.mlp_ratio, 1, config.local_kernel, 0.0)
            for _ in range(depth_transformer)
        ])
        self.reduce_dims = DoubleConv(sd, c3, c2)
        self.decode3 = DoubleConv(sd, 2 * c2, c2)
        self.up2 = UpConv(sd, c2, c1)
        self.decode2 = DoubleConv(sd, 2 * c1, c1)
        self.up1 = UpConv(sd, c1, c0)
        self.decode1 = DoubleConv(sd, 2 * c0, c0)
        self.up0 = UpConv(sd, c0, c0)
        self.head = layers.conv(sd, c0, config.out_channels, 1)

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse inputs the network cannot process, with a message that says what to change."""
        expected_ndim = self.config.spatial_dims + 2
        if x.ndim != expected_ndim:
            raise ValueError(f"expected a {expected_ndim}D tensor (batch, channels, *spatial), got shape "
                             f"{tuple(x.shape)}")
        bad = [s for s in x.shape[2:] if s % self.config.divisor]
        if bad:
            raise ValueError(f"every spatial size must be a multiple of {self.config.divisor}, got "
                             f"{tuple(x.shape[2:])}; pad the input (the inference engine does this)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if x.shape[1] == 1 and self.config.in_channels == 3:
            # Upstream's 2D models take 3 channels and repeat a grey image to 3.
            x = x.repeat(1, 3, *([1] * self.config.spatial_dims))
        if self.fast_inference and self.config.spatial_dims == 3 and not self.training and fast_ops.applies(x):
            return self._forward_fast(x)
        skip0, skip1, skip2 = self.patch_embedding(x)
        x = self.lgl_bottleneck(self.pool(skip2))
        x = self.reduce_dims(self.transformer_bottleneck(self.expand_dims(x)))
        x = self.decode3(torch.cat([x, self.pool(skip2)], dim=1))
        x = self.decode2(torch.cat([self.up2(x), self.pool(skip1)], dim=1))
        x = self.decode1(torch.cat([self.up1(x), self.pool(skip0)], dim=1))
        return self.head(self.up0(x))

    def _forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """The forward above with the fast blocks, each pooled skip computed once instead of twice."""
        embedding = self.patch_embedding
        skip0 = embedding.stage1.forward_fast(embedding.stem.forward_fast(fast_ops.channels_last(x)))
        down0 = fast_ops.max_pool(skip0)
        down1 = fast_ops.max_pool(embedding.stage2.forward_fast(down0))
        down2 = fast_ops.max_pool(embedding.stage3.forward_fast(down1))
        x = down2
        for block in self.lgl_bottleneck:
            x = block.forward_fast(x)
        x = self.expand_dims.forward_fast(x)
        for block in self.transformer_bottleneck:
            x = block.forward_fast(x)
        x = self.reduce_dims.forward_fast(x)
        x = self.decode3.forward_fast(torch.cat([x, down2], dim=1))
        x = self.decode2.forward_fast(torch.cat([self.up2.forward_fast(x), down1], dim=1))
        x = self.decode1.forward_fast(torch.cat([self.up1.forward_fast(x), down0], dim=1))
        return fast_ops.conv(self.up0.forward_fast(x), self.head)


# ----------------------------------------------------------------------------------------------------- factories

S_VARIANT = dict(dims=(16, 32, 64, 128), depths=(1, 1, 3, 3, 3), kernels=(3, 3, 7), embed_dim=256)
L_VARIANT = dict(dims=(32, 64, 128, 256), depths=(1, 1, 3, 3, 4), kernels=(3, 3, 7), embed_dim=512)


def _build(variant: dict, spatial_dims: int, in_channels: int | None, out_channels: int | None,
           **overrides) -> MobileUViT:
    defaults = {2: (3, 1), 3: (1, 14)}[spatial_dims]
    config = MobileUViTConfig(
        spatial_dims=spatial_dims,
        in_channels=defaults[0] if in_channels is None else in_channels,
        out_channels=defaults[1] if out_channels is None else out_channels,
        **{**variant, **overrides},
    )
    return MobileUViT(config)


@register_model("mobileuvit_s")
def mobileuvit_s(spatial_dims: int = 3, in_channels: int | None = None, out_channels: int | None = None,
                 **overrides) -> MobileUViT:
    """Mobile U-ViT (S): 1.39 M parameters in 2D, 2.76 M in 3D at 14 classes."""
    return _build(S_VARIANT, spatial_dims, in_channels, out_channels, **overrides)


@register_model("mobileuvit_l")
def mobileuvit_l(spatial_dims: int = 3, in_channels: int | None = None, out_channels: int | None = None,
                 **overrides) -> MobileUViT:
    """Mobile U-ViT-L: 6.21 M parameters in 2D, 11.06 M in 3D at 14 classes."""
    return _build(L_VARIANT, spatial_dims, in_channels, out_channels, **overrides)


# MobileUtr (Tang et al., arXiv 2312.01740) is the same 2D network under its earlier name ("adaptive LGL" bottleneck);
# the official code differs only in class and attribute names, so the aliases build the very same class. MobileUtr
# was published for 2D only, hence the 2D default; ``spatial_dims=3`` works as for the names above.


@register_model("mobileutr_s")
def mobileutr_s(spatial_dims: int = 2, in_channels: int | None = None, out_channels: int | None = None,
                **overrides) -> MobileUViT:
    """MobileUtr: Mobile U-ViT (S) under its MobileUtr name, 1.39 M parameters in 2D."""
    return _build(S_VARIANT, spatial_dims, in_channels, out_channels, **overrides)


@register_model("mobileutr_l")
def mobileutr_l(spatial_dims: int = 2, in_channels: int | None = None, out_channels: int | None = None,
                **overrides) -> MobileUViT:
    """MobileUtr-L: Mobile U-ViT-L under its MobileUtr name, 6.21 M parameters in 2D."""
    return _build(L_VARIANT, spatial_dims, in_channels, out_channels, **overrides)
