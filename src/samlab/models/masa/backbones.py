"""MASA backbones: multi-scale features of SAM's ViT (frozen), SAM 2's Hiera (frozen) or a torchvision ResNet.

Every backbone maps ``[B, 3, S, S]`` normalised images to a list of feature maps and says their ``out_channels`` and
``strides``; :class:`~samlab.models.masa.adapter.MASAAdapter` turns them into the fused pyramid.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from samlab.errors import DataError

log = logging.getLogger(__name__)

BACKBONES = ("resnet50", "resnet18", "sam", "sam2")

# segment_anything's ViT sizes, with the blocks MASA taps (its `out_indices`).
SAM_VITS: dict[str, dict[str, Any]] = {
    "vit_b": {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn_indexes": [2, 5, 8, 11]},
    "vit_l": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "global_attn_indexes": [5, 11, 17, 23]},
    "vit_h": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "global_attn_indexes": [7, 15, 23, 31]},
}


class Backbone(nn.Module):
    """Base of the MASA backbones: ``forward(images [B, 3, S, S]) -> list of [B, C_i, S / s_i, S / s_i]``.

    ``out_channels`` and ``strides`` describe the returned maps; ``frozen`` says whether the weights are trained.
    """

    out_channels: list[int]
    strides: list[int]
    frozen: bool

    def train(self, mode: bool = True) -> Backbone:
        # A frozen backbone stays in eval mode (no dropout, no BatchNorm statistics updates) when the model trains.
        return super().train(mode and not self.frozen)


def _state_dict(path: str | PathLike[str], prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint (bare state dict, ``{"model": ...}`` or ``{"state_dict": ...}``) under ``prefix``."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(path, "backbone checkpoint is missing") from None
    except Exception as err:  # torch raises many kinds of errors for a file that is not a checkpoint
        raise DataError(path, f"not a torch checkpoint ({err})") from None
    for key in ("model", "state_dict"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict):
        raise DataError(path, f"checkpoint holds a {type(data).__name__}, expected a state dict")
    if prefix and any(k.startswith(prefix) for k in data):
        data = {k[len(prefix) :]: v for k, v in data.items() if k.startswith(prefix)}
    return data


def _load(module: nn.Module, state: dict[str, torch.Tensor], path: str | PathLike[str]) -> None:
    own = module.state_dict()
    used = {k: v for k, v in state.items() if k in own}
    if not used:
        raise DataError(path, f"none of the checkpoint's {len(state)} keys is a parameter of this backbone")
    bad = [k for k, v in used.items() if v.shape != own[k].shape]
    if bad:
        raise DataError(
            path, f"checkpoint tensor '{bad[0]}' is {tuple(used[bad[0]].shape)}, expected {tuple(own[bad[0]].shape)}"
        )
    missing = sorted(set(own) - set(used))
    module.load_state_dict(used, strict=False)
    log.log(
        logging.WARNING if missing else logging.INFO,
        "backbone %s: %d keys loaded, %d missing %s",
        path,
        len(used),
        len(missing),
        missing[:5],
    )


class ResNetBackbone(Backbone):
    """A torchvision ResNet (trainable), as masa-one's backbone: C2, C3, C4, C5 at strides 4, 8, 16, 32
    (``out_indices=(0, 1, 2, 3)``), BatchNorm statistics frozen (mmdet's ``norm_eval=True``: every BatchNorm stays
    in eval mode while the model trains; its affine weights still learn).

    ``depth``: 50 (MASA's ``masa-one`` backbone) or 18 (tiny tests); ``checkpoint``: a local torchvision state dict
    (e.g. ``resnet50-0676ba61.pth``), None for random init; ``norm_eval``: freeze the BatchNorm statistics.
    """

    def __init__(self, depth: int = 50, checkpoint: str | PathLike[str] | None = None, norm_eval: bool = True) -> None:
        super().__init__()
        import torchvision

        if depth not in (18, 50):
            raise ValueError(f"ResNet depth must be 18 or 50, got {depth}")
        net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        if checkpoint is not None:
            _load(net, _state_dict(checkpoint), checkpoint)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        width = 4 if depth == 50 else 1
        self.out_channels = [64 * width, 128 * width, 256 * width, 512 * width]
        self.strides = [4, 8, 16, 32]
        self.frozen = False
        self.norm_eval = norm_eval

    def train(self, mode: bool = True) -> ResNetBackbone:
        super().train(mode)
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(images)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def _resize_sam_tables(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Interpolate a SAM checkpoint's absolute position embedding and global-attention relative-position tables to
    the shapes of ``model`` (built for another image size than the checkpoint's 1024)."""
    own = model.state_dict()
    out = dict(state)
    for key, value in state.items():
        if key not in own or own[key].shape == value.shape:
            continue
        if key == "pos_embed":  # [1, H, W, C]
            size = own[key].shape[1:3]
            out[key] = F.interpolate(value.permute(0, 3, 1, 2), size=size, mode="bicubic").permute(0, 2, 3, 1)
        elif key.endswith(("rel_pos_h", "rel_pos_w")):  # [2 * size - 1, head_dim]
            length = own[key].shape[0]
            out[key] = F.interpolate(value.T[None], size=length, mode="linear")[0].T
    return out


class SAMBackbone(Backbone):
    """SAM's image encoder (``segment_anything.modeling.ImageEncoderViT``), frozen: the outputs of its global-attention
    blocks, all at stride 16 (MASA taps blocks 2, 5, 8, 11 of ViT-B).

    ``variant``: ``"vit_b"``, ``"vit_l"`` or ``"vit_h"``; ``image_size``: input side (multiple of 16);
    ``checkpoint``: a SAM checkpoint (``sam_vit_b_01ec64.pth``; its ``image_encoder.*`` keys are used, position
    tables interpolated when ``image_size`` is not 1024); ``overrides``: ViT settings replacing the variant's
    (``embed_dim``, ``depth``, ``num_heads``, ``global_attn_indexes``, ``window_size``; tiny test models).
    """

    def __init__(
        self,
        variant: str = "vit_b",
        image_size: int = 1024,
        checkpoint: str | PathLike[str] | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        from segment_anything.modeling import ImageEncoderViT

        if variant not in SAM_VITS:
            raise ValueError(f"unknown SAM variant '{variant}'; expected one of {sorted(SAM_VITS)}")
        if image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16 for SAM's ViT, got {image_size}")
        settings = {"window_size": 14, **SAM_VITS[variant], **(overrides or {})}
        self.taps = list(settings["global_attn_indexes"])
        self.encoder = ImageEncoderViT(
            img_size=image_size,
            patch_size=16,
            embed_dim=settings["embed_dim"],
            depth=settings["depth"],
            num_heads=settings["num_heads"],
            mlp_ratio=4.0,
            out_chans=256,
            qkv_bias=True,
            use_rel_pos=True,
            window_size=settings["window_size"],
            global_attn_indexes=tuple(self.taps),
        )
        # MASA uses the blocks' features, not SAM's neck.
        self.encoder.neck = nn.Identity()
        if checkpoint is not None:
            state = _resize_sam_tables(_state_dict(checkpoint, prefix="image_encoder."), self.encoder)
            _load(self.encoder, state, checkpoint)
        self.encoder.requires_grad_(False)
        self.out_channels = [settings["embed_dim"]] * len(self.taps)
        self.strides = [16] * len(self.taps)
        self.frozen = True

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.encoder.patch_embed(images)
        if self.encoder.pos_embed is not None:
            x = x + self.encoder.pos_embed
        features = []
        for index, block in enumerate(self.encoder.blocks):
            x = block(x)
            if index in self.taps:
                features.append(x.permute(0, 3, 1, 2))
        return features


class SAM2Backbone(Backbone):
    """SAM 2's Hiera trunk (built by :func:`samlab.models.sam2.model.build_sam2_model`), frozen: four maps at
    strides 4, 8, 16, 32.

    ``variant``: a SAM 2 variant (``"sam2.1_hiera_b+"``); ``checkpoint``: a SAM 2 checkpoint; ``overrides``: hydra
    overrides of the model config (tiny test models).
    """

    def __init__(
        self,
        variant: str = "sam2.1_hiera_b+",
        image_size: int = 1024,
        checkpoint: str | PathLike[str] | None = None,
        overrides: Sequence[str] = (),
    ) -> None:
        super().__init__()
        from samlab.models.sam2.model import build_sam2_model

        sam2 = build_sam2_model(
            variant, image_size=image_size, checkpoint=checkpoint, train=False, overrides=tuple(overrides)
        )
        self.trunk = sam2.image_encoder.trunk
        self.trunk.requires_grad_(False)
        self.out_channels = list(self.trunk.channel_list[::-1])
        self.strides = [4, 8, 16, 32]
        self.frozen = True

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(self.trunk(images))


def build_backbone(
    name: str,
    image_size: int,
    checkpoint: str | PathLike[str] | None = None,
    options: dict[str, Any] | None = None,
) -> Backbone:
    """The backbone ``name`` (one of :data:`BACKBONES`) for ``image_size`` inputs.

    ``options`` are passed to its class: ``{"variant": "vit_h"}`` for ``sam``, ``{"variant": "sam2.1_hiera_l"}``
    for ``sam2``, ``{"overrides": ...}`` for tiny models.
    """
    options = dict(options or {})
    if name in ("resnet50", "resnet18"):
        return ResNetBackbone(depth=int(name.removeprefix("resnet")), checkpoint=checkpoint, **options)
    if name == "sam":
        return SAMBackbone(image_size=image_size, checkpoint=checkpoint, **options)
    if name == "sam2":
        return SAM2Backbone(image_size=image_size, checkpoint=checkpoint, **options)
    raise ValueError(f"unknown MASA backbone '{name}'; expected one of {BACKBONES}")
