"""Step time of ctlib's ForeachLamb against torch-optimizer's Lamb: figures to read, not a test.

For each network (its parameters only, with random gradients; no forward pass), the median wall
time of ``optimizer.step()`` after warm-up steps, on the CPU and, where there is one, on CUDA
(synchronised after each step, so that the time is the device's too). torch-optimizer's Lamb
reads two values back to the host per parameter tensor and step; ForeachLamb none.

Usage:
    python benchmarks/bench_optim.py --threads 2
    python benchmarks/bench_optim.py --archs densenet201,resnet18 --steps 20 --devices cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch_optimizer
import torchvision

from ctlib.optim import ForeachLamb


def parameters(arch: str, device: torch.device) -> list[torch.nn.Parameter]:
    """A torchvision network's parameters on ``device``, each with a random gradient."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(num_classes=1).to(device)
    params = list(model.parameters())
    for p in params:
        p.grad = 1e-3 * torch.randn_like(p)
    return params


def median_step_ms(
    optimizer_class: type[torch.optim.Optimizer],
    arch: str,
    device: torch.device,
    warmup: int,
    steps: int,
) -> float:
    """Median milliseconds of one ``step()`` (the paper's recipe: lr 3e-4, weight decay 1)."""
    optimizer = optimizer_class(parameters(arch, device), lr=3e-4, weight_decay=1.0)
    times = []
    for step in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= warmup:
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="resnet18,densenet121", help="torchvision names")
    parser.add_argument("--devices", default="cpu,cuda", help="those absent are skipped")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [d for d in args.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(
        f"{'arch':<20}{'device':<8}{'tensors':>8}{'params':>11}"
        f"{'torch_optimizer ms':>20}{'ForeachLamb ms':>16}{'speed-up':>10}"
    )
    for arch in args.archs.split(","):
        for name in devices:
            device = torch.device(name)
            params = parameters(arch, device)
            reference = median_step_ms(torch_optimizer.Lamb, arch, device, args.warmup, args.steps)
            foreach = median_step_ms(ForeachLamb, arch, device, args.warmup, args.steps)
            print(
                f"{arch:<20}{name:<8}{len(params):>8}{sum(p.numel() for p in params):>11,}"
                f"{reference:>20.1f}{foreach:>16.1f}{reference / foreach:>9.2f}x"
            )


if __name__ == "__main__":
    main()
