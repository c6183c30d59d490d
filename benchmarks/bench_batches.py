"""The data path on the CPU: batch augmentation (ctlib.batches) against albumentations per image.

    python benchmarks/bench_batches.py --root ../shared/data --images 480 --epoch-images 160

Two measurements in one run, on real slices of SARS-CoV-2 CT (``--root``) or, without it,
on the synthetic set:

1. **Data path alone**, images per second at Table 1's canvases (224 x 224 ... 349 x 253 and
   the CPU reference's 224 x 162): the per-image albumentations path (``CanvasDataset`` in a
   DataLoader without workers, as the CPU training uses it: augment, copy to R, G, B,
   normalise, collate) against the batch path (``DeviceBatches`` on CPU tensors: gather,
   augment a batch, normalise), both from canvases decoded beforehand.
2. **A full training epoch** of EfficientNet-Lite0 (offline ImageNet weights where present,
   else random; batch 16, fp32, channels-last, LAMB) through :func:`ctlib.train.fit` with
   ``data_path="loader"`` (today's CPU path) and ``data_path="device"`` (the new path, here on
   CPU tensors), on the same images.

A benchmark, not a test: it prints figures and asserts nothing. On a GPU the batch path runs
where the canvases are (``--device cuda``).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from ctlib.batches import DeviceBatches  # noqa: E402
from ctlib.data import load_dataset  # noqa: E402
from ctlib.models import create_model, get_spec  # noqa: E402
from ctlib.train import Runtime, TrainConfig, fit  # noqa: E402
from ctlib.transforms import CanvasDataset, CanvasStore  # noqa: E402

CANVASES = {"224x162 (CPU reference)": (224, 162), "Table 1: ResNet": (224, 224)}
CANVASES["Table 1: EfficientNet/DenseNet 349x253"] = (349, 253)


def per_image(dataset: CanvasDataset, batch_size: int) -> float:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    start = time.perf_counter()
    seen = sum(len(labels) for _, labels in loader)
    return seen / (time.perf_counter() - start)


def batched(dataset: CanvasDataset, batch_size: int, device: str) -> float:
    feeder = DeviceBatches.from_dataset(dataset, batch_size=batch_size, device=device)
    order = torch.randperm(len(feeder))
    start = time.perf_counter()
    seen = 0
    for images, _ in feeder.epoch(0, order):
        seen += len(images)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", help="folder holding sars-cov-2-ct (default: synthetic)")
    parser.add_argument("--images", type=int, default=480, help="images for the data path")
    parser.add_argument("--epoch-images", type=int, default=160, help="images for the epoch")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name = "sars-cov-2-ct" if args.root else "synthetic"
    dataset = load_dataset(name, args.root, progress=False)
    frame = dataset.frame.sample(min(args.images, len(dataset)), random_state=0)
    print(f"{name}: {len(frame)} images, batch {args.batch_size}, {args.threads} threads")
    print(f"\n1. data path alone (images/s; {args.device} for the batch path)")
    print(f"{'canvas':<40} {'albumentations/image':>21} {'batch (device)':>15} {'ratio':>7}")
    for label, size in CANVASES.items():
        store = CanvasStore(frame["path"], size, cache=False, progress=False)
        train = CanvasDataset(frame, size, train=True, store=store)
        a = per_image(train, args.batch_size)
        b = batched(train, args.batch_size, args.device)
        print(f"{label:<40} {a:>21.0f} {b:>15.0f} {b / a:>6.1f}x")

    size = (224, 162)
    subset = frame.iloc[: args.epoch_images]
    store = CanvasStore(subset["path"], size, cache=False, progress=False)
    spec = get_spec("efficientnet_lite0")
    print(
        f"\n2. one training epoch, EfficientNet-Lite0 at {size[0]}x{size[1]}, {len(subset)} images"
    )
    for path in ("loader", "device"):
        config = TrainConfig(epochs=1, batch_size=args.batch_size, canvas=size)
        runtime = Runtime(device=args.device, amp="off", data_path=path, num_workers=0)
        torch.manual_seed(0)
        try:
            model = create_model("efficientnet_lite0", pretrained=True, progress=False)
            weights = "ImageNet"
        except Exception:  # noqa: BLE001 (a benchmark: random weights measure the same)
            model = create_model("efficientnet_lite0", pretrained=False, progress=False)
            weights = "random"
        train = CanvasDataset(subset, size, train=True, store=store, mean=spec.mean, std=spec.std)
        history = fit(model, train, config, None, runtime=runtime, progress=False)
        record = history[-1]
        print(
            f"  data_path={path:<7} {record['images_per_s']:>6.2f} images/s "
            f"({record['seconds']:.1f} s, {weights} weights, loss {record['train_loss']:.4f})"
        )


if __name__ == "__main__":
    main()
