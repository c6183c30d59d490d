"""Which slices belong together: patients where published, pseudo-patients where not.

COVID19-CT publishes a patient ID per image (in its manifest). SARS-CoV-2 CT publishes
none, so the kit ships derived scan groups, ``ctlib/data/manifests/<name>.pseudo_patients.csv``,
built by clustering look-alike slices (``python -m ctlib audit pseudo-patients <name>``,
:func:`ctlib.study.audit.build_pseudo_patients`, which also checks the grouping where
patients are known). Here they are only looked up: grouping is a property of the data set,
which the grouped cross-validation protocols read.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ctlib.data.manifest import manifest_path

__all__ = ["pseudo_patient_file", "with_pseudo_patients"]


def pseudo_patient_file(name: str) -> Path:
    """``ctlib/data/manifests/<name>.pseudo_patients.csv``: the shipped pseudo-patient groups."""
    return manifest_path(name).with_suffix(".pseudo_patients.csv")


def with_pseudo_patients(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The data set's table with a ``pseudo_patient`` column from the shipped groups.

    Raises:
        FileNotFoundError: no groups ship for this data set (build them with
            ``python -m ctlib audit pseudo-patients <name>``).
        ValueError: an image of the table has no group (the data changed).
    """
    path = pseudo_patient_file(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"No pseudo-patient groups for {name!r} ({path} is missing); build "
            f"them with `python -m ctlib audit pseudo-patients {name}`."
        )
    groups = pd.read_csv(path, dtype=str).set_index("relpath")["pseudo_patient"]
    mapped = frame["relpath"].map(groups)
    if mapped.isna().any():
        missing = frame.loc[mapped.isna(), "relpath"].head(3).tolist()
        raise ValueError(
            f"{mapped.isna().sum()} images have no group in {path} (e.g. {missing}); "
            f"rebuild it with `python -m ctlib audit pseudo-patients {name}`."
        )
    return frame.assign(pseudo_patient=mapped.to_numpy())
