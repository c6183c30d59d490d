"""The ctlib command line: ``python -m ctlib <command> --help``.

Each command imports the parts of ctlib it needs inside its own function, on purpose:
``python -m ctlib --help`` or ``datasets`` then answers in a second, without loading torch.

Commands:
    datasets    list the registered data sets and whether they are found
    verify      check a real data set against its shipped manifest
    download    fetch a real data set from its public source
    canvases    draw slices on each architecture's canvas (a figure)
    train       fine-tune one architecture on one fold
    cv          cross-validate one architecture (paper / patient / official protocol)
    table       Table 2 and Fig. 9 from a results folder
    predict     probability of COVID for any image files, with a trained model
    prepare-workshop  the day before a workshop: data, the lessons' training, a rehearsal
    quickstart  the kit's main job in quick mode (synthetic data, CPU, seconds)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from ctlib.data.registry import DATASETS, REAL_DATASETS
from ctlib.errors import CtlibError, DataError

DEFAULT_ARCHS = ("squeezenet", "shufflenet", "resnet18", "inceptionv3", "xception")


def _runs_default() -> str:
    """``CTLIB_RUNS_DIR`` (e.g. a folder on Google Drive, so runs outlive a Colab runtime), else
    ``runs``."""
    return os.environ.get("CTLIB_RUNS_DIR", "").strip() or "runs"


def _cmd_datasets(args: argparse.Namespace) -> int:
    from ctlib.data import load_dataset
    from ctlib.paths import data_dir

    print(
        f"data folder: {data_dir(args.root)} (argument --root, else CTLIB_DATA_DIR, else the cache)"
    )
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

    names = sorted(REAL_DATASETS) if args.dataset == "all" else [args.dataset]
    for name in names:
        path = download(
            name,
            args.dest,
            force=args.force,
            verify=args.verify,
            mirror=args.mirror,
            progress=not args.quiet,
        )
        print(f"{name} is ready in {path}")
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
    from ctlib.recipes import quick_config
    from ctlib.train import TrainConfig

    base = quick_config(args.arch) if args.quick else TrainConfig(arch=args.arch)
    changes = {"seed": args.seed, "pretrained": not args.no_pretrained}
    if args.lr is not None:
        base = base.with_lr(args.lr)  # the whole schedule scales with the initial lr
    for key in ("epochs", "batch_size", "optimizer", "device", "amp", "num_workers", "content"):
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
    results = run_cv(
        _load(args),
        config,
        protocol=args.protocol,
        n_folds=args.folds,
        only_folds=only,
        out=args.out,
        progress=not args.quiet,
        resume=not args.no_resume,
    )
    columns = ["fold", "accuracy", "precision", "recall", "specificity", "f1", "roc_auc"]
    print(results[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"results in {Path(args.out) / args.dataset / args.protocol / config.run_name}")
    return 0


def _cmd_table(args: argparse.Namespace) -> int:
    from ctlib.plots import confusion_figure, save_figure
    from ctlib.results import collect_results
    from ctlib.study.tables import markdown_table, table2

    if args.readme or args.check_readme:
        from ctlib.study.readme import update_readme

        readme = args.readme or args.check_readme
        changed = update_readme(readme, args.results, check=bool(args.check_readme))
        if args.check_readme:
            if changed:
                print(
                    f"{readme} is stale: its results block differs from what {args.results} "
                    f"gives; run `python -m ctlib table {args.results} --readme {readme}`.",
                    file=sys.stderr,
                )
                return 1
            print(f"{readme}'s results block matches {args.results}")
            return 0
        print(f"{'updated' if changed else 'unchanged'}: {readme}")
        return 0
    if args.honest:
        from ctlib.plots import honest_figure
        from ctlib.study.readme import readme_block

        print(readme_block(args.results))
        if args.figures:
            path = save_figure(
                honest_figure(args.results), Path(args.figures) / "honest_evaluation.png"
            )
            print(f"wrote {path}")
        return 0
    results = collect_results(args.results)
    table = table2(results)
    print(markdown_table(table.reset_index()) if args.markdown else table.to_string())
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv)
        print(f"wrote {args.csv}")
    if args.figures:
        path = save_figure(confusion_figure(results), Path(args.figures) / "confusion_matrices.png")
        print(f"wrote {path}")
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from ctlib.data import load_dataset

    dataset = load_dataset(args.dataset, args.root, progress=not args.quiet)
    if args.what == "report":
        from ctlib.study.audit import write_audit

        path = write_audit(
            dataset,
            args.out or "results/audit",
            cosine_min=args.cosine_min,
            progress=not args.quiet,
        )
        print(f"wrote {path}")
        return 0
    return _audit_groups(args, dataset)


def _cmd_heat(args: argparse.Namespace) -> int:
    from ctlib.explain import heat_report

    table = heat_report(
        args.runs,
        args.dataset,
        args.protocol,
        args.run,
        images_per_fold=args.images,
        progress=not args.quiet,
    )
    path = Path(args.out) / f"heat_{args.dataset}_{args.protocol}_{args.run}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {path}")
    return 0


def _audit_groups(args: argparse.Namespace, dataset) -> int:  # noqa: ANN001
    from ctlib.data import pseudo_patient_file
    from ctlib.study import audit

    if args.what == "pseudo-patients":
        if args.check:
            result = audit.check_pseudo_patients(dataset, args.groups, progress=not args.quiet)
            for key, value in result.items():
                print(f"{key:>20}: {value:.3f}")
            return 0
        groups = audit.build_pseudo_patients(dataset, args.groups, progress=not args.quiet)
        path = Path(args.out) if args.out else pseudo_patient_file(dataset.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        groups.to_csv(path, index=False)
        print(f"wrote {path}: {groups['pseudo_patient'].nunique()} groups of {len(groups)} images")
        return 0
    raise ValueError(f"Unknown audit {args.what!r}.")


def _cmd_export(args: argparse.Namespace) -> int:
    from ctlib.results import export_results

    written = export_results(args.source, args.dest)
    print(f"wrote {len(written)} files under {args.dest}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from ctlib.results import import_results

    written = import_results(args.source, args.dest, args.root)
    print(
        f"wrote {len(written)} files under {args.dest}; `python -m ctlib cv ... --out "
        f"{args.dest}` now skips the imported folds"
    )
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ctlib.models import list_models
    from ctlib.sweep import estimate_cost, plan_tasks, run_sweep, visible_gpus

    archs = list_models(paper=True) if args.archs == ["paper"] else args.archs
    suffix = "-scratch" if args.no_pretrained else ""
    todo, done = plan_tasks(args.datasets, archs, args.folds, args.out, run_suffix=suffix)
    print(
        f"{len(todo)} cells to run, {len(done)} finished already "
        f"({len(args.datasets)} data sets x {len(archs)} architectures x {args.folds} folds)"
    )
    if todo:
        cost = estimate_cost(
            todo, epochs=args.epochs, n_folds=args.folds, gpu_tflops=args.gpu_tflops
        )
        print(cost.to_string(float_format=lambda v: f"{v:,.1f}"))
        print(
            f"gpu_hours_estimate assumes {args.gpu_tflops:g} TFLOP/s sustained (an estimate, see "
            "`python -c 'import ctlib.sweep; help(ctlib.sweep)'`); cpu_hours are measured step "
            "times on a 2-core CPU."
        )
    if args.dry_run or not todo:
        return 0
    slots = args.slots.split(",") if args.slots else visible_gpus()
    cv_args = ["--epochs", str(args.epochs)]
    for flag, value in (
        ("--batch-size", args.batch_size),
        ("--lr", args.lr),
        ("--amp", args.amp),
        ("--root", args.root),
        ("--seed", args.seed),
    ):
        if value is not None:
            cv_args += [flag, str(value)]
    if args.canvas:
        cv_args += ["--canvas", *map(str, args.canvas)]
    if args.no_pretrained:
        cv_args.append("--no-pretrained")
    status = run_sweep(todo, slots, args.out, cv_args, n_folds=args.folds)
    failed = sorted(label for label, code in status.items() if code != 0)
    print(
        f"{len(status) - len(failed)} cells finished, {len(failed)} failed"
        + (f": {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from ctlib.explain import predict_files

    frame = predict_files(args.files, args.checkpoint, canvas=args.canvas, progress=not args.quiet)
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def _cmd_prepare_workshop(args: argparse.Namespace) -> int:
    from ctlib.notebook import get_mode
    from ctlib.notebook.preflight import prepare_workshop

    mode = get_mode()
    print(f"{mode}\npreparing: data, then every run notebooks 02-05 train, then one rehearsal")
    report = prepare_workshop(
        mode,
        download_missing=args.download,
        rehearse=not args.no_rehearse,
        notebooks=args.notebooks or None,
        progress=not args.quiet,
    )
    print(report.to_string(index=False))
    rehearsal = report[report["step"] == "rehearse"]
    if len(rehearsal):
        print(
            f"in class, the notebooks now take {rehearsal['seconds'].sum() / 60:.1f} min in all "
            "(each as timed above; nothing is left to train)"
        )
    failed = rehearsal["note"] != "ran through"
    return 1 if failed.any() else 0


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
        description="ctlib: reproduce and examine Alshazly et al. (2020), COVID-19 detection in "
        "CT.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("datasets", help="list data sets and whether they are found")
    p.add_argument("--root", help="folder holding the data sets (default: CTLIB_DATA_DIR)")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser("verify", help="check a real data set against its manifest")
    p.add_argument("dataset", choices=sorted(REAL_DATASETS))
    p.add_argument("--root", help="folder holding the data sets (default: CTLIB_DATA_DIR)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("download", help="download a real data set from its public source")
    p.add_argument(
        "dataset", choices=[*sorted(REAL_DATASETS), "all"], help="a data set, or all of them"
    )
    p.add_argument("--dest", help="folder to put it in (default: CTLIB_DATA_DIR or the cache)")
    p.add_argument("--force", action="store_true", help="download again even if present")
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="keep the copy even if it does not match the shipped manifest",
    )
    p.add_argument("--mirror", help="base URL replacing GitHub's (or CTLIB_DOWNLOAD_MIRROR)")
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
        p.add_argument(
            "--arch",
            default="efficientnet_lite0",
            help="architecture, see ctlib.models.list_models() (default: efficientnet_lite0)",
        )
        p.add_argument(
            "--protocol",
            default="paper",
            choices=["paper", "patient", "pseudo-patient", "official"],
            help="paper: image-level stratified k-fold; patient: grouped by patient; "
            "pseudo-patient: grouped by derived scan groups (sars-cov-2-ct); "
            "official: COVID19-CT's train/val/test split (default: paper)",
        )
        p.add_argument("--folds", type=int, default=5, help="number of folds k (default: 5)")
        p.add_argument(
            "--epochs", type=int, help="epochs (default: 100, the paper's; 2 with --quick)"
        )
        p.add_argument("--batch-size", type=int, help="batch size (default: 32; 16 with --quick)")
        p.add_argument(
            "--lr",
            type=float,
            help="initial learning rate (default: 3e-4); the later drops scale with it",
        )
        p.add_argument("--optimizer", choices=["lamb", "lamb_timm"], help="LAMB implementation")
        p.add_argument(
            "--canvas",
            type=int,
            nargs=2,
            metavar=("W", "H"),
            help="canvas width height (default: the architecture's Table 1 canvas)",
        )
        p.add_argument("--device", help="auto, cpu, cuda, cuda:1 ... (default: auto)")
        p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], help="mixed precision")
        p.add_argument("--num-workers", type=int, help="DataLoader workers (default: 0)")
        p.add_argument("--no-pretrained", action="store_true", help="random initialisation")
        p.add_argument(
            "--content",
            choices=["image", "flat"],
            help="flat: the padding-geometry probe, the slice replaced by a uniform "
            "gray box (default: image)",
        )
        p.add_argument(
            "--feature-extraction",
            action="store_true",
            help="train only the head (the strategy the paper contrasts with fine-tuning)",
        )
        p.add_argument("--seed", type=int, default=0, help="one seed for everything (default: 0)")
        p.add_argument(
            "--quick",
            action="store_true",
            help="CPU-sized run: 2 epochs, batch 16, a 160-px-wide canvas",
        )
        p.add_argument(
            "--no-resume",
            action="store_true",
            help="restart unfinished folds instead of resuming their checkpoints",
        )
        p.add_argument(
            "--out",
            default=_runs_default(),
            help="results folder (default: CTLIB_RUNS_DIR or runs)",
        )
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
    p.add_argument(
        "--honest",
        action="store_true",
        help="print the comparison (protocols x data sets x networks, paper beside) "
        "and the audit tables instead of Table 2",
    )
    p.add_argument("--readme", metavar="README", help="rewrite README's generated results block")
    p.add_argument(
        "--check-readme",
        metavar="README",
        help="exit 1 if README's generated results block is stale",
    )
    p.set_defaults(func=_cmd_table)

    p = sub.add_parser("sweep", help="the full Table 2 grid, one process per GPU, resumable")
    p.add_argument(
        "--datasets", nargs="+", default=sorted(REAL_DATASETS), help="data sets (default: both)"
    )
    p.add_argument(
        "--archs",
        nargs="+",
        default=["paper"],
        help="architectures, or 'paper' for the paper's twelve (default)",
    )
    p.add_argument("--folds", type=int, default=5, help="folds (default: 5)")
    p.add_argument("--epochs", type=int, default=100, help="epochs (default: 100, the paper's)")
    p.add_argument(
        "--out", default=_runs_default(), help="results folder (default: CTLIB_RUNS_DIR or runs)"
    )
    p.add_argument("--root", help="folder holding the data sets (default: CTLIB_DATA_DIR)")
    p.add_argument(
        "--slots",
        help="comma-separated GPU indices to use, one process each, or "
        "'cpu' entries (default: every visible GPU)",
    )
    p.add_argument("--batch-size", type=int, help="batch size (default: 32)")
    p.add_argument("--lr", type=float, help="initial learning rate (default: 3e-4)")
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], help="mixed precision")
    p.add_argument(
        "--canvas",
        type=int,
        nargs=2,
        metavar=("W", "H"),
        help="one canvas for all (default: each architecture's Table 1 canvas)",
    )
    p.add_argument("--seed", type=int, help="seed (default: 0)")
    p.add_argument("--no-pretrained", action="store_true", help="random initialisation")
    p.add_argument(
        "--gpu-tflops",
        type=float,
        default=25.0,
        help="assumed sustained GPU throughput for the estimate (default: 25)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the plan and its cost, run nothing"
    )
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser(
        "heat", help="Grad-CAM heat on padding and outside the body, per trained fold"
    )
    p.add_argument("runs", help="a runs folder with checkpoints (the --out of cv)")
    p.add_argument("--dataset", required=True, help="data set of the run")
    p.add_argument("--protocol", default="paper", help="protocol of the run (default: paper)")
    p.add_argument(
        "--run",
        default="efficientnet_lite0",
        help="run folder name, e.g. efficientnet_lite0-scratch (default: efficientnet_lite0)",
    )
    p.add_argument("--images", type=int, default=20, help="test images per fold (default: 20)")
    p.add_argument(
        "--out", default="results/explain", help="output folder (default: results/explain)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_heat)

    p = sub.add_parser(
        "export-results",
        help="copy the small files of finished runs (no checkpoints) into results/",
    )
    p.add_argument("source", help="a runs folder (the --out of cv)")
    p.add_argument("dest", nargs="?", default="results", help="destination (default: results)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "import-results",
        help="seed a runs folder with the finished folds of results/ (resume a "
        "long job on a new machine: those folds are skipped)",
    )
    p.add_argument(
        "source", nargs="?", default="results", help="exported results (default: results)"
    )
    p.add_argument("dest", help="a runs folder (the --out of cv)")
    p.add_argument(
        "--root",
        default=None,
        help="the folder holding the data sets (default: CTLIB_DATA_DIR or the kit's data folder)",
    )
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("audit", help="leakage audit helpers (pseudo-patient groups)")
    p.add_argument(
        "what",
        choices=["report", "pseudo-patients"],
        help="report: the leakage/shortcut audit as results/audit/<dataset>.json; "
        "pseudo-patients: derived scan groups for a data set without patient IDs",
    )
    p.add_argument("dataset", choices=sorted(DATASETS))
    p.add_argument("--root", help="folder holding the data sets (default: CTLIB_DATA_DIR)")
    p.add_argument(
        "--cosine-min",
        type=float,
        default=0.92,
        help="report: cosine similarity of ImageNet features from which a training image is a "
        "test image's look-alike (default: 0.92, calibrated on COVID19-CT)",
    )
    p.add_argument(
        "--groups",
        type=int,
        default=60,
        help="pseudo-patients per label (default: 60, the SARS-CoV-2 CT authors' count)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="instead of writing groups, measure how much patient leakage they remove "
        "(needs patient IDs, e.g. covid19-ct)",
    )
    p.add_argument(
        "--out",
        help="report: output folder (default: results/audit); pseudo-patients: "
        "output CSV (default: data/<dataset>.pseudo_patients.csv)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_audit)

    p = sub.add_parser("predict", help="probability of COVID for image files or folders")
    p.add_argument("files", nargs="+", help="PNG/JPEG files or folders of them")
    p.add_argument("--checkpoint", required=True, help="a model.pt written by train/cv")
    p.add_argument(
        "--canvas",
        type=int,
        nargs=2,
        metavar=("W", "H"),
        help="canvas (default: from the run's config.json, else the architecture's)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "prepare-workshop",
        help="the day before a workshop: data, every run the notebooks train, a timed rehearsal",
    )
    p.add_argument("--download", action="store_true", help="fetch real data sets that are missing")
    p.add_argument(
        "--no-rehearse",
        action="store_true",
        help="train only; do not run the notebooks once to time them",
    )
    p.add_argument("--notebooks", nargs="*", help="notebooks to rehearse (default: notebooks/NN_*)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_prepare_workshop)

    p = sub.add_parser("quickstart", help="the main job in quick mode: synthetic data, seconds")
    p.add_argument("--out", default="outputs/quick", help="output folder (default: outputs/quick)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_quickstart)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (CtlibError, ValueError, OSError) as error:
        # every error a user can cause is one of the kit's (or a ValueError/OSError from a
        # library given a bad value or file): one message, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: what was finished is saved; run the same command again to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
