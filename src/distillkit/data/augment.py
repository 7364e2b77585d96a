"""Batch augmentations: ``batch -> batch`` transforms applied on the device to each training batch.

Teacher and student read the same batch field after the transform, so every augmentation is consistent by
construction (function matching, Beyer et al. 2022). :class:`Mixup`, :class:`Cutmix` and :class:`MixupOrCutmix`
mix samples and their targets; :class:`RandomShift`, :class:`RandomAffine` and :class:`RandomFlip` move pixels;
:class:`Compose` chains them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from distillkit.data.base import UNLABELLED

__all__ = ["Compose", "Cutmix", "Mixup", "MixupOrCutmix", "RandomAffine", "RandomFlip", "RandomShift"]


def _soft_targets(targets: Tensor, num_classes: int) -> Tensor:
    if targets.dtype.is_floating_point:
        return targets
    labelled = targets != UNLABELLED
    one_hot = F.one_hot(targets.clamp_min(0), num_classes).float()
    return one_hot * labelled.unsqueeze(-1)  # unlabelled samples carry no hard-label mass


class Mixup:
    """Mixup (Zhang et al. 2018) as a batch transform: ``x = lam * x_i + (1 - lam) * x_j``.

    Targets become mixed one-hot vectors (unlabelled samples contribute zeros), so the hard-label term still
    works; the teacher sees the mixed input and gives its own soft targets for it.

    Args:
        num_classes: number of classes, for the one-hot targets.
        alpha: ``lam ~ Beta(alpha, alpha)``.
        input_key / target_key: the batch fields to mix.
        generator: optional ``torch.Generator`` (else the global RNG, which checkpoints restore).
    """

    def __init__(
        self, num_classes: int, *, alpha: float = 0.2, input_key: str = "input", target_key: str = "target",
        generator: torch.Generator | None = None,
    ) -> None:
        if alpha <= 0:
            raise ValueError(f"mixup alpha must be > 0, got {alpha}")
        self.num_classes, self.alpha, self.input_key, self.target_key = num_classes, alpha, input_key, target_key
        self.generator = generator

    def _lam_and_perm(self, batch_size: int) -> tuple[float, Tensor]:
        gamma1 = torch._standard_gamma(torch.tensor([self.alpha]), generator=self.generator)
        gamma2 = torch._standard_gamma(torch.tensor([self.alpha]), generator=self.generator)
        lam = float(gamma1 / (gamma1 + gamma2))
        return lam, torch.randperm(batch_size, generator=self.generator)

    def _mix_targets(self, batch: dict[str, Any], perm: Tensor, lam: float) -> None:
        if self.target_key in batch:
            soft = _soft_targets(batch[self.target_key], self.num_classes)
            batch[self.target_key] = lam * soft + (1 - lam) * soft[perm.to(soft.device)]

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch = dict(batch)
        x = batch[self.input_key]
        lam, perm = self._lam_and_perm(x.shape[0])
        batch[self.input_key] = lam * x + (1 - lam) * x[perm.to(x.device)]
        self._mix_targets(batch, perm, lam)
        return batch

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_classes={self.num_classes}, alpha={self.alpha})"


class Cutmix(Mixup):
    """CutMix (Yun et al. 2019): paste a random box (or, for 1-D inputs, a random segment) from another sample.

    ``lam`` is corrected to the true pasted area. Works on ``[B, C, H, W]``, ``[B, C, L]`` and ``[B, L]`` inputs.
    """

    def __init__(self, num_classes: int, *, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(num_classes, alpha=alpha, **kwargs)

    def _box(self, size: int, ratio: float) -> tuple[int, int]:
        cut = int(size * ratio)
        centre = int(torch.randint(size, (1,), generator=self.generator))
        return max(centre - cut // 2, 0), min(centre + cut // 2, size)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch = dict(batch)
        x = batch[self.input_key].clone()
        lam, perm = self._lam_and_perm(x.shape[0])
        spatial = x.shape[2:] if x.dim() >= 3 else x.shape[1:]
        ratio = (1 - lam) ** (1 / len(spatial))
        boxes = [self._box(size, ratio) for size in spatial]
        region = (slice(None), slice(None), *[slice(a, b) for a, b in boxes]) if x.dim() >= 3 else (
            slice(None), slice(boxes[0][0], boxes[0][1]))
        x[region] = x[perm.to(x.device)][region]
        area = 1.0
        for (a, b), size in zip(boxes, spatial):
            area *= (b - a) / size
        batch[self.input_key] = x
        self._mix_targets(batch, perm, 1.0 - area)
        return batch


class MixupOrCutmix:
    """Per batch, Mixup with probability ``p_mixup`` and CutMix otherwise (the timm / DeiT recipe)."""

    def __init__(self, num_classes: int, *, p_mixup: float = 0.5, mixup_alpha: float = 0.2, cutmix_alpha: float = 1.0,
                 generator: torch.Generator | None = None, **kwargs: Any) -> None:
        self.mixup = Mixup(num_classes, alpha=mixup_alpha, generator=generator, **kwargs)
        self.cutmix = Cutmix(num_classes, alpha=cutmix_alpha, generator=generator, **kwargs)
        self.p_mixup, self.generator = p_mixup, generator

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        use_mixup = float(torch.rand((), generator=self.generator)) < self.p_mixup
        return (self.mixup if use_mixup else self.cutmix)(batch)

    def __repr__(self) -> str:
        return f"MixupOrCutmix(p_mixup={self.p_mixup}, {self.mixup!r}, {self.cutmix!r})"


class RandomShift:
    """Translate each input by a random offset of up to ``max_shift`` pixels (or positions, for 1-D inputs).

    Runs on the batch, on the device, with edge values filling the uncovered border. Works on ``[B, C, H, W]``,
    ``[B, C, L]`` and ``[B, L]`` inputs. With KD, teacher and student see the same shifted view (function
    matching), which gives the student many more teacher-labelled points than the raw training set.

    Args:
        max_shift: the largest shift, in pixels.
        input_key: the batch field to shift.
        generator: optional ``torch.Generator`` (else the global RNG, which checkpoints restore).
    """

    def __init__(self, max_shift: int = 2, *, input_key: str = "input", generator: torch.Generator | None = None) -> None:
        if max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift}")
        self.max_shift, self.input_key, self.generator = max_shift, input_key, generator

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        if not self.max_shift:
            return batch
        batch = dict(batch)
        x = batch[self.input_key]
        images = x if x.dim() == 4 else x.reshape(x.shape[0], -1, 1, x.shape[-1])  # 1-D inputs as 1-row images
        size = images.shape[0]
        offsets = torch.randint(-self.max_shift, self.max_shift + 1, (size, 2), generator=self.generator).float()
        if x.dim() != 4:
            offsets[:, 1] = 0.0
        height, width = images.shape[-2:]
        theta = torch.zeros(size, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, 0, 2] = 2 * offsets[:, 0] / width
        theta[:, 1, 2] = 2 * offsets[:, 1] / max(height, 1)
        grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
        shifted = F.grid_sample(images, grid, mode="nearest", padding_mode="border", align_corners=False)
        batch[self.input_key] = shifted.reshape(x.shape)
        return batch

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift})"


class RandomAffine:
    """Rotate, scale and translate each image by random amounts (on the batch, on the device), bilinearly.

    The classic MNIST augmentation: angles uniform in ``[-degrees, degrees]``, zoom uniform in
    ``[1 - scale, 1 + scale]``, whole-pixel shifts of up to ``max_shift``; the border value fills uncovered
    pixels. With KD, teacher and student see the same view (function matching). ``[B, C, H, W]`` inputs.

    Args:
        degrees: the largest rotation, in degrees.
        scale: the largest relative zoom in or out (0.1 = +/- 10%).
        max_shift: the largest translation, in pixels.
        input_key: the batch field to transform.
        generator: optional ``torch.Generator`` (else the global RNG, which checkpoints restore).

    Example:
        >>> x = torch.zeros(2, 1, 8, 8)
        >>> RandomAffine(10, 0.1, 1)({"input": x})["input"].shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, degrees: float = 10.0, scale: float = 0.1, max_shift: int = 2, *, input_key: str = "input",
                 generator: torch.Generator | None = None) -> None:
        if not 0.0 <= degrees <= 180.0:
            raise ValueError(f"degrees must be in [0, 180], got {degrees}")
        if not 0.0 <= scale < 1.0:
            raise ValueError(f"scale must be in [0, 1), got {scale}")
        if max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift}")
        self.degrees, self.scale, self.max_shift = degrees, scale, max_shift
        self.input_key, self.generator = input_key, generator

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch = dict(batch)
        x = batch[self.input_key]
        if x.dim() != 4:
            raise ValueError(f"RandomAffine needs images [B, C, H, W], got {tuple(x.shape)}; for 1-D inputs use "
                             "RandomShift (data.shift) without rotation or scaling")
        size, (height, width) = x.shape[0], x.shape[-2:]
        angle = (torch.rand(size, generator=self.generator) * 2 - 1) * math.radians(self.degrees)
        zoom = 1 + (torch.rand(size, generator=self.generator) * 2 - 1) * self.scale
        offsets = torch.randint(-self.max_shift, self.max_shift + 1, (size, 2), generator=self.generator).float()
        theta = torch.empty(size, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = torch.cos(angle) / zoom
        theta[:, 0, 1] = -torch.sin(angle) / zoom
        theta[:, 1, 0] = torch.sin(angle) / zoom
        theta[:, 0, 2] = 2 * offsets[:, 0] / width
        theta[:, 1, 2] = 2 * offsets[:, 1] / height
        grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
        batch[self.input_key] = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return batch

    def __repr__(self) -> str:
        return f"RandomAffine(degrees={self.degrees}, scale={self.scale}, max_shift={self.max_shift})"


class RandomFlip:
    """Flip each image left-right with probability ``p`` (on the batch, on the device); ``[B, C, H, W]`` inputs."""

    def __init__(self, p: float = 0.5, *, input_key: str = "input", generator: torch.Generator | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p, self.input_key, self.generator = p, input_key, generator

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch = dict(batch)
        x = batch[self.input_key]
        if x.dim() != 4:
            raise ValueError(f"RandomFlip needs images [B, C, H, W], got {tuple(x.shape)}")
        flip = (torch.rand(x.shape[0], generator=self.generator) < self.p).to(x.device)
        batch[self.input_key] = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return batch

    def __repr__(self) -> str:
        return f"RandomFlip(p={self.p})"


class Compose:
    """Apply batch transforms in order."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        for transform in self.transforms:
            batch = transform(batch)
        return batch

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"
