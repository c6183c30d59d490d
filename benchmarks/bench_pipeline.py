"""Images per second of the data pipeline on one core: decode, canvas, augmentation.

    python benchmarks/bench_pipeline.py --dataset sars-cov-2-ct --root ../shared/data

Prints, for the chosen canvas, the rate of each stage and of the whole item
(``CanvasDataset.__getitem__``), cold (decoding from disk) and warm (canvas cache).
A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402

from ctlib.canvas import fit_to_canvas  # noqa: E402
from ctlib.data import load_dataset, read_grayscale  # noqa: E402
from ctlib.transforms import CanvasDataset, normalize  # noqa: E402


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.1f} img/s ({1000 * seconds / n:6.2f} ms/img)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--root", default=None)
    parser.add_argument("--canvas", type=int, nargs=2, default=(349, 253), metavar=("W", "H"))
    parser.add_argument("--n", type=int, default=400, help="images to time")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)
    ds = load_dataset(args.dataset, args.root, progress=False)
    frame = ds.frame.head(args.n)
    n = len(frame)
    size = tuple(args.canvas)
    print(f"{args.dataset}: {n} images, canvas {size[0]}x{size[1]}, 1 thread")

    start = time.perf_counter()
    images = [read_grayscale(p) for p in frame["path"]]
    print(f"  decode                      {rate(n, time.perf_counter() - start)}")
    start = time.perf_counter()
    canvases = [fit_to_canvas(im, size)[0] for im in images]
    print(f"  fit_to_canvas               {rate(n, time.perf_counter() - start)}")
    start = time.perf_counter()
    for c in canvases:
        normalize(c)
    print(f"  to RGB + normalise          {rate(n, time.perf_counter() - start)}")

    for train in (False, True):
        ds_t = CanvasDataset(frame, size, train=train, seed=0)
        start = time.perf_counter()
        for i in range(n):
            ds_t[i]
        cold = time.perf_counter() - start
        ds_t.set_epoch(1)
        start = time.perf_counter()
        for i in range(n):
            ds_t[i]
        warm = time.perf_counter() - start
        kind = "train (augmented)" if train else "eval"
        print(f"  item, {kind:18s} cold {rate(n, cold)}")
        print(f"  item, {kind:18s} warm {rate(n, warm)}")


if __name__ == "__main__":
    main()
