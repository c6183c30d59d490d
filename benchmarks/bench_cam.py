"""Seconds per CAM on the CPU, per architecture and method, at each network's Table 1 canvas.

    OMP_NUM_THREADS=2 python benchmarks/bench_cam.py --archs resnet18 efficientnet_lite0

Random-init networks (the time does not depend on the weights), one synthetic-looking slice,
the median of ``--repeat`` runs after one warm-up. Score-CAM runs one forward pass per
channel of the CAM layer, so it is left out unless asked for (``--methods ... scorecam``).
A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from ctlib.explain import explain_image
from ctlib.models import create_model, get_spec, list_models
from ctlib.study.tables import markdown_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=list_models())
    parser.add_argument(
        "--methods", nargs="+", default=["gradcam", "gradcam++", "hirescam", "layercam", "eigencam"]
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    rng = np.random.default_rng(0)
    image = (rng.random((400, 520)) * 255).astype(np.uint8)
    rows = []
    for arch in args.archs:
        torch.manual_seed(0)
        model = create_model(arch).eval()
        row = {"arch": arch, "canvas": "x".join(map(str, get_spec(arch).canvas))}
        for method in args.methods:
            explain_image(model, image, method=method)  # warm-up
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                explain_image(model, image, method=method)
                times.append(time.perf_counter() - start)
            row[method] = statistics.median(times)
        rows.append(row)
        print(row, flush=True)
    import pandas as pd

    print(f"seconds per image, {torch.get_num_threads()} thread(s)")
    print(markdown_table(pd.DataFrame(rows), digits=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
