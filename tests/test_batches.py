"""The GPU data path (ctlib.batches) against the CPU path (albumentations), in distribution.

Each augmentation is probed alone, on an image made so that the operation's random parameter
can be read back from the output (a ramp shows the crop, a flat image the noise, two gray
levels the brightness and contrast...). Thousands of images go through both paths; the
parameters' distributions must agree (two-sample Kolmogorov-Smirnov statistic, and the rates
within binomial error). A last test checks that the same comparison catches a wrong setting.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from ctlib.batches import DeviceBatches, augment_batch, normalize_batch
from ctlib.transforms import (
    AugmentConfig,
    CanvasDataset,
    CanvasStore,
    normalize,
    seed_augment,
    train_augment,
)

WIDTH, HEIGHT = 96, 72
N = 3000
#: every operation off; each probe turns one on
NONE = AugmentConfig(crop_p=0, blur_p=0, noise_p=0, brightness_contrast_p=0, hflip_p=0)
#: the largest KS statistic accepted between the two paths (n = 3000 each: the 0.1 %
#: critical value is 0.050; the paths share no random numbers, so some room is honest)
KS_LIMIT = 0.06


def through_cpu(image: np.ndarray, config: AugmentConfig, n: int = N) -> np.ndarray:
    pipeline = train_augment((WIDTH, HEIGHT), config)
    out = np.empty((n, HEIGHT, WIDTH), np.float64)
    for i in range(n):
        seed_augment(pipeline, i)
        out[i] = pipeline(image=image)["image"]
    return out


def through_gpu_path(image: np.ndarray, config: AugmentConfig, n: int = N) -> np.ndarray:
    batch = torch.from_numpy(image).float()[None, None].expand(n, 1, -1, -1).contiguous()
    generator = torch.Generator().manual_seed(1234)
    return augment_batch(batch, config, generator)[:, 0].double().numpy()


def rate_agrees(a: np.ndarray, b: np.ndarray) -> bool:
    """Two rates of N Bernoulli draws agree within 4.5 standard errors of their difference."""
    p = (a.mean() + b.mean()) / 2
    return abs(a.mean() - b.mean()) <= 4.5 * np.sqrt(2 * p * (1 - p) / len(a)) + 1e-12


def ks(a: np.ndarray, b: np.ndarray) -> float:
    return float(ks_2samp(a, b).statistic)


def ramp(axis: int) -> np.ndarray:
    """A ramp of slope 2 gray levels per pixel along ``axis`` (1: x, 0: y)."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    return (20 + 2 * (xx if axis == 1 else yy)).astype(np.uint8)


def crop_params(out: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(crop side, crop start) read back from augmented ramps: the edge pixels of the output
    sample the crop's edge pixels exactly."""
    line = out[:, HEIGHT // 2, :] if axis == 1 else out[:, :, WIDTH // 2]
    first, last = line[:, 0], line[:, -1]
    return (last - first) / 2 + 1, (first - 20) / 2


@pytest.mark.parametrize("axis", [1, 0], ids=["width", "height"])
def test_crop_sizes_and_positions_agree(axis: int) -> None:
    config = replace(NONE, crop_p=0.5)
    cpu = crop_params(through_cpu(ramp(axis), config), axis)
    gpu = crop_params(through_gpu_path(ramp(axis), config), axis)
    full = WIDTH if axis == 1 else HEIGHT
    cropped_cpu, cropped_gpu = cpu[0] < full - 0.5, gpu[0] < full - 0.5
    assert rate_agrees(cropped_cpu, cropped_gpu)
    assert abs(cropped_cpu.mean() - 0.5) < 0.05
    for cpu_values, gpu_values in zip(cpu, gpu):
        assert ks(cpu_values[cropped_cpu], gpu_values[cropped_gpu]) < KS_LIMIT
    # the side follows the area: sqrt(0.75) .. 1 of the canvas' side
    sides = gpu[0][cropped_gpu]
    assert sides.min() >= np.floor(np.sqrt(0.75) * full) - 1 and sides.max() <= full


def test_blur_rate_and_strength_agree() -> None:
    checker = ((np.indices((HEIGHT, WIDTH)).sum(0) // 2) % 2 * 200 + 28).astype(np.uint8)
    config = replace(NONE, blur_p=0.25)
    cpu, gpu = through_cpu(checker, config), through_gpu_path(checker, config)
    spread_cpu, spread_gpu = cpu.std(axis=(1, 2)), gpu.std(axis=(1, 2))
    blurred_cpu, blurred_gpu = spread_cpu < checker.std() - 1, spread_gpu < checker.std() - 1
    assert rate_agrees(blurred_cpu, blurred_gpu)
    assert abs(blurred_gpu.mean() - 0.25) < 0.04  # the paper's p = 0.25
    # the strength (what is left of the pattern) follows sigma's distribution
    assert ks(spread_cpu[blurred_cpu], spread_gpu[blurred_gpu]) < KS_LIMIT


def test_noise_rate_and_level_agree() -> None:
    flat = np.full((HEIGHT, WIDTH), 128, np.uint8)
    config = replace(NONE, noise_p=0.5)
    level_cpu = through_cpu(flat, config).std(axis=(1, 2))
    level_gpu = through_gpu_path(flat, config).std(axis=(1, 2))
    noisy_cpu, noisy_gpu = level_cpu > 0.5, level_gpu > 0.5
    assert rate_agrees(noisy_cpu, noisy_gpu)
    assert ks(level_cpu[noisy_cpu], level_gpu[noisy_gpu]) < KS_LIMIT
    # 0.01 .. 0.05 of 255
    assert (
        0.01 * 255 - 0.7  # truncated noise: a little under its nominal level, on both paths
        < level_gpu[noisy_gpu].min()
        < level_gpu[noisy_gpu].max()
        < 0.05 * 255 * 1.1
    )


def test_brightness_and_contrast_ranges_agree() -> None:
    two = np.full((HEIGHT, WIDTH), 96, np.uint8)
    two[:, WIDTH // 2 :] = 160
    config = replace(NONE, brightness_contrast_p=0.5)

    def params(out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        low, high = out[:, :, 0].mean(1), out[:, :, -1].mean(1)
        alpha = (high - low) / 64
        beta = (low + high) / 2 - 128 * alpha
        return alpha, beta / 255

    alpha_cpu, beta_cpu = params(through_cpu(two, config))
    alpha_gpu, beta_gpu = params(through_gpu_path(two, config))
    changed_cpu = (np.abs(alpha_cpu - 1) > 1e-9) | (np.abs(beta_cpu) > 1e-9)
    changed_gpu = (np.abs(alpha_gpu - 1) > 1e-9) | (np.abs(beta_gpu) > 1e-9)
    assert rate_agrees(changed_cpu, changed_gpu)
    assert ks(alpha_cpu[changed_cpu], alpha_gpu[changed_gpu]) < KS_LIMIT
    assert ks(beta_cpu[changed_cpu], beta_gpu[changed_gpu]) < KS_LIMIT
    for alpha, beta in ((alpha_cpu, beta_cpu), (alpha_gpu, beta_gpu)):
        assert alpha[changed_gpu if alpha is alpha_gpu else changed_cpu].min() > 0.8 - 0.02
        assert alpha.max() < 1.2 + 0.02 and beta.min() > -0.2 - 0.01 and beta.max() < 0.2 + 0.01


def test_flip_rate_agrees() -> None:
    config = replace(NONE, hflip_p=0.5)
    flipped_cpu = through_cpu(ramp(1), config)[:, 0, 0] > 100
    flipped_gpu = through_gpu_path(ramp(1), config)[:, 0, 0] > 100
    assert rate_agrees(flipped_cpu, flipped_gpu)
    assert abs(flipped_gpu.mean() - 0.5) < 0.04


def test_the_whole_pipeline_agrees_on_a_slice_like_image() -> None:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    body = ((xx - WIDTH / 2) / 40) ** 2 + ((yy - HEIGHT / 2) / 30) ** 2 < 1
    lung = ((np.abs(xx - WIDTH / 2) - 16) / 11) ** 2 + ((yy - HEIGHT / 2) / 20) ** 2 < 1
    image = np.where(body, np.where(lung, 40, 180), 0).astype(np.uint8)
    config = AugmentConfig()
    cpu, gpu = through_cpu(image, config, 2000), through_gpu_path(image, config, 2000)
    for stat in (lambda o: o.mean(axis=(1, 2)), lambda o: o.std(axis=(1, 2))):
        assert ks(stat(cpu), stat(gpu)) < 0.07


def test_the_cpu_paths_transforms_decide_independently() -> None:
    """albumentations' ``Compose.set_random_seed`` gives every transform one seed, so crop,
    noise, brightness/contrast and flip applied all together or not at all; seed_augment
    gives each its own."""
    import albumentations as A

    pipeline = A.Compose(
        train_augment((WIDTH, HEIGHT), AugmentConfig()).transforms, save_applied_params=True
    )
    names = [type(t).__name__ for t in pipeline.transforms]
    image = ramp(1)
    applied = []
    for i in range(1500):
        seed_augment(pipeline, i)
        done = {name for name, _ in pipeline(image=image)["applied_transforms"]}
        applied.append([name in done for name in names])
    matrix = np.asarray(applied, float)
    rates = dict(zip(names, matrix.mean(0).round(3)))
    assert abs(rates["GaussianBlur"] - 0.25) < 0.04 and abs(rates["HorizontalFlip"] - 0.5) < 0.05
    correlation = np.corrcoef(matrix.T)
    off_diagonal = np.abs(correlation[~np.eye(len(names), dtype=bool)])
    assert off_diagonal.max() < 0.1, dict(zip(names, correlation.round(2).tolist()))


@pytest.mark.slow
def test_the_comparison_catches_a_wrong_setting() -> None:
    """The checks above can fail: a GPU path drawn with another blur rate or noise level
    is told apart from the paper's settings on the CPU path."""
    checker = ((np.indices((HEIGHT, WIDTH)).sum(0) // 2) % 2 * 200 + 28).astype(np.uint8)
    cpu = through_cpu(checker, replace(NONE, blur_p=0.25)).std(axis=(1, 2))
    gpu = through_gpu_path(checker, replace(NONE, blur_p=0.33)).std(axis=(1, 2))
    assert not rate_agrees(cpu < checker.std() - 1, gpu < checker.std() - 1)
    flat = np.full((HEIGHT, WIDTH), 128, np.uint8)
    cpu = through_cpu(flat, replace(NONE, noise_p=1.0)).std(axis=(1, 2))
    gpu = through_gpu_path(flat, replace(NONE, noise_p=1.0, noise_std=(0.012, 0.055))).std(
        axis=(1, 2)
    )
    assert ks(cpu, gpu) > KS_LIMIT


def test_augmentation_is_reproducible_and_normalisation_matches_the_cpu_path() -> None:
    image = ramp(1)
    batch = torch.from_numpy(image).float()[None, None].expand(8, 1, -1, -1)
    first = augment_batch(batch, AugmentConfig(), torch.Generator().manual_seed(5))
    again = augment_batch(batch, AugmentConfig(), torch.Generator().manual_seed(5))
    other = augment_batch(batch, AugmentConfig(), torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() >= 0 and first.max() <= 255 and torch.equal(first, first.round())
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    ours = normalize_batch(batch[:1], mean, std)[0]
    torch.testing.assert_close(ours, normalize(image, mean, std))


def test_device_batches_follow_the_order_and_the_store(tmp_path, synth) -> None:
    tiny_frame = synth.frame
    frame = tiny_frame.iloc[:10]
    store = CanvasStore(frame["path"], (64, 48), cache=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    again = CanvasStore(frame["path"], (64, 48), cache=tmp_path, progress=False)
    assert np.array_equal(again.canvases, store.canvases)  # read back from the cache
    test_set = CanvasDataset(frame, (64, 48), store=store)
    plain = CanvasDataset(frame, (64, 48))
    batches = DeviceBatches.from_dataset(test_set, batch_size=4, device="cpu")
    order = [3, 1, 4, 0, 9, 2, 6, 5, 8, 7]
    seen = list(batches.epoch(0, order))
    assert [len(y) for _, y in seen] == [4, 4, 2]
    images = torch.cat([x for x, _ in seen])
    expected = torch.stack([plain[i][0] for i in order])
    torch.testing.assert_close(images, expected)
    assert len(list(batches.epoch(0, order, drop_last=True))) == 2
    train = DeviceBatches.from_dataset(
        CanvasDataset(frame, (64, 48), train=True, store=store), batch_size=5, device="cpu"
    )
    epoch0 = torch.cat([x for x, _ in train.epoch(0, order)])
    assert torch.equal(epoch0, torch.cat([x for x, _ in train.epoch(0, order)]))
    assert not torch.equal(epoch0, torch.cat([x for x, _ in train.epoch(1, order)]))


def test_a_store_refuses_what_it_does_not_hold(synth) -> None:
    tiny_frame = synth.frame
    store = CanvasStore(tiny_frame["path"].iloc[:4], (64, 48), cache=False, progress=False)
    with pytest.raises(KeyError, match="not in this CanvasStore"):
        CanvasDataset(tiny_frame.iloc[:6], (64, 48), store=store)
    with pytest.raises(ValueError, match="same ones"):
        CanvasDataset(tiny_frame.iloc[:4], (80, 48), store=store)


def test_the_gpu_check_script_writes_its_figures_on_the_cpu(tmp_path) -> None:
    """benchmarks/gpu_check.py (run on a GPU machine) tried on the CPU with a tiny profile."""
    import csv
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "gpu_check.csv"
    argv = ["--device", "cpu", "--archs", "squeezenet", "--steps", "2", "--warmup", "1"]
    assert module.main([*argv, "--scale", "0.3", "--batch-size", "4", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 and list(rows[0]) == module.FIELDS
    row = rows[0]
    assert row["arch"] == "squeezenet" and float(row["images_per_s"]) > 0
    assert 0 < float(row["data_wait_share"]) < 1 and 0 < float(row["optimizer_share"]) < 1
    assert row["precision"] == "fp32" and row["gpu"].startswith("CPU")


def test_the_blur_equals_kornias_and_reads_nothing_back() -> None:
    from kornia.filters import gaussian_blur2d

    from ctlib.batches import gaussian_blur

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 40, 57, generator=generator) * 255
    sigma = 0.5 + torch.rand(5, generator=generator)
    for size in (3, 5, 7):
        theirs = gaussian_blur2d(
            x, (size, size), sigma[:, None].expand(5, 2), border_type="reflect"
        )
        torch.testing.assert_close(gaussian_blur(x, sigma, size), theirs)
    # each image its own sigma: a wider one blurs more
    flat = torch.zeros(2, 1, 21, 21)
    flat[:, :, 10, 10] = 255.0
    blurred = gaussian_blur(flat, torch.tensor([0.5, 1.5]), 7)
    assert blurred[0, 0, 10, 10] > blurred[1, 0, 10, 10]
    assert torch.allclose(blurred.sum(dim=(1, 2, 3)), torch.tensor([255.0, 255.0]))


class _HostRead(AssertionError):
    pass


def test_device_batches_neither_read_back_nor_build_tensors_from_python_per_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a GPU each of these is a synchronisation or a host-to-device copy per batch; on the CPU
    they are trapped instead (the GPU test runs the same under sync-debug mode)."""
    canvases = np.random.default_rng(0).integers(0, 256, (12, 30, 40), dtype=np.uint8)
    batches = DeviceBatches(canvases, np.arange(12) % 2, batch_size=4, device="cpu",
                            augment=AugmentConfig(blur_p=1.0))  # fmt: skip

    def trap(name: str):  # noqa: ANN202
        def read(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise _HostRead(f"{name} inside a batch")

        return read

    with monkeypatch.context() as patch:
        for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
            patch.setattr(torch.Tensor, name, trap(f"Tensor.{name}"))
        patch.setattr(torch, "tensor", trap("torch.tensor"))
        shapes = [tuple(images.shape) for images, _ in batches.epoch(0)]
    assert shapes == [(4, 3, 30, 40)] * 3
    with monkeypatch.context() as patch, pytest.raises(_HostRead):  # the trap can fail
        patch.setattr(torch, "tensor", trap("torch.tensor"))
        normalize_batch(torch.zeros(1, 1, 4, 4), (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
