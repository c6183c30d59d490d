"""One training epoch on the CPU: a naive pipeline against ctlib's, side by side.

    python benchmarks/bench_train.py --root ../shared/data --images 320

* naive: torchvision ``ImageFolder`` on ``sars-cov-2-ct``, PIL decode and resize to the
  canvas every time, ``ToTensor`` + ``Normalize``, float32, contiguous memory.
* ctlib: :class:`ctlib.transforms.CanvasDataset` with cached canvases and the paper's
  augmentations, channels-last, denormals flushed (as :func:`ctlib.train.fit` does),
  and optionally bf16 autocast (``--bf16``).

Same model (EfficientNet-Lite0 with its genuine ImageNet weights, one-logit head), same
images, same batch size, LAMB steps. Prints images/second, the ratio, and the share of
each step spent waiting for data. A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402

from ctlib.data import load_dataset  # noqa: E402
from ctlib.models import create_model, get_spec  # noqa: E402
from ctlib.train import TrainConfig, build_optimizer  # noqa: E402
from ctlib.transforms import CanvasDataset  # noqa: E402


def epoch(
    model: torch.nn.Module, loader: DataLoader, memory: torch.memory_format, bf16: bool
) -> tuple[float, float, int]:
    """One epoch; returns (total seconds, seconds waiting for data, images)."""
    optimizer = build_optimizer(model, TrainConfig())
    model.train()
    waited = 0.0
    seen = 0
    start = time.perf_counter()
    iterator = iter(loader)
    while True:
        t0 = time.perf_counter()
        try:
            images, labels = next(iterator)
        except StopIteration:
            break
        waited += time.perf_counter() - t0
        images = images.to(memory_format=memory)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(images)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits[:, 0].float(), labels.float()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(labels)
    return time.perf_counter() - start, waited, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="folder holding sars-cov-2-ct")
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--canvas",
        type=int,
        nargs=2,
        default=None,
        metavar=("W", "H"),
        help="default: EfficientNet-Lite0's canvas",
    )
    parser.add_argument("--bf16", action="store_true", help="also time ctlib with bf16 autocast")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    arch = "efficientnet_lite0"
    spec = get_spec(arch)
    width, height = args.canvas or spec.canvas
    ds = load_dataset("sars-cov-2-ct", args.root, progress=False)
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(ds), size=min(args.images, len(ds)), replace=False))

    from torchvision import datasets, transforms

    naive_tf = transforms.Compose(
        [
            transforms.Grayscale(num_output_channels=3),
            transforms.Resize((height, width)),
            transforms.ToTensor(),
            transforms.Normalize(spec.mean, spec.std),
        ]
    )
    folder = ds.root
    image_folder = datasets.ImageFolder(str(folder), transform=naive_tf)
    # ImageFolder orders classes alphabetically: COVID = 0; same images as ctlib's pick
    index = {p: i for i, (p, _) in enumerate(image_folder.samples)}
    naive_set = Subset(image_folder, [index[p] for p in ds.frame["path"].iloc[pick]])
    frame = ds.frame.iloc[pick]
    ctlib_set = CanvasDataset(frame, (width, height), train=True, mean=spec.mean, std=spec.std)
    ctlib_set.precache(progress=False)

    print(
        f"{arch} at {width}x{height}, {len(pick)} images, batch {args.batch_size}, "
        f"{args.threads} threads, torch {torch.__version__}"
    )
    runs = [
        ("naive (ImageFolder, PIL, fp32, contiguous)", naive_set, torch.contiguous_format, False),
        ("ctlib (cached canvas, channels-last)", ctlib_set, torch.channels_last, False),
    ]
    if args.bf16:
        runs.append(("ctlib + bf16 autocast", ctlib_set, torch.channels_last, True))
    rates = []
    for name, dataset, memory, bf16 in runs:
        torch.manual_seed(0)
        torch.set_flush_denormal(name.startswith("ctlib"))
        model = create_model(arch, pretrained=True, progress=False).to(memory_format=memory)
        loader = DataLoader(
            dataset,
            batch_size=args.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(0),
        )
        seconds, waited, seen = epoch(model, loader, memory, bf16)
        rates.append(seen / seconds)
        print(
            f"  {name:45s} {seen / seconds:7.2f} img/s  ({seconds:6.1f} s)  "
            f"waiting for data {100 * waited / seconds:5.1f} %"
        )
    for (name, *_), value in zip(runs[1:], rates[1:], strict=True):
        print(f"  speed-up of {name}: {value / rates[0]:.2f}x")


if __name__ == "__main__":
    main()
