"""The kit's colour language: each colour means one thing, in every figure, table and widget.

The hues are Okabe and Ito's palette (*Color Universal Design*, 2008), told apart with each
common colour-vision deficiency and in grayscale print. Each hue is given one meaning; a lighter
tint of it (:func:`tint`) means the same thing in a quieter role (test images beside training
images, a table row's background). Black and white are ink: outlines, rings, text, a box on an
image; they carry no meaning of their own.

* vermillion, :data:`COVID`: the class COVID (label 1);
* blue, :data:`NON_COVID`: the class non-COVID (label 0);
* orange, :data:`IMAGE_LEVEL`: image-level folds (the paper's protocol, ``paper``);
* sky blue, :data:`GROUPED`: folds that keep a patient on one side (``patient``,
  ``pseudo-patient``, ``official``);
* reddish purple, :data:`EXTERNAL`: a test on the other data set (``external-<set>``);
* grey, :data:`REFERENCE`: what a result is read against (the paper's numbers and recipe,
  chance, the calibrated diagonal); much lighter, :data:`CONTEXT` behind the data;
* black, :data:`RUN`: this kit's run when one run is drawn alone beside the paper;
* bluish green, :data:`PASS`: agrees with the paper within the margin;
* yellow, :data:`ATTENTION`: look here (differs from the paper beyond the margin; an error).

Colour maps: :data:`CT_CMAP` for CT slices (gray), :data:`CAM_CMAP` for class-activation maps
(inferno, perceptually uniform), :data:`COUNTS_CMAP` for counts (confusion matrices).

Everything that colours anything imports from here (``tests/test_palette.py`` finds colour
literals anywhere else in ``ctlib.plots``, ``ctlib.study``, ``ctlib.widgets`` and the notebooks'
code cells). This module imports nothing from ctlib: ``ctlib.study`` uses it too.
"""

from __future__ import annotations

__all__ = [
    "ATTENTION",
    "ATTENTION_BACKGROUND",
    "CAM_CMAP",
    "CLASS_COLOURS",
    "CONTEXT",
    "COUNTS_CMAP",
    "COVID",
    "CT_CMAP",
    "EXTERNAL",
    "GROUPED",
    "IMAGE_BOX",
    "IMAGE_LEVEL",
    "INK",
    "NON_COVID",
    "OKABE_ITO",
    "PASS",
    "PROBE_HATCH",
    "REFERENCE",
    "REFERENCE_LINE",
    "RUN",
    "TSNE_COLOURS",
    "VERDICT_TINTS",
    "colour_name",
    "protocol_colour",
    "tint",
]

#: Okabe and Ito's eight colours (and the grey often used beside them), by name.
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
    "grey": "#999999",
}

# --- the classes (t-SNE points, the explorer's verdict) ---
#: the class COVID (label 1)
COVID = OKABE_ITO["vermillion"]
#: the class non-COVID (label 0)
NON_COVID = OKABE_ITO["blue"]
#: ``{label: colour}``
CLASS_COLOURS: dict[int, str] = {1: COVID, 0: NON_COVID}

# --- the evaluation protocols (honest evaluation, Table 2 beside the paper, reliability) ---
#: image-level folds: the paper's protocol (``paper``), slices of one patient on both sides
IMAGE_LEVEL = OKABE_ITO["orange"]
#: folds that keep a patient on one side: ``patient``, ``pseudo-patient``, ``official``
GROUPED = OKABE_ITO["sky blue"]
#: trained on one data set, tested on the other (``external-<set>``)
EXTERNAL = OKABE_ITO["reddish purple"]
#: controls (random initialisation, the padding probe) keep their protocol's colour, hatched
PROBE_HATCH = "///"

# --- reference and run ---
#: what a result is read against: the paper's published numbers and recipe, chance, the
#: calibrated diagonal
REFERENCE = OKABE_ITO["grey"]
#: the same meaning as a thin line on white (a darker grey, so that it reads)
REFERENCE_LINE = "#666666"
#: context behind the data (how many images fall in a bin): the reference grey, much lighter
CONTEXT = "#E0E0E0"
#: this kit's run, when one run is drawn alone beside the paper (a schedule, a training curve)
RUN = OKABE_ITO["black"]

# --- verdicts ---
#: agrees with the paper within the margin
PASS = OKABE_ITO["bluish green"]
#: look here: differs from the paper beyond the margin, or something went wrong
ATTENTION = OKABE_ITO["yellow"]

# --- ink: no meaning of its own ---
#: outlines, rings (a misclassified test image), text
INK = OKABE_ITO["black"]
#: the box around the image on its canvas: white reads on the black padding and on the slice
IMAGE_BOX = "#FFFFFF"

# --- colour maps ---
#: CT slices, as a radiologist sees them
CT_CMAP = "gray"
#: Class-activation maps. inferno is perceptually uniform and its lightness rises steadily from
#: black (no heat) to pale yellow (most heat), so how hot a region is reads the same for every
#: viewer, with any colour-vision deficiency and in grayscale print; over a grayscale CT, cold
#: regions stay dark and leave the slice visible. jet, the old default, is not: its lightness
#: goes up and down, so it draws bands (cyan, yellow) that are not in the data and hides
#: differences in its dark blue and dark red ends.
CAM_CMAP = "inferno"
#: counts (confusion matrices): sequential and hueless, so it claims no colour meaning
COUNTS_CMAP = "Greys"


def tint(colour: str, amount: float = 0.5) -> str:
    """``colour`` mixed with white: the same meaning in a quieter role.

    Args:
        colour: ``#RRGGBB``.
        amount: share of white, 0 (the colour) to 1 (white).

    Example:
        >>> tint("#000000", 0.5)
        '#808080'
    """
    if not (len(colour) == 7 and colour.startswith("#")) or not 0.0 <= amount <= 1.0:
        raise ValueError(
            f"tint expects a '#RRGGBB' colour and an amount in [0, 1]; got {colour!r}, {amount}. "
            "Take colours from ctlib.plots.palette."
        )
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * amount):02X}" for c in rgb)


#: t-SNE points: strong colours for training images, light ones for test images (the class is
#: the colour either way)
TSNE_COLOURS: dict[tuple[str, int], str] = {
    ("train", 1): COVID,
    ("train", 0): NON_COVID,
    ("test", 1): tint(COVID, 0.55),
    ("test", 0): tint(NON_COVID, 0.55),
}

#: :data:`ATTENTION` as a background behind dark text (a table row, a message)
ATTENTION_BACKGROUND = tint(ATTENTION, 0.45)

#: backgrounds of the comparison with the paper's Table 2, by verdict; a verdict not named
#: here ("not in the paper": a run the paper did not make) stays white
VERDICT_TINTS: dict[str, str] = {
    "agrees": tint(PASS, 0.75),
    "lower": ATTENTION_BACKGROUND,
    "higher": ATTENTION_BACKGROUND,
    "not run": tint(REFERENCE, 0.75),
}


def protocol_colour(protocol: str) -> str:
    """The colour of an evaluation protocol: :data:`IMAGE_LEVEL` for ``paper``,
    :data:`EXTERNAL` for ``external-<set>``, :data:`GROUPED` for the others (``patient``,
    ``pseudo-patient``, ``official``)."""
    if protocol == "paper":
        return IMAGE_LEVEL
    if protocol.startswith("external-"):
        return EXTERNAL
    return GROUPED


_NAMES = {value: name for name, value in OKABE_ITO.items()} | {
    IMAGE_BOX: "white",
    REFERENCE_LINE: "dark grey",
    CONTEXT: "light grey",
}


def colour_name(colour: str) -> str:
    """A colour of this palette in words, for a caption (``colour_name(IMAGE_LEVEL)``:
    "orange"), so that a caption never names a colour the figure does not use."""
    name = _NAMES.get(colour.upper())
    if name is None:
        raise ValueError(
            f"{colour!r} is not one of ctlib.plots.palette's named colours; take one from there."
        )
    return name
