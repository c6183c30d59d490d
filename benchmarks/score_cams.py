"""Score CAM methods against known lesions: train briefly on the synthetic set, then score.

    OMP_NUM_THREADS=2 python benchmarks/score_cams.py --out runs/cam-score --results results
    python benchmarks/score_cams.py --results results --seed 1     # another network, same recipe

1. Trains (or reuses) EfficientNet-Lite0 (ImageNet weights, offline) on the synthetic set,
   patient protocol, fold 0, on a 256 x 186 canvas: a CPU recipe, not the paper's
   (LAMB at lr 3e-3, the paper's schedule shape scaled by 10; the paper's 3e-4 learns too
   slowly in so few steps), seeded with ``--seed`` (training and the image sample) into
   ``<out>/seed<k>/``. A finished fold is reused (``run_cv`` skips it).
2. Scores each CAM method on the held-out COVID slices (lesion masks known) with
   :func:`ctlib.explain.score_cams`: pointing game (tolerance ``--tolerance`` px), share
   of heat inside lesions, both against a random-heat-map baseline, and the Adebayo et
   al. sanity check (Spearman correlation between the trained network's maps and those
   of the same network with randomised weights).
3. With ``--road``, tests the same maps on the same slices for faithfulness
   (:func:`ctlib.explain.faithfulness.faithfulness`: ROAD and the confidence change, beside a
   random map and the randomised network's map) and sets each method's ROAD beside its
   pointing game (:func:`ctlib.explain.faithfulness.road_beside_pointing`: the mean ROAD on
   the slices where its peak hits a lesion and on those where it misses). About 20 s per
   slice on one CPU core.

Writes ``cam_scores<-tag>.csv`` (per method) and ``cam_scores_per_image<-tag>.csv`` beside
the fold's ``model.pt`` and prints the table as Markdown; with ``--results results`` also
``results/explain/cam_scores_synthetic_<arch>-seed<k><-tag>.csv`` (with the network's test
accuracy), which the README's generated block shows as mean ± std over seeds
(``python -m ctlib table results --readme README.md``). Run several seeds: a CAM's
localisation can move a lot between two trainings of the same recipe. A benchmark, not a
test.

Score-CAM runs one forward pass per channel of the CAM layer (1280 for EfficientNet-Lite0):
about 1.5 min per image and network on one CPU core, so score it on a sample::

    python benchmarks/score_cams.py --methods scorecam --max-images 6 --tag scorecam
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ctlib.cv import fold_dir, run_cv  # noqa: E402
from ctlib.data import load_dataset  # noqa: E402
from ctlib.data.synthetic import SyntheticConfig  # noqa: E402
from ctlib.train import Runtime, TrainConfig  # noqa: E402

METHODS = ("gradcam", "gradcam++", "hirescam", "layercam", "eigencam")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The CPU recipe: the paper's schedule shape, every learning rate scaled by lr / 3e-4."""
    scale = args.lr / 3e-4
    return TrainConfig(
        arch=args.arch,
        epochs=args.epochs,
        batch_size=16,
        lr=args.lr,
        lr_values=tuple(v * scale for v in (1e-4, 3e-5, 1e-5, 3e-6)),
        canvas=tuple(args.canvas),
        seed=args.seed,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/cam-score", help="results folder")
    parser.add_argument("--arch", default="efficientnet_lite0")
    parser.add_argument("--patients", type=int, default=160, help="synthetic patients")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--canvas", type=int, nargs=2, default=(256, 186), metavar=("W", "H"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument(
        "--tolerance",
        type=float,
        default=15.0,
        help="pointing-game tolerance in original-image pixels",
    )
    parser.add_argument("--max-images", type=int, default=None, help="score at most this many")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--randomize",
        type=float,
        default=1.0,
        help="share of layers re-initialised for the sanity check, from the head "
        "down (1.0: the whole network; 0.05: the cascade's first steps)",
    )
    parser.add_argument("--tag", default="", help="suffix of the output files, e.g. scorecam")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument(
        "--road", action="store_true", help="also ROAD on the same slices, beside the pointing game"
    )
    parser.add_argument(
        "--road-percentiles",
        type=int,
        nargs="+",
        default=[20, 40, 60, 80],
        help="ROAD's removal thresholds (default: 20 40 60 80, as `python -m ctlib road`)",
    )
    parser.add_argument(
        "--results",
        default=None,
        help="also write the summary to <results>/explain/"
        "cam_scores_synthetic_<arch><-tag>.csv (the README's CAM table)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    dataset = load_dataset("synthetic", synthetic=SyntheticConfig(n_patients=args.patients))
    config = train_config(args)
    started = time.perf_counter()
    out = Path(args.out) / f"seed{args.seed}"
    metrics = run_cv(
        dataset, config, runtime=Runtime(device="cpu"), protocol="patient", only_folds=[0], out=out
    )
    print(metrics[["fold", "accuracy", "recall", "specificity", "roc_auc"]].to_string(index=False))
    print(f"training (or reuse): {time.perf_counter() - started:.0f} s")
    if args.train_only:
        return 0

    import pandas as pd

    from ctlib.explain import load_trained, score_cams, summarize_cam_scores
    from ctlib.study.tables import markdown_table

    folder = fold_dir(out, dataset.name, "patient", args.arch, 0)
    model, info = load_trained(folder / "model.pt")
    predictions = pd.read_csv(folder / "predictions.csv")
    test = dataset.frame[dataset.frame["path"].isin(predictions["path"])]
    started = time.perf_counter()
    per_image = score_cams(
        model,
        test,
        args.arch,
        methods=args.methods,
        canvas=info["canvas"],
        tolerance=args.tolerance,
        max_images=args.max_images,
        seed=args.seed,
        randomize=args.randomize,
        per_image=True,
    )
    table = summarize_cam_scores(per_image)
    print(f"scoring: {time.perf_counter() - started:.0f} s")
    suffix = f"-{args.tag}" if args.tag else ""
    per_image.to_csv(folder / f"cam_scores_per_image{suffix}.csv", index=False)
    if args.road:
        from ctlib.explain.faithfulness import faithfulness, road_beside_pointing

        started = time.perf_counter()
        road = faithfulness(
            model,
            test[test["path"].isin(per_image["path"])],
            args.arch,
            methods=list(dict.fromkeys(per_image["method"])),
            canvas=info["canvas"],
            percentiles=args.road_percentiles,
            max_images=None,
            seed=args.seed,
        )
        road.to_csv(folder / f"road_per_image{suffix}.csv", index=False)
        table = table.merge(road_beside_pointing(per_image, road), on="method", how="left")
        table["road_percentiles"] = " ".join(str(p) for p in args.road_percentiles)
        print(f"ROAD: {time.perf_counter() - started:.0f} s")
    table.to_csv(folder / f"cam_scores{suffix}.csv", index=False)
    if args.results:
        name = f"cam_scores_synthetic_{args.arch}-seed{args.seed}{suffix}.csv"
        target = Path(args.results) / "explain" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        fold = metrics.set_index("fold").loc[0]
        table.assign(
            dataset=dataset.name,
            seed=args.seed,
            test_accuracy=fold["accuracy"],
            test_roc_auc=fold["roc_auc"],
        ).to_csv(target, index=False)
    table.insert(2, "randomize", args.randomize)
    print(markdown_table(table.drop(columns=["arch", "method"]), digits=3))
    print(
        f"wrote {folder / f'cam_scores{suffix}.csv'}" + (f" and {target}" if args.results else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
