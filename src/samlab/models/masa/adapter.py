"""The MASA adapter: backbone features → feature pyramid (FPN) → multi-scale fusion blocks.

As MASA's adapter: a ViT's single-scale taps are first spread over strides 4–32 (ViTDet's simple pyramid), an FPN
with one extra max-pooled level follows, then blocks that fuse each level with its neighbours through modulated
deformable convolutions: mmdet's ``DyHead`` (spatial, scale and task attention; MASA-SAM) or MASA's
``DeformFusion`` (spatial part alone; MASA-GDINO and masa-one ResNet-50). Built from torchvision's ``DeformConv2d``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import DeformConv2d, FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool


class _ChannelsLastNorm(nn.Module):
    """LayerNorm over the channels of a ``[B, C, H, W]`` map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SimplePyramid(nn.Module):
    """Four stride-16 maps of ``channels`` channels (a ViT's taps) → strides 4, 8, 16, 32 (ViTDet / MASA SimpleFPN):
    two transposed convolutions, one, identity, max-pooling."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(
            [
                nn.Sequential(
                    nn.ConvTranspose2d(channels, channels, 2, stride=2),
                    _ChannelsLastNorm(channels),
                    nn.GELU(),
                    nn.ConvTranspose2d(channels, channels, 2, stride=2),
                ),
                nn.ConvTranspose2d(channels, channels, 2, stride=2),
                nn.Identity(),
                nn.MaxPool2d(2, stride=2),
            ]
        )

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [op(x) for op, x in zip(self.ops, features, strict=True)]


class _ModulatedDeformConv(nn.Module):
    """3x3 modulated deformable convolution (offsets and masks given) + GroupNorm (DyHead's ``DyDCNv2``).

    The convolution keeps torchvision's default initialisation (uniform in ``±1 / sqrt(fan_in)``), as mmcv's
    ``ModulatedDeformConv2d`` does; it has no bias because the norm follows.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = DeformConv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        # DyHead's 16 groups; fewer channels (tiny models) get one group, so that a 1x1 level still normalises.
        self.norm = nn.GroupNorm(16 if out_channels % 16 == 0 and out_channels >= 32 else 1, out_channels)

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x, offset, mask))


class _HardSigmoid(nn.Module):
    """``clamp((x + 3) / 6, 0, 1)``: mmcv's ``HSigmoid(bias=3, divisor=6)`` of DyHead."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 3.0) / 6.0).clamp(0.0, 1.0)


class DyReLU(nn.Module):
    """DyHead's task-aware attention (mmdet ``DyReLU``): ``max(a1 * x + b1, a2 * x + b2)`` per channel, with the
    coefficients predicted from the globally pooled ``[B, C, H, W]`` map (``a1`` in [0, 2], ``a2`` in [-1, 1],
    ``b1``, ``b2`` in [-0.5, 0.5])."""

    def __init__(self, channels: int, ratio: int = 4) -> None:
        super().__init__()
        self.channels = channels
        self.coefficients = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, channels // ratio, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // ratio, 4 * channels, 1),
            _HardSigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a1, b1, a2, b2 = (self.coefficients(x) - 0.5).split(self.channels, dim=1)
        return torch.maximum(x * (a1 * 2.0 + 1.0) + b1, x * (a2 * 2.0) + b2)


def _leading_planes(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """``x`` ``[B, C, H, W]`` read as ``[B, C, h, w]`` from the start of each sample's memory: what mmcv's (and
    detectron2's) modulated deformable convolution kernels read when given offsets and masks larger than their
    output, as DyHead's coarser-level branch does (offsets of level ``l`` for the convolution of level ``l + 1``,
    upsampled after). torchvision checks the sizes, so the reading is made explicit here."""
    h, w = int(size[0]), int(size[1])
    return x.flatten(1)[:, : x.shape[1] * h * w].reshape(x.shape[0], x.shape[1], h, w)


class _FusionBlock(nn.Module):
    """Shared part of the fusion blocks: each level becomes the mean of modulated deformable convolutions of
    itself, of the finer level (stride 2) and of the coarser level (convolved, then upsampled bilinearly: the order
    of DyHead's and MASA's code, with the offsets read as their kernels read them, see :func:`_leading_planes`), with
    offsets and masks predicted from the level itself.

    Takes and returns a list of ``[B, C, H_l, W_l]`` maps, finest first, each level half the size of the previous.
    """

    shared_offsets: bool

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        branches = 1 if self.shared_offsets else 3
        # (dy, dx) offsets of the 9 taps per branch, then their 9 modulation masks each.
        self.offset_dim = branches * 2 * 9
        self.offsets = nn.Conv2d(in_channels, branches * 3 * 9, 3, padding=1)
        self.mid = _ModulatedDeformConv(in_channels, out_channels)
        self.low = _ModulatedDeformConv(in_channels, out_channels, stride=2)
        self.high = _ModulatedDeformConv(in_channels, out_channels)

    def _init_weights(self) -> None:
        # As the references: every plain convolution N(0, 0.01), zero offsets (masks of 0.5) at the start.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.zeros_(self.offsets.weight)
        nn.init.zeros_(self.offsets.bias)

    def weigh(self, x: torch.Tensor) -> torch.Tensor:
        """The contribution of one branch (identity here; DyHead weighs it by its scale attention)."""
        return x

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """The level's output from the mean of its branches (identity here; DyHead applies its task attention)."""
        return x

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, x in enumerate(levels):
            predicted = self.offsets(x)
            offsets = predicted[:, : self.offset_dim]
            masks = predicted[:, self.offset_dim :].sigmoid()
            if self.shared_offsets:
                offsets, masks = (offsets,) * 3, (masks,) * 3
            else:
                offsets, masks = offsets.chunk(3, dim=1), masks.chunk(3, dim=1)
            total = self.weigh(self.mid(x, offsets[0], masks[0]))
            count = 1
            if i > 0:
                total = total + self.weigh(self.low(levels[i - 1], offsets[1], masks[1]))
                count += 1
            if i < len(levels) - 1:
                size = levels[i + 1].shape[-2:]
                coarse = self.high(levels[i + 1], _leading_planes(offsets[2], size), _leading_planes(masks[2], size))
                coarse = F.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=True)
                total = total + self.weigh(coarse)
                count += 1
            out.append(self.finish(total / count))
        return out


class DeformableFusionBlock(_FusionBlock):
    """MASA's ``DeformFusion`` block (GDINO and ResNet-50 recipes): DyHead's spatial part alone, with offsets and
    masks predicted separately for the three branches and no scale or task attention."""

    shared_offsets = False

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        self._init_weights()


class DyHeadBlock(_FusionBlock):
    """mmdet's ``DyHeadBlock`` (MASA-SAM recipes): one offset and mask map shared by the three branches, each
    branch weighed by the scale attention ``hsigmoid(relu(conv1x1(avgpool(x))))`` (``[B, 1, 1, 1]``), and the mean
    passed through the task attention :class:`DyReLU`."""

    shared_offsets = True

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        self.scale_attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(out_channels, 1, 1), nn.ReLU(inplace=True), _HardSigmoid()
        )
        self.task_attention = DyReLU(out_channels)
        self._init_weights()

    def weigh(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_attention(x)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return self.task_attention(x)


FUSIONS: dict[str, type[_FusionBlock]] = {"deform": DeformableFusionBlock, "dyhead": DyHeadBlock}


class MASAAdapter(nn.Module):
    """Backbone maps → fused pyramid of ``out_channels`` maps named ``"p0"``, ``"p1"``, … (finest first).

    ``in_channels`` / ``strides``: those of the backbone's maps (four equal strides = ViT taps, spread by
    :class:`SimplePyramid`); ``num_blocks``: fusion blocks (3 in MASA's released recipes); ``fusion``: ``"dyhead"``
    (:class:`DyHeadBlock`, MASA-SAM) or ``"deform"`` (:class:`DeformableFusionBlock`, MASA-GDINO / masa-one). The
    pyramid has the backbone's levels plus one max-pooled level; :attr:`strides` lists the output strides.
    """

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        out_channels: int = 256,
        num_blocks: int = 3,
        fusion: str = "deform",
    ):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"unknown MASA adapter fusion '{fusion}'; expected one of {sorted(FUSIONS)}")
        self.pyramid = None
        if len(set(strides)) == 1:
            if len(strides) != 4 or len(set(in_channels)) != 1:
                raise ValueError(f"single-stride backbones need 4 maps of equal width, got {in_channels}")
            self.pyramid = SimplePyramid(in_channels[0])
            strides = [strides[0] // 4, strides[0] // 2, strides[0], strides[0] * 2]
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=LastLevelMaxPool())
        self.fusion = nn.ModuleList(FUSIONS[fusion](out_channels, out_channels) for _ in range(num_blocks))
        self.strides = [*strides, strides[-1] * 2]
        self.out_channels = out_channels

    def forward(self, features: list[torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        if self.pyramid is not None:
            features = self.pyramid(features)
        pyramid = self.fpn(OrderedDict((f"p{i}", x) for i, x in enumerate(features)))
        levels = list(pyramid.values())
        for block in self.fusion:
            levels = block(levels)
        return OrderedDict((f"p{i}", x) for i, x in enumerate(levels))
