"""Results export, the audit report, and the README's generated block."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ctlib.data import load_dataset
from ctlib.data.synthetic import SyntheticConfig
from ctlib.errors import RunFileError
from ctlib.explain import heat_report
from ctlib.recipes import describe_recipe
from ctlib.results import export_results
from ctlib.study.audit import audit_dataset
from ctlib.study.findings import key_findings
from ctlib.study.readme import README_END, README_START, readme_block, update_readme
from ctlib.study.tables import audit_table, comparison_table

REPO = Path(__file__).resolve().parents[1]


def _fold(
    base: Path,
    dataset: str,
    protocol: str,
    run: str,
    fold: int,
    accuracy: float,
    finished: bool = True,
) -> Path:
    folder = base / dataset / protocol / run / f"fold{fold}"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "checkpoint.pt").write_bytes(b"big")
    (folder / "model.pt").write_bytes(b"big")
    pd.DataFrame(
        {
            "path": [f"/data/{dataset}/CT_COVID/a{fold}.png", "rel/b.png"],
            "label": [1, 0],
            "prob": [0.9, 0.2],
            "fold": fold,
            "patient_id": ["p", pd.NA],
        }
    ).to_csv(folder / "predictions.csv", index=False)
    if finished:
        metrics = {
            "accuracy": accuracy,
            "f1": accuracy,
            "recall": accuracy,
            "specificity": accuracy,
            "precision": accuracy,
            "roc_auc": accuracy,
            "tp": 1,
            "fn": 0,
            "fp": 0,
            "tn": 1,
            "n": 2,
            "threshold": 0.5,
            "train_seconds": 120.0,
        }
        (folder / "metrics.json").write_text(json.dumps(metrics))
    pd.DataFrame(
        {"path": ["/data/x/CT_COVID/a.png"], "label": [1], "patient_id": ["p"], "fold": [fold]}
    ).to_csv(folder.parent / "folds.csv", index=False)
    return folder


def test_export_copies_small_files_of_finished_folds_with_relative_paths(tmp_path: Path) -> None:
    runs, dest = tmp_path / "runs", tmp_path / "results"
    _fold(runs, "covid19-ct", "paper", "efficientnet_lite0", 0, 0.9)
    _fold(runs, "covid19-ct", "paper", "efficientnet_lite0", 1, 0.8, finished=False)
    written = export_results(runs, dest)
    copied = dest / "covid19-ct" / "paper" / "efficientnet_lite0"
    assert (copied / "fold0" / "metrics.json").is_file() and (copied / "folds.csv").is_file()
    assert not (copied / "fold1").exists()  # unfinished: left behind
    assert not list(dest.rglob("*.pt"))  # no checkpoints
    predictions = pd.read_csv(copied / "fold0" / "predictions.csv")
    assert predictions["path"].tolist() == ["CT_COVID/a0.png", "rel/b.png"]
    assert pd.read_csv(copied / "folds.csv")["path"].tolist() == ["CT_COVID/a.png"]
    assert len(written) == 4
    with pytest.raises(FileNotFoundError, match="No finished fold"):
        export_results(tmp_path / "empty", dest)


def test_comparison_table_reads_runs_and_adds_the_paper(tmp_path: Path) -> None:
    for k, acc in enumerate([0.8, 0.9]):
        _fold(tmp_path, "covid19-ct", "paper", "efficientnet_lite0", k, acc)
        _fold(tmp_path, "covid19-ct", "patient", "efficientnet_lite0-scratch", k, acc - 0.2)
    table = comparison_table(tmp_path)
    ours = table[~table["network"].str.contains("paper")]
    assert ours["protocol"].tolist() == ["image-level 5-fold (the paper's)", "patient-level 5-fold"]
    assert ours["accuracy"].tolist() == ["85.0 ± 7.1", "65.0 ± 7.1"]
    assert ours["network"].tolist() == [
        "EfficientNet-Lite0 (ImageNet)",
        "EfficientNet-Lite0 (random init)",
    ]
    assert ours["CPU min"].tolist() == ["4", "4"]
    assert ours["vs the paper (accuracy)"].tolist() == [
        "not in the paper: -7.9 vs its best (DenseNet201); the paper's twelve 87.3–92.9",
        "not in the paper: -27.9 vs its best (DenseNet201); the paper's twelve 87.3–92.9",
    ]
    paper = table[table["network"].str.contains("paper")]
    assert set(paper["data set"]) == {"covid19-ct"}  # only the data sets that were run
    best = paper[paper["network"].str.contains("published")]
    assert best["network"].item() == "DenseNet201 (paper's best, published)"
    assert best["accuracy"].item() == "92.9 ± 2.2"
    spread = paper[paper["network"].str.contains("range")]
    assert spread["accuracy"].item() == "87.3–92.9"


def test_key_findings_compare_every_run_with_the_image_level_one(tmp_path: Path) -> None:
    for k, acc in enumerate([0.8, 0.9]):
        _fold(tmp_path, "covid19-ct", "paper", "efficientnet_lite0", k, acc)
        _fold(tmp_path, "covid19-ct", "patient", "efficientnet_lite0", k, acc - 0.1)
        _fold(tmp_path, "covid19-ct", "paper", "efficientnet_lite0-scratch", k, acc - 0.2)
        _fold(tmp_path, "covid19-ct", "paper", "resnet18-scratch", k, acc - 0.05)
        _fold(tmp_path, "covid19-ct", "paper", "resnet18-flat", k, 0.5)  # not a scratch run
    lines = key_findings(tmp_path)
    assert lines[0] == (
        "**covid19-ct**, EfficientNet-Lite0 (ImageNet): image-level folds 85.0 %; "
        "patient-level 5-fold 75.0 % (-10.0 points)."
    )
    assert lines[1] == (
        "**covid19-ct**, against the paper: the CPU reference (EfficientNet-Lite0 (ImageNet), "
        "recipe: the paper's) reaches 85.0 %, -7.9 points from the paper's best row "
        "(DenseNet201, 92.9 %); the paper's twelve architectures span 87.3–92.9 %."
    )
    assert "random initialisation, same budget: 65.0 % (-20.0 points" in lines[2]
    assert lines[3] == (
        "**covid19-ct**, ResNet18 (one of the paper's twelve) from random "
        "initialisation, same budget: 80.0 % (-5.0 points against "
        "EfficientNet-Lite0 (ImageNet))."
    )
    assert not any("ResNet18 (flat" in line or "resnet18-flat" in line for line in lines)


def test_readme_block_is_rewritten_between_markers_and_checked(tmp_path: Path) -> None:
    _fold(tmp_path / "results", "covid19-ct", "paper", "efficientnet_lite0", 0, 0.9)
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{README_START}\nold numbers\n{README_END}\nafter\n")
    assert update_readme(readme, tmp_path / "results", check=True)  # stale
    assert "old numbers" in readme.read_text()  # check writes nothing
    assert update_readme(readme, tmp_path / "results")
    text = readme.read_text()
    # one fold: a mean without a spread
    assert "old numbers" not in text and "| 90.0 | 90.0 | 90.0 | 90.0 | 1 |" in text
    assert text.startswith("# Title\n\nbefore\n") and text.endswith(f"{README_END}\nafter\n")
    assert not update_readme(readme, tmp_path / "results", check=True)  # fresh now
    assert readme_block(tmp_path / "results") in text
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="generated-results block"):
        update_readme(readme, tmp_path / "results")


def test_cli_table_check_readme_fails_when_stale(tmp_path: Path, capsys) -> None:
    from ctlib.cli import main

    _fold(tmp_path / "results", "covid19-ct", "paper", "efficientnet_lite0", 0, 0.9)
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_START}\n{README_END}\n")
    assert main(["table", str(tmp_path / "results"), "--check-readme", str(readme)]) == 1
    assert "stale" in capsys.readouterr().err
    assert main(["table", str(tmp_path / "results"), "--readme", str(readme)]) == 0
    assert main(["table", str(tmp_path / "results"), "--check-readme", str(readme)]) == 0
    capsys.readouterr()
    assert main(["table", str(tmp_path / "results"), "--honest", "--figures", str(tmp_path)]) == 0
    assert README_START in capsys.readouterr().out
    assert (tmp_path / "honest_evaluation.png").stat().st_size > 10_000


@pytest.mark.slow
def test_audit_of_a_small_synthetic_set(tmp_path: Path) -> None:
    synth = load_dataset(
        "synthetic", tmp_path, synthetic=SyntheticConfig(n_patients=20), progress=False
    )
    report = audit_dataset(synth, progress=False)
    assert set(report["protocols"]) == {"paper", "patient"}
    paper, patient = report["protocols"]["paper"], report["protocols"]["patient"]
    assert report["images"] == len(synth)
    # slices of one synthetic patient share a body: image-level folds leak them
    assert paper["patient_leak"] > 0.5 and patient["patient_leak"] == 0.0
    for entry in (paper, patient):
        assert 0.0 <= entry["metadata_accuracy"] <= 1.0
        assert 0 <= entry["lookalike_images"] <= len(synth)
    check = report["pseudo_patient_check"]
    assert check["leak_patient"] == 0.0 and check["leak_pseudo_patient"] <= check["leak_paper"]
    (tmp_path / "audit").mkdir()
    (tmp_path / "audit" / "synthetic.json").write_text(json.dumps(report))
    table = audit_table(tmp_path)
    assert table["split"].tolist() == ["image-level 5-fold (the paper's)", "patient-level 5-fold"]


def test_readme_numbers_come_from_results() -> None:
    """Every number in README's generated block is what `python -m ctlib table` makes of
    results/."""
    if not (REPO / "results").is_dir():
        pytest.skip("no results/ folder in this checkout")
    assert not update_readme(REPO / "README.md", REPO / "results", check=True), (
        "README.md's results block is stale: run `python -m ctlib table results --readme README.md`"
    )


def test_heat_report_on_a_briefly_trained_run(tmp_path: Path) -> None:
    from ctlib.cv import run_cv
    from ctlib.study.tables import heat_table
    from ctlib.train import TrainConfig

    synth = load_dataset(
        "synthetic", tmp_path / "data", synthetic=SyntheticConfig(n_patients=8), progress=False
    )
    config = TrainConfig(
        arch="shufflenet", pretrained=False, epochs=1, batch_size=8, canvas=(96, 64)
    )
    run_cv(synth, config, protocol="patient", n_folds=2, out=tmp_path / "runs", progress=False)
    table = heat_report(
        tmp_path / "runs",
        "synthetic",
        "patient",
        config.run_name,
        images_per_fold=3,
        progress=False,
    )
    assert table["fold"].tolist() == [0, 1] and (table["n_images"] == 3).all()
    for column in ("padding_share", "outside_body_share", "outside_body_area"):
        assert table[column].between(0, 1).all()
    # padding is outside the body, so the heat outside the body includes the heat on padding
    assert (table["outside_body_share"] >= table["padding_share"] - 1e-9).all()
    (tmp_path / "results" / "explain").mkdir(parents=True)
    table.to_csv(tmp_path / "results" / "explain" / "heat_synthetic.csv", index=False)
    summary = heat_table(tmp_path / "results")
    assert summary["images"].tolist() == [6]
    # the networks' recipe travels with the heat, so a retrained run cannot claim old maps
    assert summary["recipe"].tolist() == [describe_recipe(config)]
    with pytest.raises(FileNotFoundError, match="model.pt"):
        heat_report(tmp_path / "runs", "synthetic", "paper", config.run_name)


def test_the_readme_says_when_the_heat_is_from_networks_of_another_recipe() -> None:
    from ctlib.study.readme import _heat_recipe_notes

    keys = {
        "data set": ["covid19-ct", "sars"],
        "protocol": ["paper", "paper"],
        "network": ["n", "n"],
    }
    heat = pd.DataFrame({**keys, "recipe": ["12 epochs", "6 epochs"], "CAM": ["gradcam"] * 2})
    same = pd.DataFrame({**keys, "recipe": ["12 epochs", "6 epochs"], "accuracy": [1, 2]})
    assert _heat_recipe_notes(heat, same) == []
    retrained = same.assign(recipe=["24 epochs", "6 epochs"])
    notes = _heat_recipe_notes(heat, retrained)
    assert len(notes) == 2 and "covid19-ct" in notes[1] and "12 epochs" in notes[1]
    assert "24 epochs" in notes[1] and "sars" not in notes[1]
    # a report written before the recipe column: nothing to compare, nothing claimed
    assert _heat_recipe_notes(heat.assign(recipe=""), retrained) == []


def test_cam_score_table_reads_score_summaries_and_joins_the_readme_block(tmp_path: Path) -> None:
    from ctlib.explain import summarize_cam_scores
    from ctlib.study.tables import cam_score_table

    results = tmp_path / "results"
    with pytest.raises(FileNotFoundError, match="score_cams.py"):
        cam_score_table(results)
    per_image = pd.DataFrame(
        {
            "arch": "efficientnet_lite0",
            "method": ["gradcam"] * 4,
            "pointing": [True, True, True, False],
            "random_pointing": [0.1, 0.0, 0.1, 0.0],
            "body_pointing": [0.2, 0.2, 0.1, 0.1],
            "random_net_pointing": [False, True, False, False],
            "energy": [0.5, 0.4, 0.3, 0.2],
            "lesion_area": [0.02, 0.03, 0.02, 0.03],
            "padding_share": 0.0,
            "sanity_spearman": [0.1, 0.2, 0.3, 0.4],
            "sanity_spearman_body": 0.2,
            "sanity_ssim": 0.3,
        }
    )
    summary = summarize_cam_scores(per_image)
    (results / "explain").mkdir(parents=True)
    summary.assign(dataset="synthetic", seed=0, test_accuracy=0.9).to_csv(
        results / "explain" / "cam_scores_synthetic_efficientnet_lite0-seed0.csv", index=False
    )
    row = cam_score_table(results).iloc[0]
    assert row["CAM"] == "Grad-CAM" and row["images"] == 4 and row["networks"] == 1
    assert row["pointing game, %"] == "75.0" and row["randomised network, %"] == "25.0"
    assert row["heat in lesions, %"] == "35.0" and row["sanity (Spearman)"] == "0.25"
    assert row["test accuracy, %"] == "90.0"
    # a second network of the same recipe: mean ± std over the two
    per_image["pointing"] = [True, False, False, False]
    summarize_cam_scores(per_image).assign(dataset="synthetic", seed=1, test_accuracy=1.0).to_csv(
        results / "explain" / "cam_scores_synthetic_efficientnet_lite0-seed1.csv", index=False
    )
    table = cam_score_table(results)
    assert len(table) == 1 and table.iloc[0]["networks"] == 2
    assert table.iloc[0]["pointing game, %"] == "50.0 ± 35.4"  # 75 and 25
    assert table.iloc[0]["test accuracy, %"] == "95.0 ± 7.1"
    _fold(results, "covid19-ct", "paper", "efficientnet_lite0", 0, 0.9)
    assert "**Grad-CAM scored against known lesions**" in readme_block(results)
    assert "**Points at the lesion, or depends on it?**" not in readme_block(results)  # no ROAD


def test_pointing_road_table_sets_each_cams_road_beside_its_pointing_game(tmp_path: Path) -> None:
    from ctlib.study.honest import pointing_road_table

    results = tmp_path / "results"
    (results / "explain").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="--road"):
        pointing_road_table(results)
    base = {"arch": "efficientnet_lite0", "method": "gradcam", "method_name": "Grad-CAM",
            "pointing_game": 0.75, "n_images": 4, "dataset": "synthetic", "test_accuracy": 1.0,
            "random_baseline": 0.1, "body_baseline": 0.2, "random_net_pointing": 0.0,
            "energy_in_lesions": 0.3, "lesion_area": 0.02, "sanity_spearman": 0.1}  # fmt: skip
    pd.DataFrame([base]).to_csv(results / "explain" / "cam_scores_synthetic_x-seed0.csv")
    with pytest.raises(FileNotFoundError):  # a file written without --road is not read
        pointing_road_table(results)
    for seed, road in ((1, 0.10), (2, 0.14)):
        row = {**base, "road": road, "road_hit": road + 0.02, "road_miss": float("nan"),
               "road_random_map": 0.001, "road_random_network": -0.004}  # fmt: skip
        path = results / "explain" / f"cam_scores_synthetic_x-seed{seed}.csv"
        pd.DataFrame([row]).to_csv(path, index=False)
    table = pointing_road_table(results)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["networks"] == 2 and row["pointing game, %"] == "75.0 ± 0.0"
    assert row["ROAD"] == "12.0 ± 2.8" and row["ROAD where it points at a lesion"] == "14.0 ± 2.8"
    assert row["ROAD where it misses"] == ""  # no slice missed
    assert row["ROAD, random map"] == "0.1 ± 0.0"
    assert row["ROAD, randomised network"] == "-0.4 ± 0.0"
    _fold(results, "covid19-ct", "paper", "efficientnet_lite0", 0, 0.9)
    assert "**Points at the lesion, or depends on it?**" in readme_block(results)


def test_import_results_lets_cv_skip_the_exported_folds(tmp_path: Path) -> None:
    from ctlib.cv import run_cv
    from ctlib.results import import_results
    from ctlib.train import TrainConfig

    synth = load_dataset(
        "synthetic", tmp_path / "data", synthetic=SyntheticConfig(n_patients=8), progress=False
    )
    config = TrainConfig(
        arch="shufflenet", pretrained=False, epochs=1, batch_size=8, canvas=(64, 48)
    )
    first = run_cv(synth, config, protocol="patient", n_folds=2, out=tmp_path / "a", progress=False)
    export_results(tmp_path / "a", tmp_path / "results")
    fresh = tmp_path / "b"  # a new machine: nothing trained there
    written = import_results(tmp_path / "results", fresh, datasets=[synth])
    assert len(written) == 1 + 2 * 4  # folds.csv and four files per fold
    again = run_cv(synth, config, protocol="patient", n_folds=2, out=fresh, progress=False)
    assert not list(fresh.rglob("*.pt"))  # nothing was trained: both folds were skipped
    assert again["accuracy"].tolist() == first["accuracy"].tolist()
    predictions = pd.read_csv(next(fresh.rglob("fold0/predictions.csv")))
    assert predictions["path"].isin(synth.frame["path"]).all()  # absolute paths again
    assert import_results(tmp_path / "results", fresh, datasets=[synth]) == []  # already there

    # an image the data set does not hold, and another fold assignment, are refused
    broken = next((tmp_path / "results").rglob("fold1/predictions.csv"))
    frame = pd.read_csv(broken)
    frame.loc[0, "path"] = "COVID/not-there.png"
    frame.to_csv(broken, index=False)
    with pytest.raises(ValueError, match="not-there.png"):
        import_results(tmp_path / "results", tmp_path / "c", datasets=[synth])
    folds = next(fresh.rglob("folds.csv"))
    table = pd.read_csv(folds)
    table["fold"] = 1 - table["fold"]
    table.to_csv(folds, index=False)
    with pytest.raises(ValueError, match="another fold assignment"):
        import_results(tmp_path / "results", fresh, datasets=[synth])
    with pytest.raises(FileNotFoundError, match="No finished fold"):
        import_results(tmp_path / "nothing", fresh)


def test_key_findings_say_when_two_runs_differ_in_budget(tmp_path: Path) -> None:
    for k, acc in enumerate([0.8, 0.9]):
        reference = _fold(tmp_path, "covid19-ct", "paper", "efficientnet_lite0", k, acc)
        (reference / "config.json").write_text(json.dumps({"train": {"epochs": 24}}))
        for protocol, run in (("patient", "efficientnet_lite0"), ("paper", "resnet18-scratch")):
            folder = _fold(tmp_path, "covid19-ct", protocol, run, k, acc - 0.1)
            train = {"epochs": 12, "pretrained": run == "efficientnet_lite0"}
            (folder / "config.json").write_text(json.dumps({"train": train}))
    lines = key_findings(tmp_path)
    assert lines[0].endswith(
        "patient-level 5-fold 75.0 % (-10.0 points, not like for like: trained at 12 epochs, "
        "the image-level run at 24 epochs)."
    )
    scratch = next(line for line in lines if "ResNet18" in line)
    assert "from random initialisation, at 12 epochs: 75.0 %" in scratch
    assert "the reference trained at 24 epochs, so the budgets differ too" in scratch
    assert not any("same budget" in line for line in lines)


def test_external_and_calibration_tables_and_sentences(tmp_path: Path) -> None:
    from ctlib.study.honest import calibration_frame, external_frame, external_table

    for k, acc in enumerate([0.8, 0.9]):
        _fold(tmp_path, "sars-cov-2-ct", "paper", "efficientnet_lite0", k, acc)
        _fold(tmp_path, "covid19-ct", "paper", "efficientnet_lite0", k, acc - 0.1)
    external = _fold(tmp_path, "sars-cov-2-ct", "external-covid19-ct", "efficientnet_lite0", 0, 0.5)
    # the external test set: four patients, two slices each; half the slices right
    pd.DataFrame(
        {
            "path": [f"CT_COVID/{i}.png" for i in range(8)],
            "label": [1, 1, 0, 0, 1, 1, 0, 0],
            "prob": [0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1],
            "fold": 0,
            "patient_id": ["a", "a", "b", "b", "c", "c", "d", "d"],
        }
    ).to_csv(external / "predictions.csv", index=False)
    _fold(tmp_path / "none", "covid19-ct", "paper", "efficientnet_lite0", 0, 0.9)
    with pytest.raises(FileNotFoundError, match="No external run"):
        external_frame(tmp_path / "none")

    row = external_frame(tmp_path, n_boot=200).iloc[0]
    assert (row["train"], row["test"], row["resampled"]) == (
        "sars-cov-2-ct",
        "covid19-ct",
        "patients",
    )
    assert row["train_cv_accuracy"].tolist() == [0.8, 0.9]
    assert row["test_cv_accuracy"].round(2).tolist() == [0.7, 0.8]
    assert 0.0 <= row["ci_low"] <= 0.5 <= row["ci_high"] <= 1.0
    table = external_table(tmp_path)
    assert table["trained on (all of it)"].item() == "sars-cov-2-ct"
    assert table["tested on (all of it)"].item() == "covid19-ct"
    assert table["CV on the training set, %"].item() == "85.0 ± 7.1"
    assert table["CV on the test set, %"].item() == "75.0 ± 7.1"

    calibration = calibration_frame(tmp_path).set_index(["dataset", "protocol"])
    ext = calibration.loc[("sars-cov-2-ct", "external-covid19-ct")]
    # mean confidence (0.9+0.8+0.7+0.6+0.6+0.7+0.8+0.9)/8 = 0.75, accuracy 4/8: overconfident
    assert ext["confidence"] == pytest.approx(0.75) and ext["accuracy"] == 0.5
    assert ext["verdict"] == "overconfident"
    lines = key_findings(tmp_path)
    sentence = next(line for line in lines if "external validation" in line)
    assert sentence.startswith(
        "**sars-cov-2-ct → covid19-ct** (external validation), EfficientNet-Lite0 (ImageNet) "
        "trained on all of sars-cov-2-ct and tested on all of covid19-ct: 50.0 % (95 % CI "
    )
    assert sentence.endswith(
        "patients resampled; sensitivity 50.0 %, specificity 50.0 %), against 85.0 % on "
        "sars-cov-2-ct's own image-level folds and 75.0 % on covid19-ct's own image-level folds."
    )
    assert any(line.startswith("**Calibration**") and "overconfident" in line for line in lines)
    block = readme_block(tmp_path)
    assert "**External validation**" in block and "**Calibration of P(COVID)**" in block
    assert "external: all of it, tested on covid19-ct" in block
    row = comparison_table(tmp_path).query("protocol.str.startswith('external')", engine="python")
    assert row["vs the paper (accuracy)"].item() == (
        "not in the paper: it tests each data set on itself only"
    )


def test_the_findings_set_grad_cams_road_beside_the_maps_that_explain_nothing(
    tmp_path: Path,
) -> None:
    from ctlib.explain.faithfulness import RANDOM_MAP, RANDOM_NETWORK
    from ctlib.study.findings import _faithfulness_lines

    results = tmp_path / "results"
    (results / "explain").mkdir(parents=True)
    assert _faithfulness_lines(results) == []
    rows = [
        {"path": f"s{i}.png", "map": name, "road": value + i / 100, "dataset": "covid19-ct",
         "fold": 1}
        for i in range(2)
        for name, value in (("Grad-CAM", 0.10), (RANDOM_MAP, 0.0), (RANDOM_NETWORK, 0.02))
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(results / "explain" / "road_covid19-ct_x.csv", index=False)
    (line,) = _faithfulness_lines(results)
    assert "covid19-ct 10.5 points (random map 0.5, randomised network 2.5; 2 test slices of " \
        "fold 1)" in line  # fmt: skip
    for seed, hit in ((0, 0.2), (1, 0.1)):
        pd.DataFrame([{"method": "gradcam", "pointing_game": 0.5, "n_images": 45, "road_hit": hit,
                       "road_miss": 0.05, "road_random_map": 0.001}]).to_csv(
            results / "explain" / f"cam_scores_synthetic_x-seed{seed}.csv", index=False
        )  # fmt: skip
    synthetic = _faithfulness_lines(results)[1]
    assert "(2 networks, 45 held-out COVID slices each)" in synthetic
    assert "on 50 % of the slices; its ROAD is 15.0 points where it does and 5.0" in synthetic


def test_results_travel_as_plain_files_never_as_links_or_damaged_json(tmp_path: Path) -> None:
    """A history.json that is a link to a private file, or a metrics.json that is not JSON:
    export and import refuse the whole tree, name the file, and copy nothing."""
    import os

    from ctlib.results import export_results, import_results

    runs = tmp_path / "runs"
    fold = _fold(runs, "covid19-ct", "paper", "efficientnet_lite0", 0, 0.9)
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    os.chmod(secret, 0o600)
    (fold / "history.json").symlink_to(secret)
    for copy in (
        lambda: export_results(runs, tmp_path / "exported"),
        lambda: import_results(runs, tmp_path / "imported", root=tmp_path),
    ):
        with pytest.raises(ValueError, match=r"history\.json is a symbolic link"):
            copy()
    assert not (tmp_path / "exported").exists() and not (tmp_path / "imported").exists()
    (fold / "history.json").unlink()
    for name, text, problem in (
        ("metrics.json", "{not json", "it is not valid JSON"),
        ("metrics.json", '{"accuracy": "high"}', r"\['accuracy'\] are not numbers"),
        ("metrics.json", '{"accuracy": 1.7}', r"\['accuracy'\] are out of range"),
        ("predictions.csv", "path,label\nx.png,1\n", r"it lacks the column\(s\) \[.prob.\]"),
    ):
        good = (fold / name).read_text()
        (fold / name).write_text(text)
        with pytest.raises(RunFileError, match=rf"valid {name}: {problem}") as refused:
            export_results(runs, tmp_path / "exported")
        assert "nothing was copied" in str(refused.value), name
        assert not (tmp_path / "exported").exists()
        (fold / name).write_text(good)


def test_a_model_file_is_written_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill or a full disk while model.pt is written leaves the previous file whole."""
    import torch

    from ctlib.models import create_model, load_checkpoint, save_checkpoint

    model = create_model("shufflenet", pretrained=False, progress=False)
    path = save_checkpoint(model, tmp_path / "model.pt", extra={"epoch": 1})
    before = path.read_bytes()

    def full_disk(obj: object, target: object) -> None:
        Path(target).write_bytes(before[: len(before) // 5])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(model, path, extra={"epoch": 2})
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["extra"]["epoch"] == 1
    assert type(load_checkpoint(path)) is type(model)
