"""One colour language (``ctlib.plots.palette``): no colour typed anywhere else, the hues
Okabe-Ito's, one meaning per hue, a perceptually uniform CAM map, and every figure drawn with
the palette's colours only."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib import colors as mcolors
from matplotlib.collections import Collection
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.markers import MarkerStyle
from matplotlib.patches import Patch

from ctlib.plots import palette
from ctlib.plots.palette import (
    CAM_CMAP,
    COUNTS_CMAP,
    CT_CMAP,
    OKABE_ITO,
    colour_name,
    protocol_colour,
    tint,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"

# --------------------------------------------------------------------------- no literals
#: where colours may be used but never typed: the palette is the one place that names them
SOURCES = sorted(
    [p for p in (ROOT / "ctlib" / "plots").glob("*.py") if p.name != "palette.py"]
    + list((ROOT / "ctlib" / "study").glob("*.py"))
    + [ROOT / "ctlib" / "widgets.py"]
)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

#: keyword arguments whose string value is a colour or a colour map
_COLOUR_KEYWORDS = {
    "c", "color", "colors", "colour", "colours", "edgecolor", "edgecolors", "facecolor",
    "facecolors", "markeredgecolor", "markerfacecolor", "mec", "mfc", "ecolor", "cmap",
    "background_color", "linecolor", "labelcolor", "hatchcolor", "palette",
}  # fmt: skip
#: string values that name no colour ("none": nothing drawn)
_NOT_A_COLOUR = {"none", ""}
_HEX = re.compile(r"(?<![\w&])#(?:[0-9a-fA-F]{8}|[0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b")
_NAMED = {n.lower() for n in mcolors.CSS4_COLORS} | {"grey", "gray"}
_PREFIXED = re.compile(r"^(tab|xkcd):|^C\d$")
#: a plot format string that carries a colour letter: "k--", "ro", "b-"
_FORMAT = re.compile(r"^(?=.*[bgrcmykw])[bgrcmykw]?[.,ov^<>1-4sp*hH+xDd|_]?(-{1,2}|-\.|:)?$")
_PLOT_CALLS = {"plot", "step", "semilogx", "semilogy", "loglog", "errorbar"}
_CMAPS = set(matplotlib.colormaps)


def colour_literals(source: str, where: str = "<source>") -> list[str]:
    """Every colour typed in ``source`` (Python): hex strings (also inside CSS in a string),
    named or ``tab:`` colours, colour maps, any string given to a colour keyword, plot format
    strings with a colour letter. ``"none"`` is not a colour."""
    found = []
    tree = ast.parse(source)
    keyword_values = {
        id(k.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for k in node.keywords
        if k.arg in _COLOUR_KEYWORDS
    }
    format_args = {
        id(arg)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in _PLOT_CALLS
        for arg in [*node.args[1:], *(k.value for k in node.keywords if k.arg == "fmt")]
    }
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        text, line = node.value, f"{where}:{node.lineno}"
        if _HEX.search(text):
            found.append(f"{line}: hex colour in {text!r}")
        elif text.lower() in _NAMED or _PREFIXED.match(text):
            found.append(f"{line}: named colour {text!r}")
        elif text in _CMAPS and text not in _NAMED:
            found.append(f"{line}: colour map {text!r}")
        elif id(node) in keyword_values and text.lower() not in _NOT_A_COLOUR:
            found.append(f"{line}: colour keyword given {text!r}")
        elif id(node) in format_args and _FORMAT.match(text):
            found.append(f"{line}: format string with a colour {text!r}")
    return found


def _code_cells(path: Path) -> list[tuple[str, str]]:
    cells = json.loads(path.read_text())["cells"]
    return [
        (f"{path.name} cell {c.get('id', i)}", "".join(c["source"]))
        for i, c in enumerate(cells)
        if c["cell_type"] == "code"
    ]


@pytest.mark.parametrize(
    "planted",
    [
        'ax.plot(x, color="#4c72b0")',
        'ax.plot(x, color="grey")',
        "ax.bar(x, y, color='0.88')",
        'ax.imshow(heat, cmap="jet")',
        'sns.heatmap(m, cmap="Blues")',
        'ax.add_patch(Rectangle((0, 0), 1, 1, edgecolor="tab:orange"))',
        'ax.scatter(x, y, edgecolors="k")',
        'ax.plot(x, y, "k--")',
        "html = f\"<span style='color:#b00'>{message}</span>\"",
        'COLOURS = {"agrees": "#d8f0d8"}',
        'ax.imshow(image, cmap="gray")',
    ],
)
def test_the_finder_finds_a_planted_colour(planted: str) -> None:
    assert colour_literals(planted), planted


@pytest.mark.parametrize(
    "clean",
    [
        'ax.scatter(x, y, facecolors="none", edgecolors=INK)',
        'ax.plot(x, y, "o--", color=RUN)',
        'ax.set_title("a test on the other data set (#12 of 30)")',
        'main(["cv", "--dataset", "covid19-ct"])',
        'frame["status"] = "wrong"',
    ],
)
def test_the_finder_lets_uncoloured_code_be(clean: str) -> None:
    assert colour_literals(clean) == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_colour_is_typed_outside_the_palette(path: Path) -> None:
    where = str(path.relative_to(ROOT))
    assert colour_literals(path.read_text(), where) == [], "take it from ctlib.plots.palette"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_notebook_code_cell_types_a_colour(path: Path) -> None:
    found = []
    for where, source in _code_cells(path):
        python = "\n".join(
            "pass" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
        )  # magics are not Python
        found += colour_literals(python, where)
    assert found == [], "a colour belongs in ctlib (ctlib.plots.palette), not in a cell"


# --------------------------------------------------------------------------- the palette
def _meanings() -> dict[str, str]:
    return {
        name: getattr(palette, name)
        for name in ("COVID", "NON_COVID", "IMAGE_LEVEL", "GROUPED", "EXTERNAL", "REFERENCE",
                     "RUN", "PASS", "ATTENTION")
    }  # fmt: skip


def test_each_meaning_is_an_okabe_ito_hue_of_its_own() -> None:
    meanings = _meanings()
    assert set(OKABE_ITO.values()) == {
        "#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
        "#999999",
    }  # fmt: skip
    assert set(meanings.values()) <= set(OKABE_ITO.values())
    assert len(set(meanings.values())) == len(meanings), "two meanings share a colour"


def test_tints_and_names_and_protocols() -> None:
    assert tint("#000000", 0.5) == "#808080" and tint("#D55E00", 0.0) == "#D55E00"
    assert tint("#0072B2", 1.0) == "#FFFFFF"
    with pytest.raises(ValueError, match="palette"):
        tint("red")
    assert colour_name(palette.IMAGE_LEVEL) == "orange"
    assert colour_name(palette.COVID.lower()) == "vermillion"
    with pytest.raises(ValueError, match="ctlib.plots.palette"):
        colour_name("#123456")
    assert protocol_colour("paper") == palette.IMAGE_LEVEL
    assert protocol_colour("external-covid19-ct") == palette.EXTERNAL
    for grouped in ("patient", "pseudo-patient", "official"):
        assert protocol_colour(grouped) == palette.GROUPED
    # test points keep their class's hue, lighter
    for label, colour in palette.CLASS_COLOURS.items():
        assert palette.TSNE_COLOURS[("train", label)] == colour
        assert palette.TSNE_COLOURS[("test", label)] == tint(colour, 0.55)


def _lightness(cmap: str, n: int = 256) -> np.ndarray:
    from skimage.color import rgb2lab

    rgb = matplotlib.colormaps[cmap](np.linspace(0, 1, n))[:, :3]
    return rgb2lab(rgb[None])[0, :, 0]


def test_the_cam_map_is_perceptually_uniform_and_jet_is_not() -> None:
    # lightness (CIELAB L*) rises steadily with the heat: no false bands, readable in gray
    lightness = _lightness(CAM_CMAP)
    assert (np.diff(lightness) > 0).all()
    assert lightness[-1] - lightness[0] > 80  # from near black to near white: the full range
    assert not (np.diff(_lightness("jet")) > 0).all()  # the old map: lightness goes up and down
    assert CT_CMAP == "gray" and COUNTS_CMAP in matplotlib.colormaps


# --------------------------------------------------------------------------- figures use it
def _palette_colours() -> set[str]:
    allowed = set(OKABE_ITO.values()) | {"#FFFFFF"}
    for value in vars(palette).values():
        if isinstance(value, str) and re.fullmatch(r"#[0-9A-F]{6}", value):
            allowed.add(value)
        elif isinstance(value, dict):
            allowed |= {v for v in value.values() if isinstance(v, str) and v.startswith("#")}
    return allowed


def _drawn_colours(figure: Figure) -> tuple[set[str], set[str]]:
    """Every colour a figure's lines, patches, collections and texts draw in (fully
    transparent ones left out), and the colour maps of its images."""
    colours: set[str] = set()
    cmaps: set[str] = set()

    def add(values: object) -> None:
        array = mcolors.to_rgba_array(values) if values is not None else np.zeros((0, 4))
        colours.update(mcolors.to_hex(c[:3]).upper() for c in array if c[3] > 0)

    chrome = {id(legend.legendPatch) for legend in figure.findobj(matplotlib.legend.Legend)}
    for artist in figure.findobj():
        if id(artist) in chrome:  # a legend's frame: matplotlib's, not the data's
            continue
        if isinstance(artist, Line2D):
            if artist.get_visible() and artist.get_linestyle() not in ("None", "none"):
                add(artist.get_color())
            if artist.get_marker() not in (None, "None", "none", ""):
                if MarkerStyle(artist.get_marker()).is_filled():  # "|" has no face
                    add(artist.get_markerfacecolor())
                add(artist.get_markeredgecolor())
        elif isinstance(artist, Patch):
            if artist.get_visible():
                add(artist.get_facecolor())
                if artist.get_linewidth() > 0:
                    add(artist.get_edgecolor())
        elif isinstance(artist, Collection):
            if artist.get_array() is not None:  # colour-mapped (a heat map): its map counts
                cmaps.add(artist.get_cmap().name)
            else:
                add(artist.get_facecolor())
                add(artist.get_edgecolor())
        elif isinstance(artist, AxesImage) and artist.get_array().ndim == 2:
            cmaps.add(artist.get_cmap().name)
        elif isinstance(artist, matplotlib.text.Text) and artist.get_text():
            r, g, b, _ = mcolors.to_rgba(artist.get_color())
            if not r == g == b:  # text is ink: any neutral grey reads as such
                add(artist.get_color())
    return colours, cmaps


def _figures() -> dict[str, Figure]:
    from ctlib.canvas import Box
    from ctlib.config import TrainConfig
    from ctlib.data import read_manifest
    from ctlib.explain import CamResult
    from ctlib.plots import (
        confusion_figure,
        honest_figure,
        paper_figure,
        plot_cam,
        plot_history,
        plot_lr_schedule,
        plot_sizes,
        plot_slices,
        plot_tsne,
        reliability_figure,
    )
    from ctlib.results import collect_results

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 60), dtype=np.uint8)
    heat = rng.random((40, 60)).astype(np.float32)
    cam = CamResult(heat, heat, Box(0, 0, 60, 40), 0.8, 1, "gradcam", "features", 0.1, "x")
    n = 40
    history = pd.DataFrame({"epoch": range(1, 6), "train_loss": np.linspace(0.7, 0.2, 5),
                            "val_loss": np.linspace(0.7, 0.4, 5), "lr": [3e-4] * 5})  # fmt: skip
    sizes = {name: read_manifest(name) for name in ("covid19-ct", "sars-cov-2-ct")}
    return {
        "paper_figure": paper_figure(RESULTS),
        "honest_figure": honest_figure(RESULTS),
        "reliability_figure": reliability_figure(RESULTS),
        "confusion_figure": confusion_figure(collect_results(RESULTS)),
        "plot_lr_schedule": plot_lr_schedule(TrainConfig(epochs=5)),
        "plot_history": plot_history(history),
        "plot_tsne": plot_tsne(
            rng.normal(size=(n, 2)),
            rng.integers(0, 2, n),
            np.where(np.arange(n) % 3, "train", "test"),
            misclassified=rng.random(n) < 0.2,
        ),  # fmt: skip
        "plot_cam": plot_cam(image, cam),
        "plot_sizes": plot_sizes(sizes),
        "plot_slices": plot_slices([image, image], ["a", "b"]),
    }


@pytest.mark.slow
def test_every_figure_draws_with_the_palette_only() -> None:
    import matplotlib.pyplot as plt

    allowed = _palette_colours()
    strays = {}
    cmaps_used: set[str] = set()
    for name, figure in _figures().items():
        colours, cmaps = _drawn_colours(figure)
        cmaps_used |= cmaps
        if colours - allowed:
            strays[name] = sorted(colours - allowed)
        plt.close(figure)
    assert strays == {}, "a figure draws a colour the palette does not name"
    assert cmaps_used <= {CT_CMAP, CAM_CMAP, COUNTS_CMAP}, cmaps_used
    assert CAM_CMAP in cmaps_used


def test_a_figure_in_the_default_colour_cycle_is_caught() -> None:
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])  # matplotlib's own blue, C0
    colours, _ = _drawn_colours(figure)
    plt.close(figure)
    assert colours - _palette_colours() == {"#1F77B4"}


def test_the_comparison_with_the_paper_is_shaded_by_the_palette() -> None:
    from ctlib.results import collect_results
    from ctlib.study.paper import compare_with_paper, highlight_differences

    frame = compare_with_paper(collect_results(RESULTS), include_not_run=True)
    html = highlight_differences(frame).to_html().upper()
    shades = set(re.findall(r"BACKGROUND-COLOR: (#[0-9A-F]{6})", html))
    assert shades and shades <= set(palette.VERDICT_TINTS.values())
    assert palette.VERDICT_TINTS["not run"] in shades
