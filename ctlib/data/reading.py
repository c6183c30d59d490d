"""What the classes look like on CT: a few slices of the real data sets, each with the finding
it shows and where to look (``reading_examples.csv``, shipped with the kit).

The slices were picked and described by the kit's developers to orient learners, not by a
radiologist, and the data sets carry no lesion annotation: the descriptions say what to look
for, not a diagnosis. Directions are the image's (CT is shown with the patient's left on the
image's right).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ctlib.data.manifest import read_manifest
from ctlib.errors import DataError

__all__ = ["READING_EXAMPLES", "reading_examples"]

#: the shipped table: dataset, relpath, label, finding, where
READING_EXAMPLES = Path(__file__).resolve().parent / "reading_examples.csv"

COLUMNS = ("dataset", "relpath", "label", "finding", "where")


def reading_examples(path: str | Path = READING_EXAMPLES) -> pd.DataFrame:
    """The reading examples, each checked against its data set's shipped manifest.

    Raises:
        ctlib.data.DataError: a column is missing, or a row names an image that is not in its
            data set's manifest or gives it another label than the manifest does.
    """
    path = Path(path)
    table = pd.read_csv(path, dtype={"label": int})
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path} lacks the column(s) {missing}; it needs {list(COLUMNS)}.")
    for dataset, rows in table.groupby("dataset", sort=False):
        labels = read_manifest(str(dataset)).set_index("relpath")["label"]
        for row in rows.itertuples():
            if row.relpath not in labels.index:
                raise DataError(
                    f"{path}: {row.relpath!r} is not an image of {dataset} (its manifest lists "
                    "every image); correct the relpath."
                )
            if int(labels[row.relpath]) != row.label:
                raise DataError(
                    f"{path}: {row.relpath!r} is labelled {row.label} here but "
                    f"{int(labels[row.relpath])} in the {dataset} manifest."
                )
    return table[list(COLUMNS)]
