"""The paper's augmentations and a PyTorch ``Dataset`` that draws images on a canvas.

The paper (Sec. 3.3) augments training images with random cropping, Gaussian blur (p = 0.25),
Gaussian noise, brightness and contrast changes and horizontal flips (:func:`train_augment`) and
normalises with ImageNet's mean and standard deviation. :class:`CanvasDataset` draws each image
on its canvas (:class:`CanvasStore` keeps them drawn), augments the gray channel, copies it to
R, G, B, and seeds each item from ``(seed, epoch, index)``: call :meth:`CanvasDataset.set_epoch`
every epoch. See docs/DEVELOPERS.md, *Augmentations (transforms)*.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ctlib.canvas import Box, fit_to_canvas
from ctlib.data import CTDataset, read_grayscale
from ctlib.files import atomic_write
from ctlib.paths import cache_dir

if TYPE_CHECKING:
    import albumentations as A

# albumentations checks PyPI for a newer version when imported, unless this is set; set here,
# before any import of it (ours is lazy: see train_augment), as it was when it was eager
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__all__ = [
    "FLAT_FILL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AugmentConfig",
    "CanvasDataset",
    "CanvasStore",
    "draw_canvas",
    "item_seed",
    "normalize",
    "seed_augment",
    "train_augment",
]

log = logging.getLogger(__name__)

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
    # lazy: only the CPU path augments with albumentations; a bare GPU machine lacks it
    import albumentations as A

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


def seed_augment(pipeline: A.Compose, seed: int) -> A.Compose:
    """Seed ``pipeline`` so that each of its transforms draws its own, independent numbers.

    ``Compose.set_random_seed(seed)`` gives every transform the same seed: each one's first
    draw (whether it applies) is then the same number, and so are the next. Here each
    transform gets its own seed, derived from ``seed``. Returns the pipeline.
    """
    pipeline.set_random_seed(seed)
    states = np.random.SeedSequence(seed).generate_state(len(pipeline.transforms))
    for transform, state in zip(pipeline.transforms, states, strict=True):
        transform.set_random_seed(int(state))
    return pipeline


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


def draw_canvas(
    path: str | os.PathLike[str], size: tuple[int, int], content: str = "image"
) -> tuple[np.ndarray, Box]:
    """One image file drawn on a canvas of ``size``: ``(2-D uint8 canvas, placement Box)``.

    ``content="flat"`` fills the placement box with :data:`FLAT_FILL` instead of the slice.
    """
    canvas, box = fit_to_canvas(read_grayscale(path), size)
    if content == "flat":
        canvas = np.zeros_like(canvas)
        canvas[box.y : box.y + box.height, box.x : box.x + box.width] = FLAT_FILL
    return canvas, box


class CanvasStore:
    """Every image of a data set drawn once on one canvas: ``(N, H, W)`` uint8 and the boxes.

    The images are decoded and drawn once per data set, canvas size and content, and kept
    on disk under ``<cache>/canvases/`` (``CTLIB_CACHE_DIR``), so that the next fold, the
    next cell of a sweep or the next session loads one array instead of decoding every
    file again. The cache file's name is a hash of the canvas, the content and every
    image's path, size and modification time: a changed or replaced image makes a new one.
    SARS-CoV-2 CT at Table 1's 349 x 253 takes 220 MB.

    Args:
        paths: the image files (e.g. ``dataset.frame["path"]``).
        size: canvas ``(width, height)``.
        content: ``"image"`` or ``"flat"`` (see :class:`CanvasDataset`).
        cache: keep the array on disk (``True``: under ``<cache>/canvases``; a folder:
            there; ``False``: in memory only).
        progress: a progress bar while drawing.

    Example:
        >>> store = CanvasStore(dataset.frame["path"], (224, 162))  # doctest: +SKIP
        >>> canvas, box = store.get(dataset.frame["path"][0])  # doctest: +SKIP
    """

    FORMAT = 1

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        size: tuple[int, int],
        *,
        content: str = "image",
        cache: bool | str | os.PathLike[str] = True,
        progress: bool = True,
    ) -> None:
        self.paths = [str(p) for p in paths]
        if len(set(self.paths)) != len(self.paths):
            raise ValueError("CanvasStore got the same image path twice; pass each file once.")
        self.size = (int(size[0]), int(size[1]))
        fit_to_canvas(np.zeros((1, 1), np.uint8), self.size)  # validates the size early
        if content not in ("image", "flat"):
            raise ValueError(f"content must be 'image' or 'flat', got {content!r}.")
        self.content = content
        self.row = {path: i for i, path in enumerate(self.paths)}
        folder = None
        if cache is True:
            folder = cache_dir() / "canvases"
        elif cache:
            folder = Path(cache)
        self.file = folder / f"{self.key()}.npz" if folder is not None else None
        self.canvases, self.boxes = self._load() if self._cached() else self._draw(progress)

    def key(self) -> str:
        """The cache key: the canvas, the content and each file's path, size and mtime."""
        digest = hashlib.sha256(f"{self.FORMAT}|{self.size}|{self.content}".encode())
        for path in self.paths:
            stat = os.stat(path)
            digest.update(f"|{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        width, height = self.size
        return f"{width}x{height}-{self.content}-{len(self.paths)}-{digest.hexdigest()[:20]}"

    def _cached(self) -> bool:
        return self.file is not None and self.file.is_file()

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        try:
            with np.load(self.file) as saved:
                canvases, boxes = saved["canvases"], saved["boxes"]
        except (OSError, ValueError, KeyError) as error:  # a damaged cache is drawn again
            log.warning("the canvas cache %s is unreadable (%s); drawing again", self.file, error)
            return self._draw(True)
        width, height = self.size
        if canvases.shape != (len(self.paths), height, width) or boxes.shape != (
            len(self.paths),
            4,
        ):
            return self._draw(True)
        return canvases, boxes

    def _draw(self, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        width, height = self.size
        canvases = np.empty((len(self.paths), height, width), np.uint8)
        boxes = np.empty((len(self.paths), 4), np.int32)
        for i, path in enumerate(
            tqdm(self.paths, desc="canvases", disable=not progress, unit="img", leave=False)
        ):
            canvases[i], box = draw_canvas(path, self.size, self.content)
            boxes[i] = (box.x, box.y, box.width, box.height)
        if self.file is not None:
            atomic_write(self.file, lambda tmp: np.savez(tmp, canvases=canvases, boxes=boxes))
        return canvases, boxes

    def __len__(self) -> int:
        return len(self.paths)

    def __contains__(self, path: object) -> bool:
        return str(path) in self.row

    def rows(self, paths: Sequence[str]) -> np.ndarray:
        """The store's row of each path (KeyError naming the first path it lacks)."""
        try:
            return np.fromiter((self.row[str(p)] for p in paths), np.int64, count=len(paths))
        except KeyError as error:
            raise KeyError(
                f"{error.args[0]} is not in this CanvasStore (built from {len(self)} images); "
                "build the store from the whole data set's paths."
            ) from None

    def get(self, path: str | os.PathLike[str]) -> tuple[np.ndarray, Box]:
        """The canvas and placement box of one image."""
        i = int(self.rows([str(path)])[0])
        x, y, width, height = (int(v) for v in self.boxes[i])
        return self.canvases[i], Box(x, y, width, height)


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
        store: a :class:`CanvasStore` holding every image of the data set drawn on this
            canvas (decoded once, cached on disk); the canvases then come from it and
            ``cache`` is not needed. The GPU data path (:mod:`ctlib.batches`) reads its
            canvases through :meth:`canvas_array`.

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
        store: CanvasStore | None = None,
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
        self.augment = augment
        self.pipeline = train_augment(self.size, augment, seed=seed) if train else None
        if store is not None and (store.size != self.size or store.content != content):
            raise ValueError(
                f"The CanvasStore holds {store.content!r} canvases of {store.size}, this data "
                f"set wants {content!r} at {self.size}; build the store with the same ones."
            )
        self.store = store
        self.rows = store.rows(self.paths) if store is not None else None
        self.cache: dict[int, tuple[np.ndarray, Box]] | None = (
            {} if cache and store is None else None
        )

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch so that each epoch sees new (but reproducible) augmentations."""
        self.epoch = int(epoch)

    def canvas(self, index: int) -> tuple[np.ndarray, Box]:
        """The un-augmented 2-D uint8 canvas of item ``index`` and its placement box."""
        if self.store is not None:
            return self.store.get(self.paths[index])
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        result = draw_canvas(self.paths[index], self.size, self.content)
        if self.cache is not None:
            self.cache[index] = result
        return result

    def canvas_array(self, progress: bool = False) -> np.ndarray:
        """Every un-augmented canvas of this data set, in order, as ``(N, H, W)`` uint8."""
        if self.store is not None:
            return self.store.canvases[self.rows]
        width, height = self.size
        out = np.empty((len(self), height, width), np.uint8)
        for index in tqdm(range(len(self)), desc="canvases", disable=not progress, unit="img"):
            out[index] = self.canvas(index)[0]
        return out

    def precache(self, progress: bool = True) -> None:
        """Decode every image onto its canvas now (in this process)."""
        if self.cache is None:  # no cache, or a CanvasStore (drawn already)
            return
        for index in tqdm(range(len(self)), desc="canvases", disable=not progress, unit="img"):
            self.canvas(index)

    def augmented(self, index: int, epoch: int | None = None) -> np.ndarray:
        """The 2-D uint8 canvas of item ``index`` after the augmentation of ``epoch`` (by
        default the one :meth:`set_epoch` set)."""
        canvas, _ = self.canvas(index)
        if self.pipeline is None:
            return canvas
        epoch = self.epoch if epoch is None else epoch
        seed_augment(self.pipeline, item_seed(self.seed, epoch, index))
        return self.pipeline(image=canvas)["image"]

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``index``, or ``(epoch, index)``: the item as that epoch augments it (how the
        training's persistent DataLoader workers learn the epoch)."""
        epoch = None
        if isinstance(index, tuple):
            epoch, index = index
        image = normalize(self.augmented(index, epoch), self.mean, self.std)
        return image, torch.tensor(self.labels[index])
