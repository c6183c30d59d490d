"""Canvas padding: the paper's key preprocessing step (Sec. 3.2, Table 1's canvases).

:func:`fit_to_canvas` scales a slice, aspect ratio kept, onto its architecture's canvas (e.g.
349 x 253 for the ResNets and DenseNets), pads the rest and returns the *placement box*, through
which heat maps are mapped back. Conventions throughout ctlib: sizes are ``(width, height)`` as
in Table 1, arrays ``(height, width)`` as in NumPy, a box ``(x, y, width, height)`` in canvas
pixels. See docs/DEVELOPERS.md, *Canvas*.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

__all__ = [
    "MAX_CANVAS_SIDE",
    "Box",
    "check_canvas_size",
    "box_to_image",
    "fit_box",
    "fit_to_canvas",
    "padding_mask",
    "to_rgb",
]


class Box(NamedTuple):
    """Where the image sits on the canvas, in canvas pixels."""

    x: int
    y: int
    width: int
    height: int


#: The largest canvas side accepted: the largest slice of the two data sets is 1671 px wide
#: (the shipped manifests' ``width``/``height``; Table 1's largest canvas side is 349), so
#: 4096 leaves more than twice that and refuses a size whose canvas alone would fill memory.
MAX_CANVAS_SIDE = 4096


def check_canvas_size(size: object, where: str = "canvas") -> tuple[int, int]:
    """``size`` as ``(width, height)``: two integers from 1 to :data:`MAX_CANVAS_SIDE`.

    Checked before any canvas is allocated. ``where`` names what gave the size in the
    message (an option, a model file).

    Raises:
        ValueError: not two integers, or one out of range.
    """
    try:
        width, height = (int(v) for v in size)  # type: ignore[union-attr]
        exact = (width, height) == tuple(size)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(
            f"{where} must be (width, height) integers, got {size!r}; e.g. (349, 253) as in "
            "the paper's Table 1."
        ) from None
    if not exact or not (1 <= width <= MAX_CANVAS_SIDE and 1 <= height <= MAX_CANVAS_SIDE):
        raise ValueError(
            f"{where} must be two integers from 1 to {MAX_CANVAS_SIDE} (width, height), got "
            f"{size!r}; e.g. (349, 253) as in the paper's Table 1 (the largest slice of the "
            "data sets is 1671 px wide)."
        )
    return width, height


def fit_box(image_size: tuple[int, int], size: tuple[int, int]) -> Box:
    """The placement box of an image of ``image_size`` on a canvas of ``size``.

    Args:
        image_size: ``(width, height)`` of the original image.
        size: ``(width, height)`` of the canvas.

    Returns:
        The box ``(x, y, width, height)``; the scaled image keeps the original aspect
        ratio to within one pixel and touches the canvas on two opposite sides.
    """
    cw, ch = check_canvas_size(size)
    iw, ih = (int(v) for v in image_size)
    if iw < 1 or ih < 1:
        raise ValueError(f"image size must be two positive integers, got {image_size!r}.")
    # exact integer arithmetic, rounding halves up: no float surprises at x.5
    if cw * ih <= ch * iw:  # width is the binding side
        w, h = cw, min(ch, max(1, (2 * ih * cw + iw) // (2 * iw)))
    else:
        w, h = min(cw, max(1, (2 * iw * ch + ih) // (2 * ih))), ch
    return Box((cw - w) // 2, (ch - h) // 2, w, h)


def fit_to_canvas(
    image: np.ndarray,
    size: tuple[int, int],
    *,
    fill: int = 0,
    rgb: bool = False,
) -> tuple[np.ndarray, Box]:
    """Scale a grayscale image to fit ``size`` with its aspect ratio kept, and pad.

    Args:
        image: 2-D ``uint8`` array ``(height, width)``, e.g. from
            :func:`ctlib.data.read_grayscale`.
        size: canvas ``(width, height)``, e.g. ``get_spec("resnet18").canvas``.
        fill: padding value, 0..255. CT slices have a black surround, so 0.
        rgb: also copy the canvas to R, G and B (``(height, width, 3)``), as the paper
            feeds ImageNet networks.

    Returns:
        ``(canvas, box)``: the ``uint8`` canvas of shape ``(height, width)`` (or
        ``(height, width, 3)``) and the :class:`Box` of the image on it.

    Raises:
        ValueError: if the image is not a non-empty 2-D ``uint8`` array, or the size
            or fill value is invalid.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 2:
        shape = getattr(image, "shape", None)
        raise ValueError(
            f"fit_to_canvas expects a 2-D grayscale array (height, width), got shape {shape}; "
            "convert colour images first, e.g. with ctlib.data.to_grayscale()."
        )
    if image.dtype != np.uint8:
        raise ValueError(
            f"fit_to_canvas expects uint8 pixels, got {image.dtype}; "
            "ctlib.data.read_grayscale() returns uint8."
        )
    if image.size == 0:
        raise ValueError(f"fit_to_canvas got an empty image of shape {image.shape}.")
    if not 0 <= int(fill) <= 255:
        raise ValueError(f"fill must be in 0..255, got {fill}.")
    cw, ch = check_canvas_size(size)
    ih, iw = image.shape
    box = fit_box((iw, ih), (cw, ch))
    if (box.width, box.height) == (iw, ih):
        scaled = image
    else:
        shrinking = box.width * box.height < iw * ih
        interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
        scaled = cv2.resize(image, (box.width, box.height), interpolation=interp)
    canvas = np.full((ch, cw), int(fill), dtype=np.uint8)
    canvas[box.y : box.y + box.height, box.x : box.x + box.width] = scaled
    return (to_rgb(canvas) if rgb else canvas), box


def to_rgb(gray: np.ndarray) -> np.ndarray:
    """Copy a 2-D grayscale array to R, G and B: ``(h, w)`` -> ``(h, w, 3)``."""
    if gray.ndim != 2:
        raise ValueError(f"to_rgb expects a 2-D array, got shape {gray.shape}.")
    return np.repeat(gray[:, :, None], 3, axis=2)


def padding_mask(size: tuple[int, int], box: Box | tuple[int, int, int, int]) -> np.ndarray:
    """Boolean ``(height, width)`` mask of the canvas that is padding (True) or image (False)."""
    cw, ch = check_canvas_size(size)
    x, y, w, h = box
    mask = np.ones((ch, cw), dtype=bool)
    mask[y : y + h, x : x + w] = False
    return mask


def box_to_image(
    canvas_map: np.ndarray,
    box: Box | tuple[int, int, int, int],
    image_shape: tuple[int, int],
    *,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Map a canvas-sized array (e.g. a heat map) back onto the original image.

    The box region is cut out and resized to ``image_shape`` ``(height, width)``;
    whatever lay on the padding is dropped.

    Args:
        canvas_map: 2-D array of the canvas' shape ``(height, width)``.
        box: the placement box returned by :func:`fit_to_canvas`.
        image_shape: ``(height, width)`` of the original image.
        interpolation: an OpenCV interpolation flag.

    Returns:
        A float32 array of shape ``image_shape`` (uint8 stays uint8).
    """
    if canvas_map.ndim != 2:
        raise ValueError(f"box_to_image expects a 2-D map, got shape {canvas_map.shape}.")
    x, y, w, h = (int(v) for v in box)
    ch, cw = canvas_map.shape
    if x < 0 or y < 0 or w < 1 or h < 1 or x + w > cw or y + h > ch:
        raise ValueError(f"Box {tuple(box)} does not lie inside a canvas of shape {(ch, cw)}.")
    ih, iw = (int(v) for v in image_shape)
    crop = canvas_map[y : y + h, x : x + w]
    if crop.dtype != np.uint8:
        crop = crop.astype(np.float32, copy=False)
    if (w, h) == (iw, ih):
        return crop.copy()
    return cv2.resize(crop, (iw, ih), interpolation=interpolation)
