"""A lesson's prose cannot contradict its evidence: every number in a notebook's markdown is one
the kit can vouch for.

A number in a markdown cell passes when it is

* shown by a cell whose output nbval checks (``# NBVAL_CHECK_OUTPUT``, the expected output is
  kept in the committed notebook), in the same notebook;
* one of the paper's published figures (Table 2 as shipped in ``ctlib/study/table2.csv``, its
  recipe in :class:`ctlib.config.TrainConfig`, the data sets' published counts), a canvas of
  Table 1, or a setting of one of the kit's recipes (:data:`ctlib.recipes.RECIPES`) or
  constants, read here from the code, so that a sentence and the code cannot drift apart;
* a definition rather than a result (chance is 0.5, a probability lies in [0, 1], ...), on
  the short list :data:`DEFINITIONS`.

Numbers that are not claims are removed first: code spans, link targets, citations' years,
names (COVID-19, SARS-CoV-2), references (Fig. 9, Table 2, Sec. 4, notebook 03, section 5),
exercise labels and numbered list markers. A claim from a run (a fold, an accuracy, a ranking)
is none of these: it is written by the notebook's code from the run's files (as notebook 06's
findings are) or shown by a checked cell, never typed into markdown.
"""

from __future__ import annotations

import re
from functools import cache
from inspect import signature
from math import ceil
from pathlib import Path

import nbformat
import pytest

from ctlib.config import TrainConfig
from ctlib.data import DATASETS
from ctlib.explain.features import embed_tsne
from ctlib.explain.scoring import pointing_game
from ctlib.models import get_spec, list_models
from ctlib.recipes import RECIPES, recipe
from ctlib.study.paper import best_rows, paper_table

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

NUMBER = re.compile(r"(?<![\w.\-−/])[−-]?\d+(?:[.,]\d+)*(?:e-?\d+)?(?:\s?%)?(?![\w])")

#: what is not a claim, removed before numbers are looked for
NOT_CLAIMS = [
    r"`[^`]*`",  # code spans, exercise labels
    r"\]\([^)]*\)",  # link targets
    r"https?://\S+",
    r"arXiv:\S+",
    r"COVID-?19|SARS-CoV-2",
    r"\b[A-Z][\w-]+(?: et al\.| and [A-Z][\w-]+)?,? (?:19|20)\d\d\b",  # citations' years
    r"^#+ \d+ ·",  # section numbers in headings
    r"\*\*(?:Exercise|Solution) \d+\*\*|\*Solution \d+",
    r"\b(?:Figs?\.|Tables?|Sec\.|[Nn]otebooks?|[Ss]ections?|[Ee]xercises?|[Ss]olutions?|"
    r"issue|Eq\.)\s+\d+(?:\.\d+)?(?:(?:\s*(?:,|and|–|-|/)\s*)\d+(?:\.\d+)?)*",
    r"^\s*(?:\d+\.|\(\d+\))\s",  # list markers
    r"\(\d+\)",
    r"\b\d+-(?:fold|bit|nearest|dimensional)\b",  # handled as words below
]

#: definitions, not results: each with why it is safe to state
DEFINITIONS = {
    "0": "the bottom of a scale (0 %, an ECE of 0, no leak)",
    "1": "the top of a scale, a weight decay of 1, one of something",
    "−1": "the bottom of the silhouette's scale",
    "0.5": "chance for two balanced classes; the decision threshold",
    "50": "chance for two balanced classes, in %",
    "0.25": "the Brier score of always answering 0.5",
    "95": "the level of a confidence interval, in %",
    "0.9": "an example of a probability a network may give",
    "0.1": "a bin width of the reliability diagram",
    "0.2": "a bin edge of the reliability diagram",
    "2": "two of something (two data sets, two classes, two cores)",
    "3": "three of something (a list's third item)",
    "10": "the ten bins of the reliability diagram",
    "0.85": "a look-alike threshold an exercise asks the learner to try",
}


def _numbers(value: float | int | str) -> set[str]:
    """How a value may be written: 3e-4, 0.0003; 24; 99.4."""
    if isinstance(value, str):
        return {value}
    forms = {str(value), f"{value:g}"}
    if isinstance(value, float):
        forms |= {f"{value:.0e}".replace("e-0", "e-"), f"{value:.1f}", f"{value:.2f}"}
        if value.is_integer():
            forms.add(str(int(value)))
    return forms


@cache
def kit_facts() -> frozenset[str]:
    """The paper's published figures, Table 1's canvases and the kit's recipe settings, read
    from the code."""
    facts: set[str] = set()
    paper = TrainConfig()
    for value in (
        paper.epochs,
        paper.batch_size,
        paper.lr,
        paper.weight_decay,
        paper.augment.blur_p,
        *paper.lr_milestones,
        *paper.lr_values,
    ):
        facts |= _numbers(value)
    # the paper's schedule as fractions of the first rate: 1/3, 1/10, 1/30, 1/100
    facts |= {str(round(paper.lr / v)) for v in paper.lr_values}
    table = paper_table()
    for column in table.select_dtypes("number").columns:
        for value in table[column]:
            facts |= {f"{value:.1f}", f"{value:.1f} %"}
    facts.add(str(len(table)))  # "all 24 rows"
    facts |= {str(round(v)) for v in best_rows()["accuracy_mean"]}  # "the 99 %"
    canvases = [get_spec(name).canvas for name in list_models()]
    canvases += [recipe(name).canvas for name in RECIPES if name != "paper"]
    for width, height in canvases:  # and the CAM grid on each: the canvas divided by 32
        facts |= {str(width), str(height), str(ceil(width / 32)), str(ceil(height / 32))}
    facts |= {"224", "32"}  # ImageNet's square input; the networks' total stride
    for name in list_models():
        facts.add(str(get_spec(name).feature_dim))  # the penultimate features' length
    facts.add(str(signature(embed_tsne).parameters["pca_components"].default))
    facts.add(f"{signature(pointing_game).parameters['tolerance'].default:g}")
    for info in DATASETS.values():
        facts |= {str(n) for n in info.expected.values()}
        if info.expected:
            total = sum(info.expected.values())
            facts |= {str(total), f"{total:,}"}
    facts |= {"2482", "120", "60"}  # SARS-CoV-2 CT as published: 2482 slices of 120 patients
    for spec in RECIPES.values():
        facts |= _numbers(spec.epochs) | _numbers(spec.batch_size) | _numbers(spec.lr)
    return frozenset(facts)


def _checked_outputs(nb: nbformat.NotebookNode) -> str:
    """The kept expected outputs of the notebook's nbval-checked cells."""
    texts = []
    for cell in nb.cells:
        if cell.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in cell.source:
            for output in cell.get("outputs", []):
                texts.append(output.get("text", ""))
                texts += [str(v) for k, v in output.get("data", {}).items() if k.startswith("text")]
    return "\n".join(texts)


def unvouched(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """``(number, sentence)`` for every number in the markdown that the kit cannot vouch for."""
    checked = set(NUMBER.findall(_checked_outputs(nb)))
    allowed = kit_facts() | set(DEFINITIONS) | checked
    found = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        text = cell.source
        for pattern in NOT_CLAIMS:
            text = re.sub(pattern, " ", text, flags=re.M)
        for line in text.splitlines():
            for number in NUMBER.findall(line):
                bare = number.rstrip("% ").strip()  # 99.4 % is vouched for as 99.4
                if number not in allowed and bare not in allowed:
                    found.append((number, line.strip()))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_number_in_a_lessons_prose_is_vouched_for(path: Path) -> None:
    found = unvouched(nbformat.read(path, as_version=4))
    assert not found, (
        f"{path.name}: numbers the kit cannot vouch for (write them from the run's files in a "
        "code cell, show them in a checked cell, or drop them):\n"
        + "\n".join(f"  {n!r} in: {line}" for n, line in found)
    )


def test_no_fold_is_named_in_a_lessons_prose() -> None:
    """Which fold a committed figure shows is written by code from its files, never typed."""
    named = [
        (path.name, match.group(0))
        for path in NOTEBOOKS
        for cell in nbformat.read(path, as_version=4).cells
        if cell.cell_type == "markdown"
        for match in re.finditer(r"\bfold \d\b", re.sub(r"`[^`]*`", " ", cell.source))
    ]
    assert not named, named


def test_the_check_finds_a_typed_claim_and_passes_a_vouched_one() -> None:
    cell = nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook(
        cells=[
            cell("The network reaches 97.3 % on fold 2 after 17 epochs."),
            cell(
                "The paper trains for 100 epochs at 3e-4 on 349 × 253 (Table 1, Fig. 9, "
                "Alshazly et al. 2020); chance is 0.5. Run `python -m ctlib cv --epochs 7`."
            ),
        ]
    )
    assert [n for n, _ in unvouched(nb)] == ["97.3 %", "17"]  # "2" is a definition's
    checked = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(acc)")
    checked.outputs = [nbformat.v4.new_output("stream", text="accuracy 97.3 %, 17 epochs\n")]
    nb.cells.append(checked)
    assert unvouched(nb) == []
