"""The ctlib command line: ``python -m ctlib <command> --help``.

Each command imports the parts of ctlib it needs inside its own function, on purpose:
``python -m ctlib --help`` or ``datasets`` then answers in a second, without loading torch.
Commands: data (``datasets``, ``verify``, ``download``, ``canvases``), training (``train``,
``cv``; ``sweep`` from :mod:`ctlib.ops.sweep`), reports (``table``, ``slides``, ``audit``, ``heat``,
``road``, ``figures``, ``predict``, ``export-results``, ``import-results``), ``prepare-workshop``
and ``quickstart``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from ctlib.argtypes import Number
from ctlib.canvas import MAX_CANVAS_SIDE
from ctlib.data.registry import DATASETS, REAL_DATASETS
from ctlib.errors import EXIT_HELD, CtlibError, DataError
from ctlib.ops.sweep.command import add_sweep_command
from ctlib.options import add_training_options, training_settings
from ctlib.runfiles import read_metrics, read_predictions

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
    """The recipe of a training command's options (the sweep's cells use it too)."""
    return training_settings(args)[0]


def _load(args: argparse.Namespace):  # -> CTDataset
    from ctlib.data import load_dataset

    return load_dataset(args.dataset, args.root, progress=not args.quiet)


def _cmd_cv(args: argparse.Namespace) -> int:
    from ctlib.cv import run_cv
    from ctlib.data import load_dataset

    config, runtime = training_settings(args)
    only = [args.fold] if getattr(args, "fold", None) is not None else args.only_folds
    if (args.protocol == "external") != (args.test_dataset is not None):
        raise CtlibError("--test-dataset NAME goes with --protocol external, and only with it.")
    test = args.test_dataset and load_dataset(args.test_dataset, args.root, progress=False)
    results = run_cv(
        _load(args),
        config,
        runtime=runtime,
        protocol=args.protocol,
        n_folds=args.folds,
        only_folds=only,
        out=args.out,
        progress=not args.quiet,
        resume=not args.no_resume,
        test_dataset=test or None,
    )
    columns = ["fold", "accuracy", "precision", "recall", "specificity", "f1", "roc_auc"]
    if len(results):
        print(results[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    protocol = f"external-{args.test_dataset}" if test else args.protocol
    print(f"results in {Path(args.out) / args.dataset / protocol / config.run_name}")
    held = results.attrs.get("held", [])
    if held:
        print(
            f"not finished here: fold(s) {', '.join(map(str, held))}, being trained by another "
            f"process (see above); run this command again once it has finished (exit "
            f"{EXIT_HELD}: not failed, not done)",
            file=sys.stderr,
        )
        return EXIT_HELD
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
        from ctlib.plots import honest_figure, reliability_figure
        from ctlib.study.readme import readme_block

        print(readme_block(args.results))
        if args.figures:
            for figure, name in ((honest_figure, "honest_evaluation"),
                                 (reliability_figure, "reliability")):  # fmt: skip
                path = save_figure(figure(args.results), Path(args.figures) / f"{name}.png")
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


def _cmd_slides(args: argparse.Namespace) -> int:
    from ctlib.study.slides import update_slides

    changed = update_slides(args.out, args.results, args.figures, check=args.check)
    if args.check:
        if changed:
            print(
                f"{args.out} is stale: it differs from what {args.results} gives; run "
                f"`python -m ctlib slides --results {args.results} --out {args.out}`.",
                file=sys.stderr,
            )
            return 1
        print(f"{args.out} matches {args.results}")
        return 0
    print(f"{'updated' if changed else 'unchanged'}: {args.out}")
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


def _trained_folder(args: argparse.Namespace) -> Path:
    """The fold folder a command's run options name, which must hold a trained network."""
    from ctlib.cv import fold_dir

    folder = fold_dir(args.runs, args.dataset, args.protocol, args.run, args.fold)
    if not (folder / "model.pt").is_file():
        raise FileNotFoundError(
            f"{folder / 'model.pt'} is missing: train that fold first (python -m ctlib cv "
            f"--dataset {args.dataset} --protocol {args.protocol} --only-folds {args.fold} "
            f"--out {args.runs} ...); exported results carry no network."
        )
    return folder


def _cmd_road(args: argparse.Namespace) -> int:

    from ctlib.explain import load_trained
    from ctlib.explain.faithfulness import faithfulness, summarize_faithfulness
    from ctlib.results import fold_recipe, relative_paths

    folder = _trained_folder(args)
    model, _ = load_trained(folder / "model.pt")
    test = read_predictions(folder / "predictions.csv")
    per_image = faithfulness(model, test, max_images=args.images, percentiles=args.percentiles,
                             seed=args.seed, progress=not args.quiet)  # fmt: skip
    accuracy = read_metrics(folder / "metrics.json")["accuracy"]
    per_image = per_image.assign(
        path=relative_paths(per_image["path"]), dataset=args.dataset, protocol=args.protocol,
        run=args.run, fold=args.fold, test_accuracy=accuracy,
        recipe=fold_recipe(folder / "config.json"),
        percentiles=" ".join(str(p) for p in args.percentiles),
    )  # fmt: skip
    path = Path(args.out) / f"road_{args.dataset}_{args.protocol}_{args.run}_fold{args.fold}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    per_image.to_csv(path, index=False)
    print(summarize_faithfulness(per_image).to_string(index=False, float_format="{:.3f}".format))
    print(f"wrote {path}")
    return 0


def _cmd_figures(args: argparse.Namespace) -> int:
    from ctlib.explain import fold_gallery, fold_tsne
    from ctlib.models import get_spec
    from ctlib.plots import plot_outcome_gallery, plot_tsne, save_figure
    from ctlib.results import fold_recipe, relative_paths

    folder = _trained_folder(args)
    arch = get_spec(args.run.split("-")[0]).display_name
    split = "image" if args.protocol == "paper" else args.protocol
    about = (
        f"{arch} on {DATASETS[args.dataset].title}, fold {args.fold} (split by {split}); "
        f"recipe: {fold_recipe(folder / 'config.json')}"
    )
    stem = f"{args.dataset}_{args.protocol}_{args.run}_fold{args.fold}"
    tables, figures = Path(args.out), Path(args.figures)
    tables.mkdir(parents=True, exist_ok=True)

    view = fold_tsne(folder, perplexity=args.perplexity, seed=args.seed, progress=not args.quiet)
    points = view.points
    figure = plot_tsne(
        points[["x", "y"]].to_numpy(),
        points["label"],
        points["split"],
        misclassified=points["misclassified"],
        title=f"t-SNE of the penultimate features (perplexity {args.perplexity:g})\n{about}",
    )
    print(f"wrote {save_figure(figure, figures / f'tsne_{args.dataset}.png')}")
    view.scores.assign(dataset=args.dataset, protocol=args.protocol, run=args.run).to_csv(
        tables / f"tsne_{stem}.csv", index=False
    )
    print(view.scores.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    gallery = fold_gallery(folder, n=args.n, method=args.method)
    figure = plot_outcome_gallery(gallery, title=f"Grad-CAM of the predicted class\n{about}")
    print(f"wrote {save_figure(figure, figures / f'gradcam_{args.dataset}.png')}")
    shown = gallery.shown.assign(dataset=args.dataset, protocol=args.protocol, run=args.run)
    shown["path"] = relative_paths(shown["path"].fillna("")).replace("", None)
    shown.to_csv(tables / f"gallery_{stem}.csv", index=False)
    print(f"wrote {tables / f'tsne_{stem}.csv'} and {tables / f'gallery_{stem}.csv'}")
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


def _cmd_predict(args: argparse.Namespace) -> int:
    from ctlib.explain import predict_files

    frame = predict_files(args.files, args.checkpoint, canvas=args.canvas, progress=not args.quiet)
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    failed = int((frame["error"] != "").sum())
    if failed and failed == len(frame):
        print(f"error: none of the {failed} file(s) could be read (see the error column).",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from ctlib.ops.selfcheck import format_checks, run_checks

    report, ready = format_checks(run_checks())
    print(report)
    return 0 if ready else 1


def _check_writable_file(path: Path, option: str) -> None:
    """Refuse a file path that cannot be written: a folder, or under a file."""
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give the file to write, e.g. {path / 'x'}.")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{option} {path} lies under {parent}, which is a file, not a folder.")


def _cmd_prepare_workshop(args: argparse.Namespace) -> int:
    from ctlib.notebook import get_mode
    from ctlib.ops.workshop import prepare_workshop

    mode = get_mode()
    if args.dry_run:
        from ctlib.notebook.lessons import plan_problems
        from ctlib.ops.workshop import workshop_plan

        print(f"{mode}\nthe plan (nothing is trained):")
        print(workshop_plan(mode).to_string(index=False))
        problems = plan_problems(mode)
        for problem in problems:
            print(f"  PROBLEM: {problem}")
        print("the plan is sound" if not problems else "fix the problems above first")
        return 1 if problems else 0
    if args.pack:  # checked before hours of training, not after
        _check_writable_file(Path(args.pack), "--pack")
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
    if args.pack:
        from ctlib.ops.lessonpack import export_lesson_pack

        files = export_lesson_pack(args.pack, mode)
        print(f"packed {len(files)} files of the lessons' networks into {args.pack}: learners "
              f"run python -m ctlib lesson-pack import {Path(args.pack).name}")  # fmt: skip
    return 1 if failed.any() else 0


def _cmd_lesson_pack(args: argparse.Namespace) -> int:
    from ctlib.notebook import get_mode
    from ctlib.ops.lessonpack import LessonPackError, export_lesson_pack, import_lesson_pack

    mode = get_mode()
    if args.action == "export":
        files = export_lesson_pack(args.file, mode)
        print(f"packed {len(files)} files of the lessons' networks ({mode}) into {args.file}")
        return 0
    try:
        added = import_lesson_pack(args.file, mode)
    except LessonPackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"imported {len(added)} fold(s) from {args.file}; the notebooks train none of them")
    return 0


def _cmd_quickstart(args: argparse.Namespace) -> int:
    args.dataset = "synthetic"
    args.root = None
    args.n = 2
    args.seed = 0
    args.archs = list(DEFAULT_ARCHS)
    return _cmd_canvases(args)


def _opt(*flags: str, **kwargs: object) -> tuple[tuple[str, ...], dict[str, object]]:
    """One option: its flags and ``add_argument``'s keywords."""
    return flags, kwargs


#: the commands' whole numbers: a fold, a seed (from 0); a count (from 1)
FROM_0, FROM_1 = Number(int, 0), Number(int, 1)
ROOT = _opt("--root", help="folder holding the data sets (default: CTLIB_DATA_DIR)")
QUIET = _opt("-q", "--quiet", action="store_true", help="no progress bars")
RUN_FOLDER = [
    _opt("runs", help="a runs folder with checkpoints (the --out of cv)"),
    _opt("--dataset", required=True, help="data set of the run"),
    _opt("--protocol", default="paper", help="protocol of the run (default: paper)"),
    _opt("--run", default="efficientnet_lite0", help="run folder, e.g. efficientnet_lite0-scratch"),
]
PROTOCOL_HELP = (
    "paper: image-level stratified k-fold; patient: grouped by patient; pseudo-patient: grouped "
    "by derived scan groups (sars-cov-2-ct); official: COVID19-CT's train/val/test split; "
    "external: train on all of --dataset, test on all of --test-dataset"
)
#: The options of `train` and `cv`: the data, the protocol, the results folder; the recipe and
#: runtime options are generated (:func:`ctlib.options.add_training_options`).
TRAINING = [
    _opt("--dataset", default="synthetic", help="data set (default: synthetic)"),
    ROOT,
    _opt("--arch", default="efficientnet_lite0", help="architecture: ctlib.models.list_models()"),
    _opt("--protocol", default="paper", help=PROTOCOL_HELP,
         choices=["paper", "patient", "pseudo-patient", "official", "external"]),
    _opt("--test-dataset", help="the other data set an external run tests on"),
    _opt("--folds", type=Number(int, 2), default=5, help="number of folds k (default: 5)"),
    _opt("--no-resume", action="store_true", help="restart unfinished folds from epoch 0"),
    _opt("--out", default=None, help="results folder (default: CTLIB_RUNS_DIR or runs)"),
    QUIET,
]  # fmt: skip
CANVAS = _opt("--canvas", type=Number(int, 1, MAX_CANVAS_SIDE), nargs=2, metavar=("W", "H"),
              help="canvas (default: the run's config.json's, else Table 1's)")  # fmt: skip


def _commands() -> dict[str, tuple[str, object, list]]:
    """Every command but ``sweep``: ``name -> (help, handler, options)``."""
    real = sorted(REAL_DATASETS)
    return {
        "datasets": ("list data sets and whether they are found", _cmd_datasets, [ROOT]),
        "verify": ("check a real data set against its manifest", _cmd_verify,
                   [_opt("dataset", choices=real), ROOT, QUIET]),
        "download": ("download a real data set from its public source", _cmd_download, [
            _opt("dataset", choices=[*real, "all"], help="a data set, or all of them"),
            _opt("--dest", help="folder to put it in (default: CTLIB_DATA_DIR or the cache)"),
            _opt("--force", action="store_true", help="download again even if present"),
            _opt("--no-verify", dest="verify", action="store_false",
                 help="keep the copy even if it does not match the shipped manifest"),
            _opt("--mirror", help="base URL replacing GitHub's (or CTLIB_DOWNLOAD_MIRROR)"),
            QUIET]),
        "canvases": ("figure: slices on each architecture's canvas", _cmd_canvases, [
            _opt("--dataset", default="synthetic", help="data set name (default: synthetic)"),
            ROOT,
            _opt("--archs", nargs="+", default=list(DEFAULT_ARCHS), help="architectures"),
            _opt("--n", type=FROM_1, default=2, help="images per class (default: 2)"),
            _opt("--seed", type=FROM_0, default=0, help="which images (default: 0)"),
            _opt("--out", default="outputs/quick", help="output folder (default: outputs/quick)"),
            QUIET]),
        "train": ("fine-tune one architecture on one fold", _cmd_cv, [*TRAINING,
            _opt("--fold", type=FROM_0, default=0, help="which fold is held out (default: 0)")]),
        "cv": ("cross-validate one architecture on one data set", _cmd_cv, [*TRAINING,
            _opt("--only-folds", type=FROM_0, nargs="+", help="run only these folds")]),
        "table": ("Table 2 and Fig. 9 from a results folder", _cmd_table, [
            _opt("results", help="results folder (the --out of cv)"),
            _opt("--markdown", action="store_true", help="print Markdown"),
            _opt("--csv", help="also write the table to this CSV file"),
            _opt("--figures", help="also draw the confusion matrices into this folder"),
            _opt("--honest", action="store_true", help="print the comparison (protocols x data "
                 "sets x networks, paper beside) and the audit tables instead of Table 2"),
            _opt("--readme", metavar="README", help="rewrite README's generated results block"),
            _opt("--check-readme", metavar="README", help="exit 1 if that block is stale")]),
        "slides": ("the talk 'the paper in ten minutes' as Markdown slides (Marp, reveal-md), "
                   "every number read from a results folder", _cmd_slides, [
            _opt("--results", default="results", help="results folder (default: results)"),
            _opt("--figures", default="figures", help="figures to link (default: figures)"),
            _opt("--out", default="docs/slides/paper-in-ten-minutes.md",
                 help="the deck (default: %(default)s)"),
            _opt("--check", action="store_true", help="write nothing; exit 1 if the deck is "
                 "stale")]),
        "heat": ("Grad-CAM heat on padding and outside the body, per trained fold", _cmd_heat, [
            *RUN_FOLDER,
            _opt("--images", type=FROM_1, default=20, help="test images per fold (default: 20)"),
            _opt("--out", default="results/explain", help="output folder (default: %(default)s)"),
            QUIET]),
        "road": ("faithfulness of the CAMs (ROAD, confidence change) on a trained fold's test "
                 "images", _cmd_road, [
            *RUN_FOLDER,
            _opt("--fold", type=FROM_0, default=1, help="the fold (default: 1, the figures' fold)"),
            _opt("--images", type=FROM_1, default=100, help="test images (default: 100)"),
            _opt("--percentiles", type=Number(int, 1, 99), nargs="+", default=[20, 40, 60, 80],
                 help="removal thresholds (default: 20 40 60 80)"),
            _opt("--seed", type=FROM_0, default=0, help="sample, random map, noise (default: 0)"),
            _opt("--out", default="results/explain", help="output folder (default: %(default)s)"),
            QUIET]),
        "figures": ("the paper's t-SNE (Fig. 11/12) and Grad-CAM galleries (Fig. 13-16) of a fold",
                    _cmd_figures, [
            *RUN_FOLDER,
            _opt("--fold", type=FROM_0, default=0, help="the fold (default: 0)"),
            _opt("--n", type=FROM_1, default=4, help="slices per outcome (default: 4)"),
            _opt("--method", default="gradcam", help="CAM method (default: gradcam)"),
            _opt("--perplexity", type=Number(float, above=0), default=30.0,
                 help="t-SNE perplexity (default 30)"),
            _opt("--seed", type=FROM_0, default=0, help="t-SNE random state (default: 0)"),
            _opt("--figures", default="figures", help="where the figures go (default: figures)"),
            _opt("--out", default="results/explain", help="where their numbers go (default: "
                 "results/explain)"),
            QUIET]),
        "export-results": ("copy the small files of finished runs (no checkpoints) into results/",
                           _cmd_export, [
            _opt("source", help="a runs folder (the --out of cv)"),
            _opt("dest", nargs="?", default="results", help="destination (default: results)")]),
        "import-results": ("seed a runs folder with the finished folds of results/ (resume a long "
                           "job on a new machine: those folds are skipped)", _cmd_import, [
            _opt("source", nargs="?", default="results", help="what export-results wrote"),
            _opt("dest", help="a runs folder (the --out of cv)"),
            _opt("--root", default=None, help="the folder holding the data sets (default: "
                 "CTLIB_DATA_DIR or the kit's data folder)")]),
        "audit": ("leakage audit helpers (pseudo-patient groups)", _cmd_audit, [
            _opt("what", choices=["report", "pseudo-patients"], help="report: the leakage and "
                 "shortcut audit (results/audit/<dataset>.json); pseudo-patients: derived scan "
                 "groups for a data set without patient IDs"),
            _opt("dataset", choices=sorted(DATASETS)),
            ROOT,
            _opt("--cosine-min", type=Number(float, 0, 1), default=0.92,
                 help="report: cosine similarity of "
                 "ImageNet features from which a training image is a test image's look-alike "
                 "(default: 0.92, calibrated on COVID19-CT)"),
            _opt("--groups", type=FROM_1, default=60,
                 help="pseudo-patients per label (default: 60, the SARS-CoV-2 CT authors' count)"),
            _opt("--check", action="store_true", help="measure how much patient leakage the "
                 "groups remove instead of writing them (needs patient IDs, e.g. covid19-ct)"),
            _opt("--out", help="report: output folder (default: results/audit); pseudo-patients: "
                 "output CSV (default: data/<dataset>.pseudo_patients.csv)"),
            QUIET]),
        "predict": ("probability of COVID for image files or folders", _cmd_predict, [
            _opt("files", nargs="+", help="PNG/JPEG files or folders of them"),
            _opt("--checkpoint", required=True, help="a model.pt written by train/cv"),
            CANVAS, QUIET]),
        "prepare-workshop": ("the day before a workshop: data, every run the notebooks train, a "
                             "timed rehearsal", _cmd_prepare_workshop, [
            _opt("--download", action="store_true", help="fetch real data sets that are missing"),
            _opt("--no-rehearse", action="store_true", help="train only; no timed rehearsal"),
            _opt("--dry-run", action="store_true",
                 help="print the plan and check it (data sets, protocols, networks); train "
                      "nothing"),
            _opt("--notebooks", nargs="*", help="notebooks to rehearse (default: notebooks/NN_*)"),
            _opt("--pack", metavar="FILE",
                 help="then pack the trained networks into FILE (a zip) for the learners' "
                      "machines: python -m ctlib lesson-pack import FILE"),
            QUIET]),
        "lesson-pack": ("the lessons' trained networks as one archive: export where they were "
                        "trained, import on each learner's machine", _cmd_lesson_pack, [
            _opt("action", choices=["export", "import"]),
            _opt("file", help="the archive (a zip)")]),
        "check": ("before the workshop: is this machine ready? a line per requirement, with "
                  "the fix for each one missing", _cmd_check, []),
        "quickstart": ("the main job in quick mode: synthetic data, seconds", _cmd_quickstart, [
            _opt("--out", default="outputs/quick", help="output folder (default: outputs/quick)"),
            QUIET]),
    }  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (kept separate so tests and docs can inspect it): one subcommand per
    entry of :func:`_commands`, the training options generated from the recipe and the runtime,
    and the sweep (:mod:`ctlib.ops.sweep`), which passes what it does not know on to ``cv``."""
    parser = argparse.ArgumentParser(
        prog="python -m ctlib",
        description="ctlib: reproduce and examine Alshazly et al. (2020), COVID-19 detection in "
        "CT.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (text, handler, options) in _commands().items():
        p = sub.add_parser(name, help=text)
        for flags, kwargs in options:
            p.add_argument(*flags, **kwargs)
        if name in ("train", "cv"):
            add_training_options(p)
            p.set_defaults(out=p.get_default("out") or _runs_default())
        p.set_defaults(func=handler, **({"only_folds": None} if name == "train" else {}))
        if name == "table":
            add_sweep_command(sub, cv=sub.choices["cv"], train_config=_train_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if hasattr(args, "pass_on"):  # a command that passes on what it does not know (sweep: to cv)
        args.pass_on = unknown
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
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
