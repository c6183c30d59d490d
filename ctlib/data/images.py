"""Reading images: any file these data sets (or a user's folder) hold, as 2-D ``uint8``.

:func:`read_grayscale` handles 8-bit gray, RGB(A) with R = G = B, true-colour figure crops
(ITU-R 601 luma), palette, CMYK, 16-bit and float images (rescaled from their own min-max
to 0..255), alpha (composited over black, the CT surround) and JPEG data inside ``.png``
names (Pillow reads by content). Empty, truncated and non-image files raise
:class:`~ctlib.errors.ImageReadError` naming the file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from ctlib.errors import ImageReadError
from ctlib.files import sha256_file

__all__ = [
    "IMAGE_SUFFIXES",
    "decode_images",
    "image_format",
    "pixel_hash",
    "read_grayscale",
    "to_grayscale",
]


IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"})


def _stretch(values: np.ndarray) -> np.ndarray:
    """Rescale any numeric array linearly from its own min-max to uint8 0..255."""
    values = values.astype(np.float64)
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Convert a decoded Pillow image of any mode to a 2-D ``uint8`` array.

    * ``L`` is kept; ``1`` becomes 0/255.
    * RGB and colour modes (CMYK, YCbCr, palette, ...) go through RGB to ITU-R 601 luma,
      which is exact for gray RGB (R = G = B).
    * Alpha is composited over black (CT slices have a black surround); a fully opaque
      alpha channel changes nothing.
    * 16-bit, 32-bit integer and float images are rescaled from their own min-max
      to 0..255, unless they already lie in 0..255 (then kept as they are).
    * The EXIF orientation, if any, is applied first.
    """
    image = ImageOps.exif_transpose(image) or image
    mode = image.mode
    if mode == "L":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode == "1":
        return np.asarray(image.convert("L"), dtype=np.uint8).copy()
    if mode in ("I", "F") or mode.startswith("I;"):
        values = np.asarray(image)
        if values.dtype.kind in "iu" and values.min() >= 0 and values.max() <= 255:
            return values.astype(np.uint8)
        return _stretch(values)
    has_alpha = mode in ("LA", "La", "RGBA", "RGBa", "PA") or (
        mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        rgb = rgba[..., :3]
        if not np.all(alpha == 1.0):
            rgb = np.round(rgb.astype(np.float32) * alpha).astype(np.uint8)
        image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    elif mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.uint8).copy()


def read_grayscale(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to a 2-D ``uint8`` grayscale array (see :func:`to_grayscale`).

    Raises:
        ImageReadError: the file is missing, empty, truncated or not an image; the
            message names the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    if path.is_dir():
        raise ImageReadError(path, "this is a folder, not an image file")
    if size == 0:
        raise ImageReadError(path, "the file is empty (0 bytes); download or copy it again")
    try:
        with Image.open(path) as image:
            image.load()
            return to_grayscale(image)
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image format Pillow can read") from None
    except Image.DecompressionBombError as error:
        raise ImageReadError(
            path,
            f"it is larger than Pillow's limit of {Image.MAX_IMAGE_PIXELS:,} pixels, a "
            f"guard against decompression bombs ({error}); no CT slice is this large: check the "
            "file, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust it",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageReadError(path, f"truncated or corrupt image data ({error})") from error


def pixel_hash(image: np.ndarray) -> str:
    """sha256 of a decoded 2-D uint8 image, its shape included."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"pixel_hash expects a 2-D uint8 array, got {image.dtype} {image.shape}.")
    digest = hashlib.sha256(f"{image.shape[0]}x{image.shape[1]}:".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def image_format(path: Path) -> str:
    with Image.open(path) as image:
        return str(image.format)


def decode_images(paths: Sequence[Path], progress: bool, desc: str) -> list[dict[str, object]]:
    """Decode images in a thread pool; per file a record with size, hashes or error."""

    def one(path: Path) -> dict[str, object]:
        try:
            image = read_grayscale(path)
            return {
                "width": image.shape[1],
                "height": image.shape[0],
                "format": image_format(path),
                "pixel_sha256": pixel_hash(image),
                "file_sha256": sha256_file(path),
                "error": None,
            }
        except ImageReadError as error:
            return {
                "error": error.reason,
                "width": None,
                "height": None,
                "format": None,
                "pixel_sha256": None,
                "file_sha256": None,
            }

    workers = min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(
            tqdm(
                pool.map(one, paths), total=len(paths), desc=desc, disable=not progress, unit="img"
            )
        )
