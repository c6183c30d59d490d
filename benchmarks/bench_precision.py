"""Which numeric precision trains fastest on *this* CPU: fp32, bf16 autocast, torch.compile.

    python benchmarks/bench_precision.py --root ../shared/data --epochs 2 --threads 2

Trains EfficientNet-Lite0 (its genuine ImageNet weights) through :func:`ctlib.train.fit`, the
loop every run uses, on the training images of COVID19-CT's image-level fold 0, for
``--epochs`` epochs per variant, at each ``--canvas``. The first epoch of a compiled model
includes the compilation; the last epoch is the steady state. For each variant it prints the
seconds per epoch (first and last), images per second and the achieved GFLOP/s: three times
the forward pass's floating-point operations per image (counted by
``torch.utils.flop_counter`` at the canvas) times the images per second -- a training step
costs about three forward passes.

With ``--csv`` the rows are appended to a CSV file, with the machine named. A benchmark, not a
test: nothing is asserted. Run it with the machine otherwise idle.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402

from ctlib.cv import make_folds  # noqa: E402
from ctlib.data import load_dataset  # noqa: E402
from ctlib.models import create_model, get_spec  # noqa: E402
from ctlib.train import Runtime, TrainConfig, fit  # noqa: E402
from ctlib.transforms import CanvasDataset  # noqa: E402

VARIANTS = {
    "fp32": {"amp": "off", "compile": False},
    "bf16": {"amp": "bf16", "compile": False},
    "compile": {"amp": "off", "compile": True},
    # torch.compile in the contiguous memory format (compile with channels-last was slower
    # on an earlier machine, see ../shared/NOTES.md)
    "compile-contiguous": {"amp": "off", "compile": True, "channels_last": False},
    "fp32-contiguous": {"amp": "off", "compile": False, "channels_last": False},
}


def forward_gflops(arch: str, canvas: tuple[int, int]) -> float:
    """Forward GFLOPs per image at ``canvas`` (width, height), counted, not timed."""
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model(arch, pretrained=False, progress=False).eval()
    x = torch.zeros(1, 3, canvas[1], canvas[0])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 1e9


def cpu_name() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="folder holding covid19-ct")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per variant (default: 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--canvas",
        type=int,
        nargs=2,
        action="append",
        metavar=("W", "H"),
        help="canvas (repeatable; default: 224 162 and 349 253)",
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--images",
        type=int,
        default=None,
        help="train on at most this many images (default: the whole fold)",
    )
    parser.add_argument("--csv", help="append the rows to this CSV file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    arch = "efficientnet_lite0"
    spec = get_spec(arch)
    canvases = [tuple(c) for c in args.canvas] if args.canvas else [(224, 162), (349, 253)]
    dataset = load_dataset("covid19-ct", args.root, progress=False)
    folds = make_folds(dataset.frame, "paper", 5, 0)
    train = dataset.frame[(folds != 0).to_numpy()]
    if args.images:
        train = train.sample(n=min(args.images, len(train)), random_state=0)
    machine = f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}"
    print(
        f"{arch}, {len(train)} images, batch {args.batch_size}, {args.threads} threads; {machine}"
    )
    rows = []
    for canvas in canvases:
        flops = forward_gflops(arch, canvas)
        items = CanvasDataset(train, canvas, train=True, seed=0, mean=spec.mean, std=spec.std)
        items.precache(progress=False)
        for variant in args.variants:
            config = TrainConfig(
                arch=arch, epochs=args.epochs, batch_size=args.batch_size, canvas=canvas
            ).with_lr(1e-3)
            runtime = Runtime(device="cpu", **VARIANTS[variant])
            torch.manual_seed(0)
            model = create_model(arch, pretrained=True, progress=False)
            started = time.perf_counter()
            history = fit(model, items, config, None, runtime=runtime, progress=False)
            wall = time.perf_counter() - started
            first, last = history[0]["seconds"], history[-1]["seconds"]
            rate = len(items) / last
            row = {
                "machine": machine,
                "threads": args.threads,
                "canvas": f"{canvas[0]}x{canvas[1]}",
                "variant": variant,
                "images": len(items),
                "first_epoch_s": round(first, 1),
                "last_epoch_s": round(last, 1),
                "images_per_s": round(rate, 2),
                "gflops_forward": round(flops, 3),
                "achieved_gflop_s": round(3 * flops * rate, 1),
                "wall_s": round(wall, 1),
                "final_loss": round(history[-1]["train_loss"], 4),
            }
            rows.append(row)
            print(
                f"  {row['canvas']:8s} {variant:8s} first epoch {first:7.1f} s, last {last:7.1f} s"
                f"  {rate:6.2f} img/s  {row['achieved_gflop_s']:6.1f} GFLOP/s"
                f"  loss {row['final_loss']:.4f}",
                flush=True,
            )
    if args.csv:
        path = Path(args.csv)
        new = not path.is_file()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            if new:
                writer.writeheader()
            writer.writerows(rows)
        print(f"appended {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
