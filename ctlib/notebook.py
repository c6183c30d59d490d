"""What the numbered notebooks share: quick or full mode, where outputs go, small figures.

**Two modes from one file.** Every notebook runs either

* **quick** -- on a CPU, in minutes: the synthetic data set, EfficientNet-Lite0, a few
  epochs at a small canvas; or
* **full** -- on a GPU, the paper's settings: its data sets, architectures and 100-epoch
  recipe.

The mode comes from one environment variable, ``CTLIB_QUICK``, read by :func:`get_mode`:
``1``/``true``/``yes``/``on`` means quick, ``0``/``false``/``no``/``off`` means full, and
unset (or empty) means *quick exactly when PyTorch sees no CUDA GPU*. No cell is edited to
switch modes; each notebook's ``parameters`` cell (papermill) can still override any knob.

**Where things go.** Quick runs write into a git-ignored folder:
``$CTLIB_OUTPUT_DIR`` if set, else ``outputs/notebooks/`` in the repository (or in the
working directory when ctlib is not installed from a clone). Full runs write results to
``runs/`` (the CLI's default, so the command line and the notebooks share results) and
figures worth keeping to ``figures/``.

Example:
    >>> from ctlib.notebook import get_mode
    >>> mode = get_mode()          # doctest: +SKIP
    >>> print(mode)                # doctest: +SKIP
    quick mode (CTLIB_QUICK is unset and PyTorch sees no GPU): CPU, synthetic data, a few epochs: minutes
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ctlib.data import CTDataset
    from ctlib.train import TrainConfig

__all__ = [
    "GITHUB_REPO",
    "OUTPUT_ENV",
    "QUICK_ENV",
    "Mode",
    "SliceViewer",
    "browse_sets",
    "canvas_columns",
    "committed_results",
    "data_status",
    "default_dataset",
    "ensure_results",
    "figure_dir",
    "finetune_config",
    "get_dataset",
    "get_mode",
    "in_colab",
    "is_checked",
    "keep_figure",
    "load_history",
    "output_dir",
    "overview",
    "padding_stats",
    "plot_augmentations",
    "plot_examples",
    "plot_history",
    "plot_lr_schedule",
    "plot_sizes",
    "recipe_table",
    "repo_root",
    "results_dir",
    "run_notebooks",
    "schedule_table",
    "size_frames",
    "strip_outputs",
    "table1",
]

log = logging.getLogger(__name__)

QUICK_ENV = "CTLIB_QUICK"
OUTPUT_ENV = "CTLIB_OUTPUT_DIR"
GITHUB_REPO = "ctlib/ctlib"
"""``owner/name`` of the kit's GitHub repository: the notebooks' Colab badges and set-up
cells clone it (``tests/test_notebooks.py`` checks they agree with this value)."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
QUICK_ARCH = "efficientnet_lite0"
FULL_ARCH = "resnet101"
FULL_DATASET = "sars-cov-2-ct"
QUICK_LR = 1e-2


# --------------------------------------------------------------------------- mode
@dataclass(frozen=True)
class Mode:
    """Quick or full, and why.

    Attributes:
        quick: True for quick mode (CPU, minutes), False for full mode (the paper's settings).
        reason: how the mode was chosen, in words.
        gpu: whether PyTorch sees a CUDA GPU.
    """

    quick: bool
    reason: str
    gpu: bool

    @property
    def name(self) -> str:
        """``"quick"`` or ``"full"``."""
        return "quick" if self.quick else "full"

    def __str__(self) -> str:
        what = (
            "CPU, synthetic data, a few epochs: minutes"
            if self.quick
            else "the paper's data sets and 100-epoch recipe"
            + ("" if self.gpu else " (no GPU: slow!)")
        )
        return f"{self.name} mode ({self.reason}): {what}"


def get_mode(environ: Mapping[str, str] | None = None, *, gpu: bool | None = None) -> Mode:
    """Quick or full mode, from ``CTLIB_QUICK`` (see the module docstring).

    Args:
        environ: the environment to read (default ``os.environ``).
        gpu: whether a GPU is present (default: ``torch.cuda.is_available()``).

    Raises:
        ValueError: ``CTLIB_QUICK`` holds something other than 1/0, true/false, yes/no, on/off.
    """
    environ = os.environ if environ is None else environ
    if gpu is None:
        import torch

        gpu = bool(torch.cuda.is_available())
    raw = environ.get(QUICK_ENV, "").strip()
    value = raw.lower()
    if value in _TRUE:
        return Mode(True, f"{QUICK_ENV}={raw}", gpu)
    if value in _FALSE:
        return Mode(False, f"{QUICK_ENV}={raw}", gpu)
    if value:
        raise ValueError(
            f"{QUICK_ENV}={raw!r} is not understood; use {QUICK_ENV}=1 for quick mode, "
            f"{QUICK_ENV}=0 for full mode, or leave it unset (quick without a GPU)."
        )
    if gpu:
        return Mode(False, f"{QUICK_ENV} is unset and PyTorch sees a GPU", gpu)
    return Mode(True, f"{QUICK_ENV} is unset and PyTorch sees no GPU", gpu)


def in_colab() -> bool:
    """Whether this Python runs inside Google Colab."""
    return "google.colab" in sys.modules


# --------------------------------------------------------------------------- folders
def repo_root() -> Path | None:
    """The repository ctlib is installed from (editable install), or None."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir() else None


def output_dir(*parts: str, create: bool = True) -> Path:
    """The git-ignored folder for quick-mode outputs, ``/``-joined with ``parts``.

    ``$CTLIB_OUTPUT_DIR`` if set, else ``<repository>/outputs/notebooks`` (or
    ``./outputs/notebooks`` outside a clone).
    """
    env = os.environ.get(OUTPUT_ENV, "").strip()
    base = Path(env).expanduser() if env else (repo_root() or Path.cwd()) / "outputs" / "notebooks"
    path = base.joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir(mode: Mode) -> Path:
    """Where cross-validation results live: ``runs/`` in full mode, quick ones apart."""
    if mode.quick:
        return output_dir("runs")
    return (repo_root() or Path.cwd()) / "runs"


def committed_results() -> Path:
    """``results/`` of the repository: the small CSV/JSON files of the kit's real-data runs
    on a CPU (issue 7), committed so that every reader sees the same numbers.

    Raises:
        FileNotFoundError: ctlib is not installed from a clone (``pip install -e .``).
    """
    root = repo_root()
    if root is None or not (root / "results").is_dir():
        raise FileNotFoundError("The committed results/ folder is not here: install ctlib from a "
                                "clone of its repository (git clone ...; pip install -e .).")
    return root / "results"


def figure_dir(mode: Mode) -> Path:
    """Where figures go: ``figures/`` from full runs, the quick output folder otherwise."""
    if mode.quick:
        return output_dir("figures")
    path = (repo_root() or Path.cwd()) / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def keep_figure(figure: Figure, name: str, mode: Mode) -> Path:
    """Save ``figure`` as ``<figure_dir(mode)>/<name>.png`` and return the path."""
    from ctlib.plots import save_figure

    return save_figure(figure, figure_dir(mode) / f"{name}.png")


# --------------------------------------------------------------------------- data
def default_dataset(mode: Mode) -> str:
    """``synthetic`` in quick mode, ``sars-cov-2-ct`` (the paper's first set) in full mode."""
    return "synthetic" if mode.quick else FULL_DATASET


def data_status(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Which data sets are here: per registered set ``found``, ``images`` and ``how`` to get it."""
    from ctlib.data import DATASETS, DataError, load_dataset
    from ctlib.paths import data_dir

    rows = []
    for name, info in DATASETS.items():
        if not info.downloadable:
            rows.append(
                {
                    "dataset": name,
                    "found": True,
                    "images": None,
                    "how": "generated by ctlib on first use (no download)",
                }
            )
            continue
        try:
            images: int | None = len(load_dataset(name, root, progress=False))
            found, how = True, f"in {data_dir(root) / name}"
        except DataError:
            images, found = None, False
            how = (
                f"python -m ctlib download {name}  (or ctlib.data.download({name!r})), "
                "or set CTLIB_DATA_DIR to the folder holding it"
            )
        rows.append({"dataset": name, "found": found, "images": images, "how": how})
    frame = pd.DataFrame(rows).set_index("dataset")
    frame["images"] = frame["images"].astype("Int64")
    return frame


def get_dataset(
    name: str,
    *,
    download: bool = False,
    max_images: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> CTDataset:
    """Load a data set for a notebook; optionally download it, optionally subsample it.

    Args:
        name: a registered data set.
        download: fetch a missing real data set from its public source first.
        max_images: keep at most this many images, stratified by label (the data set is
            renamed ``<name>-<n>`` so its results never mix with the full set's).
        seed: which images are kept.
        progress: progress bars.

    Raises:
        ctlib.data.DataError: the data set is missing and ``download`` is False; the
            message says how to get it.
    """
    from ctlib.data import DataError, dataset_info, load_dataset

    try:
        dataset = load_dataset(name, progress=progress)
    except DataError:
        if not (download and dataset_info(name).downloadable):
            raise
        from ctlib.data import download as fetch

        fetch(name, progress=progress)
        dataset = load_dataset(name, progress=progress)
    if max_images is None or max_images >= len(dataset):
        return dataset
    if max_images < 4:
        raise ValueError(f"max_images={max_images} is too few to train and test; use at least 4.")
    frame = dataset.frame
    rng = np.random.default_rng(seed)
    labels = frame["label"].to_numpy()
    kept: list[int] = []
    for label in sorted(set(labels.tolist())):  # each class in proportion, at least 2
        index = np.flatnonzero(labels == label)
        n = min(len(index), max(2, int(round(len(index) * max_images / len(frame)))))
        kept += rng.choice(index, n, replace=False).tolist()
    kept = (
        sorted(kept)[:max_images]
        if len(kept) <= max_images
        else sorted(rng.choice(kept, max_images, replace=False).tolist())
    )
    return dataclasses.replace(
        dataset, name=f"{name}-{max_images}", frame=frame.iloc[kept].reset_index(drop=True)
    )


def size_frames(
    names: Sequence[str] = ("sars-cov-2-ct", "covid19-ct"), synthetic: CTDataset | None = None
) -> dict[str, pd.DataFrame]:
    """Label, patient and size of every image per data set, without reading images.

    The real sets come from their shipped manifests (``data/<name>.csv``), so this works
    whether or not their images are on disk; the synthetic set from ``synthetic`` if given.
    """
    from ctlib.data import read_manifest

    frames = {name: read_manifest(name) for name in names}
    if synthetic is not None:
        frames[synthetic.name] = synthetic.frame
    return frames


def overview(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Images, patients, sizes and aspect ratios per data set and class.

    Args:
        frames: data set name -> a frame with ``label``, ``patient_id``, ``width``, ``height``
            (a manifest or ``CTDataset.frame``).

    Returns:
        One row per (data set, class): ``images``, ``patients`` ("not published" where unknown),
        ``width`` and ``height`` as ``min–max``, and the median and range of the aspect
        ratio width / height.
    """
    rows = []
    for name, frame in frames.items():
        labelled = frame.assign(aspect=frame["width"] / frame["height"])
        for label, cls in ((1, "COVID"), (0, "non-COVID")):
            part = labelled[labelled["label"] == label]
            if part.empty:
                continue
            rows.append(
                {
                    "dataset": name,
                    "class": cls,
                    "images": len(part),
                    "patients": str(part["patient_id"].nunique())
                    if part["patient_id"].notna().all()
                    else "not published",
                    "width": f"{part['width'].min()}–{part['width'].max()}",
                    "height": f"{part['height'].min()}–{part['height'].max()}",
                    "aspect median": round(float(part["aspect"].median()), 2),
                    "aspect range": f"{part['aspect'].min():.2f}–{part['aspect'].max():.2f}",
                }
            )
    return pd.DataFrame(rows).set_index(["dataset", "class"])


def browse_sets(names: Sequence[str] = ("sars-cov-2-ct", "covid19-ct")) -> dict[str, CTDataset]:
    """The real data sets among ``names`` that are here, else the synthetic set alone."""
    from ctlib.data import DataError, load_dataset

    found = {}
    for name in names:
        try:
            found[name] = load_dataset(name, progress=False)
        except DataError as error:
            log.info("%s is not here: %s", name, str(error).splitlines()[0])
    return found or {"synthetic": load_dataset("synthetic", progress=False)}


def table1(names: Sequence[str] | None = None) -> pd.DataFrame:
    """The paper's Table 1 as the kit holds it: canvas, its aspect ratio, parameters."""
    from ctlib.models import get_spec, list_models

    rows = []
    for name in names if names is not None else list_models(paper=True):
        spec = get_spec(name)
        rows.append(
            {
                "architecture": spec.display_name,
                "canvas (w×h)": "{}×{}".format(*spec.canvas),
                "aspect": round(spec.canvas[0] / spec.canvas[1], 2),
                "parameters (M)": spec.table1_params_m,
            }
        )
    return pd.DataFrame(rows).set_index("architecture")


def padding_stats(
    frames: Mapping[str, pd.DataFrame],
    canvases: Mapping[str, tuple[int, int]] | None = None,
    square: int = 224,
) -> pd.DataFrame:
    """What fitting costs, per data set (medians over images, from sizes alone).

    For each canvas: the share of the canvas that is padding. For a plain ``square`` resize:
    how much the image is squashed, ``1 - min(aspect, 1/aspect)`` (0 %: not distorted).
    """
    from ctlib.canvas import fit_box

    canvases = canvases if canvases is not None else canvas_columns()
    rows = []
    for name, frame in frames.items():
        sizes = list(zip(frame["width"].astype(int), frame["height"].astype(int), strict=True))
        row: dict[str, object] = {"dataset": name}
        for cw, ch in canvases.values():
            padding = [
                1 - (b.width * b.height) / (cw * ch) for b in (fit_box(s, (cw, ch)) for s in sizes)
            ]
            row[f"padding {cw}×{ch}"] = f"{np.median(padding):.0%}"
        aspect = frame["width"].to_numpy(float) / frame["height"].to_numpy(float)
        row[f"squashed {square}×{square}"] = f"{np.median(1 - np.minimum(aspect, 1 / aspect)):.0%}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("dataset")


def canvas_columns(names: Sequence[str] | None = None) -> dict[str, tuple[int, int]]:
    """The paper's distinct canvases, each labelled with the architectures that use it.

    Example:
        >>> canvas_columns()["ResNets, ResNeXts, DenseNets"]
        (349, 253)
    """
    from ctlib.models import get_spec, list_models

    names = list(names) if names is not None else list_models(paper=True)
    groups: dict[tuple[int, int], list[str]] = {}
    for name in names:
        spec = get_spec(name)
        groups.setdefault(spec.canvas, []).append(spec.display_name)
    families = {"ResNet": "ResNets", "ResNeXt": "ResNeXts", "DenseNet": "DenseNets"}
    out = {}
    for canvas, members in groups.items():
        if len(members) > 2:
            short = []
            for member in members:
                family = next((v for k, v in families.items() if member.startswith(k)), member)
                if family not in short:
                    short.append(family)
            label = ", ".join(short)
        else:
            label = ", ".join(members)
        out[label] = canvas
    return out


# --------------------------------------------------------------------------- figures
def _grid(
    rows: int, columns: int, width: float = 2.3, height: float = 2.1
) -> tuple[Figure, np.ndarray]:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        rows, columns, figsize=(width * columns, height * rows), squeeze=False
    )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return figure, axes


def plot_sizes(
    frames: Mapping[str, pd.DataFrame], canvases: Mapping[str, tuple[int, int]] | None = None
) -> Figure:
    """Image sizes (width against height) and aspect ratios per data set.

    The dashed lines mark the canvases' aspect ratios: an image on such a line fills its
    canvas; the further off, the more padding.
    """
    import matplotlib.pyplot as plt

    canvases = canvases if canvases is not None else canvas_columns()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, frame in frames.items():
        left.scatter(
            frame["width"], frame["height"], s=6, alpha=0.4, label=f"{name} ({len(frame)})"
        )
        right.hist(frame["width"] / frame["height"], bins=40, alpha=0.5, label=name)
    top = max(int(f["width"].max()) for f in frames.values())
    ceiling = right.get_ylim()[1]
    for k, (w, h) in enumerate(sorted(canvases.values(), key=lambda c: c[0] / c[1])):
        left.plot([0, top], [0, top * h / w], "--", lw=0.8, color="grey")
        right.axvline(w / h, ls="--", lw=0.8, color="grey")
        right.text(w / h, ceiling * (0.97 - 0.09 * k), f" {w}×{h}", va="top", fontsize=7)
    left.set(xlabel="width (px)", ylabel="height (px)", title="image sizes")
    right.set(
        xlabel="aspect ratio width / height",
        ylabel="images",
        title="aspect ratios (dashed: the paper's canvases)",
    )
    left.legend(fontsize=8, markerscale=3)
    right.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_examples(dataset: CTDataset, n_per_class: int = 4, seed: int = 0) -> Figure:
    """Example slices per class, as the paper's Fig. 7 and Fig. 8 show them."""
    rng = np.random.default_rng(seed)
    labels = dataset.frame["label"].to_numpy(dtype=float)
    figure, axes = _grid(2, n_per_class, 2.4, 2.3)
    for row, (label, cls) in enumerate(((1, "COVID"), (0, "non-COVID"))):
        index = np.flatnonzero(labels == label)
        chosen = (
            rng.choice(index, min(n_per_class, len(index)), replace=False) if len(index) else []
        )
        for col, i in enumerate(chosen):
            image = dataset.read_image(int(i))
            axes[row, col].imshow(image, cmap="gray", vmin=0, vmax=255)
            axes[row, col].set_title(f"{image.shape[1]}×{image.shape[0]}", fontsize=8)
        axes[row, 0].set_ylabel(cls)
    figure.suptitle(f"{dataset.name}: example slices per class", fontsize=10)
    figure.tight_layout()
    return figure


def plot_augmentations(
    dataset: CTDataset,
    index: int = 0,
    size: tuple[int, int] = (349, 253),
    n: int = 7,
    seed: int = 0,
) -> Figure:
    """One slice on its canvas and ``n`` draws of the paper's training augmentations."""
    from ctlib.transforms import CanvasDataset

    items = CanvasDataset(dataset.frame.iloc[[index]], size, train=True, seed=seed)
    figure, axes = _grid(2, (n + 2) // 2, 2.8, 2.2)
    panels = [(items.canvas(0)[0], "canvas, not augmented")]
    for epoch in range(n):
        items.set_epoch(epoch)
        panels.append((items.augmented(0), f"epoch {epoch + 1}"))
    for ax, (image, title) in zip(axes.flat, panels, strict=False):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    figure.suptitle(
        "crop, blur (p = 0.25), noise, brightness/contrast, flip: a new draw every epoch",
        fontsize=10,
    )
    figure.tight_layout()
    return figure


def plot_lr_schedule(config: TrainConfig, paper: TrainConfig | None = None) -> Figure:
    """The learning rate of ``config`` and of the paper's recipe, over the course of training.

    The x axis is the share of training done, so a 5-epoch run and the paper's 100 epochs
    can be compared: the drops come at the same shares (rounded to whole epochs), the
    levels may differ.
    """
    import matplotlib.pyplot as plt

    from ctlib.train import TrainConfig, lr_at

    paper = paper or TrainConfig()
    figure, ax = plt.subplots(figsize=(7, 3))
    runs = (
        (paper, f"paper: {paper.epochs} epochs", "-"),
        (config, f"this run: {config.epochs} epochs", "o--"),
    )
    for cfg, label, style in runs:
        starts = np.arange(cfg.epochs + 1)  # epoch e covers [e, e + 1) / epochs
        rates = [lr_at(int(e), cfg) for e in starts[:-1]]
        ax.step(
            100 * starts / cfg.epochs,
            [*rates, rates[-1]],
            style,
            where="post",
            label=label,
            markersize=3,
        )
    ax.set(
        yscale="log",
        xlabel="training done (%)",
        ylabel="learning rate",
        title="LAMB learning-rate schedule (a short run rounds the drops to whole epochs)",
    )
    ax.legend(loc="lower left")
    figure.tight_layout()
    return figure


def load_history(folder: str | os.PathLike[str]) -> pd.DataFrame:
    """A fold's ``history.json`` (one row per epoch)."""
    path = Path(folder) / "history.json"
    if not path.is_file():
        raise FileNotFoundError(f"No history.json in {str(folder)!r}: has this fold been trained?")
    return pd.read_json(path)


def plot_history(history: pd.DataFrame) -> Figure:
    """Training loss (and validation loss/accuracy where recorded) per epoch, with the lr."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    left.plot(history["epoch"], history["train_loss"], "o-", label="training loss")
    if "val_loss" in history:
        left.plot(history["epoch"], history["val_loss"], "s-", label="validation loss")
    left.set(xlabel="epoch", ylabel="binary cross-entropy", title="training curve")
    left.legend()
    right.step(history["epoch"], history["lr"], where="mid")
    right.set(xlabel="epoch", ylabel="learning rate", yscale="log", title="learning rate used")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    return figure


# --------------------------------------------------------------------------- training
def finetune_config(
    mode: Mode,
    arch: str | None = None,
    *,
    max_epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    canvas_width: int | None = None,
    seed: int = 0,
) -> TrainConfig:
    """The fine-tuning recipe of a notebook: the paper's in full mode, a CPU-sized one in quick.

    Quick mode deviates from the paper, for the CPU (each notebook says so):
    EfficientNet-Lite0 (the only network with ImageNet weights offline), 5 epochs instead
    of 100, a canvas 128 px wide (same shape as Table 1's) instead of 349 × 253, batch 16
    instead of 32, and an initial learning rate of 1e-2 instead of 3e-4 -- with a few dozen
    LAMB steps, 3e-4 barely moves the weights. The schedule's milestones scale with the
    epochs; a learning rate other than the paper's scales the whole schedule, so the drops
    keep the paper's ratios (1/3, 1/10, 1/30, 1/100 of the initial rate). Every argument
    given overrides the mode's choice.
    """
    from ctlib.models import get_spec
    from ctlib.train import TrainConfig

    if mode.quick:
        name = arch or QUICK_ARCH
        width, height = get_spec(name).canvas
        target = canvas_width or 128
        config = TrainConfig(
            arch=name,
            epochs=5,
            batch_size=16,
            device="cpu",
            seed=seed,
            canvas=(target, max(32, int(round(height * target / width)))),
        )
        lr = QUICK_LR if lr is None else lr
    else:
        name = arch or FULL_ARCH
        config = TrainConfig(arch=name, seed=seed)
        if canvas_width is not None:
            width, height = get_spec(name).canvas
            config = dataclasses.replace(
                config, canvas=(canvas_width, int(round(height * canvas_width / width)))
            )
    changes: dict[str, Any] = {}
    if max_epochs is not None:
        changes["epochs"] = int(max_epochs)
    if lr is not None and float(lr) != config.lr:
        # keep the paper's ratios: the drops go to 1/3, 1/10, 1/30 and 1/100 of the initial rate
        changes["lr"] = float(lr)
        changes["lr_values"] = tuple(v * float(lr) / config.lr for v in config.lr_values)
    if batch_size is not None:
        changes["batch_size"] = int(batch_size)
    return dataclasses.replace(config, **changes) if changes else config


def recipe_table(config: TrainConfig) -> pd.DataFrame:
    """This run's recipe beside the paper's (Sec. 4), with every deviation marked."""
    from ctlib.models import get_spec, list_models
    from ctlib.train import TrainConfig

    paper = TrainConfig(arch=config.arch)
    schedule = "drops at epochs {} to {}".format(
        "/".join(str(m) for m in paper.lr_milestones), ", ".join(f"{v:g}" for v in paper.lr_values)
    )
    this_schedule = "drops at about the same fractions of the run, to " + ", ".join(
        f"{v:g}" for v in config.lr_values
    )
    rows = [
        (
            "architecture",
            get_spec(config.arch).display_name,
            "one of 12 (Table 1)",
            config.arch not in list_models(paper=True),
        ),
        (
            "ImageNet weights",
            config.pretrained,
            paper.pretrained,
            config.pretrained != paper.pretrained,
        ),
        ("strategy", config.strategy, paper.strategy, config.strategy != paper.strategy),
        ("optimizer", "LAMB", "LAMB", False),
        ("loss", "binary cross-entropy", "binary cross-entropy", False),
        ("epochs", config.epochs, paper.epochs, config.epochs != paper.epochs),
        ("batch size", config.batch_size, paper.batch_size, config.batch_size != paper.batch_size),
        ("initial learning rate", f"{config.lr:g}", f"{paper.lr:g}", config.lr != paper.lr),
        (
            "learning-rate schedule",
            schedule
            if config.epochs == paper.epochs and config.lr_values == paper.lr_values
            else this_schedule,
            schedule,
            config.epochs != paper.epochs or config.lr_values != paper.lr_values,
        ),
        (
            "weight decay",
            f"{config.weight_decay:g}",
            f"{paper.weight_decay:g}",
            config.weight_decay != paper.weight_decay,
        ),
        (
            "canvas (w × h)",
            "{}×{}".format(*config.input_size),
            "{}×{}".format(*paper.input_size),
            config.input_size != paper.input_size,
        ),
    ]
    frame = pd.DataFrame(rows, columns=["setting", "this run", "paper", "differs"]).set_index(
        "setting"
    )
    frame["differs"] = np.where(frame["differs"], "← differs", "")
    return frame


def schedule_table(config: TrainConfig) -> pd.DataFrame:
    """The learning rate per range of epochs (1-based, inclusive) of ``config``."""
    from ctlib.train import lr_at

    rows, start = [], 0
    for epoch in range(1, config.epochs + 1):
        if epoch == config.epochs or lr_at(epoch, config) != lr_at(start, config):
            span = f"{start + 1}–{epoch}" if epoch > start + 1 else f"{epoch}"
            rows.append({"epochs": span, "learning rate": f"{lr_at(start, config):g}"})
            start = epoch
    return pd.DataFrame(rows).set_index("epochs")


def ensure_results(
    folder: str | os.PathLike[str],
    mode: Mode,
    *,
    dataset: str | None = None,
    arch: str | None = None,
    n_folds: int = 5,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Every finished fold under ``folder``, one row each (:func:`ctlib.tables.collect_results`).

    Quick mode first completes the quick cross-validation (:func:`finetune_config` on
    ``dataset``, default synthetic): folds already finished, e.g. notebook 02's, are skipped,
    so a second call costs seconds. Full mode never trains here: without results it raises,
    naming the command that makes them.
    """
    from ctlib.tables import collect_results

    if mode.quick:
        from ctlib.cv import run_cv

        data = get_dataset(dataset or default_dataset(mode))
        config = finetune_config(mode, arch, seed=seed)
        log.info("completing the quick %d-fold CV of %s in %s", n_folds, config.arch, folder)
        run_cv(data, config, n_folds=n_folds, out=folder, progress=progress)
        return collect_results(folder)
    try:
        return collect_results(folder)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"No cross-validation results under {str(folder)!r}. Make them first, e.g. "
            f"`python -m ctlib cv --arch {arch or FULL_ARCH} --dataset {dataset or FULL_DATASET} "
            f"--out {folder}` for each architecture, or run notebook 02; then run this again."
        ) from None


# --------------------------------------------------------------------------- widget
class SliceViewer:
    """A small explorer: a slider picks a slice, a menu the canvas it is drawn on.

    Built from small named callbacks (:meth:`render`, :meth:`update`) so that it can be
    tested without a browser; ``.widget`` is what a notebook displays.

    Args:
        dataset: the data set to browse.
        canvases: label -> canvas ``(width, height)``; default :func:`canvas_columns`.
        square: side of the plain (squashed) resize offered for contrast.
    """

    ORIGINAL = "original"

    def __init__(
        self,
        dataset: CTDataset,
        canvases: Mapping[str, tuple[int, int]] | None = None,
        square: int = 224,
    ) -> None:
        import ipywidgets as widgets

        self.dataset = dataset
        self.canvases = dict(canvases) if canvases is not None else canvas_columns()
        self.square = square
        squashed = f"squashed {square}×{square}"
        self.options = [self.ORIGINAL, squashed, *self.canvases]
        self.canvases[squashed] = (square, square)
        self.slider = widgets.IntSlider(
            value=0, min=0, max=len(dataset) - 1, description="slice", continuous_update=False
        )
        self.menu = widgets.Dropdown(
            options=self.options, value=self.ORIGINAL, description="drawn as"
        )
        self.image = widgets.Image(format="png")
        self.caption = widgets.HTML()
        self.slider.observe(self.update, names="value")
        self.menu.observe(self.update, names="value")
        self.widget = widgets.VBox(  # flex-start: pictures at their own size, not stretched
            [widgets.HBox([self.slider, self.menu]), self.image, self.caption],
            layout=widgets.Layout(align_items="flex-start"),
        )
        self.update()

    def render(self, index: int, option: str) -> tuple[np.ndarray, str]:
        """The picture for slice ``index`` drawn as ``option``, and its caption."""
        import cv2

        from ctlib.canvas import fit_to_canvas

        image = self.dataset.read_image(index)
        label = {1: "COVID", 0: "non-COVID"}.get(int(self.dataset.frame["label"].iloc[index]), "?")
        h, w = image.shape
        if option == self.ORIGINAL:
            return image, f"{label}, {w}×{h} as stored"
        cw, ch = self.canvases[option]
        if option.startswith("squashed"):
            return (
                cv2.resize(image, (cw, ch), interpolation=cv2.INTER_AREA),
                f"{label}, {w}×{h} squashed to {cw}×{ch}: aspect ratio lost",
            )
        canvas, box = fit_to_canvas(image, (cw, ch))
        padding = 1 - box.width * box.height / (cw * ch)
        return canvas, f"{label}, {w}×{h} on the {cw}×{ch} canvas: {padding:.0%} padding"

    def update(self, change: object = None) -> None:
        """Redraw for the current slider and menu values (the widgets' callback)."""
        from PIL import Image

        picture, caption = self.render(int(self.slider.value), str(self.menu.value))
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")
        self.image.value = buffer.getvalue()
        self.caption.value = f"<span class='ctlib-caption'>{caption}</span>"


# --------------------------------------------------------------------------- running
def run_notebooks(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    *,
    parameters: Mapping[str, Any] | None = None,
    kernel: str | None = None,
) -> pd.DataFrame:
    """Execute notebooks headless with papermill; executed copies go to ``out``.

    Returns one row per notebook: ``notebook``, ``seconds``, ``output``, ``error`` (empty if
    it ran through). A failing notebook does not stop the others; the caller decides.
    """
    import time

    import papermill

    target = Path(out) if out is not None else output_dir()
    target.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in map(Path, paths):
        started = time.perf_counter()
        destination = target / path.name
        error = ""
        try:
            papermill.execute_notebook(
                str(path),
                str(destination),
                parameters=dict(parameters or {}),
                kernel_name=kernel,
                cwd=str(path.parent),
                progress_bar=False,
            )
        except Exception as exc:  # a failing cell: PapermillExecutionError (ename, evalue)
            name = getattr(exc, "ename", type(exc).__name__)
            lines = str(getattr(exc, "evalue", exc)).strip().splitlines()
            error = f"{name}: {lines[-1] if lines else ''}"
        rows.append(
            {
                "notebook": path.name,
                "seconds": round(time.perf_counter() - started, 1),
                "output": str(destination),
                "error": error,
            }
        )
    return pd.DataFrame(rows)


CHECK_MARK = "NBVAL_CHECK_OUTPUT"


def is_checked(source: str) -> bool:
    """Whether a cell's source carries nbval's ``# NBVAL_CHECK_OUTPUT`` marker (a comment line
    holding only the marker, as nbval requires)."""
    return any(
        line.strip().startswith("#") and line.strip().lstrip("#").strip() == CHECK_MARK
        for line in source.splitlines()
    )


def strip_outputs(
    path: str | os.PathLike[str], executed: str | os.PathLike[str] | None = None
) -> int:
    """Remove outputs and execution counts from a notebook, except in checked cells.

    Cells marked ``# NBVAL_CHECK_OUTPUT`` keep their outputs (nbval compares against them)
    and, as nbval requires, an execution count: their position among the code cells, so
    that the file does not change from run to run. With ``executed`` (a run of the same
    notebook, e.g. papermill's copy), they take that run's outputs instead. Returns the
    number of checked cells. Writes only on change.

    Raises:
        ValueError: ``executed`` lacks a checked cell of ``path`` (matched by source).
    """
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    fresh: dict[str, list[Any]] = {}
    if executed is not None:
        run = nbformat.read(executed, as_version=4)
        fresh = {
            c.source: c.outputs for c in run.cells if c.cell_type == "code" and is_checked(c.source)
        }
    before = nbformat.writes(notebook)
    checked = 0
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    for number, cell in enumerate(code_cells, start=1):
        cell.execution_count = None
        if is_checked(cell.source):
            checked += 1
            cell.execution_count = number  # nbval skips reference cells without a count
            if executed is not None:
                if cell.source not in fresh:
                    raise ValueError(
                        f"{executed} has no run of the checked cell {cell.source[:60]!r}."
                    )
                cell.outputs = fresh[cell.source]
            for output in cell.outputs:
                if "execution_count" in output:
                    output["execution_count"] = None
        else:
            cell.outputs = []
        cell.metadata.pop("execution", None)
        for key in ("papermill", "scrolled", "collapsed"):
            cell.metadata.pop(key, None)
    for key in ("papermill", "widgets"):
        notebook.metadata.pop(key, None)
    after = nbformat.writes(notebook)
    if after != before:
        Path(path).write_text(after + ("" if after.endswith("\n") else "\n"), encoding="utf-8")
    return checked


def _main(argv: Sequence[str] | None = None) -> int:
    """``python -m ctlib.notebook run|strip ...``: run notebooks headless, or strip outputs."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m ctlib.notebook",
        description="The numbered notebooks: run them, or clean them for a commit.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks headless (papermill), print timings")
    run.add_argument(
        "notebooks", nargs="*", help="notebooks (default: notebooks/[0-9][0-9]_*.ipynb)"
    )
    run.add_argument("--out", help="folder for the executed copies (default: outputs/notebooks)")
    strip = sub.add_parser(
        "strip", help="remove outputs, keeping those of # NBVAL_CHECK_OUTPUT cells"
    )
    strip.add_argument(
        "notebooks", nargs="*", help="notebooks (default: notebooks/[0-9][0-9]_*.ipynb)"
    )
    strip.add_argument(
        "--checked-from", help="folder of executed copies whose checked outputs to keep"
    )
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(
        str(p) for p in ((repo_root() or Path.cwd()) / "notebooks").glob("[0-9][0-9]_*.ipynb")
    )
    if not paths:
        print("no notebooks found", file=sys.stderr)
        return 2
    if args.command == "strip":
        for path in paths:
            executed = Path(args.checked_from) / Path(path).name if args.checked_from else None
            print(f"{path}: {strip_outputs(path, executed)} checked cell(s) kept")
        return 0
    print(str(get_mode()))
    report = run_notebooks(paths, args.out)
    print(report[["notebook", "seconds", "error"]].to_string(index=False))
    print(f"executed copies in {Path(report['output'].iloc[0]).parent}")
    return 1 if (report["error"] != "").any() else 0


if __name__ == "__main__":
    sys.exit(_main())
