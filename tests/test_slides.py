"""The opening talk's slides (docs/slides/paper-in-ten-minutes.md): what the generator writes
from the kit's files, figures that exist, and a deck Marp or reveal-md can split."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from ctlib.cli import main
from ctlib.study.slides import DECK, render_slides, update_slides

REPO = Path(__file__).resolve().parent.parent
DECK_FILE = REPO / DECK


@pytest.fixture(scope="module")
def deck() -> str:
    if not (REPO / "results").is_dir():
        pytest.skip("no results/ folder in this checkout")
    return render_slides(REPO / "results", REPO / "figures", DECK_FILE)


def test_the_committed_deck_is_what_the_generator_writes(deck: str) -> None:
    assert DECK_FILE.read_text() == deck, (
        f"{DECK} is stale: run `python -m ctlib slides --out {DECK}`"
    )


def _slides(text: str) -> list[str]:
    """The slides after the front matter, split where Marp and reveal-md split them."""
    body = text.split("\n---\n", 2)[2] if text.startswith("---\n") else text
    return re.split(r"\n\n---\n\n", body)


def test_the_deck_says_how_to_render_it_and_has_eight_to_ten_slides(deck: str) -> None:
    head = deck[:800]
    assert deck.startswith("---\nmarp: true\n") and "reveal-md" in head and "Marp" in head
    assert "python -m ctlib slides" in head, "says it is generated, and how"
    slides = _slides(deck)
    assert 8 <= len(slides) <= 10, len(slides)
    titles = [re.sub(r"<!--.*?-->", "", s, flags=re.S).strip().split("\n", 1)[0] for s in slides]
    assert all(re.match(r"#{1,2} \S", title) for title in titles), titles


def _figures(text: str) -> list[str]:
    """The links of the images a deck shows."""
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)


def test_every_figure_it_shows_exists(deck: str) -> None:
    links = _figures(deck)
    assert len(links) >= 4, "the canvases, t-SNE, Grad-CAM and honest-evaluation figures"
    for link in links:
        path = (DECK_FILE.parent / link).resolve()
        assert path.is_file() and path.parent == REPO / "figures", link
    assert {"tsne_covid19-ct.png", "gradcam_covid19-ct.png"} <= {Path(x).name for x in links}


def test_its_numbers_come_from_the_results(tmp_path: Path, deck: str) -> None:
    results = tmp_path / "results"
    shutil.copytree(REPO / "results", results)
    audit = results / "audit" / "covid19-ct.json"
    report = json.loads(audit.read_text())
    report["protocols"]["paper"]["metadata_accuracy"] = 0.123456
    audit.write_text(json.dumps(report))
    changed = render_slides(results, REPO / "figures", DECK_FILE)
    assert "12.3 %" in changed and "12.3 %" not in deck


def test_a_figure_that_is_missing_is_left_out(tmp_path: Path, deck: str) -> None:
    text = render_slides(REPO / "results", tmp_path, DECK_FILE)
    assert _figures(text) == [] and _figures(deck) != []


def test_update_and_check(tmp_path: Path, capsys: pytest.CaptureFixture, deck: str) -> None:
    out = tmp_path / "slides" / "deck.md"
    args = ["slides", "--results", str(REPO / "results"), "--figures", str(REPO / "figures")]
    assert main([*args, "--out", str(out), "--check"]) == 1, "a missing deck is stale"
    assert not out.exists(), "--check writes nothing"
    assert main([*args, "--out", str(out)]) == 0 and out.is_file()
    assert main([*args, "--out", str(out), "--check"]) == 0
    assert not update_slides(out, REPO / "results", REPO / "figures")
    out.write_text(out.read_text().replace("## ", "### ", 1))
    assert main([*args, "--out", str(out), "--check"]) == 1
    assert "is stale" in capsys.readouterr().err
