"""The data sets: a registry, manifests with labels and patients, reading and verification.

Three data sets are registered:

* ``sars-cov-2-ct`` -- Soares et al. (2020), 1252 COVID and 1229 non-COVID slices
  (one non-COVID file is missing upstream), no patient IDs.
* ``covid19-ct`` -- Zhao et al. (2020, UCSD-AI4H COVID-CT), 349 COVID and 397
  non-COVID images cropped from figures in papers, with patient IDs and the official
  train/val/test split.
* ``synthetic`` -- CT-like slices generated here (:mod:`ctlib.synthetic`), whose
  positive class carries lesions with known masks. Needs no download; the default.

For each real set the kit ships a small manifest in ``data/<name>.csv`` (no images):
one row per image with its label, patient ID and official split where known, its size,
the sha256 of the upstream file and a **content hash of the decoded grayscale
pixels** (:func:`pixel_hash`). The pixel hash verifies a copy whether it was
downloaded from the source, losslessly re-encoded or mirrored.

Reading images (:func:`read_grayscale`) handles what these sets and users' folders
contain: 8-bit gray, RGB(A) with R = G = B, true-colour figure crops (ITU-R 601 luma),
palette, CMYK, 16-bit and float images (rescaled from their own min-max to 0..255),
alpha (composited over black, the CT surround) and JPEG data inside ``.png`` names
(Pillow reads by content). Empty, truncated and non-image files raise
:class:`ImageReadError` naming the file.

Example:
    >>> ds = load_dataset("synthetic")            # doctest: +SKIP
    >>> ds.frame[["path", "label", "patient_id"]].head()  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from ctlib.paths import cache_dir, data_dir

if TYPE_CHECKING:
    from ctlib.synthetic import SyntheticConfig

__all__ = [
    "DATASETS",
    "CTDataset",
    "DataError",
    "DataVerificationError",
    "DatasetInfo",
    "ImageReadError",
    "VerificationReport",
    "build_manifest",
    "dataset_info",
    "download",
    "list_datasets",
    "load_dataset",
    "load_folder",
    "manifest_path",
    "pixel_hash",
    "read_grayscale",
    "read_manifest",
    "to_grayscale",
    "verify_dataset",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
_MANIFEST_DIR = Path(__file__).resolve().parent.parent / "data"


# --------------------------------------------------------------------------- errors
class DataError(ValueError):
    """A data set folder is missing, laid out wrongly or holds the wrong files."""


class DataVerificationError(DataError):
    """Files of a data set are missing, undecodable or altered; see ``.report``."""

    def __init__(self, message: str, report: VerificationReport) -> None:
        super().__init__(message)
        self.report = report


class ImageReadError(OSError):
    """An image file could not be decoded; the message names the file and the fix."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"Cannot read image {str(self.path)!r}: {reason}.")


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class DatasetInfo:
    """What the kit knows about a data set (data, not code paths).

    Attributes:
        name: registry name, e.g. ``"covid19-ct"``.
        title: human-readable title.
        citation: who made it.
        source: where it comes from.
        class_folders: ``(folder, label)`` pairs; label 1 = COVID.
        expected: image count per label in the full set.
        patient_ids: whether images come with patient IDs.
        official_split: whether an official train/val/test split exists.
        downloadable: whether :func:`download` can fetch it (``synthetic`` is generated).
    """

    name: str
    title: str
    citation: str
    source: str
    class_folders: tuple[tuple[str, int], ...]
    expected: dict[int, int] = field(default_factory=dict)
    patient_ids: bool = False
    official_split: bool = False
    downloadable: bool = True


DATASETS: dict[str, DatasetInfo] = {
    "sars-cov-2-ct": DatasetInfo(
        name="sars-cov-2-ct",
        title="SARS-CoV-2 CT-scan dataset",
        citation="Soares, Angelov, Biaso, Froes, Abe (2020), medRxiv 2020.04.24.20078584",
        source="Kaggle plameneduardo/sarscov2-ctscan-dataset (mirrored on GitHub)",
        class_folders=(("COVID", 1), ("non-COVID", 0)),
        expected={1: 1252, 0: 1229},
    ),
    "covid19-ct": DatasetInfo(
        name="covid19-ct",
        title="COVID-CT (UCSD-AI4H)",
        citation="Zhao, Zhang, He, Xie (2020), arXiv:2003.13865",
        source="GitHub UCSD-AI4H/COVID-CT, Images-processed/ and Data-split/",
        class_folders=(("CT_COVID", 1), ("CT_NonCOVID", 0)),
        expected={1: 349, 0: 397},
        patient_ids=True,
        official_split=True,
    ),
    "synthetic": DatasetInfo(
        name="synthetic",
        title="Synthetic CT-like slices with known lesion masks",
        citation="generated by ctlib.synthetic",
        source="generated locally, deterministic for a seed",
        class_folders=(("images", -1),),
        patient_ids=True,
        downloadable=False,
    ),
}


def list_datasets() -> list[str]:
    """Names of the registered data sets."""
    return list(DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry for ``name``; unknown names get a suggestion."""
    try:
        return DATASETS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(str(name), DATASETS, n=2, cutoff=0.4)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown data set {name!r}.{hint} Known: {', '.join(DATASETS)} (ctlib.data.list_datasets())."
        ) from None


# --------------------------------------------------------------------------- reading
def _stretch(values: np.ndarray) -> np.ndarray:
    """Rescale any numeric array linearly from its own min-max to uint8 0..255."""
    values = values.astype(np.float64)
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Convert a decoded Pillow image of any mode to a 2-D ``uint8`` array.

    * ``L`` is kept; ``1`` becomes 0/255.
    * RGB and colour modes (CMYK, YCbCr, palette, ...) go through RGB to ITU-R 601 luma,
      which is exact for gray RGB (R = G = B).
    * Alpha is composited over black (CT slices have a black surround); a fully opaque
      alpha channel changes nothing.
    * 16-bit, 32-bit integer and float images are rescaled from their own min-max
      to 0..255, unless they already lie in 0..255 (then kept as they are).
    * The EXIF orientation, if any, is applied first.
    """
    image = ImageOps.exif_transpose(image) or image
    mode = image.mode
    if mode == "L":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode == "1":
        return np.asarray(image.convert("L"), dtype=np.uint8).copy()
    if mode in ("I", "F") or mode.startswith("I;"):
        values = np.asarray(image)
        if values.dtype.kind in "iu" and values.min() >= 0 and values.max() <= 255:
            return values.astype(np.uint8)
        return _stretch(values)
    has_alpha = mode in ("LA", "La", "RGBA", "RGBa", "PA") or (
        mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        rgb = rgba[..., :3]
        if not np.all(alpha == 1.0):
            rgb = np.round(rgb.astype(np.float32) * alpha).astype(np.uint8)
        image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    elif mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.uint8).copy()


def read_grayscale(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to a 2-D ``uint8`` grayscale array (see :func:`to_grayscale`).

    Raises:
        ImageReadError: the file is missing, empty, truncated or not an image; the
            message names the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    if path.is_dir():
        raise ImageReadError(path, "this is a folder, not an image file")
    if size == 0:
        raise ImageReadError(path, "the file is empty (0 bytes); download or copy it again")
    try:
        with Image.open(path) as image:
            image.load()
            return to_grayscale(image)
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image format Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageReadError(path, f"truncated or corrupt image data ({error})") from error


def pixel_hash(image: np.ndarray) -> str:
    """sha256 of a decoded 2-D uint8 image, its shape included."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"pixel_hash expects a 2-D uint8 array, got {image.dtype} {image.shape}.")
    digest = hashlib.sha256(f"{image.shape[0]}x{image.shape[1]}:".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _image_format(path: Path) -> str:
    with Image.open(path) as image:
        return str(image.format)


# --------------------------------------------------------------------------- manifests
def manifest_path(name: str) -> Path:
    """Path of the shipped manifest ``data/<name>.csv`` of a real data set."""
    info = dataset_info(name)
    if not info.downloadable:
        raise ValueError(f"{name!r} is generated by ctlib, it has no shipped manifest.")
    return _MANIFEST_DIR / f"{name}.csv"


def read_manifest(name: str) -> pd.DataFrame:
    """The shipped manifest of a real data set as a DataFrame (one row per image)."""
    path = manifest_path(name)
    if not path.is_file():
        raise DataError(
            f"The manifest {str(path)!r} is missing. It ships with the ctlib repository "
            "(folder data/); install ctlib from a clone with `pip install -e .`."
        )
    frame = pd.read_csv(path, dtype={"patient_id": "string", "official_split": "string"})
    frame["label"] = frame["label"].astype(int)
    return frame


def _covid19_ct_meta(folder: Path) -> pd.DataFrame:
    """Patient IDs and official split of COVID19-CT, from the upstream meta files."""
    meta = folder / "meta"
    rows: list[dict[str, str]] = []
    xlsx = pd.read_excel(meta / "COVID-CT-MetaInfo.xlsx", sheet_name=0)
    names = xlsx["File name"].astype("string").str.strip()
    for file_name, patient in zip(names, xlsx["Patient ID"].astype("string"), strict=True):
        if pd.isna(file_name) or not file_name:
            continue  # one row holds only a caption fragment
        if not file_name.endswith(".png"):
            file_name += ".png"  # 83 names lack the extension
        rows.append({"relpath": f"CT_COVID/{file_name}", "patient_id": str(patient).strip()})
    csv = pd.read_csv(meta / "NonCOVID-CT-MetaInfo.csv")
    for file_name, patient in zip(csv["image name"], csv["patient id"], strict=True):
        rows.append({"relpath": f"CT_NonCOVID/{file_name}", "patient_id": str(patient).strip()})
    table = pd.DataFrame(rows).drop_duplicates("relpath")
    splits: dict[str, str] = {}
    for cls, folder_name in (("COVID", "CT_COVID"), ("NonCOVID", "CT_NonCOVID")):
        for split in ("train", "val", "test"):
            listing = meta / "Data-split" / cls / f"{split}CT_{cls}.txt"
            for line in listing.read_text().splitlines():
                if line.strip():
                    splits[f"{folder_name}/{line.strip()}"] = split
    table["official_split"] = table["relpath"].map(splits)
    return table


def build_manifest(
    name: str, root: str | os.PathLike[str] | None = None, *, progress: bool = True
) -> pd.DataFrame:
    """Build the manifest of a real data set from a verified copy (for maintainers).

    Decodes every image, so this takes a little while. ``scripts/build_manifests.py``
    writes the result to ``data/<name>.csv``. Where the copy carries a ``FILES.csv``
    provenance log with the upstream file hashes (as ``../shared/data`` does), the
    upstream sha256 is taken from it; otherwise from the file itself.
    """
    info = dataset_info(name)
    folder = _dataset_folder(info, root)
    rows = []
    for class_folder, label in info.class_folders:
        for path in _list_images(folder / class_folder):
            rows.append({"relpath": f"{class_folder}/{path.name}", "label": label})
    frame = pd.DataFrame(rows)
    provenance = folder / "FILES.csv"
    upstream: dict[str, str] = {}
    if provenance.is_file():
        log_table = pd.read_csv(provenance)
        upstream = dict(zip(log_table["path"], log_table["source_sha256"], strict=True))
    records = _decode_all([folder / p for p in frame["relpath"]], progress, f"manifest {name}")
    frame["width"] = [r["width"] for r in records]
    frame["height"] = [r["height"] for r in records]
    frame["format"] = [r["format"] for r in records]
    frame["pixel_sha256"] = [r["pixel_sha256"] for r in records]
    frame["file_sha256"] = [
        upstream.get(p) or r["file_sha256"] for p, r in zip(frame["relpath"], records, strict=True)
    ]
    if info.patient_ids and name == "covid19-ct":
        meta = _covid19_ct_meta(folder).set_index("relpath")
        frame["patient_id"] = frame["relpath"].map(meta["patient_id"])
        frame["official_split"] = frame["relpath"].map(meta["official_split"])
    else:
        frame["patient_id"] = pd.NA
        frame["official_split"] = pd.NA
    columns = ["relpath", "label", "patient_id", "official_split", "width", "height", "format",
               "file_sha256", "pixel_sha256"]
    return frame[columns].sort_values("relpath", kind="stable").reset_index(drop=True)


def _decode_all(paths: Sequence[Path], progress: bool, desc: str) -> list[dict[str, object]]:
    """Decode images in a thread pool; per file a record with size, hashes or error."""

    def one(path: Path) -> dict[str, object]:
        try:
            image = read_grayscale(path)
            return {
                "width": image.shape[1],
                "height": image.shape[0],
                "format": _image_format(path),
                "pixel_sha256": pixel_hash(image),
                "file_sha256": _file_sha256(path),
                "error": None,
            }
        except ImageReadError as error:
            return {"error": error.reason, "width": None, "height": None, "format": None,
                    "pixel_sha256": None, "file_sha256": None}

    workers = min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(one, paths), total=len(paths), desc=desc, disable=not progress,
                         unit="img"))


# --------------------------------------------------------------------------- folders
def _list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (by suffix, hidden files ignored), sorted."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _dataset_folder(info: DatasetInfo, root: str | os.PathLike[str] | None) -> Path:
    """Find ``<root>/<name>`` and check its class folders; errors say what to do."""
    base = data_dir(root)
    folder = base / info.name
    class_names = [c for c, _ in info.class_folders]
    if not folder.is_dir() and all((base / c).is_dir() for c in class_names):
        folder = base  # the user pointed at the data set folder itself
    hint = (
        f"Get it with ctlib.data.download({info.name!r}, {str(base)!r}), or point "
        f"CTLIB_DATA_DIR (or root=) at the folder that holds {info.name}/."
    )
    if not folder.is_dir():
        raise DataError(f"Data set {info.name!r} not found: {str(folder)!r} does not exist. {hint}")
    absent = [c for c in class_names if not (folder / c).is_dir()]
    if absent:
        present = sorted(p.name for p in folder.iterdir() if p.is_dir())
        raise DataError(
            f"Class folder(s) {absent} of {info.name!r} missing in {str(folder)!r}; found "
            f"folders {present}, expected {class_names}. {hint}"
        )
    for class_folder in class_names:
        path = folder / class_folder
        images = _list_images(path)
        if not images:
            nested = [p for p in path.iterdir() if p.is_dir()]
            extra = (
                f" It holds the folder(s) {[p.name for p in nested]}: an archive unpacked one "
                f"level too deep? Move their images up into {str(path)!r}."
                if nested else ""
            )
            raise DataError(f"Class folder {str(path)!r} holds no images.{extra} {hint}")
    return folder


# --------------------------------------------------------------------------- data set
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
        return (f"CTDataset({self.name!r}, {len(self)} images, labels {counts}, "
                f"root={str(self.root)!r})")

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
            cls=self.frame["label"].map({1: "COVID", 0: "non-COVID"}).fillna("unlabelled"),
            aspect=self.frame["width"] / self.frame["height"],
        )
        return frame.groupby("cls").agg(
            images=("path", "size"),
            patients=("patient_id", "nunique"),
            width_min=("width", "min"), width_max=("width", "max"),
            height_min=("height", "min"), height_max=("height", "max"),
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
        verify: ``"quick"`` checks that every file of the manifest is present (and
            warns about extra files); ``"full"`` (or True) also decodes every image and
            compares its pixel hash (cached per copy, so done once); ``"none"``/False
            trusts the folder.
        synthetic: the :class:`ctlib.synthetic.SyntheticConfig` to generate.
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
    folder = _dataset_folder(info, root)
    if verify == "full":
        verify_dataset(name, folder.parent if folder.name == name else folder, progress=progress)
    manifest = read_manifest(name)
    frame = manifest.assign(path=[str(folder / p) for p in manifest["relpath"]])
    skipped = pd.DataFrame(columns=["path", "reason"])
    if verify == "quick":
        present = {f"{c}/{p.name}" for c, _ in info.class_folders for p in _list_images(folder / c)}
        missing = sorted(set(manifest["relpath"]) - present)
        extra = sorted(present - set(manifest["relpath"]))
        if missing:
            report = VerificationReport(name, folder, len(manifest), missing=missing, extra=extra)
            raise DataVerificationError(report.message(), report)
        if extra:
            log.warning("%s: %d file(s) not in the manifest are ignored, e.g. %s",
                        name, len(extra), extra[:3])
            skipped = pd.DataFrame({"path": [str(folder / p) for p in extra],
                                    "reason": "not in the manifest"})
    columns = ["path", "label", "patient_id", "official_split", "width", "height", "relpath",
               "format", "file_sha256", "pixel_sha256"]
    return CTDataset(name, folder, frame[columns], skipped, info)


def _load_synthetic(
    root: str | os.PathLike[str] | None, config: SyntheticConfig | None, progress: bool
) -> CTDataset:
    from ctlib import synthetic as synth

    config = config or synth.SyntheticConfig()
    base = Path(root).expanduser() if root is not None else cache_dir() / "synthetic"
    from dataclasses import asdict

    key = hashlib.sha256(json.dumps(asdict(config), sort_keys=True, default=list).encode())
    dest = base / (f"v{synth.SYNTHETIC_VERSION}-{config.n_patients}p-seed{config.seed}-"
                   f"{key.hexdigest()[:8]}")
    if dest.exists() and not (dest / "config.json").is_file():
        raise DataError(f"{str(dest)!r} exists but is not a synthetic data set; remove it.")
    frame = synth.write_synthetic(dest, config, progress=progress)
    frame = frame.assign(official_split=pd.NA)
    frame["patient_id"] = frame["patient_id"].astype("string")
    frame["official_split"] = frame["official_split"].astype("string")
    first = ["path", "label", "patient_id", "official_split", "width", "height"]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    return CTDataset("synthetic", dest, frame.reset_index(drop=True), info=DATASETS["synthetic"])


# --------------------------------------------------------------------------- verification
@dataclass
class VerificationReport:
    """What a verification found. Empty lists mean all is well (``ok``)."""

    name: str
    folder: Path
    expected: int
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    undecodable: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No file missing, undecodable or altered (extra files are only reported)."""
        return not (self.missing or self.undecodable or self.altered)

    def message(self) -> str:
        """A readable summary with the files named and the fix."""
        lines = [f"Data set {self.name!r} at {str(self.folder)!r}: {self.expected} images expected."]
        for label, items in (("missing", self.missing), ("undecodable", self.undecodable),
                             ("altered (pixels differ from the manifest)", self.altered),
                             ("extra (not in the manifest, ignored)", self.extra)):
            if items:
                shown = ", ".join(
                    f"{p}" + (f" [{self.reasons[p]}]" if p in self.reasons else "") for p in items[:5]
                )
                more = f" and {len(items) - 5} more" if len(items) > 5 else ""
                lines.append(f"  {len(items)} {label}: {shown}{more}")
        if not self.ok:
            lines.append(
                f"  Fix: download the data set again with ctlib.data.download({self.name!r}, "
                f"{str(self.folder.parent)!r}, force=True), or restore the files named above."
            )
        return "\n".join(lines)


def _stamp_path(name: str, folder: Path, files: Iterable[Path]) -> Path:
    digest = hashlib.sha256(str(folder.resolve()).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    digest.update(read_manifest(name)["pixel_sha256"].str.cat().encode())
    return cache_dir() / "verified" / f"{name}-{digest.hexdigest()[:24]}.json"


def verify_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    strict: bool = True,
    progress: bool = True,
) -> VerificationReport:
    """Check every image of a real data set against its shipped manifest.

    A file passes when its upstream file hash or its decoded pixel hash matches, so a
    downloaded, re-encoded or mirrored copy is accepted. A successful check is
    remembered in ``<cache>/verified/`` (keyed by the files' names, sizes and
    modification times), so it is not repeated for an unchanged copy.

    Args:
        name: a real data set's name.
        root: the folder holding the data set folder (as in :func:`load_dataset`).
        strict: raise :class:`DataVerificationError` if anything is missing, undecodable
            or altered; otherwise return the report.
        progress: show a progress bar.
    """
    info = dataset_info(name)
    if not info.downloadable:
        raise ValueError(f"{name!r} is generated by ctlib; there is nothing to verify.")
    folder = _dataset_folder(info, root)
    manifest = read_manifest(name)
    files = [p for c, _ in info.class_folders for p in _list_images(folder / c)]
    present = {f"{p.parent.name}/{p.name}": p for p in files}
    report = VerificationReport(name, folder, len(manifest))
    report.missing = sorted(set(manifest["relpath"]) - set(present))
    report.extra = sorted(set(present) - set(manifest["relpath"]))
    stamp = _stamp_path(name, folder, files)
    if stamp.is_file() and not report.missing:
        log.info("%s: verified before (%s), not decoding again", name, stamp.name)
        return report
    todo = manifest[manifest["relpath"].isin(present)]
    records = _decode_all([present[p] for p in todo["relpath"]], progress, f"verify {name}")
    for row, record in zip(todo.itertuples(), records, strict=True):
        if record["error"] is not None:
            report.undecodable.append(row.relpath)
            report.reasons[row.relpath] = str(record["error"])
        elif record["pixel_sha256"] != row.pixel_sha256 and record["file_sha256"] != row.file_sha256:
            report.altered.append(row.relpath)
    if report.ok:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"name": name, "folder": str(folder), "images": len(todo)}))
        os.replace(tmp, stamp)
    elif strict:
        raise DataVerificationError(report.message(), report)
    return report


# --------------------------------------------------------------------------- any folder
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
            candidates += [(p, label) for p in sorted(sub.iterdir())
                           if p.is_file() and not p.name.startswith(".")]
    else:
        candidates = [(p, None) for p in sorted(folder.iterdir())
                      if p.is_file() and not p.name.startswith(".")]
    skipped = [(str(p), f"not an image file name ({p.suffix or 'no suffix'})")
               for p, _ in candidates if p.suffix.lower() not in IMAGE_SUFFIXES]
    images = [(p, label) for p, label in candidates if p.suffix.lower() in IMAGE_SUFFIXES]
    records = _decode_all([p for p, _ in images], progress, f"read {folder.name}")
    rows = []
    for (p, label), record in zip(images, records, strict=True):
        if record["error"] is not None:
            skipped.append((str(p), str(record["error"])))
            continue
        rows.append({"path": str(p), "label": label, "patient_id": None, "official_split": None,
                     "width": record["width"], "height": record["height"],
                     "format": record["format"], "pixel_sha256": record["pixel_sha256"]})
    skipped_frame = pd.DataFrame(skipped, columns=["path", "reason"])
    if skipped:
        log.warning("%s: skipped %d file(s): %s", folder, len(skipped),
                    "; ".join(f"{Path(p).name}: {r}" for p, r in skipped[:5]))
    if not rows:
        raise DataError(f"No readable image found in {str(folder)!r} (skipped {len(skipped)}).")
    frame = pd.DataFrame(rows)
    frame["label"] = frame["label"].astype("Int64")
    frame["patient_id"] = frame["patient_id"].astype("string")
    frame["official_split"] = frame["official_split"].astype("string")
    return CTDataset(folder.name, folder, frame, skipped_frame)


def download(
    name: str, dest: str | os.PathLike[str] | None = None, **options: object
) -> Path:
    """Download a real data set; see :func:`ctlib.download.download` for the options."""
    from ctlib.download import download as _download

    return _download(name, dest, **options)
