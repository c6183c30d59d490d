"""The paper's Table 2 as the kit ships it, its own consistency, and runs compared with it."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctlib.models import get_spec, list_models
from ctlib.plots import paper_figure
from ctlib.plots.palette import VERDICT_TINTS
from ctlib.study import paper as paper_module
from ctlib.study.paper import (
    PUBLISHED,
    STATED_CONFUSION_COUNTS,
    best_rows,
    compare_with_paper,
    highlight_differences,
    paper_range,
    paper_table,
    table2_display,
)
from ctlib.study.tables import versus_paper

SHARED = Path(__file__).resolve().parents[2] / "shared" / "paper" / "table2.csv"
METRICS = ("accuracy", "precision", "recall", "specificity", "f1")
# the two classes' sizes, for the class-weighted accuracy check
COUNTS = {"sars-cov-2-ct": (1252, 2482), "covid19-ct": (349, 746)}


def test_all_24_rows_are_packaged_one_per_architecture_and_data_set() -> None:
    assert len(PUBLISHED) == 24
    pairs = {(r.dataset, r.arch) for r in PUBLISHED}
    assert pairs == {(d, a) for d in COUNTS for a in list_models(paper=True)}
    table = paper_table()
    assert table.shape[0] == 24
    assert table.filter(like="_std").notna().all().all(), "the standard deviations are there"
    assert "Table 2" in table["source"].iloc[0]
    assert "missing" not in (paper_module.__doc__ or "").lower()


@pytest.mark.skipif(not SHARED.is_file(), reason=f"{SHARED} is not beside this checkout")
def test_every_packaged_row_matches_the_shared_csv() -> None:
    with SHARED.open(newline="") as handle:
        shared = {(r["dataset"], r["model"]): r for r in csv.DictReader(handle)}
    assert len(shared) == 24
    for result in PUBLISHED:
        row = shared[(result.dataset, get_spec(result.arch).display_name)]
        for metric in METRICS:
            assert result.mean[metric] == float(row[metric])
            assert result.std[metric] == float(row[f"{metric}_sd"])


@pytest.mark.parametrize("result", PUBLISHED, ids=lambda r: f"{r.dataset}-{r.arch}")
def test_each_row_is_consistent_with_itself(result: paper_module.PublishedResult) -> None:
    covid, total = COUNTS[result.dataset]
    m = result.mean
    weighted = (covid * m["recall"] + (total - covid) * m["specificity"]) / total
    assert abs(m["accuracy"] - weighted) <= 0.07
    harmonic = 2 * m["precision"] * m["recall"] / (m["precision"] + m["recall"])
    assert round(abs(m["f1"] - harmonic), 2) <= 0.1  # at the table's precision


def test_the_consistency_check_can_fail() -> None:
    """A row with a mistyped sensitivity breaks the weighted-accuracy check."""
    m = {"accuracy": 92.9, "recall": 83.7, "specificity": 92.2}
    weighted = (349 * m["recall"] + 397 * m["specificity"]) / 746
    assert abs(m["accuracy"] - weighted) > 0.07


def test_best_rows_settle_the_abstracts_attribution() -> None:
    best = best_rows("accuracy")
    assert best.loc["sars-cov-2-ct", "arch"] == "resnet101"
    assert best.loc["covid19-ct", "arch"] == "densenet201"
    assert best_rows("recall").loc["sars-cov-2-ct", "arch"] == "inceptionv3"
    densenet201 = paper_table().loc[("covid19-ct", "paper", "densenet201")]
    for metric in METRICS:  # best on all five (tied with DenseNet169 on sensitivity)
        assert (
            best_rows(metric).loc["covid19-ct", f"{metric}_mean"] == densenet201[f"{metric}_mean"]
        )
    assert paper_range("sars-cov-2-ct") == (95.1, 99.4)  # SqueezeNet to ResNet101
    with pytest.raises(ValueError, match="reports nothing"):
        paper_range("synthetic")


def test_stated_confusion_counts_add_up_to_a_fifth_of_the_data_set() -> None:
    (tp, fn), (fp, tn) = STATED_CONFUSION_COUNTS[("sars-cov-2-ct", "squeezenet")]
    assert abs((tp + fn + fp + tn) - 2482 / 5) < 2


def test_table2_display_is_the_published_layout() -> None:
    table = table2_display()
    assert table.shape == (24, 5)
    assert table.loc[("covid19-ct", "DenseNet201"), "accuracy"] == "92.9 ± 2.2"


def _fold_rows(
    dataset: str, run: str, accuracy: list[float], protocol: str = "paper", recipe: str = ""
) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "dataset": dataset,
                "protocol": protocol,
                "arch": run,
                "fold": k,
                "recipe": recipe,
                **{m: a for m in METRICS},
            }
            for k, a in enumerate(accuracy)
        ]
    )


def test_a_paper_architecture_is_compared_with_its_own_row() -> None:
    ours = _fold_rows("sars-cov-2-ct", "resnet101", [0.994, 0.990, 0.998])  # mean 99.4
    frame = compare_with_paper(ours, tolerance=1.0)
    mine = frame[(frame["dataset"] == "sars-cov-2-ct") & (frame["arch"] == "resnet101")]
    row = mine[mine["metric"] == "accuracy"].iloc[0]
    assert row["verdict"] == "agrees" and row["compared_with"] == "own row"
    assert abs(row["difference"]) < 1e-9 and row["folds"] == 3
    recall = mine[mine["metric"] == "recall"].iloc[0]
    assert recall["difference"] == pytest.approx(99.4 - 99.1)
    assert set(frame.loc[frame["arch"] == "densenet201", "verdict"]) == {"not run"}
    lower = compare_with_paper(
        _fold_rows("sars-cov-2-ct", "resnet101", [0.95, 0.96]), include_not_run=False
    )
    assert set(lower["verdict"]) == {"lower"}
    assert versus_paper(lower).startswith("lower (-3.9")


@pytest.mark.parametrize(
    "run, protocol",
    [
        ("efficientnet_lite0", "paper"),  # not one of the twelve
        ("resnet18-scratch", "paper"),  # one of the twelve, but from random initialisation
        ("resnet18", "patient"),  # one of the twelve, but another protocol
        ("densenet201-flat", "paper"),  # the padding probe
    ],
)
def test_a_run_the_paper_did_not_make_is_never_said_to_agree(run: str, protocol: str) -> None:
    # 92.9 % is exactly the paper's best on COVID19-CT: it must still not "agree" with a row
    ours = _fold_rows("covid19-ct", run, [0.929, 0.929], protocol=protocol)
    frame = compare_with_paper(ours, include_not_run=False)
    assert set(frame["verdict"]) == {"not in the paper"}
    accuracy = frame[frame["metric"] == "accuracy"].iloc[0]
    assert accuracy["compared_with"] == "paper's best (DenseNet201)"
    assert (accuracy["paper_mean"], accuracy["paper_min"], accuracy["paper_max"]) == (
        92.9,
        87.3,
        92.9,
    )
    assert "not in the paper" in versus_paper(frame)
    html = highlight_differences(frame).to_html()
    assert VERDICT_TINTS["agrees"] not in html.upper()  # never shaded as agreeing


def test_a_data_set_the_paper_did_not_use_has_nothing_to_compare() -> None:
    frame = compare_with_paper(
        _fold_rows("synthetic", "efficientnet_lite0", [0.9, 0.8]), include_not_run=False
    )
    assert set(frame["compared_with"]) == {"nothing published"}
    assert frame["paper_mean"].isna().all()


def test_paper_figure_draws_both_data_sets_with_and_without_runs() -> None:
    figure = paper_figure(None)
    assert len(figure.axes) == 2
    assert len(figure.axes[1].patches) == 12
    ours = pd.concat(
        [
            _fold_rows("covid19-ct", "resnet18", [0.9, 0.91]),
            _fold_rows("covid19-ct", "efficientnet_lite0", [0.88, 0.87]),
        ]
    )
    figure = paper_figure(ours)
    covid = next(ax for ax in figure.axes if ax.get_title().startswith("covid19-ct"))
    assert len(covid.patches) == 14
    labels = [t.get_text() for t in covid.get_yticklabels()]
    assert any("beside its own row" in s for s in labels)
    assert any("not in the paper" in s for s in labels)


def test_committed_results_are_compared_and_labelled() -> None:
    results = Path(__file__).resolve().parent.parent / "results"
    if not results.is_dir():
        pytest.skip("no results/ in this checkout")
    from ctlib.results import collect_results

    frame = compare_with_paper(collect_results(results), ["accuracy"], include_not_run=False)
    assert len(frame) > 0 and (frame["recipe"] != "").all()
    lite = frame[(frame["arch"] == "efficientnet_lite0") & (frame["protocol"] == "paper")]
    assert set(lite["verdict"]) == {"not in the paper"}
    assert np.isfinite(lite["difference"]).all()
    assert os.fspath(results)


def test_committed_figures_and_tables_are_found_or_named(capsys) -> None:
    from ctlib.notebook import committed_figures, committed_table

    figures = Path(__file__).resolve().parent.parent / "figures"
    if not figures.is_dir():
        pytest.skip("no figures/ in this checkout")
    present = sorted(p.name for p in figures.glob("*.png"))[0]
    found = committed_figures("no_such_figure.png", present)
    assert [p.name for p in found] == [present] and found[0].is_file()
    assert "no_such_figure.png" in capsys.readouterr().out  # the missing one is named
    audits = figures.parent / "results" / "audit"
    if any(audits.glob("*.json")):  # files that match but are not CSV are left out
        assert committed_table("audit/*") is None
    assert committed_table("explain/no_such_*.csv") is None
    assert "no committed results/explain/no_such_*.csv" in capsys.readouterr().out
    heat = committed_table("explain/heat_*.csv")
    assert heat is not None and {"dataset", "padding_share"} <= set(heat.columns)


def test_citation_file_names_the_paper_and_both_data_sets_as_the_readme_does() -> None:
    import yaml

    repo = Path(__file__).resolve().parents[1]
    citation = yaml.safe_load((repo / "CITATION.cff").read_text())
    readme = (repo / "README.md").read_text()
    paper = citation["preferred-citation"]
    assert [a["family-names"] for a in paper["authors"]] == [
        "Alshazly", "Linse", "Barth", "Martinetz"
    ]  # fmt: skip
    assert f"doi:{paper['doi']}" in readme
    assert {r["type"] for r in citation["references"]} == {"data"}
    first_authors = [r["authors"][0]["family-names"] for r in citation["references"]]
    assert first_authors == ["Soares", "Zhao"]
    for reference in citation["references"]:
        assert reference["notes"].strip() and "Licence" in reference["notes"]
        ids = [reference.get("doi", "")] + [i["value"] for i in reference.get("identifiers", [])]
        assert any(i and i.removeprefix("arXiv:") in readme for i in ids), reference["title"]
    assert citation["license"] == "MIT"
