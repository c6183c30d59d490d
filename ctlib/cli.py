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
    figures     the paper's t-SNE and Grad-CAM galleries of one trained fold
    predict     probability of COVID for any image files, with a trained model
    prepare-workshop  the day before a workshop: data, the lessons' training, a rehearsal
    quickstart  the kit's main job in quick mode (synthetic data, CPU, seconds)
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
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
    for key in (
        "epochs",
        "batch_size",
        "optimizer",
        "device",
        "amp",
        "num_workers",
        "content",
        "data_path",
        "checkpoint_every",
        "checkpoint_minutes",
    ):
        value = getattr(args, key)
        if value is not None:
            changes[key] = value
    if args.canvas is not None:
        changes["canvas"] = tuple(args.canvas)
    if args.feature_extraction:
        changes["strategy"] = "feature_extraction"
    if args.compile:
        changes["compile"] = True
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


def _cmd_figures(args: argparse.Namespace) -> int:
    from ctlib.cv import fold_dir
    from ctlib.explain import fold_gallery, fold_tsne
    from ctlib.models import get_spec
    from ctlib.plots import plot_outcome_gallery, plot_tsne, save_figure
    from ctlib.results import fold_recipe, relative_paths

    folder = fold_dir(args.runs, args.dataset, args.protocol, args.run, args.fold)
    if not (folder / "model.pt").is_file():
        raise FileNotFoundError(
            f"{folder / 'model.pt'} is missing: train that fold first (python -m ctlib cv "
            f"--dataset {args.dataset} --protocol {args.protocol} --only-folds {args.fold} "
            f"--out {args.runs} ...); exported results carry no network."
        )
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


def _sweep_cv_options(args: argparse.Namespace):  # -> (list[str], Namespace, TrainConfig)
    """The cv options every cell gets -- whatever sweep does not know itself, checked by cv's
    own parser before anything runs -- and the recipe they make (run folder, epochs)."""
    cv_args = [*args.cv_args, *(["--root", args.root] if args.root else [])]
    parser = build_parser()
    namespace, unknown = parser.parse_known_args(["cv", *cv_args])
    if unknown:
        raise ValueError(
            f"Unknown option(s) {' '.join(unknown)}: sweep passes every option it does not know "
            "to each `python -m ctlib cv` cell, and cv knows none of these (see `python -m "
            "ctlib sweep --help` and `python -m ctlib cv --help`)."
        )
    defaults = parser.parse_args(["cv"])
    for key, instead in (
        ("dataset", "--datasets"),
        ("arch", "--archs"),
        ("only_folds", "--folds (finished folds are skipped anyway)"),
        ("device", "--slots / --per-gpu (local) or --gpus-per-job (slurm)"),
    ):
        if getattr(namespace, key) != getattr(defaults, key):
            raise ValueError(
                f"--{key.replace('_', '-')} is set by the sweep for each cell; use {instead}."
            )
    if namespace.protocol == "official":
        raise ValueError(
            "--protocol official has a single test set, not folds to spread over a grid; run "
            "`python -m ctlib cv --protocol official --arch A` for each architecture instead."
        )
    return cv_args, namespace, _train_config(namespace)


_SWEEP_ONLY = {
    "local": ("slots", "per_gpu", "retries", "cell_timeout"),
    "slurm": (
        "partition",
        "time",
        "gpus_per_job",
        "cpus_per_job",
        "mem_gb",
        "array_parallelism",
        "requeues",
        "sbatch",
        "setup",
        "job_name",
    ),
}


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ctlib import sweep
    from ctlib.models import list_models

    for executor, keys in _SWEEP_ONLY.items():
        given = [k for k in keys if getattr(args, k) not in (None, [])]
        if executor != args.executor and given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise ValueError(f"{flags}: only for --executor {executor} (this is {args.executor}).")
    archs = list_models(paper=True) if args.archs == ["paper"] else args.archs
    cv_args, cv, config = _sweep_cv_options(args)
    grid = sweep.Grid(
        Path(args.out),
        args.folds,
        cv.protocol,
        config.run_name[len(config.arch) :],
        tuple(cv_args),
    )
    todo, done = sweep.plan_tasks(
        args.datasets,
        archs,
        args.folds,
        args.out,
        protocol=grid.protocol,
        run_suffix=grid.run_suffix,
    )
    queued = sweep.slurm_queued(args.out) if args.executor == "slurm" and todo else {}
    waiting = [t for t in todo if t.label in queued]
    todo = [t for t in todo if t.label not in queued]
    print(
        f"{len(todo)} cells to run, {len(done)} finished already"
        + (f", {len(waiting)} queued or running on SLURM" if waiting else "")
        + f" ({len(args.datasets)} data sets x {len(archs)} architectures x {args.folds} "
        f"folds, {config.epochs} epochs; results in {args.out}/<dataset>/{grid.protocol}/"
        f"<arch>{grid.run_suffix})"
    )
    if done:
        shown = ", ".join(t.label for t in done[:8])
        print(f"  finished: {shown}" + (f" and {len(done) - 8} more" if len(done) > 8 else ""))
    for task in waiting:
        job, state = queued[task.label]
        print(f"  {state.lower()}: {task.label} (job {job}); not submitted again")
    if not todo:
        return 0
    try:  # before any cell starts: every data set there and intact
        for line in sweep.check_data(args.datasets, args.root, progress=False):
            print(f"data: {line}")
    except DataError as error:
        if not args.dry_run:
            raise
        print(f"data NOT READY (without --dry-run the sweep stops here): {error}")
    figures_path = sweep.gpu_figures_path(args.gpu_figures)
    figures = sweep.read_gpu_figures(figures_path) if figures_path else None
    costs = {"epochs": config.epochs, "n_folds": args.folds, "gpu_tflops": args.gpu_tflops}
    cells = sweep.cell_costs(todo, figures=figures, **costs)
    _print_sweep_cost(sweep.estimate_cost(todo, figures=figures, **costs), figures_path, args)
    for note in _figures_caveats(figures, config, archs):
        print(f"  note: {note}")
    if args.executor == "local":
        return _sweep_local(args, sweep, grid, todo, cells, figures)
    return _sweep_slurm(args, sweep, grid, todo, cells)


def _print_sweep_cost(cost, figures_path, args: argparse.Namespace) -> None:  # noqa: ANN001
    from ctlib.sweep import GPU_FIGURES_ENV

    measured = [a for a in cost.index if a != "total" and cost.loc[a, "source"] == "measured"]
    guessed = [a for a in cost.index if a != "total" and cost.loc[a, "source"] != "measured"]
    guess = (
        f"the FLOP guess (3 x forward FLOPs per image at an assumed {args.gpu_tflops:g} TFLOP/s "
        "sustained, --gpu-tflops)"
    )
    if figures_path is None:
        print(
            f"cost: GPU hours from {guess}; no GPU figures file (--gpu-figures, "
            f"${GPU_FIGURES_ENV} or benchmarks/gpu_check.csv, written by `python "
            "benchmarks/gpu_check.py` on the GPU)"
        )
    else:
        print(
            f"cost: GPU hours measured (training images x epochs / images_per_s) from "
            f"{figures_path} for {len(measured)} architecture(s)"
            + (f"; from {guess} for {', '.join(guessed)}" if guessed else "")
        )
    columns = {
        "cells": "cells",
        "images_trained": "images_trained",
        "cpu_hours": "cpu_hours",
        "gpu_hours_estimate": "gpu_h_flop_guess",
        "gpu_hours_measured": "gpu_h_measured",
        "gpu_hours": "gpu_hours",
        "source": "source",
    }
    if figures_path is None:
        del columns["gpu_hours_measured"]
    table = cost[list(columns)].rename(columns=columns)
    print(table.to_string(float_format=lambda v: f"{v:,.2f}", na_rep="-"))
    print("  (cpu_hours: measured step times on this project's 2-core CPU)")


def _figures_caveats(figures, config, archs) -> list[str]:  # noqa: ANN001
    """Where the GPU figures were measured with another canvas or batch than this sweep's."""
    if figures is None:
        return []
    notes = []
    rows = figures.loc[[a for a in archs if a in figures.index]]
    if "gpu" in rows and len(rows):
        where = ", ".join(sorted({str(g) for g in rows["gpu"].dropna()}))
        when = ", ".join(sorted({str(t) for t in rows.get("measured_at", [])}))[:60]
        notes.append(f"measured on {where or 'an unnamed GPU'}" + (f" ({when})" if when else ""))
    if "batch_size" in rows and (rows["batch_size"] != config.batch_size).any():
        notes.append(
            f"measured at batch {sorted(set(rows['batch_size'].astype(int)))}, this sweep "
            f"trains at {config.batch_size}"
        )
    if config.canvas is not None and {"canvas_width", "canvas_height"} <= set(rows):
        other = rows[
            (rows["canvas_width"] != config.canvas[0]) | (rows["canvas_height"] != config.canvas[1])
        ]
        if len(other):
            notes.append(
                f"measured at each architecture's own canvas, this sweep uses "
                f"{config.canvas[0]}x{config.canvas[1]}: time scales roughly with pixels"
            )
    return notes


def _sweep_local(args, sweep, grid, todo, cells, figures) -> int:  # noqa: ANN001
    slots = sweep.local_slots(args.slots, args.per_gpu or 1)
    on_cpu = all(s.gpu is None for s in slots)
    hours = dict(zip(todo, cells["cpu_hours" if on_cpu else "gpu_hours"].fillna(0.0), strict=True))
    memory = None
    if figures is not None and "peak_memory_gib" in figures:
        memory = figures["peak_memory_gib"].dropna().astype(float).to_dict()
    gpu_memory = sweep.gpu_memory_gib([s.gpu for s in slots if s.gpu is not None])
    order = sweep.longest_first(todo, hours)
    retries = 1 if args.retries is None else args.retries
    timeout = f"{args.cell_timeout:g} min per attempt" if args.cell_timeout else "no time limit"
    gpus = sorted({s.gpu for s in slots if s.gpu is not None}, key=int)
    print(
        f"local executor: {len(slots)} slot(s)"
        + (f" = GPU {','.join(gpus)} x {args.per_gpu or 1} cell(s) each" if gpus else " on the CPU")
        + "; longest cells first, each to the first free slot"
        + (" whose GPU has room (peak_memory_gib)" if memory and gpu_memory else "")
        + f"; a failed cell is retried {retries} time(s), {timeout}; Ctrl-C stops them all"
    )
    if args.dry_run:
        width = max(len(s.label) for s in slots)
        unit = "CPU h" if on_cpu else "GPU h"
        placed = sweep.schedule_preview(
            order, slots, hours, memory_gib=memory, gpu_memory=gpu_memory
        )
        for slot, task, start, end in sorted(placed, key=lambda p: (slots.index(p[0]), p[2])):
            print(f"  {slot.label:<{width}}  {task.label:<36} {start:6.2f} to {end:6.2f} {unit}")
        last = max((end for *_, end in placed), default=0.0)
        sharing = (
            " (cells sharing a GPU each run slower than alone)" if (args.per_gpu or 1) > 1 else ""
        )
        print(f"  about {last:,.1f} h until the last cell ends{sharing}")
        print(f"  first cell: {shlex.join(grid.command(order[0], slots[0].device))}")
        print("dry run: nothing started")
        return 0
    outcomes = sweep.run_local(
        order,
        slots,
        grid,
        retries=retries,
        cell_timeout_min=args.cell_timeout,
        memory_gib=memory,
        gpu_memory=gpu_memory,
    )
    failed = sorted(label for label, outcome in outcomes.items() if not outcome.finished)
    print(
        f"{len(outcomes) - len(failed)} cells finished, {len(failed)} failed"
        + (f": {', '.join(failed)} (logs in {Path(args.out) / 'logs'})" if failed else "")
    )
    return 1 if failed else 0


def _sweep_slurm(args, sweep, grid, todo, cells) -> int:  # noqa: ANN001
    options = sweep.SlurmOptions(
        partition=args.partition,
        time_min=120 if args.time is None else args.time,
        gpus_per_job=1 if args.gpus_per_job is None else args.gpus_per_job,
        cpus_per_job=8 if args.cpus_per_job is None else args.cpus_per_job,
        mem_gb=args.mem_gb,
        array_parallelism=16 if args.array_parallelism is None else args.array_parallelism,
        requeues=3 if args.requeues is None else args.requeues,
        job_name=args.job_name or "ctlib-sweep",
        sbatch=tuple(args.sbatch or ()),
        setup=tuple(args.setup or ()),
    )
    column = "gpu_hours" if options.gpus_per_job else "cpu_hours"
    hours = dict(zip(todo, cells[column].fillna(0.0), strict=True))
    order = sweep.longest_first(todo, hours)
    folder = Path(args.out) / "slurm"
    print(
        f"slurm executor (submitit): one job array, one task per cell, at most "
        f"{min(len(order), options.array_parallelism)} at a time; a task near its time limit "
        f"is requeued and resumes from its checkpoint (up to {options.requeues} time-outs; "
        "preemptions do not count)"
    )
    print(f"  sbatch {' '.join(options.sbatch_flags(len(order)))}")
    device = "cuda" if options.gpus_per_job else "cpu"
    print(f"  task 0: {shlex.join(grid.command(order[0], device))}")
    print(f"  logs: {Path(args.out) / 'logs'}/<cell>.log; submitit's own in {folder}/<job>_<task>/")
    longest = max(hours.values(), default=0.0)
    if longest * 60 > options.time_min:
        requeues = int(longest * 60 // options.time_min)
        print(
            f"  note: the longest cell needs about {longest:.1f} h, more than --time "
            f"{options.time_min} min: it will be requeued about {requeues} time(s); raise "
            "--requeues or --time if needed"
        )
    if args.dry_run:
        for index, task in enumerate(order):
            print(f"  task {index:3d}: {task.label}  ({hours[task]:.2f} h)")
        print("dry run: nothing submitted")
        return 0
    jobs = sweep.submit_array(order, grid, options)
    array = str(jobs[0].job_id).split("_")[0]
    print(f"submitted job {array}: {len(jobs)} task(s)")
    for job, task in zip(jobs, order, strict=True):
        print(f"  {job.job_id}: {task.label}")
    print(
        f"watch: squeue -j {array}; sacct -j {array}; "
        f"tail -f {Path(args.out) / 'logs'}/<cell>.log. "
        "Once it has ended, run this same command again: finished cells are skipped, "
        f"failed ones are submitted again; then `python -m ctlib table {args.out}`."
    )
    return 0


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


def _at_least(low: int):  # -> Callable[[str], int]
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def _positive(kind: type):  # -> Callable[[str], float]
    """An argparse type: a positive finite number."""

    def parse(text: str):  # noqa: ANN202
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
        return value

    return parse


def _sbatch_pair(text: str) -> tuple[str, object]:
    """``name=value`` (or a bare ``name``, a flag) for ``--sbatch``."""
    name, sep, value = text.partition("=")
    name = name.strip().lstrip("-")
    if not name or (sep and not value.strip()):
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE (e.g. account=abc) or a bare flag (exclusive), got {text!r}"
        )
    return name, (value.strip() if sep else True)


def _forward_unknown_options(parser: argparse.ArgumentParser) -> None:
    """Let ``parser`` keep the options it does not know in ``args.cv_args`` instead of refusing
    them (argparse hands a subcommand's arguments to its parser's ``parse_known_args``; the
    top-level parser then finds nothing left over). ``sweep`` passes them on to ``cv``."""
    parse = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):  # noqa: ANN001, ANN202
        namespace, unknown = parse(args, namespace)
        namespace.cv_args = unknown
        return namespace, []

    parser.parse_known_args = parse_known_args


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
        p.add_argument(
            "--num-workers",
            type=int,
            help="DataLoader workers of the CPU data path (default: 0 on the CPU; on a GPU "
            "one per core but one, at most 8)",
        )
        p.add_argument(
            "--data-path",
            choices=["auto", "loader", "device"],
            help="loader: albumentations per image in DataLoader workers; device: canvases "
            "on the GPU, augmented a batch at a time (kornia); default auto: device on CUDA",
        )
        p.add_argument(
            "--compile", action="store_true", help="torch.compile the model (minutes per shape)"
        )
        p.add_argument(
            "--checkpoint-every",
            type=int,
            metavar="N",
            help="write the rolling checkpoint every N epochs (default 5) ...",
        )
        p.add_argument(
            "--checkpoint-minutes",
            type=float,
            metavar="M",
            help="... or once M minutes passed since the last one (default 5)",
        )
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

    p = sub.add_parser(
        "sweep",
        help="the full Table 2 grid: on this machine's GPUs or as a SLURM job array; resumable",
        description="Train every (data set, architecture, fold) cell, each as `python -m "
        "ctlib cv ... --only-folds k`: on this machine (--executor local) or as a SLURM job "
        "array through submitit (--executor slurm). Rerun the same command to skip finished "
        "cells and resume interrupted ones.",
        epilog="Every other option is a cv option, passed to each cell unchanged and checked "
        "by cv first: e.g. --epochs 2 --canvas 64 64 --num-workers 4 --compile --no-pretrained "
        "(see python -m ctlib cv --help).",
        allow_abbrev=False,  # an abbreviated cv option must not be taken for a sweep one
    )
    p.add_argument(
        "--executor",
        choices=["local", "slurm"],
        default="local",
        help="local: this machine's GPUs (or CPU); slurm: one submitit job array (default: local)",
    )
    p.add_argument(
        "--datasets", nargs="+", default=sorted(REAL_DATASETS), help="data sets (default: both)"
    )
    p.add_argument(
        "--archs",
        nargs="+",
        default=["paper"],
        help="architectures, or 'paper' for the paper's twelve (default)",
    )
    p.add_argument("--folds", type=_at_least(2), default=5, help="folds (default: 5)")
    p.add_argument(
        "--out", default=_runs_default(), help="results folder (default: CTLIB_RUNS_DIR or runs)"
    )
    p.add_argument("--root", help="folder holding the data sets (default: CTLIB_DATA_DIR)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (cells, where each runs) and its cost; run nothing",
    )
    p.add_argument(
        "--gpu-figures",
        metavar="CSV",
        help="measured GPU throughput per architecture, from benchmarks/gpu_check.py "
        "(default: $CTLIB_GPU_FIGURES, else benchmarks/gpu_check.csv if present, else the "
        "FLOP guess)",
    )
    p.add_argument(
        "--gpu-tflops",
        type=_positive(float),
        default=25.0,
        help="assumed sustained GPU throughput of the FLOP guess (default: 25)",
    )
    local = p.add_argument_group("--executor local")
    local.add_argument(
        "--slots",
        help="comma-separated GPU indices to use, or 'cpu' entries, one cell each at a time "
        "(default: every visible GPU)",
    )
    local.add_argument(
        "--per-gpu",
        type=_at_least(1),
        metavar="N",
        help="cells sharing each GPU, where their peak memory fits (default: 1)",
    )
    local.add_argument(
        "--retries",
        type=_at_least(0),
        metavar="N",
        help="tries again for a failed or timed-out cell; it resumes from its checkpoint "
        "(default: 1)",
    )
    local.add_argument(
        "--cell-timeout",
        type=_positive(float),
        metavar="MIN",
        help="minutes an attempt may run before it is stopped and counted failed (default: none)",
    )
    slurm = p.add_argument_group("--executor slurm (one array task per cell)")
    slurm.add_argument("--partition", help="SLURM partition (default: the cluster's)")
    slurm.add_argument(
        "--time",
        type=_at_least(1),
        metavar="MIN",
        help="time limit per task in minutes; a cell still training then is requeued and "
        "resumes (default: 120)",
    )
    slurm.add_argument(
        "--gpus-per-job", type=_at_least(0), metavar="N", help="GPUs per task (default: 1)"
    )
    slurm.add_argument(
        "--cpus-per-job", type=_at_least(1), metavar="N", help="CPUs per task (default: 8)"
    )
    slurm.add_argument(
        "--mem-gb", type=_positive(float), help="memory per task in GB (default: the partition's)"
    )
    slurm.add_argument(
        "--array-parallelism",
        type=_at_least(1),
        metavar="N",
        help="at most N tasks at a time, sbatch --array=...%%N (default: 16)",
    )
    slurm.add_argument(
        "--requeues",
        type=_at_least(0),
        metavar="N",
        help="requeues after a time-out (preemptions do not count; default: 3)",
    )
    slurm.add_argument(
        "--sbatch",
        action="append",
        type=_sbatch_pair,
        metavar="NAME=VALUE",
        help="a further sbatch parameter, repeatable: --sbatch account=abc --sbatch qos=high "
        "--sbatch exclusive",
    )
    slurm.add_argument(
        "--setup",
        action="append",
        metavar="SHELL",
        help="a shell line run before each task, repeatable: --setup 'module load cuda'",
    )
    slurm.add_argument("--job-name", help="SLURM job name (default: ctlib-sweep)")
    _forward_unknown_options(p)
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
        "figures",
        help="the paper's t-SNE (Fig. 11/12) and Grad-CAM galleries (Fig. 13-16) of a trained fold",
    )
    p.add_argument("runs", help="a runs folder with checkpoints (the --out of cv)")
    p.add_argument("--dataset", required=True, help="data set of the run")
    p.add_argument("--protocol", default="paper", help="protocol of the run (default: paper)")
    p.add_argument(
        "--run", default="efficientnet_lite0", help="run folder name (default: efficientnet_lite0)"
    )
    p.add_argument("--fold", type=int, default=0, help="the fold (default: 0)")
    p.add_argument("--n", type=int, default=4, help="slices per outcome (default: 4)")
    p.add_argument("--method", default="gradcam", help="CAM method (default: gradcam)")
    p.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (default 30)")
    p.add_argument("--seed", type=int, default=0, help="t-SNE random state (default: 0)")
    p.add_argument("--figures", default="figures", help="where the figures go (default: figures)")
    p.add_argument(
        "--out",
        default="results/explain",
        help="where their numbers go: separation scores, the slices shown (default: "
        "results/explain)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_figures)

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
