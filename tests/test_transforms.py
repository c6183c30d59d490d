"""The paper's augmentations, normalisation, and the canvas Dataset's seeding."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ctlib.canvas import fit_to_canvas
from ctlib.transforms import (
    FLAT_FILL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    CanvasDataset,
    item_seed,
    normalize,
    train_augment,
)

SIZE = (96, 64)  # small canvas (width, height) for speed


@pytest.fixture()
def frame(tmp_path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        image = rng.integers(0, 256, size=(40 + 5 * i, 70), dtype=np.uint8)
        path = tmp_path / f"img{i}.png"
        Image.fromarray(image).save(path)
        rows.append({"path": str(path), "label": i % 2})
    return pd.DataFrame(rows)


@pytest.fixture()
def same_image_frame(tmp_path: Path) -> pd.DataFrame:
    """Eight rows of one image: any difference between items comes from augmentation."""
    image = np.random.default_rng(1).integers(0, 256, size=(50, 80), dtype=np.uint8)
    path = tmp_path / "one.png"
    Image.fromarray(image).save(path)
    return pd.DataFrame({"path": [str(path)] * 8, "label": [1] * 8})


def test_pipeline_is_the_papers() -> None:
    names = [type(t).__name__ for t in train_augment(SIZE).transforms]
    assert names == [
        "RandomResizedCrop",
        "GaussianBlur",
        "GaussNoise",
        "RandomBrightnessContrast",
        "HorizontalFlip",
    ]
    blur = next(t for t in train_augment(SIZE).transforms if isinstance(t, A.GaussianBlur))
    assert blur.p == 0.25
    forbidden = ("Rotate", "Affine", "Shear", "ShiftScaleRotate", "Perspective")
    assert not any(any(f in n for f in forbidden) for n in names)


def test_augment_keeps_shape_and_dtype() -> None:
    canvas = np.random.default_rng(2).integers(0, 256, size=(SIZE[1], SIZE[0]), dtype=np.uint8)
    out = train_augment(SIZE, seed=3)(image=canvas)["image"]
    assert out.shape == canvas.shape and out.dtype == np.uint8


def test_flip_only_is_a_mirror() -> None:
    config = AugmentConfig(crop_p=0, blur_p=0, noise_p=0, brightness_contrast_p=0, hflip_p=1)
    canvas = np.random.default_rng(4).integers(0, 256, size=(SIZE[1], SIZE[0]), dtype=np.uint8)
    assert np.array_equal(
        train_augment(SIZE, config, seed=0)(image=canvas)["image"], canvas[:, ::-1]
    )


def test_crop_keeps_the_canvas_aspect() -> None:
    crop = train_augment((349, 253)).transforms[0]
    assert crop.ratio == (349 / 253, 349 / 253)  # no stretch, so no shear-like distortion


def test_normalize_copies_gray_and_uses_imagenet_stats() -> None:
    canvas = np.array([[0, 255]], np.uint8)
    out = normalize(canvas)
    assert out.shape == (3, 1, 2)
    for c in range(3):
        assert out[c, 0, 0].item() == pytest.approx(-IMAGENET_MEAN[c] / IMAGENET_STD[c], abs=1e-6)
        assert out[c, 0, 1].item() == pytest.approx(
            (1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], abs=1e-6
        )
    with pytest.raises(ValueError, match="2-D uint8"):
        normalize(np.zeros((2, 2, 3), np.uint8))


def test_eval_items_are_canvas_and_normalisation_only(frame: pd.DataFrame) -> None:
    ds = CanvasDataset(frame, SIZE, train=False)
    image, label = ds[3]
    canvas, _ = fit_to_canvas(np.asarray(Image.open(frame["path"][3])), SIZE)
    assert torch.equal(image, normalize(canvas))
    assert label.dtype == torch.float32 and label.item() == 1.0
    assert image.shape == (3, SIZE[1], SIZE[0])


def test_flat_content_keeps_only_the_placement_box(frame: pd.DataFrame) -> None:
    """The padding-geometry probe: the slice is gone, its box (size and place) remains."""
    flat = CanvasDataset(frame, SIZE, content="flat")
    image = CanvasDataset(frame, SIZE)
    for index in (0, 7):  # 40 x 70 and 75 x 70 images: different boxes
        canvas, box = flat.canvas(index)
        _, same_box = image.canvas(index)
        assert box == same_box
        inside = canvas[box.y : box.y + box.height, box.x : box.x + box.width]
        assert np.all(inside == FLAT_FILL)
        assert canvas.sum() == FLAT_FILL * box.width * box.height  # padding stays 0
    assert flat.canvas(0)[1] != flat.canvas(7)[1]
    with pytest.raises(ValueError, match="content"):
        CanvasDataset(frame, SIZE, content="blank")


def test_same_seed_same_epoch_is_reproducible(frame: pd.DataFrame) -> None:
    a = CanvasDataset(frame, SIZE, train=True, seed=7)
    b = CanvasDataset(frame, SIZE, train=True, seed=7)
    for ds in (a, b):
        ds.set_epoch(2)
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(len(a)))
    b.set_epoch(3)
    assert not all(torch.equal(a[i][0], b[i][0]) for i in range(len(a)))
    c = CanvasDataset(frame, SIZE, train=True, seed=8)
    c.set_epoch(2)
    assert not all(torch.equal(a[i][0], c[i][0]) for i in range(len(a)))


def test_workers_do_not_repeat_and_match_single_process(same_image_frame: pd.DataFrame) -> None:
    # noise always on, so that two items can only be equal if their random streams are
    ds = CanvasDataset(
        same_image_frame, SIZE, train=True, seed=0, augment=AugmentConfig(noise_p=1.0)
    )
    ds.precache(progress=False)
    ds.set_epoch(1)
    single = torch.cat([x for x, _ in DataLoader(ds, batch_size=2, num_workers=0)])
    multi = torch.cat([x for x, _ in DataLoader(ds, batch_size=2, num_workers=2)])
    assert torch.equal(single, multi)  # independent of the number of workers
    flat = single.flatten(1)
    distinct = {hash(row.numpy().tobytes()) for row in flat}
    assert len(distinct) == len(ds)  # the same image, augmented eight different ways


def test_item_seed_spreads() -> None:
    seeds = {item_seed(0, e, i) for e in range(5) for i in range(100)}
    assert len(seeds) == 500


def test_cache_avoids_decoding_again(frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = CanvasDataset(frame, SIZE, train=True)
    ds.precache(progress=False)
    import ctlib.transforms as module

    def refuse(path: str) -> np.ndarray:
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(module, "read_grayscale", refuse)
    ds.set_epoch(5)
    assert ds[0][0].shape == (3, SIZE[1], SIZE[0])


def test_bad_inputs(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="integers from 1 to 4096"):
        CanvasDataset(frame, (0, 64))
    with pytest.raises(ValueError, match="missing"):
        CanvasDataset(frame.drop(columns="label"), SIZE)
    with pytest.raises(ValueError, match="label for every image"):
        CanvasDataset(frame.assign(label=pd.array([None] * 8, dtype="Int64")), SIZE)
