"""The glossary (docs/GLOSSARY.md): one entry per term, alphabetical, each with an anchor; the
terms the notebooks use are there, and every notebook, the README and the guide link to it."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
GLOSSARY = ROOT / "docs" / "GLOSSARY.md"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: an entry: ``- <a id="anchor"></a>**Term** (aliases): definition``
ENTRY = re.compile(
    r'^- <a id="([a-z0-9-]+)"></a>\*\*([^*]+)\*\*'  # the anchor, the term in bold
    r"( \((?:[^()]|\([^()]*\))*\))?:\s+\S",  # its aliases in parentheses, a colon, the definition
    re.M,
)
#: the terms the notebooks lean on (issue #27); each must name an entry or be one of its aliases
REQUIRED = (
    "accuracy", "augmentation", "BCE", "binary cross-entropy", "bootstrap", "Brier score",
    "calibration", "canvas", "confidence interval", "confusion matrix", "cosine similarity",
    "cross-validation", "ECE", "Eigen-CAM", "epoch", "external validation", "F1", "faithfulness",
    "fine-tuning", "fold", "full mode", "Grad-CAM", "Grad-CAM++", "HiResCAM", "ImageNet",
    "ImageNet normalisation", "k-NN", "LAMB", "LayerCAM", "leakage", "learning-rate schedule",
    "look-alike", "manifest", "metadata-only classifier", "near-duplicate", "official split",
    "overconfident", "padding", "padding-geometry probe", "patient leak", "patient-level split",
    "image-level split", "perceptual hash", "perplexity", "pointing game", "precision",
    "pseudo-patient", "quick mode", "random initialisation", "ROAD", "ROC-AUC", "sanity check",
    "Score-CAM", "sensitivity", "shortcut", "silhouette", "Spearman", "specificity", "SSIM",
    "stratified", "synthetic set", "t-SNE", "trust ratio", "weight decay",
)  # fmt: skip


def _entries() -> list[tuple[str, str, str]]:
    """``(anchor, term, aliases)`` of every entry, in the page's order."""
    return [(a, t, (aliases or "").strip(" ()")) for a, t, aliases in ENTRY.findall(
        GLOSSARY.read_text())]  # fmt: skip


def _plain(text: str) -> str:
    return re.sub(r"[\s`-]+", " ", text.casefold()).strip()


def test_every_entry_is_parsed() -> None:
    """Each bullet of the page is an entry the pattern reads (none malformed, none skipped)."""
    bullets = [line for line in GLOSSARY.read_text().splitlines() if line.startswith("- ")]
    assert len(bullets) == len(_entries()) > 60


def test_terms_and_anchors_are_unique_and_alphabetical() -> None:
    anchors, terms, _ = zip(*_entries(), strict=True)
    assert len(set(anchors)) == len(anchors), "an anchor twice"
    assert len({t.casefold() for t in terms}) == len(terms), "a term twice"
    assert list(terms) == sorted(terms, key=str.casefold), "not in alphabetical order"


@pytest.mark.parametrize("term", REQUIRED)
def test_a_term_the_notebooks_use_is_defined(term: str) -> None:
    names = [_plain(f"{t} {aliases}") for _, t, aliases in _entries()]
    assert any(_plain(term) in name for name in names), f"{term!r} is not in docs/GLOSSARY.md"


def _introduced(text: str) -> list[str]:
    """Terms a notebook introduces: bold at the start of a list item, then a colon or a
    parenthesis (``* **pointing game** (Zhang et al. 2018): ...``), not a bold sentence."""
    found = re.findall(r"^\s*(?:[*-]|\d+\.) \*\*([^*]+?)\*\*(?=\s*[:(])", text, re.M)
    return [term.strip("`") for term in found if not term.endswith(".")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_terms_a_notebook_introduces_are_defined(path: Path) -> None:
    names = " | ".join(_plain(f"{t} {aliases}") for _, t, aliases in _entries())
    cells = nbformat.read(path, as_version=4).cells
    text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    missing = [t for t in _introduced(text) if _plain(t).rstrip("s") not in names]
    assert missing == [], f"{path.name} introduces terms docs/GLOSSARY.md lacks: {missing}"


def test_the_introduced_terms_pattern_finds_definitions_not_sentences() -> None:
    text = "* **pointing game** (Zhang): x\n1. **Metadata only**: y\n* **t-SNE distorts.** z\n"
    assert _introduced(text) == ["pointing game", "Metadata only"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_links_to_the_glossary_in_its_first_cell(path: Path) -> None:
    first = nbformat.read(path, as_version=4).cells[0]
    links = re.findall(r"\]\(([^)]+)\)", first.source)
    assert "../docs/GLOSSARY.md" in links, f"{path.name}: no link to ../docs/GLOSSARY.md"
    assert (path.parent / "../docs/GLOSSARY.md").resolve() == GLOSSARY


def test_the_readme_and_the_guides_link_to_the_glossary() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/INSTRUCTOR.md" in readme and "](docs/GLOSSARY.md)" in readme
    for guide in ("INSTRUCTOR.md", "LEARNERS.md"):
        assert "](GLOSSARY.md)" in (ROOT / "docs" / guide).read_text(), guide


def test_an_anchor_a_document_links_to_exists() -> None:
    anchors = {a for a, _, _ in _entries()}
    texts = [p.read_text() for p in (ROOT / "docs").rglob("*.md")] + [
        (ROOT / "README.md").read_text()
    ]
    linked = {a for text in texts for a in re.findall(r"GLOSSARY\.md#([a-z0-9-]+)", text)}
    assert linked <= anchors, f"links to anchors the glossary lacks: {linked - anchors}"


def test_a_cell_shows_an_entry_where_the_link_does_not_open() -> None:
    """On Colab or from a wheel the notebooks' relative link leads nowhere: glossary() shows
    the same text (the wheel carries docs/GLOSSARY.md; tests/test_colab.py looks it up there)."""
    from ctlib.notebook import glossary

    entry = glossary("ROC-AUC")
    assert entry.startswith('- <a id="roc-auc"></a>**ROC-AUC**') and entry in GLOSSARY.read_text()
    assert entry._repr_markdown_() == entry  # a notebook renders it
    assert glossary() == GLOSSARY.read_text()
    with pytest.raises(ValueError, match="closest: roc auc"):
        glossary("rocauc")
    for path in NOTEBOOKS:
        first = nbformat.read(path, as_version=4).cells[0].source
        assert 'glossary("ROC-AUC")' in first, path.name
