"""The paper's augmentations and a PyTorch ``Dataset`` that draws images on a canvas.

Alshazly et al. (2020, Sec. 3.3) augment training images with random cropping,
Gaussian blur (p = 0.25), random Gaussian noise, brightness and contrast changes and
horizontal flips -- no rotation or shear -- and normalise with the ImageNet mean and
standard deviation. Evaluation images are only drawn on the canvas and normalised.

Pipeline per image::

    file --read_grayscale--> 2-D uint8 --fit_to_canvas--> canvas (cached)
         --augment (train only, 2-D)--> copy to R, G, B --normalise--> float tensor (3, H, W)

Augmenting the single gray channel and copying it to R, G and B afterwards gives the
same result as augmenting three identical channels, at a third of the cost.

Reproducibility: albumentations 2.x ignores global seeds (only ``Compose(seed=...)``
and ``Compose.set_random_seed`` count). :class:`CanvasDataset` therefore reseeds the
augmentation pipeline for *every item* from ``(seed, epoch, index)``. The augmentation
of an image thus depends only on those three numbers: a run is reproducible for any
number of DataLoader workers, and no two workers (or epochs) repeat each other's
augmentations. Call :meth:`CanvasDataset.set_epoch` at the start of each epoch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no PyPI version check on import

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from ctlib.canvas import Box, fit_to_canvas  # noqa: E402
from ctlib.data import CTDataset, read_grayscale  # noqa: E402

__all__ = [
    "FLAT_FILL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AugmentConfig",
    "CanvasDataset",
    "item_seed",
    "normalize",
    "train_augment",
]

#: The ImageNet statistics the paper normalises with (Sec. 3.3); each network's registry
#: entry (:class:`ctlib.models.ModelSpec`) names the ones its weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The gray level of the placement box in ``content="flat"`` canvases (padding is 0).
FLAT_FILL = 128


@dataclass(frozen=True)
class AugmentConfig:
    """Train-time augmentations (Alshazly et al. 2020, Sec. 3.3).

    The paper names the operations and the blur probability; the magnitudes are not
    given, so these are moderate values (documented, easy to change).

    Attributes:
        crop_scale: area fraction kept by the random crop, which is resized back to the
            canvas with the canvas' aspect ratio (no stretch, no shear).
        crop_p: probability of cropping.
        blur_p: Gaussian blur probability -- 0.25 in the paper.
        blur_sigma: blur sigma range in pixels.
        noise_std: Gaussian noise standard deviation range, as a fraction of 255.
        noise_p: probability of adding noise.
        brightness: brightness change limit (fraction of the range).
        contrast: contrast change limit (fraction).
        brightness_contrast_p: probability of the brightness/contrast change.
        hflip_p: horizontal flip probability.
    """

    crop_scale: tuple[float, float] = (0.75, 1.0)
    crop_p: float = 0.5
    blur_p: float = 0.25  # paper: "blur with a probability of 0.25"
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    noise_std: tuple[float, float] = (0.01, 0.05)
    noise_p: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    brightness_contrast_p: float = 0.5
    hflip_p: float = 0.5


def train_augment(
    size: tuple[int, int], config: AugmentConfig = AugmentConfig(), seed: int | None = None
) -> A.Compose:
    """The paper's train-time augmentations for a canvas of ``size`` ``(width, height)``.

    Works on 2-D uint8 canvases and returns 2-D uint8 canvases of the same size.
    """
    width, height = size
    ratio = width / height
    return A.Compose(
        [
            A.RandomResizedCrop(
                size=(height, width), scale=config.crop_scale, ratio=(ratio, ratio), p=config.crop_p
            ),
            A.GaussianBlur(sigma_limit=config.blur_sigma, blur_limit=0, p=config.blur_p),
            A.GaussNoise(std_range=config.noise_std, p=config.noise_p),
            A.RandomBrightnessContrast(
                brightness_limit=config.brightness,
                contrast_limit=config.contrast,
                p=config.brightness_contrast_p,
            ),
            A.HorizontalFlip(p=config.hflip_p),
        ],
        seed=seed,
    )


def normalize(
    canvas: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """2-D uint8 canvas -> float tensor ``(3, H, W)``: gray copied to R, G, B, then normalised."""
    if canvas.ndim != 2 or canvas.dtype != np.uint8:
        raise ValueError(
            f"normalize expects a 2-D uint8 canvas, got {canvas.dtype} {canvas.shape}."
        )
    gray = torch.from_numpy(np.ascontiguousarray(canvas)).to(torch.float32).div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (gray.unsqueeze(0).expand(3, -1, -1) - mean_t) / std_t


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one item: a hash of ``(seed, epoch, index)``."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class CanvasDataset(Dataset):
    """Images of a data set drawn on an architecture's canvas, as ``(tensor, label)``.

    Args:
        dataset: a :class:`ctlib.data.CTDataset`, or its ``frame`` (``path``, ``label``).
        size: canvas ``(width, height)``, e.g. ``get_spec("resnet18").canvas``.
        train: apply the paper's augmentations.
        mean, std: normalisation; ImageNet's by default (``spec.mean``/``spec.std``).
        augment: the augmentation config (train only).
        seed: the run's seed; with the epoch and index it fixes each augmentation.
        content: ``"image"`` draws the slice; ``"flat"`` fills its placement box with
            uniform gray (:data:`FLAT_FILL`), keeping only the box's geometry -- the
            padding-geometry probe (can a network tell the classes apart from where the
            image sits on the canvas alone?).
        cache: keep decoded canvases in memory (the sets are small: SARS-CoV-2 at
            349 x 253 takes 220 MB), so decoding is not redone every epoch. Fill the
            cache with :meth:`precache` before creating DataLoader workers, so the
            workers share it.

    Items are ``(float32 tensor (3, H, W), float32 label)``; the label is 1.0 for
    COVID, as binary cross-entropy wants.
    """

    def __init__(
        self,
        dataset: CTDataset | pd.DataFrame,
        size: tuple[int, int],
        *,
        train: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        augment: AugmentConfig = AugmentConfig(),
        seed: int = 0,
        cache: bool = True,
        content: str = "image",
    ) -> None:
        frame = dataset.frame if isinstance(dataset, CTDataset) else dataset
        missing = {"path", "label"} - set(frame.columns)
        if missing:
            raise ValueError(f"CanvasDataset needs columns 'path' and 'label'; missing {missing}.")
        if frame["label"].isna().any():
            raise ValueError("CanvasDataset needs a label for every image; some are missing.")
        self.paths: list[str] = frame["path"].astype(str).tolist()
        self.labels = np.asarray(frame["label"], dtype=np.float32)
        self.size = (int(size[0]), int(size[1]))
        fit_to_canvas(np.zeros((1, 1), np.uint8), self.size)  # validates the size early
        if content not in ("image", "flat"):
            raise ValueError(f"content must be 'image' or 'flat', got {content!r}.")
        self.content = content
        self.train = train
        self.mean, self.std = tuple(mean), tuple(std)
        self.seed = seed
        self.epoch = 0
        self.pipeline = train_augment(self.size, augment, seed=seed) if train else None
        self.cache: dict[int, tuple[np.ndarray, Box]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch so that each epoch sees new (but reproducible) augmentations."""
        self.epoch = int(epoch)

    def canvas(self, index: int) -> tuple[np.ndarray, Box]:
        """The un-augmented 2-D uint8 canvas of item ``index`` and its placement box."""
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        result = fit_to_canvas(read_grayscale(self.paths[index]), self.size)
        if self.content == "flat":
            canvas, box = result
            canvas = np.zeros_like(canvas)
            canvas[box.y : box.y + box.height, box.x : box.x + box.width] = FLAT_FILL
            result = (canvas, box)
        if self.cache is not None:
            self.cache[index] = result
        return result

    def precache(self, progress: bool = True) -> None:
        """Decode every image onto its canvas now (in this process)."""
        if self.cache is None:
            return
        for index in tqdm(range(len(self)), desc="canvases", disable=not progress, unit="img"):
            self.canvas(index)

    def augmented(self, index: int) -> np.ndarray:
        """The 2-D uint8 canvas of item ``index`` after this epoch's augmentation."""
        canvas, _ = self.canvas(index)
        if self.pipeline is None:
            return canvas
        self.pipeline.set_random_seed(item_seed(self.seed, self.epoch, index))
        return self.pipeline(image=canvas)["image"]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = normalize(self.augmented(index), self.mean, self.std)
        return image, torch.tensor(self.labels[index])
