"""CPU cost of each architecture at its paper canvas: a table to read, not a test.

For every architecture: source, parameters (one-logit head), canvas, penultimate feature dimension,
Grad-CAM layer, and milliseconds per image for one training step (forward, BCE loss, backward) at
the canvas, in contiguous and channels-last memory formats. One warm-up step, then the median of
``--steps`` timed steps.

Also counts the forward pass's GFLOPs per image at the canvas (``torch.utils.flop_counter``)
and, with ``--csv``, writes ``arch, canvas, cpu_ms_per_image, gflops_forward, params_m,
param_tensors, leaf_modules`` -- the file
``python -m ctlib sweep --dry-run`` reads to estimate the cost of the full grid.

Usage:
    python benchmarks/bench_models.py --threads 2 > /tmp/bench_models.txt
    python benchmarks/bench_models.py --threads 2 --csv ctlib/step_costs.csv
    python benchmarks/bench_models.py --archs "resnet*,densenet121" --batch 4 --steps 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from ctlib.models import create_model, get_spec, list_models


def ms_per_image(model: torch.nn.Module, x: torch.Tensor, warmup: int, steps: int) -> float:
    """Median wall time of a training step, divided by the batch size, in milliseconds."""
    target = torch.zeros(len(x), 1)
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        loss = F.binary_cross_entropy_with_logits(model(x), target)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / len(x)


def gflops_forward(model: torch.nn.Module, height: int, width: int) -> float:
    """Floating-point operations of one forward pass of one image, in GFLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    model = model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, height, width))
    model.train()
    return counter.get_total_flops() / 1e9


def select(patterns: str) -> list[str]:
    names: list[str] = []
    for pattern in patterns.split(","):
        found = list_models(pattern.strip())
        if not found:
            get_spec(pattern.strip())  # raises with the closest names
        names += [n for n in found if n not in names]
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--archs", default="*", help="comma-separated names or patterns (default: all)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--batch", type=int, default=8, help="images per step (default 8)")
    parser.add_argument(
        "--steps", type=int, default=3, help="timed steps after the warm-up (default 3)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps (default 1)")
    parser.add_argument(
        "--csv",
        help="also write arch, canvas, cpu_ms_per_image (channels-last), gflops_forward, "
        "params_m, param_tensors, leaf_modules (the GPU cost model's launch floor) to this file",
    )
    args = parser.parse_args(argv)
    rows = []

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} threads, batch {args.batch}, {args.warmup} warm-up + median of "
        f"{args.steps} steps; ms per image, forward + backward, train mode, one logit"
    )
    print(f"# load average at start: {load()} (other processes on these cores skew the timings)")
    header = (
        "architecture",
        "source",
        "params (M)",
        "canvas WxH",
        "feat",
        "CAM layer",
        "ms contig",
        "ms ch-last",
        "GFLOPs fwd",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for name in select(args.archs):
        spec = get_spec(name)
        torch.manual_seed(0)
        model = create_model(name).train()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        height, width = spec.canvas_hw
        x = torch.randn(args.batch, 3, height, width)
        flops = gflops_forward(model, height, width)
        contiguous = ms_per_image(model, x, args.warmup, args.steps)
        model = model.to(memory_format=torch.channels_last)
        channels_last = ms_per_image(
            model, x.contiguous(memory_format=torch.channels_last), args.warmup, args.steps
        )
        row = (
            spec.display_name,
            f"{spec.source} {spec.builder}",
            f"{params:.2f}",
            f"{width}x{height}",
            str(spec.feature_dim),
            spec.cam_layer,
            f"{contiguous:.0f}",
            f"{channels_last:.0f}",
            f"{flops:.2f}",
        )
        print("| " + " | ".join(row) + " |", flush=True)
        rows.append(
            {
                "arch": name,
                "canvas": f"{width}x{height}",
                "cpu_ms_per_image": round(channels_last, 1),
                "gflops_forward": round(flops, 3),
                "params_m": round(params, 3),
                "param_tensors": sum(1 for _ in model.parameters()),
                "leaf_modules": sum(1 for m in model.modules() if not list(m.children())),
            }
        )
        del model
    print(f"# load average at end: {load()}")
    if args.csv:
        from ctlib.ops.sweep.cost import write_costs

        write_costs(rows, args.csv)
        print(f"# wrote {args.csv}")


def load() -> str:
    """The 1, 5 and 15 minute load averages (where the system has them)."""
    try:
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


if __name__ == "__main__":
    main()
