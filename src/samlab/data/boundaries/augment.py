"""DirectSAM's image preprocessing and augmentation, with every random draw from a numpy Generator.

DirectSAM (``data/transforms.py``) resizes each image to the model resolution with PIL's bicubic filter and, when
training, applies one torchvision ``RandomApply(p=0.25)`` around three transforms in turn: ``GaussianBlur(3, sigma
0.1-2)``, ``ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.5)`` (its four adjustments in a random
order) and ``RandomGrayscale(p=0.2)``; the target is never changed. :class:`BoundaryAugment` draws the same
parameters from the same distributions (:meth:`BoundaryAugment.sample`) and applies them with torchvision's own
functions on the PIL image (:meth:`BoundaryAugment.apply`), so a given draw gives DirectSAM's pixels. A horizontal
flip (image and target) is samlab's addition, off unless ``flip_prob`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torchvision.transforms.functional as TF
from PIL import Image

COLOR_ADJUSTMENTS: tuple[str, ...] = ("brightness", "contrast", "saturation", "hue")


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """``[H, W, 3]`` uint8 image -> ``[size, size, 3]`` uint8, PIL bicubic (DirectSAM's ``image.resize``)."""
    return np.array(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))


@dataclass(frozen=True)
class AugmentParams:
    """One draw of :class:`BoundaryAugment`: blur ``sigma``; jitter factors (``brightness``, ``contrast``,
    ``saturation`` in [1 - 0.5, 1 + 0.5], ``hue`` shift in [-0.5, 0.5]) applied in ``order`` (indices into
    :data:`COLOR_ADJUSTMENTS`); ``grayscale`` last; ``flip`` (horizontal, image and target)."""

    sigma: float
    brightness: float
    contrast: float
    saturation: float
    hue: float
    order: tuple[int, ...]
    grayscale: bool
    flip: bool = False


class BoundaryAugment:
    """DirectSAM's training augmentation (see the module docstring).

    Args:
        p: probability of the whole blur + jitter + grayscale group (DirectSAM: 0.25).
        grayscale_prob: probability of grayscale within the group (DirectSAM: 0.2).
        flip_prob: horizontal flip probability, drawn apart from the group (DirectSAM: none, 0).
    """

    def __init__(self, p: float = 0.25, grayscale_prob: float = 0.2, flip_prob: float = 0.0) -> None:
        for name, value in (("p", p), ("grayscale_prob", grayscale_prob), ("flip_prob", flip_prob)):
            if not 0 <= value <= 1:
                raise ValueError(f"BoundaryAugment {name} must be in [0, 1], got {value}")
        self.p = p
        self.grayscale_prob = grayscale_prob
        self.flip_prob = flip_prob

    def sample(self, rng: np.random.Generator) -> AugmentParams | None:
        """A draw of the parameters; None when neither the group nor a flip applies."""
        applied = rng.random() < self.p
        flip = bool(rng.random() < self.flip_prob)
        if not applied:
            return AugmentParams(0.0, 1.0, 1.0, 1.0, 0.0, (), False, flip) if flip else None
        sigma = float(rng.uniform(0.1, 2.0))
        order = tuple(int(i) for i in rng.permutation(len(COLOR_ADJUSTMENTS)))
        brightness, contrast, saturation = (float(v) for v in rng.uniform(0.5, 1.5, size=3))
        hue = float(rng.uniform(-0.5, 0.5))
        grayscale = bool(rng.random() < self.grayscale_prob)
        return AugmentParams(sigma, brightness, contrast, saturation, hue, order, grayscale, flip)

    @staticmethod
    def apply(image: np.ndarray, params: AugmentParams) -> np.ndarray:
        """``[S, S, 3]`` uint8 image -> the augmented ``[S, S, 3]`` uint8 image (flip not included)."""
        if not params.order:
            return image
        pil = TF.gaussian_blur(Image.fromarray(image), [3, 3], [params.sigma, params.sigma])
        adjust = {
            "brightness": lambda x: TF.adjust_brightness(x, params.brightness),
            "contrast": lambda x: TF.adjust_contrast(x, params.contrast),
            "saturation": lambda x: TF.adjust_saturation(x, params.saturation),
            "hue": lambda x: TF.adjust_hue(x, params.hue),
        }
        for index in params.order:
            pil = adjust[COLOR_ADJUSTMENTS[index]](pil)
        if params.grayscale:
            pil = TF.rgb_to_grayscale(pil, num_output_channels=3)
        return np.array(pil)

    def __call__(
        self, image: np.ndarray, target: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``[S, S, 3]`` uint8 image and ``[S, S]`` bool target -> augmented copies (randomness only from ``rng``)."""
        params = self.sample(rng)
        if params is None:
            return image, target
        image = self.apply(image, params)
        if params.flip:
            image, target = image[:, ::-1], target[:, ::-1]
        return np.ascontiguousarray(image), np.ascontiguousarray(target)
