"""The GPU data path: canvases held on the device, the paper's augmentations on whole batches.

:class:`DeviceBatches` keeps a data set's canvases on the device (drawn once by
:class:`ctlib.transforms.CanvasStore`); :func:`augment_batch` applies the paper's augmentations
(Sec. 3.3, as :func:`ctlib.transforms.train_augment` does per image) to a whole batch, drawing
from one device generator seeded by ``(seed, epoch)``; :func:`normalize_batch` copies gray to
R, G, B and normalises. ``Runtime(data_path="auto")`` picks this path on CUDA. Why, and how it
matches the CPU path: docs/DEVELOPERS.md, *The GPU data path (batches)*.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.nn.functional import conv2d, grid_sample, pad

from ctlib.transforms import IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, CanvasDataset, item_seed

__all__ = ["DeviceBatches", "augment_batch", "blur_kernel_size", "gaussian_blur", "normalize_batch"]


def blur_kernel_size(sigma: float) -> int:
    """The Gaussian kernel's side for ``sigma``, as albumentations sizes it (3.5 sigma a side)."""
    size = int(sigma * 3.5) * 2 + 1
    return size + 1 if size % 2 == 0 else size


def _uniform(
    low: float, high: float, n: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _happens(p: float, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) < p


def _column(mask: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, 1, 1, 1)


def _uint8_range(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp_(0.0, 255.0)


def augment_batch(
    images: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """The paper's train-time augmentations on a whole batch (see the module docstring).

    Args:
        images: ``(B, 1, H, W)`` float32 gray canvases in 0..255, on any device.
        config: the augmentations (the same :class:`~ctlib.transforms.AugmentConfig` as the
            CPU path).
        generator: a ``torch.Generator`` on ``images``' device; every draw comes from it.

    Returns:
        ``(B, 1, H, W)`` float32, still 0..255 (whole numbers, as uint8 would be).
    """
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"augment_batch expects (B, 1, H, W) gray images, got {images.shape}.")
    n, _, height, width = images.shape
    device = images.device
    x = images.float()

    # 1. random resized crop, at the canvas' aspect ratio (no stretch, no shear)
    crop = _happens(config.crop_p, n, generator, device)
    area = _uniform(*config.crop_scale, n, generator, device) * (height * width)
    ratio = width / height
    crop_w = torch.sqrt(area * ratio).round().clamp(1, width)
    crop_h = torch.sqrt(area / ratio).round().clamp(1, height)
    x0 = (torch.rand(n, generator=generator, device=device) * (width - crop_w + 1)).floor()
    y0 = (torch.rand(n, generator=generator, device=device) * (height - crop_h + 1)).floor()
    crop_w = torch.where(crop, crop_w, torch.full_like(crop_w, width))
    crop_h = torch.where(crop, crop_h, torch.full_like(crop_h, height))
    x0, y0 = torch.where(crop, x0, 0.0), torch.where(crop, y0, 0.0)
    cropped = _resize_crops(x, x0, y0, crop_w, crop_h)
    x = torch.where(_column(crop), _uint8_range(cropped), x)

    # 2. Gaussian blur (p = 0.25 in the paper); one kernel size, from the largest sigma
    blur = _happens(config.blur_p, n, generator, device)
    sigma = _uniform(*config.blur_sigma, n, generator, device)
    if config.blur_p > 0:
        size = min(blur_kernel_size(max(config.blur_sigma)), _odd_below(min(height, width)))
        blurred = gaussian_blur(x, sigma, size)
        x = torch.where(_column(blur), _uint8_range(blurred), x)

    # 3. Gaussian noise, its standard deviation drawn per image
    noisy = _happens(config.noise_p, n, generator, device)
    std = _uniform(*config.noise_std, n, generator, device) * 255.0
    noise = torch.randn(x.shape, generator=generator, device=device) * std.view(-1, 1, 1, 1)
    # albumentations (albucore's add on uint8) adds the noise truncated towards zero
    x = torch.where(_column(noisy), (x + noise.trunc()).clamp_(0.0, 255.0), x)

    # 4. brightness and contrast: x * alpha + beta * 255 (albumentations, brightness by max)
    change = _happens(config.brightness_contrast_p, n, generator, device)
    alpha = 1.0 + _uniform(-config.contrast, config.contrast, n, generator, device)
    beta = _uniform(-config.brightness, config.brightness, n, generator, device) * 255.0
    adjusted = x * alpha.view(-1, 1, 1, 1) + beta.view(-1, 1, 1, 1)
    # albucore's lookup table truncates (it does not round)
    x = torch.where(_column(change), adjusted.clamp_(0.0, 255.0).trunc_(), x)

    # 5. horizontal flip
    flip = _happens(config.hflip_p, n, generator, device)
    return torch.where(_column(flip), x.flip(-1), x)


def _resize_crops(
    x: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor, crop_w: torch.Tensor, crop_h: torch.Tensor
) -> torch.Tensor:
    """Each image's box ``(x0, y0, crop_w, crop_h)`` resized back to the whole canvas, as
    OpenCV's bilinear ``resize`` of the cropped array does: destination pixel ``d`` samples
    the source at ``x0 + (d + 0.5) * crop_w / W - 0.5``, clamped to the crop (its edge pixels
    repeat; nothing outside the crop is read). kornia's ``crop_and_resize`` maps the box's
    corner pixels onto the output's corners instead, a slightly different sampling, so the
    grid is made here and sampled with ``grid_sample``."""
    n, _, height, width = x.shape
    dx = torch.arange(width, device=x.device, dtype=x.dtype) + 0.5
    dy = torch.arange(height, device=x.device, dtype=x.dtype) + 0.5
    sx = x0[:, None] + dx[None] * (crop_w / width)[:, None] - 0.5
    sy = y0[:, None] + dy[None] * (crop_h / height)[:, None] - 0.5
    sx = torch.minimum(torch.maximum(sx, x0[:, None]), (x0 + crop_w - 1)[:, None])
    sy = torch.minimum(torch.maximum(sy, y0[:, None]), (y0 + crop_h - 1)[:, None])
    # pixel -> [-1, 1] with align_corners=True (pixel centres at -1 and 1)
    gx = (2 * sx / max(width - 1, 1) - 1)[:, None, :].expand(n, height, width)
    gy = (2 * sy / max(height - 1, 1) - 1)[:, :, None].expand(n, height, width)
    grid = torch.stack([gx, gy], dim=-1)
    return grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Blur each image of ``x`` ``(B, 1, H, W)`` with a Gaussian of its own ``sigma`` ``(B,)``,
    ``size`` x ``size`` taps, mirrored borders (as OpenCV's and kornia's ``reflect``).

    Separable, as a grouped convolution (one group per image): the kernels are computed on the
    device from ``sigma``, and nothing is read back to the host (kornia's ``gaussian_blur2d``
    checks ``sigma > 0`` on the host, a synchronisation per batch on a GPU).
    """
    n, _, height, width = x.shape
    taps = torch.arange(size, device=x.device, dtype=x.dtype) - (size // 2)
    kernel = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None].to(x.dtype) ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, size)
    half = size // 2
    rows = pad(x.reshape(1, n, height, width), (half, half, 0, 0), mode="reflect")
    rows = conv2d(rows, kernel.view(n, 1, 1, size), groups=n)
    cols = pad(rows, (0, 0, half, half), mode="reflect")
    return conv2d(cols, kernel.view(n, 1, size, 1), groups=n).view(n, 1, height, width)


def _odd_below(side: int) -> int:
    """The largest odd kernel side a mirrored border allows on an image side of ``side``."""
    return side if side % 2 == 1 else side - 1


def normalize_batch(
    gray: torch.Tensor,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """``(B, 1, H, W)`` gray in 0..255 -> ``(B, 3, H, W)`` normalised float32 (R = G = B).

    The same arithmetic as :func:`ctlib.transforms.normalize`, for a batch on any device.
    ``mean`` and ``std`` may be ``(1, 3, 1, 1)`` tensors on the device already (as
    :class:`DeviceBatches` keeps them): then nothing is copied from the host per batch.
    """
    mean_t = _constant(mean, gray.device)
    std_t = _constant(std, gray.device)
    rgb = (gray.float() / 255.0).expand(-1, 3, -1, -1)
    return ((rgb - mean_t) / std_t).contiguous(memory_format=memory_format)


def _constant(values: Sequence[float] | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values
    return torch.tensor(values, dtype=torch.float32, device=device).view(1, 3, 1, 1)


class DeviceBatches:
    """Batches drawn on the training device from canvases held there: the GPU data path.

    The canvases (decoded once, see :class:`~ctlib.transforms.CanvasStore`) and labels move
    to ``device`` when this object is made; each batch is then gathered, augmented (when
    ``augment`` is given: a training set) and normalised there. The augmentation is seeded
    from ``(seed, epoch)``. Make one from a data set with :meth:`from_dataset`.

    Args:
        canvases: ``(N, H, W)`` uint8 gray canvases (array or tensor).
        labels: ``(N,)`` labels (1.0: COVID).
        batch_size: images per batch.
        device: where the canvases live and the batches are made.
        augment: the training augmentations; None for evaluation.
        mean, std: the network's normalisation (three values each).
        seed: the run's seed.
        memory_format: of the returned images (channels-last for the kit's training).

    Example:
        >>> batches = DeviceBatches.from_dataset(train_set, batch_size=32, device="cuda")
        ... # doctest: +SKIP
        >>> for images, labels in batches.epoch(0, order=torch.randperm(len(batches))):
        ...     ...  # doctest: +SKIP
    """

    def __init__(
        self,
        canvases: np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor,
        *,
        batch_size: int,
        device: str | torch.device,
        augment: AugmentConfig | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        seed: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        canvases = torch.as_tensor(canvases)
        if canvases.ndim != 3 or canvases.dtype != torch.uint8:
            raise ValueError(
                f"DeviceBatches wants (N, H, W) uint8 canvases, got {canvases.dtype} "
                f"{tuple(canvases.shape)}."
            )
        if len(labels) != len(canvases):
            raise ValueError(f"{len(canvases)} canvases but {len(labels)} labels.")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.memory_format = memory_format
        self.canvases = canvases.to(self.device)[:, None]
        self.labels = torch.as_tensor(labels, dtype=torch.float32).to(self.device)
        self.augment = augment
        self.mean, self.std = tuple(mean), tuple(std)
        # built once: a tensor made from Python numbers is a host-to-device copy per batch
        self._mean = _constant(self.mean, self.device)
        self._std = _constant(self.std, self.device)
        self.seed = seed

    @classmethod
    def from_dataset(
        cls,
        dataset: CanvasDataset,
        *,
        batch_size: int,
        device: str | torch.device,
        memory_format: torch.memory_format = torch.contiguous_format,
        progress: bool = False,
    ) -> DeviceBatches:
        """The batches of a :class:`~ctlib.transforms.CanvasDataset`: its canvases, labels,
        normalisation, seed and (a training set's) augmentations."""
        return cls(
            dataset.canvas_array(progress),
            dataset.labels,
            batch_size=batch_size,
            device=device,
            augment=dataset.augment if dataset.train else None,
            mean=dataset.mean,
            std=dataset.std,
            seed=dataset.seed,
            memory_format=memory_format,
        )

    def __len__(self) -> int:
        return len(self.labels)

    def n_batches(self, drop_last: bool = False) -> int:
        """How many batches an epoch has."""
        count = len(self) / self.batch_size
        return math.floor(count) if drop_last else math.ceil(count)

    def epoch(
        self,
        epoch: int = 0,
        order: Sequence[int] | torch.Tensor | None = None,
        *,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images (B, 3, H, W), labels (B,))`` on the device, in ``order`` (or in
        the data set's order), augmented when the data set is a training set."""
        index = (
            torch.arange(len(self), device=self.device)
            if order is None
            else torch.as_tensor(order, dtype=torch.long).to(self.device)
        )
        generator = None
        if self.augment is not None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(item_seed(self.seed, epoch, 2**32 - 3))
        for b in range(self.n_batches(drop_last)):
            rows = index[b * self.batch_size : (b + 1) * self.batch_size]
            gray = self.canvases[rows].float()
            if generator is not None:
                gray = augment_batch(gray, self.augment, generator)
            yield (
                normalize_batch(gray, self._mean, self._std, self.memory_format),
                self.labels[rows],
            )
