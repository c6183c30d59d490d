"""What the classes look like on CT: the reading examples (:mod:`ctlib.data.reading`) drawn
with the finding each shows and where to look."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

import pandas as pd
from matplotlib.figure import Figure

from ctlib.data import CLASS_NAMES, CTDataset
from ctlib.plots.base import image_grid
from ctlib.plots.palette import CT_CMAP

__all__ = ["plot_reading_examples"]


def plot_reading_examples(
    examples: pd.DataFrame, datasets: Mapping[str, CTDataset], columns: int = 4
) -> Figure:
    """The reading examples, one panel each: the slice, its class and data set above, the finding
    in bold and where to look below.

    Args:
        examples: :func:`ctlib.data.reading.reading_examples` (or some of its rows).
        datasets: the data sets the rows name, by name.
        columns: panels per row.

    Raises:
        KeyError: a row names a data set not in ``datasets``, or an image it does not hold.
    """
    rows = -(-len(examples) // columns)
    figure, axes = image_grid(rows, columns, 3.4, 4.0)
    for ax, row in zip(axes.flat, examples.itertuples(), strict=False):
        if row.dataset not in datasets:
            raise KeyError(f"the reading examples need {row.dataset!r}; it is not loaded here")
        frame = datasets[row.dataset].frame
        match = (frame["relpath"] == row.relpath).to_numpy().nonzero()[0]
        if not len(match):
            raise KeyError(f"{row.relpath!r} is not in the loaded {row.dataset}")
        ax.imshow(datasets[row.dataset].read_image(int(match[0])), cmap=CT_CMAP, vmin=0, vmax=255)
        ax.set_title(
            f"{row.finding}\n{CLASS_NAMES[row.label]} · {row.dataset}",
            fontsize=8.5,
            fontweight="bold",
        )
        ax.set_xlabel(textwrap.fill(row.where, 38), fontsize=7.5)
    for ax in list(axes.flat)[len(examples) :]:
        ax.axis("off")
    figure.suptitle(
        "What to look for (picked and described by the kit's developers, not a radiologist; "
        "the patient's left is on the image's right)",
        fontsize=9,
    )
    figure.tight_layout()
    return figure
