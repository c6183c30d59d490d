"""The ctlib command line: ``python -m ctlib <command> --help``.

Commands:
    datasets    list the registered data sets and whether they are found
    verify      check a real data set against its shipped manifest
    download    fetch a real data set from its public source
    canvases    draw slices on each architecture's canvas (a figure)
    train       fine-tune one architecture on one fold
    cv          cross-validate one architecture (paper / patient / official protocol)
    table       Table 2 and Fig. 9 from a results folder
    predict     probability of COVID for any image files, with a trained model
    quickstart  the kit's main job in quick mode (synthetic data, CPU, seconds)
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

DEFAULT_ARCHS = ("squeezenet", "shufflenet", "resnet18", "inceptionv3", "xception")


def _cmd_datasets(args: argparse.Namespace) -> int:
    from ctlib.data import DATASETS, DataError, load_dataset
    from ctlib.paths import data_dir

    print(f"data folder: {data_dir(args.root)} (argument --root, else CTLIB_DATA_DIR, else the cache)")
    for name, info in DATASETS.items():
        if not info.downloadable:
            state = "generated on first use"
        else:
            try:
                ds = load_dataset(name, args.root, progress=False)
                state = f"found, {len(ds)} images"
            except DataError as error:
                state = f"not ready: {str(error).splitlines()[0]}"
        print(f"  {name:15s} {info.title}: {state}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from ctlib.data import verify_dataset

    start = time.perf_counter()
    report = verify_dataset(args.dataset, args.root, strict=False, progress=not args.quiet)
    print(report.message())
    print(f"{'OK' if report.ok else 'PROBLEMS'} in {time.perf_counter() - start:.1f} s")
    return 0 if report.ok else 1


def _cmd_download(args: argparse.Namespace) -> int:
    from ctlib.data import download

    path = download(args.dataset, args.dest, force=args.force, progress=not args.quiet)
    print(f"{args.dataset} is ready in {path}")
    return 0


def _cmd_canvases(args: argparse.Namespace) -> int:
    from ctlib.data import load_dataset
    from ctlib.plots import canvas_sizes, plot_canvases, save_figure

    dataset = load_dataset(args.dataset, args.root, progress=not args.quiet)
    figure = plot_canvases(dataset, canvas_sizes(args.archs), n_images=args.n, seed=args.seed)
    path = save_figure(figure, Path(args.out) / f"canvases_{args.dataset}.png")
    print(f"wrote {path}")
    return 0


def _train_config(args: argparse.Namespace):  # -> TrainConfig
    from ctlib.cv import quick_config
    from ctlib.train import TrainConfig

    base = quick_config(args.arch) if args.quick else TrainConfig(arch=args.arch)
    changes = {"seed": args.seed, "pretrained": not args.no_pretrained}
    if args.lr is not None:
        base = base.with_lr(args.lr)  # the whole schedule scales with the initial lr
    for key in ("epochs", "batch_size", "optimizer", "device", "amp", "num_workers"):
        value = getattr(args, key)
        if value is not None:
            changes[key] = value
    if args.canvas is not None:
        changes["canvas"] = tuple(args.canvas)
    if args.feature_extraction:
        changes["strategy"] = "feature_extraction"
    return base.quick(**changes) if "epochs" in changes else base.quick(base.epochs, **changes)


def _load(args: argparse.Namespace):  # -> CTDataset
    from ctlib.data import load_dataset

    return load_dataset(args.dataset, args.root, progress=not args.quiet)


def _cmd_cv(args: argparse.Namespace) -> int:
    from ctlib.cv import run_cv

    config = _train_config(args)
    only = [args.fold] if getattr(args, "fold", None) is not None else args.only_folds
    results = run_cv(_load(args), config, protocol=args.protocol, n_folds=args.folds,
                     only_folds=only, out=args.out, progress=not args.quiet,
                     resume=not args.no_resume)
    columns = ["fold", "accuracy", "precision", "recall", "specificity", "f1", "roc_auc"]
    print(results[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"results in {Path(args.out) / args.dataset / args.protocol / config.arch}")
    return 0


def _cmd_table(args: argparse.Namespace) -> int:
    from ctlib.plots import save_figure
    from ctlib.tables import collect_results, confusion_figure, table2, table2_markdown

    results = collect_results(args.results)
    table = table2(results)
    print(table2_markdown(table) if args.markdown else table.to_string())
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv)
        print(f"wrote {args.csv}")
    if args.figures:
        path = save_figure(confusion_figure(results), Path(args.figures) / "confusion_matrices.png")
        print(f"wrote {path}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from ctlib.explain import predict_files

    frame = predict_files(args.files, args.checkpoint, canvas=args.canvas, progress=not args.quiet)
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def _cmd_quickstart(args: argparse.Namespace) -> int:
    args.dataset = "synthetic"
    args.root = None
    args.n = 2
    args.seed = 0
    args.archs = list(DEFAULT_ARCHS)
    return _cmd_canvases(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (kept separate so tests and docs can inspect it)."""
    parser = argparse.ArgumentParser(
        prog="python -m ctlib",
        description="ctlib: reproduce and examine Alshazly et al. (2020), COVID-19 detection in CT.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("datasets", help="list data sets and whether they are found")
    p.add_argument("--root", help="folder holding the data sets (default: CTLIB_DATA_DIR)")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser("verify", help="check a real data set against its manifest")
    p.add_argument("dataset", choices=["covid19-ct", "sars-cov-2-ct"])
    p.add_argument("--root", help="folder holding the data sets (default: CTLIB_DATA_DIR)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("download", help="download a real data set from its public source")
    p.add_argument("dataset", choices=["covid19-ct", "sars-cov-2-ct"])
    p.add_argument("--dest", help="folder to put it in (default: CTLIB_DATA_DIR or the cache)")
    p.add_argument("--force", action="store_true", help="download again even if present")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("canvases", help="figure: slices on each architecture's canvas")
    p.add_argument("--dataset", default="synthetic", help="data set name (default: synthetic)")
    p.add_argument("--root", help="folder holding the data sets (default: CTLIB_DATA_DIR)")
    p.add_argument("--archs", nargs="+", default=list(DEFAULT_ARCHS), help="architectures")
    p.add_argument("--n", type=int, default=2, help="images per class (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="which images (default: 0)")
    p.add_argument("--out", default="outputs/quick", help="output folder (default: outputs/quick)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_canvases)

    def training_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dataset", default="synthetic", help="data set (default: synthetic)")
        p.add_argument("--root", help="folder holding the data sets (default: CTLIB_DATA_DIR)")
        p.add_argument("--arch", default="efficientnet_lite0",
                       help="architecture, see ctlib.models.list_models() (default: efficientnet_lite0)")
        p.add_argument("--protocol", default="paper", choices=["paper", "patient", "official"],
                       help="paper: image-level stratified k-fold; patient: grouped by patient; "
                            "official: COVID19-CT's train/val/test split (default: paper)")
        p.add_argument("--folds", type=int, default=5, help="number of folds k (default: 5)")
        p.add_argument("--epochs", type=int, help="epochs (default: 100, the paper's; 2 with --quick)")
        p.add_argument("--batch-size", type=int, help="batch size (default: 32; 16 with --quick)")
        p.add_argument("--lr", type=float,
                       help="initial learning rate (default: 3e-4); the later drops scale with it")
        p.add_argument("--optimizer", choices=["lamb", "lamb_timm"], help="LAMB implementation")
        p.add_argument("--canvas", type=int, nargs=2, metavar=("W", "H"),
                       help="canvas width height (default: the architecture's Table 1 canvas)")
        p.add_argument("--device", help="auto, cpu, cuda, cuda:1 ... (default: auto)")
        p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], help="mixed precision")
        p.add_argument("--num-workers", type=int, help="DataLoader workers (default: 0)")
        p.add_argument("--no-pretrained", action="store_true", help="random initialisation")
        p.add_argument("--feature-extraction", action="store_true",
                       help="train only the head (the strategy the paper contrasts with fine-tuning)")
        p.add_argument("--seed", type=int, default=0, help="one seed for everything (default: 0)")
        p.add_argument("--quick", action="store_true",
                       help="CPU-sized run: 2 epochs, batch 16, a 160-px-wide canvas")
        p.add_argument("--no-resume", action="store_true",
                       help="restart unfinished folds instead of resuming their checkpoints")
        p.add_argument("--out", default="runs", help="results folder (default: runs)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("train", help="fine-tune one architecture on one fold")
    training_options(p)
    p.add_argument("--fold", type=int, default=0, help="which fold is held out (default: 0)")
    p.set_defaults(func=_cmd_cv, only_folds=None)

    p = sub.add_parser("cv", help="cross-validate one architecture on one data set")
    training_options(p)
    p.add_argument("--only-folds", type=int, nargs="+", help="run only these folds")
    p.set_defaults(func=_cmd_cv)

    p = sub.add_parser("table", help="Table 2 and Fig. 9 from a results folder")
    p.add_argument("results", help="results folder (the --out of cv)")
    p.add_argument("--markdown", action="store_true", help="print Markdown")
    p.add_argument("--csv", help="also write the table to this CSV file")
    p.add_argument("--figures", help="also draw the confusion matrices into this folder")
    p.set_defaults(func=_cmd_table)

    p = sub.add_parser("predict", help="probability of COVID for image files or folders")
    p.add_argument("files", nargs="+", help="PNG/JPEG files or folders of them")
    p.add_argument("--checkpoint", required=True, help="a model.pt written by train/cv")
    p.add_argument("--canvas", type=int, nargs=2, metavar=("W", "H"),
                   help="canvas (default: from the run's config.json, else the architecture's)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("quickstart", help="the main job in quick mode: synthetic data, seconds")
    p.add_argument("--out", default="outputs/quick", help="output folder (default: outputs/quick)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_quickstart)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from ctlib.data import DataError

    try:
        return int(args.func(args) or 0)
    except (DataError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
