"""The MASA adapter: backbone features → feature pyramid (FPN) → deformable multi-scale fusion.

As MASA's adapter: a ViT's single-scale taps are first spread over strides 4–32 (ViTDet's simple pyramid), an FPN
with one extra max-pooled level follows, then blocks that fuse each level with its neighbours through modulated
deformable convolutions (DyHead's spatial part, without its scale and task attention).
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
    """3x3 modulated deformable convolution (offsets and masks given) + GroupNorm."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = DeformConv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        # DyHead's 16 groups; fewer channels (tiny models) get one group, so that a 1x1 level still normalises.
        self.norm = nn.GroupNorm(16 if out_channels % 16 == 0 and out_channels >= 32 else 1, out_channels)

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x, offset, mask))


class DeformableFusionBlock(nn.Module):
    """One fusion block: each level becomes the mean of deformable convolutions of itself, of the finer level
    (stride 2) and of the coarser level (upsampled), with offsets and masks predicted from the level itself.

    Takes and returns a list of ``[B, C, H_l, W_l]`` maps, finest first, each level half the size of the previous.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        # (dy, dx) offsets of the 9 taps for the three branches, then their 9 modulation masks each.
        self.offset_dim = 3 * 2 * 9
        self.offsets = nn.Conv2d(in_channels, 3 * 3 * 9, 3, padding=1)
        self.mid = _ModulatedDeformConv(in_channels, out_channels)
        self.low = _ModulatedDeformConv(in_channels, out_channels, stride=2)
        self.high = _ModulatedDeformConv(in_channels, out_channels)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, DeformConv2d)):
                nn.init.normal_(module.weight, 0.0, 0.01)
        # Zero offsets and masks of 0.5 at start: the block begins as plain convolutions.
        nn.init.zeros_(self.offsets.weight)
        nn.init.zeros_(self.offsets.bias)

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, x in enumerate(levels):
            predicted = self.offsets(x)
            offsets = predicted[:, : self.offset_dim].chunk(3, dim=1)
            masks = predicted[:, self.offset_dim :].sigmoid().chunk(3, dim=1)
            total = self.mid(x, offsets[0], masks[0])
            count = 1
            if i > 0:
                total = total + self.low(levels[i - 1], offsets[1], masks[1])
                count += 1
            if i < len(levels) - 1:
                coarse = F.interpolate(levels[i + 1], size=x.shape[-2:], mode="bilinear", align_corners=True)
                total = total + self.high(coarse, offsets[2], masks[2])
                count += 1
            out.append(total / count)
        return out


class MASAAdapter(nn.Module):
    """Backbone maps → fused pyramid of ``out_channels`` maps named ``"p0"``, ``"p1"``, … (finest first).

    ``in_channels`` / ``strides``: those of the backbone's maps (four equal strides = ViT taps, spread by
    :class:`SimplePyramid`); ``num_blocks``: deformable fusion blocks (3 in MASA's released recipe). The pyramid
    has the backbone's levels plus one max-pooled level; :attr:`strides` lists the output strides.
    """

    def __init__(self, in_channels: list[int], strides: list[int], out_channels: int = 256, num_blocks: int = 3):
        super().__init__()
        self.pyramid = None
        if len(set(strides)) == 1:
            if len(strides) != 4 or len(set(in_channels)) != 1:
                raise ValueError(f"single-stride backbones need 4 maps of equal width, got {in_channels}")
            self.pyramid = SimplePyramid(in_channels[0])
            strides = [strides[0] // 4, strides[0] // 2, strides[0], strides[0] * 2]
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=LastLevelMaxPool())
        self.fusion = nn.ModuleList(DeformableFusionBlock(out_channels, out_channels) for _ in range(num_blocks))
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
