"""The ctlib command line: ``python -m ctlib <command> --help``.

Commands:
    datasets    list the registered data sets and whether they are found
    verify      check a real data set against its shipped manifest
    download    fetch a real data set from its public source
    canvases    draw slices on each architecture's canvas (a figure)
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
