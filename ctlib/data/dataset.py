"""A data set as a table of images (:class:`CTDataset`): a registered one, or any folder."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ctlib.data.folders import find_dataset_folder, list_images
from ctlib.data.images import IMAGE_SUFFIXES, decode_images, read_grayscale
from ctlib.data.manifest import read_manifest
from ctlib.data.registry import CLASS_NAMES, DATASETS, DatasetInfo, dataset_info
from ctlib.data.synthetic import SYNTHETIC_VERSION, SyntheticConfig, write_synthetic
from ctlib.data.verify import VerificationReport, verify_dataset
from ctlib.errors import DataError, DataVerificationError
from ctlib.paths import cache_dir

__all__ = ["CTDataset", "load_dataset", "load_folder"]

log = logging.getLogger(__name__)


@dataclass
class CTDataset:
    """A data set as a table of images; the images stay on disk until read.

    Attributes:
        name: registry name, or the folder name for :func:`load_folder`.
        root: the folder the images were read from.
        frame: one row per image: ``path`` (absolute), ``label`` (1 = COVID, 0 = not,
            <NA> where unknown), ``patient_id`` and ``official_split`` (<NA> where
            unknown), ``width``, ``height``, and more columns per data set.
        skipped: files that were found but could not be used, with the reason.
        info: the registry entry, if any.
    """

    name: str
    root: Path
    frame: pd.DataFrame
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "reason"]))
    info: DatasetInfo | None = None

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        counts = self.frame["label"].value_counts(dropna=False).to_dict()
        return (
            f"CTDataset({self.name!r}, {len(self)} images, labels {counts}, "
            f"root={str(self.root)!r})"
        )

    def read_image(self, index: int) -> np.ndarray:
        """Decode the image in row ``index`` (positional) as 2-D uint8."""
        return read_grayscale(self.frame["path"].iloc[index])

    def read_mask(self, index: int) -> np.ndarray:
        """The lesion mask of row ``index`` (synthetic set only) as a 2-D bool array."""
        if "mask_path" not in self.frame:
            raise ValueError(f"Data set {self.name!r} has no lesion masks (only 'synthetic' has).")
        return read_grayscale(self.frame["mask_path"].iloc[index]) > 127

    def summary(self) -> pd.DataFrame:
        """Images, patients and size ranges per class."""
        frame = self.frame.assign(
            cls=self.frame["label"].map(CLASS_NAMES).fillna("unlabelled"),
            aspect=self.frame["width"] / self.frame["height"],
        )
        return frame.groupby("cls").agg(
            images=("path", "size"),
            patients=("patient_id", "nunique"),
            width_min=("width", "min"),
            width_max=("width", "max"),
            height_min=("height", "min"),
            height_max=("height", "max"),
            aspect_median=("aspect", "median"),
        )


def load_dataset(
    name: str = "synthetic",
    root: str | os.PathLike[str] | None = None,
    *,
    verify: Literal["quick", "full", "none"] | bool = "quick",
    synthetic: SyntheticConfig | None = None,
    progress: bool = True,
) -> CTDataset:
    """Load a registered data set as a :class:`CTDataset` (images stay on disk).

    Args:
        name: ``"synthetic"`` (default), ``"covid19-ct"`` or ``"sars-cov-2-ct"``.
        root: the folder holding the data set folders. Default: ``CTLIB_DATA_DIR``,
            then ``~/.cache/ctlib/data``. For ``synthetic``: where to generate it
            (default ``<cache>/synthetic``).
        verify: ``"quick"`` checks that every file of the manifest is present and not empty (and
            warns about extra files); ``"full"`` (or True) also decodes every image and
            compares its pixel hash (cached per copy, so done once); ``"none"``/False
            trusts the folder.
        synthetic: the :class:`ctlib.data.synthetic.SyntheticConfig` to generate.
        progress: show progress bars.

    Raises:
        DataError: the folder is missing or laid out wrongly; the message says how to
            get or place the data.
        DataVerificationError: files are missing, undecodable or altered.
    """
    info = dataset_info(name)
    if name == "synthetic":
        return _load_synthetic(root, synthetic, progress)
    if verify is True:
        verify = "full"
    elif verify is False:
        verify = "none"
    if verify not in ("quick", "full", "none"):
        raise ValueError(f"verify must be 'quick', 'full' or 'none', got {verify!r}.")
    folder = find_dataset_folder(info, root)
    if verify == "full":
        verify_dataset(name, folder.parent if folder.name == name else folder, progress=progress)
    manifest = read_manifest(name)
    frame = manifest.assign(path=[str(folder / p) for p in manifest["relpath"]])
    skipped = pd.DataFrame(columns=["path", "reason"])
    if verify == "quick":
        present = {f"{c}/{p.name}" for c, _ in info.class_folders for p in list_images(folder / c)}
        missing = sorted(set(manifest["relpath"]) - present)
        extra = sorted(present - set(manifest["relpath"]))
        empty = [
            rel
            for rel in sorted(present & set(manifest["relpath"]))
            if (folder / rel).stat().st_size == 0
        ]
        if missing or empty:
            report = VerificationReport(
                name,
                folder,
                len(manifest),
                missing=missing,
                extra=extra,
                undecodable=empty,
                reasons=dict.fromkeys(empty, "empty file, 0 bytes"),
            )
            raise DataVerificationError(report.message(), report)
        if extra:
            log.warning(
                "%s: %d file(s) not in the manifest are ignored, e.g. %s",
                name,
                len(extra),
                extra[:3],
            )
            skipped = pd.DataFrame(
                {"path": [str(folder / p) for p in extra], "reason": "not in the manifest"}
            )
    columns = [
        "path",
        "label",
        "patient_id",
        "official_split",
        "width",
        "height",
        "relpath",
        "format",
        "file_sha256",
        "pixel_sha256",
    ]
    return CTDataset(name, folder, frame[columns], skipped, info)


def _load_synthetic(
    root: str | os.PathLike[str] | None, config: SyntheticConfig | None, progress: bool
) -> CTDataset:
    config = config or SyntheticConfig()
    base = Path(root).expanduser() if root is not None else cache_dir() / "synthetic"
    key = hashlib.sha256(json.dumps(asdict(config), sort_keys=True, default=list).encode())
    dest = base / (
        f"v{SYNTHETIC_VERSION}-{config.n_patients}p-seed{config.seed}-{key.hexdigest()[:8]}"
    )
    if dest.exists() and not (dest / "config.json").is_file():
        raise DataError(f"{str(dest)!r} exists but is not a synthetic data set; remove it.")
    frame = write_synthetic(dest, config, progress=progress)
    frame = frame.assign(official_split=pd.NA)
    frame["patient_id"] = frame["patient_id"].astype("string")
    frame["official_split"] = frame["official_split"].astype("string")
    first = ["path", "label", "patient_id", "official_split", "width", "height"]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    return CTDataset("synthetic", dest, frame.reset_index(drop=True), info=DATASETS["synthetic"])


def load_folder(
    path: str | os.PathLike[str],
    classes: dict[str, int] | None = None,
    *,
    progress: bool = True,
) -> CTDataset:
    """Load any folder of images, e.g. your own CT slices (the paper's Fig. 15/16 test).

    Either class subfolders (``classes`` maps folder name to label; by default the
    names of the two registered sets, ``COVID``/``non-COVID`` or
    ``CT_COVID``/``CT_NonCOVID``, are recognised) or images directly in ``path``
    (unlabelled). Every file is decoded once; files that cannot be used (empty,
    truncated, not an image) are skipped and listed in ``.skipped`` with the reason,
    and a warning summarises them.

    Raises:
        DataError: the folder does not exist, a named class folder is missing, or no
            usable image was found.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"{str(folder)!r} is not a folder of images.")
    if classes is None:
        for info in DATASETS.values():
            candidate = dict(info.class_folders)
            if info.downloadable and all((folder / c).is_dir() for c in candidate):
                classes = candidate
                break
    candidates: list[tuple[Path, int | None]] = []
    if classes:
        for class_folder, label in classes.items():
            sub = folder / class_folder
            if not sub.is_dir():
                present = sorted(p.name for p in folder.iterdir() if p.is_dir())
                raise DataError(
                    f"Class folder {str(sub)!r} is missing; found folders {present}. "
                    f"Pass classes={{folder: label}} naming the folders that exist."
                )
            candidates += [
                (p, label)
                for p in sorted(sub.iterdir())
                if p.is_file() and not p.name.startswith(".")
            ]
    else:
        candidates = [
            (p, None)
            for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".")
        ]
    skipped = [
        (str(p), f"not an image file name ({p.suffix or 'no suffix'})")
        for p, _ in candidates
        if p.suffix.lower() not in IMAGE_SUFFIXES
    ]
    images = [(p, label) for p, label in candidates if p.suffix.lower() in IMAGE_SUFFIXES]
    records = decode_images([p for p, _ in images], progress, f"read {folder.name}")
    rows = []
    for (p, label), record in zip(images, records, strict=True):
        if record["error"] is not None:
            skipped.append((str(p), str(record["error"])))
            continue
        rows.append(
            {
                "path": str(p),
                "label": label,
                "patient_id": None,
                "official_split": None,
                "width": record["width"],
                "height": record["height"],
                "format": record["format"],
                "pixel_sha256": record["pixel_sha256"],
            }
        )
    skipped_frame = pd.DataFrame(skipped, columns=["path", "reason"])
    if skipped:
        log.warning(
            "%s: skipped %d file(s): %s",
            folder,
            len(skipped),
            "; ".join(f"{Path(p).name}: {r}" for p, r in skipped[:5]),
        )
    if not rows:
        raise DataError(f"No readable image found in {str(folder)!r} (skipped {len(skipped)}).")
    frame = pd.DataFrame(rows)
    frame["label"] = frame["label"].astype("Int64")
    frame["patient_id"] = frame["patient_id"].astype("string")
    frame["official_split"] = frame["official_split"].astype("string")
    return CTDataset(folder.name, folder, frame, skipped_frame)
