"""Canvas padding: exact shapes, kept aspect ratio, padding values, boxes that map back."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctlib.canvas import Box, box_to_image, fit_box, fit_to_canvas, padding_mask, to_rgb

sides = st.integers(min_value=1, max_value=4000)
canvas_sides = st.integers(min_value=8, max_value=600)


@settings(max_examples=300, deadline=None)
@given(iw=sides, ih=sides, cw=canvas_sides, ch=canvas_sides)
def test_box_properties(iw: int, ih: int, cw: int, ch: int) -> None:
    x, y, w, h = fit_box((iw, ih), (cw, ch))
    # inside the canvas, touching two opposite sides
    assert x >= 0 and y >= 0 and x + w <= cw and y + h <= ch
    assert (w == cw) or (h == ch)
    # centred: margins differ by at most one pixel
    assert abs((cw - w - x) - x) <= 1 and abs((ch - h - y) - y) <= 1
    # aspect ratio kept within one pixel on the non-binding side (the binding side is the one
    # with the smaller scale: both sides can fill the canvas once the other is rounded)
    if cw * ih <= ch * iw:
        ideal = cw * ih / iw
        assert abs(h - ideal) <= 0.5 or (h == 1 and ideal < 1)
    else:
        ideal = ch * iw / ih
        assert abs(w - ideal) <= 0.5 or (w == 1 and ideal < 1)


@settings(max_examples=60, deadline=None)
@given(
    iw=st.integers(1, 1200),
    ih=st.integers(1, 1200),
    cw=canvas_sides,
    ch=canvas_sides,
    fill=st.integers(0, 255),
)
def test_canvas_shape_and_padding(iw: int, ih: int, cw: int, ch: int, fill: int) -> None:
    rng = np.random.default_rng(iw * 7919 + ih)
    image = rng.integers(0, 256, size=(ih, iw), dtype=np.uint8)
    canvas, box = fit_to_canvas(image, (cw, ch), fill=fill)
    assert canvas.shape == (ch, cw) and canvas.dtype == np.uint8
    assert np.all(canvas[padding_mask((cw, ch), box)] == fill)
    back = box_to_image(canvas, box, image.shape)
    assert back.shape == image.shape


@pytest.mark.parametrize("shape", [(1, 1), (4000, 4000), (4000, 1), (1, 4000), (253, 349)])
def test_extreme_sizes(shape: tuple[int, int]) -> None:
    canvas, box = fit_to_canvas(np.full(shape, 200, np.uint8), (349, 253))
    assert canvas.shape == (253, 349)
    x, y, w, h = box
    assert canvas[y : y + h, x : x + w].min() >= 190  # the image is there, bicubic or area


def test_hand_computed_cases() -> None:
    # 200 x 100 (w x h) on 349 x 253: width binds, height 100 * 349 / 200 = 174.5 -> 175 (halves up)
    assert fit_box((200, 100), (349, 253)) == Box(0, 39, 349, 175)
    # portrait 100 x 200: height binds, width 100 * 253 / 200 = 126.5 -> 127 (halves up)
    assert fit_box((100, 200), (349, 253)) == Box(111, 0, 127, 253)
    # same aspect as the canvas: fills it
    assert fit_box((698, 506), (349, 253)) == Box(0, 0, 349, 253)
    # already the canvas size: copied, not resampled
    image = np.arange(253 * 349, dtype=np.uint32).reshape(253, 349).astype(np.uint8)
    canvas, box = fit_to_canvas(image, (349, 253))
    assert box == Box(0, 0, 349, 253) and np.array_equal(canvas, image)


def test_downscale_keeps_mean_upscale_keeps_range() -> None:
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, size=(1000, 1400), dtype=np.uint8)
    canvas, (x, y, w, h) = fit_to_canvas(big, (349, 253))
    assert abs(canvas[y : y + h, x : x + w].mean() - big.mean()) < 1.0  # area averaging
    small = np.zeros((10, 10), np.uint8)
    small[:, 5:] = 255
    canvas, (x, y, w, h) = fit_to_canvas(small, (100, 100))
    assert canvas.min() == 0 and canvas.max() == 255  # bicubic overshoot clipped


def test_rgb_copies_channels() -> None:
    image = np.random.default_rng(1).integers(0, 256, (50, 80), dtype=np.uint8)
    canvas, _ = fit_to_canvas(image, (64, 64), rgb=True)
    assert canvas.shape == (64, 64, 3)
    assert np.array_equal(canvas[..., 0], canvas[..., 1]) and np.array_equal(
        canvas[..., 1], canvas[..., 2]
    )
    assert np.array_equal(to_rgb(canvas[..., 0]), canvas)


def test_box_to_image_recovers_the_original() -> None:
    image = np.zeros((120, 240), np.uint8)
    image[:, :120] = 255
    canvas, box = fit_to_canvas(image, (480, 480))  # exact 2x upscale, letterboxed
    back = box_to_image(canvas, box, image.shape)
    assert np.mean(np.abs(back.astype(int) - image.astype(int)) > 2) < 0.02


@pytest.mark.parametrize(
    ("image", "size", "match"),
    [
        (np.zeros((10, 10, 3), np.uint8), (64, 64), "2-D grayscale"),
        (np.zeros((10, 10), np.float32), (64, 64), "uint8"),
        (np.zeros((0, 10), np.uint8), (64, 64), "empty"),
        (np.zeros((10, 10), np.uint8), (0, 64), "integers from 1 to 4096"),
        (np.zeros((10, 10), np.uint8), (64.5, 64), "integers from 1 to 4096"),
        (np.zeros((10, 10), np.uint8), (100_000, 100_000), "integers from 1 to 4096"),
        (np.zeros((10, 10), np.uint8), (64,), "width, height"),
        ([[0, 1], [2, 3]], (64, 64), "2-D grayscale"),
    ],
)
def test_bad_input_is_refused(image: object, size: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_to_canvas(image, size)  # type: ignore[arg-type]


def test_box_outside_canvas_is_refused() -> None:
    with pytest.raises(ValueError, match="does not lie inside"):
        box_to_image(np.zeros((10, 10)), (5, 5, 10, 10), (20, 20))
